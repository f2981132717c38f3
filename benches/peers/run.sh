#!/usr/bin/env bash
# The peer bench: concord's linear assignment solver against the Rust peers (`lapjv`,
# `pathfinding::kuhn_munkres`) and the solvers Python and C++ users pick (scipy's
# linear_sum_assignment, the `lap` package, the AVX2 `lapjv` package), on the same
# matrices, with one table at the end. Not part of CI.
#
#   benches/peers/run.sh            # every shape and size, 3 rounds
#   ROUNDS=5 benches/peers/run.sh
#   PEERS_SIZES=100,500 PEERS_SHAPES=uniform,machol_wien benches/peers/run.sh
#
# The virtualenv and the matrices go under the cargo target directory
# ($CARGO_TARGET_DIR, else ./target), never into the source tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
work="$target/peers"
venv="$work/venv"
matrices="$work/matrices"
rounds="${ROUNDS:-3}"

python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> virtualenv with scipy, lap, lapjv in $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet numpy scipy lap lapjv
fi
"$venv/bin/pip" list 2>/dev/null | grep -E '^(numpy|scipy|lap|lapjv) ' >&2 || true

echo "==> building the Rust half (bench profile)" >&2
cargo bench --bench peers --no-run >&2
bin=$(cargo bench --bench peers --no-run --message-format=json 2>/dev/null \
  | "$venv/bin/python" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "peers" and m.get("executable"):
        print(m["executable"])')

rm -rf "$matrices"
echo "==> writing the matrices to $matrices" >&2
"$bin" gen "$matrices"

for round in $(seq 1 "$rounds"); do
  echo "==> round $round of $rounds: Rust solvers" >&2
  "$bin" time "$matrices" "$round"
  echo "==> round $round of $rounds: Python solvers" >&2
  "$venv/bin/python" benches/peers/peers.py time "$matrices" "$round"
done

echo >&2
"$venv/bin/python" benches/peers/peers.py report "$matrices"
