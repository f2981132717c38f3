//! The [`TaskAnalyzer`] trait and [`RuleBasedAnalyzer`], its default: a table of
//! keyword rules, plain serde data, that maps a task's kind and description to
//! [`Requirements`] and says which rules fired and why.
//!
//! This is step 1 of the agent assignment procedure, `task_analyzer.analyze(task_description)`.
//! It reads nothing but the task and the table: no clock, no I/O, no agents.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::TaskError;
use super::{Priority, Requirements, Task};
use crate::id::{Capability, Role};
use crate::resource::Resources;

/// Works out what a task needs: the first step of assigning it.
///
/// # Contract
/// - `analyze` decides without waiting: no I/O, no blocking, no clock.
/// - `analyze` is deterministic: the same analyzer and task give the same [`Analyzed`].
/// - The requirements returned include the task's own
///   ([`Task::requirements`]): an analyzer adds to what the host asked for, it never
///   drops any of it.
/// - `analyze` never panics, whatever the task's text holds; it reports a task it
///   cannot make sense of as a [`TaskError`].
///
/// # Examples
/// An analyzer that asks for a gpu for every training task:
/// ```
/// use concord::task::{Analyzed, TaskError};
/// use concord::{Requirements, Resources, Task, TaskAnalyzer, TaskId};
///
/// #[derive(Debug)]
/// struct Training;
/// impl TaskAnalyzer for Training {
///     fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError> {
///         let mut requirements = task.requirements().clone();
///         if task.kind() == "train" {
///             let gpu = Requirements::new().with_resources("gpu=1".parse().unwrap());
///             requirements.merge(&gpu);
///         }
///         Ok(Analyzed::new(requirements))
///     }
/// }
///
/// let task = Task::new(TaskId::new(7), "train", "fine-tune the ranking model");
/// let analyzed = Training.analyze(&task)?;
/// assert_eq!(analyzed.requirements.resources().amount("gpu"), 1);
/// # Ok::<(), TaskError>(())
/// ```
pub trait TaskAnalyzer: fmt::Debug + Send + Sync {
    /// The requirements of `task`, with the reasons for them.
    fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError>;

    /// [`analyze`](Self::analyze), written into `task`: its requirements become the
    /// analyzed ones, and the rules that fired are returned. On an error `task` is
    /// unchanged.
    ///
    /// The coordinator analyzes every task this way. The default calls `analyze` and
    /// moves the requirements in; an analyzer that can merge into the task's own
    /// requirements (as [`RuleBasedAnalyzer`] does) overrides it to spare a copy of
    /// them per task.
    fn analyze_in_place(&self, task: &mut Task) -> Result<Vec<FiredRule>, TaskError> {
        let Analyzed {
            requirements,
            fired,
        } = self.analyze(task)?;
        *task.requirements_mut() = requirements;
        Ok(fired)
    }
}

#[cfg(test)]
fn _obj_safe(_: &dyn TaskAnalyzer) {}

/// What an analyzer decided a task needs, and why.
///
/// Serde data, so a host can journal the decision or show it to an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Analyzed {
    /// What the task needs: its own requirements merged with those of every rule that
    /// fired.
    pub requirements: Requirements,
    /// The rules that fired, in the order of the rule table, each with what matched.
    #[serde(default)]
    pub fired: Vec<FiredRule>,
}

impl Analyzed {
    /// An analysis that rests on no rule.
    pub fn new(requirements: Requirements) -> Self {
        Analyzed {
            requirements,
            fired: Vec::new(),
        }
    }

    /// Records that `rule` fired (appended after the rules already recorded).
    pub fn with_fired(mut self, rule: FiredRule) -> Self {
        self.fired.push(rule);
        self
    }

    /// The names of the rules that fired, in rule order.
    pub fn rules(&self) -> impl Iterator<Item = &str> + '_ {
        self.fired.iter().map(|f| f.rule.as_str())
    }

    /// Whether the rule called `rule` fired.
    pub fn has_fired(&self, rule: &str) -> bool {
        self.fired.iter().any(|f| f.rule == rule)
    }
}

