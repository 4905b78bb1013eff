//! `update-services`: points one service at a new task definition revision that pins the
//! release's image by digest, copied from the running one with every other field kept.

use aws_sdk_ecs::types::{
    CanaryConfiguration, ContainerDefinition, DeploymentConfiguration, DeploymentLifecycleHook,
    DeploymentLifecycleHookStage, DeploymentStrategy, LinearConfiguration, TaskDefinition,
};

use crate::aws::{aws, Clients};
use crate::model::{ServiceTarget, UpdateServiceInput};
use crate::steps::describe_services;
use crate::StepError;

/// Moves one service of the release. Idempotent: when the service already runs a revision
/// with the release's image, or an earlier attempt registered one, nothing new is made — the
/// same input twice gives one revision and one deployment.
#[tracing::instrument(skip_all, fields(release = %input.release.id, service = %input.service))]
pub async fn update_services(
    clients: &Clients,
    input: UpdateServiceInput,
) -> Result<ServiceTarget, StepError> {
    let svc = input.release.service(&input.service).ok_or_else(|| {
        StepError::invalid(
            "service",
            format!(
                "{:?} is not part of release {}",
                input.service, input.release.id
            ),
        )
    })?;
    let failed = |m: String| StepError::DeploymentFailed(format!("service {}: {m}", svc.name));
    let ecs = &clients.ecs;
    let found = describe_services(ecs, &svc.cluster, std::slice::from_ref(&svc.ecs_service))
        .await
        .map_err(|e| e.step(failed))?;
    let service = found.into_iter().next().flatten().ok_or_else(|| {
        failed(format!(
            "ECS service {} not found in cluster {}",
            svc.ecs_service, svc.cluster
        ))
    })?;
    let current_arn = service.task_definition().unwrap_or_default().to_owned();
    let current = describe_td(clients, &current_arn).await.map_err(failed)?;
    if image_of(&current, &svc.container) == Some(svc.image.as_str()) {
        tracing::info!(task_definition = %current_arn, "already on the release's image");
        return Ok(ServiceTarget {
            service: svc.name.clone(),
            task_definition: current_arn,
            started: false,
        });
    }
    let wanted = with_image(current.container_definitions(), &svc.container, &svc.image);

    // The family's latest revision may be one an earlier attempt registered.
    let family = current.family().unwrap_or_default();
    let latest = describe_td(clients, family).await.map_err(failed)?;
    let target = if latest.task_definition_arn() != Some(current_arn.as_str())
        && latest.container_definitions() == wanted.as_slice()
        && same_settings(&latest, &current)
    {
        latest.task_definition_arn().unwrap_or_default().to_owned()
    } else {
        register_copy(clients, &current, wanted)
            .await
            .map_err(failed)?
    };

    let function = std::env::var(crate::aws::HOOK_FUNCTION_ENV).ok();
    let role = std::env::var(crate::aws::HOOK_ROLE_ENV).ok();
    let hook = function.as_deref().zip(role.as_deref());
    let deployment_configuration = match &svc.staged {
        Some(staged) => Some(staged_configuration(
            service.deployment_configuration(),
            staged,
            &svc.name,
            hook,
        )?),
        // Back to ECS's rolling update, without Slipway's hook.
        None if svc.to_rolling => {
            let mut c = service
                .deployment_configuration()
                .cloned()
                .unwrap_or_else(|| DeploymentConfiguration::builder().build());
            c.strategy = Some(DeploymentStrategy::Rolling);
            c.linear_configuration = None;
            c.canary_configuration = None;
            // Known by its hookDetails too: the bootstrap that dropped the service's
            // strategy removed the hook function's variable (and its role) with it.
            if let Some(hooks) = c.lifecycle_hooks.as_mut() {
                hooks.retain(|h| !super::is_slipway_hook(h, function.as_deref()));
            }
            Some(c)
        }
        None => None,
    };
    ecs.update_service()
        .cluster(&svc.cluster)
        .service(&svc.ecs_service)
        .task_definition(&target)
        .set_deployment_configuration(deployment_configuration)
        .send()
        .await
        .map_err(aws("ecs:UpdateService"))
        .map_err(|e| e.step(failed))?;
    tracing::info!(task_definition = %target, image = %svc.image, "deployment started");
    Ok(ServiceTarget {
        service: svc.name.clone(),
        task_definition: target,
        started: true,
    })
}

