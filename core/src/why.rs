//! Why a release failed, from ECS: each service's events since the release started, and its
//! stopped tasks' stop codes, reasons and exit codes (ListTasks with STOPPED, then
//! DescribeTasks; "stopped tasks appear in the returned results for at least one hour",
//! ECS API reference, ListTasks). `finish` keeps a summary in a failed release's record, so
//! `slipway history` and `status` can say why after ECS has forgotten the tasks.

use aws_sdk_ecs::types::DesiredStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What ECS says about one service of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceWhy {
    /// The configured name.
    pub service: String,
    /// The service's events since the release started, oldest first.
    pub events: Vec<String>,
    /// Its stopped tasks, newest first.
    pub stopped_tasks: Vec<StoppedTask>,
}

/// A stopped task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExitedContainer {
    /// The container's name.
    pub name: String,
    /// Its exit code, when it exited on its own.
    pub exit_code: Option<i32>,
    /// Its reason, when ECS gives one.
    pub reason: Option<String>,
    /// Its last lines in CloudWatch Logs (the `awslogs` driver's stream
    /// `<prefix>/<container>/<task id>`), oldest first, when it logs there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

/// A service to explain: its configured name, cluster and ECS service name.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The configured name.
    pub service: &'a str,
    /// The cluster.
    pub cluster: &'a str,
    /// The ECS service.
    pub ecs_service: &'a str,
}

/// What ECS says about each target between `since` and `until` (epoch seconds): its events,
/// oldest first, and its stopped tasks, newest first.
pub async fn explain(
    ecs: &aws_sdk_ecs::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    targets: &[Target<'_>],
    since: i64,
    until: i64,
) -> Result<Vec<ServiceWhy>, String> {
    let during = |at: i64| at >= since && at <= until;
    let mut out = Vec::new();
    for t in targets {
        let (cluster, ecs_service) = (t.cluster, t.ecs_service);
        let described = ecs
            .describe_services()
            .cluster(cluster)
            .services(ecs_service)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "ecs:DescribeServices {ecs_service}: {}",
                    crate::aws::sdk_error(&e)
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
                                .map(|t| crate::wire_time(t.secs()))
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
            .cluster(cluster)
            .service_name(ecs_service)
            .desired_status(DesiredStatus::Stopped)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                format!("ecs:ListTasks {ecs_service}: {}", crate::aws::sdk_error(&e))
            })?;
            arns.extend(page.task_arns().iter().cloned());
        }
        let mut stopped_tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let tasks = ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ecs:DescribeTasks {ecs_service}: {}",
                        crate::aws::sdk_error(&e)
                    )
                })?;
            for task in tasks.tasks() {
                // Only what stopped during this release.
                if task.stopped_at().is_some_and(|at| !during(at.secs())) {
                    continue;
                }
                stopped_tasks.push((
                    task.stopped_at().map_or(0, |at| at.secs()),
                    StoppedTask {
                        task: task
                            .task_arn()
                            .and_then(|a| a.rsplit('/').next())
                            .unwrap_or_default()
                            .to_owned(),
                        task_definition: task.task_definition_arn().unwrap_or_default().to_owned(),
                        stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
                        reason: task.stopped_reason().map(str::to_owned),
                        containers: task
                            .containers()
                            .iter()
                            .filter(|c| c.exit_code().is_some() || c.reason().is_some())
                            .map(|c| ExitedContainer {
                                name: c.name().unwrap_or_default().to_owned(),
                                exit_code: c.exit_code(),
                                reason: c.reason().map(str::to_owned),
                                log: Vec::new(),
                            })
                            .collect(),
                    },
                ));
            }
        }
        stopped_tasks.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let mut stopped_tasks: Vec<StoppedTask> =
            stopped_tasks.into_iter().map(|(_, t)| t).collect();
        // The last lines of the containers that exited by themselves, in the newest two
        // tasks that have one.
        let mut definitions = std::collections::HashMap::new();
        for task in stopped_tasks
            .iter_mut()
            .filter(|t| t.containers.iter().any(|c| c.exit_code.is_some()))
            .take(2)
        {
            if !definitions.contains_key(&task.task_definition) {
                let def = ecs
                    .describe_task_definition()
                    .task_definition(&task.task_definition)
                    .send()
                    .await
                    .ok()
                    .and_then(|d| d.task_definition().cloned());
                definitions.insert(task.task_definition.clone(), def);
            }
            let Some(Some(def)) = definitions.get(&task.task_definition) else {
                continue;
            };
            for c in task.containers.iter_mut().filter(|c| c.exit_code.is_some()) {
                if let Some((group, stream)) = awslogs_stream(def, &c.name, &task.task) {
                    c.log = last_lines(logs, &group, &stream).await;
                }
            }
        }
        out.push(ServiceWhy {
            service: t.service.to_owned(),
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
            for c in &t.containers {
                for line in &c.log {
                    out.push_str(&format!("    {} log: {line}\n", c.name));
                }
            }
        }
    }
    out
}

