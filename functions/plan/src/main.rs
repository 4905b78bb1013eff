//! The `plan` Lambda: normalises the execution input. All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        slipway_core::steps::plan(event.payload)
    }))
    .await
}
