//! The `check-stability` Lambda: one look at the services' rollouts. Invoked three ways: by a
//! plain Task (look once), by a `.waitForTaskToken` Task (`task_token` in the input: look,
//! and leave the token for ECS's events), and by the EventBridge rule on "ECS Deployment
//! State Change" events (answer the waiting task). All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::model::CheckStabilityInput;
use slipway_core::steps::{self, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = &Clients::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        if event.payload.get("detail-type").is_some() {
            return steps::deployment_event(clients, &SystemClock, event.payload).await;
        }
        let input: CheckStabilityInput = steps::input(event.payload)?;
        if input.task_token.is_some() {
            return steps::wait_for_stability(clients, &SystemClock, input).await;
        }
        let stability = steps::check_stability(clients, &SystemClock, input).await?;
        serde_json::to_value(stability).map_err(|e| {
            slipway_core::StepError::Transient(format!("cannot write the output: {e}"))
        })
    }))
    .await
}
