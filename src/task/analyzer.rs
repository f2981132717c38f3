//! The [`TaskAnalyzer`] trait and [`RuleBasedAnalyzer`], its default: a table of
//! keyword rules, plain serde data, that maps a task's kind and description to
//! [`Requirements`] and says which rules fired and why.
//!
//! This is step 1 of the agent assignment procedure, `task_analyzer.analyze(task_description)`.
//! It reads nothing but the task and the table: no clock, no I/O, no agents.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

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

    /// [`analyze_in_place`](Self::analyze_in_place), appending the rules that fired
    /// to `fired` (what it held stays). On an error `task` and `fired` are unchanged.
    ///
    /// The coordinator calls this with one buffer for the whole batch, kept between
    /// batches. The default appends what `analyze_in_place` returns; an analyzer
    /// that writes its rules straight into `fired` (as [`RuleBasedAnalyzer`] does)
    /// overrides it, so that a task costs no list of its own.
    fn analyze_in_place_into(
        &self,
        task: &mut Task,
        fired: &mut Vec<FiredRule>,
    ) -> Result<(), TaskError> {
        fired.extend(self.analyze_in_place(task)?);
        Ok(())
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
        self.fired.iter().map(|f| &*f.rule)
    }

    /// Whether the rule called `rule` fired.
    pub fn has_fired(&self, rule: &str) -> bool {
        self.fired.iter().any(|f| *f.rule == *rule)
    }
}

/// One rule that fired, and what in the task made it fire.
///
/// The names are shared (`Arc<str>`): the analyzer reports the same few names for
/// task after task, and hands out its own copies instead of making new strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FiredRule {
    /// The rule's name.
    pub rule: Arc<str>,
    /// What matched.
    pub trigger: Trigger,
}

impl FiredRule {
    /// `rule` fired because the task's text holds `keyword` (as the rule wrote it).
    pub fn keyword(rule: impl Into<Arc<str>>, keyword: impl Into<Arc<str>>) -> Self {
        FiredRule {
            rule: rule.into(),
            trigger: Trigger::Keyword(keyword.into()),
        }
    }

    /// `rule` fired because the task is of `kind` (as the rule wrote it).
    pub fn kind(rule: impl Into<Arc<str>>, kind: impl Into<Arc<str>>) -> Self {
        FiredRule {
            rule: rule.into(),
            trigger: Trigger::Kind(kind.into()),
        }
    }

