//! Why a release failed, from ECS: each service's events since the release started, and its
//! stopped tasks' stop codes, reasons and exit codes (ListTasks with STOPPED, then
//! DescribeTasks; ECS lists stopped tasks for at least an hour).

use aws_sdk_ecs::types::DesiredStatus;
use serde::Serialize;
use slipway_core::config::Config;
use slipway_core::model::DeploymentRecord;

/// What ECS says about one service of a release.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceWhy {
    /// The configured name.
    pub service: String,
    /// The service's events since the release started, oldest first.
    pub events: Vec<String>,
    /// Its stopped tasks, newest first.
    pub stopped_tasks: Vec<StoppedTask>,
}

/// A stopped task.
#[derive(Debug, Clone, Serialize)]
pub struct StoppedTask {
    /// The task's id.
    pub task: String,
    /// Its task definition.
    pub task_definition: String,
    /// ECS's stop code (`EssentialContainerExited`, `ServiceSchedulerInitiated`, …).
    pub stop_code: Option<String>,
    /// ECS's reason.
    pub reason: Option<String>,
    /// Each container that exited: its name, exit code and reason.
    pub containers: Vec<ExitedContainer>,
}

/// A container of a stopped task.
#[derive(Debug, Clone, Serialize)]
pub struct ExitedContainer {
    /// The container's name.
    pub name: String,
    /// Its exit code, when it exited on its own.
    pub exit_code: Option<i32>,
    /// Its reason, when ECS gives one.
    pub reason: Option<String>,
}

/// What ECS says about each service `record` names (those still configured).
pub async fn explain(
    ecs: &aws_sdk_ecs::Client,
    config: &Config,
    record: &DeploymentRecord,
) -> Result<Vec<ServiceWhy>, String> {
    // From the release's start to a minute after its record (the rollback's last stops).
    let during = |at: i64| at >= record.started_at && at <= record.finished_at + 60;
    let mut out = Vec::new();
    for s in &record.services {
        let Some(configured) = config.service(&s.service) else {
            continue;
        };
        let ecs_service = configured.ecs_service();
        let described = ecs
            .describe_services()
            .cluster(&config.cluster)
            .services(ecs_service)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "ecs:DescribeServices {ecs_service}: {}",
                    crate::run::sdk_error(&e)
                )
            })?;
        let mut events: Vec<String> = described
            .services()
            .first()
            .map(|svc| {
                svc.events()
                    .iter()
                    .filter(|e| e.created_at().is_some_and(|t| during(t.secs())))
                    .map(|e| {
                        format!(
                            "{} {}",
                            e.created_at()
                                .map(|t| slipway_core::wire_time(t.secs()))
                                .unwrap_or_default(),
                            e.message().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        events.reverse();
        let mut arns = Vec::new();
        let mut pages = ecs
            .list_tasks()
            .cluster(&config.cluster)
            .service_name(ecs_service)
            .desired_status(DesiredStatus::Stopped)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                format!("ecs:ListTasks {ecs_service}: {}", crate::run::sdk_error(&e))
            })?;
            arns.extend(page.task_arns().iter().cloned());
        }
        let mut stopped_tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let tasks = ecs
                .describe_tasks()
                .cluster(&config.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ecs:DescribeTasks {ecs_service}: {}",
                        crate::run::sdk_error(&e)
                    )
                })?;
            for t in tasks.tasks() {
                // Only what stopped during this release.
                if t.stopped_at().is_some_and(|at| !during(at.secs())) {
                    continue;
                }
                stopped_tasks.push((
                    t.stopped_at().map_or(0, |at| at.secs()),
                    StoppedTask {
                        task: t
                            .task_arn()
                            .and_then(|a| a.rsplit('/').next())
                            .unwrap_or_default()
                            .to_owned(),
                        task_definition: t.task_definition_arn().unwrap_or_default().to_owned(),
                        stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
                        reason: t.stopped_reason().map(str::to_owned),
                        containers: t
                            .containers()
                            .iter()
                            .filter(|c| c.exit_code().is_some() || c.reason().is_some())
                            .map(|c| ExitedContainer {
                                name: c.name().unwrap_or_default().to_owned(),
                                exit_code: c.exit_code(),
                                reason: c.reason().map(str::to_owned),
                            })
                            .collect(),
                    },
                ));
            }
        }
        stopped_tasks.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let stopped_tasks = stopped_tasks.into_iter().map(|(_, t)| t).collect();
        out.push(ServiceWhy {
            service: s.service.clone(),
            events,
            stopped_tasks,
        });
    }
    Ok(out)
}

/// The explanation as lines for a person.
pub fn render(why: &[ServiceWhy]) -> String {
    let mut out = String::new();
    for s in why {
        out.push_str(&format!("service {}:\n", s.service));
        if s.events.is_empty() && s.stopped_tasks.is_empty() {
            out.push_str("  (ECS reports no events or stopped tasks since the release started)\n");
        }
        for e in &s.events {
            out.push_str(&format!("  event: {e}\n"));
        }
        for t in &s.stopped_tasks {
            let containers: Vec<String> = t
                .containers
                .iter()
                .map(|c| {
                    let code = c
                        .exit_code
                        .map(|x| format!(" exit code {x}"))
                        .unwrap_or_default();
                    let reason = c
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    format!("{}{code}{reason}", c.name)
                })
                .collect();
            out.push_str(&format!(
                "  stopped task {}: {}{}{}\n",
                t.task,
                t.stop_code.as_deref().unwrap_or("?"),
                t.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
                if containers.is_empty() {
                    String::new()
                } else {
                    format!("; {}", containers.join(", "))
                }
            ));
        }
    }
    out
}
