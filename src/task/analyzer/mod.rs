//! The [`TaskAnalyzer`] trait and [`RuleBasedAnalyzer`], its default: a table of
//! keyword rules, plain serde data, that maps a task's kind and description to
//! [`Requirements`] and says which rules fired and why.
//!
//! This is step 1 of the agent assignment procedure, `task_analyzer.analyze(task_description)`.
//! It reads nothing but the task and the table: no clock, no I/O, no agents.

mod matcher;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::TaskError;
use super::{KeptShares, Priority, Requirements, Task};
use crate::id::{Capability, MAX_KEYWORD_LEN, Role, check_label, check_within};
use crate::resource::Resources;
use matcher::{AsciiTable, CompiledRule, Matcher, eq_lower};

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
    /// repeated name, a name or kind that is not a label or a keyword longer than
    /// [`MAX_KEYWORD_LEN`](crate::id::MAX_KEYWORD_LEN) bytes
    /// ([`TaskError::InvalidText`]), a rule with no keyword and no kind, a keyword
    /// with no word or a misplaced `*`, an empty kind.
    pub fn new(rules: RuleSet) -> Result<Self, TaskError> {
        let mut names = BTreeSet::new();
        let mut compiled = Vec::with_capacity(rules.rules.len());
        for (index, rule) in rules.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(TaskError::EmptyRuleName { index });
            }
            // Checked before anything quotes them: every other error names the rule,
            // and a keyword.
            check_label("analysis rule name", &rule.name)
                .and_then(|()| {
                    (rule.keywords.iter())
                        .try_for_each(|k| check_within("keyword", k, MAX_KEYWORD_LEN))
                })
                .and_then(|()| {
                    rule.kinds
                        .iter()
                        .try_for_each(|k| check_label("rule kind", k))
                })
                .map_err(|source| TaskError::InvalidText { index, source })?;
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
    // Each kind's place in `by_kind`: a table of many kinds is compiled in linear
    // time, where a search of the list for each kind took n².
    let mut place: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (rule, kinds) in kinds.iter().enumerate() {
        for (i, kind) in kinds.iter().enumerate().filter(|(_, k)| k.is_ascii()) {
            let at = *place.entry(&**kind).or_insert_with(|| {
                by_kind.push((kind, Vec::new()));
                by_kind.len() - 1
            });
            let rules = &mut by_kind[at].1;
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
        // Kinds are rarely padded: trimming (which decodes the ends as characters)
        // only when an end byte is not plainly printable ASCII.
        let raw = task.kind();
        let plain = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
        let bytes = raw.as_bytes();
        let kind = if plain(bytes.first()) && plain(bytes.last()) {
            raw
        } else {
            raw.trim()
        };
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
        out.extend(fired(hits).map(|(rule, hit)| self.fired_rule(rule, hit)));
        self.check_fired(task, out.len() > before)
    }

    /// The error for `task` if no rule `fired` and one must.
    fn check_fired(&self, task: &Task, fired: bool) -> Result<(), TaskError> {
        if !fired && self.rules.require_match {
            return Err(TaskError::NoRuleMatched { task: task.id() });
        }
        Ok(())
    }

    /// Rule `rule` as reported, fired by `hit` (a keyword's index, or a kind's with
    /// [`BY_KIND`]).
    fn fired_rule(&self, rule: usize, hit: u32) -> FiredRule {
        let labels = &self.labels[rule];
        FiredRule {
            rule: Arc::clone(&labels.name),
            trigger: if hit & BY_KIND != 0 {
                Trigger::Kind(Arc::clone(&labels.kinds[(hit & !BY_KIND) as usize]))
            } else {
                Trigger::Keyword(Arc::clone(&labels.keywords[hit as usize]))
            },
        }
    }

    /// [`analyze_in_place_into`](TaskAnalyzer::analyze_in_place_into), the rules
    /// that fired kept by number in `marks`, to be named by
    /// [`name_fired`](Self::name_fired) only if they are asked for.
    pub(crate) fn analyze_in_place_marked(
        &self,
        task: &mut Task,
        marks: &mut Vec<FiredMark>,
        kept: &mut KeptShares,
    ) -> Result<(), TaskError> {
        self.with_hits(|hits| {
            self.find(task, hits);
            let before = marks.len();
            marks.extend(fired(hits).map(|(rule, hit)| FiredMark {
                rule: rule as u32,
                hit,
            }));
            self.check_fired(task, marks.len() > before)?;
            self.apply_kept(task.requirements_mut(), hits, Some(kept));
            let names = marks[before..].iter();
            let names = names.map(|m| &self.labels[m.rule as usize].name);
            tracing::debug!(task.id = %task.id(), rules = ?RuleNames(names), "task analyzed");
            Ok(())
        })
    }

    /// The rules `marks` hold, as [`analyze_in_place_into`](TaskAnalyzer::analyze_in_place_into)
    /// reports them.
    pub(crate) fn name_fired(&self, marks: &[FiredMark]) -> Vec<FiredRule> {
        (marks.iter())
            .map(|m| self.fired_rule(m.rule as usize, m.hit))
            .collect()
    }

    /// Merges into `requirements` (the task's own) the defaults and the requirements
    /// of the rules that fired, and raises the priority to the highest floor.
    fn apply(&self, requirements: &mut Requirements, hits: &Hits) {
        self.apply_kept(requirements, hits, None);
    }

    /// [`apply`](Self::apply), an empty list of the task's taking the rule's from
    /// `kept` when it is kept there (see [`KeptShares`]).
    fn apply_kept(
        &self,
        requirements: &mut Requirements,
        hits: &Hits,
        mut kept: Option<&mut KeptShares>,
    ) {
        let own_priority = requirements.priority();
        if !self.no_defaults {
            requirements.merge_kept(&self.rules.defaults, kept.as_deref_mut());
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
                requirements.merge_kept(&rule.requirements, kept.as_deref_mut());
            } else if let Some(f) = first.take() {
                requirements.merge_kept(&self.pairs[f * rules.len() + i], kept.as_deref_mut());
            } else {
                first = Some(i);
            }
        }
        if let Some(f) = first {
            requirements.merge_kept(&rules[f].requirements, kept);
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
            tracing::debug!(task.id = %task.id(), rules = ?RuleNames(fired.iter().map(|f| &f.rule)), "task analyzed");
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
            let names = fired[before..].iter().map(|f| &f.rule);
            tracing::debug!(task.id = %task.id(), rules = ?RuleNames(names), "task analyzed");
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
struct RuleNames<I>(I);

impl<'a, I: Iterator<Item = &'a Arc<str>> + Clone> fmt::Debug for RuleNames<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.clone()).finish()
    }
}

/// The rules of `hits` that fired, in table order, each with its hit.
fn fired(hits: &Hits) -> impl Iterator<Item = (usize, u32)> + '_ {
    (hits.iter().enumerate())
        .filter(|&(_, &hit)| hit != NOT_FIRED)
        .map(|(rule, &hit)| (rule, hit))
}

/// A rule that fired for a task, by number: its place in the table and what made it
/// fire (a hit). What the coordinator keeps of each task it analyzes, naming the
/// rules ([`RuleBasedAnalyzer::name_fired`]) only for a task it refuses: a
/// [`FiredRule`] shares two names, and moving their reference counts for every task
/// cost more than finding the rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FiredMark {
    rule: u32,
    hit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_into_no_resources_takes_the_larger_of_each() {
        for r in ["cpu=1", "memory=1Gi,gpu=2", "gpu=1,tpu=3,storage=5Gi"] {
            let r: Resources = r.parse().unwrap();
            let mut req = Requirements::new();
            req.merge(&Requirements::new().with_resources(r.clone()));
            assert_eq!(req.resources(), &Resources::new().max(&r));
        }
    }
}
