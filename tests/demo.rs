//! `scripts/demo`: Slipway's main job on the local test bed, end to end.
//!
//! Sets up the reference staging app of `examples/staging` (six stacks, four services) in
//! slipway-sim and moto, stores its `slipway.toml` in the state table, pushes a new `api`
//! image to ECR and runs `statemachine/deploy.asl.json` from that push's ECR event — every
//! step the real Lambda — to SUCCEEDED, with a per-step timeline. Then pushes a bad image and
//! shows the automatic rollback. Runs inside `scripts/testbed run`, which provides the bed.

use std::time::Instant;

use serde_json::{json, Value};
use slipway_core::{model::DeploymentRecord, state};
use slipway_tests::staging::push;
use slipway_tests::{ecr_push_event, root, Execution, Testbed};

type Result<T> = std::result::Result<T, String>;

fn say(start: Instant, text: impl AsRef<str>) {
    println!("[{:6.1}s] {}", start.elapsed().as_secs_f64(), text.as_ref());
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let t = Instant::now();
    let bed = Testbed::get();
    let clients = bed.clients(bed.lambda_table()).await;

    slipway_tests::staging::create(&bed, &clients, |text| say(t, text)).await?;

    let installed = bootstrap(&bed, t)?;

    let digest = push(&clients, "staging/api", "3f2a1bc").await?;
    let event = ecr_push_event("staging/api", "3f2a1bc", &digest);
    say(t, format!("pushed staging/api:3f2a1bc = {digest}"));
    println!("           ECR event: {event}");
    rule_matches(&bed, t, &installed, &event)?;
    let x = bed.deploy(&event, "demo-api-3f2a1bc").await;
    report(t, &x, &clients).await?;
    if x.status != "SUCCEEDED" {
        return Err("the deployment did not succeed".into());
    }

    let good_td = running_task_definition(&clients, "staging-api").await?;

    // A bad image: its /health answers 500. The ALB's target group checks /health, so its
    // targets go unhealthy, ECS stops them as failed tasks, and the circuit breaker fails the
    // deployment and rolls it back — before Slipway's own health check would run.
    let bad = push(&clients, "staging/api", "badc0de").await?;
    bed.add_scenario(json!({"images": [{"match": bad, "failure": "health-500"}]}))
        .await;
    say(
        t,
        format!("pushed staging/api:badc0de = {bad} (its /health answers 500)"),
    );
    let x = bed
        .deploy(
            &ecr_push_event("staging/api", "badc0de", &bad),
            "demo-api-badc0de",
        )
        .await;
    report(t, &x, &clients).await?;
    if x.status != "FAILED" || x.error.as_deref() != Some("Slipway.DeploymentFailed") {
        return Err(format!(
            "the bad image was not caught by the circuit breaker and rolled back: {} {:?}",
            x.status, x.error
        ));
    }
    let running = running_task_definition(&clients, "staging-api").await?;
    if running != good_td {
        return Err(format!(
            "staging-api runs {running}, not {good_td} (the release that pinned {digest})"
        ));
    }
    say(
        t,
        format!("staging-api runs {running} again: the release that pinned {digest}"),
    );
    Ok(())
}

