//! The step functions as Lambdas: real binaries behind `cargo lambda watch`'s Invoke API.

use std::time::Duration;

use serde_json::{json, Value};
use slipway_tests::Testbed;

use crate::app::App;

/// `plan` answers through the Invoke API, called by an unmodified AWS SDK client: the
/// AWS CLI's (botocore; version 1 takes the payload as text), as a script or a GitHub
/// workflow would call it.
#[tokio::test]
async fn plan_answers_through_the_invoke_api() {
    let (_table, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let payload = json!({"input": app.event(api, "2222222", &digest), "execution": "arn:aws:states:us-east-1:123456789012:execution:slipway:sdk-1"});
    let scratch = slipway_tests::Scratch::new("invoke");
    let outfile = scratch.join("response.json");
    let (code, out, err) = bed.aws(
        bed.lambda(),
        &[
            "lambda",
            "invoke",
            "--function-name",
            "plan",
            "--payload",
            &payload.to_string(),
            outfile.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let response: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["StatusCode"], 200, "{response}");
    assert_eq!(response.get("FunctionError"), None, "{response}");
    let body: Value = serde_json::from_slice(&std::fs::read(&outfile).unwrap()).unwrap();
    assert_eq!(body["action"], "deploy", "{body}");
    assert_eq!(body["release"]["id"], "sdk-1");
    assert_eq!(
        body["release"]["services"][0]["image"],
        format!("{}@{digest}", api.uri)
    );
    let finished = bed
        .invoke(
            "finish",
            &json!({"release": body["release"], "result": "succeeded"}),
        )
        .await
        .unwrap();
    assert_eq!(finished["result"], "succeeded");
    assert!(app.locks().await.is_empty());
}

/// An invalid input comes back as HTTP 500 with the stable error name, not a Rust type
/// path, and a message naming the field.
#[tokio::test]
async fn plan_rejects_an_invalid_input_with_its_error_name() {
    let bed = Testbed::get();
    for (input, field) in [
        (
            json!({"services": ["api", 3], "tag": "3f2a1bc"}),
            "services[1]",
        ),
        (json!({"services": ["api"], "tag": "bad tag"}), "tag"),
        (
            json!({"services": ["api"], "tag": "x", "colour": "red"}),
            "colour",
        ),
        (
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
                "id": "1", "account": "1", "time": "t", "region": "r", "detail": {}}),
            "detail-type",
        ),
    ] {
        let (name, message) = bed.invoke("plan", &input).await.unwrap_err();
        assert_eq!(name, "Slipway.InvalidInput", "{input}");
        assert!(
            message.starts_with(&format!("{field}:")),
            "{input} → {message}"
        );
    }
    // Every other step names the bad field of its own input the same way.
    for function in [
        "deploy-stack",
        "update-services",
        "check-stability",
        "health-check",
        "roll-back",
        "finish",
    ] {
        let (name, message) = bed
            .invoke(function, &json!({"release": 7}))
            .await
            .unwrap_err();
        assert_eq!(name, "Slipway.InvalidInput", "{function}");
        assert!(message.starts_with("release:"), "{function}: {message}");
    }
}

