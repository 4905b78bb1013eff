//! Whole deployments: `statemachine/deploy.asl.json` executed by aws-local-stepfunctions,
//! each Task invoking the real Lambda binary through `cargo lambda watch`, the Lambdas
//! talking to moto + slipway-sim. Each scenario asserts the execution's result, its path, the
//! final state in the simulator, the state table's records and locks.

use std::time::Duration;

use serde_json::{json, Value};
use slipway_core::model::DeploymentRecord;
use slipway_core::state;
use slipway_tests::{unique, Execution, Testbed};

use crate::app::{items_with_prefix, App};

/// An execution name unique to this run (the shared state table keeps earlier runs' records).
fn run(name: &str) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    format!(
        "{name}-{}",
        RUN.get_or_init(|| slipway_tests::unique("run"))
    )
}

async fn execute(bed: &Testbed, input: Value, name: &str) -> Execution {
    bed.deploy(&input, name).await
}

/// `expected` appear in `path` in this order (loops repeat states in between).
fn visited(execution: &Execution, expected: &[&str]) {
    let mut it = execution.path.iter();
    for want in expected {
        assert!(
            it.any(|s| s == want),
            "{want} missing (in order) from {:?}",
            execution.path
        );
    }
}

fn never(execution: &Execution, states: &[&str]) {
    for s in states {
        assert!(
            !execution.path.iter().any(|p| p == s),
            "{s} entered: {:?}",
            execution.path
        );
    }
}

async fn record(app: &App, release: &str) -> DeploymentRecord {
    let all = state::records(&app.clients, 100).await.unwrap();
    all.into_iter()
        .find(|r| r.release == release)
        .unwrap_or_else(|| panic!("no record of {release}"))
}

/// The reference app: web and admin in group 2, api and auth in group 1.
async fn staging(bed: &Testbed) -> App {
    App::create_with(
        &["web", "api", "auth", "admin"],
        Some(bed.lambda_table()),
        |s| {
            if s == "web" || s == "admin" {
                "group = 2\n".into()
            } else {
                "group = 1\n".into()
            }
        },
    )
    .await
}

const HAPPY: [&str; 13] = [
    "Plan",
    "WhatToDo",
    "Start",
    "AnyStacks",
    "DeployGroups",
    "UpdateServices",
    "UpdateService",
    "CheckStability",
    "GroupStable",
    "HealthCheck",
    "Bake",
    "HealthCheckAfterBake",
    "FinishSucceeded",
];

/// 1. An ECR push for api: only api moves, to a task definition pinned by the digest; 4.
/// the stack's change set is empty, a no-op.
#[tokio::test]
async fn s01_ecr_push_moves_only_that_service() {
    let (_t, bed) = Testbed::lane().await;
    let app = staging(&bed).await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let x = execute(&bed, app.event(api, "2222222", &digest), &run("s01")).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(&x, &HAPPY);
    visited(&x, &["Succeeded"]);
    // The stack's parameters do not change: no change set, no DeployStacks call at all.
    never(&x, &["RollBack", "DeployStacks"]);
    assert_eq!(x.output["result"], "succeeded");
    for s in &app.services {
        let running = app.running(s).await;
        if s.name == "api" {
            assert_ne!(running, s.task_definition);
            let td = app
                .clients
                .ecs
                .describe_task_definition()
                .task_definition(&running)
                .send()
                .await
                .unwrap();
            let image = td.task_definition().unwrap().container_definitions()[0]
                .image()
                .unwrap()
                .to_owned();
            assert_eq!(image, format!("{}@{digest}", api.uri));
        } else {
            assert_eq!(running, s.task_definition, "{} must not move", s.name);
        }
    }
    // The stack's change set was empty: a no-op, the stack never updated.
    let stack = app
        .clients
        .cloudformation
        .describe_stacks()
        .stack_name(&app.stack)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stack.stacks()[0].stack_status().unwrap().as_str(),
        "CREATE_COMPLETE"
    );
    let r = record(&app, &run("s01")).await;
    assert_eq!(r.result, "succeeded");
    assert_eq!(r.services.len(), 1);
    assert!(app.locks().await.is_empty());
    // 4. The digest that already runs: nothing to do.
    let again = execute(&bed, app.event(api, "2222222", &digest), &run("s01-again")).await;
    assert_eq!(again.status, "SUCCEEDED");
    assert_eq!(again.path, ["Arrival", "Plan", "WhatToDo", "NothingToDo"]);
    assert!(
        again.output["reason"]
            .as_str()
            .unwrap()
            .contains("already runs"),
        "{again:?}"
    );
}

/// 2. Manual input for all four services in two groups: the second group starts only after
/// the first is stable.
#[tokio::test]
async fn s02_groups_deploy_in_order() {
    let (_t, bed) = Testbed::lane().await;
    let app = staging(&bed).await;
    for s in &app.services {
        app.push(s, "3333333").await;
    }
    let x = execute(
        &bed,
        json!({"tag": "3333333", "reason": "all four", "commit": "3333333"}),
        &run("s02"),
    )
    .await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(&x, &HAPPY);
    let events = bed.sim_json("/_sim/events").await;
    let arn_of = |s: &str| {
        format!(
            "arn:aws:ecs:us-east-1:123456789012:service/{}/{}",
            app.cluster,
            app.service(s).ecs_service
        )
    };
    let times = |service: &str, name: &str| -> Vec<String> {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resources"][0] == arn_of(service) && e["detail"]["eventName"] == name)
            .map(|e| e["detail"]["updatedAt"].as_str().unwrap().to_owned())
            .collect()
    };
    // Each service: created (IN_PROGRESS, COMPLETED), then released (IN_PROGRESS, COMPLETED).
    let first_done = ["api", "auth"]
        .iter()
        .map(|s| times(s, "SERVICE_DEPLOYMENT_COMPLETED")[1].clone())
        .max()
        .unwrap();
    let second_start = ["web", "admin"]
        .iter()
        .map(|s| times(s, "SERVICE_DEPLOYMENT_IN_PROGRESS")[1].clone())
        .min()
        .unwrap();
    assert!(
        first_done <= second_start,
        "group 2 started at {second_start}, before group 1 was stable at {first_done}"
    );
    let r = record(&app, &run("s02")).await;
    assert_eq!(r.services.len(), 4);
    assert!(app.locks().await.is_empty());
}

/// 3. `latest` and the SHA tag pushed for one digest: two events, one deployment.
#[tokio::test]
async fn s03_two_tags_one_digest_deploy_once() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    // No tag pattern here, so both events are candidates.
    let config = app
        .config
        .replace("tag_pattern = \"^[0-9a-f]{7,40}$\"\n", "");
    state::store_config(&app.clients, &config).await.unwrap();
    let api = app.service("api");
    let digest = app.push(api, "4444444").await;
    let manifest = app
        .clients
        .ecr
        .batch_get_image()
        .repository_name(&api.repository)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_digest(&digest)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let manifest = manifest.images()[0].image_manifest().unwrap().to_owned();
    app.clients
        .ecr
        .put_image()
        .repository_name(&api.repository)
        .image_manifest(manifest)
        .image_tag("latest")
        .send()
        .await
        .unwrap();
    let (sha, latest) = (run("s03-sha"), run("s03-latest"));
    let (a, b) = tokio::join!(
        execute(&bed, app.event(api, "4444444", &digest), &sha),
        execute(&bed, app.event(api, "latest", &digest), &latest),
    );
    assert_eq!(
        (a.status.as_str(), b.status.as_str()),
        ("SUCCEEDED", "SUCCEEDED"),
        "{a:?} {b:?}"
    );
    let deployed: Vec<&Execution> = [&a, &b]
        .into_iter()
        .filter(|x| x.path.iter().any(|s| s == "UpdateService"))
        .collect();
    assert_eq!(
        deployed.len(),
        1,
        "exactly one deployment: {:?} / {:?}",
        a.path,
        b.path
    );
    let revisions = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&api.ecs_service)
        .send()
        .await
        .unwrap();
    assert_eq!(
        revisions.task_definition().unwrap().revision(),
        2,
        "one new revision"
    );
    assert!(app.locks().await.is_empty());
}

/// 5. The stack update fails: CloudFormation rolls it back, no service is touched,
/// `Slipway.StackFailed`.
#[tokio::test]
async fn s05_stack_failure_touches_no_service() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let config = app.config.replace(
        "parameters = { Environment = \"test\" }",
        "parameters = { Environment = \"test\", Release = \"image:api\" }",
    );
    state::store_config(&app.clients, &config).await.unwrap();
    bed.add_scenario(json!({"stacks": [{"name": app.stack, "fail_update": {"resource": "Settings", "reason": "Value too long"}}]})).await;
    let api = app.service("api");
    let digest = app.push(api, "5555555").await;
    let x = execute(&bed, app.event(api, "5555555", &digest), &run("s05")).await;
    assert_eq!(x.status, "FAILED");
    assert_eq!(x.error.as_deref(), Some("Slipway.StackFailed"));
    assert!(
        x.cause
            .as_deref()
            .unwrap()
            .contains("Settings (AWS::SSM::Parameter) UPDATE_FAILED: Value too long"),
        "{x:?}"
    );
    visited(
        &x,
        &[
            "Plan",
            "DeployStacks",
            "RollBack",
            "CheckRollback",
            "FinishFailed",
            "Failed",
        ],
    );
    never(&x, &["UpdateService", "HealthCheck"]);
    assert_eq!(app.running(api).await, api.task_definition);
    let out = app
        .clients
        .cloudformation
        .describe_stacks()
        .stack_name(&app.stack)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.stacks()[0].stack_status().unwrap().as_str(),
        "UPDATE_ROLLBACK_COMPLETE"
    );
    let r = record(&app, &run("s05")).await;
    assert_eq!(r.result, "failed");
    assert_eq!(r.error.unwrap()["Error"], "Slipway.StackFailed");
    assert!(app.locks().await.is_empty());
}