/// One rule that fired, and what in the task made it fire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FiredRule {
    /// The rule's name.
    pub rule: String,
    /// What matched.
    pub trigger: Trigger,
}

impl FiredRule {
    /// `rule` fired because the task's text holds `keyword` (as the rule wrote it).
    pub fn keyword(rule: impl Into<String>, keyword: impl Into<String>) -> Self {
        FiredRule {
            rule: rule.into(),
            trigger: Trigger::Keyword(keyword.into()),
        }
    }

    /// `rule` fired because the task is of `kind` (as the rule wrote it).
    pub fn kind(rule: impl Into<String>, kind: impl Into<String>) -> Self {
        FiredRule {
            rule: rule.into(),
            trigger: Trigger::Kind(kind.into()),
        }
    }

    /// The keyword that matched, if a keyword made the rule fire.
    pub fn matched_keyword(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Keyword(k) => Some(k),
            Trigger::Kind(_) => None,
        }
    }

    /// The task kind that matched, if the task's kind made the rule fire.
    pub fn matched_kind(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Kind(k) => Some(k),
            Trigger::Keyword(_) => None,
        }
    }
}

impl fmt::Display for FiredRule {
    /// `deploy (keyword "deploy*")` or `deploy (kind "deploy")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.trigger {
            Trigger::Keyword(k) => write!(f, "{} (keyword {k:?})", self.rule),
            Trigger::Kind(k) => write!(f, "{} (kind {k:?})", self.rule),
        }
    }
}

/// What made a rule fire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// The task's kind is one the rule lists (as the rule wrote it).
    Kind(String),
    /// The task's kind or description holds this keyword or phrase (as the rule wrote
    /// it).
    Keyword(String),
}

/// One row of a [`RuleSet`]: when it fires, and what it adds to a task's requirements.
///
/// A rule fires when the task's kind is one of its `kinds` (compared whole, ignoring
/// case and surrounding space), or when any of its `keywords` appears in the task's
/// kind or description.
///
/// A keyword is one word or a phrase of several. Text is split into words at every
/// character that is not a letter or digit, and words are compared ignoring case, so
/// the phrase `health check` matches "Health-Check" and "health check", and the
/// keyword `deploy` matches "Deploy the app" but neither "redeploy" nor "deployment".
/// A rule widens a word with a `*`: `deploy*` matches words starting with "deploy"
/// (`deployment`, `deployed`), `*deploy` words ending with it (`redeploy`), and
/// `*deploy*` words holding it anywhere.
///
/// ```
/// use concord::task::AnalysisRule;
/// use concord::{Priority, Requirements};
///
/// let rule = AnalysisRule::new("incident")
///     .with_keyword("outage")
///     .with_keyword("pager*")
///     .with_kind("incident")
///     .with_requirements(Requirements::new().with_priority(Priority::HIGH));
/// assert_eq!(rule.keywords(), ["outage", "pager*"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisRule {
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kinds: Vec<String>,
    #[serde(default)]
    requirements: Requirements,
}

impl AnalysisRule {
    /// A rule called `name` with no keyword, no kind and no requirements yet.
    pub fn new(name: impl Into<String>) -> Self {
        AnalysisRule {
            name: name.into(),
            keywords: Vec::new(),
            kinds: Vec::new(),
            requirements: Requirements::new(),
        }
    }

    /// Adds a keyword or phrase that makes the rule fire.
    pub fn with_keyword(mut self, keyword: impl Into<String>) -> Self {
        self.keywords.push(keyword.into());
        self
    }

    /// Adds a task kind that makes the rule fire.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }

    /// Sets what the rule adds to a task's requirements when it fires.
    pub fn with_requirements(mut self, requirements: Requirements) -> Self {
        self.requirements = requirements;
        self
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The keywords and phrases, as written.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// The task kinds, as written.
    pub fn kinds(&self) -> &[String] {
        &self.kinds
    }

    /// What the rule adds to a task's requirements when it fires.
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }
}

