//! Properties of the registry (filled in by its commit).