/// Every step once through `cargo lambda watch`: a release deployed, then one rolled back.
#[tokio::test]
async fn every_step_runs_as_a_lambda() {
    let (_table, bed) = Testbed::lane().await;
    let mut app = App::create(&["api"], Some(bed.lambda_table())).await;
    app.change_stack("lambda").await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let planned = bed
        .invoke("plan", &json!({"input": {"services": ["api"], "tag": "2222222"}, "execution": "lambda-deploy"}))
        .await
        .unwrap();
    let release = planned["release"].clone();

    let mut progress = Value::Null;
    for _ in 0..400 {
        progress = bed
            .invoke(
                "deploy-stack",
                &json!({"release": release, "progress": progress}),
            )
            .await
            .unwrap();
        if progress["done"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(progress["done"], true);
    assert_eq!(progress["changed"][0], app.stack);

    let target = bed
        .invoke(
            "update-services",
            &json!({"release": release, "service": "api"}),
        )
        .await
        .unwrap();
    assert_eq!(target["started"], true);
    let stable = until_stable(&bed, &release, &target, false).await;
    assert_eq!(stable["services"][0]["rollout_state"], "COMPLETED");
    let health = bed
        .invoke("health-check", &json!({"release": release}))
        .await
        .unwrap();
    assert_eq!(health["services"][0]["passes"], 2);
    let record = bed
        .invoke(
            "finish",
            &json!({"release": release, "result": "succeeded"}),
        )
        .await
        .unwrap();
    assert_eq!(record["services"][0]["to"], format!("{}@{digest}", api.uri));
    assert_eq!(
        app.running(api).await,
        target["task_definition"].as_str().unwrap()
    );

    // A second release, rolled back by the roll-back Lambda.
    let next = app.push(api, "3333333").await;
    let planned = bed.invoke("plan", &json!({"input": {"services": ["api"], "digest": next}, "execution": "lambda-rollback"})).await.unwrap();
    let release = planned["release"].clone();
    bed.invoke(
        "update-services",
        &json!({"release": release, "service": "api"}),
    )
    .await
    .unwrap();
    let rollback = bed
        .invoke("roll-back", &json!({"release": release, "error": {"Error": "Slipway.HealthCheckFailed", "Cause": "test"}}))
        .await
        .unwrap();
    assert_eq!(rollback["services"][0]["action"], "restored");
    until_stable(&bed, &release, &rollback["targets"][0], true).await;
    assert_eq!(
        app.running(api).await,
        target["task_definition"].as_str().unwrap()
    );
    let record = bed
        .invoke(
            "finish",
            &json!({"release": release, "result": "failed", "rollback": rollback}),
        )
        .await
        .unwrap();
    assert_eq!(record["result"], "failed");
    assert!(app.locks().await.is_empty());
}

async fn until_stable(bed: &Testbed, release: &Value, target: &Value, rollback: bool) -> Value {
    for _ in 0..600 {
        let look = bed
            .invoke(
                "check-stability",
                &json!({"release": release, "targets": [target], "rollback": rollback}),
            )
            .await
            .unwrap_or_else(|e| panic!("check-stability: {e:?}"));
        if look["stable"] == true {
            return look;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never stable");
}

/// `slipway history` reads the records `finish` wrote, as a table and as JSON.
#[tokio::test]
async fn history_shows_the_records() {
    let bed = Testbed::get();
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let planned = slipway_core::steps::plan(
        &app.clients,
        &slipway_core::steps::SystemClock,
        json!({"input": {"services": ["api"], "digest": digest}, "execution": "history-1"}),
    )
    .await
    .unwrap();
    let slipway_core::model::PlanOutput::Deploy { release } = planned else {
        panic!("{planned:?}")
    };
    let input = slipway_core::model::FinishInput {
        release: *release,
        result: "failed".into(),
        error: Some(json!({"Error": "Slipway.HealthCheckFailed", "Cause": "500"})),
        rollback: None,
        timings: Default::default(),
        execution: None,
    };
    slipway_core::steps::finish(&app.clients, &slipway_core::steps::SystemClock, input)
        .await
        .unwrap();

    let slipway = |args: &[&str]| {
        let bin = slipway_tests::root().join("target/debug/slipway");
        let out = std::process::Command::new(&bin)
            .args(args)
            .envs(bed.vars.iter().filter(|(k, _)| k.starts_with("AWS_")))
            .env("AWS_ENDPOINT_URL_DYNAMODB", bed.moto())
            .output()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (cargo build --workspace --features slipway-core/testbed-clock builds it)", bin.display())
            });
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = slipway(&["history", "--table", &app.clients.table]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["STARTED", "(UTC)", "RELEASE", "RESULT", "TOOK", "SERVICES", "ERROR"],
        "{out}"
    );
    assert!(
        lines[1].contains("history-1")
            && lines[1].contains("failed")
            && lines[1].contains("Slipway.HealthCheckFailed"),
        "{out}"
    );
    assert!(
        lines[1].contains(&format!("api {}", &api.digest[..19])),
        "{out}"
    );
    let (code, out, _) = slipway(&[
        "history",
        "--table",
        &app.clients.table,
        "--service",
        "web",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "[]");
    let (code, out, _) = slipway(&["history", "--table", &app.clients.table, "--json"]);
    assert_eq!(code, Some(0));
    let records: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(records[0]["release"], "history-1");
    let (code, _, err) = slipway(&["history", "--table", "no-such-table"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot read the deployment records from table no-such-table"),
        "{err}"
    );
}
