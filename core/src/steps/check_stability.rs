//! `check-stability`: one look at the services' rollouts.

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};

use crate::aws::Clients;
use crate::model::{CheckStabilityInput, ServiceProgress, Stability};
use crate::steps::{describe_services, Clock};
use crate::StepError;

/// Looks once at every target service (at most 10 per DescribeServices call). Stable: the
/// PRIMARY deployment is on the target task definition, COMPLETED, alone, running = desired.
/// A FAILED deployment, or one the circuit breaker rolled back, is `Slipway.DeploymentFailed`
/// with ECS's reason — never "stable". Past the release's deadline, `Slipway.NotStable`.
#[tracing::instrument(skip_all, fields(release = %input.release.id, rollback = input.rollback))]
pub async fn check_stability(
    clients: &Clients,
    clock: &dyn Clock,
    input: CheckStabilityInput,
) -> Result<Stability, StepError> {
    let release = &input.release;
    let mut progress = Vec::new();
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
                    return Err(StepError::DeploymentFailed(format!(
                        "service {}: deployment {} FAILED: {}",
                        svc.name,
                        d.id().unwrap_or_default(),
                        d.rollout_state_reason().unwrap_or_default()
                    )));
                }
                if let Some(p) =
                    primary.filter(|p| p.task_definition() != Some(target.task_definition.as_str()))
                {
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
                        "service {}: {what}",
                        svc.name
                    )));
                }
            }
            let p = progress_of(&svc.name, primary, ours, service.desired_count());
            let done = primary.is_some_and(|p| {
                p.task_definition() == Some(target.task_definition.as_str())
                    && p.rollout_state() == Some(&DeploymentRolloutState::Completed)
                    && p.running_count() == p.desired_count()
            }) && deployments.len() == 1;
            stable &= done;
            progress.push(p);
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
    Ok(Stability {
        stable,
        services: progress,
    })
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
    }
}
