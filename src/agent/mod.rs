//! STUB: replaced by the agent work.
