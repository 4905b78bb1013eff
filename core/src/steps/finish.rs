//! `finish`: releases the locks, writes the deployment record, announces the result.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};

use crate::aws::{aws, Clients};
use crate::config::{Config, Notifications};
use crate::input::{DeployRequest, PlanInput};
use crate::model::{
    DeploymentRecord, FinishInput, PlanFailedCleanup, PlanFailedInput, RecordedService,
    ReleaseResult,
};
use crate::state;
use crate::steps::Clock;
use crate::StepError;

/// The `detail-type` of the events `finish` publishes.
pub const EVENT_DETAIL_TYPE: &str = "Slipway Deployment State Change";

/// Writes the release's record (overwriting an earlier attempt's), publishes it to
/// EventBridge and SNS when configured, releases every lock of the release and forgets the
/// stored release (nothing is left to recover). Idempotent.
///
/// A `failed` release whose error is `Slipway.Aborted` or `Slipway.TimedOut` (a recovery run)
/// is recorded as `aborted` or `timed-out`.
#[tracing::instrument(skip_all, fields(release = %input.release.id, result = %input.result))]
pub async fn finish(
    clients: &Clients,
    clock: &dyn Clock,
    input: FinishInput,
) -> Result<DeploymentRecord, StepError> {
    if !matches!(
        input.result.as_str(),
        "succeeded" | "failed" | "rollback-failed"
    ) {
        return Err(StepError::invalid(
            "result",
            format!(
                "{:?}: expected succeeded, failed or rollback-failed",
                input.result
            ),
        ));
    }
    let release = &input.release;
    let error_name = input
        .error
        .as_ref()
        .and_then(|e| e.get("Error"))
        .and_then(serde_json::Value::as_str);
    let result = match (input.result.as_str(), error_name) {
        ("succeeded", _) => ReleaseResult::Succeeded,
        ("failed", Some("Slipway.Aborted")) => ReleaseResult::Aborted,
        ("failed", Some("Slipway.TimedOut")) => ReleaseResult::TimedOut,
        ("failed", _) => ReleaseResult::Failed,
        _ => ReleaseResult::RollbackFailed,
    };
    // A retried finish keeps what the earlier attempt announced: each channel once.
    let earlier = state::record_of(clients, release.started_at, &release.id).await?;
    // For a failure, what ECS says about why (once: a retry keeps what the first attempt saw).
    let why = match earlier.as_ref() {
        Some(r) if !r.why.is_empty() => r.why.clone(),
        _ if result != ReleaseResult::Succeeded => why_failed(clients, release, clock.now()).await,
        _ => Vec::new(),
    };
    let mut record = DeploymentRecord {
        release: release.id.clone(),
        environment: release.environment.clone(),
        trigger: release.trigger.clone(),
        result,
        tag: release.image.tag.clone(),
        reason: None,
        error: input.error.clone(),
        services: release
            .services
            .iter()
            .map(|s| RecordedService {
                service: s.name.clone(),
                from: s.previous_image.clone(),
                to: s.image.clone(),
                checks: s.checks().to_owned(),
            })
            .collect(),
        stacks: release.stacks.iter().map(|s| s.name.clone()).collect(),
        started_at: release.started_at,
        finished_at: earlier
            .as_ref()
            .map_or_else(|| clock.now(), |r| r.finished_at),
        timings: input.timings.clone(),
        rollback: input.rollback.clone(),
        announced: earlier.map(|r| r.announced).unwrap_or_default(),
        why,
    };
    state::put_record(clients, &record).await?;

    if announce(clients, &release.notifications, &mut record).await? {
        state::put_record(clients, &record).await?;
    }
    // The locks go back only once the record is written: a recovery that finds the record
    // knows the release is over.
    release_locks(clients, release).await?;
    let mut stored: Vec<&str> = vec![release.owner.as_str()];
    stored.extend(release.executions.iter().map(String::as_str));
    stored.extend(input.execution.as_deref());
    stored.sort_unstable();
    stored.dedup();
    for execution in stored {
        state::delete_release(clients, execution).await?;
    }
    tracing::info!(announced = ?record.announced, "finished");
    Ok(record)
}

/// What ECS said about the release's services from its start until `now` (their last five
/// events and stopped tasks each); nothing when ECS cannot be asked — the record is written
/// all the same.
async fn why_failed(
    clients: &Clients,
    release: &crate::model::Release,
    now: i64,
) -> Vec<crate::why::ServiceWhy> {
    let targets: Vec<crate::why::Target> = release
        .services
        .iter()
        .map(|s| crate::why::Target {
            service: &s.name,
            cluster: &s.cluster,
            ecs_service: &s.ecs_service,
        })
        .collect();
    // At most 20 s of the step's 60: the record and the locks must not wait on ECS.
    let asked = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        crate::why::explain(
            &clients.ecs,
            &clients.logs,
            &targets,
            release.started_at,
            now,
        ),
    )
    .await
    .unwrap_or_else(|_| Err("ECS did not answer within 20 s".into()));
    match asked {
        Ok(why) => crate::why::summary(why, 5, 5),
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask ECS why the release failed; recording without it");
            Vec::new()
        }
    }
}

