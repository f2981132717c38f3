//! A workflow definition from arbitrary JSON: built into a workflow or refused with a
//! typed error, never a panic or a stack overflow; a workflow that builds can start a
//! run, and that run's snapshot restores.
#![no_main]

use concord::workflow::{Run, Workflow, WorkflowDefinition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(definition) = serde_json::from_slice::<WorkflowDefinition>(data) else {
        return;
    };
    let Ok(workflow) = Workflow::from_definition(definition) else {
        return;
    };
    let run = Run::new(&workflow, "fuzz", 7, concord::Timestamp::from_secs(1_000));
    Run::restore(&workflow, run.snapshot()).expect("a new run's snapshot restores");
});
