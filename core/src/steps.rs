//! The step functions, one per Lambda. Each takes its input document and returns its output
//! document or a [`StepError`](crate::StepError).

use serde_json::Value;

use crate::input::{self, PlanInput};
use crate::StepError;

/// `plan`: normalise the execution input (either form) into a [`PlanInput`].
#[tracing::instrument(skip_all)]
pub async fn plan(event: Value) -> Result<PlanInput, StepError> {
    let planned = input::parse(event);
    match &planned {
        Ok(PlanInput::Deploy { request }) => tracing::info!(?request, "deploy requested"),
        Ok(PlanInput::NothingToDo { reason }) => tracing::info!(%reason, "nothing to do"),
        Err(error) => tracing::warn!(error = %error, name = error.name(), "input rejected"),
    }
    planned
}
