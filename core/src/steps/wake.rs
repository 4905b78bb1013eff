//! Answering a `.waitForTaskToken` task (Step Functions' callback API), shared by the waits
//! of check-stability (rollouts) and deploy-stack (stack updates).

use crate::aws::{aws, AwsError, Clients};
use crate::StepError;

/// SendTaskSuccess with `output` (JSON); false when the task was already closed (answered by
/// the other path, or timed out): `TaskTimedOut` (bc:sfn SendTaskSuccess errors).
pub(crate) async fn succeed(
    clients: &Clients,
    token: &str,
    output: String,
) -> Result<bool, StepError> {
    closed_is_answered(
        clients
            .sfn
            .send_task_success()
            .task_token(token)
            .output(output)
            .send()
            .await
            .map(|_| ())
            .map_err(aws("states:SendTaskSuccess")),
    )
}

/// SendTaskFailure with the error's name and text (the cause, at most 32,768 characters);
/// false when the task was already closed.
pub(crate) async fn fail(
    clients: &Clients,
    token: &str,
    error: &StepError,
) -> Result<bool, StepError> {
    let cause: String = error.to_string().chars().take(32_768).collect();
    closed_is_answered(
        clients
            .sfn
            .send_task_failure()
            .task_token(token)
            .error(error.name())
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(aws("states:SendTaskFailure")),
    )
}

/// Resets the task's heartbeat clock; false when the task is closed.
pub(crate) async fn heartbeat(clients: &Clients, token: &str) -> Result<bool, StepError> {
    closed_is_answered(
        clients
            .sfn
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(|_| ())
            .map_err(aws("states:SendTaskHeartbeat")),
    )
}

/// Answered: true. Already closed: false. Throttled, a 5xx, unreachable: `Slipway.Transient`
/// (the registering call is retried by its task, an event's invocation by Lambda). Refused
/// otherwise (no right to answer, a token Step Functions does not know): false, said in the
/// log — failing here would fail a release whose services are fine, and the task's own
/// timeout and fallback look carry the release on.
fn closed_is_answered(sent: Result<(), AwsError>) -> Result<bool, StepError> {
    match sent {
        Ok(()) => Ok(true),
        Err(e) if e.code == "TaskTimedOut" || e.code == "TaskDoesNotExist" => Ok(false),
        Err(e) if e.transient => Err(StepError::Transient(e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "cannot answer the waiting task; its timeout will look instead");
            Ok(false)
        }
    }
}
