//! The `health-check` Lambda: HTTP and target health checks of the moved services. All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::steps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = &Clients::from_env().await;
    let prober = &steps::HttpProber::new()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let input = steps::input(event.payload)?;
        steps::health_check(clients, prober, input).await
    }))
    .await
}