/// 6. New tasks crash: the circuit breaker fails the deployment, `Slipway.DeploymentFailed`;
/// the services are on their old revision.
#[tokio::test]
async fn s06_crashing_tasks_fail_the_release() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api", "auth"], Some(bed.lambda_table())).await;
    let (api, auth) = (app.service("api"), app.service("auth"));
    app.push(api, "6666666").await;
    let bad = app.push(auth, "6666666").await;
    bed.add_scenario(json!({"images": [{"match": bad, "failure": "crash", "logs": ["starting auth", "error: DATABASE_URL is not set"]}]}))
        .await;
    let x = execute(
        &bed,
        json!({"services": ["api", "auth"], "tag": "6666666"}),
        &run("s06"),
    )
    .await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.DeploymentFailed"));
    assert!(
        x.cause.as_deref().unwrap().contains("circuit breaker"),
        "{x:?}"
    );
    visited(
        &x,
        &[
            "UpdateServices",
            "CheckStability",
            "RollBack",
            "CheckRollback",
            "RollbackStable",
            "FinishFailed",
            "Failed",
        ],
    );
    never(&x, &["HealthCheck"]);
    assert_eq!(app.running(api).await, api.task_definition);
    assert_eq!(app.running(auth).await, auth.task_definition);
    let r = record(&app, &run("s06")).await;
    let actions: Vec<(String, String)> = r
        .rollback
        .unwrap()
        .services
        .into_iter()
        .map(|a| (a.name, a.action))
        .collect();
    assert!(
        actions.contains(&("auth".into(), "already-rolled-back-by-ecs".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("api".into(), "restored".into())),
        "{actions:?}"
    );
    assert!(app.locks().await.is_empty());
    // finish kept why in the record (the finish Lambda asked ECS): auth's crashed task.
    let auth_kept = r
        .why
        .iter()
        .find(|w| w.service == "auth")
        .unwrap_or_else(|| panic!("no why for auth in the record: {:?}", r.why));
    assert!(
        auth_kept.stopped_tasks.len() <= 5
            && auth_kept.stopped_tasks.iter().any(|t| {
                t.stop_code.as_deref() == Some("EssentialContainerExited")
                    && t.containers.iter().any(|c| c.exit_code == Some(1))
            }),
        "{auth_kept:?}"
    );
    // …with what the crashed container printed last (its awslogs stream, GetLogEvents).
    assert!(
        auth_kept.stopped_tasks.iter().any(|t| t
            .containers
            .iter()
            .any(|c| c.log == ["starting auth", "error: DATABASE_URL is not set"])),
        "{auth_kept:?}"
    );
    // history shows it in the error column.
    let (code, out, err) = bed.cli(&["history", "--table", bed.lambda_table(), "--limit", "50"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&run("s06")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("Slipway.DeploymentFailed (") && line.contains(": EssentialContainerExited"),
        "{line}"
    );
    // Why, from ECS: auth's stopped tasks (ListTasks STOPPED, DescribeTasks) with their stop
    // code, reason and exit code, and its events.
    let (code, out, err) = bed.cli(&[
        "status",
        "--release",
        &run("s06"),
        "--table",
        bed.lambda_table(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["record"]["result"], "failed");
    let why = status["why"].as_array().unwrap();
    let auth_why = why.iter().find(|w| w["service"] == "auth").unwrap();
    let crashed = auth_why["stopped_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["stop_code"] == "EssentialContainerExited")
        .unwrap_or_else(|| panic!("{auth_why}"));
    assert_eq!(crashed["reason"], "Essential container in task exited");
    assert_eq!(
        crashed["containers"],
        json!([{"name": "auth", "exit_code": 1, "reason": null, "log": ["starting auth", "error: DATABASE_URL is not set"]}])
    );
    assert!(
        auth_why["events"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("deployment failed: tasks failed to start")),
        "{auth_why}"
    );
    let (code, out, err) = bed.cli(&[
        "status",
        "--release",
        &run("s06"),
        "--table",
        bed.lambda_table(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "EssentialContainerExited: Essential container in task exited; auth exit code 1"
        ) && out.contains("    auth log: error: DATABASE_URL is not set"),
        "{out}"
    );
}

/// 7. The new image answers 500 on /health: every service this release moved goes back,
/// `Slipway.HealthCheckFailed`; health is OK again afterwards.
#[tokio::test]
async fn s07_unhealthy_release_is_rolled_back() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api", "auth"], Some(bed.lambda_table())).await;
    let (api, auth) = (app.service("api"), app.service("auth"));
    let sick = app.push(api, "7777777").await;
    app.push(auth, "7777777").await;
    bed.add_scenario(json!({"images": [{"match": sick, "failure": "health-500"}]}))
        .await;
    let x = execute(
        &bed,
        json!({"services": ["api", "auth"], "tag": "7777777"}),
        &run("s07"),
    )
    .await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.HealthCheckFailed"));
    assert!(
        x.cause.as_deref().unwrap().contains("answered 500"),
        "{x:?}"
    );
    visited(
        &x,
        &[
            "CheckStability",
            "HealthCheck",
            "RollBack",
            "CheckRollback",
            "FinishFailed",
            "Failed",
        ],
    );
    assert_eq!(app.running(api).await, api.task_definition);
    assert_eq!(app.running(auth).await, auth.task_definition);
    let health = reqwest::Client::new()
        .get(format!("{}/health", bed.sim()))
        .header("host", app.host(api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "healthy again");
    let r = record(&app, &run("s07")).await;
    assert_eq!(r.result, "failed");
    assert_eq!(r.error.unwrap()["Error"], "Slipway.HealthCheckFailed");
    let restored: Vec<String> = r
        .rollback
        .unwrap()
        .services
        .into_iter()
        .filter(|a| a.action == "restored")
        .map(|a| a.name)
        .collect();
    assert_eq!(
        restored.len(),
        2,
        "both moved services went back: {restored:?}"
    );
    assert!(app.locks().await.is_empty());
}

/// 8. A rollout slower than the deadline: rolled back, `Slipway.NotStable`.
#[tokio::test]
async fn s08_too_slow_is_not_stable() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    state::store_config(
        &app.clients,
        &app.config
            .replace("deadline_minutes = 20", "deadline_minutes = 2"),
    )
    .await
    .unwrap();
    let api = app.service("api");
    let slow = app.push(api, "8888888").await;
    bed.add_scenario(
        json!({"images": [{"match": slow, "failure": "slow", "start_seconds": 100000}]}),
    )
    .await;
    let x = execute(&bed, app.event(api, "8888888", &slow), &run("s08")).await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.NotStable"));
    assert!(
        x.cause.as_deref().unwrap().contains("passed its deadline"),
        "{x:?}"
    );
    // No deployment event comes for a rollout that never ends: a wait for one ends at its
    // 90-second heartbeat timeout, in a look of its own (the polling fallback), which finds
    // the deadline (2 minutes) passed, or waits once more first.
    visited(
        &x,
        &[
            "CheckStability",
            "WaitForGroupEvents",
            "CheckStability",
            "RollBack",
            "CheckRollback",
            "Failed",
        ],
    );
    never(&x, &["WaitForGroup"]);
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
}

/// 24. A rollout is waited for on ECS's "ECS Deployment State Change" events: check-stability
/// stores the task token, the simulator's event (through the lane's rule target) invokes
/// check-stability, which answers the task with SendTaskSuccess — one look, no 15-second
/// polls, no token left in the table. With `stability_wait = "polling"` the same kind of
/// release polls instead.
#[tokio::test]
async fn s24_a_rollout_is_waited_for_on_its_deployment_events() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let answered = |stats: &Value| {
        stats["calls"]["states:SendTaskSuccess"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = answered(&bed.sim_json("/_sim/stats").await);
    let digest = app.push(api, "2424242").await;
    let x = execute(&bed, app.event(api, "2424242", &digest), &run("s24")).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(
        &x,
        &[
            "CheckStability",
            "GroupStable",
            "WaitForGroupEvents",
            "GroupStable",
            "GroupDone",
            "FinishSucceeded",
        ],
    );
    never(&x, &["WaitForGroup", "RollBack"]);
    let looks = x.path.iter().filter(|s| *s == "CheckStability").count();
    assert_eq!(
        looks, 1,
        "the event, not a look, ended the wait: {:?}",
        x.path
    );
    assert!(answered(&bed.sim_json("/_sim/stats").await) > before);
    assert_ne!(app.running(api).await, api.task_definition);
    assert!(
        items_with_prefix(&app.clients, "WAKE#").await.is_empty(),
        "an answered wait leaves no token"
    );
    assert!(app.locks().await.is_empty());

    state::store_config(
        &app.clients,
        &app.config.replace(
            "bake_seconds = 1\n",
            "bake_seconds = 1\nstability_wait = \"polling\"\n",
        ),
    )
    .await
    .unwrap();
    let digest = app.push(api, "2424243").await;
    let y = execute(
        &bed,
        app.event(api, "2424243", &digest),
        &run("s24-polling"),
    )
    .await;
    assert_eq!(y.status, "SUCCEEDED", "{y:?}");
    visited(
        &y,
        &[
            "CheckStability",
            "WaitForGroup",
            "CheckStability",
            "GroupDone",
        ],
    );
    never(&y, &["WaitForGroupEvents"]);
}

/// 9. The rollback itself fails: `Slipway.RollbackFailed` reporting both errors; the lock
/// is released; the record says so.
#[tokio::test]
async fn s09_failed_rollback_is_reported() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let sick = app.push(api, "9999999").await;
    bed.add_scenario(json!({
        "images": [{"match": sick, "failure": "health-500"}],
        "faults": [{"action": "UpdateService", "contains": api.task_definition, "code": "AccessDeniedException", "message": "not allowed to roll back"}]
    }))
    .await;
    let x = execute(&bed, app.event(api, "9999999", &sick), &run("s09")).await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.RollbackFailed"));
    let cause = x.cause.as_deref().unwrap();
    assert!(
        cause.contains("Slipway.HealthCheckFailed") && cause.contains("not allowed to roll back"),
        "{cause}"
    );
    visited(
        &x,
        &[
            "HealthCheck",
            "RollBack",
            "FinishRollbackFailed",
            "RollbackFailed",
        ],
    );
    let r = record(&app, &run("s09")).await;
    assert_eq!(r.result, "rollback-failed");
    assert!(app.locks().await.is_empty());
}

/// 10. Two pushes to one service while the first deploys: never interleaved; the later
/// digest ends up running.
#[tokio::test]
async fn s10_pushes_never_interleave_and_the_later_wins() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let first = app.push(api, "aaaaaaa").await;
    let second = app.push(api, "bbbbbbb").await;
    let first_name = run("s10-first");
    let a = execute(&bed, app.event(api, "aaaaaaa", &first), &first_name);
    let b = async {
        // The second push arrives once the first holds the lock.
        held_by(&app, "api", &run("s10-first")).await;
        execute(&bed, app.event(api, "bbbbbbb", &second), &run("s10-second")).await
    };
    let (a, b) = tokio::join!(a, b);
    assert_eq!(
        (a.status.as_str(), b.status.as_str()),
        ("SUCCEEDED", "SUCCEEDED"),
        "{a:?}\n{b:?}"
    );
    let (ra, rb) = (
        record(&app, &run("s10-first")).await,
        record(&app, &run("s10-second")).await,
    );
    assert!(
        rb.started_at >= ra.finished_at,
        "the second planned ({}) only after the first finished ({})",
        rb.started_at,
        ra.finished_at
    );
    let running = app.running(api).await;
    let td = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&running)
        .send()
        .await
        .unwrap();
    assert_eq!(
        td.task_definition().unwrap().container_definitions()[0].image(),
        Some(format!("{}@{second}", api.uri).as_str())
    );
    assert!(app.locks().await.is_empty());
}

/// 11. A throttling storm while polling: retried; the deployment succeeds.
#[tokio::test]
async fn s11_throttling_storm_is_retried() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let digest = app.push(api, "ccccccc").await;
    let before = bed.sim_json("/_sim/stats").await;
    // Only this app's calls (its services, stack and families are named "<prefix>-…"), and
    // appended to the simulator's throttles, so other tests run unthrottled.
    let token = format!("{}-", app.cluster);
    bed.add_scenario(json!({"throttles": [{"one_in": 2, "contains": token, "actions": ["DescribeServices", "DescribeChangeSet", "DescribeStacks", "DescribeTaskDefinition"]}]})).await;
    let x = execute(&bed, app.event(api, "ccccccc", &digest), &run("s11")).await;
    let after = bed.sim_json("/_sim/stats").await;
    bed.remove_scenario(&token).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    let count = |v: &Value| v["throttled"]["DescribeServices"].as_u64().unwrap_or(0);
    assert!(
        count(&after) > count(&before),
        "calls were throttled: {before} → {after}"
    );
    assert!(app.locks().await.is_empty());
}

/// A service whose image is its stack's parameter (`image:app`), as CDK apps often have:
/// moved by the stack's update, created as a CDK stack is (IAM role, so capabilities).
struct OwnedApp {
    bed: Testbed,
    clients: slipway_core::aws::Clients,
    stack: String,
    cluster: String,
    repository: String,
    uri: String,
    digest: String,
}

impl OwnedApp {
    async fn create(bed: &Testbed) -> Self {
        Self::create_with(bed, "").await
    }

    /// With `top` (lines of slipway.toml) before the rest of its configuration.
    async fn create_with(bed: &Testbed, top: &str) -> Self {
        let clients = bed.clients(bed.lambda_table()).await;
        state::create_table(&clients).await.unwrap();
        let stack = slipway_tests::unique("owned");
        let repository = format!("{stack}/app");
        let repo = clients
            .ecr
            .create_repository()
            .repository_name(&repository)
            .send()
            .await
            .unwrap();
        let uri = repo
            .repository()
            .unwrap()
            .repository_uri()
            .unwrap()
            .to_owned();
        let mut app = Self {
            bed: bed.clone(),
            clients,
            cluster: format!("{stack}-cluster"),
            stack,
            repository,
            uri,
            digest: String::new(),
        };
        app.digest = app.push("1111111").await;
        app.clients
            .cloudformation
            .create_stack()
            .stack_name(&app.stack)
            .template_body(crate::sim_fidelity::service_template().to_string())
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
            .parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("Image")
                    .parameter_value(format!("{}@{}", app.uri, app.digest))
                    .build(),
            )
            .parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("ApiKey")
                    .parameter_value("hunter2")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        crate::sim_fidelity::wait_status(
            &app.clients.cloudformation,
            &app.stack,
            aws_sdk_cloudformation::types::StackStatus::CreateComplete,
        )
        .await;
        let config = format!(
            "{top}environment = \"test\"\ncluster = \"{}\"\ndeadline_minutes = 20\nbake_seconds = 1\n\n[[stacks]]\nname = \"{}\"\nparameters = {{ Image = \"image:app\" }}\n\n[[services]]\nname = \"app\"\nrepository = \"{}\"\necs_service = \"app\"\ncontainer = \"app\"\n",
            app.cluster, app.stack, app.repository
        );
        state::store_config(&app.clients, &config).await.unwrap();
        app
    }

    async fn push(&self, tag: &str) -> String {
        let out = self
            .clients
            .ecr
            .put_image()
            .repository_name(&self.repository)
            .image_manifest(slipway_tests::manifest().to_string())
            .image_tag(tag)
            .send()
            .await
            .unwrap();
        out.image()
            .unwrap()
            .image_id()
            .unwrap()
            .image_digest()
            .unwrap()
            .to_owned()
    }

    async fn service(&self) -> aws_sdk_ecs::types::Service {
        slipway_tests::app::describe(&self.clients.ecs, &self.cluster, "app").await
    }

    async fn image(&self) -> String {
        let td = self.service().await.task_definition().unwrap().to_owned();
        let out = self
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(td)
            .send()
            .await
            .unwrap();
        out.task_definition().unwrap().container_definitions()[0]
            .image()
            .unwrap()
            .to_owned()
    }

    async fn stack_status(&self) -> String {
        let out = self
            .clients
            .cloudformation
            .describe_stacks()
            .stack_name(&self.stack)
            .send()
            .await
            .unwrap();
        out.stacks()[0].stack_status().unwrap().as_str().to_owned()
    }

    async fn locks(&self) -> Vec<String> {
        crate::app::lock_items(&self.clients).await
    }
}