/// The table a [`RuleBasedAnalyzer`] works from: rules in order, the requirements
/// every task gets, and whether a task no rule matches is an error.
///
/// Plain serde data, so a host can keep its own table in its configuration (`rules` is
/// required, `defaults` and `require_match` may be left out). The table is checked
/// when an analyzer is built from it ([`RuleBasedAnalyzer::new`]):
/// ```
/// use concord::task::{RuleBasedAnalyzer, RuleSet, TaskAnalyzer};
/// use concord::{Task, TaskId};
///
/// let json = r#"{
///     "defaults": { "resources": { "cpu": "100m" } },
///     "rules": [
///         { "name": "gpu", "keywords": ["train*", "fine-tune"],
///           "requirements": { "resources": { "gpu": 1 } } }
///     ]
/// }"#;
/// let rules: RuleSet = serde_json::from_str(json)?;
/// let analyzer = RuleBasedAnalyzer::new(rules)?;
/// let task = Task::new(TaskId::new(1), "ml", "Fine-tune the ranking model");
/// let analyzed = analyzer.analyze(&task)?;
/// assert_eq!(analyzed.requirements.resources().to_string(), "cpu=100m,gpu=1");
/// assert_eq!(analyzed.fired[0].to_string(), r#"gpu (keyword "fine-tune")"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`RuleSet::default`] is the table drawn from the operating procedures:
///
/// | rule | fires on | adds |
/// |---|---|---|
/// | `deploy` | `deploy`, `deploys`, `deploying`, `redeploy`, `server deployment`, `start (the) server`; kind `deploy`, `deployment` | role `ops`, capability `deploy`, cpu 1, memory 1Gi |
/// | `health_check` | `health check(s)`, `healthcheck(s)`, `health verification`; kind `health_check` | role `ops`, capability `health_check` |
/// | `browser_launch` | `browser(s)`, `launch`, `launches`, `launched`, `launching`, `open url`, `open the url`, `open a url`; kind `browser_launch` | role `ops`, capability `browser`, cpu 500m, memory 512Mi |
/// | `screenshot` | `screenshot(s)`, `screen capture`, `visual verification`, `visual check`, `visually verify`; kind `screenshot` | role `qa`, capability `screenshot`, cpu 500m, memory 1Gi |
/// | `documentation` | `documentation`, `document`, `documented`, `report(s)`, `reporting`; kind `documentation`, `report` | role `qa`, capability `documentation` |
/// | `handoff` | `handoff(s)`, `hand off`, `hand over`, `handover`; kind `handoff` | role `framework`, capability `handoff` |
/// | `security` | `security`, `breach(es)`, `vulnerability`, `vulnerabilities`, `intrusion(s)`; kind `security`, `security_incident` | role `security`, capability `security`, priority critical |
/// | `memory` | `memory`, `backup(s)`, `restore(s)`, `restoring`, `corruption`, `corrupt`, `corrupted`; kind `memory`, `backup`, `restore` | role `ops`, capability `memory`, storage 10Gi |
///
/// The defaults ask for nothing, and a task no rule matches is not an error.
///
/// An agent must play *every* role the fired rules name, so the keywords are kept
/// specific: "deployment success documentation" (the deployment workflow's QA step) fires only
/// `documentation`, not `deploy`, and asks for `qa` alone. A host writing its own table
/// should keep that in mind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    #[serde(default)]
    defaults: Requirements,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    require_match: bool,
    rules: Vec<AnalysisRule>,
}

impl RuleSet {
    /// A table with no rules: every task gets its own requirements and the defaults.
    pub fn empty() -> Self {
        RuleSet {
            defaults: Requirements::new(),
            require_match: false,
            rules: Vec::new(),
        }
    }

