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
                if event["source"] == t.source.as_str()
                    && t.detail_types
                        .iter()
                        .any(|d| event["detail-type"] == d.as_str())
                {
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