    /// The keyword that matched, if a keyword made the rule fire.
    pub fn matched_keyword(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Keyword(k) => Some(&**k),
            Trigger::Kind(_) => None,
        }
    }

    /// The task kind that matched, if the task's kind made the rule fire.
    pub fn matched_kind(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Kind(k) => Some(&**k),
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
    Kind(Arc<str>),
    /// The task's kind or description holds this keyword or phrase (as the rule wrote
    /// it).
    Keyword(Arc<str>),
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
/// by looking up each word of the task's kind and description, ignoring case, in one
/// table; the rest of a phrase is then compared word by word at that place only,
/// and keywords starting with a wildcard are tried on every word. The text is read
/// once, whatever the number of rules, and an ASCII text 64 bytes at a time. The
/// names a [`FiredRule`] reports are shared with the analyzer, not copied: `analyze`
/// allocates only its result's lists.
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
    /// Each of those kinds that is ASCII, to the rules that list it: their index,
    /// and the index of its first listing in the rule.
    kind_table: AsciiTable<Box<[(u32, u32)]>>,
    /// Each rule's name, keywords and kinds as written, shared with what it reports.
    labels: Vec<Labels>,
    matcher: Matcher,
    /// The highest priority above normal among the defaults, or `None`.
    default_floor: Option<Priority>,
    /// Whether the defaults require nothing (merging them changes nothing).
    no_defaults: bool,
    /// For a table of up to [`PAIR_RULES`] rules (else empty), the requirements of
    /// rules `i < j` merged, at `i * rules + j`: a task that fires two rules takes
    /// them in one merge, where the second of two merges built new lists and
    /// resources. Merging is associative, so the result is the same.
    pairs: Vec<Requirements>,
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
        let kinds: Vec<Vec<Box<str>>> = compiled.into_iter().map(|c| c.kinds).collect();
        let kind_table = kind_table(&kinds);
        let labels = rules.rules.iter().map(Labels::new).collect();
        let default_floor = raised(rules.defaults.priority());
        let no_defaults = rules.defaults == Requirements::default();
        let pairs = merged_pairs(&rules.rules);
        Ok(RuleBasedAnalyzer {
            rules,
            kinds,
            kind_table,
            labels,
            matcher,
            default_floor,
            no_defaults,
            pairs,
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

/// The table from each ASCII kind of `kinds` (per rule, lowercased) to the rules
/// listing it, in table order, each with the index of its first listing.
fn kind_table(kinds: &[Vec<Box<str>>]) -> AsciiTable<Box<[(u32, u32)]>> {
    let mut by_kind: Vec<(&str, Vec<(u32, u32)>)> = Vec::new();
    for (rule, kinds) in kinds.iter().enumerate() {
        for (i, kind) in kinds.iter().enumerate().filter(|(_, k)| k.is_ascii()) {
            let rules = match by_kind.iter_mut().find(|(k, _)| k == &&**kind) {
                Some((_, rules)) => rules,
                None => {
                    by_kind.push((kind, Vec::new()));
                    &mut by_kind.last_mut().expect("just pushed").1
                }
            };
            if rules.last().is_none_or(|&(r, _)| r != rule as u32) {
                rules.push((rule as u32, i as u32));
            }
        }
    }
    AsciiTable::new(
        by_kind
            .into_iter()
            .map(|(k, rules)| (k.as_bytes(), rules.into_boxed_slice())),
    )
}

/// The longest table whose rules' requirements are merged two by two in advance
/// ([`RuleBasedAnalyzer::pairs`]): at most 256 merges, kept.
const PAIR_RULES: usize = 16;

/// The requirements of each two rules `i < j` merged, at `i * rules.len() + j` (the
/// others empty); nothing for a table longer than [`PAIR_RULES`].
fn merged_pairs(rules: &[AnalysisRule]) -> Vec<Requirements> {
    if rules.len() > PAIR_RULES {
        return Vec::new();
    }
    let mut pairs = Vec::with_capacity(rules.len() * rules.len());
    for i in 0..rules.len() {
        for j in 0..rules.len() {
            let mut pair = Requirements::new();
            if i < j {
                pair.clone_from(&rules[i].requirements);
                pair.merge(&rules[j].requirements);
            }
            pairs.push(pair);
        }
    }
    pairs
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
        let ascii = self.matcher.find(task.kind(), hits);
        self.matcher.find(task.description(), hits);
        // A kind the rule names takes precedence over its keywords.
        let kind = task.kind().trim();
        if kind.is_empty() {
            return;
        }
        if ascii {
            if let Some(rules) = self.kind_table.get(kind.as_bytes()) {
                for &(rule, i) in rules.iter() {
                    hits[rule as usize] = BY_KIND | i;
                }
            }
            return;
        }
        for (hit, kinds) in hits.iter_mut().zip(&self.kinds) {
            if let Some(i) = kinds.iter().position(|k| eq_lower(kind, k)) {
                *hit = BY_KIND | i as u32;
            }
        }
    }

    /// Appends to `out` the rules that fired, as reported, in table order; or
    /// returns the error (with `out` unchanged) when none did and one must.
    fn fired_into(
        &self,
        task: &Task,
        hits: &Hits,
        out: &mut Vec<FiredRule>,
    ) -> Result<(), TaskError> {
        let before = out.len();
        out.extend(
            self.labels
                .iter()
                .zip(hits)
                .filter(|&(_, &hit)| hit != NOT_FIRED)
                .map(|(labels, &hit)| FiredRule {
                    rule: Arc::clone(&labels.name),
                    trigger: if hit & BY_KIND != 0 {
                        Trigger::Kind(Arc::clone(&labels.kinds[(hit & !BY_KIND) as usize]))
                    } else {
                        Trigger::Keyword(Arc::clone(&labels.keywords[hit as usize]))
                    },
                }),
        );
        if out.len() == before && self.rules.require_match {
            return Err(TaskError::NoRuleMatched { task: task.id() });
        }
        Ok(())
    }

    /// Merges into `requirements` (the task's own) the defaults and the requirements
    /// of the rules that fired, and raises the priority to the highest floor.
    fn apply(&self, requirements: &mut Requirements, hits: &Hits) {
        let own_priority = requirements.priority();
        if !self.no_defaults {
            requirements.merge(&self.rules.defaults);
        }
        let mut floor = self.default_floor;
        let rules = &self.rules.rules;
        // A fired rule waiting for a second one, to merge the two as one.
        let mut first: Option<usize> = None;
        for (i, (rule, _)) in
            (rules.iter().zip(hits).enumerate()).filter(|(_, (_, h))| **h != NOT_FIRED)
        {
            floor = floor.max(raised(rule.requirements.priority()));
            if self.pairs.is_empty() {
                requirements.merge(&rule.requirements);
            } else if let Some(f) = first.take() {
                requirements.merge(&self.pairs[f * rules.len() + i]);
            } else {
                first = Some(i);
            }
        }
        if let Some(f) = first {
            requirements.merge(&rules[f].requirements);
        }
        requirements.priority = floor.map_or(own_priority, |f| f.max(own_priority));
    }
}

impl TaskAnalyzer for RuleBasedAnalyzer {
    fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError> {
        self.with_hits(|hits| {
            self.find(task, hits);
            let mut fired = Vec::new();
            self.fired_into(task, hits, &mut fired)?;
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
        let mut fired = Vec::new();
        self.analyze_in_place_into(task, &mut fired)?;
        Ok(fired)
    }

    fn analyze_in_place_into(
        &self,
        task: &mut Task,
        fired: &mut Vec<FiredRule>,
    ) -> Result<(), TaskError> {
        self.with_hits(|hits| {
            self.find(task, hits);
            let before = fired.len();
            self.fired_into(task, hits, fired)?;
            self.apply(task.requirements_mut(), hits);
            tracing::debug!(task.id = %task.id(), rules = ?RuleNames(&fired[before..]), "task analyzed");
            Ok(())
        })
    }
}

/// A rule's name, keywords and kinds as written, made once: a [`FiredRule`] shares
/// them instead of copying them for every task.
#[derive(Debug, Clone)]
struct Labels {
    name: Arc<str>,
    keywords: Box<[Arc<str>]>,
    kinds: Box<[Arc<str>]>,
}

impl Labels {
    fn new(rule: &AnalysisRule) -> Self {
        let shared = |names: &[String]| names.iter().map(|n| Arc::from(n.as_str())).collect();
        Labels {
            name: Arc::from(rule.name.as_str()),
            keywords: shared(&rule.keywords),
            kinds: shared(&rule.kinds),
        }
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
/// table from that word, lowercased, to the keywords starting with it
/// ([`AsciiTable`]), so each word of the text is looked up once instead of being
/// compared with every keyword. At a place where a phrase's first word occurs, the
/// rest of the phrase is compared with the words that follow. Keywords starting with
/// a wildcard are compared token by token on every word, as the rule is written
/// ([`Token::matches`]).
///
/// A text that is all ASCII (nearly every task) is split into words 64 bytes at a
/// time ([`alnum_bits`]); any other is read character by character ([`FastWords`]),
/// and a word with letters outside ASCII is compared with every whole first word as
/// the definition compares it, so that matching stays exactly what the definition
/// says for any text.
#[derive(Debug, Clone, Default)]
struct Matcher {
    /// Every keyword of the table, in table order.
    keywords: Vec<Keyword>,
    /// Each whole first word that is ASCII once lowercased, to the keywords starting
    /// with it, in table order.
    first: AsciiTable<Box<[u32]>>,
    /// Each whole first word (lowercased), with the keywords starting with it: what a
    /// word with letters outside ASCII is compared with (its lowercase may be ASCII,
    /// as the Kelvin sign's is).
    every_first: Vec<(Token, Box<[u32]>)>,
    /// The keywords whose first word has a wildcard, tried on every word.
    other_first: Vec<u32>,
    /// No word shorter than this (from 1 to 8) may start a keyword, as far as the
    /// ASCII path can tell.
    min_len: u32,
}

/// One keyword of a [`Matcher`]: its words, and where it stands in the table.
#[derive(Debug, Clone)]
struct Keyword {
    tokens: Vec<Token>,
    rule: u32,
    /// Its index among the rule's keywords.
    index: u32,
}

impl Matcher {
    fn new(rules: &[CompiledRule]) -> Self {
        let mut m = Matcher::default();
        // First words in the order first seen, so that every list keeps table order.
        let mut firsts: Vec<(Token, Vec<u32>)> = Vec::new();
        for (rule, compiled) in rules.iter().enumerate() {
            for (index, tokens) in compiled.keywords.iter().enumerate() {
                let k = m.keywords.len() as u32;
                let first = &tokens[0];
                if first.anchor == Anchor::Exact {
                    match firsts.iter_mut().find(|(t, _)| t.text == first.text) {
                        Some((_, ks)) => ks.push(k),
                        None => firsts.push((first.clone(), vec![k])),
                    }
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
        // A key outside ASCII is never the lowercase of an ASCII word, the only words
        // the table is asked about.
        m.first = AsciiTable::new(
            firsts
                .iter()
                .filter(|(t, _)| t.text.is_ascii())
                .map(|(t, ks)| (t.text.as_bytes(), ks.clone().into_boxed_slice())),
        );
        m.min_len = if m.other_first.is_empty() {
            let shortest = firsts.iter().filter(|(t, _)| t.text.is_ascii());
            shortest
                .map(|(t, _)| t.text.len())
                .min()
                .unwrap_or(8)
                .clamp(1, 8) as u32
        } else {
            1
        };
        m.every_first = firsts
            .into_iter()
            .map(|(t, ks)| (t, ks.into_boxed_slice()))
            .collect();
        m
    }

    /// Records in `hits` (one per rule) each rule's first keyword, in rule order,
    /// that `text` holds, keeping a rule's earlier hit. Returns whether `text` is all
    /// ASCII.
    fn find(&self, text: &str, hits: &mut Hits) -> bool {
        if self.find_ascii(text, hits) {
            return true;
        }
        // Words already looked at are recorded again: a hit is kept only if it is
        // earlier, so nothing is counted twice.
        self.find_chars(text, hits);
        false
    }

    /// [`find`](Self::find) for any text, character by character.
    fn find_chars(&self, text: &str, hits: &mut Hits) {
        let mut words = FastWords(text);
        while let Some((word, ascii)) = words.next_word() {
            if ascii {
                if let Some(ks) = self.first.get(word.as_bytes()) {
                    for &k in ks {
                        self.try_keyword(k, &words, hits);
                    }
                }
            } else {
                // Lowercasing may change the length outside ASCII: every whole first
                // word is compared as the definition compares it.
                for (first, ks) in &self.every_first {
                    if first.matches(word) {
                        for &k in ks {
                            self.try_keyword(k, &words, hits);
                        }
                    }
                }
            }
            self.try_other_first(word, &words, hits);
        }
    }

    /// [`find`](Self::find) for a text that is all ASCII: `false`, having perhaps
    /// recorded some hits, if it is not.
    ///
    /// The text is read 64 bytes at a time: which bytes are letters or digits is
    /// worked out 8 at a time in a `u64` and gathered into one bit a byte. Words
    /// shorter than any key are dropped from that mask with a few shifts, and each
    /// word left is found with two bit counts, instead of a branch per byte.
    fn find_ascii(&self, text: &str, hits: &mut Hits) -> bool {
        let bytes = text.as_bytes();
        let mut base = 0;
        while base < bytes.len() {
            let Some(mut bits) = alnum_bits(&bytes[base..bytes.len().min(base + 64)]) else {
                return false;
            };
            let mut next = base + 64;
            if next < bytes.len() && bits >> 63 == 1 {
                // A word runs into the next block: it is read from its start there.
                let start = 64 - (!bits).leading_zeros();
                if start == 0 {
                    // A word of 64 bytes or more, read to its end here.
                    let tail = &bytes[base + 64..];
                    let end = match tail.iter().position(|b| !b.is_ascii_alphanumeric()) {
                        Some(i) if !tail[i].is_ascii() => return false,
                        Some(i) => base + 64 + i,
                        None => bytes.len(),
                    };
                    self.word(text, base, end, hits);
                    base = end;
                    continue;
                }
                bits &= (1 << start) - 1;
                next = base + start as usize;
            }
            // Bit i of `long`: bytes i to i + min_len - 1 are letters or digits.
            let mut long = bits;
            for _ in 1..self.min_len {
                long &= long >> 1;
            }
            let mut starts = bits & !(bits << 1) & long;
            while starts != 0 {
                let start = starts.trailing_zeros();
                let end = start + (!(bits >> start)).trailing_zeros();
                self.word(text, base + start as usize, base + end as usize, hits);
                starts &= starts - 1;
            }
            base = next;
        }
        true
    }

    /// The word `text[start..end]` (nonempty), all ASCII letters and digits, followed
    /// by the rest of `text`.
    #[inline]
    fn word(&self, text: &str, start: usize, end: usize, hits: &mut Hits) {
        let word = &text.as_bytes()[start..end];
        if self.other_first.is_empty() && !self.first.may_hold(word) {
            return;
        }
        self.word_at(text, start, end, hits);
    }

    /// [`word`](Self::word), past the filter: kept out of line, as most words of a
    /// text never get here.
    #[inline(never)]
    fn word_at(&self, text: &str, start: usize, end: usize, hits: &mut Hits) {
        let first = self.first.get(&text.as_bytes()[start..end]);
        if first.is_none() && self.other_first.is_empty() {
            return;
        }
        let rest = FastWords(text.get(end..).unwrap_or_default());
        if let Some(ks) = first {
            for &k in ks.iter() {
                self.try_keyword(k, &rest, hits);
            }
        }
        if !self.other_first.is_empty() {
            let word = text.get(start..end).unwrap_or_default();
            self.try_other_first(word, &rest, hits);
        }
    }

    /// The keywords starting with a wildcard, tried on `word`, followed by `rest`.
    fn try_other_first(&self, word: &str, rest: &FastWords<'_>, hits: &mut Hits) {
        for &k in &self.other_first {
            if self.keywords[k as usize].tokens[0].matches(word) {
                self.try_keyword(k, rest, hits);
            }
        }
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

/// One bit per byte of `block` (at most 64 bytes), set for an ASCII letter or digit;
/// `None` if a byte is not ASCII.
#[inline]
fn alnum_bits(block: &[u8]) -> Option<u64> {
    /// A byte of ones, in each byte.
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    /// The high bit of each byte that is at least `lo`: no carry crosses a byte, as
    /// every byte is below 0x80 and so is what is added to it.
    #[inline]
    fn at_least(x: u64, lo: u8) -> u64 {
        x.wrapping_add((0x80 - lo as u64) * ONES) & HIGH
    }
    let mut bits = 0;
    let mut high = 0;
    let mut eight = |x: u64| {
        high |= x;
        let digit = at_least(x, b'0') & !at_least(x, b'9' + 1);
        // Setting bit 5 lowercases a letter, and makes a letter of no other byte.
        let y = x | (0x20 * ONES);
        let letter = at_least(y, b'a') & !at_least(y, b'z' + 1);
        // The eight high bits, gathered into the top byte (byte i to bit 56 + i),
        // shifted in from the top: a chain from step to step, which keeps the
        // compiler from spreading the steps over vector lanes, slower here than
        // plain 64-bit arithmetic.
        let gathered = ((digit | letter) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        bits = bits >> 8 | gathered << 56;
    };
    let mut chunks = block.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        eight(u64::from_le_bytes(w));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Padded with zeros, which are not letters.
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        eight(u64::from_le_bytes(w));
    }
    // The first byte's bit down to bit 0.
    let steps = block.len().div_ceil(8) as u32;
    bits = bits.checked_shr(64 - 8 * steps).unwrap_or(0);
    (high & HIGH == 0).then_some(bits)
}

/// A table from lowercase ASCII strings to values, looked up with an ASCII string in
/// any case.
///
/// Most words of a text are in no such table. A filter on their length and first
/// byte turns most of them away with one load; the others are looked up by four
/// numbers about the word (its length, and its first, middle and last bytes, case
/// folded: its signature) in a table of signatures, a quarter full or less; only a
/// word whose signature is there is compared with the keys that have it.
///
/// Case is folded by setting bit 5 (`0x20`) of each byte: it does not make a letter
/// of anything else, but it is the same for both cases of a letter, which is all a
/// filter and a signature need.
#[derive(Debug, Clone)]
struct AsciiTable<V> {
    /// Per length (31 for 31 and longer), the low five bits of the first bytes of the
    /// keys of that length, one bit each.
    filter: [u32; 32],
    /// Open addressing (the next slot on a collision), a power of two long.
    slots: Box<[Slot]>,
    /// The keys and their values, those of one signature side by side.
    entries: Vec<Entry<V>>,
}

/// A key of an [`AsciiTable`] and its value.
#[derive(Debug, Clone)]
struct Entry<V> {
    key: Box<[u8]>,
    /// Per byte of `key`, `0x20` if it is a letter, else 0: a byte of a word matches
    /// the key's, ignoring case, if it equals it once OR'ed with this. One OR and one
    /// compare a byte, where lowercasing both sides takes a few more.
    fold: Box<[u8]>,
    value: V,
}

/// A signature of an [`AsciiTable`], and its keys' range in `entries`: empty if the
/// range is.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    sig: u32,
    start: u32,
    end: u32,
}

impl<V> Default for AsciiTable<V> {
    fn default() -> Self {
        AsciiTable {
            filter: [0; 32],
            slots: vec![Slot::default()].into_boxed_slice(),
            entries: Vec::new(),
        }
    }
}

impl<V> AsciiTable<V> {
    /// A table of `entries`, whose keys are lowercase ASCII, nonempty and distinct.
    fn new<'a>(entries: impl IntoIterator<Item = (&'a [u8], V)>) -> Self {
        let mut entries: Vec<(u32, Box<[u8]>, V)> = entries
            .into_iter()
            .map(|(key, v)| (signature(key), key.into(), v))
            .collect();
        entries.sort_by_key(|e| e.0);
        let mut filter = [0; 32];
        for (_, key, _) in &entries {
            filter[key.len().min(31)] |= 1 << (key[0] & 31);
        }
        let groups = entries.chunk_by(|a, b| a.0 == b.0).count();
        let mut slots = vec![Slot::default(); (groups * 4).next_power_of_two()];
        let mask = slots.len() - 1;
        let mut start = 0;
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            let sig = group[0].0;
            let mut i = slot_of(sig, mask);
            while slots[i].end != 0 {
                i = (i + 1) & mask;
            }
            let end = start + group.len() as u32;
            slots[i] = Slot { sig, start, end };
            start = end;
        }
        AsciiTable {
            filter,
            slots: slots.into_boxed_slice(),
            entries: (entries.into_iter())
                .map(|(_, key, value)| Entry {
                    fold: key
                        .iter()
                        .map(|b| if b.is_ascii_lowercase() { 0x20 } else { 0 })
                        .collect(),
                    key,
                    value,
                })
                .collect(),
        }
    }

    /// Whether `word` (nonempty) may be a key once lowercased: `false` is sure.
    #[inline]
    fn may_hold(&self, word: &[u8]) -> bool {
        let n = word.len().min(31);
        (self.filter[n] >> (word[0] & 31)) & 1 != 0
    }

    /// The value of `word` (ASCII, nonempty), lowercased.
    #[inline(always)]
    fn get(&self, word: &[u8]) -> Option<&V> {
        if !self.may_hold(word) {
            return None;
        }
        let sig = signature(word);
        let mask = self.slots.len() - 1;
        let mut i = slot_of(sig, mask);
        loop {
            let slot = self.slots[i];
            if slot.end == 0 {
                return None;
            }
            if slot.sig == sig {
                return self.entries[slot.start as usize..slot.end as usize]
                    .iter()
                    .find(|e| {
                        e.key.len() == word.len()
                            && (word.iter().zip(e.key.iter().zip(e.fold.iter())))
                                .all(|(&w, (&k, &f))| w | f == k)
                    })
                    .map(|e| &e.value);
            }
            i = (i + 1) & mask;
        }
    }
}

/// The signature of an ASCII word (nonempty): its length (up to 255), and its first,
/// middle and last bytes, case folded.
#[inline]
fn signature(word: &[u8]) -> u32 {
    let n = word.len();
    let fold = |i: usize| u32::from(word[i] | 0x20);
    n.min(255) as u32 | fold(0) << 8 | fold(n / 2) << 16 | fold(n - 1) << 24
}

/// The first slot to look at for signature `sig`, in a table `mask + 1` long.
#[inline]
fn slot_of(sig: u32, mask: usize) -> usize {
    ((u64::from(sig).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize) & mask
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
            return Some(Trigger::Kind(rule.kinds[i].as_str().into()));
        }
        compiled
            .keywords
            .iter()
            .position(|phrase| {
                contains_phrase(task.kind(), phrase) || contains_phrase(task.description(), phrase)
            })
            .map(|i| Trigger::Keyword(rule.keywords[i].as_str().into()))
    }

    /// The analysis as the analyzer defines it, rule by rule.
    fn oracle(rules: &RuleSet, task: &Task) -> Result<Analyzed, TaskError> {
        let mut fired = Vec::new();
        for rule in &rules.rules {
            let compiled = CompiledRule::new(rule)?;
            if let Some(trigger) = fires(&compiled, rule, task) {
                fired.push(FiredRule {
                    rule: rule.name.as_str().into(),
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
            let rule = rules.rules.iter().find(|r| *r.name == *f.rule).unwrap();
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

    /// Mostly ASCII text, long enough to cross the ASCII path's blocks: words of the
    /// vocabulary (a few outside ASCII), long runs of letters and digits, and glue.
    fn mostly_ascii_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            8 => word(),
            1 => (1..140usize, prop::sample::select(&["x", "A", "7", "é"][..]))
                .prop_map(|(n, c)| c.repeat(n)),
        ];
        let glue = prop_oneof![
            20 => prop::sample::select(&[" ", ", ", "-", ". ", "/", "\t", "_", "(", ")"][..]),
            1 => prop::sample::select(GLUE),
        ];
        prop::collection::vec((piece, glue), 0..60).prop_map(|parts| {
            parts.into_iter().fold(String::new(), |mut s, (w, g)| {
                s.push_str(&w);
                s.push_str(g);
                s
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The ASCII path (64 bytes at a time) finds what the path for any text
        /// (character by character) finds, and takes exactly the texts that are all
        /// ASCII.
        #[test]
        fn the_ascii_path_agrees_with_the_path_for_any_text(
            rules in rule_set(),
            text in mostly_ascii_text(),
        ) {
            let analyzer = RuleBasedAnalyzer::new(rules).unwrap();
            let n = analyzer.rules.rules.len();
            let (mut fast, mut chars) = (vec![NOT_FIRED; n], vec![NOT_FIRED; n]);
            let ascii = analyzer.matcher.find_ascii(&text, &mut fast);
            prop_assert_eq!(ascii, text.is_ascii());
            analyzer.matcher.find_chars(&text, &mut chars);
            if ascii {
                prop_assert_eq!(fast, chars);
            }
        }

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
    fn a_kind_is_compared_whole_ignoring_case_and_nothing_else() {
        let rules = RuleSet::default();
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        for kind in [
            "Health_Check",
            " HEALTH_CHECK ",
            "health-check",
            "health_chec",
            "health_checks",
            "Security_Incident",
            "security incident",
            "\u{17f}ecurity",
            "_",
            "deploy2",
        ] {
            let task = Task::new(TaskId::new(1), kind, "");
            assert_eq!(analyzer.analyze(&task), oracle(&rules, &task), "{kind:?}");
        }
        let task = Task::new(TaskId::new(1), "Health_Check", "");
        assert!(analyzer.analyze(&task).unwrap().fired[0].matched_kind() == Some("health_check"));
    }

    #[test]
    fn merging_into_no_resources_takes_the_larger_of_each() {
        for r in ["cpu=1", "memory=1Gi,gpu=2", "gpu=1,tpu=3,storage=5Gi"] {
            let r: Resources = r.parse().unwrap();
            let mut req = Requirements::new();
            req.merge(&Requirements::new().with_resources(r.clone()));
            assert_eq!(req.resources(), &Resources::new().max(&r));
        }
    }

    #[test]
    fn words_longer_than_a_signature_and_a_block_are_told_apart() {
        // Both keywords have the longest signature's length; the text's words run
        // across blocks of the ASCII path, and one text takes the other path.
        let rules = RuleSet::empty()
            .with_rule(AnalysisRule::new("long").with_keyword("x".repeat(300)))
            .with_rule(AnalysisRule::new("longer").with_keyword("x".repeat(301)))
            .with_rule(AnalysisRule::new("short").with_keyword("x"));
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        for (text, want) in [
            (format!("a {} b", "X".repeat(301)), &["longer"][..]),
            (format!("{}, x", "x".repeat(300)), &["long", "short"]),
            (format!("{} é", "x".repeat(300)), &["long"]),
            ("x".repeat(128), &[]),
        ] {
            let task = Task::new(TaskId::new(1), "", text);
            let got = analyzer.analyze(&task).unwrap();
            assert_eq!(got.rules().collect::<Vec<_>>(), want);
            assert_eq!(Ok(got), oracle(&rules, &task));
        }
    }
}
