//! The task analyzer through the public API: the seed's rule table, word matching,
//! merge semantics, every error, and rule tables as serde data.

use std::sync::Arc;

use concord::task::{AnalysisRule, Analyzed, RuleBasedAnalyzer, RuleSet, TaskError};
use concord::{
    Capability, Claim, Error, Priority, Requirements, Resources, Role, Task, TaskAnalyzer, TaskId,
    Timestamp,
};

fn task(kind: &str, description: &str) -> Task {
    Task::new(TaskId::new(1), kind, description)
}

fn analyze(analyzer: &RuleBasedAnalyzer, kind: &str, description: &str) -> Analyzed {
    analyzer
        .analyze(&task(kind, description))
        .expect("analysis succeeds")
}

fn fired(analyzed: &Analyzed) -> Vec<&str> {
    analyzed.rules().collect()
}

fn roles(req: &Requirements) -> Vec<&str> {
    req.roles().iter().map(Role::as_str).collect()
}

fn capabilities(req: &Requirements) -> Vec<&str> {
    req.capabilities().iter().map(Capability::as_str).collect()
}

fn res(text: &str) -> Resources {
    text.parse().expect("valid resources")
}

/// An analyzer over one rule with the given keywords.
fn one_rule(keywords: &[&str]) -> RuleBasedAnalyzer {
    let rule = keywords
        .iter()
        .fold(AnalysisRule::new("r"), |r, k| r.with_keyword(*k));
    RuleBasedAnalyzer::new(RuleSet::empty().with_rule(rule)).expect("valid rule")
}

fn matches(analyzer: &RuleBasedAnalyzer, description: &str) -> bool {
    analyze(analyzer, "", description).has_fired("r")
}

// ---------------------------------------------------------------------------------
// The default table

#[test]
fn every_default_rule_fires_on_a_realistic_description() {
    let analyzer = RuleBasedAnalyzer::default();
    let cases = [
        ("deploy", "Deploy the web app to the local server"),
        (
            "health_check",
            "Run a health check against localhost:3000/health",
        ),
        ("browser_launch", "Open the URL in Microsoft Edge"),
        (
            "browser_launch",
            "Launch the browser at http://localhost:3000",
        ),
        ("screenshot", "Capture a full-page screenshot of the app"),
        ("screenshot", "Do a visual verification of the landing page"),
        (
            "documentation",
            "Write the verification report with timestamps",
        ),
        ("documentation", "Update the documentation"),
        ("handoff", "Hand off the project to the development agents"),
        (
            "security",
            "Security breach detected: isolate affected agents",
        ),
        ("security", "Patch the vulnerability found in the scan"),
        ("security", "Investigate a possible intrusion"),
        (
            "memory",
            "Memory corruption: stop writes and restore from backup",
        ),
        ("memory", "Take a nightly backup of the shared store"),
    ];
    for (rule, description) in cases {
        let analyzed = analyze(&analyzer, "", description);
        assert!(
            analyzed.has_fired(rule),
            "{rule} should fire on {description:?}; fired {:?}",
            fired(&analyzed)
        );
    }
    // ... and every rule of the table is covered above.
    for rule in analyzer.rules().rules() {
        assert!(
            cases.iter().any(|(r, _)| *r == rule.name()),
            "no case for rule {}",
            rule.name()
        );
    }
}

#[test]
fn the_seed_deployment_steps_map_to_the_seed_roles() {
    let analyzer = RuleBasedAnalyzer::default();
    let steps = [
        (
            "Local server deployment + health check",
            vec!["deploy", "health_check"],
            vec!["ops"],
        ),
        (
            "Automatic browser launch to deployment URL",
            vec!["browser_launch"],
            vec!["ops"],
        ),
        (
            "Screenshot capture + visual verification",
            vec!["screenshot"],
            vec!["qa"],
        ),
        (
            "Deployment success documentation",
            vec!["documentation"],
            vec!["qa"],
        ),
        (
            "Handoff to development agents",
            vec!["handoff"],
            vec!["framework"],
        ),
    ];
    for (description, rules, want_roles) in steps {
        let analyzed = analyze(&analyzer, "", description);
        assert_eq!(fired(&analyzed), rules, "{description}");
        assert_eq!(roles(&analyzed.requirements), want_roles, "{description}");
    }
}

