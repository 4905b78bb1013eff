//! CloudWatch metric alarms, as far as a deployment watches them: PutMetricAlarm,
//! SetAlarmState, DescribeAlarms and DeleteAlarms (CloudWatch API Reference), on both wire
//! protocols the SDKs use: Smithy RPC v2 CBOR (the Rust SDK's; see [`crate::cbor`]) and AWS
//! JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.*`, botocore's `json`). moto
//! serves alarms only over Query and JSON 1.0 (getmoto/moto#9195: "no current (or planned)
//! support ... for the RPC v2 CBOR protocol"), so the test bed's alarms live here.
//!
//! No metric is evaluated: an alarm stays in the state SetAlarmState (or its creation) gave
//! it, which is how the tests drive it. ECS's deployment alarms read the same states
//! ([`CloudWatch::in_alarm`]).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::env::Env;
use crate::wire::{ApiError, ApiResult};

/// The JSON 1.0 `X-Amz-Target` prefix, and the RPC v2 CBOR service name in
/// `/service/{name}/operation/{op}` (botocore's model: `targetPrefix`).
pub const SERVICE: &str = "GraniteServiceVersion20100801";

/// The timestamp members of the answers (MetricAlarm's), tagged as such on CBOR.
pub const TIMESTAMPS: [&str; 3] = [
    "AlarmConfigurationUpdatedTimestamp",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
];

/// PutMetricAlarm's configuration members that DescribeAlarms gives back as they were put.
const CONFIGURATION: [&str; 20] = [
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
];

const STATES: [&str; 3] = ["OK", "ALARM", "INSUFFICIENT_DATA"];

#[derive(Debug, Clone)]
struct Alarm {
    configuration: Map<String, Value>,
    state: String,
    reason: String,
    reason_data: Option<String>,
    configured_at: f64,
    updated_at: f64,
    transitioned_at: f64,
}

/// The account's alarms.
#[derive(Debug, Default)]
pub struct CloudWatch {
    alarms: BTreeMap<String, Alarm>,
}

fn names(input: &Value, field: &str) -> ApiResult<Vec<String>> {
    let Some(list) = input.get(field).filter(|v| !v.is_null()) else {
        return Ok(vec![]);
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::new("InvalidParameterValue", format!("{field} must be a list")))?;
    if list.len() > 100 {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!("The collection {field} must not have a size greater than 100."),
        ));
    }
    Ok(list
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

/// The alarm event's timestamps: `2019-10-02T17:04:40.989+0000` (CloudWatch User Guide,
/// "Alarm events and EventBridge", its example events).
fn alarm_time(epoch: f64) -> String {
    crate::wire::iso8601(epoch).replace('Z', "+0000")
}

fn alarm_name(input: &Value) -> ApiResult<String> {
    let name = input["AlarmName"]
        .as_str()
        .ok_or_else(|| ApiError::new("MissingParameter", "The parameter AlarmName is required."))?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "The parameter AlarmName must be between 1 and 255 characters long.",
        ));
    }
    Ok(name.to_owned())
}

impl CloudWatch {
    /// One API call.
    pub fn call(&mut self, env: &mut Env, op: &str, input: &Value) -> ApiResult<Value> {
        match op {
            "PutMetricAlarm" => self.put_metric_alarm(env, input),
            "SetAlarmState" => self.set_alarm_state(env, input),
            "DescribeAlarms" => self.describe_alarms(env, input),
            "DeleteAlarms" => self.delete_alarms(input),
            other => Err(ApiError::new(
                "UnknownOperationException",
                format!("slipway-sim does not implement CloudWatch {other}"),
            )),
        }
    }

    /// Whether the alarm of this name is in ALARM (false when there is none), and its reason.
    pub fn in_alarm(&self, name: &str) -> Option<&str> {
        self.alarms
            .get(name)
            .filter(|a| a.state == "ALARM")
            .map(|a| a.reason.as_str())
    }