    /// Appends a rule (rules fire and are reported in the order added).
    pub fn with_rule(mut self, rule: AnalysisRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the requirements every task gets, whatever fires.
    pub fn with_defaults(mut self, defaults: Requirements) -> Self {
        self.defaults = defaults;
        self
    }

    /// Whether a task that no rule matches is an error
    /// ([`TaskError::NoRuleMatched`]) rather than a task that needs only the defaults.
    /// Off by default.
    pub fn with_require_match(mut self, require: bool) -> Self {
        self.require_match = require;
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[AnalysisRule] {
        &self.rules
    }

    /// The requirements every task gets.
    pub fn defaults(&self) -> &Requirements {
        &self.defaults
    }

    /// Whether a task that no rule matches is an error.
    pub fn require_match(&self) -> bool {
        self.require_match
    }
}

impl Default for RuleSet {
    /// The table drawn from the operating procedures (see [`RuleSet`]).
    fn default() -> Self {
        let gib = 1u64 << 30;
        let mib = 1u64 << 20;
        let rule = |name: &str, keywords: &[&str], kinds: &[&str], req: Requirements| {
            let mut r = AnalysisRule::new(name).with_requirements(req);
            r.keywords = keywords.iter().map(|&k| k.to_owned()).collect();
            r.kinds = kinds.iter().map(|&k| k.to_owned()).collect();
            r
        };
        let needs = |role: &str, capability: &str| {
            Requirements::new()
                .with_role(builtin_role(role))
                .with_capability(builtin_capability(capability))
        };
        RuleSet::empty()
            .with_rule(rule(
                "deploy",
                &[
                    "deploy",
                    "deploys",
                    "deploying",
                    "redeploy",
                    "server deployment",
                    "start the server",
                    "start server",
                ],
                &["deploy", "deployment"],
                needs("ops", "deploy").with_resources(
                    Resources::new()
                        .with_cpu_millis(1000)
                        .with_memory_bytes(gib),
                ),
            ))
            .with_rule(rule(
                "health_check",
                &[
                    "health check",
                    "health checks",
                    "healthcheck",
                    "healthchecks",
                    "health verification",
                ],
                &["health_check"],
                needs("ops", "health_check"),
            ))
            .with_rule(rule(
                "browser_launch",
                &[
                    "browser",
                    "browsers",
                    "launch",
                    "launches",
                    "launched",
                    "launching",
                    "open url",
                    "open the url",
                    "open a url",
                ],
                &["browser_launch"],
                needs("ops", "browser").with_resources(
                    Resources::new()
                        .with_cpu_millis(500)
                        .with_memory_bytes(512 * mib),
                ),
            ))
            .with_rule(rule(
                "screenshot",
                &[
                    "screenshot",
                    "screenshots",
                    "screen capture",
                    "visual verification",
                    "visual check",
                    "visually verify",
                ],
                &["screenshot"],
                needs("qa", "screenshot")
                    .with_resources(Resources::new().with_cpu_millis(500).with_memory_bytes(gib)),
            ))
            .with_rule(rule(
                "documentation",
                &[
                    "documentation",
                    "document",
                    "documented",
                    "report",
                    "reports",
                    "reporting",
                ],
                &["documentation", "report"],
                needs("qa", "documentation"),
            ))
            .with_rule(rule(
                "handoff",
                &["handoff", "handoffs", "hand off", "hand over", "handover"],
                &["handoff"],
                needs("framework", "handoff"),
            ))
            .with_rule(rule(
                "security",
                &[
                    "security",
                    "breach",
                    "breaches",
                    "vulnerability",
                    "vulnerabilities",
                    "intrusion",
                    "intrusions",
                ],
                &["security", "security_incident"],
                needs("security", "security").with_priority(Priority::CRITICAL),
            ))
            .with_rule(rule(
                "memory",
                &[
                    "memory",
                    "backup",
                    "backups",
                    "restore",
                    "restores",
                    "restoring",
                    "corruption",
                    "corrupt",
                    "corrupted",
                ],
                &["memory", "backup", "restore"],
                needs("ops", "memory")
                    .with_resources(Resources::new().with_storage_bytes(10 * gib)),
            ))
    }
}

fn builtin_role(name: &str) -> Role {
    Role::new(name).expect("built-in role names are valid")
}

fn builtin_capability(name: &str) -> Capability {
    Capability::new(name).expect("built-in capability names are valid")
}

/// The default [`TaskAnalyzer`]: matches a task against a [`RuleSet`] and merges the
/// requirements of every rule that fires.
///
/// The result is the merge ([`Requirements::merge`]: union of roles, capabilities and
/// claims, the larger of each resource, the earlier deadline) of the task's own
/// requirements, the rule set's defaults and every rule that fired. Priority is the
/// exception: [`Priority::NORMAL`] is what every requirement says when it says
/// nothing, so only a rule or default *above* normal raises the task's priority, and
/// a task the host marked low stays low unless a rule asks for more than normal.
///
/// Keywords are compiled once, in [`new`](Self::new); `analyze` allocates only its
/// result.
///
/// # Complexity
/// `analyze` takes O(K·W) time, K the number of keyword words in the table and W the
/// number of words in the task's kind and description, and no extra space beyond the
/// result.
///
/// ```
/// use concord::task::RuleBasedAnalyzer;
/// use concord::{Priority, Task, TaskAnalyzer, TaskId};
///
/// let analyzer = RuleBasedAnalyzer::default();
/// let task = Task::new(TaskId::new(9), "incident", "Intrusion detected; restore from backup");
/// let analyzed = analyzer.analyze(&task)?;
/// assert_eq!(analyzed.rules().collect::<Vec<_>>(), ["security", "memory"]);
/// assert_eq!(analyzed.requirements.priority(), Priority::CRITICAL);
/// let roles: Vec<&str> = analyzed.requirements.roles().iter().map(|r| r.as_str()).collect();
/// assert_eq!(roles, ["ops", "security"]);
/// # Ok::<(), concord::task::TaskError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RuleBasedAnalyzer {
    rules: RuleSet,
    compiled: Vec<CompiledRule>,
    /// The highest priority above normal among the defaults, or `None`.
    default_floor: Option<Priority>,
    /// Whether the defaults require nothing (merging them changes nothing).
    no_defaults: bool,
}

impl RuleBasedAnalyzer {
    /// Checks and compiles `rules`.
    ///
    /// # Errors
    /// A [`TaskError`] naming the first offending rule (in table order): an empty or
    /// repeated name, a rule with no keyword and no kind, a keyword with no word or a
    /// misplaced `*`, an empty kind.
    pub fn new(rules: RuleSet) -> Result<Self, TaskError> {
        let mut names = BTreeSet::new();
        let mut compiled = Vec::with_capacity(rules.rules.len());
        for (index, rule) in rules.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(TaskError::EmptyRuleName { index });
            }
            if !names.insert(rule.name.as_str()) {
                return Err(TaskError::DuplicateRule {
                    rule: rule.name.clone(),
                });
            }
            compiled.push(CompiledRule::new(rule)?);
        }
        let default_floor = raised(rules.defaults.priority());
        let no_defaults = rules.defaults == Requirements::default();
        Ok(RuleBasedAnalyzer {
            rules,
            compiled,
            default_floor,
            no_defaults,
        })
    }

    /// The table this analyzer works from.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

