//! Assignment (being written).

pub mod lap;
