//! `finish`: releases the locks, writes the deployment record, announces the result.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::aws::{aws, Clients};
use crate::model::{DeploymentRecord, FinishInput, RecordedService};
use crate::state;
use crate::steps::Clock;
use crate::StepError;

/// The `detail-type` of the events `finish` publishes.
pub const EVENT_DETAIL_TYPE: &str = "Slipway Deployment State Change";

/// Releases every lock of the release, writes its record (overwriting an earlier attempt's)
/// and publishes it to EventBridge and SNS when configured. Idempotent.
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
    for s in &release.services {
        state::release_lock(clients, &s.name, &release.owner).await?;
    }
    let record = DeploymentRecord {
        release: release.id.clone(),
        environment: release.environment.clone(),
        trigger: release.trigger.clone(),
        result: input.result.clone(),
        error: input.error.clone(),
        services: release
            .services
            .iter()
            .map(|s| RecordedService {
                service: s.name.clone(),
                from: s.previous_image.clone(),
                to: s.image.clone(),
            })
            .collect(),
        stacks: release.stacks.iter().map(|s| s.name.clone()).collect(),
        started_at: release.started_at,
        finished_at: clock.now(),
        timings: input.timings.clone(),
        rollback: input.rollback.clone(),
    };
    state::put_record(clients, &record).await?;
    let detail = serde_json::to_string(&record).map_err(|e| StepError::Transient(e.to_string()))?;
    if let Some(bus) = &release.notifications.event_bus {
        let out = clients
            .eventbridge
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source("slipway")
                    .detail_type(EVENT_DETAIL_TYPE)
                    .detail(&detail)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("events:PutEvents"))
            .map_err(|e| e.step(StepError::Transient))?;
        if out.failed_entry_count() > 0 {
            return Err(StepError::Transient(format!(
                "events:PutEvents: {} entries failed",
                out.failed_entry_count()
            )));
        }
    }
    if let Some(topic) = &release.notifications.sns_topic_arn {
        let subject = format!(
            "[{}] release {} {}",
            release.environment, release.id, input.result
        );
        clients
            .sns
            .publish()
            .topic_arn(topic)
            .subject(subject.chars().take(100).collect::<String>())
            .message(&detail)
            .send()
            .await
            .map_err(aws("sns:Publish"))
            .map_err(|e| e.step(StepError::Transient))?;
    }
    tracing::info!("finished");
    Ok(record)
}
