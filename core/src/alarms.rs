//! The CloudWatch alarms a release watches (`alarms` in slipway.toml): one in ALARM fails the
//! release with `Slipway.AlarmTriggered`, naming the alarm, its reason and since when.
//!
//! CloudWatch API Reference, DescribeAlarms: `AlarmNames` takes at most 100 names, and names
//! that match no alarm are simply absent from the answer (no error). Only metric alarms are
//! asked for: composite alarms come back only to a caller allowed DescribeAlarms on `*`,
//! which Slipway's functions are not (the template allows it on the configured alarms'
//! ARNs), so a composite alarm reads as missing. An alarm's `StateValue` is
//! `OK`, `ALARM` or `INSUFFICIENT_DATA`; only `ALARM` fails a release (missing data is not a
//! symptom of the new version).

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};

use crate::aws::aws;
use crate::StepError;

/// DescribeAlarms' limit on `AlarmNames`.
const NAMES_PER_CALL: usize = 100;

/// One alarm's state, as DescribeAlarms gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmState {
    /// The alarm's name.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// CloudWatch's explanation of the state.
    pub reason: String,
    /// When it entered this state, epoch seconds.
    pub since: Option<i64>,
}

impl AlarmState {
    /// `api-5xx (ALARM since 2026-11-27 08:03:20 UTC): Threshold Crossed: …`
    pub fn describe(&self) -> String {
        let since = self
            .since
            .map(|t| format!(" since {} UTC", crate::wire_time(t)))
            .unwrap_or_default();
        format!("{} ({}{since}): {}", self.name, self.state, self.reason)
    }
}

/// The state of each named alarm, in the order named. An alarm CloudWatch does not know is
/// `Slipway.InvalidInput` (a misspelt name would otherwise watch nothing); access denied
/// says to run bootstrap again (its policy names the configured alarms).
pub async fn states(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    names: &[String],
) -> Result<Vec<AlarmState>, StepError> {
    let mut found: Vec<AlarmState> = Vec::with_capacity(names.len());
    for chunk in names.chunks(NAMES_PER_CALL) {
        let mut token = None;
        loop {
            let out = cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .alarm_types(AlarmType::MetricAlarm)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(aws("cloudwatch:DescribeAlarms"))
                .map_err(|e| {
                    let denied = e.code.contains("AccessDenied");
                    e.step(|m| {
                        if denied {
                            StepError::invalid(
                                "alarms",
                                format!("{m} (slipway bootstrap grants DescribeAlarms on the alarms slipway.toml names: run it again after changing them)"),
                            )
                        } else {
                            StepError::Transient(m)
                        }
                    })
                })?;
            let metric = out.metric_alarms().iter().map(|a| {
                (
                    a.alarm_name(),
                    a.state_value(),
                    a.state_reason(),
                    a.state_updated_timestamp(),
                )
            });
            for (name, state, reason, since) in metric {
                let Some(name) = name else { continue };
                found.push(AlarmState {
                    name: name.to_owned(),
                    state: state
                        .map_or("INSUFFICIENT_DATA", StateValue::as_str)
                        .to_owned(),
                    reason: reason.unwrap_or_default().to_owned(),
                    since: since.map(|t| t.secs()),
                });
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    let mut ordered = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for name in names {
        match found.iter().position(|a| &a.name == name) {
            Some(i) => ordered.push(found.swap_remove(i)),
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(StepError::invalid(
            "alarms",
            format!(
                "CloudWatch has no alarm named {} in this account and region: create it, or remove it from slipway.toml's alarms (a composite alarm cannot be watched: DescribeAlarms returns composite alarms only to a caller allowed it on *, and Slipway's functions are allowed it on their configured alarms only)",
                missing.join(", ")
            ),
        ));
    }
    Ok(ordered)
}

/// Fails with `Slipway.AlarmTriggered` when any of `names` is in ALARM (each one named, with
/// its reason and since when); `when` says at which point of the release (for the cause).
pub async fn check(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    names: &[String],
    when: &str,
) -> Result<(), StepError> {
    if names.is_empty() {
        return Ok(());
    }
    let firing = firing(&states(cloudwatch, names).await?);
    if firing.is_empty() {
        tracing::info!(alarms = names.len(), when, "no alarm in ALARM");
        return Ok(());
    }
    Err(StepError::AlarmTriggered(format!("{when}: {firing}")))
}

/// The alarms in ALARM, described, or empty.
pub fn firing(states: &[AlarmState]) -> String {
    states
        .iter()
        .filter(|a| a.state == StateValue::Alarm.as_str())
        .map(AlarmState::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alarm_fires_and_each_is_described() {
        let s = |name: &str, state: &str| AlarmState {
            name: name.into(),
            state: state.into(),
            reason: format!("{name} reason"),
            since: Some(1_795_766_600),
        };
        assert_eq!(
            firing(&[s("a", "OK"), s("b", "INSUFFICIENT_DATA")]),
            "",
            "OK and INSUFFICIENT_DATA do not fail a release"
        );
        assert_eq!(
            firing(&[s("a", "ALARM"), s("b", "OK"), s("c", "ALARM")]),
            "a (ALARM since 2026-11-27 08:03:20 UTC): a reason; c (ALARM since 2026-11-27 08:03:20 UTC): c reason"
        );
    }
}