#[test]
fn default_rules_add_capabilities_resources_and_priority() {
    let analyzer = RuleBasedAnalyzer::default();

    let deploy = analyze(&analyzer, "deploy", "ship it");
    assert_eq!(capabilities(&deploy.requirements), ["deploy"]);
    assert_eq!(deploy.requirements.resources(), &res("cpu=1,memory=1Gi"));
    assert_eq!(deploy.fired[0].matched_kind(), Some("deploy"));

    let breach = analyze(&analyzer, "", "Possible breach of the vault");
    assert_eq!(fired(&breach), ["security"]);
    assert_eq!(roles(&breach.requirements), ["security"]);
    assert_eq!(breach.requirements.priority(), Priority::CRITICAL);

    let backup = analyze(&analyzer, "backup", "nightly");
    assert_eq!(roles(&backup.requirements), ["ops"]);
    assert_eq!(capabilities(&backup.requirements), ["memory"]);
    assert_eq!(backup.requirements.resources(), &res("storage=10Gi"));

    let shot = analyze(&analyzer, "", "Take screenshots");
    assert_eq!(shot.requirements.resources(), &res("cpu=500m,memory=1Gi"));
    assert_eq!(shot.requirements.priority(), Priority::NORMAL);
}

#[test]
fn a_task_no_default_rule_matches_gets_its_own_requirements() {
    let analyzer = RuleBasedAnalyzer::default();
    let own = Requirements::new()
        .with_role(Role::new("writer").unwrap())
        .with_priority(Priority::LOW);
    let t = task("essay", "Write a poem about autumn").with_requirements(own.clone());
    let analyzed = analyzer.analyze(&t).unwrap();
    assert!(analyzed.fired.is_empty());
    assert_eq!(analyzed.requirements, own);
}

#[test]
fn default_analyzer_uses_the_default_table() {
    assert_eq!(RuleBasedAnalyzer::default().rules(), &RuleSet::default());
    assert!(!RuleSet::default().require_match());
    assert_eq!(RuleSet::default().defaults(), &Requirements::new());
}

// ---------------------------------------------------------------------------------
// Matching

#[test]
fn keywords_match_whole_words_only() {
    let exact = one_rule(&["deploy"]);
    assert!(matches(&exact, "Deploy the app"));
    assert!(matches(&exact, "please DEPLOY."));
    assert!(matches(&exact, "(deploy)"));
    assert!(matches(&exact, "pre-deploy checks")); // `-` separates words
    assert!(!matches(&exact, "redeploy the app"));
    assert!(!matches(&exact, "deployment done"));
    assert!(!matches(&exact, "deploys"));
    assert!(!matches(&exact, ""));
}

#[test]
fn the_default_table_does_not_match_inside_words() {
    let analyzer = RuleBasedAnalyzer::default();
    let analyzed = analyze(
        &analyzer,
        "",
        "Predeployment and relaunch; insecurity; memoryless; screenshotting",
    );
    assert!(analyzed.fired.is_empty(), "fired {:?}", fired(&analyzed));
}

#[test]
fn wildcards_widen_a_word_when_the_rule_says_so() {
    let prefix = one_rule(&["deploy*"]);
    assert!(matches(&prefix, "deployment"));
    assert!(matches(&prefix, "Deployed"));
    assert!(matches(&prefix, "deploy"));
    assert!(!matches(&prefix, "redeploy"));

    let suffix = one_rule(&["*deploy"]);
    assert!(matches(&suffix, "Redeploy"));
    assert!(matches(&suffix, "deploy"));
    assert!(!matches(&suffix, "deployment"));

    let inside = one_rule(&["*deploy*"]);
    assert!(matches(&inside, "redeployment"));
    assert!(matches(&inside, "REDEPLOYED"));
    assert!(!matches(&inside, "dep loy"));
}

#[test]
fn phrases_match_consecutive_words() {
    let phrase = one_rule(&["health check"]);
    assert!(matches(&phrase, "run the Health Check now"));
    assert!(matches(&phrase, "health-check"));
    assert!(matches(&phrase, "health_check"));
    assert!(matches(&phrase, "health   check"));
    assert!(matches(&phrase, "health\ncheck"));
    assert!(!matches(&phrase, "health and check"));
    assert!(!matches(&phrase, "healthy check"));
    assert!(!matches(&phrase, "check health"));
    assert!(!matches(&phrase, "health"));
}

#[test]
fn a_phrase_does_not_span_kind_and_description() {
    let analyzer = one_rule(&["health check"]);
    let analyzed = analyze(&analyzer, "health", "check the logs");
    assert!(analyzed.fired.is_empty());
    // But keywords are looked for in the kind too.
    let analyzed = analyze(&analyzer, "health-check", "look at the logs");
    assert!(analyzed.has_fired("r"));
}

#[test]
fn matching_ignores_case_beyond_ascii() {
    let analyzer = one_rule(&["Über", "straße"]);
    assert!(matches(&analyzer, "ÜBER alles"));
    assert!(matches(&analyzer, "die STRAẞE"));
    assert!(!matches(&analyzer, "uber"));
}

