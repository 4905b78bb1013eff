use serde_json::{json, Value};
use slipway_tests::{root, Testbed, LAMBDA_TABLE};

use crate::app::App;

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

/// A Task invokes the real plan function with `$$.Execution.Id`; the 60 s Wait runs at the
/// simulator's speed.
#[tokio::test]
async fn execution_runs_the_plan_function() {
    let _table = LAMBDA_TABLE.lock().await;
    let bed = Testbed::get();
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let execution = run(&bed, &app.event(api, "2222222", &digest));
    assert_eq!(execution.status, "SUCCEEDED", "{execution:?}");
    assert_eq!(execution.path, ["Plan", "WhatToDo", "Settle", "Planned"]);
    let release = &execution.output;
    assert_eq!(release["services"][0]["digest"], digest);
    assert!(release["owner"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:states:us-east-1:123456789012:execution:slipway:local-"));
    bed.invoke(
        "finish",
        &json!({"release": release, "result": "succeeded"}),
    )
    .await
    .unwrap();
    assert!(app.locks().await.is_empty());

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