/// The CloudWatch Logs group and stream of a container of a task, when its task definition
/// sends its output there with the `awslogs` driver: the stream is
/// `<awslogs-stream-prefix>/<container name>/<task id>` ("Using the awslogs log driver",
/// Amazon ECS Developer Guide,
/// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html).
pub fn awslogs_stream(
    def: &aws_sdk_ecs::types::TaskDefinition,
    container: &str,
    task_id: &str,
) -> Option<(String, String)> {
    let c = def
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))?;
    let config = c.log_configuration()?;
    if config.log_driver().as_str() != "awslogs" {
        return None;
    }
    let options = config.options()?;
    let group = options.get("awslogs-group")?.clone();
    let prefix = options.get("awslogs-stream-prefix")?;
    Some((group, format!("{prefix}/{container}/{task_id}")))
}

/// The last ten lines of a log stream, oldest first; none when it cannot be read (no such
/// stream, or no permission: the explanation goes on without them).
async fn last_lines(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
) -> Vec<String> {
    match logs
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .limit(10)
        .start_from_head(false)
        .send()
        .await
    {
        Ok(out) => out
            .events()
            .iter()
            .filter_map(|e| e.message().map(|m| line(m.trim_end())))
            .collect(),
        Err(e) => {
            tracing::info!(group, stream, error = %crate::aws::sdk_error(&e), "no log lines");
            Vec::new()
        }
    }
}

/// One line for a table: the newest stopped task that stopped by itself (not stopped by the
/// scheduler or a person: the cause rather than the rollback's effects), else the newest of
/// any, with its stop code and the first container's exit code; else the newest event.
pub fn headline(why: &[ServiceWhy]) -> Option<String> {
    let tasks = || {
        why.iter()
            .flat_map(|s| s.stopped_tasks.iter().map(move |t| (s, t)))
    };
    let by_itself = |t: &StoppedTask| {
        !matches!(
            t.stop_code.as_deref(),
            Some("ServiceSchedulerInitiated" | "UserInitiated")
        )
    };
    if let Some((s, t)) = tasks()
        .find(|(_, t)| by_itself(t))
        .or_else(|| tasks().next())
    {
        let exit = t
            .containers
            .iter()
            .find_map(|c| c.exit_code.map(|x| format!(", {} exit {x}", c.name)))
            .unwrap_or_default();
        return Some(format!(
            "{}: {}{exit}",
            s.service,
            t.stop_code.as_deref().unwrap_or("stopped")
        ));
    }
    why.iter()
        .find_map(|s| s.events.last().map(|e| format!("{}: {e}", s.service)))
}

/// The longest line kept of an event or a log line, in characters.
const LINE_CHARS: usize = 1024;

/// The most a record's explanation may weigh (JSON bytes): the record is a DynamoDB item
/// (400 KB at most), the state's output and the announcements (256 KB) carry it too.
pub const RECORD_BYTES: usize = 32 * 1024;

/// A line as kept and printed: control characters (a terminal's escapes) as spaces, cut to
/// [`LINE_CHARS`].
fn line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(LINE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > LINE_CHARS {
        out.push('…');
    }
    out
}

