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
use crate::hash::FxHashMap;
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
/// The table is compiled once, in [`new`](Self::new), into one matcher over the
/// words of a text: every keyword whose first word is a whole word (no `*`) is found
/// by looking up each word of the task's kind and description, lowercased, in one
/// hash table; the rest of a phrase is then compared word by word at that place only,
/// and keywords starting with a wildcard are tried on every word. The text is read
/// once, whatever the number of rules. `analyze` allocates only its result.
///
/// # Complexity
/// `analyze` takes O(L + W·(1 + F) + C·P + R) time, L the length of the kind and
/// description, W their number of words, F the number of keywords starting with a
/// wildcard, C the number of places where a phrase's first word occurs, P the
/// longest phrase, R the number of rules and kinds; extra space O(R) (on the stack up
/// to 32 rules).
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
    /// Each rule's kinds, trimmed and lowercased.
    kinds: Vec<Vec<Box<str>>>,
    matcher: Matcher,
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
        let matcher = Matcher::new(&compiled);
        let kinds = compiled.into_iter().map(|c| c.kinds).collect();
        let default_floor = raised(rules.defaults.priority());
        let no_defaults = rules.defaults == Requirements::default();
        Ok(RuleBasedAnalyzer {
            rules,
            kinds,
            matcher,
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

/// What made each rule fire, per rule in table order: [`NOT_FIRED`], a keyword's
/// index in the rule, or a kind's index with [`BY_KIND`] set.
type Hits = [u32];

/// A rule that did not fire.
const NOT_FIRED: u32 = u32::MAX;
/// Marks a hit as the index of a kind, not of a keyword.
const BY_KIND: u32 = 1 << 31;
/// Rules whose hits are kept on the stack; a longer table keeps them on the heap.
const STACK_RULES: usize = 32;

impl RuleBasedAnalyzer {
    /// Runs `f` with a hit per rule, each [`NOT_FIRED`]: on the stack for tables of
    /// the usual size, so that reading a task allocates nothing.
    fn with_hits<R>(&self, f: impl FnOnce(&mut Hits) -> R) -> R {
        let n = self.rules.rules.len();
        if n <= STACK_RULES {
            f(&mut [NOT_FIRED; STACK_RULES][..n])
        } else {
            f(&mut vec![NOT_FIRED; n])
        }
    }

    /// Writes into `hits` what made each rule fire for `task` (read from its kind and
    /// description only): the first listed kind that is the task's, else the first
    /// listed keyword found in its kind or description.
    fn find(&self, task: &Task, hits: &mut Hits) {
        self.matcher.find(task.kind(), hits);
        self.matcher.find(task.description(), hits);
        // A kind the rule names takes precedence over its keywords.
        let kind = task.kind().trim();
        if kind.is_empty() {
            return;
        }
        let ascii = kind.is_ascii();
        for (hit, kinds) in hits.iter_mut().zip(&self.kinds) {
            let same = |k: &str| {
                if ascii {
                    kind.eq_ignore_ascii_case(k)
                } else {
                    eq_lower(kind, k)
                }
            };
            if let Some(i) = kinds.iter().position(|k| same(k)) {
                *hit = BY_KIND | i as u32;
            }
        }
    }

    /// The rules that fired, as reported, in table order; or the error when none did
    /// and one must.
    fn fired(&self, task: &Task, hits: &Hits) -> Result<Vec<FiredRule>, TaskError> {
        let fired: Vec<FiredRule> = self
            .rules
            .rules
            .iter()
            .zip(hits)
            .filter(|&(_, &hit)| hit != NOT_FIRED)
            .map(|(rule, &hit)| FiredRule {
                rule: rule.name.clone(),
                trigger: if hit & BY_KIND != 0 {
                    Trigger::Kind(rule.kinds[(hit & !BY_KIND) as usize].clone())
                } else {
                    Trigger::Keyword(rule.keywords[hit as usize].clone())
                },
            })
            .collect();
        if fired.is_empty() && self.rules.require_match {
            return Err(TaskError::NoRuleMatched { task: task.id() });
        }
        Ok(fired)
    }

    /// Merges into `requirements` (the task's own) the defaults and the requirements
    /// of the rules that fired, and raises the priority to the highest floor.
    fn apply(&self, requirements: &mut Requirements, hits: &Hits) {
        let own_priority = requirements.priority();
        if !self.no_defaults {
            requirements.merge(&self.rules.defaults);
        }
        let mut floor = self.default_floor;
        for (rule, _) in (self.rules.rules.iter().zip(hits)).filter(|&(_, &h)| h != NOT_FIRED) {
            requirements.merge(&rule.requirements);
            floor = floor.max(raised(rule.requirements.priority()));
        }
        requirements.priority = floor.map_or(own_priority, |f| f.max(own_priority));
    }
}

impl TaskAnalyzer for RuleBasedAnalyzer {
    fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError> {
        self.with_hits(|hits| {
            self.find(task, hits);
            let fired = self.fired(task, hits)?;
            let mut requirements = task.requirements().clone();
            self.apply(&mut requirements, hits);
            tracing::debug!(task.id = %task.id(), rules = ?RuleNames(&fired), "task analyzed");
            Ok(Analyzed {
                requirements,
                fired,
            })
        })
    }

    fn analyze_in_place(&self, task: &mut Task) -> Result<Vec<FiredRule>, TaskError> {
        self.with_hits(|hits| {
            self.find(task, hits);
            let fired = self.fired(task, hits)?;
            self.apply(task.requirements_mut(), hits);
            tracing::debug!(task.id = %task.id(), rules = ?RuleNames(&fired), "task analyzed");
            Ok(fired)
        })
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

/// The keywords of a whole table, compiled into one matcher over the words of a text.
///
/// A keyword whose first word is a whole word (the usual case) is found through a
/// hash table from that word, lowercased, to the keywords starting with it: each word
/// of the text is lowercased once (in a buffer on the stack) and looked up once,
/// instead of being compared with every keyword. At a place where a phrase's first
/// word occurs, the rest of the phrase is compared with the words that follow. Words
/// the table cannot hold as keys (with letters outside ASCII, or longer than the
/// buffer) and keywords starting with a wildcard are compared token by token, as the
/// rule is written ([`Token::matches`]), so that matching stays exactly what the
/// definition says for any text.
#[derive(Debug, Clone, Default)]
struct Matcher {
    /// Every keyword of the table, in table order.
    keywords: Vec<Keyword>,
    /// A whole first word (lowercased, at most `WORD_BUF` bytes) to the keywords
    /// starting with it, in table order.
    by_first: FxHashMap<Box<[u8]>, Vec<u32>>,
    /// The keywords whose first word is not a key of `by_first` (a wildcard, or a
    /// word longer than `WORD_BUF` bytes), tried on every word.
    other_first: Vec<u32>,
    /// Per length in bytes (up to `WORD_BUF`), the first and the last bytes of the
    /// ASCII keys of `by_first` of that length, one bit per byte: a word whose
    /// length, first and last bytes (lowercased) are not there is no key.
    ends: Vec<[u128; 2]>,
}

/// One keyword of a [`Matcher`]: its words, and where it stands in the table.
#[derive(Debug, Clone)]
struct Keyword {
    tokens: Vec<Token>,
    rule: u32,
    /// Its index among the rule's keywords.
    index: u32,
}

/// The longest word, in bytes, looked up in [`Matcher::by_first`]: longer words are
/// compared token by token. No keyword of the procedures' table comes near it.
const WORD_BUF: usize = 48;

impl Matcher {
    fn new(rules: &[CompiledRule]) -> Self {
        let mut m = Matcher::default();
        for (rule, compiled) in rules.iter().enumerate() {
            for (index, tokens) in compiled.keywords.iter().enumerate() {
                let k = m.keywords.len() as u32;
                let first = &tokens[0];
                if first.anchor == Anchor::Exact && first.text.len() <= WORD_BUF {
                    let key: &[u8] = first.text.as_bytes();
                    if let (Some(&a), Some(&z)) = (key.first(), key.last()) {
                        // A key outside ASCII is never the lowercase of an ASCII word,
                        // the only words the filter is asked about.
                        if key.is_ascii() {
                            m.ends.resize(WORD_BUF + 1, [0, 0]);
                            let e = &mut m.ends[key.len()];
                            e[0] |= 1u128 << a;
                            e[1] |= 1u128 << z;
                        }
                    }
                    let key = key.into();
                    m.by_first.entry(key).or_default().push(k);
                } else {
                    m.other_first.push(k);
                }
                m.keywords.push(Keyword {
                    tokens: tokens.clone(),
                    rule: rule as u32,
                    index: index as u32,
                });
            }
        }
        m
    }

    /// Records in `hits` (one per rule) each rule's first keyword, in rule order,
    /// that `text` holds, keeping a rule's earlier hit.
    fn find(&self, text: &str, hits: &mut Hits) {
        let mut words = FastWords(text);
        let mut lower = [0u8; WORD_BUF];
        while let Some((word, ascii)) = words.next_word() {
            if ascii && word.len() <= WORD_BUF {
                // Most words of a text start no keyword: told so from their length
                // and first and last letters, before any copy or hash.
                if self.may_start_keyword(word.as_bytes()) {
                    let lower = &mut lower[..word.len()];
                    lower.copy_from_slice(word.as_bytes());
                    lower.make_ascii_lowercase();
                    if let Some(ks) = self.by_first.get(&*lower) {
                        for &k in ks {
                            self.try_keyword(k, &words, hits);
                        }
                    }
                }
            } else {
                // Lowercasing may change the length outside ASCII: every whole first
                // word is compared as the definition compares it.
                for ks in self.by_first.values() {
                    for &k in ks {
                        if self.keywords[k as usize].tokens[0].matches(word) {
                            self.try_keyword(k, &words, hits);
                        }
                    }
                }
            }
            for &k in &self.other_first {
                if self.keywords[k as usize].tokens[0].matches(word) {
                    self.try_keyword(k, &words, hits);
                }
            }
        }
    }

    /// Whether the ASCII word `word` (at most `WORD_BUF` bytes), lowercased, may be a
    /// key of `by_first`: `false` is sure, `true` must be looked up.
    #[inline]
    fn may_start_keyword(&self, word: &[u8]) -> bool {
        let (Some(e), Some(&a), Some(&z)) = (self.ends.get(word.len()), word.first(), word.last())
        else {
            return false;
        };
        let (a, z) = (a.to_ascii_lowercase(), z.to_ascii_lowercase());
        (e[0] >> a) & (e[1] >> z) & 1 != 0
    }

    /// Keyword `k`, whose first word matched the word before `rest`: a hit if its
    /// other words follow, and if it comes before its rule's hit so far.
    fn try_keyword(&self, k: u32, rest: &FastWords<'_>, hits: &mut Hits) {
        let kw = &self.keywords[k as usize];
        let hit = &mut hits[kw.rule as usize];
        if *hit <= kw.index {
            return;
        }
        let mut rest = rest.clone();
        if kw.tokens[1..]
            .iter()
            .all(|t| rest.next_word().is_some_and(|(w, _)| t.matches(w)))
        {
            *hit = kw.index;
        }
    }
}

/// The words of a text: maximal runs of letters and digits, read byte by byte where
/// the text is ASCII.
#[derive(Clone)]
struct FastWords<'a>(&'a str);

impl<'a> FastWords<'a> {
    /// The next word, and whether it is all ASCII.
    fn next_word(&mut self) -> Option<(&'a str, bool)> {
        let text = self.0;
        let bytes = text.as_bytes();
        let mut i = 0;
        // Up to the first letter or digit.
        loop {
            let Some(&b) = bytes.get(i) else {
                self.0 = "";
                return None;
            };
            match BYTE_CLASS[b as usize] {
                ALNUM => break,
                OTHER => i += 1,
                _ => match wide_char(text, i) {
                    (true, _) => break,
                    (false, len) => i += len,
                },
            }
        }
        let start = i;
        let mut ascii = true;
        while let Some(&b) = bytes.get(i) {
            match BYTE_CLASS[b as usize] {
                ALNUM => i += 1,
                OTHER => break,
                _ => match wide_char(text, i) {
                    (true, len) => {
                        ascii = false;
                        i += len;
                    }
                    (false, _) => break,
                },
            }
        }
        self.0 = &text[i..];
        Some((&text[start..i], ascii))
    }
}

/// [`BYTE_CLASS`]: an ASCII letter or digit.
const ALNUM: u8 = 1;
/// [`BYTE_CLASS`]: any other ASCII character.
const OTHER: u8 = 0;
/// [`BYTE_CLASS`]: each byte of an ASCII character, or `2` for the first byte of a
/// wider one (whose class only the whole character tells).
const BYTE_CLASS: [u8; 256] = {
    let mut class = [2u8; 256];
    let mut b = 0;
    while b < 128 {
        class[b] = if (b as u8).is_ascii_alphanumeric() {
            ALNUM
        } else {
            OTHER
        };
        b += 1;
    }
    class
};

/// Whether the character starting at byte `i` of `text` (not ASCII) is a letter or
/// digit, and its length in bytes. Kept out of line: most text is ASCII.
#[cold]
#[inline(never)]
fn wide_char(text: &str, i: usize) -> (bool, usize) {
    // `i` is at a character boundary: the text is only ever advanced by whole ones.
    text.get(i..)
        .and_then(|rest| rest.chars().next())
        .map_or((false, 1), |c| (c.is_alphanumeric(), c.len_utf8()))
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

#[cfg(test)]
mod tests {
    //! The compiled matcher against the analyzer's rule read straight from its
    //! definition (the implementation it replaced, kept here as the oracle).

    use super::*;
    use crate::id::TaskId;
    use proptest::prelude::*;

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

    /// What makes `rule` fire for `task`: the first listed kind that is the task's,
    /// else the first listed keyword found in its kind or description, each keyword
    /// looked for on its own.
    fn fires(compiled: &CompiledRule, rule: &AnalysisRule, task: &Task) -> Option<Trigger> {
        let kind = task.kind().trim();
        if let Some(i) = compiled.kinds.iter().position(|k| eq_lower(kind, k)) {
            return Some(Trigger::Kind(rule.kinds[i].clone()));
        }
        compiled
            .keywords
            .iter()
            .position(|phrase| {
                contains_phrase(task.kind(), phrase) || contains_phrase(task.description(), phrase)
            })
            .map(|i| Trigger::Keyword(rule.keywords[i].clone()))
    }

    /// The analysis as the analyzer defines it, rule by rule.
    fn oracle(rules: &RuleSet, task: &Task) -> Result<Analyzed, TaskError> {
        let mut fired = Vec::new();
        for rule in &rules.rules {
            let compiled = CompiledRule::new(rule)?;
            if let Some(trigger) = fires(&compiled, rule, task) {
                fired.push(FiredRule {
                    rule: rule.name.clone(),
                    trigger,
                });
            }
        }
        if fired.is_empty() && rules.require_match {
            return Err(TaskError::NoRuleMatched { task: task.id() });
        }
        let mut requirements = task.requirements().clone();
        let own_priority = requirements.priority();
        requirements.merge(&rules.defaults);
        let mut floor = raised(rules.defaults.priority());
        for f in &fired {
            let rule = rules.rules.iter().find(|r| r.name == f.rule).unwrap();
            requirements.merge(&rule.requirements);
            floor = floor.max(raised(rule.requirements.priority()));
        }
        requirements.priority = floor.map_or(own_priority, |f| f.max(own_priority));
        Ok(Analyzed {
            requirements,
            fired,
        })
    }

    /// Words of the procedures' table, words close to them, and words whose case
    /// changes their length or bytes outside ASCII.
    const VOCAB: &[&str] = &[
        "deploy",
        "deploys",
        "deployment",
        "redeploy",
        "server",
        "start",
        "the",
        "health",
        "check",
        "checks",
        "healthcheck",
        "open",
        "a",
        "url",
        "launch",
        "browser",
        "screen",
        "capture",
        "visual",
        "visually",
        "verify",
        "report",
        "hand",
        "off",
        "over",
        "security",
        "breach",
        "backup",
        "restore",
        "memory",
        "corrupt",
        "ab",
        "ba",
        "aba",
        "x1",
        "1x",
        "straße",
        "İstanbul",
        "\u{212a}elvin",
        "émile",
        "ÉMILE",
        "ǅ",
        "σς",
        "ΣΑΣ",
    ];

    /// Text between words: separators, and a few characters that join words.
    const GLUE: &[&str] = &[
        " ", "  ", ", ", "-", ". ", "; ", "/", "\t", "—", "_", "é", "1", "\u{301}", " (", ") ",
    ];

    fn word() -> impl Strategy<Value = String> {
        (prop::sample::select(VOCAB), 0..4u8).prop_map(|(w, case)| match case {
            0 => w.to_owned(),
            1 => w.to_uppercase(),
            2 => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
            _ => w
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_uppercase().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect(),
        })
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec((word(), prop::sample::select(GLUE)), 0..max).prop_map(|parts| {
            parts.into_iter().fold(String::new(), |mut s, (w, g)| {
                s.push_str(&w);
                s.push_str(g);
                s
            })
        })
    }

    /// A keyword of one to three words from the vocabulary, each perhaps widened by
    /// a wildcard at either end.
    fn keyword() -> impl Strategy<Value = String> {
        prop::collection::vec((word(), 0..6u8), 1..4).prop_map(|words| {
            words
                .into_iter()
                .map(|(w, anchor)| match anchor {
                    0 => format!("{w}*"),
                    1 => format!("*{w}"),
                    2 => format!("*{w}*"),
                    _ => w,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    fn rule_set() -> impl Strategy<Value = RuleSet> {
        let rule = (
            prop::collection::vec(keyword(), 0..5),
            prop::collection::vec(word(), 0..2),
            0..3usize,
        );
        prop_oneof![
            1 => Just(RuleSet::default()),
            3 => (prop::collection::vec(rule, 1..8), any::<bool>()).prop_map(|(rules, require)| {
                let roles = ["ops", "qa", "security"];
                let mut set = RuleSet::empty().with_require_match(require);
                for (i, (keywords, kinds, role)) in rules.into_iter().enumerate() {
                    let mut r = AnalysisRule::new(format!("r{i}")).with_requirements(
                        Requirements::new()
                            .with_role(Role::new(roles[role]).unwrap())
                            .with_priority(Priority(role as u32 * 40)),
                    );
                    r.keywords = keywords;
                    r.kinds = kinds;
                    if r.keywords.is_empty() && r.kinds.is_empty() {
                        r.kinds.push("never".into());
                    }
                    set = set.with_rule(r);
                }
                set
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The compiled matcher fires the rules the definition fires, for the same
        /// keywords and kinds, and makes the same requirements.
        #[test]
        fn the_matcher_agrees_with_the_definition(
            rules in rule_set(),
            kind in prop_oneof![text(3), word(), word().prop_map(|w| format!("  {w} "))],
            description in text(30),
        ) {
            let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
            let task = Task::new(TaskId::new(1), kind, description);
            let want = oracle(&rules, &task);
            let got = analyzer.analyze(&task);
            prop_assert_eq!(&got, &want);
            let mut in_place = task.clone();
            let fired = analyzer.analyze_in_place(&mut in_place);
            match want {
                Ok(want) => {
                    prop_assert_eq!(fired.unwrap(), want.fired);
                    prop_assert_eq!(in_place.requirements(), &want.requirements);
                }
                Err(e) => prop_assert_eq!(fired.unwrap_err(), e),
            }
        }
    }

    #[test]
    fn a_table_longer_than_the_stack_buffer_still_matches() {
        let mut rules = RuleSet::empty();
        for i in 0..(STACK_RULES + 5) {
            rules =
                rules.with_rule(AnalysisRule::new(format!("r{i}")).with_keyword(format!("w{i}")));
        }
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        let task = Task::new(TaskId::new(1), "", "W36 then w2, and w0");
        let got = analyzer.analyze(&task).unwrap();
        assert_eq!(got.rules().collect::<Vec<_>>(), ["r0", "r2", "r36"]);
        assert_eq!(Ok(got), oracle(&rules, &task));
    }

    #[test]
    fn a_word_longer_than_the_lookup_buffer_is_still_compared() {
        let long = "x".repeat(WORD_BUF + 3);
        let rules = RuleSet::empty()
            .with_rule(AnalysisRule::new("long").with_keyword(long.clone()))
            .with_rule(AnalysisRule::new("short").with_keyword("x"));
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        let task = Task::new(TaskId::new(1), "", format!("a {} b", long.to_uppercase()));
        let got = analyzer.analyze(&task).unwrap();
        assert_eq!(got.rules().collect::<Vec<_>>(), ["long"]);
        assert_eq!(Ok(got), oracle(&rules, &task));
    }
}
