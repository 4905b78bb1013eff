//! The steps, one per Lambda. Each takes its input document (see [`crate::model`]) and
//! returns its output document or a [`StepError`](crate::StepError). None of them sleeps
//! waiting for AWS: a step that waits looks once and returns, and the state machine loops.

mod check_stability;
mod deploy_stack;
mod finish;
mod health_check;
mod plan;
mod roll_back;
mod update_services;
mod wake;

pub use check_stability::{
    check_stability, deployment_event, wait_for_stability, DEPLOYMENT_EVENT,
};
pub use deploy_stack::{
    change_set_request, deploy_stack, stack_event, wait_for_stack, STACK_EVENT,
};
pub use finish::{finish, plan_failed};
pub use health_check::{
    health_check, is_lifecycle_hook, lifecycle_hook, watch_bake, HttpProber, Probe, Prober,
};
pub use plan::{plan, preview, release_id};
pub use roll_back::roll_back;
pub use update_services::update_services;

/// DescribeServiceDeployments of these ARNs (20 a call, its limit), in one list.
pub async fn service_deployments(
    clients: &crate::aws::Clients,
    arns: &[String],
) -> Result<Vec<aws_sdk_ecs::types::ServiceDeployment>, crate::aws::AwsError> {
    let mut out = Vec::with_capacity(arns.len());
    for chunk in arns.chunks(20) {
        let described = clients
            .ecs
            .describe_service_deployments()
            .set_service_deployment_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(crate::aws::aws("ecs:DescribeServiceDeployments"))?;
        out.extend(described.service_deployments().iter().cloned());
    }
    Ok(out)
}

/// The key of the `hookDetails` update-services writes on Slipway's lifecycle hook
/// (`{"slipway": {"service", "health"}}`), by which it is known again.
pub const HOOK_DETAILS_KEY: &str = "slipway";

/// Whether a service's lifecycle hook is Slipway's: its target is this installation's hook
/// function, or its `hookDetails` are Slipway's — also when the installation no longer has
/// a hook function (bootstrapped again after its last staged service went back to rolling).
pub(crate) fn is_slipway_hook(
    hook: &aws_sdk_ecs::types::DeploymentLifecycleHook,
    function: Option<&str>,
) -> bool {
    function.is_some_and(|f| hook.hook_target_arn() == Some(f))
        || matches!(
            hook.hook_details(),
            Some(aws_smithy_types::Document::Object(m)) if m.contains_key(HOOK_DETAILS_KEY)
        )
}

/// The deployment configuration `current` without Slipway's lifecycle hook (the owner's
/// stay), or None when it has none.
pub(crate) fn without_slipway_hook(
    current: Option<&aws_sdk_ecs::types::DeploymentConfiguration>,
    function: Option<&str>,
) -> Option<aws_sdk_ecs::types::DeploymentConfiguration> {
    let current = current?;
    if !current
        .lifecycle_hooks()
        .iter()
        .any(|h| is_slipway_hook(h, function))
    {
        return None;
    }
    let mut c = current.clone();
    c.lifecycle_hooks = Some(
        current
            .lifecycle_hooks()
            .iter()
            .filter(|h| !is_slipway_hook(h, function))
            .cloned()
            .collect(),
    );
    Some(c)
}

/// A JSON value as a Smithy document (a lifecycle hook's `hookDetails`).
pub fn document(v: &serde_json::Value) -> aws_smithy_types::Document {
    use aws_smithy_types::{Document, Number};
    match v {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or_default()),
        }),
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(a) => Document::Array(a.iter().map(document).collect()),
        serde_json::Value::Object(m) => {
            Document::Object(m.iter().map(|(k, v)| (k.clone(), document(v))).collect())
        }
    }
}

/// Where "now" comes from (a trait so tests can move time).
pub trait Clock: Send + Sync {
    /// Seconds since the epoch.
    fn now(&self) -> i64;
}