    /// The alarm's evaluation window, seconds: `Period` × `EvaluationPeriods` (None when
    /// there is no such alarm).
    pub fn evaluation_seconds(&self, name: &str) -> Option<f64> {
        let c = &self.alarms.get(name)?.configuration;
        let period = c.get("Period").and_then(Value::as_f64).unwrap_or(60.0);
        let periods = c
            .get("EvaluationPeriods")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        Some(period * periods)
    }

    /// PutMetricAlarm: only `AlarmName` is required (botocore's current model). A new alarm starts in INSUFFICIENT_DATA, "Unchecked: Initial alarm
    /// creation"; putting an existing one replaces its configuration and keeps its state
    /// (API Reference: "When you update an existing alarm, its state is left unchanged, but
    /// the update completely overwrites the previous configuration of the alarm").
    fn put_metric_alarm(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let name = alarm_name(input)?;
        let configuration: Map<String, Value> = CONFIGURATION
            .iter()
            .filter_map(|k| {
                input
                    .get(*k)
                    .filter(|v| !v.is_null())
                    .map(|v| ((*k).to_owned(), v.clone()))
            })
            .collect();
        let now = env.now;
        match self.alarms.get_mut(&name) {
            Some(a) => {
                a.configuration = configuration;
                a.configured_at = now;
            }
            None => {
                self.alarms.insert(
                    name,
                    Alarm {
                        configuration,
                        state: "INSUFFICIENT_DATA".into(),
                        reason: "Unchecked: Initial alarm creation".into(),
                        reason_data: None,
                        configured_at: now,
                        updated_at: now,
                        transitioned_at: now,
                    },
                );
            }
        }
        Ok(Value::Null)
    }

