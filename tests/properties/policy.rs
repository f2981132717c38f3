//! Properties of the policies (being written).