/// The service's deployment configuration with the release's strategy: ECS's
/// `deploymentConfiguration` as it is now (circuit breaker, alarms, percentages and the
/// owner's own lifecycle hooks kept), with `strategy`, `bakeTimeInMinutes`, the linear or
/// canary steps, and Slipway's hook — health-check at POST_TEST_TRAFFIC_SHIFT, its check
/// through the test listener in `hookDetails` — when the service's health check names one.
/// `hook` is this installation's (function, role) for it.
fn staged_configuration(
    current: Option<&DeploymentConfiguration>,
    staged: &crate::model::StagedRollout,
    name: &str,
    hook: Option<(&str, &str)>,
) -> Result<DeploymentConfiguration, StepError> {
    // The installation must have been bootstrapped for strategies (the hook's function and
    // role are its marker): roll-back needs its ServiceDeployments permissions to stop ECS's
    // deployment, so without them nothing may start.
    let Some((function, role)) = hook else {
        return Err(StepError::invalid(
            format!("services.{name}.strategy"),
            format!(
                "{} needs what slipway bootstrap installs for ECS's own deployments (its hook function and role, {} / {}, and roll-back's StopServiceDeployment), and this installation has none: run slipway bootstrap again",
                staged.strategy,
                crate::aws::HOOK_FUNCTION_ENV,
                crate::aws::HOOK_ROLE_ENV
            ),
        ));
    };
    let mut c = current
        .cloned()
        .unwrap_or_else(|| DeploymentConfiguration::builder().build());
    c.strategy = Some(DeploymentStrategy::from(staged.strategy.as_str()));
    c.bake_time_in_minutes = Some(i32::try_from(staged.bake_minutes).unwrap_or(i32::MAX));
    let minutes = staged
        .step_minutes
        .map(|m| i32::try_from(m).unwrap_or(i32::MAX));
    // Only the strategy's own steps: another strategy's (an earlier release's) go.
    c.linear_configuration = None;
    c.canary_configuration = None;
    match staged.strategy.as_str() {
        "LINEAR" => {
            c.linear_configuration = Some(
                LinearConfiguration::builder()
                    .set_step_percent(staged.step_percent)
                    .set_step_bake_time_in_minutes(minutes)
                    .build(),
            );
        }
        "CANARY" => {
            c.canary_configuration = Some(
                CanaryConfiguration::builder()
                    .set_canary_percent(staged.step_percent)
                    .set_canary_bake_time_in_minutes(minutes)
                    .build(),
            );
        }
        _ => {}
    }
    // The owner's hooks stay; Slipway's own (an earlier release's) is replaced.
    let mut hooks: Vec<DeploymentLifecycleHook> = c
        .lifecycle_hooks
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| !super::is_slipway_hook(h, Some(function)))
        .collect();
    if let Some(check) = &staged.hook {
        let details =
            serde_json::json!({ super::HOOK_DETAILS_KEY: {"service": name, "health": check} });
        hooks.push(
            DeploymentLifecycleHook::builder()
                .hook_target_arn(function)
                .role_arn(role)
                .lifecycle_stages(DeploymentLifecycleHookStage::PostTestTrafficShift)
                .hook_details(super::document(&details))
                .build(),
        );
    }
    c.lifecycle_hooks = Some(hooks);
    Ok(c)
}

