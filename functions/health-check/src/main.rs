//! The `health-check` Lambda: HTTP and target health checks of the moved services (and the alarms), the bake's alarm watch, and the lifecycle hook ECS invokes before production traffic moves. All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::model::HealthCheckInput;
use slipway_core::steps;
use slipway_core::StepError;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = &Clients::from_env().await;
    let prober = &steps::HttpProber::new()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        // ECS asking about a blue/green, linear or canary deployment (lifecycle hook).
        if steps::is_lifecycle_hook(&event.payload) {
            return Ok(steps::lifecycle_hook(prober, &event.payload).await);
        }
        let input: HealthCheckInput = steps::input(event.payload)?;
        let output = match input.bake {
            // The bake's alarm watch (the WatchBake loop): alarms only.
            Some(watch) => {
                serde_json::to_value(steps::watch_bake(clients, &input.release, watch).await?)
            }
            None => serde_json::to_value(steps::health_check(clients, prober, input).await?),
        };
        output.map_err(|e| StepError::Transient(format!("cannot write the output: {e}")))
    }))
    .await
}
