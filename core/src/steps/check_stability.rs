//! `check-stability`: one look at the services' rollouts.

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};
use serde_json::{json, Value};

use crate::aws::Clients;
use crate::model::{CheckStabilityInput, ServiceProgress, Stability};
use crate::state;
use crate::steps::{describe_services, Clock};
use crate::StepError;

/// The EventBridge detail type of ECS's service deployment events (ECS Developer Guide,
/// "Amazon ECS service deployment state change events").
pub const DEPLOYMENT_EVENT: &str = "ECS Deployment State Change";

/// Looks once at every target service (at most 10 per DescribeServices call). Stable: the
/// PRIMARY deployment is on the target task definition, COMPLETED, alone, running = desired.
/// A FAILED deployment, or one the circuit breaker rolled back, is `Slipway.DeploymentFailed`
/// with ECS's reason — never "stable". One of the release's alarms in ALARM is
/// `Slipway.AlarmTriggered`. Past the release's deadline, `Slipway.NotStable`.
#[tracing::instrument(skip_all, fields(release = %input.release.id, rollback = input.rollback))]
pub async fn check_stability(
    clients: &Clients,
    clock: &dyn Clock,
    input: CheckStabilityInput,
) -> Result<Stability, StepError> {
    look(clients, clock, &input).await.map(|(s, _)| s)
}