/// Publishes `record` on each configured channel it was not yet sent on (each channel once,
/// even across retries), noting the outcome in `record.announced`; says whether a note
/// changed. Announcing never changes the outcome: a channel that fails (after the SDK's own
/// retries) is noted and the step succeeds.
async fn announce(
    clients: &Clients,
    notifications: &Notifications,
    record: &mut DeploymentRecord,
) -> Result<bool, StepError> {
    let detail = serde_json::to_string(&record).map_err(|e| StepError::Transient(e.to_string()))?;
    let mut changed = false;
    if let Some(bus) = &notifications.event_bus {
        if record.announced.get("eventbridge").map(String::as_str) != Some(SENT) {
            let outcome = put_event(clients, bus, &detail).await;
            record.announced.insert("eventbridge".into(), note(outcome));
            changed = true;
        }
    }
    if let Some(topic) = &notifications.sns_topic_arn {
        if record.announced.get("sns").map(String::as_str) != Some(SENT) {
            let outcome = clients
                .sns
                .publish()
                .topic_arn(topic)
                .subject(subject(record))
                .message(message(record))
                .message_attributes("slipway.record", attribute(&detail))
                .message_attributes("slipway.environment", attribute(&record.environment))
                .message_attributes("slipway.result", attribute(record.result.as_str()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws("sns:Publish")(e).to_string());
            record.announced.insert("sns".into(), note(outcome));
            changed = true;
        }
    }
    Ok(changed)
}

async fn release_locks(
    clients: &Clients,
    release: &crate::model::Release,
) -> Result<(), StepError> {
    for s in &release.services {
        state::release_lock(clients, &s.name, &release.owner).await?;
    }
    for st in &release.stacks {
        state::release_lock(clients, &state::stack_lock(&st.name), &release.owner).await?;
    }
    Ok(())
}

/// A String message attribute (SNS's `MessageAttributeValue`: the type and a non-empty value).
fn attribute(value: &str) -> aws_sdk_sns::types::MessageAttributeValue {
    aws_sdk_sns::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(if value.is_empty() { "-" } else { value })
        .build()
        .expect("data type is set")
}

/// The SNS subject a person reads first: environment, result, services and tag, e.g.
/// `[staging] failed: api, web to 3f2a1bc`. SNS's Publish takes "UTF-8 text with no line
/// breaks or control characters, and less than 100 characters"
/// (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html): control characters become
/// spaces, and a longer subject is cut to 99 characters with `...`.
pub fn subject(record: &DeploymentRecord) -> String {
    let services: Vec<&str> = record.services.iter().map(|s| s.service.as_str()).collect();
    let what = match (&record.tag, services.is_empty()) {
        (Some(tag), false) => format!(": {} to {tag}", services.join(", ")),
        (None, false) => format!(": {}", services.join(", ")),
        (Some(tag), true) => format!(": {tag}"),
        (None, true) => String::new(),
    };
    let text: String = format!("[{}] {}{what}", record.environment, record.result)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() < 100 {
        text
    } else {
        text.chars().take(96).chain("...".chars()).collect()
    }
}

/// The SNS message body, for a person: what moved, how it ended and why. The record itself
/// (JSON) is the `slipway.record` message attribute.
pub fn message(record: &DeploymentRecord) -> String {
    let mut out = format!(
        "Release {} in {}: {}\n",
        record.release, record.environment, record.result
    );
    match &record.trigger {
        crate::input::Trigger::EcrPush { time, .. } => {
            out += &format!("Started by an ECR push at {time}");
        }
        crate::input::Trigger::Manual { reason, commit } => {
            out += "Started by hand";
            if let Some(reason) = reason {
                out += &format!(": {reason}");
            }
            if let Some(commit) = commit {
                out += &format!(" (commit {commit})");
            }
        }
    }
    if let Some(tag) = &record.tag {
        out += &format!(", tag {tag}");
    }
    out += &format!(
        "; {} s from start to finish.\n",
        record.finished_at - record.started_at
    );
    if let Some(reason) = &record.reason {
        out += &format!("Why: {reason}\n");
    }
    if let Some(error) = &record.error {
        let name = error
            .get("Error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("error");
        let cause = error
            .get("Cause")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        out += &format!("Error: {name}: {cause}\n");
    }
    if !record.services.is_empty() {
        out += "Services:\n";
        for s in &record.services {
            let from = if s.from.is_empty() { "-" } else { &s.from };
            out += &format!("  {}: {from} -> {}\n", s.service, s.to);
        }
    }
    if !record.stacks.is_empty() {
        out += &format!("Stacks: {}\n", record.stacks.join(", "));
    }
    if let Some(rollback) = &record.rollback {
        let actions: Vec<String> = rollback
            .services
            .iter()
            .chain(&rollback.stacks)
            .map(|a| format!("{} {}", a.name, a.action))
            .collect();
        out += &format!("Rollback: {}\n", actions.join(", "));
    }
    out
}

/// An announcement channel's note in the record when it went out.
const SENT: &str = "sent";

fn note(outcome: Result<(), String>) -> String {
    match outcome {
        Ok(()) => SENT.to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "announcement failed; the outcome stands");
            format!("failed: {e}")
        }
    }
}

