//! STUB: replaced by the analyzer work.
/// Stub.
pub trait TaskAnalyzer {}
/// Stub.
#[derive(Debug, Default)]
pub struct RuleBasedAnalyzer;
/// Stub.
#[derive(Debug, Default)]
pub struct RuleSet;
/// Stub.
#[derive(Debug, Default)]
pub struct AnalysisRule;
/// Stub.
#[derive(Debug, Default)]
pub struct Analyzed;