/// One look: the stability, and the wait key ([`state::wake_key`]) of each service
/// deployment not done yet.
async fn look(
    clients: &Clients,
    clock: &dyn Clock,
    input: &CheckStabilityInput,
) -> Result<(Stability, Vec<String>), StepError> {
    let release = &input.release;
    let mut pending = Vec::new();
    let mut progress = Vec::new();
    // (index in `progress`, current service deployment) of the services ECS deploys
    // blue/green, linear or canary: their stages, read at once below.
    let mut staged: Vec<(usize, String)> = Vec::new();
    let mut stable = true;
    let mut by_cluster: Vec<(
        &str,
        Vec<(&crate::model::ServiceTarget, &crate::model::ServiceRelease)>,
    )> = Vec::new();
    for t in &input.targets {
        let svc = release.service(&t.service).ok_or_else(|| {
            StepError::invalid(
                "targets",
                format!("{:?} is not part of release {}", t.service, release.id),
            )
        })?;
        match by_cluster.iter_mut().find(|(c, _)| *c == svc.cluster) {
            Some((_, v)) => v.push((t, svc)),
            None => by_cluster.push((&svc.cluster, vec![(t, svc)])),
        }
    }
    for (cluster, targets) in by_cluster {
        let names: Vec<String> = targets.iter().map(|(_, s)| s.ecs_service.clone()).collect();
        let found = describe_services(&clients.ecs, cluster, &names)
            .await
            .map_err(|e| e.step(StepError::DeploymentFailed))?;
        for ((target, svc), service) in targets.into_iter().zip(found) {
            let service = service.ok_or_else(|| {
                StepError::DeploymentFailed(format!(
                    "service {}: ECS service {} no longer exists",
                    svc.name, svc.ecs_service
                ))
            })?;
            let deployments = service.deployments();
            let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
            let ours = deployments
                .iter()
                .find(|d| d.task_definition() == Some(target.task_definition.as_str()));
            if input.rollback {
                // The deployment back to the previous revision failed (its own circuit
                // breaker): polling longer cannot help.
                if let Some(d) =
                    ours.filter(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed))
                {
                    return Err(StepError::RollbackFailed(format!(
                        "service {}: the deployment back to {} FAILED: {}",
                        svc.name,
                        target.task_definition,
                        d.rollout_state_reason().unwrap_or_default()
                    )));
                }
            } else {
                if let Some(d) =
                    ours.filter(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed))
                {
                    let notes = ecs_notes(clients, cluster, &service, release.started_at).await;
                    return Err(StepError::DeploymentFailed(format!(
                        "service {}: deployment {} FAILED: {}{notes}",
                        svc.name,
                        d.id().unwrap_or_default(),
                        d.rollout_state_reason().unwrap_or_default()
                    )));
                }
                if let Some(p) =
                    primary.filter(|p| p.task_definition() != Some(target.task_definition.as_str()))
                {
                    let notes = ecs_notes(clients, cluster, &service, release.started_at).await;
                    let what = if let Some(reason) =
                        super::circuit_breaker_rollback(&service, release.started_at)
                    {
                        format!(
                            "the ECS deployment circuit breaker rolled it back to {}: {reason}",
                            p.task_definition().unwrap_or_default()
                        )
                    } else {
                        format!(
                            "it was moved to {} by someone else",
                            p.task_definition().unwrap_or_default()
                        )
                    };
                    return Err(StepError::DeploymentFailed(format!(
                        "service {}: {what}{notes}",
                        svc.name
                    )));
                }
            }
            let p = progress_of(&svc.name, primary, ours, service.desired_count());
            if let Some(arn) = service
                .current_service_deployment()
                .filter(|_| svc.staged.is_some())
            {
                staged.push((progress.len(), arn.to_owned()));
            }
            let done = primary.is_some_and(|p| {
                p.task_definition() == Some(target.task_definition.as_str())
                    && p.rollout_state() == Some(&DeploymentRolloutState::Completed)
                    && p.running_count() == p.desired_count()
            }) && deployments.len() == 1;
            stable &= done;
            if !done {
                if let (Some(arn), Some(id)) =
                    (service.service_arn(), ours.or(primary).and_then(|d| d.id()))
                {
                    pending.push(state::wake_key(arn, id));
                }
            }
            progress.push(p);
        }
    }
    if !staged.is_empty() {
        let arns: Vec<String> = staged.iter().map(|(_, a)| a.clone()).collect();
        match super::service_deployments(clients, &arns).await {
            Ok(found) => {
                for (i, arn) in &staged {
                    progress[*i].stage = found
                        .iter()
                        .find(|d| d.service_deployment_arn() == Some(arn.as_str()))
                        .map(stage_of);
                }
            }
            // The stage is for people reading the look: without it the look goes on.
            Err(e) => tracing::warn!(error = %e, "cannot read the service deployments"),
        }
    }
    let summary = || -> Vec<String> {
        progress
            .iter()
            .map(|p| {
                format!(
                    "{} {}/{} running, {} ({})",
                    p.service, p.running, p.desired, p.rollout_state, p.reason
                )
            })
            .collect()
    };
    if let Some(deadline) = input.rollback_deadline.filter(|_| input.rollback) {
        if !stable && clock.now() > deadline {
            return Err(StepError::RollbackFailed(format!(
                "the rollback of release {} passed its deadline ({} minutes, epoch {deadline}) before its services were stable: {}",
                release.id,
                release.rollback_minutes,
                summary().join("; ")
            )));
        }
    }
    // The release's alarms, at every look at its rollout (not the rollback's: it is already
    // going back).
    if !input.rollback {
        crate::alarms::check(
            &clients.cloudwatch,
            &release.alarms,
            "in ALARM while the services rolled out",
        )
        .await?;
    }
    if !stable && !input.rollback && clock.now() > release.deadline {
        let summary = summary();
        return Err(StepError::NotStable(format!(
            "release {} passed its deadline ({}): {}",
            release.id,
            release.deadline,
            summary.join("; ")
        )));
    }
    tracing::info!(stable, "looked");
    Ok((
        Stability {
            stable,
            services: progress,
        },
        pending,
    ))
}

