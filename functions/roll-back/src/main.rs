//! The `roll-back` Lambda: puts back what the release moved. All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::steps::{self, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = &Clients::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let input = steps::input(event.payload)?;
        steps::roll_back(clients, &SystemClock, input).await
    }))
    .await
}
