//! Every step against moto + slipway-sim over HTTP, called as the core functions the Lambdas
//! wrap.

use std::time::Duration;

use serde_json::json;
use slipway_core::model::{
    CheckStabilityInput, DeployStackInput, FinishInput, HealthCheckInput, PlanOutput, Release,
    RollBackInput, ServiceTarget, StackProgress, UpdateServiceInput,
};
use slipway_core::steps::{self, HttpProber, SystemClock};
use slipway_core::{state, StepError};

use crate::app::App;

fn release(out: PlanOutput) -> Release {
    match out {
        PlanOutput::Deploy { release } => *release,
        other => panic!("expected a release, got {other:?}"),
    }
}

async fn plan(
    app: &App,
    input: serde_json::Value,
    execution: &str,
) -> Result<PlanOutput, StepError> {
    steps::plan(
        &app.clients,
        &SystemClock,
        json!({"input": input, "execution": execution}),
    )
    .await
}

/// Releases the stack locks `execution`'s plan took.
async fn let_stacks_go(app: &App, execution: &str) {
    state::release_lock(&app.clients, &state::stack_lock(&app.stack), execution)
        .await
        .unwrap();
}

/// Loops deploy-stack until done, as the state machine does.
async fn deploy_stacks(app: &App, release: &Release) -> Result<StackProgress, StepError> {
    let mut progress = None;
    for _ in 0..400 {
        let p = steps::deploy_stack(
            &app.clients,
            &SystemClock,
            DeployStackInput {
                release: release.clone(),
                progress,
                task_token: None,
            },
        )
        .await?;
        if p.done {
            return Ok(p);
        }
        progress = Some(p);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stack loop never finished");
}

/// Loops check-stability until stable.
async fn until_stable(
    app: &App,
    release: &Release,
    targets: Vec<ServiceTarget>,
    rollback: bool,
) -> Result<(), StepError> {
    for _ in 0..600 {
        let s = steps::check_stability(
            &app.clients,
            &SystemClock,
            CheckStabilityInput {
                release: release.clone(),
                targets: targets.clone(),
                rollback,
                rollback_deadline: None,
                task_token: None,
            },
        )
        .await?;
        if s.stable {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never stable");
}

/// plan: an ECR push of a matching tag makes a release of that one service, pinned by
/// digest, with its lock taken and what runs now kept for rollback.
#[tokio::test]
async fn plan_makes_a_release_from_an_ecr_push() {
    let mut app = App::create(&["api", "web"], None).await;
    app.change_stack("r1").await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let r = release(
        plan(&app, app.event(api, "2222222", &digest), "exec-1")
            .await
            .unwrap(),
    );
    assert_eq!(r.services.len(), 1, "only api moves: {r:?}");
    let s = &r.services[0];
    assert_eq!(s.name, "api");
    assert_eq!(s.image, format!("{}@{digest}", api.uri));
    assert_eq!(s.previous_task_definition, api.task_definition);
    assert_eq!(s.previous_image, format!("{}@{}", api.uri, api.digest));
    assert_eq!(s.container, "api");
    assert_eq!(r.groups, vec![vec!["api".to_owned()]]);
    assert_eq!(r.stacks.len(), 1);
    assert_eq!(r.stacks[0].parameters_before["Environment"], "test");
    assert_eq!(
        (
            r.stacks[0].parameters_before["Release"].as_str(),
            r.stacks[0].parameters["Release"].as_str()
        ),
        ("none", "r1")
    );
    assert!(r.deadline > r.started_at);
    // One lock per service and one per stack.
    let mut held = app.locks().await;
    held.sort();
    assert_eq!(
        held,
        ["LOCK#api".to_owned(), format!("LOCK#stack:{}", app.stack)]
    );
    // No template is kept: a rollback restores the stack with UsePreviousTemplate.
    assert_eq!(
        r.stacks[0].capabilities,
        [
            "CAPABILITY_IAM",
            "CAPABILITY_NAMED_IAM",
            "CAPABILITY_AUTO_EXPAND"
        ]
    );

    // The same execution again (Lambda retries) gets the same lock; another one, for an image
    // pushed no earlier, waits for it (and queues as the newest image for api).
    release(
        plan(&app, app.event(api, "2222222", &digest), "exec-1")
            .await
            .unwrap(),
    );
    let other = app.push(api, "3333333").await;
    match plan(&app, app.event(api, "3333333", &other), "exec-2")
        .await
        .unwrap()
    {
        PlanOutput::Wait { reason, until } => {
            assert!(reason.contains("exec-1"), "{reason}");
            let holder = state::lock_holder(&app.clients, "api")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(until, holder.expires_at);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        state::waiter(&app.clients, "api")
            .await
            .unwrap()
            .map(|w| (w.owner, w.digest)),
        Some(("exec-2".to_owned(), other.clone()))
    );
    // A second event for the digest being deployed (the `latest` tag, say) is nothing to do.
    let manual = json!({"services": ["api"], "digest": digest});
    match plan(&app, manual, "exec-3").await.unwrap() {
        PlanOutput::NothingToDo { reason, .. } => {
            assert!(reason.contains("already being deployed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let mut held = app.locks().await;
    held.sort();
    assert_eq!(
        held,
        ["LOCK#api".to_owned(), format!("LOCK#stack:{}", app.stack)],
        "exec-1's locks only: none taken by the refused executions"
    );
    let stack_lock = state::lock_holder(&app.clients, &state::stack_lock(&app.stack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stack_lock.owner, "exec-1");
}

/// A stack whose parameters the release does not change is left out of it: no change set, no
/// DeployStacks call, and its lock goes back at once (another release may update it).
#[tokio::test]
async fn plan_leaves_out_a_stack_it_does_not_change() {
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let digest = app.push(api, "2424242").await;
    let r = release(
        plan(&app, app.event(api, "2424242", &digest), "exec-nostack")
            .await
            .unwrap(),
    );
    assert_eq!(r.services.len(), 1);
    assert!(r.stacks.is_empty(), "{:?}", r.stacks);
    assert_eq!(app.locks().await, ["LOCK#api".to_owned()]);
}

/// plan: what it ignores, each with its reason.
#[tokio::test]
async fn plan_ignores_what_it_must_not_deploy() {
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let nothing = |out: PlanOutput| match out {
        PlanOutput::NothingToDo { reason, skipped } => (reason, skipped),
        other => panic!("{other:?}"),
    };
    // A tag that does not match the service's pattern (`latest`).
    let latest = app.push(api, "latest").await;
    let (_, skipped) = nothing(
        plan(&app, app.event(api, "latest", &latest), "e1")
            .await
            .unwrap(),
    );
    assert!(
        skipped[0].reason.contains("does not match its tag_pattern"),
        "{skipped:?}"
    );
    // The digest it already runs.
    let (reason, skipped) = nothing(
        plan(&app, app.event(api, "1111111", &api.digest), "e2")
            .await
            .unwrap(),
    );
    assert!(reason.contains("already runs"), "{reason}");
    assert!(skipped[0].reason.contains("already runs"));
    // A repository no service uses.
    let mut other = app.event(api, "1111111", &api.digest);
    other["detail"]["repository-name"] = json!("elsewhere/thing");
    let (reason, _) = nothing(plan(&app, other, "e3").await.unwrap());
    assert!(
        reason.contains("no configured service uses the ECR repository elsewhere/thing"),
        "{reason}"
    );
    // A failed push.
    let mut failed = app.event(api, "1111111", &api.digest);
    failed["detail"]["result"] = json!("FAILURE");
    let (reason, _) = nothing(plan(&app, failed, "e4").await.unwrap());
    assert!(reason.contains("did not succeed"), "{reason}");
    assert!(app.locks().await.is_empty(), "nothing to do holds no lock");
}

/// deploy-stack: an unchanged stack is an empty change set (a no-op); a changed parameter is
/// executed to UPDATE_COMPLETE; a failing update is Slipway.StackFailed naming the resource.
#[tokio::test]
async fn deploy_stack_updates_through_change_sets() {
    let mut app = App::create(&["api"], None).await;
    app.change_stack("r1").await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let mut r = release(
        plan(&app, app.event(api, "2222222", &digest), "exec-s")
            .await
            .unwrap(),
    );
    // Called with the stack's own values (as an older plan could), deploy-stack finds the
    // change set empty: unchanged.
    r.stacks[0].parameters = r.stacks[0].parameters_before.clone();
    let p = deploy_stacks(&app, &r).await.unwrap();
    assert_eq!(p.unchanged, std::slice::from_ref(&app.stack));
    assert!(p.changed.is_empty());

    r.stacks[0].parameters.insert("Release".into(), "r2".into());
    r.id = format!("{}-2", r.id);
    let p = deploy_stacks(&app, &r).await.unwrap();
    assert_eq!(p.changed, std::slice::from_ref(&app.stack));
    let out = app
        .clients
        .cloudformation
        .describe_stacks()
        .stack_name(&app.stack)
        .send()
        .await
        .unwrap();
    let stack = &out.stacks()[0];
    assert_eq!(stack.stack_status().unwrap().as_str(), "UPDATE_COMPLETE");
    assert!(stack
        .parameters()
        .iter()
        .any(|p| p.parameter_key() == Some("Release") && p.parameter_value() == Some("r2")));

    app.bed.add_scenario(json!({"stacks": [{"name": app.stack, "fail_update": {"resource": "Settings", "reason": "Parameter value too long"}}]})).await;
    r.stacks[0].parameters_before = r.stacks[0].parameters.clone();
    r.stacks[0].parameters.insert("Release".into(), "r3".into());
    r.id = format!("{}-3", r.id);
    let e = deploy_stacks(&app, &r).await.unwrap_err();
    assert_eq!(e.name(), "Slipway.StackFailed");
    let text = e.to_string();
    assert!(text.contains("UPDATE_ROLLBACK_COMPLETE"), "{text}");
    assert!(
        text.contains("Settings (AWS::SSM::Parameter) UPDATE_FAILED: Parameter value too long"),
        "{text}"
    );
}

/// The first call makes the change set of every stack that changes (CloudFormation computes
/// them side by side); they are executed one stack at a time, in order. A release that fails
/// before a stack's turn leaves its change set unexecuted: roll-back deletes it.
#[tokio::test]
async fn deploy_stack_makes_every_change_set_at_once_and_rollback_deletes_the_unexecuted() {
    let mut app = App::create(&["api"], None).await;
    app.change_stack("r1").await;
    let second = format!("{}-b", app.stack);
    app.clients
        .cloudformation
        .create_stack()
        .stack_name(&second)
        .template_body(slipway_tests::app::STACK_TEMPLATE)
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("Environment")
                .parameter_value("test")
                .build(),
        )
        .send()
        .await
        .unwrap();
    slipway_tests::eventually("the second stack", Duration::from_secs(30), || async {
        let out = app
            .clients
            .cloudformation
            .describe_stacks()
            .stack_name(&second)
            .send()
            .await
            .ok()?;
        (out.stacks()[0].stack_status()?.as_str() == "CREATE_COMPLETE").then_some(())
    })
    .await;
    let api = app.service("api");
    let digest = app.push(api, "2525252").await;
    let mut r = release(
        plan(&app, app.event(api, "2525252", &digest), "exec-one-pass")
            .await
            .unwrap(),
    );
    r.stacks[0]
        .parameters
        .insert("Release".into(), "one-pass".into());
    let mut b = r.stacks[0].clone();
    b.name = second.clone();
    b.parameters_before = [("Environment", "test"), ("Release", "none")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    r.stacks.push(b);
    let step = |progress: Option<StackProgress>, release: Release| {
        let clients = app.clients.clone();
        async move {
            steps::deploy_stack(
                &clients,
                &SystemClock,
                DeployStackInput {
                    release,
                    progress,
                    task_token: None,
                },
            )
            .await
        }
    };
    let first = step(None, r.clone()).await.unwrap();
    assert!(first.prepared && first.index == 0, "{first:?}");
    let cs = first.change_set.clone().unwrap();
    for stack in [&app.stack, &second] {
        let out = app
            .clients
            .cloudformation
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(&cs)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("{stack} has no change set {cs} after the first call: {e:?}")
            });
        assert_ne!(out.status().unwrap().as_str(), "FAILED", "{stack}");
    }
    // On until the first stack is updated: the second is untouched, its change set waiting.
    let mut p = first;
    while p.index == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        p = step(Some(p), r.clone()).await.unwrap();
    }
    assert_eq!(p.changed, std::slice::from_ref(&app.stack));
    assert_eq!(p.change_set.as_deref(), Some(cs.as_str()), "{p:?}");
    let waiting = app
        .clients
        .cloudformation
        .describe_change_set()
        .stack_name(&second)
        .change_set_name(&cs)
        .send()
        .await
        .unwrap();
    assert_eq!(waiting.execution_status().unwrap().as_str(), "AVAILABLE");

    // The release fails here: roll-back restores the first stack and deletes the second's
    // change set, which nobody must execute now.
    let rolled = steps::roll_back(
        &app.clients,
        &SystemClock,
        RollBackInput {
            release: r.clone(),
            stacks: Some(p.clone()),
            previous: None,
            error: None,
        },
    )
    .await
    .unwrap();
    assert!(
        rolled
            .stacks
            .iter()
            .any(|a| a.name == second && a.action == "unchanged"),
        "{rolled:?}"
    );
    let gone = app
        .clients
        .cloudformation
        .describe_change_set()
        .stack_name(&second)
        .change_set_name(&cs)
        .send()
        .await;
    assert!(
        gone.is_err(),
        "the unexecuted change set is still there: {gone:?}"
    );
}

/// deploy-stack is idempotent across a retry: when the call that executed the change set
/// lost its answer (a Lambda timeout), Step Functions repeats it with the same input; that
/// call finds the change set executing (ExecutionStatus) and carries on watching, instead of
/// calling ExecuteChangeSet again (InvalidChangeSetStatus → StackFailed).
#[tokio::test]
async fn deploy_stack_retried_after_execute_carries_on() {
    let mut app = App::create(&["api"], None).await;
    app.change_stack("r1").await;
    let api = app.service("api");
    let digest = app.push(api, "2323232").await;
    let mut r = release(
        plan(&app, app.event(api, "2323232", &digest), "exec-retry")
            .await
            .unwrap(),
    );
    r.stacks[0]
        .parameters
        .insert("Release".into(), "retried".into());
    let step = |progress: Option<StackProgress>| {
        steps::deploy_stack(
            &app.clients,
            &SystemClock,
            DeployStackInput {
                release: r.clone(),
                progress,
                task_token: None,
            },
        )
    };
    // First call creates the change set; look until it is ready to execute.
    let mut p = step(None).await.unwrap();
    let cs = p.change_set.clone().unwrap();
    let cfn = &app.clients.cloudformation;
    slipway_tests::eventually("change set ready", Duration::from_secs(30), || async {
        let out = cfn
            .describe_change_set()
            .stack_name(&app.stack)
            .change_set_name(&cs)
            .send()
            .await
            .unwrap();
        (out.status().map(|s| s.as_str()) == Some("CREATE_COMPLETE")).then_some(())
    })
    .await;
    // The attempt whose answer was lost: it executed the change set.
    cfn.execute_change_set()
        .stack_name(&app.stack)
        .change_set_name(&cs)
        .send()
        .await
        .unwrap();
    // The retry, with the input the lost attempt had.
    let retried = step(Some(p.clone())).await.unwrap();
    assert!(retried.executing, "{retried:?}");
    assert_eq!(retried.changed, std::slice::from_ref(&app.stack));
    p = retried;
    for _ in 0..400 {
        if p.done {
            break;
        }
        p = step(Some(p)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.done, "{p:?}");
    let out = cfn
        .describe_stacks()
        .stack_name(&app.stack)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.stacks()[0].stack_status().unwrap().as_str(),
        "UPDATE_COMPLETE"
    );
}

/// update-services: a new revision pinned by digest with every other field kept; the same
/// input twice gives one revision and one deployment.
#[tokio::test]
async fn update_services_pins_the_digest_and_is_idempotent() {
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let digest = app.push(api, "2222222").await;
    let r = release(
        plan(&app, app.event(api, "2222222", &digest), "exec-u")
            .await
            .unwrap(),
    );
    let input = UpdateServiceInput {
        release: r.clone(),
        service: "api".into(),
    };
    let first = steps::update_services(&app.clients, input.clone())
        .await
        .unwrap();
    assert!(first.started);
    assert_ne!(first.task_definition, api.task_definition);
    let second = steps::update_services(&app.clients, input).await.unwrap();
    assert!(!second.started);
    assert_eq!(second.task_definition, first.task_definition);
    let service =
        slipway_tests::app::describe(&app.clients.ecs, &app.cluster, &api.ecs_service).await;
    assert_eq!(
        service.deployments().len(),
        2,
        "one new deployment beside the old one"
    );

    let old = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&api.task_definition)
        .send()
        .await
        .unwrap();
    let new = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&first.task_definition)
        .send()
        .await
        .unwrap();
    let (old, new) = (
        old.task_definition().unwrap(),
        new.task_definition().unwrap(),
    );
    assert_eq!(new.revision(), old.revision() + 1);
    assert_eq!(
        new.container_definitions()[0].image(),
        Some(format!("{}@{digest}", api.uri).as_str())
    );
    let mut expected = old.container_definitions().to_vec();
    expected[0].image = new.container_definitions()[0].image.clone();
    assert_eq!(
        new.container_definitions(),
        expected.as_slice(),
        "environment, secrets, logs, health check, sidecar kept"
    );
    assert_eq!((new.cpu(), new.memory()), (Some("512"), Some("1024")));
    assert_eq!(new.task_role_arn(), old.task_role_arn());
    assert_eq!(new.execution_role_arn(), old.execution_role_arn());
    assert_eq!(new.network_mode(), old.network_mode());
    assert_eq!(
        new.requires_compatibilities(),
        old.requires_compatibilities()
    );
}

/// check-stability reports progress, then stable; a circuit breaker rollback is
/// Slipway.DeploymentFailed with ECS's reason; past the deadline, Slipway.NotStable.
#[tokio::test]
async fn check_stability_sees_progress_failure_and_deadline() {
    let app = App::create(&["api", "auth"], None).await;
    let (api, auth) = (app.service("api"), app.service("auth"));
    let digest = app.push(api, "2222222").await;
    let r = release(
        plan(
            &app,
            json!({"services": ["api"], "digest": digest}),
            "exec-c",
        )
        .await
        .unwrap(),
    );
    // These releases only move services: their stack locks go back (finish's job) so the
    // next plan on this app is not made to wait.
    let_stacks_go(&app, "exec-c").await;
    let t = steps::update_services(
        &app.clients,
        UpdateServiceInput {
            release: r.clone(),
            service: "api".into(),
        },
    )
    .await
    .unwrap();
    let look = steps::check_stability(
        &app.clients,
        &SystemClock,
        CheckStabilityInput {
            release: r.clone(),
            targets: vec![t.clone()],
            rollback: false,
            rollback_deadline: None,
            task_token: None,
        },
    )
    .await
    .unwrap();
    assert!(!look.stable);
    assert_eq!(look.services[0].rollout_state, "IN_PROGRESS");
    assert_eq!(look.services[0].desired, 2);
    until_stable(&app, &r, vec![t.clone()], false)
        .await
        .unwrap();
    steps::finish(
        &app.clients,
        &SystemClock,
        FinishInput {
            release: r,
            result: "succeeded".into(),
            error: None,
            rollback: None,
            timings: Default::default(),
            execution: None,
        },
    )
    .await
    .unwrap();

    // Past the deadline while not stable: NotStable.
    let slow = app.push(api, "4444444").await;
    app.bed
        .add_scenario(
            json!({"images": [{"match": slow, "failure": "slow", "start_seconds": 100000}]}),
        )
        .await;
    let mut late = release(
        plan(
            &app,
            json!({"services": ["api"], "digest": slow}),
            "exec-late",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let_stacks_go(&app, "exec-late").await;
    let t2 = steps::update_services(
        &app.clients,
        UpdateServiceInput {
            release: late.clone(),
            service: "api".into(),
        },
    )
    .await
    .unwrap();
    late.deadline = late.started_at - 1;
    let e = steps::check_stability(
        &app.clients,
        &SystemClock,
        CheckStabilityInput {
            release: late.clone(),
            targets: vec![t2],
            rollback: false,
            rollback_deadline: None,
            task_token: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.name(), "Slipway.NotStable");
    assert!(e.to_string().contains("passed its deadline"), "{e}");

    // Crashing tasks: the circuit breaker rolls back; that is a failure, never "stable".
    let bad = app.push(auth, "5555555").await;
    app.bed
        .add_scenario(json!({"images": [{"match": bad, "failure": "crash"}]}))
        .await;
    let r3 = release(
        plan(
            &app,
            json!({"services": ["auth"], "digest": bad}),
            "exec-crash",
        )
        .await
        .unwrap(),
    );
    let t3 = steps::update_services(
        &app.clients,
        UpdateServiceInput {
            release: r3.clone(),
            service: "auth".into(),
        },
    )
    .await
    .unwrap();
    let e = until_stable(&app, &r3, vec![t3], false).await.unwrap_err();
    assert_eq!(e.name(), "Slipway.DeploymentFailed");
    assert!(e.to_string().contains("circuit breaker"), "{e}");
}

/// health-check passes on a healthy image and fails, saying what it saw, on one whose
/// /health answers 500 — which ECS and the load balancer do not catch.
#[tokio::test]
async fn health_check_catches_a_500() {
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let prober = HttpProber::new().unwrap();
    let good = app.push(api, "2222222").await;
    let r = release(
        plan(
            &app,
            json!({"services": ["api"], "digest": good}),
            "exec-h1",
        )
        .await
        .unwrap(),
    );
    let t = steps::update_services(
        &app.clients,
        UpdateServiceInput {
            release: r.clone(),
            service: "api".into(),
        },
    )
    .await
    .unwrap();
    until_stable(&app, &r, vec![t], false).await.unwrap();
    let report = steps::health_check(
        &app.clients,
        &prober,
        HealthCheckInput {
            release: r.clone(),
            bake: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.services[0].passes, 2);
    assert_eq!(report.services[0].targets, Some((2, 2)));
    steps::finish(
        &app.clients,
        &SystemClock,
        FinishInput {
            release: r,
            result: "succeeded".into(),
            error: None,
            rollback: None,
            timings: Default::default(),
            execution: None,
        },
    )
    .await
    .unwrap();

    let sick = app.push(api, "6666666").await;
    app.bed
        .add_scenario(json!({"images": [{"match": sick, "failure": "health-500"}]}))
        .await;
    let r = release(
        plan(
            &app,
            json!({"services": ["api"], "digest": sick}),
            "exec-h2",
        )
        .await
        .unwrap(),
    );
    let t = steps::update_services(
        &app.clients,
        UpdateServiceInput {
            release: r.clone(),
            service: "api".into(),
        },
    )
    .await
    .unwrap();
    until_stable(&app, &r, vec![t], false).await.unwrap();
    let e = steps::health_check(
        &app.clients,
        &prober,
        HealthCheckInput {
            release: r,
            bake: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.name(), "Slipway.HealthCheckFailed");
    let text = e.to_string();
    assert!(
        text.contains("answered 500") && text.contains("expected 200") && text.contains("body:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Host {}.staging.test", api.ecs_service)),
        "{text}"
    );
}

/// roll-back puts the moved service and the changed stack back, is idempotent, and leaves a
/// service the circuit breaker already rolled back alone; finish then releases the locks and
/// records the result.
#[tokio::test]
async fn roll_back_restores_and_finish_records() {
    let mut app = App::create(&["api", "auth"], None).await;
    app.change_stack("r1").await;
    let (api, auth) = (app.service("api"), app.service("auth"));
    let good = app.push(api, "2222222").await;
    let bad = app.push(auth, "2222222").await;
    app.bed
        .add_scenario(json!({"images": [{"match": bad, "failure": "crash"}]}))
        .await;
    // One release, two services: api moves fine, auth crashes.
    let mut r = release(
        plan(
            &app,
            json!({"services": ["api", "auth"], "tag": "2222222"}),
            "exec-rb",
        )
        .await
        .unwrap(),
    );
    assert_eq!(r.services.len(), 2);
    r.stacks[0].parameters.insert("Release".into(), "rb".into());
    let stacks = deploy_stacks(&app, &r).await.unwrap();
    assert_eq!(stacks.changed, std::slice::from_ref(&app.stack));
    let mut targets = vec![];
    for s in ["api", "auth"] {
        targets.push(
            steps::update_services(
                &app.clients,
                UpdateServiceInput {
                    release: r.clone(),
                    service: s.into(),
                },
            )
            .await
            .unwrap(),
        );
    }
    let e = until_stable(&app, &r, targets, false).await.unwrap_err();
    assert_eq!(e.name(), "Slipway.DeploymentFailed");
    let moved = app.running(api).await;
    let td = app
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&moved)
        .send()
        .await
        .unwrap();
    assert_eq!(
        td.task_definition().unwrap().container_definitions()[0].image(),
        Some(format!("{}@{good}", api.uri).as_str()),
        "api moved to the release's image"
    );

    let input = RollBackInput {
        release: r.clone(),
        stacks: Some(stacks),
        error: Some(json!({"Error": e.name(), "Cause": e.to_string()})),
        previous: None,
    };
    let first = steps::roll_back(&app.clients, &SystemClock, input.clone())
        .await
        .unwrap();
    let action = |name: &str| {
        first
            .services
            .iter()
            .find(|a| a.name == name)
            .unwrap()
            .action
            .clone()
    };
    assert_eq!(action("api"), "restored");
    assert_eq!(action("auth"), "already-rolled-back-by-ecs");
    assert_eq!(first.stacks[0].action, "restored");
    assert!(!first.done, "the stack update back is running");
    let mut last = first.clone();
    for _ in 0..400 {
        if last.done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = steps::roll_back(&app.clients, &SystemClock, input.clone())
            .await
            .unwrap();
    }
    assert!(last.done);
    assert!(
        last.services.iter().all(|a| a.action != "restored"),
        "idempotent: nothing restored twice: {last:?}"
    );
    until_stable(&app, &r, first.targets.clone(), true)
        .await
        .unwrap();
    assert_eq!(app.running(api).await, api.task_definition);
    assert_eq!(app.running(auth).await, auth.task_definition);
    let out = app
        .clients
        .cloudformation
        .describe_stacks()
        .stack_name(&app.stack)
        .send()
        .await
        .unwrap();
    assert!(out.stacks()[0]
        .parameters()
        .iter()
        .any(|p| p.parameter_key() == Some("Release") && p.parameter_value() == Some("none")));

    assert_eq!(app.locks().await.len(), 3, "api, auth and the stack");
    let record = steps::finish(
        &app.clients,
        &SystemClock,
        FinishInput {
            release: r.clone(),
            result: "failed".into(),
            error: input.error.clone(),
            rollback: Some(last),
            timings: [("Plan".to_owned(), 0.5)].into(),
            execution: None,
        },
    )
    .await
    .unwrap();
    assert!(app.locks().await.is_empty(), "finish releases every lock");
    assert_eq!(record.result, "failed");
    let records = state::records(&app.clients, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].release, r.id);
    assert_eq!(records[0].services.len(), 2);
    assert_eq!(
        records[0].services[0].from,
        format!("{}@{}", api.uri, api.digest)
    );
    assert_eq!(
        records[0].error.as_ref().unwrap()["Error"],
        "Slipway.DeploymentFailed"
    );
    // finish again (a retried Lambda) changes nothing.
    steps::finish(
        &app.clients,
        &SystemClock,
        FinishInput {
            release: r,
            result: "failed".into(),
            error: None,
            rollback: None,
            timings: Default::default(),
            execution: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(state::records(&app.clients, 10).await.unwrap().len(), 1);
}

/// A Lambda lifecycle hook at POST_TEST_TRAFFIC_SHIFT on `function`.
fn hook(
    function: &str,
    details: Option<serde_json::Value>,
) -> aws_sdk_ecs::types::DeploymentLifecycleHook {
    aws_sdk_ecs::types::DeploymentLifecycleHook::builder()
        .hook_target_arn(format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{function}"
        ))
        .role_arn("arn:aws:iam::123456789012:role/hook")
        .lifecycle_stages(aws_sdk_ecs::types::DeploymentLifecycleHookStage::PostTestTrafficShift)
        .set_hook_details(details.as_ref().map(slipway_core::steps::document))
        .build()
}

/// A service ECS deploys blue/green (its owner's choice) is refused while slipway.toml names
/// no strategy for it, naming both ways out; with `strategy = "rolling"` update-services
/// switches it back to ECS's rolling update, without Slipway's lifecycle hook (the owner's
/// stays).
#[tokio::test]
async fn an_ecs_strategy_slipway_was_not_told_of_is_refused_and_rolling_switches_back() {
    let mut app = App::create(&["api"], None).await;
    let api = app.service("api").clone();
    app.prepare_staged(&api).await;
    app.clients
        .ecs
        .update_service()
        .cluster(&app.cluster)
        .service(&api.ecs_service)
        .deployment_configuration(
            aws_sdk_ecs::types::DeploymentConfiguration::builder()
                .strategy(aws_sdk_ecs::types::DeploymentStrategy::BlueGreen)
                .bake_time_in_minutes(0)
                // Slipway's hook from when it deployed the service blue/green (known by its
                // hookDetails: this installation has no hook function any more), and the
                // owner's own.
                .lifecycle_hooks(hook(
                    "slipway-staging-health-check",
                    Some(json!({"slipway": {"service": "api"}})),
                ))
                .lifecycle_hooks(hook("owner-hook", None))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let digest = app.push(&api, "3434343").await;
    let e = plan(&app, app.event(&api, "3434343", &digest), "exec-s1")
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Slipway.InvalidInput");
    let text = e.to_string();
    assert!(
        text.starts_with("services.api.strategy: ")
            && text.contains("deploys BLUE_GREEN")
            && text.contains("strategy = \"rolling\""),
        "{text}"
    );
    assert!(app.locks().await.is_empty(), "a refused plan keeps no lock");

    app.config = app.config.replacen(
        "[services.health]",
        "strategy = \"rolling\"\n[services.health]",
        1,
    );
    state::store_config(&app.clients, &app.config)
        .await
        .unwrap();
    let r = release(
        plan(&app, app.event(&api, "3434343", &digest), "exec-s2")
            .await
            .unwrap(),
    );
    assert!(r.services[0].to_rolling && r.services[0].staged.is_none());
    let t = steps::update_services(
        &app.clients,
        UpdateServiceInput {
            release: r,
            service: "api".into(),
        },
    )
    .await
    .unwrap();
    assert!(t.started);
    let service =
        slipway_tests::app::describe(&app.clients.ecs, &app.cluster, &api.ecs_service).await;
    assert_eq!(
        service
            .deployment_configuration()
            .and_then(|c| c.strategy())
            .map(|s| s.as_str()),
        Some("ROLLING")
    );
    let hooks: Vec<&str> = service
        .deployment_configuration()
        .map(|c| c.lifecycle_hooks())
        .unwrap_or_default()
        .iter()
        .filter_map(|h| h.hook_target_arn())
        .collect();
    assert_eq!(
        hooks,
        ["arn:aws:lambda:us-east-1:123456789012:function:owner-hook"]
    );
    app.wait_on(&api, &t.task_definition).await;
}
