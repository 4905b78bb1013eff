//! `deploy-stack`: moves the release's stacks to their new parameters through change sets,
//! one look per call.

use aws_sdk_cloudformation::types::{ChangeSetStatus, Parameter, StackStatus};

use crate::aws::{aws, Clients};
use crate::model::{DeployStackInput, StackProgress};
use crate::StepError;

/// CloudFormation's reason for an empty change set starts with this.
const NO_CHANGES: &str = "The submitted information didn't contain changes";

/// One look at the stack loop: create the change set, or see whether it is ready, or execute
/// it, or see whether the update finished. Returns where the loop is; `done` when every
/// stack is updated or had nothing to change.
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn deploy_stack(
    clients: &Clients,
    input: DeployStackInput,
) -> Result<StackProgress, StepError> {
    let release = &input.release;
    let mut p = input.progress.unwrap_or_default();
    let Some(stack) = release.stacks.get(p.index) else {
        p.done = true;
        return Ok(p);
    };
    let cfn = &clients.cloudformation;
    let name = format!("slipway-{}", release.id);
    let failed = |m: String| StepError::StackFailed(format!("stack {}: {m}", stack.name));

    match (&p.change_set, p.executing) {
        (None, _) => {
            let mut request = cfn
                .create_change_set()
                .stack_name(&stack.name)
                .change_set_name(&name)
                .use_previous_template(true)
                .description(format!("Slipway release {}", release.id));
            for (key, value) in &stack.parameters {
                let param = if stack.parameters_before.get(key) == Some(value) {
                    Parameter::builder()
                        .parameter_key(key)
                        .use_previous_value(true)
                        .build()
                } else {
                    Parameter::builder()
                        .parameter_key(key)
                        .parameter_value(value)
                        .build()
                };
                request = request.parameters(param);
            }
            match request
                .send()
                .await
                .map_err(aws("cloudformation:CreateChangeSet"))
            {
                // A retried call finds the change set the first attempt made.
                Ok(_) => {}
                Err(e) if e.code == "AlreadyExistsException" => {}
                Err(e) => return Err(e.step(failed)),
            }
            tracing::info!(stack = %stack.name, change_set = %name, "change set created");
            p.change_set = Some(name);
        }
        (Some(cs), false) => {
            let out = cfn
                .describe_change_set()
                .stack_name(&stack.name)
                .change_set_name(cs)
                .send()
                .await
                .map_err(aws("cloudformation:DescribeChangeSet"))
                .map_err(|e| e.step(failed))?;
            match out.status() {
                Some(ChangeSetStatus::CreateComplete) => {
                    cfn.execute_change_set()
                        .stack_name(&stack.name)
                        .change_set_name(cs)
                        .send()
                        .await
                        .map_err(aws("cloudformation:ExecuteChangeSet"))
                        .map_err(|e| e.step(failed))?;
                    tracing::info!(stack = %stack.name, changes = out.changes().len(), "change set executing");
                    p.executing = true;
                    if !p.changed.contains(&stack.name) {
                        p.changed.push(stack.name.clone());
                    }
                }
                Some(ChangeSetStatus::Failed) => {
                    let reason = out.status_reason().unwrap_or_default();
                    if !reason.starts_with(NO_CHANGES)
                        && !reason.contains("No updates are to be performed")
                    {
                        return Err(failed(format!("change set {cs} FAILED: {reason}")));
                    }
                    tracing::info!(stack = %stack.name, "nothing to change");
                    // Best effort: an empty change set left behind is harmless.
                    let _ = cfn
                        .delete_change_set()
                        .stack_name(&stack.name)
                        .change_set_name(cs)
                        .send()
                        .await;
                    p.unchanged.push(stack.name.clone());
                    advance(&mut p, release.stacks.len());
                }
                _ => {} // CREATE_PENDING / CREATE_IN_PROGRESS: look again later.
            }
        }
        (Some(_), true) => {
            let out = cfn
                .describe_stacks()
                .stack_name(&stack.name)
                .send()
                .await
                .map_err(aws("cloudformation:DescribeStacks"))
                .map_err(|e| e.step(failed))?;
            let status = out.stacks().first().and_then(|s| s.stack_status()).cloned();
            match status {
                Some(StackStatus::UpdateComplete) => {
                    tracing::info!(stack = %stack.name, "updated");
                    advance(&mut p, release.stacks.len());
                }
                Some(s) if s.as_str().ends_with("_IN_PROGRESS") => {}
                Some(s) => {
                    return Err(failed(format!(
                        "{}; {}",
                        s.as_str(),
                        failed_resources(clients, &stack.name).await?
                    )))
                }
                None => return Err(failed("vanished while updating".into())),
            }
        }
    }
    Ok(p)
}

fn advance(p: &mut StackProgress, len: usize) {
    p.index += 1;
    p.change_set = None;
    p.executing = false;
    p.done = p.index >= len;
}

/// The resources that failed in the stack's latest operation, with their reasons, from its
/// events (newest first, back to the operation's "User Initiated" start).
async fn failed_resources(clients: &Clients, stack: &str) -> Result<String, StepError> {
    let out = clients
        .cloudformation
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .map_err(aws("cloudformation:DescribeStackEvents"))
        .map_err(|e| e.step(|m| StepError::StackFailed(format!("stack {stack}: {m}"))))?;
    let mut failed = Vec::new();
    for e in out.stack_events() {
        let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
        if e.logical_resource_id() == Some(stack)
            && status.ends_with("_IN_PROGRESS")
            && e.resource_status_reason() == Some("User Initiated")
        {
            break;
        }
        if status.ends_with("_FAILED") && e.logical_resource_id() != Some(stack) {
            failed.push(format!(
                "{} ({}) {status}: {}",
                e.logical_resource_id().unwrap_or_default(),
                e.resource_type().unwrap_or_default(),
                e.resource_status_reason().unwrap_or_default()
            ));
        }
    }
    failed.reverse();
    Ok(if failed.is_empty() {
        "no resource reported a failure".to_owned()
    } else {
        format!("failed: {}", failed.join("; "))
    })
}
