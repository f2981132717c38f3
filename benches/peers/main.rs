//! The Rust half of the peer bench (`benches/peers/run.sh` drives it; see its README
//! section in `benches/NOTES.md`).
//!
//! - `gen DIR`: writes every case's matrix once, as little-endian `f64` in row-major
//!   order (`DIR/<case>.f64`), and the list of cases (`DIR/cases.tsv`: name, shape,
//!   rows, cols). The Python driver reads the same files.
//! - `time DIR ROUND`: times concord's `solve_dense`, the `lapjv` crate and
//!   `pathfinding::kuhn_munkres` on each case and writes `DIR/rust.ROUND.tsv` (case,
//!   solver, median seconds or a reason it did not run, optimal total).
//!
//! - `once DIR CASE K`: solves one case `K` times with concord only, for a profiler
//!   (`valgrind --tool=callgrind`: the difference between two values of `K` is the
//!   cost of a solve, free of the file reading).
//!
//! `PEERS_SIZES` (e.g. `100,500`) and `PEERS_SHAPES` (e.g. `uniform,machol_wien`)
//! narrow a run. Run by `cargo bench` without arguments it only says how to run it:
//! the peer bench is not part of CI.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use std::{env, fs};

use concord::assignment::lap::{DenseCosts, solve_dense};
use ndarray::Array2;
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

#[path = "../support/lap_shapes.rs"]
mod lap_shapes;
#[path = "../support/rng.rs"]
mod rng;

use lap_shapes::Shape;

/// The sizes `n`: each shape is solved square (`n x n`) and rectangular (`n x 4n`).
const SIZES: [usize; 4] = [100, 500, 1000, 2000];
/// Each solver runs until this much time has passed (at least three timed runs)...
const MIN_TIME: Duration = Duration::from_millis(400);
/// ...and at most this many timed runs.
const MAX_RUNS: usize = 25;
/// A peer slower than this on a shape is not run at the larger sizes of that shape,
/// so that a full run stays within minutes.
const SKIP_AFTER: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") if args.len() == 2 => generate(Path::new(&args[1])),
        Some("time") if args.len() == 3 => time(Path::new(&args[1]), &args[2]),
        Some("once") if args.len() == 4 => once(Path::new(&args[1]), &args[2], &args[3]),
        _ => {
            println!("peers: not a criterion bench; run `benches/peers/run.sh` for the peer table")
        }
    }
}

/// One matrix to solve.
struct Case {
    name: String,
    shape: Shape,
    rows: usize,
    cols: usize,
}

/// The cases of a run, narrowed by `PEERS_SIZES` and `PEERS_SHAPES`.
fn cases() -> Vec<Case> {
    let sizes: Vec<usize> = match env::var("PEERS_SIZES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    let shapes: Vec<Shape> = match env::var("PEERS_SHAPES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| Shape::from_name(s.trim()))
            .collect(),
        Err(_) => Shape::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for &shape in &shapes {
        for wide in [false, true] {
            for &n in &sizes {
                let (rows, cols) = (n, if wide { 4 * n } else { n });
                out.push(Case {
                    name: format!("{}_{rows}x{cols}", shape.name()),
                    shape,
                    rows,
                    cols,
                });
            }
        }
    }
    out
}

fn generate(dir: &Path) {
    fs::create_dir_all(dir).expect("create the matrix directory");
    let mut list = String::new();
    for (k, case) in cases().iter().enumerate() {
        let seed = 0x9E37_79B9_7F4A_7C15 ^ (k as u64) << 8;
        let costs = case.shape.matrix(case.rows, case.cols, seed);
        let bytes: Vec<u8> = costs.iter().flat_map(|c| c.to_le_bytes()).collect();
        fs::write(file(dir, &case.name), bytes).expect("write a matrix");
        writeln!(
            list,
            "{}\t{}\t{}\t{}",
            case.name,
            case.shape.name(),
            case.rows,
            case.cols
        )
        .unwrap();
    }
    fs::write(dir.join("cases.tsv"), list).expect("write the case list");
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.f64"))
}