async fn describe_td(clients: &Clients, reference: &str) -> Result<TaskDefinition, String> {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(reference)
        .send()
        .await
        .map_err(aws("ecs:DescribeTaskDefinition"))
        .map_err(|e| e.to_string())?;
    out.task_definition()
        .cloned()
        .ok_or_else(|| format!("task definition {reference} not found"))
}

fn image_of<'a>(td: &'a TaskDefinition, container: &str) -> Option<&'a str> {
    td.container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.image())
}

fn with_image(
    containers: &[ContainerDefinition],
    container: &str,
    image: &str,
) -> Vec<ContainerDefinition> {
    containers
        .iter()
        .map(|c| {
            if c.name() == Some(container) {
                let mut c = c.clone();
                c.image = Some(image.to_owned());
                c
            } else {
                c.clone()
            }
        })
        .collect()
}

/// Everything but the containers, as RegisterTaskDefinition takes it.
fn same_settings(a: &TaskDefinition, b: &TaskDefinition) -> bool {
    a.task_role_arn() == b.task_role_arn()
        && a.execution_role_arn() == b.execution_role_arn()
        && a.network_mode() == b.network_mode()
        && a.cpu() == b.cpu()
        && a.memory() == b.memory()
        && a.volumes() == b.volumes()
        && a.requires_compatibilities() == b.requires_compatibilities()
        && a.runtime_platform() == b.runtime_platform()
        && a.ephemeral_storage() == b.ephemeral_storage()
}

