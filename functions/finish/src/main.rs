//! The `finish` Lambda: releases the locks, records and announces the result. All logic is in `slipway_core::steps`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::steps::{self, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let clients = &Clients::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        // Two inputs: a release to finish, or (the `PlanFailed` catch) `{"plan_failed": …}`.
        let mut payload = event.payload;
        if let Some(cleanup) = payload.get_mut("plan_failed").map(serde_json::Value::take) {
            let cleanup = steps::plan_failed(clients, &SystemClock, steps::input(cleanup)?).await?;
            return Ok(serde_json::to_value(cleanup).unwrap_or_default());
        }
        let record = steps::finish(clients, &SystemClock, steps::input(payload)?).await?;
        Ok::<_, slipway_core::StepError>(serde_json::to_value(record).unwrap_or_default())
    }))
    .await
}