    /// SetAlarmState: `AlarmName`, `StateValue` and `StateReason` (at most 1023 characters)
    /// are required; an alarm that does not exist is `ResourceNotFound`. The state change is
    /// announced as EventBridge's "CloudWatch Alarm State Change" event (CloudWatch User
    /// Guide, "Alarm events and EventBridge"). Unlike CloudWatch, nothing evaluates the
    /// metric afterwards: the state stays until set again.
    fn set_alarm_state(&mut self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let name = alarm_name(input)?;
        let state = input["StateValue"].as_str().unwrap_or_default();
        if !STATES.contains(&state) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("Value '{state}' at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]"),
            ));
        }
        let reason = input["StateReason"].as_str().ok_or_else(|| {
            ApiError::new("MissingParameter", "The parameter StateReason is required.")
        })?;
        if reason.chars().count() > 1023 {
            return Err(ApiError::new(
                "InvalidParameterValue",
                "The parameter StateReason must be at most 1023 characters long.",
            ));
        }
        let reason_data = input["StateReasonData"].as_str().map(str::to_owned);
        if let Some(data) = &reason_data {
            if serde_json::from_str::<Value>(data).is_err() {
                return Err(ApiError::new(
                    "InvalidFormat",
                    "StateReasonData is not valid JSON",
                ));
            }
        }
        let a = self.alarms.get_mut(&name).ok_or_else(|| {
            let mut e = ApiError::new("ResourceNotFound", format!("Alarm {name} not found"));
            e.status = 404;
            e
        })?;
        let previous =
            json!({"value": a.state, "reason": a.reason, "timestamp": alarm_time(a.updated_at)});
        let now = env.now;
        if a.state != state {
            a.transitioned_at = now;
        }
        a.state = state.to_owned();
        a.reason = reason.to_owned();
        a.reason_data = reason_data;
        a.updated_at = now;
        let arn = env.arn("cloudwatch", &format!("alarm:{name}"));
        env.events.push(json!({
            "version": "0",
            "id": env.ids.uuid(),
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": env.account,
            "time": crate::wire::iso8601(now.floor()).replace(".000Z", "Z"),
            "region": env.region,
            "resources": [arn],
            "detail": {
                "alarmName": name,
                "state": {"value": state, "reason": reason, "timestamp": alarm_time(now)},
                "previousState": previous,
                "configuration": {"description": a.configuration.get("AlarmDescription").cloned().unwrap_or(Value::Null)}
            }
        }));
        Ok(Value::Null)
    }

    /// DescribeAlarms: `AlarmNames` (at most 100) or `AlarmNamePrefix` (not both),
    /// `StateValue`, `AlarmTypes` (without it, only metric alarms: the only kind here),
    /// `MaxRecords` 1–100 (default 50) and `NextToken`. Names that match no alarm are left
    /// out; that is not an error.
    fn describe_alarms(&self, env: &mut Env, input: &Value) -> ApiResult<Value> {
        let wanted = names(input, "AlarmNames")?;
        let prefix = input["AlarmNamePrefix"].as_str();
        if prefix.is_some() && !wanted.is_empty() {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "AlarmNamePrefix and AlarmNames cannot be specified together.",
            ));
        }
        let state = input["StateValue"].as_str();
        let types = names(input, "AlarmTypes")?;
        let max = input["MaxRecords"].as_u64().unwrap_or(50);
        if !(1..=100).contains(&max) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                "The parameter MaxRecords must be between 1 and 100.",
            ));
        }
        let start: usize = match input["NextToken"].as_str() {
            None => 0,
            Some(t) => t.parse().map_err(|_| {
                ApiError::new(
                    "InvalidNextToken",
                    "The service couldn't process the next token.",
                )
            })?,
        };
        let metric = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
        let matching: Vec<(&String, &Alarm)> = self
            .alarms
            .iter()
            .filter(|_| metric)
            .filter(|(n, _)| wanted.is_empty() || wanted.contains(n))
            .filter(|(n, _)| prefix.is_none_or(|p| n.starts_with(p)))
            .filter(|(_, a)| state.is_none_or(|s| a.state == s))
            .collect();
        if start > matching.len() {
            return Err(ApiError::new(
                "InvalidNextToken",
                "The service couldn't process the next token.",
            ));
        }
        let end = start.saturating_add(max as usize).min(matching.len());
        let page: Vec<Value> = matching
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|(name, a)| {
                let mut m = a.configuration.clone();
                m.insert("AlarmName".into(), json!(name));
                m.insert(
                    "AlarmArn".into(),
                    json!(env.arn("cloudwatch", &format!("alarm:{name}"))),
                );
                m.insert(
                    "AlarmConfigurationUpdatedTimestamp".into(),
                    json!(a.configured_at),
                );
                m.insert("StateValue".into(), json!(a.state));
                m.insert("StateReason".into(), json!(a.reason));
                if let Some(d) = &a.reason_data {
                    m.insert("StateReasonData".into(), json!(d));
                }
                m.insert("StateUpdatedTimestamp".into(), json!(a.updated_at));
                m.insert(
                    "StateTransitionedTimestamp".into(),
                    json!(a.transitioned_at),
                );
                Value::Object(m)
            })
            .collect();
        let mut out = json!({"MetricAlarms": page, "CompositeAlarms": []});
        if end < matching.len() {
            out["NextToken"] = json!(end.to_string());
        }
        Ok(out)
    }

    /// DeleteAlarms: `AlarmNames` (at most 100). The alarms that exist are deleted ("If
    /// you specify any incorrect alarm names, the alarms you specify with correct names are
    /// still deleted"); a name that matches none is `ResourceNotFound` (its one modelled
    /// error).
    fn delete_alarms(&mut self, input: &Value) -> ApiResult<Value> {
        let wanted = names(input, "AlarmNames")?;
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|n| !self.alarms.contains_key(*n))
            .collect();
        for n in &wanted {
            self.alarms.remove(n);
        }
        if let Some(missing) = missing.first() {
            let mut e = ApiError::new("ResourceNotFound", format!("Alarm {missing} not found"));
            e.status = 404;
            return Err(e);
        }
        Ok(Value::Null)
    }
}