impl Default for RuleBasedAnalyzer {
    /// An analyzer over [`RuleSet::default`], the procedures' table.
    fn default() -> Self {
        RuleBasedAnalyzer::new(RuleSet::default()).expect("the built-in rule table is valid")
    }
}

impl RuleBasedAnalyzer {
    /// The rules that fire for `task` (read from its kind and description only), or
    /// the error when none does and one must.
    fn fired(&self, task: &Task) -> Result<Vec<FiredRule>, TaskError> {
        let mut fired = Vec::new();
        for (rule, compiled) in self.rules.rules.iter().zip(&self.compiled) {
            if let Some(trigger) = compiled.fires(rule, task) {
                fired.push(FiredRule {
                    rule: rule.name.clone(),
                    trigger,
                });
            }
        }
        if fired.is_empty() && self.rules.require_match {
            return Err(TaskError::NoRuleMatched { task: task.id() });
        }
        Ok(fired)
    }

    /// Merges into `requirements` (the task's own) the defaults and the requirements
    /// of the rules in `fired`, and raises the priority to the highest floor.
    fn apply(&self, requirements: &mut Requirements, fired: &[FiredRule]) {
        let own_priority = requirements.priority();
        if !self.no_defaults {
            requirements.merge(&self.rules.defaults);
        }
        let mut floor = self.default_floor;
        // `fired` lists rules in table order, each once.
        let mut rules = self.rules.rules.iter();
        for f in fired {
            if let Some(rule) = rules.find(|r| r.name == f.rule) {
                requirements.merge(&rule.requirements);
                floor = floor.max(raised(rule.requirements.priority()));
            }
        }
        requirements.priority = floor.map_or(own_priority, |f| f.max(own_priority));
    }
}

