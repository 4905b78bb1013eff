//! `roll-back`: puts back what this release moved — services first (they moved last), then
//! stacks, in reverse order. One look per call; idempotent.

use aws_sdk_cloudformation::types::{Parameter, StackStatus};

use crate::aws::{aws, Clients};
use crate::model::{
    RollBackInput, Rollback, RollbackAction, ServiceRelease, ServiceTarget, StackRelease,
};
use crate::steps::{describe_services, Clock};
use crate::StepError;

/// Services this release moved go back to their snapshot task definition (one the circuit
/// breaker already rolled back is left alone; one someone else moved since is left alone and
/// reported; one a stack owns goes back with its stack); stacks it changed go back to their
/// parameters — with `UsePreviousTemplate`, the values the release changed put back and
/// `UsePreviousValue` for the rest (NoEcho ones included, which read back as `****`); an
/// update still running is cancelled. `done` once no stack operation is still running.
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn roll_back(
    clients: &Clients,
    clock: &dyn Clock,
    input: RollBackInput,
) -> Result<Rollback, StepError> {
    let release = &input.release;
    let now = clock.now();
    let deadline = match input.previous.as_ref().map(|p| p.deadline) {
        Some(d) if d > 0 => d,
        _ => now + i64::from(release.rollback_minutes) * 60,
    };
    let mut report = Rollback {
        done: true,
        services: vec![],
        stacks: vec![],
        targets: vec![],
        deadline,
    };

    // Services a stack owns go back with their stack: they are looked at once no stack
    // operation runs any more (below).
    let (owned, ordered): (Vec<&ServiceRelease>, Vec<&ServiceRelease>) = release
        .groups
        .iter()
        .rev()
        .flatten()
        .filter_map(|n| release.service(n))
        .partition(|s| s.stack.is_some());
    restore_services(clients, &ordered, false, release.started_at, &mut report).await?;

    // Every stack of the release is looked at, not only those recorded as changed: an
    // execution stopped mid-update never recorded its progress. One stack at a time, in
    // reverse order: a pass that starts or waits for an operation looks no further.
    for stack in release.stacks.iter().rev() {
        let mut action = restore_stack(clients, stack).await?;
        if action == "unchanged" && !forget_change_set(clients, stack, &release.id).await {
            // Still being created: deleted on a later pass.
            action = "waiting-for-change-set";
            report.done = false;
        }
        let busy = matches!(action, "cancelled" | "rolling-back" | "restored");
        report.stacks.push(RollbackAction {
            name: stack.name.clone(),
            action: action.to_owned(),
        });
        if busy {
            report.done = false;
            break;
        }
    }
    if report.done {
        restore_services(clients, &owned, true, release.started_at, &mut report).await?;
    } else {
        for svc in owned {
            report.services.push(RollbackAction {
                name: svc.name.clone(),
                action: "waiting-for-stack".to_owned(),
            });
        }
    }
    // A service restored in this pass (a `Map` sibling's UpdateService may land after the
    // rollback began) means one more pass, until one finds nothing left to restore.
    if report.services.iter().any(|a| {
        matches!(
            a.action.as_str(),
            "restored" | "rolled-back-by-ecs" | "waiting-for-ecs"
        )
    }) {
        report.done = false;
    }
    if let Some(previous) = &input.previous {
        accumulate(&mut report, previous);
    }
    if !report.done && now > deadline {
        let busy: Vec<String> = report
            .stacks
            .iter()
            .chain(&report.services)
            .filter(|a| {
                matches!(
                    a.action.as_str(),
                    "cancelled"
                        | "rolling-back"
                        | "restored"
                        | "rolled-back-by-ecs"
                        | "waiting-for-ecs"
                        | "waiting-for-stack"
                        | "waiting-for-change-set"
                )
            })
            .map(|a| format!("{} {}", a.name, a.action))
            .collect();
        return Err(StepError::RollbackFailed(format!(
            "the rollback passed its deadline ({} minutes, epoch {deadline}) with work still under way: {}",
            release.rollback_minutes,
            busy.join(", ")
        )));
    }
    Ok(report)
}