/// What ECS's service deployments say of a failed rollout, for a service whose owner turned
/// on ECS's deployment alarms (`deploymentConfiguration.alarms`, left to ECS) or that ECS
/// deploys blue/green, linear or canary: the alarms that failed its deployments since the
/// release started (ListServiceDeployments, then DescribeServiceDeployments'
/// `alarms.triggeredAlarmNames`) as ` (ECS's deployment alarms fired: a, b)`, and a
/// rolled-back staged deployment's status, stage and reason. Empty when there is nothing to
/// add or it cannot be read (the failure is reported all the same).
async fn ecs_notes(
    clients: &Clients,
    cluster: &str,
    service: &aws_sdk_ecs::types::Service,
    since: i64,
) -> String {
    let configuration = service.deployment_configuration();
    let staged = configuration
        .and_then(|c| c.strategy())
        .is_some_and(|s| *s != aws_sdk_ecs::types::DeploymentStrategy::Rolling);
    let enabled = staged
        || configuration
            .and_then(|c| c.alarms())
            .is_some_and(|a| a.enable());
    let Some(arn) = service.service_arn().filter(|_| enabled) else {
        return String::new();
    };
    let read = async {
        let listed = clients
            .ecs
            .list_service_deployments()
            .cluster(cluster)
            .service(arn)
            .created_at(
                aws_sdk_ecs::types::CreatedAt::builder()
                    .after(aws_sdk_ecs::primitives::DateTime::from_secs(since))
                    .build(),
            )
            .send()
            .await
            .map_err(crate::aws::aws("ecs:ListServiceDeployments"))?;
        let arns: Vec<String> = listed
            .service_deployments()
            .iter()
            .filter_map(|d| d.service_deployment_arn().map(str::to_owned))
            .collect();
        if arns.is_empty() {
            return Ok(vec![]);
        }
        let described = super::service_deployments(clients, &arns).await?;
        let mut names: Vec<String> = described
            .iter()
            .filter_map(|d| d.alarms())
            .flat_map(|a| a.triggered_alarm_names().iter().cloned())
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut notes = Vec::new();
        if !names.is_empty() {
            notes.push(format!(
                "ECS's deployment alarms fired: {}",
                names.join(", ")
            ));
        }
        let rolled_back = described.iter().find(|d| {
            d.status()
                .is_some_and(|s| s.as_str().starts_with("ROLLBACK") || s.as_str() == "STOPPED")
        });
        if let Some(d) = rolled_back.filter(|_| staged) {
            notes.push(format!(
                "service deployment {} at {}: {}",
                d.status().map_or("", |s| s.as_str()),
                d.lifecycle_stage().map_or("", |s| s.as_str()),
                d.status_reason().unwrap_or_default()
            ));
        }
        Ok::<_, crate::aws::AwsError>(notes)
    };
    match read.await {
        Ok(notes) if !notes.is_empty() => format!(" ({})", notes.join("; ")),
        Ok(_) => String::new(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the service deployments for their alarms");
            String::new()
        }
    }
}

/// How long a stored wait is kept past the release's deadline (the item is deleted once its
/// wait is answered; this only bounds what a lost answer leaves).
const WAKE_GRACE_SECONDS: i64 = 3600;

/// check-stability invoked by a `.waitForTaskToken` task (the input has `task_token`): the
/// execution waits until the token is answered. Looks once; done (or failed) services answer
/// now. Otherwise the token is stored under each service deployment still rolling out, for
/// [`deployment_event`] to answer when ECS says it finished, and the services are looked at
/// once more — the event may have come before the token was stored — and answered if done.
/// Errors (a failed rollout included) are this invocation's own error, which fails the task
/// as a plain check-stability's would. Its output is ignored by Step Functions.
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn wait_for_stability(
    clients: &Clients,
    clock: &dyn Clock,
    mut input: CheckStabilityInput,
) -> Result<Value, StepError> {
    let token = input
        .task_token
        .take()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| StepError::invalid("task_token", "must be the task's token"))?;
    let (stability, pending) = look(clients, clock, &input).await?;
    if stability.stable {
        answer(clients, &token, Ok(&stability)).await?;
        return Ok(json!({"answered": true, "stable": true}));
    }
    let text = serde_json::to_string(&input)
        .map_err(|e| StepError::Transient(format!("cannot store the wait's input: {e}")))?;
    let wake = state::Wake {
        token: token.clone(),
        input: text,
        group: pending,
    };
    state::put_wake(clients, &wake, input.release.deadline + WAKE_GRACE_SECONDS).await?;
    let (stability, _) = match look(clients, clock, &input).await {
        Ok(s) => s,
        Err(e) => {
            state::delete_wake(clients, &wake.group, &wake.token).await?;
            return Err(e);
        }
    };
    if stability.stable {
        answer(clients, &token, Ok(&stability)).await?;
        state::delete_wake(clients, &wake.group, &wake.token).await?;
        return Ok(json!({"answered": true, "stable": true}));
    }
    tracing::info!(waits_for = wake.group.len(), "token stored");
    Ok(json!({"answered": false, "waits_for": wake.group}))
}