/// Registers a copy of `current` with `containers`: every field RegisterTaskDefinition
/// accepts is carried over.
async fn register_copy(
    clients: &Clients,
    current: &TaskDefinition,
    containers: Vec<ContainerDefinition>,
) -> Result<String, String> {
    let out = clients
        .ecs
        .register_task_definition()
        .family(current.family().unwrap_or_default())
        .set_container_definitions(Some(containers))
        .set_task_role_arn(current.task_role_arn().map(str::to_owned))
        .set_execution_role_arn(current.execution_role_arn().map(str::to_owned))
        .set_network_mode(current.network_mode().cloned())
        .set_volumes(Some(current.volumes().to_vec()).filter(|v| !v.is_empty()))
        .set_placement_constraints(
            Some(current.placement_constraints().to_vec()).filter(|v| !v.is_empty()),
        )
        .set_requires_compatibilities(
            Some(current.requires_compatibilities().to_vec()).filter(|v| !v.is_empty()),
        )
        .set_cpu(current.cpu().map(str::to_owned))
        .set_memory(current.memory().map(str::to_owned))
        .set_pid_mode(current.pid_mode().cloned())
        .set_ipc_mode(current.ipc_mode().cloned())
        .set_proxy_configuration(current.proxy_configuration().cloned())
        .set_ephemeral_storage(current.ephemeral_storage().cloned())
        .set_runtime_platform(current.runtime_platform().cloned())
        .set_enable_fault_injection(current.enable_fault_injection())
        .send()
        .await
        .map_err(aws("ecs:RegisterTaskDefinition"))
        .map_err(|e| e.to_string())?;
    out.task_definition()
        .and_then(|t| t.task_definition_arn())
        .map(str::to_owned)
        .ok_or_else(|| "RegisterTaskDefinition returned no ARN".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{DeploymentAlarms, DeploymentCircuitBreaker};

    fn staged(strategy: &str, hook: bool) -> crate::model::StagedRollout {
        crate::model::StagedRollout {
            strategy: strategy.into(),
            bake_minutes: 7,
            step_percent: Some(20.0),
            step_minutes: Some(3),
            hook: hook.then(|| crate::config::HealthConfig {
                url: "http://alb/health".into(),
                host: Some("test.api.example.com".into()),
                expect_status: 200,
                body_contains: None,
                passes: 3,
                timeout_ms: 2000,
                interval_ms: 1000,
                test_url: None,
                test_host: None,
            }),
        }
    }

    const FUNCTION: &str =
        "arn:aws:lambda:us-east-1:123456789012:function:slipway-staging-health-check";
    const ROLE: &str = "arn:aws:iam::123456789012:role/slipway-hook";

    #[test]
    fn the_strategy_joins_what_the_owner_configured_and_slipways_hook_replaces_its_own() {
        let owners_hook = DeploymentLifecycleHook::builder()
            .hook_target_arn("arn:aws:lambda:us-east-1:123456789012:function:smoke-tests")
            .role_arn(ROLE)
            .lifecycle_stages(DeploymentLifecycleHookStage::PostScaleUp)
            .build();
        let earlier_slipway = DeploymentLifecycleHook::builder()
            .hook_target_arn(FUNCTION)
            .role_arn(ROLE)
            .lifecycle_stages(DeploymentLifecycleHookStage::PostTestTrafficShift)
            .build();
        let current = DeploymentConfiguration::builder()
            .deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(true)
                    .rollback(true)
                    .build(),
            )
            .alarms(
                DeploymentAlarms::builder()
                    .alarm_names("api-5xx")
                    .enable(true)
                    .rollback(true)
                    .build()
                    .unwrap(),
            )
            .minimum_healthy_percent(100)
            .lifecycle_hooks(owners_hook.clone())
            .lifecycle_hooks(earlier_slipway)
            .build();
        let c = staged_configuration(
            Some(&current),
            &staged("LINEAR", true),
            "api",
            Some((FUNCTION, ROLE)),
        )
        .unwrap();
        assert_eq!(c.strategy(), Some(&DeploymentStrategy::Linear));
        assert_eq!(c.bake_time_in_minutes(), Some(7));
        let linear = c.linear_configuration().unwrap();
        assert_eq!(
            (linear.step_percent(), linear.step_bake_time_in_minutes()),
            (Some(20.0), Some(3))
        );
        assert!(c.canary_configuration().is_none());
        assert_eq!(
            c.deployment_circuit_breaker(),
            current.deployment_circuit_breaker()
        );
        assert_eq!(
            c.alarms(),
            current.alarms(),
            "the owner's deployment alarms are left to ECS"
        );
        assert_eq!(c.minimum_healthy_percent(), Some(100));
        let hooks = c.lifecycle_hooks();
        assert_eq!(
            hooks.len(),
            2,
            "the owner's hook and one of Slipway's: {hooks:?}"
        );
        assert_eq!(hooks[0], owners_hook);
        assert_eq!(hooks[1].hook_target_arn(), Some(FUNCTION));
        assert_eq!(hooks[1].role_arn(), Some(ROLE));
        assert_eq!(
            hooks[1].lifecycle_stages(),
            [DeploymentLifecycleHookStage::PostTestTrafficShift]
        );
        let details = format!("{:?}", hooks[1].hook_details());
        assert!(
            details.contains("test.api.example.com") && details.contains("\"api\""),
            "{details}"
        );

        // No check through the test listener: the strategy, and no hook of Slipway's.
        let c = staged_configuration(
            Some(&current),
            &staged("CANARY", false),
            "api",
            Some((FUNCTION, ROLE)),
        )
        .unwrap();
        assert_eq!(
            c.canary_configuration().unwrap().canary_percent(),
            Some(20.0)
        );
        assert_eq!(c.lifecycle_hooks(), [owners_hook]);
    }

    #[test]
    fn a_hook_without_an_installed_function_is_a_clear_error() {
        let e = staged_configuration(None, &staged("BLUE_GREEN", true), "api", None).unwrap_err();
        assert_eq!(e.name(), "Slipway.InvalidInput");
        assert!(e.to_string().contains("run slipway bootstrap again"), "{e}");
        let e = staged_configuration(None, &staged("LINEAR", false), "api", None).unwrap_err();
        assert!(
            e.to_string().contains("services.api.strategy"),
            "a strategy alone needs the installation's ServiceDeployments permissions too: {e}"
        );
    }
}