async fn put_event(clients: &Clients, bus: &str, detail: &str) -> Result<(), String> {
    let out = clients
        .eventbridge
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source("slipway")
                .detail_type(EVENT_DETAIL_TYPE)
                .detail(detail)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws("events:PutEvents")(e).to_string())?;
    if out.failed_entry_count() > 0 {
        let why: Vec<String> = out
            .entries()
            .iter()
            .filter_map(|e| {
                Some(format!(
                    "{}: {}",
                    e.error_code()?,
                    e.error_message().unwrap_or_default()
                ))
            })
            .collect();
        return Err(format!(
            "events:PutEvents: entry failed: {}",
            why.join("; ")
        ));
    }
    Ok(())
}

/// After plan failed: releases every configured service's lock this execution holds (plan
/// may have failed — crashed, timed out — between taking locks and returning) and forgets a
/// release it stored. Nothing was deployed, so there is nothing to roll back. When the input
/// was a deploy request — the image not in ECR, a stack busy for longer than plan waits, a
/// service the configuration does not name, the configuration missing or broken — the failure
/// is recorded (`failed`, with plan's error) and announced on the configured channels, so a
/// push that deployed nothing is never silent. Idempotent.
#[tracing::instrument(skip_all, fields(execution = %input.execution))]
pub async fn plan_failed(
    clients: &Clients,
    clock: &dyn Clock,
    input: PlanFailedInput,
) -> Result<PlanFailedCleanup, StepError> {
    if input.execution.is_empty() {
        return Err(StepError::invalid(
            "plan_failed.execution",
            "empty execution id",
        ));
    }
    // Without a readable configuration plan took no lock (it reads the configuration first).
    let config = state::load_config(clients).await.ok();
    let released = match &config {
        Some(config) => {
            state::release_locks_of(clients, config, &input.execution)
                .await?
                .locks
        }
        None => Vec::new(),
    };
    state::delete_release(clients, &input.execution).await?;
    tracing::warn!(?released, error = ?input.error, "plan failed; released what it held");
    let request = match input.input.clone().map(crate::input::parse) {
        Some(Ok(PlanInput::Deploy { request })) => request,
        _ => {
            return Ok(PlanFailedCleanup {
                released,
                record: None,
            })
        }
    };
    let started_at = input
        .started
        .as_deref()
        .and_then(|t| DateTime::from_str(t, DateTimeFormat::DateTimeWithOffset).ok())
        .map_or_else(|| clock.now(), |t| t.secs());
    let record = record_unstarted(
        clients,
        clock,
        config.as_ref(),
        Unstarted {
            execution: &input.execution,
            request,
            started_at,
            result: ReleaseResult::Failed,
            reason: "plan failed: nothing was deployed".into(),
            error: input.error.clone(),
        },
    )
    .await?;
    Ok(PlanFailedCleanup {
        released,
        record: Some(record),
    })
}

/// A deploy request whose execution ended before its release started.
pub(crate) struct Unstarted<'a> {
    /// The execution.
    pub execution: &'a str,
    /// What it asked for.
    pub request: DeployRequest,
    /// When it started, epoch seconds (the record's key, the same on every retry).
    pub started_at: i64,
    /// `failed`, `aborted` or `timed-out`.
    pub result: ReleaseResult,
    /// Why nothing was deployed.
    pub reason: String,
    /// The error, if any.
    pub error: Option<serde_json::Value>,
}

/// Records and announces a deploy request that never became a release: nothing moved, so
/// the record names no service or stack, only why. One record per execution across retries
/// (keyed by its start), each channel announced once.
pub(crate) async fn record_unstarted(
    clients: &Clients,
    clock: &dyn Clock,
    config: Option<&Config>,
    unstarted: Unstarted<'_>,
) -> Result<DeploymentRecord, StepError> {
    let id = super::plan::release_id(unstarted.execution);
    let started_at = unstarted.started_at;
    let earlier = state::record_of(clients, started_at, &id).await?;
    let mut record = DeploymentRecord {
        release: id,
        environment: config.map(|c| c.environment.clone()).unwrap_or_default(),
        trigger: unstarted.request.trigger,
        result: unstarted.result,
        tag: unstarted.request.image.tag.clone(),
        reason: Some(unstarted.reason),
        error: unstarted.error,
        services: Vec::new(),
        stacks: Vec::new(),
        started_at,
        finished_at: earlier
            .as_ref()
            .map_or_else(|| clock.now(), |r| r.finished_at),
        timings: Default::default(),
        rollback: None,
        announced: earlier.map(|r| r.announced).unwrap_or_default(),
        why: Vec::new(),
    };
    state::put_record(clients, &record).await?;
    // Without a configuration there is no channel to announce on: the record is all.
    if let Some(config) = config {
        if announce(clients, &config.notifications, &mut record).await? {
            state::put_record(clients, &record).await?;
        }
    }
    Ok(record)
}
