//! Cost shapes for the linear assignment benches, from the LAP literature, all with
//! integer costs (stored as `f64`) so that every solver's optimal total is exact and
//! the peer bench can compare them for equality.
//!
//! - `uniform`: uniform in [0, 100,000), the usual random benchmark (Dell'Amico and
//!   Toth 2000, class "uniformly random").
//! - `ties`: uniform in [0, 100): many equal reduced costs, where the order in which a
//!   solver breaks ties decides how long its searches run.
//! - `geometric`: rows and columns are points drawn uniformly in a 100,000-wide
//!   square, the cost their Euclidean distance rounded down (Dell'Amico and Toth's
//!   "geometric").
//! - `anti_geometric`: 141,422 minus the geometric cost, so that far points are cheap
//!   (their "anti-geometric"): each row's cheapest columns are shared with many rows.
//! - `machol_wien`: `(i + 1) * (j + 1)`, the structured hard case of Machol and Wien
//!   (1976): every row ranks the columns the same way, and the optimum pairs the
//!   largest rows with the smallest columns.
//! - `two_cost`: 1 or 1,000,000 with equal probability (Dell'Amico and Toth's "two
//!   cost"): almost every reduced cost is tied.

use crate::rng::Rng;

/// A cost shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Uniform,
    Ties,
    Geometric,
    AntiGeometric,
    MacholWien,
    TwoCost,
}

impl Shape {
    /// Every shape, in table order.
    #[allow(dead_code)]
    pub const ALL: [Shape; 6] = [
        Shape::Uniform,
        Shape::Ties,
        Shape::Geometric,
        Shape::AntiGeometric,
        Shape::MacholWien,
        Shape::TwoCost,
    ];

    /// The shape's name in tables and file names.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Uniform => "uniform",
            Shape::Ties => "ties",
            Shape::Geometric => "geometric",
            Shape::AntiGeometric => "anti_geometric",
            Shape::MacholWien => "machol_wien",
            Shape::TwoCost => "two_cost",
        }
    }

    /// The shape named `name`.
    #[allow(dead_code)]
    pub fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// A `rows x cols` row-major matrix of this shape, the same for the same seed.
    pub fn matrix(self, rows: usize, cols: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng(seed | 1);
        let mut points = |k: usize| -> Vec<(f64, f64)> {
            (0..k)
                .map(|_| (rng.below(100_000) as f64, rng.below(100_000) as f64))
                .collect()
        };
        match self {
            Shape::Uniform => uniform(rows * cols, 100_000, seed),
            Shape::Ties => uniform(rows * cols, 100, seed),
            Shape::Geometric | Shape::AntiGeometric => {
                let (p, q) = (points(rows), points(cols));
                let mut out = Vec::with_capacity(rows * cols);
                for &(x, y) in &p {
                    for &(a, b) in &q {
                        let d = ((x - a) * (x - a) + (y - b) * (y - b)).sqrt().floor();
                        out.push(if self == Shape::Geometric {
                            d
                        } else {
                            141_422.0 - d
                        });
                    }
                }
                out
            }
            Shape::MacholWien => (0..rows)
                .flat_map(|i| (0..cols).map(move |j| ((i + 1) * (j + 1)) as f64))
                .collect(),
            Shape::TwoCost => {
                let mut rng = Rng(seed | 1);
                (0..rows * cols)
                    .map(|_| if rng.next() >> 63 == 0 { 1.0 } else { 1e6 })
                    .collect()
            }
        }
    }
}

/// `len` costs uniform in [0, range).
fn uniform(len: usize, range: u64, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.below(range) as f64).collect()
}
