"""The Python half of the peer bench (benches/peers/run.sh drives it).

time DIR ROUND   times scipy's linear_sum_assignment (Crouse's LSAP, C++), the `lap`
                 package (LAPJV, C++) and the `lapjv` package (AVX2 C++) on the
                 matrices in DIR, writing DIR/python.ROUND.tsv in the format of the
                 Rust half's rust.ROUND.tsv.
report DIR       reads every round of both halves and prints one Markdown table: each
                 solver's median time over the rounds, the fastest peer, concord's ratio
                 to it, and whether every solver found the same optimal total.

The costs are integers, so every optimal total is exact and compared for equality.
"""

import glob
import os
import statistics
import sys
import time

import numpy as np

MIN_TIME = 0.4  # seconds of timed runs per solver and case, at least three runs
MAX_RUNS = 25
SKIP_AFTER = 2.0  # a peer slower than this on a shape is not run at larger sizes

RUST = ["concord", "lapjv_rs", "kuhn_munkres"]
PYTHON = ["scipy", "lap", "lapjv_avx2"]
HEADERS = {
    "concord": "concord",
    "lapjv_rs": "lapjv (Rust)",
    "kuhn_munkres": "kuhn_munkres",
    "scipy": "scipy LSAP",
    "lap": "lap (LAPJV)",
    "lapjv_avx2": "lapjv (AVX2)",
}


def cases(directory):
    with open(os.path.join(directory, "cases.tsv")) as f:
        for line in f:
            name, shape, rows, cols = line.split()
            yield name, shape, int(rows), int(cols)


def load(directory, name, rows, cols):
    path = os.path.join(directory, name + ".f64")
    return np.fromfile(path, dtype="<f8").reshape(rows, cols)


def measure(solve):
    t = time.perf_counter()
    total = solve()
    first = time.perf_counter() - t
    if first >= MIN_TIME:
        # A solve this slow has nothing to warm up, and repeats would take minutes.
        return first, total
    times = []
    started = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - started < MIN_TIME and len(times) < MAX_RUNS):
        t = time.perf_counter()
        solve()
        times.append(time.perf_counter() - t)
    return statistics.median(times), total


def solvers(costs):
    import lap
    import lapjv
    from scipy.optimize import linear_sum_assignment

    rows, cols = costs.shape
    rng = np.arange(rows)

    def scipy_solve():
        r, c = linear_sum_assignment(costs)
        return float(costs[r, c].sum())

    def lap_solve():
        # Rectangular problems are padded to square by the package (extend_cost).
        _, x, _ = lap.lapjv(costs, extend_cost=rows != cols)
        return float(costs[rng, x].sum())

    def lapjv_solve():
        # force_doubles: by default the package solves in f32, which is not exact.
        x, _, _ = lapjv.lapjv(costs, force_doubles=True)
        return float(costs[rng, x].sum())

    return {
        "scipy": scipy_solve,
        "lap": lap_solve,
        "lapjv_avx2": None if rows != cols else lapjv_solve,
    }


def time_all(directory, round_):
    out = []
    slow = set()
    for name, shape, rows, cols in cases(directory):
        costs = np.ascontiguousarray(load(directory, name, rows, cols))
        family = (shape, cols // rows)
        for solver, solve in solvers(costs).items():
            if solve is None:
                out.append(f"{name}\t{solver}\tsquare only\t")
                continue
            if (solver, family) in slow:
                out.append(f"{name}\t{solver}\tslow\t")
                continue
            t, total = measure(solve)
            if t > SKIP_AFTER:
                slow.add((solver, family))
            print(f"{name:<28} {solver:<13} {t * 1e3:>12.3f} ms", file=sys.stderr)
            out.append(f"{name}\t{solver}\t{t:.9f}\t{total!r}")
    with open(os.path.join(directory, f"python.{round_}.tsv"), "w") as f:
        f.write("\n".join(out) + "\n")


def read_rounds(directory):
    """(case, solver) -> list of times, and -> set of totals; skip reasons."""
    times, totals, skipped = {}, {}, {}
    for path in glob.glob(os.path.join(directory, "*.*.tsv")):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 4:
                    continue
                case, solver, t, total = parts
                try:
                    t, total = float(t), float(total)
                except ValueError:
                    skipped[(case, solver)] = t
                    continue
                times.setdefault((case, solver), []).append(t)
                totals.setdefault((case, solver), set()).add(total)
    return times, totals, skipped


def fmt(seconds):
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def report(directory):
    times, totals, skipped = read_rounds(directory)
    rounds = max((len(v) for v in times.values()), default=0)
    names = RUST + PYTHON
    print(f"Median of {rounds} round(s); times in milliseconds.\n")
    print("| case | " + " | ".join(HEADERS[s] for s in names) + " | concord / fastest peer | same total |")
    print("|---|" + "---:|" * len(names) + "---:|:---:|")
    worst = []
    for name, _, _, _ in cases(directory):
        cells, peers = [], []
        all_totals = set()
        for s in names:
            key = (name, s)
            if key in times:
                t = statistics.median(times[key])
                cells.append(fmt(t))
                all_totals |= totals[key]
                if s != "concord":
                    peers.append(t)
            else:
                cells.append(skipped.get(key, "-"))
        ours = times.get((name, "concord"))
        ratio = ""
        if ours and peers:
            r = statistics.median(ours) / min(peers)
            ratio = f"{r:.2f}x"
            worst.append((r, name))
        same = "yes" if len(all_totals) == 1 else f"NO: {sorted(all_totals)}"
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {same} |")
    if worst:
        worst.sort(reverse=True)
        print("\nconcord / fastest peer, worst cases: " + ", ".join(f"{n} {r:.2f}x" for r, n in worst[:5]))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "time":
        time_all(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