fn read(dir: &Path, case: &Case) -> Vec<f64> {
    let bytes = fs::read(file(dir, &case.name)).expect("matrices written by `gen`");
    assert_eq!(bytes.len(), case.rows * case.cols * 8, "{}", case.name);
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// A solver's result on a case: its median time and optimal total, or why it did not
/// run.
enum Outcome {
    Timed(Duration, f64),
    Skipped(&'static str),
}

/// A solver timed on one case.
type Solver<'a> = Box<dyn FnMut() -> Outcome + 'a>;

/// Runs `solve` once (its total is the result), then timed until [`MIN_TIME`] has
/// passed, at least three and at most [`MAX_RUNS`] times; the median run. A first run
/// longer than [`MIN_TIME`] is the time.
fn measure(mut solve: impl FnMut() -> f64) -> Outcome {
    let t = Instant::now();
    let total = solve();
    let first = t.elapsed();
    if first >= MIN_TIME {
        // A solve this slow has nothing to warm up, and repeats would take minutes.
        return Outcome::Timed(first, total);
    }
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || (started.elapsed() < MIN_TIME && times.len() < MAX_RUNS) {
        let t = Instant::now();
        black_box(solve());
        times.push(t.elapsed());
    }
    times.sort();
    Outcome::Timed(times[times.len() / 2], total)
}

fn time(dir: &Path, round: &str) {
    let mut out = String::new();
    // The slowest time of each (solver, shape, orientation) so far, for SKIP_AFTER.
    let mut slow: Vec<(&str, String)> = Vec::new();
    for case in cases() {
        let costs = read(dir, &case);
        let (rows, cols) = (case.rows, case.cols);
        let family = format!("{}_{}", case.shape.name(), cols / rows);
        let ours = DenseCosts::new(rows, cols, costs.clone()).expect("finite costs");
        let floats = Array2::from_shape_vec((rows, cols), costs.clone()).expect("shape");
        let weights = Matrix::from_vec(rows, cols, costs.iter().map(|&c| -(c as i64)).collect())
            .expect("shape");
        let solvers: [(&str, Solver); 3] = [
            (
                "concord",
                Box::new(|| measure(|| solve_dense(black_box(&ours)).total_cost)),
            ),
            (
                "lapjv_rs",
                Box::new(|| {
                    if rows != cols {
                        return Outcome::Skipped("square only");
                    }
                    measure(|| {
                        let (row_to_col, _) = lapjv::lapjv(black_box(&floats)).expect("square");
                        row_to_col
                            .iter()
                            .enumerate()
                            .map(|(r, &c)| costs[r * cols + c])
                            .sum()
                    })
                }),
            ),
            (
                "kuhn_munkres",
                Box::new(|| measure(|| -kuhn_munkres(black_box(&weights)).0 as f64)),
            ),
        ];
        for (name, mut run) in solvers {
            let outcome = if name != "concord" && slow.contains(&(name, family.clone())) {
                Outcome::Skipped("slow")
            } else {
                run()
            };
            match outcome {
                Outcome::Timed(t, total) => {
                    if t > SKIP_AFTER {
                        slow.push((name, family.clone()));
                    }
                    eprintln!("{:<28} {name:<13} {:>12.3} ms", case.name, ms(t));
                    writeln!(
                        out,
                        "{}\t{name}\t{:.9}\t{total}",
                        case.name,
                        t.as_secs_f64()
                    )
                }
                Outcome::Skipped(why) => writeln!(out, "{}\t{name}\t{why}\t", case.name),
            }
            .unwrap();
        }
    }
    fs::write(dir.join(format!("rust.{round}.tsv")), out).expect("write the results");
}

fn once(dir: &Path, name: &str, times: &str) {
    let case = cases()
        .into_iter()
        .find(|c| c.name == name)
        .expect("a case written by `gen`");
    let costs = DenseCosts::new(case.rows, case.cols, read(dir, &case)).expect("finite costs");
    let times: usize = times.parse().expect("a number of solves");
    let mut total = 0.0;
    for _ in 0..times {
        total = solve_dense(black_box(&costs)).total_cost;
    }
    println!("{name}: {total}");
}

fn ms(t: Duration) -> f64 {
    t.as_secs_f64() * 1e3
}