/// 12. A stack-owned service moves with its stack: the stack's update registers the pinned
/// revision and CloudFormation waits for the deployment; Slipway never also calls
/// UpdateService (one ECS deployment), and the release succeeds.
#[tokio::test]
async fn s12_a_stack_owned_service_moves_with_its_stack() {
    let (_t, bed) = Testbed::lane().await;
    let app = OwnedApp::create(&bed).await;
    let digest = app.push("2222222").await;
    let event = slipway_tests::ecr_push_event(&app.repository, "2222222", &digest);
    let name = run("s12");
    let x = execute(&bed, event, &name).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    // While the stack updates (it waits for its service's rollout), the loop waits for
    // CloudFormation's stack status event, not for ten-second polls: the event ends the wait,
    // and DeployStacks looks once more.
    visited(
        &x,
        &[
            "DeployStacks",
            "StacksDone",
            "WaitForStackEvents",
            "DeployStacks",
            "DeployGroups",
        ],
    );
    let polls = x.path.iter().filter(|s| *s == "WaitForStacks").count();
    let waits = x.path.iter().filter(|s| *s == "WaitForStackEvents").count();
    assert!(waits >= 1 && polls <= 2, "{:?}", x.path);
    assert!(
        items_with_prefix(&app.clients, "WAKE#").await.is_empty(),
        "an answered stack wait leaves no token"
    );
    assert_eq!(app.image().await, format!("{}@{digest}", app.uri));
    assert_eq!(app.stack_status().await, "UPDATE_COMPLETE");
    let s = app.service().await;
    assert_eq!(s.deployments().len(), 1);
    let started = s
        .events()
        .iter()
        .filter(|e| e.message().is_some_and(|m| m.contains("has started")))
        .count();
    assert_eq!(
        started,
        2,
        "one rollout at creation, one by the stack: {:?}",
        s.events()
    );
    let r = state::records(&app.clients, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.release == name)
        .unwrap();
    assert_eq!(r.result, "succeeded");
    assert_eq!(r.stacks, std::slice::from_ref(&app.stack));
    assert!(app.locks().await.is_empty());
    let _ = &app.bed;
}

/// 13. The circuit breaker trips inside the stack's update: CloudFormation rolls the stack
/// back (and the service with it); Slipway reports `Slipway.DeploymentFailed` naming the
/// service, leaves the stack UPDATE_ROLLBACK_COMPLETE on the old image, and releases the lock.
#[tokio::test]
async fn s13_circuit_breaker_inside_a_stack_is_a_deployment_failure() {
    let (_t, bed) = Testbed::lane().await;
    let app = OwnedApp::create(&bed).await;
    let before = app.image().await;
    let digest = app.push("3333333").await;
    bed.add_scenario(json!({"images": [{"match": digest, "failure": "crash"}]}))
        .await;
    let event = slipway_tests::ecr_push_event(&app.repository, "3333333", &digest);
    let name = run("s13");
    let x = execute(&bed, event, &name).await;
    assert_eq!(x.status, "FAILED");
    assert_eq!(
        x.error.as_deref(),
        Some("Slipway.DeploymentFailed"),
        "{x:?}"
    );
    let cause = x.cause.as_deref().unwrap();
    assert!(cause.contains("service app"), "{cause}");
    assert!(
        cause.contains("ECS Deployment Circuit Breaker was triggered"),
        "{cause}"
    );
    visited(
        &x,
        &[
            "Plan",
            "DeployStacks",
            "RollBack",
            "CheckRollback",
            "FinishFailed",
            "Failed",
        ],
    );
    never(&x, &["UpdateService", "HealthCheck"]);
    assert_eq!(app.stack_status().await, "UPDATE_ROLLBACK_COMPLETE");
    assert_eq!(app.image().await, before);
    let r = state::records(&app.clients, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.release == name)
        .unwrap();
    assert_eq!(r.result, "failed");
    assert_eq!(r.error.unwrap()["Error"], "Slipway.DeploymentFailed");
    // ECS's own rollback put it back on the revision it ran, which the stack's rollback
    // kept (only the new revision is deregistered).
    let rollback = r.rollback.unwrap();
    assert_eq!(rollback.services[0].action, "already-rolled-back-by-ecs");
    assert_eq!(rollback.stacks[0].action, "unchanged");
    assert!(app.locks().await.is_empty());
    bed.remove_scenario(&digest).await;
}

/// `RELEASE#…` items left in the state table: releases stored and not finished.
async fn stored_releases(clients: &slipway_core::aws::Clients) -> Vec<String> {
    crate::app::items_with_prefix(clients, "RELEASE#").await
}

/// 14. An execution stopped (StopExecution) while its service rolls out leaves the service
/// moved and the lock held. Its status-change event — what bootstrap's recovery rule
/// delivers — starts a recovery: the service goes back, the record says `aborted`, the lock
/// is released, the execution fails `Slipway.Aborted`. The same event again finds nothing
/// left to do.
#[tokio::test]
async fn s14_a_stopped_execution_is_recovered_from_its_status_event() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let digest = app.push(api, "1414141").await;
    let name = run("s14");
    let x = bed
        .deploy_with(
            &app.event(api, "1414141", &digest),
            &name,
            &["--abort-at", "CheckStability"],
        )
        .await;
    assert_eq!(x.status, "ABORTED", "{x:?}");
    never(&x, &["RollBack", "FinishFailed", "FinishSucceeded"]);
    // What a stopped execution leaves behind: the service moved, the lock held (the stack's
    // went back at plan: the release does not change it), no record.
    assert_ne!(app.running(api).await, api.task_definition);
    assert_eq!(app.locks().await, ["LOCK#api".to_owned()]);
    assert!(state::records(&app.clients, 100)
        .await
        .unwrap()
        .iter()
        .all(|r| r.release != name));

    let recovery = format!("{name}-recovery");
    let event = slipway_tests::status_change_event(&name, "ABORTED");
    let y = execute(&bed, event.clone(), &recovery).await;
    assert_eq!(y.status, "FAILED", "{y:?}");
    assert_eq!(y.error.as_deref(), Some("Slipway.Aborted"), "{y:?}");
    assert!(y.cause.as_deref().unwrap().contains(&name), "{y:?}");
    visited(
        &y,
        &[
            "Plan",
            "WhatToDo",
            "Recover",
            "RollBack",
            "CheckRollback",
            "FinishFailed",
            "Failed",
        ],
    );
    never(&y, &["DeployStacks", "UpdateService"]);
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
    let r = record(&app, &name).await;
    assert_eq!(r.result, "aborted");
    assert_eq!(r.error.as_ref().unwrap()["Error"], "Slipway.Aborted");
    let rollback = r.rollback.unwrap();
    assert_eq!(rollback.services[0].action, "restored", "{rollback:?}");
    assert!(stored_releases(&app.clients)
        .await
        .iter()
        .all(|k| !k.contains(&name)));

    // Delivered again (EventBridge delivers at least once): nothing left to recover.
    let z = execute(&bed, event, &format!("{name}-again")).await;
    assert_eq!(z.status, "SUCCEEDED", "{z:?}");
    assert_eq!(
        z.path,
        ["Arrival", "LetItSettle", "Plan", "WhatToDo", "NothingToDo"]
    );
    assert!(
        z.output["reason"]
            .as_str()
            .unwrap()
            .contains("no unfinished release"),
        "{z:?}"
    );
}

