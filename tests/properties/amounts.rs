//! Properties of the amounts (filled in by its commit).
