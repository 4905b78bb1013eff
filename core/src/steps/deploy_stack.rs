//! `deploy-stack`: moves the release's stacks to their new parameters through change sets,
//! one look per call.

use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ExecutionStatus, Parameter, StackStatus,
};

use serde_json::{json, Value};

use crate::aws::{aws, Clients};
use crate::model::{DeployStackInput, Release, StackProgress, StackRelease};
use crate::state;
use crate::steps::Clock;
use crate::StepError;

/// The EventBridge detail type of CloudFormation's stack status events (CloudFormation User
/// Guide, "Stack Status Change event detail").
pub const STACK_EVENT: &str = "CloudFormation Stack Status Change";

/// CloudFormation's reason for an empty change set starts with this.
const NO_CHANGES: &str = "The submitted information didn't contain changes";

/// One look at the stack loop: create the change sets, or see whether the current stack's is
/// ready, or execute it, or see whether the update finished. Returns where the loop is;
/// `done` when every stack is updated or had nothing to change.
///
/// The first call creates the change set of every stack of the release at once (plan puts in
/// only stacks whose parameters change; a release sets parameters only, so one stack's
/// change set does not depend on another's update): CloudFormation computes them side by
/// side, and each stack's turn then starts at looking at its change set. They are executed
/// one stack at a time, in the configured order.
///
/// A stack that owns ECS services stays UPDATE_IN_PROGRESS until their deployments complete,
/// so the loop waits as CloudFormation does — until the release's deadline
/// (`Slipway.NotStable`). A circuit-breaker failure inside the stack is
/// `Slipway.DeploymentFailed`, naming the service. Each look at an executing update checks
/// the release's alarms (`Slipway.AlarmTriggered`).
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn deploy_stack(
    clients: &Clients,
    clock: &dyn Clock,
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
            // Every stack from this one on, unless an older progress document is carried on
            // (then only this one, as it did).
            let upto = if p.index == 0 || p.prepared {
                release.stacks.len()
            } else {
                p.index + 1
            };
            for each in &release.stacks[p.index..upto] {
                let failed =
                    |m: String| StepError::StackFailed(format!("stack {}: {m}", each.name));
                let request =
                    change_set_request(cfn, each, &name, format!("Slipway release {}", release.id));
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
                tracing::info!(stack = %each.name, change_set = %name, "change set created");
            }
            p.prepared = p.index == 0 || p.prepared;
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
            match (out.status(), out.execution_status()) {
                // A retried call after an ExecuteChangeSet that succeeded (its answer lost)
                // finds the change set executing or executed: carry on watching the stack.
                (
                    Some(ChangeSetStatus::CreateComplete),
                    Some(ExecutionStatus::ExecuteInProgress | ExecutionStatus::ExecuteComplete),
                ) => {
                    tracing::info!(stack = %stack.name, "change set already executing");
                    executing(&mut p, &stack.name);
                }
                (Some(ChangeSetStatus::CreateComplete), Some(ExecutionStatus::Available)) => {
                    cfn.execute_change_set()
                        .stack_name(&stack.name)
                        .change_set_name(cs)
                        .send()
                        .await
                        .map_err(aws("cloudformation:ExecuteChangeSet"))
                        .map_err(|e| e.step(failed))?;
                    tracing::info!(stack = %stack.name, changes = out.changes().len(), "change set executing");
                    executing(&mut p, &stack.name);
                }
                (Some(ChangeSetStatus::CreateComplete), Some(e))
                    if *e != ExecutionStatus::Unavailable =>
                {
                    // EXECUTE_FAILED (the update failed and was rolled back) or OBSOLETE
                    // (another update went first): this release's change never applied.
                    return Err(failed(format!(
                        "change set {cs} is {}: {}",
                        e.as_str(),
                        if *e == ExecutionStatus::Obsolete {
                            "the stack was updated by someone else after it was created"
                        } else {
                            "its update failed"
                        }
                    )));
                }
                (Some(ChangeSetStatus::Failed), _) => {
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
                    advance(&mut p, release.stacks.len(), &name);
                }
                // CREATE_PENDING / CREATE_IN_PROGRESS: look again later, within the deadline.
                _ if clock.now() > release.deadline => {
                    return Err(StepError::NotStable(format!(
                        "stack {}: change set {cs} still {} at the release's deadline ({})",
                        stack.name,
                        out.status().map_or("unknown", ChangeSetStatus::as_str),
                        release.deadline
                    )));
                }
                _ => {}
            }
        }
        (Some(cs), true) => {
            let out = cfn
                .describe_stacks()
                .stack_name(&stack.name)
                .send()
                .await
                .map_err(aws("cloudformation:DescribeStacks"))
                .map_err(|e| e.step(failed))?;
            let status = out.stacks().first().and_then(|s| s.stack_status()).cloned();
            // The release's alarms, at every look while its stack update moves forward: a
            // stack that owns a service rolls it out, and the rollout is watched from its
            // start. Not once CloudFormation rolls back (that failure is the one to report).
            if status.as_ref().is_some_and(|s| {
                matches!(
                    s,
                    StackStatus::UpdateInProgress
                        | StackStatus::UpdateCompleteCleanupInProgress
                        | StackStatus::UpdateComplete
                )
            }) {
                crate::alarms::check(
                    &clients.cloudwatch,
                    &release.alarms,
                    &format!("in ALARM while stack {} updated", stack.name),
                )
                .await?;
            }
            match status {
                // Right after ExecuteChangeSet, DescribeStacks may still show the end of the
                // stack's previous operation: the change set tells.
                Some(StackStatus::UpdateComplete)
                    if change_set_pending(cfn, &stack.name, cs).await? =>
                {
                    tracing::info!(stack = %stack.name, "the update has not started yet");
                }
                Some(StackStatus::UpdateComplete) => {
                    tracing::info!(stack = %stack.name, "updated");
                    advance(&mut p, release.stacks.len(), &name);
                }
                Some(s) if s.as_str().ends_with("_IN_PROGRESS") => {
                    // Only an update still moving forward is cut short: its cleanup means it
                    // succeeded, and CloudFormation's own rollback must be let finish.
                    if s == StackStatus::UpdateInProgress && clock.now() > release.deadline {
                        return Err(StepError::NotStable(format!(
                            "stack {} still {} at the release's deadline ({}): CloudFormation is waiting for its resources (an ECS service it owns not yet stable?)",
                            stack.name,
                            s.as_str(),
                            release.deadline
                        )));
                    }
                }
                Some(s) => {
                    let failures = failed_resources(clients, &stack.name).await?;
                    if let Some(e) = circuit_breaker(release, stack, &failures) {
                        return Err(e);
                    }
                    let list: Vec<String> = failures.iter().map(Failure::to_string).collect();
                    return Err(failed(format!(
                        "{}; {}",
                        s.as_str(),
                        if list.is_empty() {
                            "no resource reported a failure".to_owned()
                        } else {
                            format!("failed: {}", list.join("; "))
                        }
                    )));
                }
                None => return Err(failed("vanished while updating".into())),
            }
        }
    }
    Ok(p)
}

