//! The `deploy-stack` Lambda: moves the release's stacks through change sets, one look per
//! call. Invoked three ways: by a plain Task (one look), by a `.waitForTaskToken` Task while a
//! stack updates (`task_token` in the input: leave the token for CloudFormation's events), and
//! by the EventBridge rule on "CloudFormation Stack Status Change" events (answer the waiting
//! task). All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::model::DeployStackInput;
use slipway_core::steps::{self, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = &Clients::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        if event.payload.get("detail-type").is_some() {
            return steps::stack_event(clients, event.payload).await;
        }
        let input: DeployStackInput = steps::input(event.payload)?;
        if input.task_token.is_some() {
            return steps::wait_for_stack(clients, input).await;
        }
        let progress = steps::deploy_stack(clients, &SystemClock, input).await?;
        serde_json::to_value(progress).map_err(|e| {
            slipway_core::StepError::Transient(format!("cannot write the output: {e}"))
        })
    }))
    .await
}