#[test]
fn kinds_match_the_whole_kind_ignoring_case() {
    let rules = RuleSet::empty().with_rule(AnalysisRule::new("d").with_kind("Deploy"));
    let analyzer = RuleBasedAnalyzer::new(rules).unwrap();
    let analyzed = analyze(&analyzer, " DEPLOY ", "anything");
    assert_eq!(fired(&analyzed), ["d"]);
    assert_eq!(analyzed.fired[0].matched_kind(), Some("Deploy"));
    assert_eq!(analyzed.fired[0].matched_keyword(), None);
    assert!(analyze(&analyzer, "deployment", "").fired.is_empty());
    assert!(analyze(&analyzer, "deploy app", "").fired.is_empty());
    // A kind rule does not look at the description.
    assert!(analyze(&analyzer, "build", "deploy").fired.is_empty());
}

#[test]
fn the_trigger_is_the_kind_first_then_the_first_keyword_in_rule_order() {
    let rule = AnalysisRule::new("r")
        .with_keyword("Open URL")
        .with_keyword("browser")
        .with_kind("browse");
    let analyzer = RuleBasedAnalyzer::new(RuleSet::empty().with_rule(rule)).unwrap();

    let by_kind = analyze(&analyzer, "browse", "open url in the browser");
    assert_eq!(by_kind.fired[0].matched_kind(), Some("browse"));

    let by_keyword = analyze(&analyzer, "web", "in the browser, open url");
    assert_eq!(by_keyword.fired[0].matched_keyword(), Some("Open URL"));
    assert_eq!(by_keyword.fired[0].to_string(), r#"r (keyword "Open URL")"#);
    assert_eq!(by_kind.fired[0].to_string(), r#"r (kind "browse")"#);
}

#[test]
fn rules_are_reported_in_table_order_not_text_order() {
    let rules = RuleSet::empty()
        .with_rule(AnalysisRule::new("z").with_keyword("alpha"))
        .with_rule(AnalysisRule::new("a").with_keyword("omega"))
        .with_rule(AnalysisRule::new("m").with_keyword("never"));
    let analyzer = RuleBasedAnalyzer::new(rules).unwrap();
    let analyzed = analyze(&analyzer, "", "omega then alpha");
    assert_eq!(fired(&analyzed), ["z", "a"]);
    assert!(analyzed.has_fired("a"));
    assert!(!analyzed.has_fired("m"));
}

#[test]
fn odd_text_never_panics() {
    let analyzer = RuleBasedAnalyzer::default();
    let long = "deploy ".repeat(2_000);
    let texts = [
        "",
        " ",
        "*",
        "🚀🚀 deploy🚀",
        "\u{0}\u{feff}",
        "İSTANBUL ǅ ΣΑΣ",
        long.as_str(),
    ];
    for text in texts {
        analyze(&analyzer, text, text);
    }
    assert!(analyze(&analyzer, "", "🚀deploy🚀").has_fired("deploy"));
    assert!(analyze(&analyzer, "", "redeploy it").has_fired("deploy"));
}

// ---------------------------------------------------------------------------------
// Merge semantics

fn merge_table() -> RuleSet {
    RuleSet::empty()
        .with_rule(
            AnalysisRule::new("small")
                .with_keyword("small")
                .with_requirements(
                    Requirements::new()
                        .with_role(Role::new("ops").unwrap())
                        .with_capability(Capability::new("deploy").unwrap())
                        .with_resources(res("cpu=1,memory=1Gi"))
                        .with_deadline(Timestamp::from_secs(300))
                        .with_claim(Claim::exclusive("port/8080")),
                ),
        )
        .with_rule(
            AnalysisRule::new("big")
                .with_keyword("big")
                .with_requirements(
                    Requirements::new()
                        .with_role(Role::new("qa").unwrap())
                        .with_capability(Capability::new("deploy").unwrap())
                        .with_resources(res("cpu=500m,memory=4Gi,gpu=1"))
                        .with_priority(Priority::HIGH)
                        .with_deadline(Timestamp::from_secs(600))
                        .with_claim(Claim::shared("env/staging")),
                ),
        )
        .with_rule(
            AnalysisRule::new("urgent")
                .with_keyword("urgent")
                .with_requirements(Requirements::new().with_priority(Priority::CRITICAL)),
        )
}

#[test]
fn fired_rules_merge_max_resources_union_of_roles_earliest_deadline() {
    let analyzer = RuleBasedAnalyzer::new(merge_table()).unwrap();
    let own = Requirements::new()
        .with_role(Role::new("framework").unwrap())
        .with_resources(res("cpu=2,storage=1Gi"))
        .with_deadline(Timestamp::from_secs(450));
    let t = task("", "small and big").with_requirements(own);
    let req = analyzer.analyze(&t).unwrap().requirements;
    assert_eq!(roles(&req), ["framework", "ops", "qa"]);
    assert_eq!(capabilities(&req), ["deploy"]);
    assert_eq!(req.resources(), &res("cpu=2,memory=4Gi,storage=1Gi,gpu=1"));
    assert_eq!(req.priority(), Priority::HIGH);
    assert_eq!(req.deadline(), Some(Timestamp::from_secs(300)));
    assert_eq!(
        req.claims(),
        [Claim::shared("env/staging"), Claim::exclusive("port/8080")]
    );
}

#[test]
fn the_highest_priority_wins() {
    let analyzer = RuleBasedAnalyzer::new(merge_table()).unwrap();
    let with_priority = |p: Priority, text: &str| {
        let t = task("", text).with_requirements(Requirements::new().with_priority(p));
        analyzer.analyze(&t).unwrap().requirements.priority()
    };
    assert_eq!(
        with_priority(Priority::NORMAL, "big urgent"),
        Priority::CRITICAL
    );
    assert_eq!(with_priority(Priority::NORMAL, "big"), Priority::HIGH);
    assert_eq!(with_priority(Priority::CRITICAL, "big"), Priority::CRITICAL);
    assert_eq!(with_priority(Priority(90), "big"), Priority(90));
    assert_eq!(with_priority(Priority::LOW, "big"), Priority::HIGH);
}

#[test]
fn a_rule_that_says_nothing_about_priority_keeps_a_low_task_low() {
    let analyzer = RuleBasedAnalyzer::new(merge_table()).unwrap();
    let t = task("", "small").with_requirements(Requirements::new().with_priority(Priority::LOW));
    assert_eq!(
        analyzer.analyze(&t).unwrap().requirements.priority(),
        Priority::LOW
    );
    // The same holds for the default table.
    let t = task("deploy", "").with_requirements(Requirements::new().with_priority(Priority::LOW));
    let analyzed = RuleBasedAnalyzer::default().analyze(&t).unwrap();
    assert_eq!(analyzed.requirements.priority(), Priority::LOW);
}

#[test]
fn defaults_apply_to_every_task_whether_or_not_a_rule_fires() {
    let defaults = Requirements::new()
        .with_resources(res("cpu=100m,memory=64Mi"))
        .with_priority(Priority::HIGH)
        .with_deadline(Timestamp::from_secs(1_000));
    let analyzer = RuleBasedAnalyzer::new(merge_table().with_defaults(defaults)).unwrap();

    let none = analyze(&analyzer, "", "nothing matches");
    assert!(none.fired.is_empty());
    assert_eq!(none.requirements.resources(), &res("cpu=100m,memory=64Mi"));
    assert_eq!(none.requirements.priority(), Priority::HIGH);
    assert_eq!(
        none.requirements.deadline(),
        Some(Timestamp::from_secs(1_000))
    );

    let small = analyze(&analyzer, "", "small");
    assert_eq!(small.requirements.resources(), &res("cpu=1,memory=1Gi"));
    assert_eq!(small.requirements.priority(), Priority::HIGH);
    assert_eq!(
        small.requirements.deadline(),
        Some(Timestamp::from_secs(300))
    );
}

#[test]
fn analysis_never_drops_the_tasks_own_requirements() {
    let analyzer = RuleBasedAnalyzer::default();
    let own = Requirements::new()
        .with_capability(Capability::new("gpu-driver").unwrap())
        .with_resources(res("cpu=8,gpu=2"))
        .with_claim(Claim::exclusive("repo/src"));
    let t = task("deploy", "deploy the model server").with_requirements(own.clone());
    let req = analyzer.analyze(&t).unwrap().requirements;
    let mut expected = own;
    expected.merge(&req);
    assert_eq!(
        expected, req,
        "the result already holds the task's own needs"
    );
    assert_eq!(req.resources(), &res("cpu=8,memory=1Gi,gpu=2"));
}

// ---------------------------------------------------------------------------------
// Errors

fn assert_message(err: &TaskError, needle: &str) {
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
    assert!(!msg.ends_with('.'), "{msg:?} ends with a period");
    assert!(
        msg.chars().next().is_some_and(|c| !c.is_uppercase()),
        "{msg:?} starts with a capital"
    );
}

fn build(rules: RuleSet) -> TaskError {
    RuleBasedAnalyzer::new(rules).expect_err("the table is invalid")
}

#[test]
fn an_empty_rule_name_is_an_error_naming_its_position() {
    let err = build(
        RuleSet::empty()
            .with_rule(AnalysisRule::new("ok").with_keyword("x"))
            .with_rule(AnalysisRule::new("  ").with_keyword("y")),
    );
    assert_eq!(err, TaskError::EmptyRuleName { index: 1 });
    assert_message(&err, "#1");
}

#[test]
fn a_duplicate_rule_name_is_an_error_naming_it() {
    let err = build(
        RuleSet::empty()
            .with_rule(AnalysisRule::new("deploy").with_keyword("x"))
            .with_rule(AnalysisRule::new("deploy").with_keyword("y")),
    );
    assert_eq!(
        err,
        TaskError::DuplicateRule {
            rule: "deploy".into()
        }
    );
    assert_message(&err, "\"deploy\"");
}

#[test]
fn a_rule_that_can_never_fire_is_an_error() {
    let err = build(RuleSet::empty().with_rule(AnalysisRule::new("idle")));
    assert_eq!(
        err,
        TaskError::NoTrigger {
            rule: "idle".into()
        }
    );
    assert_message(&err, "\"idle\"");
}

#[test]
fn an_empty_keyword_is_an_error_naming_rule_and_keyword() {
    for keyword in ["", "   ", "--", "!?"] {
        let err = build(
            RuleSet::empty().with_rule(
                AnalysisRule::new("r")
                    .with_keyword("ok")
                    .with_keyword(keyword),
            ),
        );
        assert_eq!(
            err,
            TaskError::EmptyKeyword {
                rule: "r".into(),
                keyword: keyword.into()
            }
        );
        assert_message(&err, &format!("{keyword:?}"));
        assert_message(&err, "\"r\"");
    }
}

#[test]
fn a_misplaced_wildcard_is_an_error_naming_the_keyword() {
    for keyword in ["de*ploy", "*", "**deploy", "deploy**", "open * url"] {
        let err = build(RuleSet::empty().with_rule(AnalysisRule::new("r").with_keyword(keyword)));
        assert_eq!(
            err,
            TaskError::MisplacedWildcard {
                rule: "r".into(),
                keyword: keyword.into()
            },
            "{keyword}"
        );
        assert_message(&err, &format!("{keyword:?}"));
    }
}

#[test]
fn an_empty_kind_is_an_error_naming_the_rule() {
    let err = build(
        RuleSet::empty().with_rule(AnalysisRule::new("k").with_kind("deploy").with_kind(" ")),
    );
    assert_eq!(err, TaskError::EmptyKind { rule: "k".into() });
    assert_message(&err, "\"k\"");
}

#[test]
fn no_rule_matched_is_an_error_only_when_the_table_asks() {
    let lenient = RuleBasedAnalyzer::default();
    let t = Task::new(TaskId::new(42), "poem", "Write a haiku");
    assert!(lenient.analyze(&t).unwrap().fired.is_empty());

    let strict = RuleBasedAnalyzer::new(RuleSet::default().with_require_match(true)).unwrap();
    let err = strict.analyze(&t).unwrap_err();
    assert_eq!(
        err,
        TaskError::NoRuleMatched {
            task: TaskId::new(42)
        }
    );
    assert_message(&err, "task#42");
    assert!(strict.analyze(&task("deploy", "")).is_ok());
}

#[test]
fn task_errors_convert_into_the_crate_error() {
    let err: Error = TaskError::NoRuleMatched {
        task: TaskId::new(3),
    }
    .into();
    assert!(matches!(err, Error::Task(TaskError::NoRuleMatched { .. })));
    assert_eq!(err.to_string(), "no analysis rule matched task#3");
}

#[test]
fn the_first_offending_rule_in_table_order_is_reported() {
    let err = build(
        RuleSet::empty()
            .with_rule(AnalysisRule::new("a").with_keyword("x"))
            .with_rule(AnalysisRule::new("b"))
            .with_rule(AnalysisRule::new("a").with_keyword("y")),
    );
    assert_eq!(err, TaskError::NoTrigger { rule: "b".into() });
}

// ---------------------------------------------------------------------------------
// Serde

#[test]
fn the_default_table_round_trips_through_json() {
    let table = RuleSet::default();
    let json = serde_json::to_string_pretty(&table).unwrap();
    let back: RuleSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, table);
    assert!(json.contains("\"health check\""));
    assert!(json.contains("\"priority\": 100"));
    assert!(json.contains("\"storage\": \"10Gi\""));
}

#[test]
fn a_host_loads_its_own_table_from_json() {
    let json = r#"{
        "defaults": { "resources": { "cpu": "100m", "memory": "128Mi" } },
        "require_match": true,
        "rules": [
            {
                "name": "gpu_training",
                "keywords": ["train*", "fine-tune"],
                "kinds": ["training"],
                "requirements": {
                    "roles": ["ml"],
                    "capabilities": ["cuda"],
                    "resources": { "gpu": 1, "memory": "16Gi" },
                    "priority": 80
                }
            },
            {
                "name": "tokens",
                "keywords": ["summarize", "llm"],
                "requirements": { "resources": "llm_tokens=200k" }
            }
        ]
    }"#;
    let table: RuleSet = serde_json::from_str(json).unwrap();
    assert!(table.require_match());
    assert_eq!(table.rules().len(), 2);
    assert_eq!(table.rules()[0].kinds(), ["training"]);
    let analyzer = RuleBasedAnalyzer::new(table).unwrap();

    let analyzed = analyze(&analyzer, "batch", "Fine-tune, then summarize the results");
    assert_eq!(fired(&analyzed), ["gpu_training", "tokens"]);
    let req = &analyzed.requirements;
    assert_eq!(roles(req), ["ml"]);
    assert_eq!(capabilities(req), ["cuda"]);
    assert_eq!(
        req.resources(),
        &res("cpu=100m,memory=16Gi,gpu=1,llm_tokens=200k")
    );
    assert_eq!(req.priority(), Priority::HIGH);

    assert!(matches!(
        analyzer.analyze(&task("chat", "hello")),
        Err(TaskError::NoRuleMatched { .. })
    ));
}