fn executing(p: &mut StackProgress, stack: &str) {
    p.executing = true;
    if !p.changed.iter().any(|s| s == stack) {
        p.changed.push(stack.to_owned());
    }
}

/// Whether the change set has not started executing yet (AVAILABLE) or still executes.
/// Once the update completes the change set is EXECUTE_COMPLETE, or gone
/// (`ChangeSetNotFound`: CloudFormation deletes a stack's change sets after an update).
async fn change_set_pending(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    cs: &str,
) -> Result<bool, StepError> {
    if cs.is_empty() {
        return Ok(false);
    }
    let out = cfn
        .describe_change_set()
        .stack_name(stack)
        .change_set_name(cs)
        .send()
        .await
        .map_err(aws("cloudformation:DescribeChangeSet"));
    match out {
        Ok(out) => Ok(matches!(
            out.execution_status(),
            Some(ExecutionStatus::Available | ExecutionStatus::ExecuteInProgress)
        )),
        Err(e) if e.code == "ChangeSetNotFound" || e.code == "ChangeSetNotFoundException" => {
            Ok(false)
        }
        Err(e) => Err(e.step(|m| StepError::StackFailed(format!("stack {stack}: {m}")))),
    }
}

/// On to the next stack: its change set exists already when they were made in one pass.
fn advance(p: &mut StackProgress, len: usize, change_set: &str) {
    p.index += 1;
    p.executing = false;
    p.done = p.index >= len;
    p.change_set = (p.prepared && !p.done).then(|| change_set.to_owned());
}

