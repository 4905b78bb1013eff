//! `roll-back`: puts back what this release moved — services first (they moved last), then
//! stacks, in reverse order. One look per call; idempotent.

use aws_sdk_cloudformation::types::{Parameter, StackStatus};

use crate::aws::{aws, Clients};
use crate::model::{RollBackInput, Rollback, RollbackAction, ServiceRelease, ServiceTarget};
use crate::steps::describe_services;
use crate::StepError;

/// Services this release moved go back to their snapshot task definition (one the circuit
/// breaker already rolled back is left alone; one someone else moved since is left alone and
/// reported; one a stack owns goes back with its stack); stacks it changed go back to their
/// parameters — with `UsePreviousTemplate`, the values the release changed put back and
/// `UsePreviousValue` for the rest (NoEcho ones included, which read back as `****`); an
/// update still running is cancelled. `done` once no stack operation is still running.
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn roll_back(clients: &Clients, input: RollBackInput) -> Result<Rollback, StepError> {
    let release = &input.release;
    let failed = |m: String| StepError::RollbackFailed(m);
    let mut report = Rollback {
        done: true,
        services: vec![],
        stacks: vec![],
        targets: vec![],
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

    let changed: Vec<String> = input
        .stacks
        .as_ref()
        .map(|p| p.changed.clone())
        .unwrap_or_default();
    for stack in release
        .stacks
        .iter()
        .rev()
        .filter(|s| changed.contains(&s.name))
    {
        let out = clients
            .cloudformation
            .describe_stacks()
            .stack_name(&stack.name)
            .send()
            .await
            .map_err(aws("cloudformation:DescribeStacks"))
            .map_err(|e| e.step(|m| failed(format!("stack {}: {m}", stack.name))))?;
        let Some(now) = out.stacks().first() else {
            return Err(failed(format!("stack {} no longer exists", stack.name)));
        };
        let status = now.stack_status().cloned();
        let params = super::stack_parameters(now);
        let action = match status {
            Some(StackStatus::UpdateInProgress) if params == stack.parameters => {
                let cancel = clients
                    .cloudformation
                    .cancel_update_stack()
                    .stack_name(&stack.name)
                    .send()
                    .await
                    .map_err(aws("cloudformation:CancelUpdateStack"));
                report.done = false;
                match cancel {
                    Ok(_) => "cancelled",
                    // The update moved on (to cleanup or its end) since DescribeStacks: look
                    // again on the next call.
                    Err(e) if e.message.contains("CancelUpdateStack cannot be called") => {
                        "rolling-back"
                    }
                    Err(e) => return Err(e.step(|m| failed(format!("stack {}: {m}", stack.name)))),
                }
            }
            Some(s) if s.as_str().ends_with("_IN_PROGRESS") => {
                report.done = false;
                "rolling-back"
            }
            Some(s) if s.as_str().ends_with("_FAILED") => {
                return Err(failed(format!(
                    "stack {} is {}: it needs a person",
                    stack.name,
                    s.as_str()
                )));
            }
            _ if params == stack.parameters_before => "unchanged",
            // Our restore itself failed and CloudFormation rolled it back to the release's
            // values: issuing it again would loop; a person must look.
            Some(StackStatus::UpdateRollbackComplete) if params == stack.parameters => {
                return Err(failed(format!(
                    "stack {}: restoring its parameters failed and CloudFormation rolled that back; it is still on the release's parameters",
                    stack.name
                )));
            }
            _ => {
                let mut update = clients
                    .cloudformation
                    .update_stack()
                    .stack_name(&stack.name)
                    .use_previous_template(true)
                    .set_capabilities(Some(super::deploy_stack::capabilities(stack)))
                    .set_role_arn(stack.role_arn.clone());
                for (k, before) in &stack.parameters_before {
                    let changed = stack.parameters.get(k).is_some_and(|v| v != before);
                    let p = Parameter::builder().parameter_key(k);
                    update = update.parameters(if changed {
                        p.parameter_value(before).build()
                    } else {
                        p.use_previous_value(true).build()
                    });
                }
                match update
                    .send()
                    .await
                    .map_err(aws("cloudformation:UpdateStack"))
                {
                    Ok(_) => {
                        report.done = false;
                        "restored"
                    }
                    Err(e) if e.message.contains("No updates are to be performed") => "unchanged",
                    Err(e) => return Err(e.step(|m| failed(format!("stack {}: {m}", stack.name)))),
                }
            }
        };
        report.stacks.push(RollbackAction {
            name: stack.name.clone(),
            action: action.to_owned(),
        });
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
    Ok(report)
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
            if ours {
                clients
                    .ecs
                    .update_service()
                    .cluster(&svc.cluster)
                    .service(&svc.ecs_service)
                    .task_definition(&svc.previous_task_definition)
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
        if action != "moved-by-someone-else" && action != "restored-by-stack" {
            report.targets.push(ServiceTarget {
                service: svc.name.clone(),
                task_definition: svc.previous_task_definition.clone(),
                started: action == "restored",
            });
        }
        report.services.push(RollbackAction {
            name: svc.name.clone(),
            action: action.to_owned(),
        });
    }
    Ok(())
}
