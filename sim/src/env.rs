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
}

impl Events {
    /// A sink that also appends each event as a JSON line to `file`.
    pub fn with_file(file: Option<std::fs::File>) -> Self {
        Self {
            list: Vec::new(),
            file,
        }
    }

    /// Records an event.
    pub fn push(&mut self, event: Value) {
        if let Some(f) = &mut self.file {
            // A full disk must not stop the simulation; the in-memory list still has it.
            let _ = writeln!(f, "{event}");
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