/// The capabilities a stack's calls acknowledge.
/// The CreateChangeSet request a release makes for `stack`: the stack's own template, the
/// release's parameters (unchanged ones as UsePreviousValue), its capabilities and role.
/// `slipway plan --change-sets` makes the same one.
pub fn change_set_request(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &StackRelease,
    name: &str,
    description: String,
) -> aws_sdk_cloudformation::operation::create_change_set::builders::CreateChangeSetFluentBuilder {
    let mut request = cfn
        .create_change_set()
        .stack_name(&stack.name)
        .change_set_name(name)
        .use_previous_template(true)
        .set_capabilities(Some(capabilities(stack)))
        .set_role_arn(stack.role_arn.clone())
        .description(description);
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
    request
}

pub(crate) fn capabilities(stack: &StackRelease) -> Vec<Capability> {
    stack
        .capabilities
        .iter()
        .map(|c| Capability::from(c.as_str()))
        .collect()
}

/// A resource that failed, from the stack's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    logical: String,
    physical: String,
    kind: String,
    status: String,
    reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) {}: {}",
            self.logical, self.kind, self.status, self.reason
        )
    }
}

/// The circuit breaker failed a service the stack owns: `Slipway.DeploymentFailed`, naming
/// the release's service (or the ECS service, if the release does not move it).
fn circuit_breaker(
    release: &Release,
    stack: &StackRelease,
    failures: &[Failure],
) -> Option<StepError> {
    let f = failures.iter().find(|f| {
        f.kind == "AWS::ECS::Service" && f.reason.contains("Circuit Breaker was triggered")
    })?;
    let ecs_service = f.physical.rsplit('/').next().unwrap_or(&f.physical);
    let name = release
        .services
        .iter()
        .find(|s| s.ecs_service == ecs_service)
        .map_or_else(|| ecs_service.to_owned(), |s| s.name.clone());
    Some(StepError::DeploymentFailed(format!(
        "service {name}: its deployment by stack {} ({}) failed: {}; CloudFormation rolled the stack back",
        stack.name, f.logical, f.reason
    )))
}

