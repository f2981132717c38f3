//! Errors of the `task` domain: a rule table that cannot be compiled, and a task no
//! rule could make sense of.

use crate::id::TaskId;

/// An error from a [`TaskAnalyzer`](super::TaskAnalyzer) or from building a
/// [`RuleBasedAnalyzer`](super::RuleBasedAnalyzer) out of a [`RuleSet`](super::RuleSet).
///
/// Every variant names the offending rule, keyword or task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// A rule's name is empty or only whitespace.
    #[error("analysis rule #{index} has an empty name")]
    EmptyRuleName {
        /// The rule's position in the table, from zero.
        index: usize,
    },
    /// Two rules share a name, so the rules that fired could not be told apart.
    #[error("analysis rule {rule:?} is defined more than once")]
    DuplicateRule {
        /// The repeated name.
        rule: String,
    },
    /// A rule has neither a keyword nor a kind, so it could never fire.
    #[error("analysis rule {rule:?} has no keyword and no kind, so it can never fire")]
    NoTrigger {
        /// The rule.
        rule: String,
    },
    /// A keyword holds no word at all (empty, whitespace or punctuation only).
    #[error("analysis rule {rule:?} has keyword {keyword:?} with no word in it")]
    EmptyKeyword {
        /// The rule.
        rule: String,
        /// The keyword as written.
        keyword: String,
    },
    /// A keyword has a `*` that is not at the start or end of a word, or a `*` with no
    /// word attached.
    #[error(
        "analysis rule {rule:?} has keyword {keyword:?} with a misplaced `*` (only a leading or trailing `*` on a word is a wildcard)"
    )]
    MisplacedWildcard {
        /// The rule.
        rule: String,
        /// The keyword as written.
        keyword: String,
    },
    /// A task kind listed by a rule is empty or only whitespace.
    #[error("analysis rule {rule:?} lists an empty task kind")]
    EmptyKind {
        /// The rule.
        rule: String,
    },
    /// A rule's name or kind is not a label (more than
    /// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes, or a control or invisible
    /// character in it), or a keyword is longer than
    /// [`MAX_KEYWORD_LEN`](crate::id::MAX_KEYWORD_LEN) bytes or holds a control or
    /// invisible character.
    #[error("analysis rule #{index}: {source}")]
    InvalidText {
        /// The rule's position in the table, from zero.
        index: usize,
        /// What is wrong, naming the text (its first 64 characters when it is long).
        source: crate::id::NameError,
    },
    /// No rule matched the task, and the rule set asks for at least one match.
    #[error("no analysis rule matched {task}")]
    NoRuleMatched {
        /// The task.
        task: TaskId,
    },
}