async fn running_task_definition(
    clients: &slipway_core::aws::Clients,
    service: &str,
) -> Result<String> {
    let ecs = clients
        .ecs
        .describe_services()
        .cluster("staging")
        .services(service)
        .send()
        .await
        .map_err(|e| {
            format!(
                "describe-services: {}",
                aws_sdk_ecs::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(ecs
        .services()
        .first()
        .and_then(|s| s.task_definition())
        .unwrap_or_default()
        .to_owned())
}

/// `slipway bootstrap` into moto, with the debug binaries zipped as the functions (moto stores
/// the code; it runs none — the deployment below runs the same binaries under
/// `cargo lambda watch`). Returns the installed stack's name.
fn bootstrap(bed: &Testbed, t: Instant) -> Result<String> {
    let dir = root().join(".testbed/artifacts");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for f in [
        "plan",
        "deploy-stack",
        "update-services",
        "check-stability",
        "health-check",
        "roll-back",
        "finish",
    ] {
        let status = std::process::Command::new(root().join(".venv/bin/python"))
            .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w') as z: z.write(sys.argv[1], 'bootstrap')"])
            .arg(root().join("target/debug").join(f))
            .arg(dir.join(format!("{f}.zip")))
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("zipping {f} failed"));
        }
    }
    // As a release ships them: bootstrap checks each zip against SHA256SUMS.
    let sums = std::process::Command::new("sh")
        .args(["-c", "sha256sum ./*.zip > SHA256SUMS"])
        .current_dir(&dir)
        .status()
        .map_err(|e| e.to_string())?;
    if !sums.success() {
        return Err("sha256sum failed".into());
    }
    say(
        t,
        "slipway bootstrap --config examples/staging/slipway.toml (into moto)",
    );
    let out = std::process::Command::new(root().join("target/debug/slipway"))
        .args(["bootstrap", "--config"])
        .arg(root().join("examples/staging/slipway.toml"))
        .arg("--artifacts")
        .arg(&dir)
        .args(["--poll-seconds", "1", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", bed.moto())
        // ECS is the simulator's: bootstrap reads the services' task definitions there.
        .env("AWS_ENDPOINT_URL_ECS", bed.sim())
        .output()
        .map_err(|e| e.to_string())?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        println!("           {line}");
    }
    if !out.status.success() {
        return Err("slipway bootstrap failed".into());
    }
    let installed: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    say(
        t,
        format!(
            "installed: state machine {}",
            installed["state_machine_arn"].as_str().unwrap_or_default()
        ),
    );
    Ok(installed["stack"].as_str().unwrap_or_default().to_owned())
}

/// Shows that `event` matches the installed ECR push rule: its pattern, copied to a bus of
/// its own with an SQS target (moto delivers to SQS, not to Step Functions), gets the
/// event; an event for a repository Slipway does not deploy does not get through.
fn rule_matches(bed: &Testbed, t: Instant, stack: &str, event: &Value) -> Result<()> {
    let aws = |args: &[&str]| -> Result<Value> {
        let (code, out, err) = bed.aws(bed.moto(), args);
        if code != 0 {
            return Err(format!("aws {}: {err}", args.join(" ")));
        }
        Ok(serde_json::from_str(&out).unwrap_or(Value::Null))
    };
    let rule = aws(&[
        "cloudformation",
        "describe-stack-resource",
        "--stack-name",
        stack,
        "--logical-resource-id",
        "EcrPushRule",
    ])?;
    let rule = rule["StackResourceDetail"]["PhysicalResourceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pattern = aws(&["events", "describe-rule", "--name", &rule])?["EventPattern"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    aws(&["events", "create-event-bus", "--name", "slipway-demo-check"])?;
    aws(&[
        "events",
        "put-rule",
        "--name",
        "pattern-check",
        "--event-bus-name",
        "slipway-demo-check",
        "--event-pattern",
        &pattern,
    ])?;
    let queue = aws(&["sqs", "create-queue", "--queue-name", "slipway-demo-check"])?["QueueUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let arn = aws(&[
        "sqs",
        "get-queue-attributes",
        "--queue-url",
        &queue,
        "--attribute-names",
        "QueueArn",
    ])?;
    let arn = arn["Attributes"]["QueueArn"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    aws(&[
        "events",
        "put-targets",
        "--rule",
        "pattern-check",
        "--event-bus-name",
        "slipway-demo-check",
        "--targets",
        &format!("Id=sqs,Arn={arn}"),
    ])?;
    let mut delivered = Vec::new();
    for repository in [
        event["detail"]["repository-name"]
            .as_str()
            .unwrap_or_default(),
        "elsewhere/unrelated",
    ] {
        let mut detail = event["detail"].clone();
        detail["repository-name"] = json!(repository);
        let entry = json!([{"EventBusName": "slipway-demo-check", "Source": "aws.ecr", "DetailType": "ECR Image Action", "Detail": detail.to_string()}]);
        aws(&["events", "put-events", "--entries", &entry.to_string()])?;
        let got = aws(&[
            "sqs",
            "receive-message",
            "--queue-url",
            &queue,
            "--wait-time-seconds",
            "1",
        ])?;
        let matched = got["Messages"].as_array().is_some_and(|m| !m.is_empty());
        if let Some(handle) = got["Messages"][0]["ReceiptHandle"].as_str() {
            aws(&[
                "sqs",
                "delete-message",
                "--queue-url",
                &queue,
                "--receipt-handle",
                handle,
            ])?;
        }
        delivered.push(matched);
        println!(
            "           a push to {repository}: {}",
            if matched {
                "matches the installed rule"
            } else {
                "does not match"
            }
        );
    }
    if delivered != [true, false] {
        return Err(format!(
            "the installed rule's pattern did not behave: {pattern}"
        ));
    }
    say(
        t,
        format!("EventBridge (moto): the installed rule {rule} starts Slipway for this push"),
    );
    Ok(())
}

/// The execution's timeline (each state with when it was first entered and how often),
/// its result, and the deployment record.
async fn report(t: Instant, x: &Execution, clients: &slipway_core::aws::Clients) -> Result<()> {
    say(
        t,
        "Step Functions (aws-local-stepfunctions) → Lambdas (cargo lambda watch):",
    );
    let mut steps: Vec<(&str, u64, usize)> = Vec::new();
    for (state, ms) in &x.timeline {
        match steps.iter_mut().find(|(s, _, _)| s == state) {
            Some(entry) => entry.2 += 1,
            None => steps.push((state, *ms, 1)),
        }
    }
    for (state, ms, n) in steps {
        let times = if n > 1 {
            format!(" (×{n})")
        } else {
            String::new()
        };
        println!("           {:>7.2}s  {state}{times}", ms as f64 / 1000.0);
    }
    match x.status.as_str() {
        "SUCCEEDED" => say(t, "SUCCEEDED"),
        _ => say(
            t,
            format!(
                "FAILED: {}: {}",
                x.error.as_deref().unwrap_or_default(),
                x.cause.as_deref().unwrap_or_default()
            ),
        ),
    }
    let records: Vec<DeploymentRecord> = state::records(clients, 5)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(r) = records.first() {
        for s in &r.services {
            let short = |image: &str| {
                image
                    .rsplit('@')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(19)
                    .collect::<String>()
            };
            println!(
                "           record: {} {} → {} ({})",
                s.service,
                short(&s.from),
                short(&s.to),
                r.result
            );
        }
        for a in r.rollback.iter().flat_map(|rb| &rb.services) {
            println!("           rollback: {} {}", a.name, a.action);
        }
    }
    Ok(())
}