/// Keeps what earlier passes did: a later pass sees a restored stack as `unchanged` and a
/// restored service as `on-previous`, which would hide what the rollback did.
fn accumulate(report: &mut Rollback, previous: &Rollback) {
    fn merge(now: &mut Vec<RollbackAction>, before: &[RollbackAction]) {
        // What a later pass finds after an earlier one acted: the earlier action is what
        // happened (a service Slipway stopped ECS's deployment of reads, a pass later, as
        // one ECS rolled back).
        const PLAIN: [&str; 7] = [
            "unchanged",
            "on-previous",
            "rolling-back",
            "waiting-for-stack",
            "waiting-for-change-set",
            "waiting-for-ecs",
            "already-rolled-back-by-ecs",
        ];
        for old in before {
            match now.iter_mut().find(|a| a.name == old.name) {
                Some(a)
                    if PLAIN.contains(&a.action.as_str())
                        && !PLAIN.contains(&old.action.as_str()) =>
                {
                    a.action.clone_from(&old.action);
                }
                Some(_) => {}
                None => now.push(old.clone()),
            }
        }
    }
    merge(&mut report.services, &previous.services);
    merge(&mut report.stacks, &previous.stacks);
}

/// deploy-stack makes every stack's change set in its first call: one the release never
/// executed (it failed before that stack's turn) is deleted, so nobody executes it later.
/// False while CloudFormation is still creating it (`InvalidChangeSetStatus`: it cannot be
/// deleted yet, and is once it is created); true when it is gone or was never made
/// (`ChangeSetNotFound`). Any other refusal is logged and not waited for.
async fn forget_change_set(clients: &Clients, stack: &StackRelease, release: &str) -> bool {
    let name = format!("slipway-{release}");
    let deleted = clients
        .cloudformation
        .delete_change_set()
        .stack_name(&stack.name)
        .change_set_name(&name)
        .send()
        .await
        .map_err(aws("cloudformation:DeleteChangeSet"));
    match deleted {
        Ok(_) => {
            tracing::info!(stack = %stack.name, change_set = %name, "unexecuted change set deleted");
            true
        }
        Err(e)
            if e.code == "InvalidChangeSetStatus"
                || e.code == "InvalidChangeSetStatusException" =>
        {
            false
        }
        Err(e) if e.code.starts_with("ChangeSetNotFound") => true,
        Err(e) => {
            tracing::warn!(stack = %stack.name, error = %e, "cannot delete the unexecuted change set");
            true
        }
    }
}

/// One look at one stack of the release: the parameters this release set (its value differs
/// from the one before) and that still carry the release's value go back; every other
/// parameter keeps its current value (`UsePreviousValue`, NoEcho ones included, which read
/// back as `****`), and the template stays (`UsePreviousTemplate`). An update of ours still
/// running is cancelled.
async fn restore_stack(clients: &Clients, stack: &StackRelease) -> Result<&'static str, StepError> {
    let failed = |m: String| StepError::RollbackFailed(format!("stack {}: {m}", stack.name));
    let out = clients
        .cloudformation
        .describe_stacks()
        .stack_name(&stack.name)
        .send()
        .await
        .map_err(aws("cloudformation:DescribeStacks"))
        .map_err(|e| e.step(failed))?;
    let Some(now) = out.stacks().first() else {
        return Err(failed("it no longer exists".into()));
    };
    let status = now.stack_status().cloned();
    let params = super::stack_parameters(now);
    let ours: Vec<&String> = stack
        .parameters
        .iter()
        .filter(|(k, v)| stack.parameters_before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let carried: Vec<&String> = ours
        .iter()
        .copied()
        .filter(|k| params.get(*k) == stack.parameters.get(*k))
        .collect();
    Ok(match status {
        Some(StackStatus::UpdateInProgress) if !carried.is_empty() => {
            let cancel = clients
                .cloudformation
                .cancel_update_stack()
                .stack_name(&stack.name)
                .send()
                .await
                .map_err(aws("cloudformation:CancelUpdateStack"));
            match cancel {
                Ok(_) => "cancelled",
                // The update moved on (to cleanup or its end) since DescribeStacks: look
                // again on the next call.
                Err(e) if e.message.contains("CancelUpdateStack cannot be called") => {
                    "rolling-back"
                }
                Err(e) => return Err(e.step(failed)),
            }
        }
        Some(s) if s.as_str().ends_with("_IN_PROGRESS") => "rolling-back",
        Some(s) if s.as_str().ends_with("_FAILED") => {
            return Err(failed(format!("it is {}: it needs a person", s.as_str())));
        }
        _ if carried.is_empty() => "unchanged",
        // Our restore itself failed and CloudFormation rolled it back to the release's
        // values: issuing it again would loop; a person must look.
        Some(StackStatus::UpdateRollbackComplete) if carried.len() == ours.len() => {
            return Err(failed(
                "restoring its parameters failed and CloudFormation rolled that back; it is still on the release's parameters".into(),
            ));
        }
        _ => {
            let mut update = clients
                .cloudformation
                .update_stack()
                .stack_name(&stack.name)
                .use_previous_template(true)
                .set_capabilities(Some(super::deploy_stack::capabilities(stack)))
                .set_role_arn(stack.role_arn.clone());
            for k in params.keys() {
                let p = Parameter::builder().parameter_key(k);
                update = update.parameters(match stack.parameters_before.get(k) {
                    Some(before) if carried.contains(&k) => p.parameter_value(before).build(),
                    _ => p.use_previous_value(true).build(),
                });
            }
            match update
                .send()
                .await
                .map_err(aws("cloudformation:UpdateStack"))
            {
                Ok(_) => "restored",
                Err(e) if e.message.contains("No updates are to be performed") => "unchanged",
                Err(e) => return Err(e.step(failed)),
            }
        }
    })
}

