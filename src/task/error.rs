//! Errors of the `task` domain.
/// STUB: replaced by the analyzer work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// Stub.
    #[error("stub")]
    Stub,
}