#[test]
fn a_table_with_a_typo_or_bad_value_is_rejected() {
    let typo = r#"{ "rules": [ { "name": "a", "keyword": ["x"] } ] }"#;
    assert!(serde_json::from_str::<RuleSet>(typo).is_err());
    let top_typo = r#"{ "rule": [] }"#;
    assert!(serde_json::from_str::<RuleSet>(top_typo).is_err());
    let bad_role = r#"{ "rules": [ { "name": "a", "keywords": ["x"],
        "requirements": { "roles": ["not a role"] } } ] }"#;
    assert!(serde_json::from_str::<RuleSet>(bad_role).is_err());
    let bad_amount = r#"{ "rules": [ { "name": "a", "keywords": ["x"],
        "requirements": { "resources": { "memory": "2" } } } ] }"#;
    let err = serde_json::from_str::<RuleSet>(bad_amount).unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn an_empty_table_is_valid_and_fires_nothing() {
    let table: RuleSet = serde_json::from_str(r#"{ "rules": [] }"#).unwrap();
    assert_eq!(table, RuleSet::empty());
    let analyzer = RuleBasedAnalyzer::new(table).unwrap();
    assert!(analyze(&analyzer, "deploy", "deploy").fired.is_empty());
}

#[test]
fn an_analysis_round_trips_through_json() {
    let analyzed = analyze(
        &RuleBasedAnalyzer::default(),
        "deploy",
        "then take a screenshot",
    );
    let json = serde_json::to_value(&analyzed).unwrap();
    assert_eq!(json["fired"][0]["rule"], "deploy");
    assert_eq!(json["fired"][0]["trigger"]["kind"], "deploy");
    assert_eq!(json["fired"][1]["trigger"]["keyword"], "screenshot");
    let back: Analyzed = serde_json::from_value(json).unwrap();
    assert_eq!(back, analyzed);
}

// ---------------------------------------------------------------------------------
// Determinism and the trait

#[test]
fn analysis_is_deterministic() {
    let descriptions = [
        "Local server deployment + health check",
        "Security breach: restore memory from backup and report",
        "Launch the browser, take a screenshot, hand off",
    ];
    for d in descriptions {
        let a = analyze(&RuleBasedAnalyzer::default(), "", d);
        let b = analyze(&RuleBasedAnalyzer::default(), "", d);
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }
}

#[test]
fn analyzers_are_shareable_trait_objects() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RuleBasedAnalyzer>();
    let shared: Arc<dyn TaskAnalyzer> = Arc::new(RuleBasedAnalyzer::default());
    let analyzed = shared.analyze(&task("handoff", "")).unwrap();
    assert_eq!(fired(&analyzed), ["handoff"]);
}