/// The resources that failed in the stack's latest operation, with their reasons, from its
/// events (newest first, page by page, back to the operation's "User Initiated" start).
pub(crate) async fn failed_resources(
    clients: &Clients,
    stack: &str,
) -> Result<Vec<Failure>, StepError> {
    let mut failed = Vec::new();
    let mut token = None;
    'pages: loop {
        let out = clients
            .cloudformation
            .describe_stack_events()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .map_err(aws("cloudformation:DescribeStackEvents"))
            .map_err(|e| e.step(|m| StepError::StackFailed(format!("stack {stack}: {m}"))))?;
        for e in out.stack_events() {
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
            if e.logical_resource_id() == Some(stack)
                && matches!(status, "UPDATE_IN_PROGRESS" | "CREATE_IN_PROGRESS")
                && e.resource_status_reason() == Some("User Initiated")
            {
                break 'pages;
            }
            if status.ends_with("_FAILED") && e.logical_resource_id() != Some(stack) {
                failed.push(Failure {
                    logical: e.logical_resource_id().unwrap_or_default().to_owned(),
                    physical: e.physical_resource_id().unwrap_or_default().to_owned(),
                    kind: e.resource_type().unwrap_or_default().to_owned(),
                    status: status.to_owned(),
                    reason: e.resource_status_reason().unwrap_or_default().to_owned(),
                });
            }
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    failed.reverse();
    Ok(failed)
}

/// How long a stored stack wait is kept past the release's deadline (deleted once answered).
const WAKE_GRACE_SECONDS: i64 = 3600;

/// The current stack's id and status.
async fn stack_status(clients: &Clients, name: &str) -> Result<(String, String), StepError> {
    let out = clients
        .cloudformation
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(aws("cloudformation:DescribeStacks"))
        .map_err(|e| e.step(|m| StepError::StackFailed(format!("stack {name}: {m}"))))?;
    let stack = out
        .stacks()
        .first()
        .ok_or_else(|| StepError::StackFailed(format!("stack {name}: vanished while updating")))?;
    Ok((
        stack.stack_id().unwrap_or(name).to_owned(),
        stack
            .stack_status()
            .map_or_else(String::new, |s| s.as_str().to_owned()),
    ))
}

/// deploy-stack invoked by a `.waitForTaskToken` task (`task_token` in the input) while the
/// current stack's change set executes: the execution waits until the token is answered with
/// the progress, unchanged (the next deploy-stack call looks at the stack). The update has
/// ended already: answered now. Otherwise the token is stored under the stack's id for
/// [`stack_event`] to answer when CloudFormation says the stack's status changed, and the
/// stack is looked at once more, since the event may have come first. Its output is ignored
/// by Step Functions.
#[tracing::instrument(skip_all, fields(release = %input.release.id))]
pub async fn wait_for_stack(
    clients: &Clients,
    mut input: DeployStackInput,
) -> Result<Value, StepError> {
    let token = input
        .task_token
        .take()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| StepError::invalid("task_token", "must be the task's token"))?;
    let progress = input.progress.clone().unwrap_or_default();
    let output = serde_json::to_string(&progress)
        .map_err(|e| StepError::Transient(format!("cannot write the progress: {e}")))?;
    let Some(stack) = input.release.stacks.get(progress.index) else {
        super::wake::succeed(clients, &token, output).await?;
        return Ok(json!({"answered": true}));
    };
    let cfn = &clients.cloudformation;
    let change_set = progress.change_set.clone().unwrap_or_default();
    // Ended: not in progress, and the change set no longer waiting or executing (right after
    // ExecuteChangeSet the stack may still show its previous operation's end).
    let ended = |status: &str| !status.ends_with("_IN_PROGRESS");
    let (id, status) = stack_status(clients, &stack.name).await?;
    if ended(&status) && !change_set_pending(cfn, &stack.name, &change_set).await? {
        super::wake::succeed(clients, &token, output).await?;
        return Ok(json!({"answered": true, "status": status}));
    }
    let wake = state::Wake {
        token: token.clone(),
        input: output.clone(),
        group: vec![state::stack_wake_key(&id)],
    };
    state::put_wake(clients, &wake, input.release.deadline + WAKE_GRACE_SECONDS).await?;
    let (_, status) = stack_status(clients, &stack.name).await?;
    if ended(&status) && !change_set_pending(cfn, &stack.name, &change_set).await? {
        super::wake::succeed(clients, &token, output).await?;
        state::delete_wake(clients, &wake.group, &wake.token).await?;
        return Ok(json!({"answered": true, "status": status}));
    }
    tracing::info!(stack = %stack.name, %status, "token stored");
    Ok(json!({"answered": false, "waits_for": wake.group}))
}

/// deploy-stack invoked by EventBridge with a "CloudFormation Stack Status Change" event:
/// when a wait is stored for that stack, a status that ends the operation (not
/// `*_IN_PROGRESS`) answers the task with the stored progress (the next deploy-stack call
/// looks at the stack and says what happened); a status on the way sends a heartbeat. Any
/// other event, or a stack nobody waits for, is ignored; a task already answered is not an
/// error.
#[tracing::instrument(skip_all)]
pub async fn stack_event(clients: &Clients, event: Value) -> Result<Value, StepError> {
    if event["detail-type"] != STACK_EVENT {
        return Ok(json!({"ignored": "not a CloudFormation Stack Status Change event"}));
    }
    let (Some(id), Some(status)) = (
        event["detail"]["stack-id"].as_str(),
        event["detail"]["status-details"]["status"].as_str(),
    ) else {
        return Err(StepError::invalid(
            "detail.stack-id / detail.status-details.status",
            "a stack status event names its stack and status",
        ));
    };
    let key = state::stack_wake_key(id);
    let Some(wake) = state::wake(clients, &key).await? else {
        return Ok(json!({"ignored": "nobody waits for this stack"}));
    };
    if status.ends_with("_IN_PROGRESS") {
        let open = super::wake::heartbeat(clients, &wake.token).await?;
        return Ok(json!({"answered": false, "open": open, "status": status}));
    }
    let answered = super::wake::succeed(clients, &wake.token, wake.input.clone()).await?;
    state::delete_wake(clients, &wake.group, &wake.token).await?;
    Ok(json!({"answered": answered, "status": status}))
}