impl TaskAnalyzer for RuleBasedAnalyzer {
    fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError> {
        let fired = self.fired(task)?;
        let mut requirements = task.requirements().clone();
        self.apply(&mut requirements, &fired);
        tracing::debug!(task.id = %task.id(), rules = ?RuleNames(&fired), "task analyzed");
        Ok(Analyzed {
            requirements,
            fired,
        })
    }

    fn analyze_in_place(&self, task: &mut Task) -> Result<Vec<FiredRule>, TaskError> {
        let fired = self.fired(task)?;
        self.apply(task.requirements_mut(), &fired);
        tracing::debug!(task.id = %task.id(), rules = ?RuleNames(&fired), "task analyzed");
        Ok(fired)
    }
}

/// `p` if it is above the priority every requirement has when it says nothing.
fn raised(p: Priority) -> Option<Priority> {
    (p > Priority::default()).then_some(p)
}

/// Debug-prints the names of the fired rules, without collecting them.
struct RuleNames<'a>(&'a [FiredRule]);

impl fmt::Debug for RuleNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| &r.rule))
            .finish()
    }
}

/// A rule's keywords and kinds, lowercased and split into words once.
#[derive(Debug, Clone)]
struct CompiledRule {
    /// Parallel to the rule's `keywords`.
    keywords: Vec<Vec<Token>>,
    /// Parallel to the rule's `kinds`: trimmed and lowercased.
    kinds: Vec<Box<str>>,
}

