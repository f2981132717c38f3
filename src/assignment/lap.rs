//! Linear assignment solvers (being written).