/// 15. An execution that times out while its stack waits for the service it owns (a slow
/// rollout) leaves the stack UPDATE_IN_PROGRESS. The recovery cancels that update —
/// CloudFormation rolls the stack and its service back — then records `timed-out`,
/// releases the lock, and fails `Slipway.TimedOut`.
#[tokio::test]
async fn s15_a_timed_out_execution_cancels_its_stack_update() {
    let (_t, bed) = Testbed::lane().await;
    let app = OwnedApp::create(&bed).await;
    let before = app.image().await;
    let digest = app.push("1515151").await;
    bed.add_scenario(
        json!({"images": [{"match": digest, "failure": "slow", "start_seconds": 100000}]}),
    )
    .await;
    let event = slipway_tests::ecr_push_event(&app.repository, "1515151", &digest);
    let name = run("s15");
    let x = bed
        .deploy_with(&event, &name, &["--timeout-seconds", "25"])
        .await;
    assert_eq!(x.status, "TIMED_OUT", "{x:?}");
    assert_eq!(
        app.stack_status().await,
        "UPDATE_IN_PROGRESS",
        "the update waits for the slow service when the execution times out: {x:?}"
    );
    assert_eq!(
        app.locks().await.len(),
        2,
        "the service's lock and the stack's"
    );

    let recovery = format!("{name}-recovery");
    let y = execute(
        &bed,
        slipway_tests::status_change_event(&name, "TIMED_OUT"),
        &recovery,
    )
    .await;
    assert_eq!(y.status, "FAILED", "{y:?}");
    assert_eq!(y.error.as_deref(), Some("Slipway.TimedOut"), "{y:?}");
    visited(
        &y,
        &[
            "Recover",
            "RollBack",
            "WaitForRollbackStacks",
            "RollBack",
            "FinishFailed",
        ],
    );
    assert_eq!(app.stack_status().await, "UPDATE_ROLLBACK_COMPLETE");
    assert_eq!(app.image().await, before);
    assert!(app.locks().await.is_empty());
    let r = state::records(&app.clients, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.release == name)
        .unwrap();
    assert_eq!(r.result, "timed-out");
    assert_eq!(r.error.as_ref().unwrap()["Error"], "Slipway.TimedOut");
    let rollback = r.rollback.unwrap();
    assert_eq!(rollback.stacks[0].action, "cancelled", "{rollback:?}");
    // Stored under the execution and under its recovery; both forgotten by finish.
    assert!(stored_releases(&app.clients)
        .await
        .iter()
        .all(|k| !k.contains(&name)));
}

/// 16. Plan fails after taking a lock (here: a lock this execution holds, as a crashed or
/// timed-out plan leaves it): the `PlanFailed` catch releases this execution's locks — and
/// only its own — and the execution fails with plan's error.
#[tokio::test]
async fn s16_a_failed_plan_releases_the_locks_it_took() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api", "auth"], Some(bed.lambda_table())).await;
    let name = run("s16");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mine = slipway_tests::execution_arn(&name);
    let theirs = slipway_tests::execution_arn(&format!("{name}-other"));
    for (service, owner) in [("api", &mine), ("auth", &theirs)] {
        let claim = state::Claim {
            owner,
            release: "r",
            digest: "sha256:0",
            pushed_at: None,
        };
        state::acquire_lock(&app.clients, service, &claim, now, 3600)
            .await
            .unwrap()
            .unwrap();
    }
    let x = execute(
        &bed,
        json!({"services": ["api", "nope"], "tag": "1616161"}),
        &name,
    )
    .await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.InvalidInput"), "{x:?}");
    assert!(x.cause.as_deref().unwrap().contains("nope"), "{x:?}");
    assert_eq!(x.path, ["Arrival", "Plan", "PlanFailed", "PlanFailedEnd"]);
    assert_eq!(
        app.locks().await,
        ["LOCK#auth"],
        "only this execution's lock goes"
    );
    let r = record(&app, &name).await;
    assert_eq!(r.result, "failed", "the request was understood: recorded");
    assert_eq!(r.error.unwrap_or_default()["Error"], "Slipway.InvalidInput");
    state::release_lock(&app.clients, "auth", &theirs)
        .await
        .unwrap();
}

/// 17. The rollback has its own deadline: the previous image now starts too slowly to ever
/// be stable again, so instead of polling until the execution times out, CheckRollback ends
/// the run as `Slipway.RollbackFailed` once `rollback_minutes` have passed; the record says
/// so and the lock is released.
#[tokio::test]
async fn s17_a_rollback_that_cannot_settle_ends_at_its_deadline() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    state::store_config(
        &app.clients,
        &app.config.replace(
            "deadline_minutes = 20",
            "deadline_minutes = 20\nrollback_minutes = 1",
        ),
    )
    .await
    .unwrap();
    let api = app.service("api");
    let sick = app.push(api, "1717171").await;
    bed.add_scenario(json!({"images": [
        {"match": sick, "failure": "health-500"},
        {"match": api.digest, "failure": "slow", "start_seconds": 100000}
    ]}))
    .await;
    let name = run("s17");
    let x = execute(&bed, app.event(api, "1717171", &sick), &name).await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.RollbackFailed"), "{x:?}");
    let cause = x.cause.as_deref().unwrap();
    assert!(cause.contains("passed its deadline (1 minutes"), "{cause}");
    visited(
        &x,
        &[
            "RollBack",
            "CheckRollback",
            "WaitForRollback",
            "CheckRollback",
            "FinishRollbackFailed",
            "RollbackFailed",
        ],
    );
    // The rollback was issued: the service's primary deployment is the previous revision.
    assert_eq!(app.running(api).await, api.task_definition);
    let r = record(&app, &name).await;
    assert_eq!(r.result, "rollback-failed");
    assert!(app.locks().await.is_empty());
}

/// 18. `bake_seconds = 0`: one health check is the whole check — no Bake, no second check.
#[tokio::test]
async fn s18_no_bake_means_one_health_check() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    state::store_config(
        &app.clients,
        &app.config.replace("bake_seconds = 1", "bake_seconds = 0"),
    )
    .await
    .unwrap();
    let api = app.service("api");
    let digest = app.push(api, "1818181").await;
    let name = run("s18");
    let x = execute(&bed, app.event(api, "1818181", &digest), &name).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(
        &x,
        &["HealthCheck", "ShouldBake", "FinishSucceeded", "Succeeded"],
    );
    never(&x, &["Bake", "HealthCheckAfterBake"]);
    let r = record(&app, &name).await;
    assert_eq!(r.result, "succeeded");
    assert_eq!(r.services[0].checks, "http and targets");
    assert!(app.locks().await.is_empty());
}

/// 21. A service with neither `health` nor `target_group_arn` (check-config warns about it)
/// is released on ECS's stability alone: the health check has nothing to look at and
/// passes, and the record says the service was "not checked" instead of implying it was.
#[tokio::test]
async fn s21_a_service_nothing_checks_is_recorded_not_checked() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let unchecked: String = app
        .config
        .split("[services.health]")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("target_group_arn"))
        .map(|l| format!("{l}\n"))
        .collect();
    let parsed = slipway_core::config::Config::parse(&unchecked, "test").unwrap();
    assert_eq!(parsed.warnings().len(), 1, "{unchecked}");
    state::store_config(&app.clients, &unchecked).await.unwrap();
    let api = app.service("api");
    let digest = app.push(api, "2121212").await;
    let name = run("s21");
    let x = execute(&bed, app.event(api, "2121212", &digest), &name).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(&x, &["HealthCheck", "FinishSucceeded", "Succeeded"]);
    let r = record(&app, &name).await;
    assert_eq!(r.result, "succeeded");
    assert_eq!(r.services[0].checks, "not checked", "{r:?}");
    assert!(r.services[0].to.ends_with(&digest), "{r:?}");
    assert_eq!(running_image(&app, api).await, r.services[0].to);
    assert!(app.locks().await.is_empty());
}

/// Waits until the execution named `name` holds `service`'s lock.
async fn held_by(app: &App, service: &str, name: &str) {
    slipway_tests::eventually(
        "the first execution's lock",
        Duration::from_secs(30),
        || async {
            state::lock_holder(&app.clients, service)
                .await
                .unwrap()
                .filter(|h| h.owner.ends_with(name))
        },
    )
    .await;
}

/// The image `s` runs now (its task definition's container image).
async fn running_image(app: &App, s: &crate::app::AppService) -> String {
    let td = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(app.running(s).await)
        .send()
        .await
        .unwrap();
    td.task_definition().unwrap().container_definitions()[0]
        .image()
        .unwrap_or_default()
        .to_owned()
}

