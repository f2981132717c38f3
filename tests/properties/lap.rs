//! Properties of the linear assignment solvers (being written).