#[test]
fn a_host_can_build_an_analysis_by_hand() {
    let analyzed = Analyzed::new(Requirements::new().with_priority(Priority::HIGH));
    assert!(analyzed.fired.is_empty());
    assert_eq!(analyzed.rules().count(), 0);
}

mod sorted_requirements {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    const ROLES: [&str; 5] = ["ops", "qa", "dev", "sec", "docs"];

    /// Requirements with the roles, capabilities and claims named by the indices.
    fn build(roles: &[usize], caps: &[usize], claims: &[usize]) -> Requirements {
        let mut r = Requirements::new();
        for &i in roles {
            r = r.with_role(Role::new(ROLES[i]).unwrap());
        }
        for &i in caps {
            r = r.with_capability(Capability::new(ROLES[i]).unwrap());
        }
        for &i in claims {
            r = r.with_claim(Claim::exclusive(format!("/srv/{}", ROLES[i])));
        }
        r
    }

    fn names(r: &Requirements) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            r.roles().iter().map(|x| x.as_str().to_owned()).collect(),
            r.capabilities()
                .iter()
                .map(|x| x.as_str().to_owned())
                .collect(),
            r.claims().iter().map(|c| c.resource().to_owned()).collect(),
        )
    }

    fn model(idx: &[usize], prefix: &str) -> Vec<String> {
        let set: BTreeSet<String> = idx
            .iter()
            .map(|&i| format!("{prefix}{}", ROLES[i]))
            .collect();
        set.into_iter().collect()
    }

    proptest! {
        /// Built in any order with repeats, merged with other requirements, cloned and
        /// changed after cloning: the lists are the sorted sets a `BTreeSet` gives,
        /// a clone never sees a later change to its original, and JSON round-trips.
        #[test]
        fn lists_are_sorted_sets_and_clones_are_independent(
            a in prop::collection::vec((0usize..5, 0usize..5, 0usize..5), 0..8),
            b in prop::collection::vec((0usize..5, 0usize..5, 0usize..5), 0..8),
            extra in 0usize..5,
        ) {
            let split = |v: &[(usize, usize, usize)]| -> (Vec<usize>, Vec<usize>, Vec<usize>) {
                (v.iter().map(|x| x.0).collect(), v.iter().map(|x| x.1).collect(), v.iter().map(|x| x.2).collect())
            };
            let ((ra, ca, la), (rb, cb, lb)) = (split(&a), split(&b));
            let mut merged = build(&ra, &ca, &la);
            let before = merged.clone();
            merged.merge(&build(&rb, &cb, &lb));
            let all = |x: &[usize], y: &[usize]| x.iter().chain(y).copied().collect::<Vec<_>>();
            prop_assert_eq!(
                names(&merged),
                (model(&all(&ra, &rb), ""), model(&all(&ca, &cb), ""), model(&all(&la, &lb), "/srv/"))
            );
            // The clone taken before the merge kept its own lists.
            prop_assert_eq!(names(&before), (model(&ra, ""), model(&ca, ""), model(&la, "/srv/")));
            let grown = before.clone().with_role(Role::new(ROLES[extra]).unwrap());
            prop_assert_eq!(names(&before).0, model(&ra, ""));
            prop_assert_eq!(names(&grown).0, model(&all(&ra, &[extra]), ""));
            let json = serde_json::to_string(&merged).unwrap();
            let back: Requirements = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &merged);
            // The bulk forms, on lists already holding some, are the one-at-a-time
            // forms.
            let bulk = before
                .with_roles(rb.iter().map(|&i| Role::new(ROLES[i]).unwrap()))
                .with_capabilities(cb.iter().map(|&i| Capability::new(ROLES[i]).unwrap()))
                .with_claims(lb.iter().map(|&i| Claim::exclusive(format!("/srv/{}", ROLES[i]))));
            prop_assert_eq!(names(&bulk), names(&merged));
            prop_assert_eq!(bulk, back);
        }
    }

    /// A host's list of thousands, in any order, added in one call: sorted once (one
    /// at a time, 20,000 roles took seconds, each call copying the list).
    #[test]
    fn thousands_added_at_once_are_sorted_once() {
        let n = 100_000;
        let caps = (0..n)
            .rev()
            .map(|i| Capability::new(&format!("c{i:06}")).unwrap());
        let r = Requirements::new().with_capabilities(caps.clone().chain(caps));
        assert_eq!(r.capabilities().len(), n);
        assert!(r.capabilities().windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn deserializing_sorts_and_removes_repeats() {
        let r: Requirements =
            serde_json::from_str(r#"{ "roles": ["qa", "ops", "qa"], "capabilities": [] }"#)
                .unwrap();
        assert_eq!(names(&r).0, ["ops", "qa"]);
        assert_eq!(r, build(&[0, 1], &[], &[]));
        assert_eq!(
            serde_json::to_string(&Requirements::new()).unwrap(),
            serde_json::to_string(&serde_json::from_str::<Requirements>("{}").unwrap()).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------
// Analysis in place (what the coordinator does)

mod in_place {
    use super::*;
    use proptest::prelude::*;

    /// A task whose text draws on the merge table's and the seed table's words, with
    /// some requirements of its own.
    fn arb_task() -> impl Strategy<Value = Task> {
        let words = prop::sample::select(vec![
            "small",
            "big",
            "urgent",
            "deploy",
            "health",
            "check",
            "screenshot",
            "browser",
            "document",
            "poem",
            "the",
        ]);
        (
            prop::collection::vec(words.clone(), 0..3),
            prop::collection::vec(words, 0..5),
            prop::option::of(prop::sample::select(vec!["ops", "qa"])),
            0u64..4,
            prop::sample::select(vec![Priority::LOW, Priority::NORMAL, Priority::CRITICAL]),
        )
            .prop_map(|(kind, text, role, cpu, priority)| {
                let mut own = Requirements::new()
                    .with_resources(res(&format!("cpu={cpu}")))
                    .with_priority(priority);
                if let Some(role) = role {
                    own = own.with_role(Role::new(role).unwrap());
                }
                Task::new(TaskId::new(9), kind.join(" "), text.join(" ")).with_requirements(own)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "tests/proptest-regressions/tasks_in_place.txt",
                ),
            )),
            ..ProptestConfig::default()
        })]

        /// Analyzing in place leaves the task with the requirements `analyze` returns
        /// and reports the same rules, with the seed table, the merge table, and a
        /// table that requires a match; when that fails, the task is unchanged.
        #[test]
        fn it_is_analyze_written_into_the_task(task in arb_task(), table in 0..3usize) {
            let rules = match table {
                0 => RuleSet::default(),
                1 => merge_table(),
                _ => merge_table().with_require_match(true),
            };
            let analyzer = RuleBasedAnalyzer::new(rules).unwrap();
            let mut in_place = task.clone();
            match (analyzer.analyze(&task), analyzer.analyze_in_place(&mut in_place)) {
                (Ok(analyzed), Ok(fired)) => {
                    prop_assert_eq!(in_place.requirements(), &analyzed.requirements);
                    prop_assert_eq!(fired, analyzed.fired);
                }
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(in_place, task);
                }
                (a, b) => prop_assert!(false, "analyze {a:?} but in place {b:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Analysis into a buffer the caller keeps

/// An analyzer with only the trait's default `analyze_in_place_into`.
#[derive(Debug)]
struct Wrapped(RuleBasedAnalyzer);

impl TaskAnalyzer for Wrapped {
    fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError> {
        self.0.analyze(task)
    }
}

#[test]
fn analysis_into_a_buffer_appends_what_analysis_returns() {
    let rule_based = RuleBasedAnalyzer::default();
    let wrapped = Wrapped(RuleBasedAnalyzer::default());
    let analyzers: [&dyn TaskAnalyzer; 2] = [&rule_based, &wrapped];
    for analyzer in analyzers {
        let mut kept = task("deploy", "Deploy the web app, then take a screenshot");
        let expected = analyzer.analyze_in_place(&mut kept).expect("analyzed");
        assert!(expected.len() >= 2, "two rules fire: {expected:?}");
        // What the buffer held stays, before what fired.
        let mut fired = vec![expected[0].clone()];
        let mut t = task("deploy", "Deploy the web app, then take a screenshot");
        analyzer
            .analyze_in_place_into(&mut t, &mut fired)
            .expect("analyzed");
        assert_eq!(fired[0], expected[0]);
        assert_eq!(&fired[1..], &expected[..]);
        assert_eq!(t.requirements(), kept.requirements());
    }
}

#[test]
fn analysis_into_a_buffer_that_fails_changes_neither_task_nor_buffer() {
    let strict = RuleBasedAnalyzer::new(
        RuleSet::empty()
            .with_rule(AnalysisRule::new("r").with_keyword("deploy"))
            .with_require_match(true),
    )
    .expect("valid table");
    let wrapped = Wrapped(strict.clone());
    let analyzers: [&dyn TaskAnalyzer; 2] = [&strict, &wrapped];
    for analyzer in analyzers {
        let mut fired = analyzer
            .analyze_in_place(&mut task("deploy", ""))
            .expect("one rule fires");
        let before = fired.clone();
        let mut t = task("docs", "write the notes");
        let untouched = t.clone();
        assert_eq!(
            analyzer.analyze_in_place_into(&mut t, &mut fired),
            Err(TaskError::NoRuleMatched {
                task: TaskId::new(1)
            })
        );
        assert_eq!(fired, before);
        assert_eq!(t, untouched);
    }
}