/// 19. Three pushes of one repository whose executions plan out of order: the first
/// deploys; the third, arriving while the first holds the lock, queues (`WAIT#api`) and
/// waits (`WaitForLock`); the second, arriving after it, has nothing to do — a later push
/// waits — and is recorded `superseded`; the third deploys once the first is done. The first
/// push's event delivered again at the end is superseded by the image running. The last push
/// runs, and no lock or place in the queue is left.
#[tokio::test]
async fn s19_the_later_push_wins_whatever_order_they_plan_in() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    // ECR's imagePushedAt tells the pushes apart (moto keeps whole seconds).
    let one = app.push(api, "1919191").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let two = app.push(api, "2929292").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let three = app.push(api, "3939393").await;
    // The first push's tasks take 10 simulated minutes to start (30 s here), so the first
    // release still holds the lock when the others plan, however busy the machine is.
    bed.add_scenario(json!({"images": [{"match": one, "failure": "slow", "start_seconds": 600}]}))
        .await;
    let (first, second, third, late) = (
        run("s19-one"),
        run("s19-two"),
        run("s19-three"),
        run("s19-late"),
    );
    let a = execute(&bed, app.event(api, "1919191", &one), &first);
    let c = async {
        held_by(&app, "api", &first).await;
        execute(&bed, app.event(api, "3939393", &three), &third).await
    };
    let b = async {
        slipway_tests::eventually("the third push queued", Duration::from_secs(60), || async {
            state::waiter(&app.clients, "api")
                .await
                .unwrap()
                .filter(|w| w.owner.ends_with(&third))
        })
        .await;
        execute(&bed, app.event(api, "2929292", &two), &second).await
    };
    let (a, b, c) = tokio::join!(a, b, c);
    for x in [&a, &b, &c] {
        assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    }
    visited(&a, &HAPPY);
    visited(
        &c,
        &[
            "Plan",
            "WhatToDo",
            "WaitForLock",
            "Plan",
            "Start",
            "FinishSucceeded",
        ],
    );
    visited(&b, &["Plan", "WhatToDo", "NothingToDo"]);
    never(&b, &["Start", "WaitForLock"]);
    assert!(
        b.output["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&three),
        "the second names the later push: {b:?}"
    );
    let (ra, rb, rc) = (
        record(&app, &first).await,
        record(&app, &second).await,
        record(&app, &third).await,
    );
    assert_eq!(
        (ra.result.as_str(), rb.result.as_str(), rc.result.as_str()),
        ("succeeded", "superseded", "succeeded")
    );
    assert!(
        rb.reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("superseded"),
        "{rb:?}"
    );
    assert_eq!(rb.services[0].to, format!("{}@{two}", api.uri));
    assert!(rc.started_at >= ra.finished_at, "{ra:?}\n{rc:?}");
    assert_eq!(
        running_image(&app, api).await,
        format!("{}@{three}", api.uri)
    );

    // The first push's event again, late: older than what runs.
    let d = execute(&bed, app.event(api, "1919191", &one), &late).await;
    assert_eq!(d.status, "SUCCEEDED", "{d:?}");
    never(&d, &["Start", "WaitForLock"]);
    let rd = record(&app, &late).await;
    assert_eq!(rd.result, "superseded");
    assert!(
        rd.reason
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("it runs {three}")),
        "{rd:?}"
    );
    assert_eq!(
        running_image(&app, api).await,
        format!("{}@{three}", api.uri)
    );
    assert!(app.locks().await.is_empty());
    assert_eq!(state::waiter(&app.clients, "api").await.unwrap(), None);
}

