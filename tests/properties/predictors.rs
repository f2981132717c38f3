//! Properties of the predictors (filled in by its commit).