impl CompiledRule {
    fn new(rule: &AnalysisRule) -> Result<Self, TaskError> {
        if rule.keywords.is_empty() && rule.kinds.is_empty() {
            return Err(TaskError::NoTrigger {
                rule: rule.name.clone(),
            });
        }
        let keywords = rule
            .keywords
            .iter()
            .map(|k| compile_keyword(&rule.name, k))
            .collect::<Result<Vec<_>, _>>()?;
        let kinds = rule
            .kinds
            .iter()
            .map(|k| {
                let k = k.trim();
                if k.is_empty() {
                    Err(TaskError::EmptyKind {
                        rule: rule.name.clone(),
                    })
                } else {
                    Ok(lowercase(k).collect::<String>().into_boxed_str())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledRule { keywords, kinds })
    }

    /// What makes `rule` fire for `task`, if anything: the first listed kind that is
    /// the task's, else the first listed keyword found in its kind or description.
    fn fires(&self, rule: &AnalysisRule, task: &Task) -> Option<Trigger> {
        let kind = task.kind().trim();
        if let Some(i) = self.kinds.iter().position(|k| eq_lower(kind, k)) {
            return Some(Trigger::Kind(rule.kinds[i].clone()));
        }
        self.keywords
            .iter()
            .position(|phrase| {
                contains_phrase(task.kind(), phrase) || contains_phrase(task.description(), phrase)
            })
            .map(|i| Trigger::Keyword(rule.keywords[i].clone()))
    }
}

/// One lowercased word of a keyword, and how it matches a word of the text.
#[derive(Debug, Clone)]
struct Token {
    text: Box<str>,
    anchor: Anchor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// `word`: the whole word.
    Exact,
    /// `word*`: a word starting with it.
    Prefix,
    /// `*word`: a word ending with it.
    Suffix,
    /// `*word*`: a word holding it.
    Contains,
}

impl Token {
    fn matches(&self, word: &str) -> bool {
        match self.anchor {
            Anchor::Exact => eq_lower(word, &self.text),
            Anchor::Prefix => starts_with_lower(word, &self.text),
            Anchor::Suffix => ends_with_lower(word, &self.text),
            Anchor::Contains => word
                .char_indices()
                .any(|(i, _)| starts_with_lower(&word[i..], &self.text)),
        }
    }
}

/// Splits a keyword into words the way [`Words`] splits text, keeping a `*` at either
/// end of a word as a wildcard.
fn compile_keyword(rule: &str, keyword: &str) -> Result<Vec<Token>, TaskError> {
    let misplaced = || TaskError::MisplacedWildcard {
        rule: rule.to_owned(),
        keyword: keyword.to_owned(),
    };
    let mut tokens = Vec::new();
    for piece in keyword
        .split(|c: char| !(c.is_alphanumeric() || c == '*'))
        .filter(|p| !p.is_empty())
    {
        let (leading, rest) = match piece.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, piece),
        };
        let (trailing, core) = match rest.strip_suffix('*') {
            Some(core) => (true, core),
            None => (false, rest),
        };
        if core.is_empty() || core.contains('*') {
            return Err(misplaced());
        }
        let anchor = match (leading, trailing) {
            (false, false) => Anchor::Exact,
            (false, true) => Anchor::Prefix,
            (true, false) => Anchor::Suffix,
            (true, true) => Anchor::Contains,
        };
        tokens.push(Token {
            text: lowercase(core).collect::<String>().into_boxed_str(),
            anchor,
        });
    }
    if tokens.is_empty() {
        return Err(TaskError::EmptyKeyword {
            rule: rule.to_owned(),
            keyword: keyword.to_owned(),
        });
    }
    Ok(tokens)
}

/// Whether the consecutive words `phrase` appear in `text`.
fn contains_phrase(text: &str, phrase: &[Token]) -> bool {
    let mut words = Words(text);
    loop {
        let mut probe = words.clone();
        if phrase
            .iter()
            .all(|t| probe.next().is_some_and(|w| t.matches(w)))
        {
            return true;
        }
        if words.next().is_none() {
            return false;
        }
    }
}

/// The words of a text: maximal runs of letters and digits.
#[derive(Clone)]
struct Words<'a>(&'a str);

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let Some(start) = self.0.find(char::is_alphanumeric) else {
            self.0 = "";
            return None;
        };
        let rest = &self.0[start..];
        let end = rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        self.0 = tail;
        Some(word)
    }
}

fn lowercase(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// Whether `word`, lowercased, equals `lower` (already lowercase).
fn eq_lower(word: &str, lower: &str) -> bool {
    if word.is_ascii() {
        word.eq_ignore_ascii_case(lower)
    } else {
        lowercase(word).eq(lower.chars())
    }
}

fn starts_with_lower(word: &str, lower: &str) -> bool {
    let mut w = lowercase(word);
    lower.chars().all(|c| w.next() == Some(c))
}

fn ends_with_lower(word: &str, lower: &str) -> bool {
    let mut w = word.chars().rev().flat_map(|c| c.to_lowercase().rev());
    lower.chars().rev().all(|c| w.next() == Some(c))
}