/// A one-service app (`api`) on the Lambdas' table whose releases are announced on the
/// account's default EventBridge bus and on an SNS topic (in moto), which delivers to an SQS
/// queue: the returned queue URL.
async fn announcing_app(bed: &Testbed) -> (App, String) {
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let aws = |args: &[&str]| -> Value {
        let (code, out, err) = bed.aws(bed.moto(), args);
        assert_eq!(code, 0, "aws {args:?}: {err}");
        serde_json::from_str(&out).unwrap_or(Value::Null)
    };
    let name = app.cluster.clone();
    let topic = aws(&["sns", "create-topic", "--name", &name])["TopicArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue = aws(&["sqs", "create-queue", "--queue-name", &name])["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue_arn = aws(&[
        "sqs",
        "get-queue-attributes",
        "--queue-url",
        &queue,
        "--attribute-names",
        "QueueArn",
    ])["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_owned();
    aws(&[
        "sns",
        "subscribe",
        "--topic-arn",
        &topic,
        "--protocol",
        "sqs",
        "--notification-endpoint",
        &queue_arn,
    ]);
    state::store_config(
        &app.clients,
        &format!(
            "{}\n[notifications]\nevent_bus = \"default\"\nsns_topic_arn = \"{topic}\"\n",
            app.config
        ),
    )
    .await
    .unwrap();
    (app, queue)
}

/// The SNS notifications delivered to `queue` (SNS's JSON envelope of each SQS message).
fn notifications(bed: &Testbed, queue: &str) -> Vec<Value> {
    let (code, out, err) = bed.aws(
        bed.moto(),
        &[
            "sqs",
            "receive-message",
            "--queue-url",
            queue,
            "--max-number-of-messages",
            "10",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    got["Messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| serde_json::from_str(m["Body"].as_str().unwrap_or_default()).unwrap())
        .collect()
}

/// 20. A push whose image plan cannot find in ECR (deleted by a lifecycle rule before its
/// execution ran): plan fails with `Slipway.InvalidInput`, and the `PlanFailed` catch records
/// the failure (`failed`, plan's error, nothing deployed) and announces it on the configured
/// EventBridge bus, so a push that deployed nothing is never silent. Nothing moved, no lock.
#[tokio::test]
async fn s20_a_failed_plan_is_recorded_and_announced() {
    let (_t, bed) = Testbed::lane().await;
    let (app, queue) = announcing_app(&bed).await;
    let api = app.service("api");
    let gone = format!("sha256:{}", "e".repeat(64));
    let name = run("s20");
    let x = execute(&bed, app.event(api, "2020202", &gone), &name).await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.InvalidInput"), "{x:?}");
    assert_eq!(x.path, ["Arrival", "Plan", "PlanFailed", "PlanFailedEnd"]);
    let r = record(&app, &name).await;
    assert_eq!(r.result, "failed");
    assert!(r.services.is_empty(), "{r:?}");
    assert!(
        matches!(r.trigger, slipway_core::input::Trigger::EcrPush { .. }),
        "{r:?}"
    );
    let error = r.error.clone().unwrap_or_default();
    assert_eq!(error["Error"], "Slipway.InvalidInput", "{r:?}");
    assert!(
        error["Cause"].as_str().unwrap_or_default().contains(&gone),
        "{r:?}"
    );
    assert_eq!(
        r.announced.get("eventbridge").map(String::as_str),
        Some("sent"),
        "{r:?}"
    );
    assert_eq!(
        r.announced.get("sns").map(String::as_str),
        Some("sent"),
        "{r:?}"
    );
    // The SNS message is for a person (environment, result, service and tag in the subject;
    // what happened in the body); the record's JSON travels as a message attribute.
    let sent = notifications(&bed, &queue);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let n = &sent[0];
    assert_eq!(
        n["Subject"],
        format!("[{}] failed: {}", r.environment, "2020202"),
        "{n}"
    );
    let body = n["Message"].as_str().unwrap_or_default();
    assert!(
        body.starts_with(&format!("Release {name} in {}: failed\n", r.environment))
            && body.contains("Error: Slipway.InvalidInput: ")
            && body.contains(&gone),
        "{body}"
    );
    assert_eq!(
        n["MessageAttributes"]["slipway.result"]["Value"], "failed",
        "{n}"
    );
    let attached: DeploymentRecord = serde_json::from_str(
        n["MessageAttributes"]["slipway.record"]["Value"]
            .as_str()
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(attached.release, r.release);
    assert_eq!(attached.tag.as_deref(), Some("2020202"));
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
}

/// 22. A push stopped while it waits for the lock another release holds (StopExecution
/// while in `WaitForLock`): its recovery, started by the status-change event, gives its
/// place in the queue back, and — the event carrying the stopped execution's input — records
/// it as `aborted` (nothing was deployed, and why) and announces it. The release holding the
/// lock is not touched and finishes; the event delivered again records nothing more.
#[tokio::test]
async fn s22_a_push_stopped_while_waiting_is_recorded() {
    let (_t, bed) = Testbed::lane().await;
    let (app, _queue) = announcing_app(&bed).await;
    let api = app.service("api");
    let one = app.push(api, "2222221").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let two = app.push(api, "2222222").await;
    // The first release holds the lock for a while: its tasks start slowly.
    bed.add_scenario(json!({"images": [{"match": one, "failure": "slow", "start_seconds": 600}]}))
        .await;
    let (first, second) = (run("s22-one"), run("s22-two"));
    let second_input = app.event(api, "2222222", &two);
    let a = execute(&bed, app.event(api, "2222221", &one), &first);
    let b = async {
        held_by(&app, "api", &first).await;
        let started_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let x = bed
            .deploy_with(&second_input, &second, &["--abort-at", "WaitForLock"])
            .await;
        assert_eq!(x.status, "ABORTED", "{x:?}");
        // What the stopped execution leaves: its place in the queue, no record.
        let w = state::waiter(&app.clients, "api").await.unwrap();
        assert!(w.is_some_and(|w| w.owner.ends_with(&second)), "queued");
        let event =
            slipway_tests::status_change_event_of(&second, "ABORTED", &second_input, started_ms);
        let y = execute(&bed, event.clone(), &format!("{second}-recovery")).await;
        let z = execute(&bed, event, &format!("{second}-again")).await;
        (x, y, z)
    };
    let (a, (x, y, z)) = tokio::join!(a, b);
    visited(&x, &["Plan", "WhatToDo", "WaitForLock"]);
    assert_eq!(y.status, "SUCCEEDED", "{y:?}");
    visited(&y, &["Plan", "WhatToDo", "NothingToDo"]);
    let reason = y.output["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("gave up its place in the queue for api")
            && reason.contains(&format!("recorded release {second} as aborted")),
        "{y:?}"
    );
    let r = record(&app, &second).await;
    assert_eq!(r.result, "aborted");
    assert!(r.services.is_empty() && r.stacks.is_empty(), "{r:?}");
    assert!(
        r.reason.as_deref().unwrap_or_default().contains(
            "while waiting for the lock of api, held by another release: nothing was deployed"
        ),
        "{r:?}"
    );
    assert_eq!(r.error.as_ref().unwrap()["Error"], "Slipway.Aborted");
    assert_eq!(
        r.announced.get("eventbridge").map(String::as_str),
        Some("sent"),
        "{r:?}"
    );
    // Delivered again: it holds nothing any more, so nothing more is recorded.
    assert_eq!(z.status, "SUCCEEDED", "{z:?}");
    assert!(
        !z.output["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("recorded"),
        "{z:?}"
    );
    let records = state::records(&app.clients, 100).await.unwrap();
    assert_eq!(records.iter().filter(|r| r.release == second).count(), 1);
    // The release that held the lock was left alone and finished.
    assert_eq!(a.status, "SUCCEEDED", "{a:?}");
    assert_eq!(record(&app, &first).await.result, "succeeded");
    assert_eq!(running_image(&app, api).await, format!("{}@{one}", api.uri));
    assert!(app.locks().await.is_empty());
    assert!(state::waiter(&app.clients, "api").await.unwrap().is_none());
}

/// `slipway plan` shows what a release would do and changes nothing: its change sets are
/// made, read and deleted, no lock is taken, no service moves. (Read-only: a table of its
/// own, no state machine.)
#[tokio::test]
async fn plan_is_a_dry_run_with_change_sets() {
    let bed = Testbed::get();
    let name = "api".to_owned();
    let app = App::create(&[name.as_str()], None).await;
    let config = app.config.replace(
        "parameters = { Environment = \"test\" }",
        &format!("parameters = {{ Environment = \"test\", Release = \"image:{name}\" }}"),
    );
    state::store_config(&app.clients, &config).await.unwrap();
    let table = app.clients.table.as_str();
    let api = app.service(&name);
    let old = format!("{}@{}", api.uri, api.digest);
    let digest = app.push(api, "2323232").await;
    let new = format!("{}@{digest}", api.uri);

    // The dry run, with the stack's change set: nothing moves, nothing is locked.
    let (code, out, err) = bed.cli(&[
        "plan",
        "--table",
        table,
        "--tag",
        "2323232",
        "--service",
        &name,
        "--change-sets",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan["services"],
        json!([{"name": name, "from": old, "to": new, "action": "deploy"}])
    );
    assert_eq!(plan["stacks"][0]["name"], app.stack.as_str());
    assert_eq!(
        plan["stacks"][0]["parameters"],
        json!({"Release": {"from": "none", "to": new}})
    );
    assert_eq!(
        plan["stacks"][0]["changes"],
        json!([{"action": "Modify", "logicalResourceId": "Settings", "resourceType": "AWS::SSM::Parameter", "replacement": "False"}]),
        "{plan}"
    );
    let sets = app
        .clients
        .cloudformation
        .list_change_sets()
        .stack_name(&app.stack)
        .send()
        .await
        .unwrap();
    assert!(
        sets.summaries().is_empty(),
        "the plan's change set is deleted"
    );
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
    let (code, out, err) = bed.cli(&["plan", "--table", table, "--tag", "2323232"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(name.as_str()) && l.contains("deploy")),
        "{out}"
    );
    let (code, _, err) = bed.cli(&[
        "plan",
        "--table",
        table,
        "--tag",
        "2323232",
        "--service",
        "nope",
    ]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("--service nope: no such service"), "{err}");
}

/// 23. `slipway rollback` starts a normal release by digest back to the image before the
/// current release, which the state machine deploys and records as `rollback of <release>`;
/// a second rollback finds nothing older to go back to; `plan` then sees nothing to do.
#[tokio::test]
async fn s23_rollback_from_the_cli() {
    let (_t, bed) = Testbed::lane().await;
    // A service name of its own: the shared table keeps other tests' records of `api`, and a
    // rollback reads the records.
    let name = unique("rb").replace('-', "");
    let app = App::create(&[name.as_str()], Some(bed.lambda_table())).await;
    let table = bed.lambda_table();
    let api = app.service(&name);
    let old = format!("{}@{}", api.uri, api.digest);
    let digest = app.push(api, "2323232").await;
    let new = format!("{}@{digest}", api.uri);

    let release = run("s23");
    let x = execute(
        &bed,
        json!({"services": [name], "tag": "2323232"}),
        &release,
    )
    .await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    let (code, out, err) = bed.cli(&["plan", "--table", table, "--tag", "2323232", "--json"]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["services"][0]["action"], "skip-same-digest", "{plan}");
    assert_eq!(plan["stacks"], json!([]), "nothing moves, no stack changes");

    // Rollback: the dry run, then the release it starts (moto keeps the execution; the test
    // runs its input through the state machine).
    let (code, out, err) = bed.cli(&["rollback", "--table", table, "--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan["services"],
        json!([{"name": name, "from": new, "to": old, "action": "deploy"}])
    );
    let machine = unique("slipway-s23");
    let (code, out, err) = bed.aws(
        bed.moto(),
        &[
            "stepfunctions",
            "create-state-machine",
            "--name",
            &machine,
            "--definition",
            r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#,
            "--role-arn",
            "arn:aws:iam::123456789012:role/slipway-s23",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let machine_arn = serde_json::from_str::<Value>(&out).unwrap()["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, err) = bed.cli(&[
        "rollback",
        "--table",
        table,
        "--state-machine",
        &machine_arn,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started.as_array().unwrap().len(), 1, "{started}");
    let input = started[0]["input"].clone();
    assert_eq!(
        input,
        json!({"services": [name], "digest": api.digest, "reason": format!("rollback of {release}")})
    );
    let (code, out, err) = bed.aws(
        bed.moto(),
        &[
            "stepfunctions",
            "describe-execution",
            "--execution-arn",
            started[0]["executionArn"].as_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let described: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(described["input"].as_str().unwrap()).unwrap(),
        input
    );
    let back = run("s23-rollback");
    let x = execute(&bed, input, &back).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    let td = app.running(api).await;
    let image = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .container_definitions()[0]
        .image()
        .unwrap()
        .to_owned();
    assert_eq!(image, old, "api is back on its first image");
    let r = record(&app, &back).await;
    assert_eq!(r.result, "succeeded");
    assert_eq!(
        r.trigger,
        slipway_core::input::Trigger::Manual {
            reason: Some(format!("rollback of {release}")),
            commit: None
        }
    );
    assert_eq!(
        (r.services[0].from.as_str(), r.services[0].to.as_str()),
        (new.as_str(), old.as_str())
    );
    assert!(app.locks().await.is_empty());
    // The rollback undid the only release of api: nothing older to go back to.
    let (code, _, err) = bed.cli(&[
        "rollback",
        "--table",
        table,
        "--service",
        &name,
        "--dry-run",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing to roll back"), "{err}");
    let (code, _, err) = bed.cli(&[
        "rollback",
        "--table",
        table,
        "--service",
        "nope",
        "--dry-run",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--service nope: no such service"), "{err}");

    // history: --service before --limit, and no panic on a closed pipe.
    let (code, out, err) = bed.cli(&[
        "history",
        "--table",
        table,
        "--service",
        &name,
        "--limit",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let records: Value = serde_json::from_str(&out).unwrap();
    let releases: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["release"].as_str())
        .collect();
    assert!(
        releases.len() == 2 && releases.contains(&back.as_str()),
        "{releases:?}"
    );
    // The reader is gone before the first line is written (the command first queries the
    // table): a closed pipe ends it quietly; a full disk is an error.
    let history = |stdout: std::process::Stdio| {
        std::process::Command::new(slipway_tests::root().join("target/debug/slipway"))
            .args(["history", "--table", table, "--json"])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", bed.moto())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut closed = history(std::process::Stdio::piped());
    drop(closed.stdout.take());
    let out = closed.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let full = history(std::fs::File::create("/dev/full").unwrap().into());
    let out = full.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to standard output"), "{err}");
}

/// `slipway plan` (the dry run) of api at `tag`, on the app's table: its text.
fn dry_run(bed: &Testbed, app: &App, tag: &str) -> String {
    let (code, out, err) = bed.cli(&[
        "plan",
        "--table",
        app.clients.table.as_str(),
        "--tag",
        tag,
        "--service",
        "api",
    ]);
    assert_eq!(code, 0, "{err}");
    out
}

/// A CloudWatch alarm (slipway-sim's), in `state`: created INSUFFICIENT_DATA, SetAlarmState
/// moves it (the CloudWatch API Reference's SetAlarmState, "for testing").
async fn alarm(bed: &Testbed, name: &str, state: Option<&str>, reason: &str) {
    use aws_sdk_cloudwatch::types::StateValue;
    let cw = bed.cloudwatch().await;
    crate::app::put_alarm(&cw, name, 60, 1).await;
    if let Some(state) = state {
        cw.set_alarm_state()
            .alarm_name(name)
            .state_value(StateValue::from(state))
            .state_reason(reason)
            .send()
            .await
            .unwrap();
    }
}

/// An app whose release watches `env_alarm` (environment-wide) and `api_alarm` (api's own),
/// with a bake of `bake_seconds`.
async fn watching_app(bed: &Testbed, env_alarm: &str, api_alarm: &str, bake_seconds: u32) -> App {
    let mut app = App::create_with(&["api"], Some(bed.lambda_table()), |_| {
        format!("alarms = [\"{api_alarm}\"]\n")
    })
    .await;
    app.config = app.config.replace(
        "bake_seconds = 1\n",
        &format!("bake_seconds = {bake_seconds}\nalarms = [\"{env_alarm}\"]\n"),
    );
    state::store_config(&app.clients, &app.config)
        .await
        .unwrap();
    app
}

/// Starts `input` as execution `name` in the background, tracing the states it enters to a
/// file (run-execution's `--trace-file`) for [`entered`]; the handle gives its result.
fn deploy_traced(
    bed: &Testbed,
    input: Value,
    name: &str,
) -> (tokio::task::JoinHandle<Execution>, slipway_tests::Scratch) {
    let trace = slipway_tests::Scratch::new("trace");
    let path = trace.join("states").display().to_string();
    let (bed, name) = (bed.clone(), name.to_owned());
    let handle = tokio::spawn(async move {
        bed.deploy_with(&input, &name, &["--trace-file", &path])
            .await
    });
    (handle, trace)
}

/// Waits until the execution tracing to `trace` (run-execution's `--trace-file`) has entered
/// `state`.
async fn entered(trace: &slipway_tests::Scratch, state: &str) {
    slipway_tests::eventually(
        &format!("the execution to enter {state}"),
        Duration::from_secs(120),
        || async {
            let text = std::fs::read_to_string(trace.join("states")).unwrap_or_default();
            text.lines().any(|l| l == state).then_some(())
        },
    )
    .await;
}

/// The release failed on an alarm and everything went back: error, cause, api on its old
/// task definition, no lock, the record.
async fn rolled_back_on_alarm(app: &App, x: &Execution, name: &str, alarm: &str, when: &str) {
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.AlarmTriggered"), "{x:?}");
    let cause = x.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains(when)
            && cause.contains(&format!("{alarm} (ALARM since "))
            && cause.contains("Threshold Crossed"),
        "{cause}"
    );
    let api = app.service("api");
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
    let r = record(app, name).await;
    assert_eq!(r.result, "failed");
    let error = r.error.unwrap_or_default();
    assert_eq!(error["Error"], "Slipway.AlarmTriggered");
    assert!(
        error["Cause"].as_str().unwrap_or_default().contains(alarm),
        "{error}"
    );
}

/// 25. Alarms that never fire (one OK, one INSUFFICIENT_DATA): the release succeeds, and its
/// bake runs as the alarm watch — a check, then 30-second slices, each followed by a check.
#[tokio::test]
async fn s25_alarms_that_never_fire_let_the_release_through() {
    let (_t, bed) = Testbed::lane().await;
    let (ok, quiet) = (unique("ok"), unique("quiet"));
    alarm(
        &bed,
        &ok,
        Some("OK"),
        "Threshold Crossed: no datapoints were above 5",
    )
    .await;
    alarm(&bed, &quiet, None, "").await;
    let app = watching_app(&bed, &ok, &quiet, 90).await;
    let api = app.service("api");
    let digest = app.push(api, "2525252").await;
    // The dry run shows the alarms the release would watch, as they are.
    let out = dry_run(&bed, &app, "2525252");
    assert!(
        out.contains(&format!(
            "alarm {ok}: OK (Threshold Crossed: no datapoints were above 5)"
        )) && out.contains(&format!(
            "alarm {quiet}: INSUFFICIENT_DATA (Unchecked: Initial alarm creation)"
        )),
        "{out}"
    );
    let name = run("s25");
    let x = execute(&bed, app.event(api, "2525252", &digest), &name).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(
        &x,
        &[
            "HealthCheck",
            "StartBakeWatch",
            "WatchBake",
            "BakeSlice",
            "WatchBake",
            "HealthCheckAfterBake",
            "Succeeded",
        ],
    );
    never(&x, &["Bake", "RollBack"]);
    // 90 s of bake: checks at 90, 60, 30 and 0 seconds left, three 30-second slices between.
    let count = |s: &str| x.path.iter().filter(|p| *p == s).count();
    assert_eq!((count("WatchBake"), count("BakeSlice")), (4, 3), "{x:?}");
    assert_ne!(app.running(api).await, api.task_definition);
    assert_eq!(record(&app, &name).await.result, "succeeded");
    assert!(app.locks().await.is_empty());
}

/// 26. An alarm going into ALARM during the bake: the next check fails the release with
/// `Slipway.AlarmTriggered`, before the bake ends; api goes back.
#[tokio::test]
async fn s26_an_alarm_firing_during_the_bake_rolls_back() {
    let (_t, bed) = Testbed::lane().await;
    let (fires, quiet) = (unique("bake-5xx"), unique("quiet"));
    alarm(
        &bed,
        &fires,
        Some("OK"),
        "Threshold Crossed: no datapoints were above 5",
    )
    .await;
    alarm(&bed, &quiet, Some("OK"), "fine").await;
    let app = watching_app(&bed, &fires, &quiet, 600).await;
    let api = app.service("api");
    let digest = app.push(api, "2626262").await;
    let name = run("s26");
    let (run_it, trace) = deploy_traced(&bed, app.event(api, "2626262", &digest), &name);
    entered(&trace, "BakeSlice").await;
    alarm(
        &bed,
        &fires,
        Some("ALARM"),
        "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).",
    )
    .await;
    let x = run_it.await.unwrap();
    rolled_back_on_alarm(&app, &x, &name, &fires, "during the bake").await;
    visited(
        &x,
        &[
            "HealthCheck",
            "WatchBake",
            "BakeSlice",
            "WatchBake",
            "RollBack",
            "FinishFailed",
        ],
    );
    never(&x, &["HealthCheckAfterBake"]);
}

/// 27. A service's own alarm going into ALARM while it rolls out (slowly): the wait for ECS's
/// events ends within 30 s, the look fails the release, and it is rolled back before the
/// rollout ends.
#[tokio::test]
async fn s27_an_alarm_firing_during_the_rollout_rolls_back() {
    let (_t, bed) = Testbed::lane().await;
    let (quiet, fires) = (unique("quiet"), unique("api-latency"));
    alarm(&bed, &quiet, Some("OK"), "fine").await;
    alarm(&bed, &fires, Some("OK"), "fine").await;
    let app = watching_app(&bed, &quiet, &fires, 1).await;
    let api = app.service("api");
    let slow = app.push(api, "2727272").await;
    bed.add_scenario(json!({"images": [{"match": slow, "failure": "slow", "start_seconds": 600}]}))
        .await;
    let name = run("s27");
    let (run_it, trace) = deploy_traced(&bed, app.event(api, "2727272", &slow), &name);
    entered(&trace, "WaitForGroupEventsWatchingAlarms").await;
    alarm(
        &bed,
        &fires,
        Some("ALARM"),
        "Threshold Crossed: 3 datapoints were greater than the threshold (0.8).",
    )
    .await;
    let x = run_it.await.unwrap();
    rolled_back_on_alarm(&app, &x, &name, &fires, "while the services rolled out").await;
    // Whichever look sees it first — the wait's own (its invocation looks once more after
    // storing the token) or the fallback look after the heartbeat — fails the release.
    visited(
        &x,
        &[
            "UpdateService",
            "WaitForGroupEventsWatchingAlarms",
            "RollBack",
            "FinishFailed",
        ],
    );
    never(&x, &["HealthCheck"]);
}

/// 34. An alarm going into ALARM while a stack's update rolls out the service it owns
/// (slowly; CloudFormation waits for it): the stack wait's 30 s heartbeat brings a look that
/// checks the alarms, the release fails `Slipway.AlarmTriggered` naming the stack, the update
/// is cancelled and the stack rolled back, the service is on its old image, the lock is
/// released and the record says why.
#[tokio::test]
async fn s34_an_alarm_firing_during_a_stack_update_rolls_it_back() {
    let (_t, bed) = Testbed::lane().await;
    let fires = unique("stack-5xx");
    alarm(&bed, &fires, Some("OK"), "fine").await;
    let app = OwnedApp::create_with(&bed, &format!("alarms = [\"{fires}\"]\n")).await;
    let before = app.image().await;
    let slow = app.push("3434343").await;
    bed.add_scenario(json!({"images": [{"match": slow, "failure": "slow", "start_seconds": 600}]}))
        .await;
    let event = slipway_tests::ecr_push_event(&app.repository, "3434343", &slow);
    let name = run("s34");
    let (run_it, trace) = deploy_traced(&bed, event, &name);
    entered(&trace, "WaitForStackEventsWatchingAlarms").await;
    alarm(
        &bed,
        &fires,
        Some("ALARM"),
        "Threshold Crossed: 2 datapoints were greater than the threshold (5.0).",
    )
    .await;
    let x = run_it.await.unwrap();
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(x.error.as_deref(), Some("Slipway.AlarmTriggered"), "{x:?}");
    let cause = x.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains(&format!(
            "while stack {} updated: {fires} (ALARM",
            app.stack
        )) && cause.contains("Threshold Crossed: 2 datapoints"),
        "{cause}"
    );
    visited(
        &x,
        &[
            "WaitForStackEventsWatchingAlarms",
            "DeployStacks",
            "RollBack",
            "FinishFailed",
        ],
    );
    never(&x, &["DeployGroups", "HealthCheck"]);
    slipway_tests::eventually(
        "the stack's update to be rolled back",
        Duration::from_secs(120),
        || async { (app.stack_status().await == "UPDATE_ROLLBACK_COMPLETE").then_some(()) },
    )
    .await;
    assert_eq!(app.image().await, before);
    assert!(app.locks().await.is_empty());
    let r = state::records(&app.clients, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.release == name)
        .unwrap();
    assert_eq!(r.result, "failed");
    assert_eq!(r.error.unwrap()["Error"], "Slipway.AlarmTriggered");
    bed.remove_scenario(&slow).await;
}

/// 28. An alarm already in ALARM when the release starts: plan fails it, nothing moves, the
/// failed plan is recorded.
#[tokio::test]
async fn s28_an_alarm_already_firing_stops_the_release_before_anything_moves() {
    let (_t, bed) = Testbed::lane().await;
    let (fires, quiet) = (unique("already"), unique("quiet"));
    alarm(
        &bed,
        &fires,
        Some("ALARM"),
        "Threshold Crossed: 1 datapoint [40.0] was greater than the threshold (5.0).",
    )
    .await;
    alarm(&bed, &quiet, Some("OK"), "fine").await;
    let app = watching_app(&bed, &fires, &quiet, 1).await;
    let api = app.service("api");
    let digest = app.push(api, "2828282").await;
    let name = run("s28");
    let x = execute(&bed, app.event(api, "2828282", &digest), &name).await;
    assert_eq!(x.path, ["Arrival", "Plan", "PlanFailed", "PlanFailedEnd"]);
    rolled_back_on_alarm(
        &app,
        &x,
        &name,
        &fires,
        "already in ALARM when the release started",
    )
    .await;
    // A misspelt alarm name is an error that names it, not an alarm that never fires.
    app.clients
        .cloudwatch
        .delete_alarms()
        .alarm_names(&fires)
        .send()
        .await
        .unwrap();
    let x = execute(
        &bed,
        app.event(api, "2828282", &digest),
        &run("s28-missing"),
    )
    .await;
    assert_eq!(x.error.as_deref(), Some("Slipway.InvalidInput"), "{x:?}");
    assert!(
        x.cause
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("CloudWatch has no alarm named {fires}")),
        "{x:?}"
    );
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
}

/// 29. A service whose owner turned on ECS's own deployment alarms (not in slipway.toml): ECS
/// fails the rollout when the alarm fires and rolls it back; Slipway reports
/// `Slipway.DeploymentFailed`, naming the alarm (from ECS's service deployments).
#[tokio::test]
async fn s29_ecs_deployment_alarms_are_left_to_ecs_and_reported() {
    let (_t, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    let api = app.service("api");
    let fires = unique("ecs-owned-5xx");
    // A 10-minute evaluation window: ECS watches it that long after the new tasks are in.
    crate::app::put_alarm(&bed.cloudwatch().await, &fires, 300, 2).await;
    let mut config = crate::app::circuit_breaker_with_rollback();
    config.alarms = Some(
        aws_sdk_ecs::types::DeploymentAlarms::builder()
            .alarm_names(&fires)
            .enable(true)
            .rollback(true)
            .build()
            .unwrap(),
    );
    app.clients
        .ecs
        .update_service()
        .cluster(&app.cluster)
        .service(&api.ecs_service)
        .deployment_configuration(config)
        .send()
        .await
        .unwrap();
    let digest = app.push(api, "2929292").await;
    let name = run("s29");
    let (run_it, trace) = deploy_traced(&bed, app.event(api, "2929292", &digest), &name);
    entered(&trace, "WaitForGroupEvents").await;
    alarm(
        &bed,
        &fires,
        Some("ALARM"),
        "Threshold Crossed: 2 datapoints were greater than the threshold (5.0).",
    )
    .await;
    let x = run_it.await.unwrap();
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(
        x.error.as_deref(),
        Some("Slipway.DeploymentFailed"),
        "{x:?}"
    );
    let cause = x.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains(&format!("(ECS's deployment alarms fired: {fires})")),
        "{cause}"
    );
    visited(&x, &["WaitForGroupEvents", "RollBack", "FinishFailed"]);
    never(&x, &["HealthCheck"]);
    app.wait_on(api, &api.task_definition).await;
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
    let r = record(&app, &name).await;
    assert_eq!(r.result, "failed");
    assert_eq!(r.error.unwrap()["Error"], "Slipway.DeploymentFailed");
}

/// An app whose `api` ECS deploys with its own `strategy` (`lines` go into api's service
/// table): its load balancer readied with an alternate target group and a test listener
/// rule; with `hook`, api's health check also runs through the test listener, as the
/// lifecycle hook at POST_TEST_TRAFFIC_SHIFT.
async fn staged_app(bed: &Testbed, lines: &str, hook: bool) -> (App, String) {
    let mut app = App::create_with(&["api"], Some(bed.lambda_table()), |_| lines.to_owned()).await;
    let api = app.service("api").clone();
    let (green, _) = app.prepare_staged(&api).await;
    if hook {
        let host = format!("host = \"{}\"\n", app.host(&api));
        app.config = app.config.replace(
            &host,
            &format!("{host}test_host = \"{}\"\n", app.test_host(&api)),
        );
    }
    state::store_config(&app.clients, &app.config)
        .await
        .unwrap();
    (app, green)
}

/// The service's newest service deployment, described.
async fn newest_service_deployment(
    app: &App,
    s: &crate::app::AppService,
) -> aws_sdk_ecs::types::ServiceDeployment {
    let listed = app
        .clients
        .ecs
        .list_service_deployments()
        .cluster(&app.cluster)
        .service(&s.ecs_service)
        .send()
        .await
        .unwrap();
    let arn = listed.service_deployments()[0]
        .service_deployment_arn()
        .unwrap();
    crate::app::describe_service_deployment(&app.clients.ecs, arn).await
}

/// 30. A blue/green release (ECS's own): ECS asks Slipway's health check through the test
/// listener at POST_TEST_TRAFFIC_SHIFT (SUCCEEDED), then moves production traffic to green,
/// bakes and cleans up; Slipway waits for it, checks health, and records success.
#[tokio::test]
async fn s30_a_blue_green_release_is_checked_by_slipway_before_traffic_moves() {
    let (_t, bed) = Testbed::lane().await;
    let (app, green) =
        staged_app(&bed, "strategy = \"blue-green\"\nbake_minutes = 1\n", true).await;
    let api = app.service("api");
    let digest = app.push(api, "3030303").await;
    let out = dry_run(&bed, &app, "3030303");
    assert!(
        out.contains("service api: ECS deploys it BLUE_GREEN, Slipway's check through the test listener at POST_TEST_TRAFFIC_SHIFT"),
        "{out}"
    );
    let name = run("s30");
    let x = execute(&bed, app.event(api, "3030303", &digest), &name).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    visited(
        &x,
        &[
            "UpdateService",
            "CheckStability",
            "WaitForGroupEvents",
            "HealthCheck",
            "Succeeded",
        ],
    );
    never(&x, &["RollBack"]);
    assert_ne!(app.running(api).await, api.task_definition);
    let d = newest_service_deployment(&app, api).await;
    assert_eq!(d.status().map(|s| s.as_str()), Some("SUCCESSFUL"), "{d:?}");
    let c = d.deployment_configuration().unwrap();
    assert_eq!(c.strategy().map(|s| s.as_str()), Some("BLUE_GREEN"));
    assert_eq!(c.bake_time_in_minutes(), Some(1));
    // Slipway's hook, at POST_TEST_TRAFFIC_SHIFT, answered SUCCEEDED.
    let hook = &c.lifecycle_hooks()[0];
    assert_eq!(
        hook.lifecycle_stages()[0].as_str(),
        "POST_TEST_TRAFFIC_SHIFT"
    );
    assert!(
        hook.hook_target_arn().unwrap().ends_with("-health-check"),
        "{hook:?}"
    );
    let runs = d.lifecycle_hook_details();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status().map(|s| s.as_str()), Some("SUCCEEDED"));
    // Production traffic is on green, whose target group is now the service's.
    let rule = app.rule_of(api).to_owned();
    assert_eq!(app.forwards(&rule).await, [(green.clone(), 100)]);
    let s = crate::app::describe(&app.clients.ecs, &app.cluster, &api.ecs_service).await;
    assert_eq!(
        s.load_balancers()[0].target_group_arn(),
        Some(green.as_str())
    );
    assert_eq!(record(&app, &name).await.result, "succeeded");
    assert!(app.locks().await.is_empty());
}

/// 31. A blue/green release whose new version fails Slipway's check through the test
/// listener: the hook answers FAILED, ECS rolls back before any production traffic moves;
/// the release fails `Slipway.DeploymentFailed`, saying so.
#[tokio::test]
async fn s31_a_failed_hook_rolls_back_before_production_traffic_moves() {
    let (_t, bed) = Testbed::lane().await;
    let (app, _) = staged_app(&bed, "strategy = \"blue-green\"\nbake_minutes = 1\n", true).await;
    let api = app.service("api");
    let rule = app.rule_of(api).to_owned();
    // 500 on /health only: the target groups (which check /) find it healthy.
    let sick = app.push(api, "3131313").await;
    bed.add_scenario(json!({"images": [{"match": sick, "failure": "health-500"}]}))
        .await;
    let name = run("s31");
    let x = execute(&bed, app.event(api, "3131313", &sick), &name).await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(
        x.error.as_deref(),
        Some("Slipway.DeploymentFailed"),
        "{x:?}"
    );
    let cause = x.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains("POST_TEST_TRAFFIC_SHIFT") && cause.contains("FAILED"),
        "{cause}"
    );
    never(&x, &["HealthCheck"]);
    visited(&x, &["RollBack", "FinishFailed"]);
    let d = newest_service_deployment(&app, api).await;
    assert_eq!(
        d.status().map(|s| s.as_str()),
        Some("ROLLBACK_SUCCESSFUL"),
        "{d:?}"
    );
    assert_eq!(
        d.lifecycle_stage().map(|s| s.as_str()),
        Some("POST_TEST_TRAFFIC_SHIFT")
    );
    assert_eq!(
        d.target_service_revision()
            .unwrap()
            .requested_production_traffic_weight(),
        Some(0.0),
        "no production traffic ever moved"
    );
    assert_eq!(
        d.lifecycle_hook_details()[0].status().map(|s| s.as_str()),
        Some("FAILED")
    );
    assert_eq!(app.forwards(&rule).await, [(api.target_group.clone(), 100)]);
    app.wait_on(api, &api.task_definition).await;
    assert_eq!(app.running(api).await, api.task_definition);
    assert!(app.locks().await.is_empty());
    let r = record(&app, &name).await;
    assert_eq!(r.error.unwrap()["Error"], "Slipway.DeploymentFailed");
}

/// 32. A canary (10 % first) stopped by one of the release's alarms while the canary takes
/// its share: `Slipway.AlarmTriggered`; roll-back stops ECS's deployment
/// (StopServiceDeployment ROLLBACK), and ECS puts all traffic back on blue.
#[tokio::test]
async fn s32_a_canary_stopped_by_an_alarm() {
    let (_t, bed) = Testbed::lane().await;
    let fires = unique("canary-5xx");
    alarm(&bed, &fires, Some("OK"), "fine").await;
    let lines = format!("strategy = \"canary\"\nstep_percent = 10\nstep_minutes = 5\nbake_minutes = 1\nalarms = [\"{fires}\"]\n");
    let (app, green) = staged_app(&bed, &lines, false).await;
    let api = app.service("api");
    let rule = app.rule_of(api).to_owned();
    let digest = app.push(api, "3232323").await;
    let name = run("s32");
    let run_it = {
        let (bed, input, name) = (
            bed.clone(),
            app.event(api, "3232323", &digest),
            name.clone(),
        );
        tokio::spawn(async move { bed.deploy(&input, &name).await })
    };
    // The canary: 10 % of production traffic on green (100 of the rule's 1000 weight).
    slipway_tests::eventually(
        "the canary to take 10 %",
        Duration::from_secs(120),
        || async {
            let weights = app.forwards(&rule).await;
            weights.contains(&(green.clone(), 100)).then_some(())
        },
    )
    .await;
    alarm(
        &bed,
        &fires,
        Some("ALARM"),
        "Threshold Crossed: 1 datapoint [9.0] was greater than the threshold (5.0).",
    )
    .await;
    let x = run_it.await.unwrap();
    rolled_back_on_alarm(&app, &x, &name, &fires, "while the services rolled out").await;
    let d = newest_service_deployment(&app, api).await;
    assert_eq!(
        d.status().map(|s| s.as_str()),
        Some("ROLLBACK_SUCCESSFUL"),
        "{d:?}"
    );
    assert!(
        d.rollback()
            .unwrap()
            .reason()
            .unwrap_or_default()
            .contains("StopServiceDeployment"),
        "{d:?}"
    );
    assert_eq!(app.forwards(&rule).await, [(api.target_group.clone(), 100)]);
    let r = record(&app, &name).await;
    let actions: Vec<String> = r
        .rollback
        .unwrap()
        .services
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["rolled-back-by-ecs"]);
}

/// 33. A linear release (50 % steps) that passes Slipway's hook (its check through the test
/// listener, on /ready) and that ECS completes, then fails Slipway's health check (/health):
/// roll-back moves the service back (UpdateService) without Slipway's hook — the way back is
/// not held to the release's own check — and ECS runs that as a linear deployment too; the
/// release ends `Slipway.HealthCheckFailed` with the old version serving.
#[tokio::test]
async fn s33_a_linear_release_rolled_back_by_the_later_health_check() {
    let (_t, bed) = Testbed::lane().await;
    let (mut app, _) = staged_app(
        &bed,
        "strategy = \"linear\"\nstep_percent = 50\nstep_minutes = 1\nbake_minutes = 1\n",
        true,
    )
    .await;
    app.config = app.config.replacen(
        "test_host = ",
        &format!("test_url = \"{}/ready\"\ntest_host = ", bed.sim()),
        1,
    );
    state::store_config(&app.clients, &app.config)
        .await
        .unwrap();
    let api = app.service("api");
    let sick = app.push(api, "3333333").await;
    bed.add_scenario(json!({"images": [{"match": sick, "failure": "health-500"}]}))
        .await;
    let name = run("s33");
    let x = execute(&bed, app.event(api, "3333333", &sick), &name).await;
    assert_eq!(x.status, "FAILED", "{x:?}");
    assert_eq!(
        x.error.as_deref(),
        Some("Slipway.HealthCheckFailed"),
        "{x:?}"
    );
    visited(
        &x,
        &[
            "WaitForGroupEvents",
            "HealthCheck",
            "RollBack",
            "CheckRollback",
            "FinishFailed",
        ],
    );
    assert_eq!(app.running(api).await, api.task_definition);
    let listed = app
        .clients
        .ecs
        .list_service_deployments()
        .cluster(&app.cluster)
        .service(&api.ecs_service)
        .send()
        .await
        .unwrap();
    let statuses: Vec<&str> = listed
        .service_deployments()
        .iter()
        .map(|d| d.status().unwrap().as_str())
        .collect();
    assert_eq!(
        statuses[..2],
        ["SUCCESSFUL", "SUCCESSFUL"],
        "the release's linear deployment, then the one back: {statuses:?}"
    );
    // The release's deployment asked Slipway's hook (SUCCEEDED, /ready answers); the one back
    // has no hook of Slipway's, and nothing asked it.
    let release_deployment = crate::app::describe_service_deployment(
        &app.clients.ecs,
        listed.service_deployments()[1]
            .service_deployment_arn()
            .unwrap(),
    )
    .await;
    let runs = release_deployment.lifecycle_hook_details();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status().map(|s| s.as_str()), Some("SUCCEEDED"));
    let back = newest_service_deployment(&app, api).await;
    let config = back.deployment_configuration().unwrap();
    assert_eq!(config.strategy().map(|s| s.as_str()), Some("LINEAR"));
    assert!(config.lifecycle_hooks().is_empty(), "{config:?}");
    assert!(
        back.lifecycle_hook_details().is_empty(),
        "{:?}",
        back.lifecycle_hook_details()
    );
    let health = reqwest::Client::new()
        .get(format!("{}/health", bed.sim()))
        .header("host", app.host(api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the old version serves again");
    assert!(app.locks().await.is_empty());
    let r = record(&app, &name).await;
    let actions: Vec<String> = r
        .rollback
        .unwrap()
        .services
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["restored"]);
}
