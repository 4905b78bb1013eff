//! What every part of the simulated account shares: the time, ids, the scenario and the
//! EventBridge sink.

use std::io::Write as _;

use serde_json::{json, Value};

use crate::ids::Ids;
use crate::scenario::Scenario;

/// Events the simulator emits, as EventBridge would deliver them.
#[derive(Debug, Default)]
pub struct Events {
    list: Vec<Value>,
    file: Option<std::fs::File>,
    targets: Vec<Target>,
    outbox: Option<tokio::sync::mpsc::UnboundedSender<(String, Value)>>,
}

/// A rule's Lambda target, as the test bed registers it (`POST /_sim/event-targets`): events
/// whose `source` and `detail-type` match are sent to `url` (a Lambda invoke URL). An
/// EventBridge rule invokes a Lambda target asynchronously (EventBridge User Guide, "Amazon
/// EventBridge targets"; Lambda Developer Guide, "Invoking a Lambda function
/// asynchronously"), so delivery never holds up the simulation.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
pub struct Target {
    /// Where events are POSTed.
    pub url: String,
    /// The event pattern's `source` (one value).
    pub source: String,
    /// The event pattern's `detail-type` values.
    #[serde(rename = "detail-types")]
    pub detail_types: Vec<String>,
    /// The event pattern's `detail`, as far as exact string values of its top-level fields
    /// go (`{"eventName": ["SERVICE_DEPLOYMENT_COMPLETED", …]}`): an event matches when each
    /// field's value is one of those listed (EventBridge User Guide, "Event patterns").
    #[serde(default)]
    pub detail: std::collections::BTreeMap<String, Vec<String>>,
}

impl Target {
    fn matches(&self, event: &Value) -> bool {
        event["source"] == self.source.as_str()
            && self
                .detail_types
                .iter()
                .any(|d| event["detail-type"] == d.as_str())
            && self.detail.iter().all(|(field, values)| {
                event["detail"][field]
                    .as_str()
                    .is_some_and(|v| values.iter().any(|w| w == v))
            })
    }
}

impl Events {
    /// A sink that also appends each event as a JSON line to `file`.
    pub fn with_file(file: Option<std::fs::File>) -> Self {
        Self {
            list: Vec::new(),
            file,
            targets: Vec::new(),
            outbox: None,
        }
    }

    /// Sends matching events to `outbox` (drained by the server's delivery task).
    pub fn deliver_to(&mut self, outbox: tokio::sync::mpsc::UnboundedSender<(String, Value)>) {
        self.outbox = Some(outbox);
    }

    /// Adds a rule target (the same one twice is kept once).
    pub fn add_target(&mut self, target: Target) {
        if !self.targets.contains(&target) {
            self.targets.push(target);
        }
    }

    /// Records an event.
    pub fn push(&mut self, event: Value) {
        if let Some(f) = &mut self.file {
            // A full disk must not stop the simulation; the in-memory list still has it.
            let _ = writeln!(f, "{event}");
        }
        if let Some(outbox) = &self.outbox {
            for t in &self.targets {
                if t.matches(&event) {
                    // The receiver lives as long as the server.
                    let _ = outbox.send((t.url.clone(), event.clone()));
                }
            }
        }
        self.list.push(event);
    }

    /// Every event so far, oldest first.
    pub fn all(&self) -> &[Value] {
        &self.list
    }
}

/// The shared context of one operation or clock step.
pub struct Env<'a> {
    /// Simulated now, epoch seconds.
    pub now: f64,
    /// Id generator.
    pub ids: &'a mut Ids,
    /// EventBridge sink.
    pub events: &'a mut Events,
    /// The scenario in force.
    pub scenario: &'a Scenario,
    /// The simulated region.
    pub region: &'a str,
    /// The simulated account id.
    pub account: &'a str,
}

impl Env<'_> {
    /// An ARN of this account and region.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.region, self.account
        )
    }

    /// Emits an EventBridge event from `source`.
    pub fn emit(&mut self, source: &str, detail_type: &str, resources: Vec<String>, detail: Value) {
        let event = json!({
            "version": "0",
            "id": self.ids.uuid(),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": crate::wire::iso8601(self.now.floor()).replace(".000Z", "Z"),
            "region": self.region,
            "resources": resources,
            "detail": detail,
        });
        self.events.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // EventBridge User Guide, "Event patterns": every field of the pattern must match, a
    // list of values matches any of them; fields the pattern leaves out match anything.
    #[test]
    fn a_target_gets_only_what_its_pattern_matches() {
        let target: Target = serde_json::from_value(json!({
            "url": "http://127.0.0.1:1/x", "source": "aws.ecs",
            "detail-types": ["ECS Deployment State Change"],
            "detail": {"eventName": ["SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"]}
        }))
        .unwrap();
        let event = |source: &str, kind: &str, name: &str| json!({"source": source, "detail-type": kind, "detail": {"eventName": name}});
        assert!(target.matches(&event(
            "aws.ecs",
            "ECS Deployment State Change",
            "SERVICE_DEPLOYMENT_COMPLETED"
        )));
        assert!(!target.matches(&event(
            "aws.ecs",
            "ECS Deployment State Change",
            "SERVICE_DEPLOYMENT_IN_PROGRESS"
        )));
        assert!(!target.matches(&event(
            "aws.ecs",
            "ECS Task State Change",
            "SERVICE_DEPLOYMENT_COMPLETED"
        )));
        assert!(!target.matches(&event(
            "aws.cloudformation",
            "ECS Deployment State Change",
            "SERVICE_DEPLOYMENT_COMPLETED"
        )));
        // No detail pattern: every event of the source and type.
        let any: Target = serde_json::from_value(json!({
            "url": "http://127.0.0.1:1/x", "source": "aws.ecs", "detail-types": ["ECS Deployment State Change"]
        }))
        .unwrap();
        assert!(any.matches(&event(
            "aws.ecs",
            "ECS Deployment State Change",
            "SERVICE_DEPLOYMENT_IN_PROGRESS"
        )));
    }
}