/// The system's clock. On the local test bed (only), `SLIPWAY_CLOCK_ANCHOR` and
/// `SLIPWAY_CLOCK_SPEED` make it run as fast as slipway-sim's: time since the anchor,
/// times the speed, so deadlines mean the same to the steps and to the simulated ECS. Only
/// builds with the `testbed-clock` feature (the test bed's) read them: without it — what
/// bootstrap uploads — the clock is the system's whatever the environment says.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let scale = scale();
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match scale {
            Some((anchor, speed)) => (anchor + (real - anchor) * speed) as i64,
            None => real as i64,
        }
    }
}

/// The clock's scale on the test bed; read once per process (a Lambda's init), not per call.
fn scale() -> &'static Option<(f64, f64)> {
    static SCALE: std::sync::OnceLock<Option<(f64, f64)>> = std::sync::OnceLock::new();
    SCALE.get_or_init(test_bed_scale)
}

/// Sleeps `d` of the steps' clock: real time, except on the test bed, where the clock runs
/// `SLIPWAY_CLOCK_SPEED` times faster (see [`SystemClock`]) and so does this sleep — a pause
/// inside a step (the health check's interval) then lasts as long in simulated time as it
/// does on AWS, rather than `speed` times longer.
pub(crate) async fn sleep(d: std::time::Duration) {
    let d = match scale() {
        Some((_, speed)) if *speed > 0.0 => d.div_f64(*speed),
        _ => d,
    };
    tokio::time::sleep(d).await;
}

/// The test bed's clock scale, (anchor, speed), from the environment.
#[cfg(feature = "testbed-clock")]
fn test_bed_scale() -> Option<(f64, f64)> {
    let anchor: f64 = std::env::var("SLIPWAY_CLOCK_ANCHOR").ok()?.parse().ok()?;
    let speed: f64 = std::env::var("SLIPWAY_CLOCK_SPEED").ok()?.parse().ok()?;
    Some((anchor, speed))
}

/// Without the `testbed-clock` feature the environment is never read: no scale.
#[cfg(not(feature = "testbed-clock"))]
fn test_bed_scale() -> Option<(f64, f64)> {
    None
}

/// Parses a step's input document, naming the field at fault (`Slipway.InvalidInput`).
pub fn input<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, crate::StepError> {
    crate::input::from_value(value, "")
}

/// A stack's parameters as a map (key → value).
pub(crate) fn stack_parameters(
    stack: &aws_sdk_cloudformation::types::Stack,
) -> std::collections::BTreeMap<String, String> {
    stack
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Why a service is not on the release's revision, when ECS's circuit breaker moved it back:
/// the PRIMARY deployment's reason while the rollback runs ("ECS deployment circuit breaker:
/// rolling back to deploymentId …"), or — once the rollback completed and the failed
/// deployment is gone — the service's events since the release started ("(service x)
/// rolling back to deployment …", "… deployment failed: …").
pub(crate) fn circuit_breaker_rollback(
    service: &aws_sdk_ecs::types::Service,
    since: i64,
) -> Option<String> {
    let primary = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"));
    if let Some(r) = primary
        .and_then(|p| p.rollout_state_reason())
        .filter(|r| r.contains("circuit breaker"))
    {
        return Some(r.to_owned());
    }
    service
        .events()
        .iter()
        .filter(|e| e.created_at().is_some_and(|t| t.secs() >= since))
        .filter_map(|e| e.message())
        .find(|m| m.contains("rolling back to deployment") || m.contains("deployment failed"))
        .map(str::to_owned)
}

/// Describes ECS services, at most 10 a call (DescribeServices' limit), in the given order;
/// a missing service is `None`.
pub(crate) async fn describe_services(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    names: &[String],
) -> Result<Vec<Option<aws_sdk_ecs::types::Service>>, crate::aws::AwsError> {
    let mut found = Vec::with_capacity(names.len());
    for chunk in names.chunks(10) {
        let out = ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(crate::aws::aws("ecs:DescribeServices"))?;
        for name in chunk {
            found.push(
                out.services()
                    .iter()
                    .find(|s| {
                        s.service_name() == Some(name.as_str()) && s.status() != Some("INACTIVE")
                    })
                    .cloned(),
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod mocked_tests;
