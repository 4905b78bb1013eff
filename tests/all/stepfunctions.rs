use serde_json::{json, Value};
use slipway_tests::{root, Testbed};

use crate::app::App;

const PLAN_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:plan";

fn run(bed: &Testbed, input: &Value) -> slipway_tests::Execution {
    bed.run_execution(
        &root().join("tests/fixtures/asl/plan-only.asl.json"),
        input,
        &[("PlanFunctionArn", PLAN_ARN)],
        None,
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
    let (_table, bed) = Testbed::lane().await;
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

fn error_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "ErrorEquals" {
                    out.extend(
                        v.as_array()
                            .unwrap()
                            .iter()
                            .map(|e| e.as_str().unwrap().to_owned()),
                    );
                } else {
                    error_names(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| error_names(v, out)),
        _ => {}
    }
}

/// The deploy state machine: valid ASL; every error it retries or catches exists (in the
/// core error enum, or as a Step Functions / Lambda service error); every substitution names
/// a function the workspace builds, and every function is used.
#[test]
fn deploy_definition_matches_the_code() {
    let path = root().join("statemachine/deploy.asl.json");
    let out = std::process::Command::new(root().join("node_modules/.bin/asl-validator"))
        .arg("--json-path")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let text = std::fs::read_to_string(&path).unwrap();
    let definition: Value = serde_json::from_str(&text).unwrap();
    // Locks outlive executions and check-config budgets deadlines against this figure.
    assert_eq!(
        definition["TimeoutSeconds"],
        u64::from(slipway_core::config::EXECUTION_TIMEOUT_MINUTES) * 60
    );
    // A release that watches alarms looks at them at least every ALARM_CHECK_SECONDS while
    // its services roll out (an event's look comes before each heartbeat; without one the
    // heartbeat times out into a look), while a stack's update rolls out the services it owns
    // (the same, into DeployStacks) and while it bakes (the WatchBake loop's slices, which
    // health-check cuts to that length).
    let stacks = &definition["States"]["WaitForStackEventsWatchingAlarms"];
    assert_eq!(
        stacks["HeartbeatSeconds"],
        u64::from(slipway_core::config::ALARM_CHECK_SECONDS)
    );
    assert_eq!(stacks["Catch"][0]["Next"], "DeployStacks");
    let group = &definition["States"]["DeployGroups"]["ItemProcessor"]["States"];
    assert_eq!(
        group["WaitForGroupEventsWatchingAlarms"]["HeartbeatSeconds"],
        u64::from(slipway_core::config::ALARM_CHECK_SECONDS)
    );
    assert_eq!(
        group["WaitForGroupEventsWatchingAlarms"]["Catch"][0]["Next"],
        "CheckStability"
    );
    assert_eq!(definition["States"]["BakeSlice"]["Next"], "WatchBake");
    let mut names = vec![];
    error_names(&definition, &mut names);
    assert!(
        names.iter().any(|n| n == "Slipway.Locked"),
        "waits while locked"
    );
    const LAMBDA_ERRORS: [&str; 4] = [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ];
    for name in &names {
        assert!(
            slipway_core::StepError::NAMES.contains(&name.as_str())
                || LAMBDA_ERRORS.contains(&name.as_str())
                // A `.waitForTaskToken` task's own timeouts (Step Functions Developer Guide,
                // "Handling errors in Step Functions workflows").
                || name == "States.Timeout"
                || name == "States.HeartbeatTimeout"
                || name == "States.ALL",
            "ErrorEquals names {name:?}, which no step returns"
        );
    }

    let mut used = vec![];
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').unwrap() + start;
        used.push(rest[start + 2..end].to_owned());
        rest = &rest[end..];
    }
    let kebab = |camel: &str| {
        let mut out = String::new();
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    let mut functions: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    functions.sort();
    let mut named: Vec<String> = used
        .iter()
        .map(|s| {
            let f = s
                .strip_suffix("FunctionArn")
                .unwrap_or_else(|| panic!("${{{s}}} is not a function ARN substitution"));
            let f = kebab(f);
            let manifest =
                std::fs::read_to_string(root().join("functions").join(&f).join("Cargo.toml"))
                    .unwrap_or_else(|_| {
                        panic!("${{{s}}} names {f}, which the workspace does not build")
                    });
            assert!(
                manifest.contains(&format!("name = \"{f}\"")),
                "functions/{f} builds a binary named {f}"
            );
            f
        })
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(
        named, functions,
        "every function is used by the state machine"
    );
    assert_eq!(
        slipway_tests::FUNCTIONS
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .collect::<std::collections::BTreeSet<_>>(),
        used.into_iter().collect::<std::collections::BTreeSet<_>>()
    );
}
