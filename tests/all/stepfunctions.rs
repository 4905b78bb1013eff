use serde_json::{json, Value};
use slipway_tests::{root, Testbed};

const PLAN_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:plan";

fn run(bed: &Testbed, input: &Value) -> slipway_tests::Execution {
    bed.run_execution(
        &root().join("tests/fixtures/asl/plan-only.asl.json"),
        input,
        &[("PlanFunctionArn", PLAN_ARN)],
    )
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture definition is valid ASL for asl-validator.
#[test]
fn fixture_definition_passes_asl_validator() {
    let out = std::process::Command::new(root().join("node_modules/.bin/asl-validator"))
        .args(["--json-path"])
        .arg(root().join("tests/fixtures/asl/plan-only.asl.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A Task invokes the real plan function; the 60 s Wait runs at the simulator's speed.
#[test]
fn execution_runs_the_plan_function() {
    let bed = Testbed::get();
    let execution = run(&bed, &fixture("ecr-push.json"));
    assert_eq!(execution.status, "SUCCEEDED", "{execution:?}");
    assert_eq!(execution.path, ["Plan", "WhatToDo", "Settle", "Planned"]);
    assert_eq!(execution.output["services"]["name"], "my-repository-name");

    let execution = run(&bed, &fixture("ecr-delete.json"));
    assert_eq!(execution.status, "SUCCEEDED", "{execution:?}");
    assert_eq!(execution.path, ["Plan", "WhatToDo", "NothingToDo"]);
}

/// The function's `errorType` arrives as the Step Functions error of that name: the Catch
/// on `Slipway.InvalidInput` matches it and the execution fails with it.
#[test]
fn handler_error_arrives_as_the_named_step_functions_error() {
    let bed = Testbed::get();
    let execution = run(&bed, &json!({"services": [], "tag": "3f2a1bc"}));
    assert_eq!(execution.status, "FAILED");
    assert_eq!(execution.path, ["Plan", "InputRejected"]);
    assert_eq!(execution.error.as_deref(), Some("Slipway.InvalidInput"));
    assert!(
        execution
            .cause
            .as_deref()
            .unwrap()
            .starts_with("services: empty list"),
        "{execution:?}"
    );
}
