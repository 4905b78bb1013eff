//! Scenarios: what goes wrong, and how fast the simulated world moves.
//!
//! A scenario is read from a TOML or JSON file (`--scenario FILE`) or replaced at run time
//! with `PUT /_sim/scenario` (JSON). Every duration is in simulated seconds.
//!
//! ```toml
//! [timings]
//! task_start = 15          # a task's PROVISIONING → RUNNING
//! stack_update = 30        # a stack update from UPDATE_IN_PROGRESS to its end
//!
//! [throttle]               # every 3rd call of these actions gets a throttling error
//! one_in = 3
//! actions = ["DescribeServices"]
//!
//! [[images]]               # tasks of any image containing "api:bad" crash before RUNNING
//! match = "api:bad"
//! failure = "crash"
//! logs = ["panic: DATABASE_URL is not set"]   # what it prints (its awslogs stream)
//!
//! [[faults]]               # calls that fail outright
//! action = "UpdateService"
//! contains = "task-definition/api:1"
//! code = "AccessDeniedException"
//!
//! [[stacks]]               # every update of stack "alb" fails on resource Listener
//! name = "alb"
//! fail_update = { resource = "Listener", reason = "Invalid listener rule priority" }
//! # fail_rollback = { resource = "Settings", reason = "…" }   # …and its rollback fails there
//! ```

use serde::{Deserialize, Serialize};

/// Everything a scenario can say. `Default` is an account where nothing goes wrong.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// How long things take.
    pub timings: Timings,
    /// API throttling, if any (replaced as a whole by `POST /_sim/scenario`).
    pub throttle: Option<Throttle>,
    /// More throttling rules, each scoped by its `contains` (appended by `POST
    /// /_sim/scenario`, so tests running at once never replace each other's).
    pub throttles: Vec<Throttle>,
    /// Images that misbehave.
    pub images: Vec<ImageRule>,
    /// Stacks whose updates fail.
    pub stacks: Vec<StackRule>,
    /// API calls that fail.
    pub faults: Vec<Fault>,
}

/// An API call that fails: every call of `action` whose request contains `contains`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The action (`UpdateService`, `UpdateStack`, …).
    pub action: String,
    /// A substring of the request (JSON body, or the Query parameters' values); empty: any.
    #[serde(default)]
    pub contains: String,
    /// The error code returned (`AccessDeniedException`, …).
    pub code: String,
    /// The error message.
    #[serde(default)]
    pub message: String,
    /// The HTTP status; by default 500 for AWS's server-fault codes (`InternalFailure`,
    /// `InternalError`, `ServiceUnavailable` 503, …, as botocore marks them `fault: true`)
    /// and 400 for the rest.
    #[serde(default)]
    pub http_status: Option<u16>,
}

impl Fault {
    /// The HTTP status this fault answers with.
    pub fn status(&self) -> u16 {
        self.http_status.unwrap_or(match self.code.as_str() {
            "ServiceUnavailable" | "ServiceUnavailableException" => 503,
            "InternalFailure"
            | "InternalError"
            | "InternalServiceError"
            | "ServerException"
            | "InternalServerError"
            | "HealthUnavailable" => 500,
            _ => 400,
        })
    }
}

/// Durations in simulated seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// A task from launch to RUNNING (or, for a crashing image, to STOPPED).
    pub task_start: f64,
    /// A stack creation.
    pub stack_create: f64,
    /// A stack update (half of it again for a rollback after a failure).
    pub stack_update: f64,
    /// A stack deletion.
    pub stack_delete: f64,
    /// A change set from CREATE_PENDING to CREATE_COMPLETE or FAILED.
    pub change_set: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            task_start: 15.0,
            stack_create: 10.0,
            stack_update: 30.0,
            stack_delete: 10.0,
            change_set: 2.0,
        }
    }
}