/// check-stability invoked by EventBridge with an "ECS Deployment State Change" event:
/// when a stability wait is stored for that service deployment, looks at its services and
/// answers the task — SendTaskSuccess with the stability when all are done, SendTaskFailure
/// with the error (`Slipway.DeploymentFailed` and ECS's reason for a failed rollout) —
/// or, when others are still rolling out, sends a heartbeat. Any other event, or one nobody
/// waits for, is ignored. A task already answered (the other path won) is not an error.
#[tracing::instrument(skip_all)]
pub async fn deployment_event(
    clients: &Clients,
    clock: &dyn Clock,
    event: Value,
) -> Result<Value, StepError> {
    if event["detail-type"] != DEPLOYMENT_EVENT {
        return Ok(json!({"ignored": "not an ECS Deployment State Change event"}));
    }
    let name = event["detail"]["eventName"].as_str().unwrap_or_default();
    if !matches!(
        name,
        "SERVICE_DEPLOYMENT_COMPLETED" | "SERVICE_DEPLOYMENT_FAILED"
    ) {
        return Ok(json!({"ignored": name}));
    }
    let (Some(service), Some(deployment)) = (
        event["resources"][0].as_str(),
        event["detail"]["deploymentId"].as_str(),
    ) else {
        return Err(StepError::invalid(
            "resources[0] / detail.deploymentId",
            "an ECS deployment event names its service and deployment",
        ));
    };
    let key = state::wake_key(service, deployment);
    let Some(wake) = state::wake(clients, &key).await? else {
        return Ok(json!({"ignored": "nobody waits for this deployment"}));
    };
    let input: CheckStabilityInput = crate::input::from_value(
        serde_json::from_str(&wake.input).map_err(|e| {
            StepError::invalid("input", format!("the stored wait is not JSON: {e}"))
        })?,
        "input",
    )?;
    let answered = match look(clients, clock, &input).await {
        Ok((s, _)) if s.stable => answer(clients, &wake.token, Ok(&s)).await?,
        // ECS has not caught up with its own event yet (DescribeServices is eventually
        // consistent): fail this invocation, so that the asynchronous invocation is retried
        // (Lambda retries a failed asynchronous invocation twice), rather than wait for the
        // fallback look.
        Ok((_, pending)) if pending.contains(&key) => {
            return Err(StepError::Transient(format!(
                "the event says {name} for {service} {deployment}, DescribeServices does not show it yet"
            )));
        }
        Ok(_) => {
            // Others still roll out: this one is done with (its event came), the wait goes on.
            let open = super::wake::heartbeat(clients, &wake.token).await?;
            state::delete_wake(clients, std::slice::from_ref(&key), &wake.token).await?;
            return Ok(json!({"answered": false, "open": open}));
        }
        // Throttled or unreachable: EventBridge's asynchronous invocation retries this event.
        Err(StepError::Transient(m)) => return Err(StepError::Transient(m)),
        Err(e) => answer(clients, &wake.token, Err(&e)).await?,
    };
    state::delete_wake(clients, &wake.group, &wake.token).await?;
    Ok(json!({"answered": answered}))
}

/// Answers a `.waitForTaskToken` task with a stability or an error; false when it was
/// already closed.
async fn answer(
    clients: &Clients,
    token: &str,
    result: Result<&Stability, &StepError>,
) -> Result<bool, StepError> {
    match result {
        Ok(stability) => {
            let output = serde_json::to_string(stability)
                .map_err(|e| StepError::Transient(format!("cannot write the output: {e}")))?;
            super::wake::succeed(clients, token, output).await
        }
        Err(e) => super::wake::fail(clients, token, e).await,
    }
}

/// Where ECS's blue/green, linear or canary deployment of a service stands: its lifecycle
/// stage and the new revision's share of production traffic (`IN_PROGRESS
/// PRODUCTION_TRAFFIC_SHIFT, 10% of production traffic`).
fn stage_of(d: &aws_sdk_ecs::types::ServiceDeployment) -> String {
    let weight = d
        .target_service_revision()
        .and_then(|r| r.requested_production_traffic_weight())
        .unwrap_or(0.0);
    format!(
        "{} {}, {weight}% of production traffic",
        d.status().map_or("", |s| s.as_str()),
        d.lifecycle_stage().map_or("", |s| s.as_str())
    )
}

fn progress_of(
    name: &str,
    primary: Option<&Deployment>,
    ours: Option<&Deployment>,
    desired: i32,
) -> ServiceProgress {
    let d = ours.or(primary);
    ServiceProgress {
        service: name.to_owned(),
        running: d.map_or(0, Deployment::running_count),
        desired,
        rollout_state: d
            .and_then(|d| d.rollout_state())
            .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()),
        reason: d
            .and_then(|d| d.rollout_state_reason())
            .unwrap_or_default()
            .to_owned(),
        stage: None,
    }
}