/// The explanation kept in a record: at most `events` events and `tasks` stopped tasks per
/// service (the newest), and at most [`RECORD_BYTES`] in all — log lines go first, then the
/// oldest tasks and events — so that a record always fits.
pub fn summary(mut why: Vec<ServiceWhy>, events: usize, tasks: usize) -> Vec<ServiceWhy> {
    for s in &mut why {
        let skip = s.events.len().saturating_sub(events);
        s.events.drain(..skip);
        for e in &mut s.events {
            *e = line(e);
        }
        s.stopped_tasks.truncate(tasks);
        for c in s
            .stopped_tasks
            .iter_mut()
            .flat_map(|t| t.containers.iter_mut())
        {
            for l in &mut c.log {
                *l = line(l);
            }
        }
    }
    why.retain(|s| !s.events.is_empty() || !s.stopped_tasks.is_empty());
    let size = |w: &[ServiceWhy]| serde_json::to_string(w).map_or(0, |t| t.len());
    while size(&why) > RECORD_BYTES {
        let logged = why
            .iter_mut()
            .flat_map(|s| s.stopped_tasks.iter_mut().rev())
            .flat_map(|t| t.containers.iter_mut())
            .find(|c| !c.log.is_empty());
        if let Some(c) = logged {
            c.log.remove(0);
            continue;
        }
        let Some(s) = why
            .iter_mut()
            .filter(|s| !s.stopped_tasks.is_empty() || !s.events.is_empty())
            .max_by_key(|s| s.stopped_tasks.len() + s.events.len())
        else {
            break;
        };
        if s.stopped_tasks.pop().is_none() && !s.events.is_empty() {
            s.events.remove(0);
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(code: &str, exit: Option<i32>) -> StoppedTask {
        StoppedTask {
            task: "t".into(),
            task_definition: "td".into(),
            stop_code: Some(code.into()),
            reason: None,
            containers: vec![ExitedContainer {
                name: "app".into(),
                exit_code: exit,
                reason: None,
                log: vec![],
            }],
        }
    }

    #[test]
    fn the_headline_is_the_cause_and_the_summary_keeps_the_newest() {
        let why = vec![
            ServiceWhy {
                service: "api".into(),
                events: vec!["e1".into(), "e2".into(), "e3".into()],
                stopped_tasks: vec![task("ServiceSchedulerInitiated", None)],
            },
            ServiceWhy {
                service: "auth".into(),
                events: vec![],
                stopped_tasks: vec![task("EssentialContainerExited", Some(1))],
            },
            ServiceWhy {
                service: "web".into(),
                events: vec![],
                stopped_tasks: vec![],
            },
        ];
        assert_eq!(
            headline(&why).as_deref(),
            Some("auth: EssentialContainerExited, app exit 1")
        );
        assert_eq!(
            headline(&why[..1]).as_deref(),
            Some("api: ServiceSchedulerInitiated")
        );
        let events_only = [ServiceWhy {
            service: "api".into(),
            events: vec!["old".into(), "new".into()],
            stopped_tasks: vec![],
        }];
        assert_eq!(headline(&events_only).as_deref(), Some("api: new"));
        assert_eq!(headline(&[]), None);
        let kept = summary(why, 2, 1);
        assert_eq!(kept.len(), 2, "web said nothing: left out");
        assert_eq!(kept[0].events, ["e2", "e3"], "the newest events");
    }

    #[test]
    fn a_summary_always_fits_a_record() {
        let mut chatty = task("EssentialContainerExited", Some(1));
        chatty.containers[0].log = vec!["x".repeat(20_000); 10];
        let why = vec![ServiceWhy {
            service: "api".into(),
            events: vec!["\u{1b}[31mred\u{7}".into(), "y".repeat(5000)],
            stopped_tasks: vec![chatty.clone(), chatty],
        }];
        let kept = summary(why, 5, 5);
        let size = serde_json::to_string(&kept).unwrap().len();
        assert!(size <= RECORD_BYTES, "{size}");
        assert_eq!(kept[0].events[0], " [31mred ", "no terminal escapes");
        assert!(kept[0].events[1].chars().count() <= LINE_CHARS + 1);
        assert!(kept[0].stopped_tasks.iter().all(|t| t.containers[0]
            .log
            .iter()
            .all(|l| l.chars().count() <= LINE_CHARS + 1)));
    }
}