/// Throttling: one call in `one_in` is refused with the service's throttling error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Refuse every `one_in`-th call (2 = every other call). At least 2, so that a client
    /// retrying can always get through.
    pub one_in: u64,
    /// The actions throttled (`DescribeServices`, `DescribeStacks`, …); empty = all.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Only calls whose request contains this (a cluster or stack name, say); empty = all.
    #[serde(default)]
    pub contains: String,
}

/// How an image misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Its tasks exit before they reach RUNNING (the circuit breaker's first stage).
    Crash,
    /// Its app answers 500 on `path` (default `/health`) and 200 elsewhere: a target group
    /// checking that path marks its targets unhealthy (the circuit breaker's second stage);
    /// one checking another path does not, and only a check of the app's own catches it.
    #[serde(rename = "health-500")]
    Health500,
    /// Its app answers 503 on every path: every target group marks its targets unhealthy
    /// (the circuit breaker's second stage).
    UnhealthyTarget,
    /// Its tasks take `start_seconds` to start.
    Slow,
    /// A stack update that would put it in place fails.
    StackUpdateFails,
}

/// An image rule: images whose reference contains `match` behave as `failure` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRule {
    /// A substring of the container image (`api:bad`, `sha256:1234…`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// What goes wrong.
    pub failure: Failure,
    /// For `slow`: seconds a task takes to start.
    #[serde(default)]
    pub start_seconds: Option<f64>,
    /// For `stack-update-fails`: the resource status reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// For `health-500`: the path that answers 500 (default `/health`).
    #[serde(default)]
    pub path: Option<String>,
    /// For `crash`: what the container prints before it exits, line by line — its
    /// `awslogs` stream, which CloudWatch Logs' GetLogEvents then returns.
    #[serde(default)]
    pub logs: Vec<String>,
}

/// A stack whose updates (or their rollbacks) fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackRule {
    /// The stack name.
    pub name: String,
    /// The failure every update of it meets.
    #[serde(default)]
    pub fail_update: Option<StackFailure>,
    /// The failure every rollback of this resource meets: the stack ends
    /// UPDATE_ROLLBACK_FAILED until ContinueUpdateRollback skips it.
    #[serde(default)]
    pub fail_rollback: Option<StackFailure>,
}

/// Where and why a stack update fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackFailure {
    /// The logical id of the resource that fails.
    pub resource: String,
    /// Its status reason.
    pub reason: String,
}

impl Scenario {
    /// Reads a scenario file, TOML or JSON by its extension.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
        let scenario: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        scenario
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        for t in self.throttle.iter().chain(&self.throttles) {
            if t.one_in < 2 {
                return Err(format!(
                    "throttle.one_in = {}: must be at least 2",
                    t.one_in
                ));
            }
        }
        for (i, rule) in self.images.iter().enumerate() {
            if rule.pattern.is_empty() {
                return Err(format!("images[{i}].match: must not be empty"));
            }
            if rule.failure == Failure::Slow && rule.start_seconds.is_none() {
                return Err(format!("images[{i}]: failure \"slow\" needs start_seconds"));
            }
        }
        let t = &self.timings;
        for (name, v) in [
            ("task_start", t.task_start),
            ("stack_create", t.stack_create),
            ("stack_update", t.stack_update),
            ("stack_delete", t.stack_delete),
            ("change_set", t.change_set),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "timings.{name} = {v}: must be a duration in seconds"
                ));
            }
        }
        Ok(())
    }

    /// The first rule matching any of these images with this failure.
    pub fn image_rule<'a>(
        &self,
        images: impl IntoIterator<Item = &'a str>,
        failure: Failure,
    ) -> Option<&ImageRule> {
        let images: Vec<&str> = images.into_iter().collect();
        self.images
            .iter()
            .find(|r| r.failure == failure && images.iter().any(|i| i.contains(&r.pattern)))
    }

    /// Removes every rule scoped to `token`: throttles and faults whose `contains`, image
    /// rules whose `match`, stack rules whose `name` contains it. Returns how many went.
    pub fn remove_scoped(&mut self, token: &str) -> usize {
        let before =
            self.throttles.len() + self.faults.len() + self.images.len() + self.stacks.len();
        self.throttles.retain(|t| !t.contains.contains(token));
        self.faults.retain(|f| !f.contains.contains(token));
        self.images.retain(|r| !r.pattern.contains(token));
        self.stacks.retain(|r| !r.name.contains(token));
        before - (self.throttles.len() + self.faults.len() + self.images.len() + self.stacks.len())
    }

    /// The HTTP status the app of these images answers on `path`.
    pub fn answer<'a>(&self, images: impl IntoIterator<Item = &'a str> + Clone, path: &str) -> u16 {
        if self
            .image_rule(images.clone(), Failure::UnhealthyTarget)
            .is_some()
        {
            return 503;
        }
        let sick = self.images.iter().any(|r| {
            r.failure == Failure::Health500
                && r.path.as_deref().unwrap_or("/health") == path
                && images.clone().into_iter().any(|i| i.contains(&r.pattern))
        });
        if sick {
            500
        } else {
            200
        }
    }

    /// Seconds a task of these images takes to start.
    pub fn task_start<'a>(&self, images: impl IntoIterator<Item = &'a str>) -> f64 {
        self.image_rule(images, Failure::Slow)
            .and_then(|r| r.start_seconds)
            .unwrap_or(self.timings.task_start)
    }
}