fn image_of_current<'a>(
    td: &'a aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput,
    container: &str,
) -> Option<&'a str> {
    td.task_definition()?
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.image())
}

/// What roll-back does about ECS's blue/green, linear or canary deployment of a service on
/// the release's revision: still running (PENDING, IN_PROGRESS) — StopServiceDeployment
/// ROLLBACK, and ECS puts all traffic back on the previous revision, which never stopped
/// (`rolled-back-by-ecs`); already rolling back — the same, nothing to call; stopping without
/// a rollback (STOP_REQUESTED) — look again on the next pass (`waiting-for-ecs`); over, or
/// ECS refusing the stop because it just finished (ConflictException) — None: the service is
/// moved back with UpdateService like any other.
async fn stop_ecs_deployment(
    clients: &Clients,
    service: &aws_sdk_ecs::types::Service,
    name: &str,
) -> Result<Option<&'static str>, crate::aws::AwsError> {
    let Some((arn, status)) = in_progress_deployment(clients, service).await? else {
        return Ok(None);
    };
    match status.as_str() {
        "PENDING" | "IN_PROGRESS" => {
            let stopped = clients
                .ecs
                .stop_service_deployment()
                .service_deployment_arn(&arn)
                .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
                .send()
                .await
                .map_err(aws("ecs:StopServiceDeployment"));
            match stopped {
                Ok(_) => {
                    tracing::info!(service = %name, deployment = %arn, "ECS deployment stopped: rolling back");
                    Ok(Some("rolled-back-by-ecs"))
                }
                Err(e) if e.code == "ConflictException" => {
                    tracing::info!(service = %name, deployment = %arn, "ECS deployment finished meanwhile: moving back");
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }
        "STOP_REQUESTED" => Ok(Some("waiting-for-ecs")),
        _ => Ok(Some("rolled-back-by-ecs")),
    }
}

/// The service's current service deployment (`currentServiceDeployment`) and its status,
/// unless it is over (SUCCESSFUL, STOPPED, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED).
async fn in_progress_deployment(
    clients: &Clients,
    service: &aws_sdk_ecs::types::Service,
) -> Result<Option<(String, String)>, crate::aws::AwsError> {
    let Some(arn) = service.current_service_deployment() else {
        return Ok(None);
    };
    let found = super::service_deployments(clients, &[arn.to_owned()]).await?;
    Ok(found.first().and_then(|d| {
        let status = d.status()?.as_str().to_owned();
        matches!(
            status.as_str(),
            "PENDING"
                | "IN_PROGRESS"
                | "ROLLBACK_REQUESTED"
                | "ROLLBACK_IN_PROGRESS"
                | "STOP_REQUESTED"
        )
        .then(|| (arn.to_owned(), status))
    }))
}

/// Puts services back on their snapshot revision. `owned`: they belong to a stack that is
/// settled now — one its restore put back on the old image is `restored-by-stack` (its old
/// revision was deregistered by the stack's cleanup, so UpdateService back to it would be
/// refused); one still on the release's image (a stack that only records the image) is
/// moved back like any other.
async fn restore_services(
    clients: &Clients,
    services: &[&ServiceRelease],
    owned: bool,
    since: i64,
    report: &mut Rollback,
) -> Result<(), StepError> {
    let failed = |m: String| StepError::RollbackFailed(m);
    // One configuration, one cluster: every service of a release is looked at in one go
    // (10 per DescribeServices call).
    let names: Vec<String> = services.iter().map(|s| s.ecs_service.clone()).collect();
    let described = match services.first() {
        Some(first) => describe_services(&clients.ecs, &first.cluster, &names)
            .await
            .map_err(|e| e.step(|m| failed(format!("services: {m}"))))?,
        None => Vec::new(),
    };
    for (svc, found) in services.iter().zip(described) {
        let service = found.ok_or_else(|| {
            failed(format!(
                "service {}: ECS service {} no longer exists",
                svc.name, svc.ecs_service
            ))
        })?;
        let current = service.task_definition().unwrap_or_default().to_owned();
        let action = if current == svc.previous_task_definition {
            if super::circuit_breaker_rollback(&service, since).is_some() {
                "already-rolled-back-by-ecs"
            } else {
                "on-previous"
            }
        } else {
            let td = clients
                .ecs
                .describe_task_definition()
                .task_definition(&current)
                .send()
                .await
                .map_err(aws("ecs:DescribeTaskDefinition"))
                .map_err(|e| e.step(|m| failed(format!("service {}: {m}", svc.name))))?;
            let ours = td.task_definition().is_some_and(|t| {
                t.container_definitions().iter().any(|c| {
                    c.name() == Some(svc.container.as_str())
                        && c.image() == Some(svc.image.as_str())
                })
            });
            let staged = if ours && svc.staged.is_some() {
                stop_ecs_deployment(clients, &service, &svc.name)
                    .await
                    .map_err(|e| e.step(|m| failed(format!("service {}: {m}", svc.name))))?
            } else {
                None
            };
            if let Some(action) = staged {
                action
            } else if ours {
                // Without Slipway's lifecycle hook: ECS runs the way back with the service's
                // strategy, and the hook would hold it to the release's own check (the very
                // one that may have failed it) through the test listener. Only when no hook
                // of the owner's remains: passing one's role again needs iam:PassRole on it,
                // which roll-back has not (then the way back keeps every hook, as before).
                let hook_function = std::env::var(crate::aws::HOOK_FUNCTION_ENV).ok();
                let configuration = super::without_slipway_hook(
                    service.deployment_configuration(),
                    hook_function.as_deref(),
                )
                .filter(|c| c.lifecycle_hooks().is_empty());
                clients
                    .ecs
                    .update_service()
                    .cluster(&svc.cluster)
                    .service(&svc.ecs_service)
                    .task_definition(&svc.previous_task_definition)
                    .set_deployment_configuration(configuration)
                    .send()
                    .await
                    .map_err(aws("ecs:UpdateService"))
                    .map_err(|e| e.step(|m| failed(format!("service {}: {m}", svc.name))))?;
                tracing::info!(service = %svc.name, task_definition = %svc.previous_task_definition, "restored");
                "restored"
            } else if owned
                && image_of_current(&td, &svc.container) == Some(svc.previous_image.as_str())
            {
                "restored-by-stack"
            } else {
                "moved-by-someone-else"
            }
        };
        if !matches!(
            action,
            "moved-by-someone-else" | "restored-by-stack" | "waiting-for-ecs"
        ) {
            report.targets.push(ServiceTarget {
                service: svc.name.clone(),
                task_definition: svc.previous_task_definition.clone(),
                started: action == "restored" || action == "rolled-back-by-ecs",
            });
        }
        report.services.push(RollbackAction {
            name: svc.name.clone(),
            action: action.to_owned(),
        });
    }
    Ok(())
}