/// The simulated clock: time since the anchor runs `speed` times faster than real time.
/// Processes given the same anchor and speed (the test bed's Lambdas, through
/// `SLIPWAY_CLOCK_ANCHOR`/`SLIPWAY_CLOCK_SPEED`) agree on "now".
#[derive(Debug, Clone)]
pub struct Clock {
    anchor: f64,
    speed: f64,
}

fn real_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Clock {
    /// A clock running `speed` times faster than real time from now on.
    pub fn new(speed: f64) -> Self {
        Self::anchored(real_now(), speed)
    }

    /// A clock running `speed` times faster than real time since `anchor` (epoch seconds).
    pub fn anchored(anchor: f64, speed: f64) -> Self {
        Self { anchor, speed }
    }

    /// Simulated now, seconds since the epoch.
    pub fn now(&self) -> f64 {
        self.anchor + (real_now() - self.anchor) * self.speed
    }

    /// How many times faster than real time.
    pub fn speed(&self) -> f64 {
        self.speed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example() {
        let s: Scenario = toml::from_str(
            r#"
            [timings]
            task_start = 5
            [throttle]
            one_in = 3
            actions = ["DescribeServices"]
            [[images]]
            match = "api:bad"
            failure = "crash"
            [[images]]
            match = "web:slow"
            failure = "slow"
            start_seconds = 900
            [[stacks]]
            name = "alb"
            fail_update = { resource = "Listener", reason = "Invalid" }
            "#,
        )
        .expect("parses");
        s.validate().expect("valid");
        assert_eq!(s.timings.task_start, 5.0);
        assert_eq!(s.timings.stack_update, 30.0);
        assert_eq!(s.task_start(["repo/web:slow"]), 900.0);
        assert_eq!(s.task_start(["repo/web:ok"]), 5.0);
        assert!(s.image_rule(["x/api:bad"], Failure::Crash).is_some());
        assert!(s.image_rule(["x/api:bad"], Failure::Health500).is_none());
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(toml::from_str::<Scenario>("[timings]\ntask_strat = 5").is_err());
        let s: Scenario = toml::from_str("[throttle]\none_in = 1").expect("parses");
        assert!(s.validate().unwrap_err().contains("one_in"));
        let s: Scenario = toml::from_str("[[images]]\nmatch='x'\nfailure='slow'").expect("parses");
        assert!(s.validate().unwrap_err().contains("start_seconds"));
    }
}
