//! `slipway.toml`: one file per environment. Every field is documented here; these doc
//! comments are the configuration reference (`slipway schema config` prints them as JSON
//! Schema).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An environment's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The environment's name, e.g. `staging`: shown in records and notifications.
    pub environment: String,
    /// The ECS cluster the services run in (name or ARN).
    pub cluster: String,
    /// Minutes a release may take, from plan until its services are stable, before it is
    /// rolled back with `Slipway.NotStable`.
    #[serde(default = "defaults::deadline_minutes")]
    pub deadline_minutes: u32,
    /// Seconds to wait after the first passing health check before checking again
    /// ("bake" time); 0 skips the second check.
    #[serde(default = "defaults::bake_seconds")]
    pub bake_seconds: u32,
    /// Minutes a rollback may take, from its first step until its services are stable again,
    /// before it ends as `Slipway.RollbackFailed` (a person has to look).
    #[serde(default = "defaults::rollback_minutes")]
    pub rollback_minutes: u32,
    /// How a release waits for its services' rollouts: `"events"` (the default) waits for
    /// ECS's "ECS Deployment State Change" events (the rule `slipway bootstrap` installs
    /// sends them to check-stability, which resumes the execution), and still looks itself
    /// when no event came for 90 seconds; `"polling"` looks every 15 seconds.
    #[serde(default)]
    pub stability_wait: StabilityWait,
    /// CloudWatch alarms (names) watched for every service: one in ALARM at any check fails
    /// the release with `Slipway.AlarmTriggered` and rolls it back. Checked when the release
    /// starts (before anything moves), at every look at a stack's update and at the rollout
    /// (at least every [`ALARM_CHECK_SECONDS`] seconds), at the health checks and through the
    /// bake.
    /// `slipway bootstrap` grants `cloudwatch:DescribeAlarms` on these alarms only: run it
    /// again after changing them.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// The deploy lock.
    #[serde(default)]
    pub lock: LockConfig,
    /// Where results are announced.
    #[serde(default)]
    pub notifications: Notifications,
    /// CloudFormation stacks updated by every release, in this order, before any service moves.
    #[serde(default)]
    pub stacks: Vec<StackConfig>,
    /// The services Slipway deploys.
    pub services: Vec<ServiceConfig>,
}

/// How a release waits for its services' rollouts (see [`Config::stability_wait`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StabilityWait {
    /// ECS's deployment events resume the execution; a look every 90 s without one.
    #[default]
    Events,
    /// A look every 15 seconds.
    Polling,
}

/// What one of ECS's blue-green, linear or canary deployments takes besides its bake and
/// steps, minutes: the new revision's tasks start and pass the target group's health checks,
/// and at CLEAN_UP the old ones drain, for the target group's deregistration delay (300 s by
/// default: Elastic Load Balancing User Guide, "Deregistration delay").
pub const STAGED_OVERHEAD_MINUTES: u64 = 5;

/// The longest a release goes without looking at its alarms while its stacks update and its
/// services roll out and bake, seconds: the stack and stability waits beat this often, and
/// the bake is cut into waits this long.
pub const ALARM_CHECK_SECONDS: u32 = 30;

/// The deploy state machine's `TimeoutSeconds`, in minutes (checked against
/// `statemachine/deploy.asl.json` by a test): no execution holds a lock longer. It has room
/// for two releases' work: an execution may first wait (`WaitForLock`) while another
/// release holds the lock, then do its own.
pub const EXECUTION_TIMEOUT_MINUTES: u32 = 240;

/// The longest plan waits for a stack busy with an operation that is not Slipway's (its
/// `Slipway.Locked` retry: 40 × 30 s).
pub const LOCK_WAIT_MINUTES: u32 = 20;

/// The most one release's own work may take (`deadline_minutes` + `rollback_minutes` + the
/// bake): half the execution's timeout less a stack wait, so that a release which first waited
/// for another one's lock (at most that release's work, plus the 5 minutes a recovery lets
/// it settle) still finishes in time.
pub const WORK_BUDGET_MINUTES: u32 = EXECUTION_TIMEOUT_MINUTES / 2 - LOCK_WAIT_MINUTES;

/// The health-check Lambda's timeout, seconds (the template sets it; its Task state waits
/// longer). One invocation checks every moved service in turn, so all of their HTTP checks
/// together must fit in it, with [`HEALTH_CHECK_MARGIN_SECONDS`] to spare.
pub const HEALTH_CHECK_TIMEOUT_SECONDS: u32 = 240;

/// What one health-check invocation keeps for itself besides the HTTP checks: reading each
/// target group's health (DescribeTargetHealth, SDK retries included) and starting up.
pub const HEALTH_CHECK_MARGIN_SECONDS: u32 = 30;

/// The defaults of slipway.toml's settings (what `slipway init` leaves commented out).
pub mod defaults {
    #![allow(missing_docs)] // each is the default of the setting it is named after
    pub fn deadline_minutes() -> u32 {
        20
    }
    pub fn bake_seconds() -> u32 {
        60
    }
    pub fn rollback_minutes() -> u32 {
        15
    }
    pub fn ttl_minutes() -> u32 {
        super::EXECUTION_TIMEOUT_MINUTES
    }
    pub fn group() -> u32 {
        1
    }
    pub fn status() -> u16 {
        200
    }
    pub fn passes() -> u32 {
        3
    }
    pub fn timeout_ms() -> u64 {
        2000
    }
    pub fn interval_ms() -> u64 {
        1000
    }
    pub fn capabilities() -> Vec<super::Capability> {
        use super::Capability::*;
        vec![Iam, NamedIam, AutoExpand]
    }
}

/// The per-service deploy lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    /// Minutes after which a lock expires even if its execution never released it (a crashed
    /// or cancelled execution cannot block deploys for longer).
    #[serde(default = "defaults::ttl_minutes")]
    pub ttl_minutes: u32,
}

impl Default for LockConfig {
    fn default() -> Self {
        Self {
            ttl_minutes: defaults::ttl_minutes(),
        }
    }
}

/// Where each release's result is announced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// An SNS topic that gets one message per finished release.
    #[serde(default)]
    pub sns_topic_arn: Option<String>,
    /// The EventBridge bus that gets a `Slipway Deployment State Change` event per finished
    /// release (`default` for the account's default bus); none when absent.
    #[serde(default)]
    pub event_bus: Option<String>,
}

impl Notifications {
    /// The topic `slipway bootstrap --create-topic` made (`SLIPWAY_TOPIC_ARN` on the
    /// functions), when slipway.toml names none: a topic named there wins.
    pub fn use_created_topic(&mut self, created: Option<&str>) {
        if self.sns_topic_arn.is_none() {
            self.sns_topic_arn = created.filter(|t| !t.is_empty()).map(str::to_owned);
        }
    }
}

/// A CloudFormation stack a release updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// The stack name.
    pub name: String,
    /// Parameters set by each release: `"image:<service>"` is the image the release deploys
    /// to that service (pinned by digest; the running one when the release does not move
    /// it); anything else is a literal value. Parameters not listed keep their value.
    ///
    /// A service whose image is a parameter here is *owned by this stack*: the stack's
    /// update moves it (CloudFormation waits for its deployment), Slipway never also calls
    /// UpdateService on it, and a rollback restores it through the stack.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Capabilities acknowledged on every change set and rollback of this stack. Stacks from
    /// `cdk deploy` hold IAM roles, which CloudFormation refuses to change without them
    /// (`InsufficientCapabilitiesException`).
    #[serde(default = "defaults::capabilities")]
    pub capabilities: Vec<Capability>,
    /// The stack's CloudFormation service role, passed on every stack call (`RoleARN`); when
    /// absent, CloudFormation uses the stack's own role, or the caller's credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// A CloudFormation capability (the API's `Capabilities` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Capability {
    /// The template creates or changes IAM resources.
    #[serde(rename = "CAPABILITY_IAM")]
    Iam,
    /// The template creates or changes IAM resources with custom names.
    #[serde(rename = "CAPABILITY_NAMED_IAM")]
    NamedIam,
    /// The template uses macros or transforms.
    #[serde(rename = "CAPABILITY_AUTO_EXPAND")]
    AutoExpand,
}

impl Capability {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iam => "CAPABILITY_IAM",
            Self::NamedIam => "CAPABILITY_NAMED_IAM",
            Self::AutoExpand => "CAPABILITY_AUTO_EXPAND",
        }
    }
}

/// A service Slipway deploys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The name used in inputs, records and the lock (letters, digits, `-`, `_`).
    pub name: String,
    /// The ECR repository its images are pushed to, e.g. `staging/api`.
    pub repository: String,
    /// The ECS service name; defaults to `name`.
    #[serde(default)]
    pub ecs_service: Option<String>,
    /// The container whose image is replaced; may be left out when the task definition has
    /// exactly one container.
    #[serde(default)]
    pub container: Option<String>,
    /// A regular expression an image tag must match for an ECR push to deploy it (e.g.
    /// `^[0-9a-f]{7,40}$` for commit SHAs). Pushes of other tags are ignored. Manual inputs
    /// may name any tag. Absent: every tag deploys.
    #[serde(default)]
    pub tag_pattern: Option<String>,
    /// Order group: services of group 1 deploy (in parallel) and become stable before
    /// group 2 starts, and so on.
    #[serde(default = "defaults::group")]
    pub group: u32,
    /// The HTTP health check run after the services are stable.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// The ALB target group of the service, whose target health is checked too.
    #[serde(default)]
    pub target_group_arn: Option<String>,
    /// CloudWatch alarms (names) watched while this service is released, besides the
    /// environment's `alarms`, e.g. `["api-5xx", "api-latency-p99"]`. Alarms the ECS service
    /// itself names in its `deploymentConfiguration.alarms` are ECS's to act on: Slipway
    /// reports the rollback ECS makes as `Slipway.DeploymentFailed`, naming the alarm.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// How ECS moves the service to the release: `"rolling"` (ECS's rolling update), or
    /// ECS's own `"blue-green"`, `"linear"` and `"canary"` deployments, which need the load
    /// balancer's `advancedConfiguration` (an alternate target group, the production and test
    /// listener rules) set on the service by its owner. Slipway sets it on every release.
    /// Absent: rolling — and a release refuses a service whose ECS strategy is another one
    /// (someone chose it: say which to use).
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// blue-green, linear, canary: minutes both revisions keep running after all production
    /// traffic moved (ECS's `bakeTimeInMinutes`, 0–1440), when a rollback is instant.
    #[serde(default)]
    pub bake_minutes: Option<u32>,
    /// linear: the share of production traffic each step moves (`stepPercent`, 3–100,
    /// default 10); canary: the canary's share (`canaryPercent`, 0.1–100, default 5).
    #[serde(default)]
    pub step_percent: Option<f64>,
    /// linear: minutes between steps (`stepBakeTimeInMinutes`, default 6); canary: minutes
    /// the canary runs before the rest moves (`canaryBakeTimeInMinutes`, default 10). 0–1440.
    #[serde(default)]
    pub step_minutes: Option<u32>,
}

/// How ECS rolls a service out (see [`ServiceConfig::strategy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// ECS's rolling update.
    #[default]
    Rolling,
    /// All production traffic moves at once, after the test traffic.
    BlueGreen,
    /// Production traffic moves in equal steps.
    Linear,
    /// A canary share first, then the rest.
    Canary,
}

impl Strategy {
    /// ECS's name for it (`deploymentConfiguration.strategy`).
    pub fn ecs(self) -> &'static str {
        match self {
            Self::Rolling => "ROLLING",
            Self::BlueGreen => "BLUE_GREEN",
            Self::Linear => "LINEAR",
            Self::Canary => "CANARY",
        }
    }
}

/// The bake of a blue-green, linear or canary deployment when `bake_minutes` is not given
/// (ECS requires one for BLUE_GREEN; 5 is the Developer Guide's example).
pub const DEFAULT_BAKE_MINUTES: u32 = 5;

impl ServiceConfig {
    /// The strategy Slipway deploys with (rolling when the file names none).
    pub fn strategy(&self) -> Strategy {
        self.strategy.unwrap_or_default()
    }

    /// Whether ECS deploys it blue-green, linear or canary.
    pub fn staged(&self) -> bool {
        self.strategy() != Strategy::Rolling
    }

    /// The least time, minutes, ECS's strategy keeps the release going after the new tasks
    /// are in: its bake, and the waits between a linear or canary deployment's steps.
    /// [`Self::deployment_minutes`] adds what every such deployment takes besides.
    pub fn strategy_minutes(&self) -> u64 {
        let bake = u64::from(self.bake_minutes.unwrap_or(DEFAULT_BAKE_MINUTES));
        match self.strategy() {
            Strategy::Rolling => 0,
            Strategy::BlueGreen => bake,
            Strategy::Linear => {
                let step = self.step_percent.unwrap_or(10.0);
                // (100 ÷ step) − 1 waits when step divides 100, else ⌊100 ÷ step⌋
                // (CloudFormation's LinearConfiguration).
                let shifts = (100.0 / step).ceil() as u64;
                bake + shifts.saturating_sub(1) * u64::from(self.step_minutes.unwrap_or(6))
            }
            Strategy::Canary => bake + u64::from(self.step_minutes.unwrap_or(10)),
        }
    }

    /// The least time, minutes, one of ECS's deployments of this service takes with its
    /// strategy: [`Self::strategy_minutes`], and for blue-green, linear and canary
    /// [`STAGED_OVERHEAD_MINUTES`] for the new tasks to start and the old ones to drain.
    pub fn deployment_minutes(&self) -> u64 {
        if self.staged() {
            self.strategy_minutes() + STAGED_OVERHEAD_MINUTES
        } else {
            0
        }
    }

    /// The ECS service name.
    pub fn ecs_service(&self) -> &str {
        self.ecs_service.as_deref().unwrap_or(&self.name)
    }

    /// What a release checks of this service once it is stable, as its record states it:
    /// `http and targets`, `http`, `targets`, or `not checked` (neither `health` nor
    /// `target_group_arn`: only ECS's own stability stands between a bad image and
    /// "succeeded").
    pub fn checks(&self) -> &'static str {
        checks(self.health.is_some(), self.target_group_arn.is_some())
    }
}

/// CloudWatch alarm names: 1–255 characters (PutMetricAlarm's `AlarmName`), no control
/// characters, none twice. `*` and `?` are refused too: the IAM policy grants
/// DescribeAlarms on exactly these names, where they would be wildcards.
fn check_alarm_names(field: &str, names: &[String]) -> Result<(), (String, String)> {
    for (i, name) in names.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if name.is_empty() || name.chars().count() > 255 {
            return Err((
                at,
                format!("{name:?}: an alarm name has 1 to 255 characters"),
            ));
        }
        if name.chars().any(|c| c.is_control() || c == '*' || c == '?') {
            return Err((
                at,
                format!("{name:?}: control characters, * and ? are not allowed"),
            ));
        }
        if names[..i].contains(name) {
            return Err((at, format!("{name:?} is named twice")));
        }
    }
    Ok(())
}

/// What health-check checks of a service with (or without) an HTTP check and a target group.
pub fn checks(http: bool, target_group: bool) -> &'static str {
    match (http, target_group) {
        (true, true) => "http and targets",
        (true, false) => "http",
        (false, true) => "targets",
        (false, false) => "not checked",
    }
}

impl HealthConfig {
    /// The longest this check can take, milliseconds: every request timing out, with the
    /// interval between them.
    pub fn worst_case_ms(&self) -> u64 {
        let passes = u64::from(self.passes);
        passes
            .saturating_mul(self.timeout_ms)
            .saturating_add(passes.saturating_sub(1).saturating_mul(self.interval_ms))
    }
}

/// An HTTP health check, usually through the load balancer with a Host header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The URL to GET, e.g. `https://alb-123.us-east-1.elb.amazonaws.com/health`.
    pub url: String,
    /// The Host header to send (for host-header routing), e.g. `api.staging.example.com`.
    #[serde(default)]
    pub host: Option<String>,
    /// The status a healthy service answers.
    #[serde(default = "defaults::status")]
    pub expect_status: u16,
    /// Text a healthy answer's body contains.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Consecutive passing requests needed.
    #[serde(default = "defaults::passes")]
    pub passes: u32,
    /// Per-request timeout in milliseconds.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Milliseconds between requests.
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u64,
    /// With a blue-green, linear or canary `strategy`: the URL of the load balancer's test
    /// listener (rule), where the new revision answers before production traffic moves.
    /// With it (or `test_host`), Slipway's health check is the service's lifecycle hook at
    /// POST_TEST_TRAFFIC_SHIFT: ECS asks it before any production traffic moves, and a
    /// failed check rolls the deployment back. Default: `url`.
    #[serde(default)]
    pub test_url: Option<String>,
    /// The Host header the test listener rule routes on (e.g. `test.api.staging.example.com`).
    #[serde(default)]
    pub test_host: Option<String>,
}

impl HealthConfig {
    /// Whether a check through the test listener is configured (the lifecycle hook).
    pub fn tests_before_traffic(&self) -> bool {
        self.test_url.is_some() || self.test_host.is_some()
    }

    /// This check against the test listener: `test_url` and `test_host` in place of `url`
    /// and `host`.
    pub fn through_test_listener(&self) -> Self {
        let mut h = self.clone();
        if let Some(u) = &self.test_url {
            h.url = u.clone();
        }
        if self.test_host.is_some() {
            h.host = self.test_host.clone();
        }
        h.test_url = None;
        h.test_host = None;
        h
    }
}

/// A configuration error: which file, which line, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file (or `state table` when loaded from DynamoDB).
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The field's path, e.g. `services[1].repository`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// Parses and validates a configuration; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let err = |line, field: String, message: String| ConfigError {
            file: file.to_owned(),
            line,
            field,
            message,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(line, "$".into(), e.message().to_owned())
        })?;
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| line_of(text, s.start));
            let message = inner.message().to_owned();
            let field = if field == "." { "$".to_owned() } else { field };
            err(line, field, message)
        })?;
        config.validate().map_err(|(field, message)| {
            let line = find_line(text, &field, &config);
            err(line, field, message)
        })?;
        Ok(config)
    }

    /// Checks what types cannot: names, duplicates, references, patterns.
    fn validate(&self) -> Result<(), (String, String)> {
        if self.environment.trim().is_empty() {
            return Err(("environment".into(), "must not be empty".into()));
        }
        if self.cluster.trim().is_empty() {
            return Err(("cluster".into(), "must not be empty".into()));
        }
        if self.services.is_empty() {
            return Err(("services".into(), "name at least one service".into()));
        }
        if self.deadline_minutes == 0 {
            return Err(("deadline_minutes".into(), "must be at least 1".into()));
        }
        if self.rollback_minutes == 0 {
            return Err(("rollback_minutes".into(), "must be at least 1".into()));
        }
        let budget = u64::from(WORK_BUDGET_MINUTES);
        let bake_minutes = u64::from(self.bake_seconds).div_ceil(60);
        let needed =
            u64::from(self.deadline_minutes) + u64::from(self.rollback_minutes) + bake_minutes;
        if needed > budget {
            return Err((
                "deadline_minutes".into(),
                format!(
                    "{} + rollback_minutes {} + bake ({bake_minutes} min) is more than the {budget} minutes a release may take (half the execution's {EXECUTION_TIMEOUT_MINUTES}-minute timeout, which also covers waiting for another release, less {LOCK_WAIT_MINUTES} of waiting for a busy stack): it could time out mid-release",
                    self.deadline_minutes, self.rollback_minutes
                ),
            ));
        }
        if self.lock.ttl_minutes < EXECUTION_TIMEOUT_MINUTES {
            return Err((
                "lock.ttl_minutes".into(),
                format!(
                    "{} is shorter than an execution may run ({EXECUTION_TIMEOUT_MINUTES} minutes, the state machine's timeout): a lock could expire under a live execution",
                    self.lock.ttl_minutes
                ),
            ));
        }
        check_alarm_names("alarms", &self.alarms)?;
        for (i, s) in self.services.iter().enumerate() {
            let at = |f: &str| format!("services[{i}].{f}");
            check_alarm_names(&at("alarms"), &s.alarms)?;
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    at("name"),
                    format!("{:?}: use letters, digits, - and _", s.name),
                ));
            }
            if self.services[..i].iter().any(|o| o.name == s.name) {
                return Err((at("name"), format!("{:?} is configured twice", s.name)));
            }
            if s.repository.is_empty() {
                return Err((at("repository"), "must not be empty".into()));
            }
            if let Some(p) = &s.tag_pattern {
                regex_lite::Regex::new(p).map_err(|e| {
                    (
                        at("tag_pattern"),
                        format!("{p:?} is not a regular expression: {e}"),
                    )
                })?;
            }
            if s.group == 0 {
                return Err((at("group"), "groups start at 1".into()));
            }
            let staged = s.staged();
            if !staged {
                for (field, given) in [
                    ("bake_minutes", s.bake_minutes.is_some()),
                    ("step_percent", s.step_percent.is_some()),
                    ("step_minutes", s.step_minutes.is_some()),
                ] {
                    if given {
                        return Err((
                            at(field),
                            "only for strategy = \"blue-green\", \"linear\" or \"canary\"".into(),
                        ));
                    }
                }
            }
            if s.strategy() == Strategy::BlueGreen {
                for (field, given) in [
                    ("step_percent", s.step_percent.is_some()),
                    ("step_minutes", s.step_minutes.is_some()),
                ] {
                    if given {
                        return Err((
                            at(field),
                            "only for strategy = \"linear\" or \"canary\"".into(),
                        ));
                    }
                }
            }
            for (field, minutes) in [
                ("bake_minutes", s.bake_minutes),
                ("step_minutes", s.step_minutes),
            ] {
                if minutes.is_some_and(|m| m > 1440) {
                    return Err((
                        at(field),
                        format!(
                            "{}: ECS takes 0 to 1440 minutes",
                            minutes.unwrap_or_default()
                        ),
                    ));
                }
            }
            if let Some(p) = s.step_percent {
                let (low, what) = if s.strategy() == Strategy::Linear {
                    (3.0, "stepPercent")
                } else {
                    (0.1, "canaryPercent")
                };
                let tenths = (p * 10.0).round();
                if !(low..=100.0).contains(&p) || (p * 10.0 - tenths).abs() > 1e-9 {
                    return Err((
                        at("step_percent"),
                        format!("{p}: ECS's {what} is a multiple of 0.1 from {low} to 100"),
                    ));
                }
            }
            // A rollback after ECS's deployment finished is a deployment with the same
            // strategy, inside rollback_minutes.
            let minutes = s.deployment_minutes();
            if minutes >= u64::from(self.rollback_minutes) {
                return Err((at("strategy"), format!(
                    "ECS's {} deployment of this service takes at least {minutes} minutes (bake_minutes, the waits between steps, and {STAGED_OVERHEAD_MINUTES} for new tasks to start and old ones to drain), not less than rollback_minutes ({}): going back after ECS finished is such a deployment too, and would run out of time; raise rollback_minutes",
                    s.strategy().ecs(), self.rollback_minutes
                )));
            }
            if let Some(h) = &s.health {
                if h.tests_before_traffic() && !staged {
                    let field = if h.test_url.is_some() {
                        "health.test_url"
                    } else {
                        "health.test_host"
                    };
                    return Err((at(field), "a check through the test listener needs strategy = \"blue-green\", \"linear\" or \"canary\"".into()));
                }
                if let Some(u) = &h.test_url {
                    if !reqwest::Url::parse(u)
                        .ok()
                        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    {
                        return Err((
                            at("health.test_url"),
                            format!("{u:?} is not an http(s) URL"),
                        ));
                    }
                }
            }
            if let Some(h) = &s.health {
                let url = reqwest::Url::parse(&h.url).ok();
                if !url
                    .as_ref()
                    .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                {
                    return Err((
                        at("health.url"),
                        format!("{:?} is not an http(s) URL", h.url),
                    ));
                }
                // A name only: a port (or anything else) here would not be the name TLS and
                // the load balancer's host rules see.
                if let Some(host) = &h.host {
                    let label_ok = |l: &str| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                    };
                    if host.len() > 253 || !host.split('.').all(label_ok) {
                        return Err((
                            at("health.host"),
                            format!("{host:?} is not a host name (letters, digits and - in dot-separated labels; no port, scheme or path)"),
                        ));
                    }
                }
                if h.passes == 0 {
                    return Err((at("health.passes"), "must be at least 1".into()));
                }
                if h.timeout_ms == 0 {
                    return Err((at("health.timeout_ms"), "must be at least 1".into()));
                }
                if !(100..=599).contains(&h.expect_status) {
                    return Err((
                        at("health.expect_status"),
                        format!("{} is not an HTTP status", h.expect_status),
                    ));
                }
            }
        }
        // Groups deploy one after another, inside deadline_minutes: ECS's bakes and steps of
        // each group's slowest service add up.
        let mut groups: Vec<u32> = self.services.iter().map(|s| s.group).collect();
        groups.sort_unstable();
        groups.dedup();
        let total: u64 = groups
            .iter()
            .map(|g| {
                self.services
                    .iter()
                    .filter(|s| s.group == *g)
                    .map(ServiceConfig::strategy_minutes)
                    .max()
                    .unwrap_or(0)
            })
            .sum();
        if total >= u64::from(self.deadline_minutes) {
            return Err((
                "deadline_minutes".into(),
                format!(
                    "{}: the groups' ECS deployments (their bakes and the waits between steps, the slowest service of each group, one group after another) take at least {total} minutes: the release would always be rolled back as not stable in time",
                    self.deadline_minutes
                ),
            ));
        }
        // One health-check invocation checks every service in turn: together their checks
        // must end before its Lambda times out (a timed-out check would fail the release for
        // no fault of the image, and its error would say nothing about health).
        let budget_ms =
            u64::from(HEALTH_CHECK_TIMEOUT_SECONDS - HEALTH_CHECK_MARGIN_SECONDS) * 1000;
        let mut total_ms: u64 = 0;
        for (i, s) in self.services.iter().enumerate() {
            let Some(h) = &s.health else { continue };
            total_ms = total_ms.saturating_add(h.worst_case_ms());
            if total_ms > budget_ms {
                return Err((
                    format!("services[{i}].health"),
                    format!(
                        "the health checks up to this service can take {} s (passes × timeout_ms + (passes − 1) × interval_ms, per service, one after another), more than the {} s one health-check run has ({HEALTH_CHECK_TIMEOUT_SECONDS} s Lambda timeout less {HEALTH_CHECK_MARGIN_SECONDS} s for target health): lower passes, timeout_ms or interval_ms",
                        total_ms.div_ceil(1000),
                        budget_ms / 1000
                    ),
                ));
            }
        }
        for (i, st) in self.stacks.iter().enumerate() {
            if st.name.is_empty() {
                return Err((format!("stacks[{i}].name"), "must not be empty".into()));
            }
            if self.stacks[..i].iter().any(|o| o.name == st.name) {
                return Err((
                    format!("stacks[{i}].name"),
                    format!("{:?} is configured twice", st.name),
                ));
            }
            for (param, value) in &st.parameters {
                if let Some(service) = value.strip_prefix("image:") {
                    if self.service(service).is_none() {
                        return Err((
                            format!("stacks[{i}].parameters.{param}"),
                            format!("{value:?} names no configured service"),
                        ));
                    }
                    let elsewhere = self.stacks[..i]
                        .iter()
                        .find(|o| o.parameters.values().any(|v| v == value));
                    if let Some(o) = elsewhere {
                        return Err((
                            format!("stacks[{i}].parameters.{param}"),
                            format!("{value:?} is already a parameter of stack {:?}: a service is owned by one stack", o.name),
                        ));
                    }
                }
            }
            if let Some(role) = &st.role_arn {
                if !(role.starts_with("arn:") && role.contains(":iam::") && role.contains(":role/"))
                {
                    return Err((
                        format!("stacks[{i}].role_arn"),
                        format!(
                            "{role:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
                        ),
                    ));
                }
            }
        }
        self.validate_names()
    }

    /// What is valid but probably not meant, as (field, message) pairs: a service with
    /// neither `health` nor `target_group_arn` is released on ECS's stability alone, and its
    /// records say "not checked".
    pub fn warnings(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.checks() == "not checked")
            .map(|(i, s)| {
                (
                    format!("services[{i}]"),
                    format!(
                        "{:?} has neither health nor target_group_arn: a release of it is not checked beyond ECS's own stability, and its records say \"not checked\"",
                        s.name
                    ),
                )
            })
            .collect()
    }

    /// Every name that reaches an ARN, a resource name or an `Fn::Sub` in the template
    /// bootstrap generates follows AWS's naming rules for it: a wildcard (`*`, `?`) in an ARN
    /// would widen a grant, `${` would be substituted, and a name over its limit would fail
    /// the install half-way.
    fn validate_names(&self) -> Result<(), (String, String)> {
        let check = |field: String, value: &str, rule: &str, ok: bool| {
            if ok && !value.contains("${") && !value.contains(['*', '?']) {
                Ok(())
            } else {
                Err((field, format!("{value:?} is not valid here: {rule}")))
            }
        };
        let re = |pattern: &str, value: &str| {
            regex_lite::Regex::new(pattern).is_ok_and(|r| r.is_match(value))
        };
        // Function names are `slipway-<environment>-update-services` at most: Lambda allows
        // 64 characters (CreateFunction FunctionName), so 40 are left for the environment.
        check(
            "environment".into(),
            &self.environment,
            "1 to 40 letters, digits and - (it names bootstrap's stack, whose name allows no _, and the functions: slipway-<environment>-update-services must fit Lambda's 64 characters)",
            re(r"^[A-Za-z0-9-]{1,40}$", &self.environment),
        )?;
        // ECS cluster and service names: up to 255 letters, digits, - and _ (CreateCluster,
        // CreateService); a cluster ARN ends in cluster/<name>.
        let ecs_name = r"^[A-Za-z0-9_-]{1,255}$";
        let cluster_name =
            self.cluster
                .strip_prefix("arn:")
                .map_or(Some(self.cluster.as_str()), |_| {
                    re(
                        r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]{1,255}$",
                        &self.cluster,
                    )
                    .then(|| self.cluster.rsplit('/').next().unwrap_or_default())
                });
        check(
            "cluster".into(),
            &self.cluster,
            "an ECS cluster name (up to 255 letters, digits, - and _) or its ARN",
            cluster_name.is_some_and(|n| re(ecs_name, n)),
        )?;
        for (i, s) in self.services.iter().enumerate() {
            let at = |f: &str| format!("services[{i}].{f}");
            check(
                at("ecs_service"),
                s.ecs_service(),
                "an ECS service name: up to 255 letters, digits, - and _",
                re(ecs_name, s.ecs_service()),
            )?;
            if let Some(c) = &s.container {
                check(
                    at("container"),
                    c,
                    "a container name: up to 255 letters, digits, - and _",
                    re(ecs_name, c),
                )?;
            }
            // ECR repository names (CreateRepository repositoryName): 2–256 characters,
            // lower-case, path segments joined by /.
            check(
                at("repository"),
                &s.repository,
                "an ECR repository name: 2 to 256 lower-case letters, digits and . _ - /, e.g. staging/api",
                (2..=256).contains(&s.repository.len())
                    && re(
                        r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$",
                        &s.repository,
                    ),
            )?;
            if let Some(tg) = &s.target_group_arn {
                check(
                    at("target_group_arn"),
                    tg,
                    "a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>)",
                    re(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$", tg),
                )?;
            }
        }
        for (i, st) in self.stacks.iter().enumerate() {
            // CreateStack StackName: [a-zA-Z][-a-zA-Z0-9]*, at most 128 characters.
            check(
                format!("stacks[{i}].name"),
                &st.name,
                "a CloudFormation stack name: a letter, then letters, digits and -, at most 128",
                re(r"^[A-Za-z][A-Za-z0-9-]{0,127}$", &st.name),
            )?;
            if let Some(role) = &st.role_arn {
                check(
                    format!("stacks[{i}].role_arn"),
                    role,
                    "an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                    re(
                        r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
                        role,
                    ),
                )?;
            }
        }
        if let Some(topic) = &self.notifications.sns_topic_arn {
            check(
                "notifications.sns_topic_arn".into(),
                topic,
                "a standard SNS topic ARN (arn:aws:sns:<region>:<account>:<name>; FIFO topics need a message group, which finish does not send)",
                re(
                    r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$",
                    topic,
                ),
            )?;
        }
        if let Some(bus) = &self.notifications.event_bus {
            check(
                "notifications.event_bus".into(),
                bus,
                "an EventBridge bus name (letters, digits, . - _ /, up to 256) or its ARN",
                re(r"^[A-Za-z0-9/._-]{1,256}$", bus)
                    || re(
                        r"^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9/._-]{1,256}$",
                        bus,
                    ),
            )?;
        }
        Ok(())
    }

    /// The stack whose `image:<service>` parameter moves this service, if one does.
    pub fn owning_stack(&self, service: &str) -> Option<&StackConfig> {
        let wanted = format!("image:{service}");
        self.stacks
            .iter()
            .find(|st| st.parameters.values().any(|v| *v == wanted))
    }

    /// The service of this name.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The alarms a release of these services watches: the environment's and each
    /// service's, sorted, each once.
    pub fn alarms_for<'a>(&'a self, services: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut alarms = self.alarms.clone();
        for name in services {
            if let Some(s) = self.service(name) {
                alarms.extend(s.alarms.iter().cloned());
            }
        }
        alarms.sort_unstable();
        alarms.dedup();
        alarms
    }

    /// Every alarm named anywhere in the configuration (what the IAM policy covers).
    pub fn all_alarms(&self) -> Vec<String> {
        self.alarms_for(self.services.iter().map(|s| s.name.as_str()))
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of a semantic error's field: the `key =` line inside the n-th `[[services]]` /
/// `[[stacks]]` table, or the top-level key.
fn find_line(text: &str, field: &str, _config: &Config) -> Option<usize> {
    let (table, index, key) = match field.split_once('[') {
        Some((table, rest)) => {
            let (index, key) = rest.split_once("].")?;
            (Some(table), index.parse::<usize>().ok()?, key)
        }
        None => (None, 0, field),
    };
    let key = key.rsplit('.').next().unwrap_or(key);
    let mut seen = 0usize;
    let mut inside = table.is_none();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(t) = table {
            if trimmed == format!("[[{t}]]") {
                inside = seen == index;
                seen += 1;
                continue;
            }
            if trimmed.starts_with("[[") && !trimmed.starts_with(&format!("[[{t}.")) {
                inside = false;
            }
        } else if trimmed.starts_with('[') {
            inside = false;
        }
        let header = table.map(|t| format!("[{t}.{key}]"));
        if inside
            && (trimmed.split('=').next().map(str::trim) == Some(key)
                || header.as_deref() == Some(trimmed))
        {
            return Some(n + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGING: &str = include_str!("../../examples/staging/slipway.toml");

    #[test]
    fn the_staging_example_is_valid() {
        let c = Config::parse(STAGING, "examples/staging/slipway.toml").expect("valid");
        assert_eq!(c.services.len(), 4);
        let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "api", "auth", "admin"]);
        assert!(c
            .services
            .iter()
            .all(|s| s.health.as_ref().is_some_and(|h| h.host.is_some())));
        let stacks: Vec<&str> = c.stacks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stacks.len(), 6, "{stacks:?}");
    }

    #[test]
    fn alarms_are_the_environments_and_the_services_and_bad_names_are_refused() {
        let base = "environment = \"staging\"\ncluster = \"c\"\nALARMS\n[[services]]\nname = \"api\"\nrepository = \"staging/api\"\nAPI\n[[services]]\nname = \"web\"\nrepository = \"staging/web\"\n";
        let parse = |env: &str, api: &str| {
            Config::parse(
                &base.replace("ALARMS", env).replace("API", api),
                "slipway.toml",
            )
        };
        let c = parse(
            "alarms = [\"env-5xx\"]",
            "alarms = [\"api-p99\", \"env-5xx\"]",
        )
        .expect("valid");
        assert_eq!(c.alarms_for(["api"]), ["api-p99", "env-5xx"]);
        assert_eq!(
            c.alarms_for(["web"]),
            ["env-5xx"],
            "the environment's apply to every service"
        );
        assert_eq!(c.all_alarms(), ["api-p99", "env-5xx"]);
        assert!(parse("", "").expect("valid").all_alarms().is_empty());
        for (env, api, field, says) in [
            ("alarms = [\"\"]", "", "alarms[0]", "1 to 255 characters"),
            (
                "",
                "alarms = [\"a\", \"a\"]",
                "services[0].alarms[1]",
                "named twice",
            ),
            (
                "",
                "alarms = [\"api-*\"]",
                "services[0].alarms[0]",
                "* and ?",
            ),
        ] {
            let e = parse(env, api).expect_err(field);
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let long = format!("alarms = [\"{}\"]", "x".repeat(256));
        assert_eq!(parse(&long, "").expect_err("too long").field, "alarms[0]");
    }

    #[test]
    fn strategies_take_their_options_and_fit_the_deadline() {
        let base = "environment = \"staging\"\ncluster = \"c\"\ndeadline_minutes = 20\nrollback_minutes = 30\n[[services]]\nname = \"api\"\nrepository = \"staging/api\"\nLINES\n";
        let parse = |lines: &str| Config::parse(&base.replace("LINES", lines), "slipway.toml");
        let c = parse("strategy = \"linear\"\nstep_percent = 25\nstep_minutes = 2\nbake_minutes = 3\n[services.health]\nurl = \"http://alb/health\"\ntest_host = \"test.api.example.com\"").expect("valid");
        let api = &c.services[0];
        assert_eq!(api.strategy().ecs(), "LINEAR");
        // Four shifts of 25 %: three waits of 2 minutes, then a 3-minute bake.
        assert_eq!(api.strategy_minutes(), 9);
        let h = api.health.as_ref().unwrap();
        assert!(h.tests_before_traffic());
        let through = h.through_test_listener();
        assert_eq!(
            (through.url.as_str(), through.host.as_deref()),
            ("http://alb/health", Some("test.api.example.com"))
        );
        assert_eq!(
            parse("strategy = \"canary\"").expect("valid").services[0].strategy_minutes(),
            15,
            "default canary 10 + bake 5"
        );
        assert_eq!(
            parse("").expect("valid").services[0].strategy(),
            Strategy::Rolling
        );
        for (lines, field, says) in [
            (
                "bake_minutes = 3",
                "services[0].bake_minutes",
                "only for strategy",
            ),
            (
                "strategy = \"blue-green\"\nstep_percent = 10",
                "services[0].step_percent",
                "linear\" or \"canary",
            ),
            (
                "strategy = \"linear\"\nstep_percent = 2",
                "services[0].step_percent",
                "from 3 to 100",
            ),
            (
                "strategy = \"canary\"\nstep_percent = 10.05",
                "services[0].step_percent",
                "multiple of 0.1",
            ),
            (
                "strategy = \"blue-green\"\nbake_minutes = 1441",
                "services[0].bake_minutes",
                "0 to 1440",
            ),
            (
                "strategy = \"linear\"\nstep_percent = 10\nstep_minutes = 3",
                "services[0].strategy",
                "at least 37 minutes",
            ),
            (
                "strategy = \"sideways\"",
                "services[0].strategy",
                "unknown variant",
            ),
            (
                "[services.health]\nurl = \"http://alb/health\"\ntest_host = \"t.example.com\"",
                "services[0].health.test_host",
                "needs strategy",
            ),
        ] {
            let e = parse(lines).expect_err(lines);
            assert_eq!(e.field, field, "{lines}: {e}");
            assert!(e.message.contains(says), "{lines}: {e}");
        }
        // A rollback after ECS finished is such a deployment too: inside rollback_minutes.
        let e = Config::parse(
            &base
                .replace("rollback_minutes = 30", "rollback_minutes = 15")
                .replace("LINES", "strategy = \"canary\""),
            "slipway.toml",
        )
        .expect_err("canary's 15 minutes in a 15-minute rollback");
        assert_eq!(e.field, "services[0].strategy", "{e}");
        assert!(e.message.contains("raise rollback_minutes"), "{e}");
        // Its bake, and the time for tasks to start and drain: a 25-minute bake does not fit
        // a 30-minute rollback, a 24-minute one does.
        let e = parse("strategy = \"blue-green\"\nbake_minutes = 25").expect_err("30 in 30");
        assert!(
            e.message.contains("at least 30 minutes") && e.message.contains("old ones to drain"),
            "{e}"
        );
        assert_eq!(
            parse("strategy = \"blue-green\"\nbake_minutes = 19")
                .expect("fits")
                .services[0]
                .deployment_minutes(),
            24
        );
        // Groups add up: two groups of a 15-minute canary do not fit 20 minutes.
        let two = format!(
            "{}\n[[services]]\nname = \"web\"\nrepository = \"staging/web\"\ngroup = 2\nstrategy = \"canary\"\n",
            base.replace("LINES", "strategy = \"canary\"")
        );
        let e = Config::parse(&two, "slipway.toml").expect_err("30 minutes of canaries");
        assert_eq!(e.field, "deadline_minutes", "{e}");
        assert!(e.message.contains("at least 30 minutes"), "{e}");
    }

    #[test]
    fn the_bake_watch_slices_the_bake_into_checks_at_most_alarm_check_seconds_apart() {
        use crate::model::BakeWatch;
        let mut w = BakeWatch {
            remaining_seconds: 70,
            wait_seconds: 0,
        };
        let mut waits = vec![];
        loop {
            w = w.next();
            if w.wait_seconds == 0 {
                break;
            }
            waits.push(w.wait_seconds);
        }
        assert_eq!(waits, [30, 30, 10]);
        assert_eq!(w.remaining_seconds, 0);
    }

    #[test]
    fn a_created_topic_is_used_only_when_the_file_names_none() {
        let created = "arn:aws:sns:us-east-1:123456789012:slipway-staging";
        let mut n = Notifications::default();
        n.use_created_topic(None);
        assert_eq!(n.sns_topic_arn, None);
        n.use_created_topic(Some(""));
        assert_eq!(n.sns_topic_arn, None);
        n.use_created_topic(Some(created));
        assert_eq!(n.sns_topic_arn.as_deref(), Some(created));
        let mut named = Notifications {
            sns_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:deploys".into()),
            event_bus: None,
        };
        named.use_created_topic(Some(created));
        assert_eq!(
            named.sns_topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:123456789012:deploys")
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "environment = \"staging\"\ncluster = \"c\"\n\n[[services]]\nname = \"api\"\nrepository = \"staging/api\"\ncolour = \"red\"\n";
        let e = Config::parse(text, "slipway.toml").expect_err("unknown field");
        assert_eq!(e.file, "slipway.toml");
        assert_eq!(e.field, "services[0].colour");
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(
            e.to_string()
                .starts_with("slipway.toml:7: services[0].colour: unknown field"),
            "{e}"
        );

        let text = "environment = \"staging\"\ncluster = \"c\"\n[[services]]\nname = \"api\"\nrepository = \"repo\"\n[[services]]\nname = \"web\"\nrepository = \"r2\"\ntag_pattern = \"([\"\n";
        let e = Config::parse(text, "slipway.toml").expect_err("bad pattern");
        assert_eq!(e.field, "services[1].tag_pattern");
        assert_eq!(e.line, Some(9), "{e}");

        let text = "environment = \"staging\"\ncluster = \"c\"\ndeadline_minutes = \"soon\"\n[[services]]\nname = \"api\"\nrepository = \"repo\"\n";
        let e = Config::parse(text, "slipway.toml").expect_err("wrong type");
        assert_eq!(e.field, "deadline_minutes");
        assert_eq!(e.line, Some(3), "{e}");

        let e = Config::parse("environment = \"staging\"\n", "slipway.toml").expect_err("missing");
        assert!(e.message.contains("missing field `cluster`"), "{e}");
        let e = Config::parse("cluster = [", "slipway.toml").expect_err("syntax");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn stacks_own_services_once_and_take_capabilities_and_a_role() {
        let base = "environment = \"s\"\ncluster = \"c\"\n[[services]]\nname = \"api\"\nrepository = \"repo\"\n";
        let c = Config::parse(
            &format!(
                "{base}[[stacks]]\nname = \"ecs\"\nparameters = {{ ApiImage = \"image:api\" }}\n"
            ),
            "f",
        )
        .expect("valid");
        assert_eq!(
            c.stacks[0].capabilities,
            [
                Capability::Iam,
                Capability::NamedIam,
                Capability::AutoExpand
            ]
        );
        assert_eq!(c.owning_stack("api").map(|s| s.name.as_str()), Some("ecs"));
        let e = Config::parse(
            &format!("{base}[[stacks]]\nname = \"a\"\nparameters = {{ X = \"image:api\" }}\n[[stacks]]\nname = \"b\"\nparameters = {{ Y = \"image:api\" }}\n"),
            "f",
        )
        .expect_err("two owners");
        assert_eq!(e.field, "stacks[1].parameters.Y");
        assert!(
            e.message.contains("already a parameter of stack \"a\""),
            "{e}"
        );
        let e = Config::parse(
            &format!("{base}[[stacks]]\nname = \"a\"\nrole_arn = \"cfn-role\"\n"),
            "f",
        )
        .expect_err("not an ARN");
        assert_eq!(e.field, "stacks[0].role_arn");
        let e = Config::parse(
            &format!("{base}[[stacks]]\nname = \"a\"\ncapabilities = [\"CAPABILITY_ROOT\"]\n"),
            "f",
        )
        .expect_err("unknown capability");
        assert!(e.to_string().contains("capabilities"), "{e}");
        let c = Config::parse(
            &format!("{base}[[stacks]]\nname = \"a\"\ncapabilities = [\"CAPABILITY_IAM\"]\nrole_arn = \"arn:aws:iam::123456789012:role/cfn-exec\"\n"),
            "f",
        )
        .expect("valid");
        assert_eq!(c.stacks[0].capabilities, [Capability::Iam]);
    }

    #[test]
    fn references_and_duplicates_are_checked() {
        let base = "environment = \"s\"\ncluster = \"c\"\n[[services]]\nname = \"api\"\nrepository = \"repo\"\n";
        let e = Config::parse(
            &format!(
                "{base}[[stacks]]\nname = \"ecs\"\nparameters = {{ ApiImage = \"image:apii\" }}\n"
            ),
            "f",
        )
        .expect_err("unknown service");
        assert_eq!(e.field, "stacks[0].parameters.ApiImage");
        let e = Config::parse(
            &format!("{base}[[services]]\nname = \"api\"\nrepository = \"r2\"\n"),
            "f",
        )
        .expect_err("duplicate");
        assert_eq!(e.field, "services[1].name");
        assert_eq!(e.line, Some(7));
        let e =
            Config::parse(&format!("{base}[lock]\nttl_minutes = 5\n"), "f").expect_err("short ttl");
        assert_eq!(e.field, "lock.ttl_minutes");
    }

    #[test]
    fn deadlines_must_fit_in_the_execution_and_locks_outlive_it() {
        let base = "environment = \"s\"\ncluster = \"c\"\n";
        let svc = "[[services]]\nname = \"api\"\nrepository = \"repo\"\n";
        let c = Config::parse(&format!("{base}{svc}"), "f").expect("defaults fit");
        assert_eq!(
            (c.rollback_minutes, c.lock.ttl_minutes),
            (15, EXECUTION_TIMEOUT_MINUTES)
        );
        let e = Config::parse(
            &format!("{base}deadline_minutes = 90\nrollback_minutes = 15\n{svc}"),
            "f",
        )
        .expect_err("90 + 15 + 1 > 100");
        assert_eq!(WORK_BUDGET_MINUTES, 100);
        assert_eq!(e.field, "deadline_minutes");
        assert!(e.message.contains("time out mid-release"), "{}", e.message);
        let e = Config::parse(
            &format!("{base}deadline_minutes = 4294967295\nrollback_minutes = 4294967295\n{svc}"),
            "f",
        )
        .expect_err("no overflow");
        assert_eq!(e.field, "deadline_minutes");
        let e =
            Config::parse(&format!("{base}rollback_minutes = 0\n{svc}"), "f").expect_err("zero");
        assert_eq!(e.field, "rollback_minutes");
        let e = Config::parse(&format!("{base}{svc}[lock]\nttl_minutes = 239\n"), "f")
            .expect_err("shorter than the execution");
        assert!(
            e.message.contains("under a live execution"),
            "{}",
            e.message
        );
    }

    /// One health-check run checks the services one after another inside one Lambda
    /// invocation: their worst cases together must fit in its timeout, less the margin.
    #[test]
    fn health_checks_together_fit_in_one_health_check_run() {
        let base = "environment = \"s\"\ncluster = \"c\"\n";
        let svc = |name: &str, passes: u32, timeout_ms: u64, interval_ms: u64| {
            format!("[[services]]\nname = \"{name}\"\nrepository = \"repo\"\n[services.health]\nurl = \"http://alb/health\"\npasses = {passes}\ntimeout_ms = {timeout_ms}\ninterval_ms = {interval_ms}\n")
        };
        // 3 × 5 s + 2 × 1 s = 17 s each: 12 services fit in 210 s, 13 do not.
        let twelve: String = (0..12)
            .map(|n| svc(&format!("s{n}"), 3, 5000, 1000))
            .collect();
        let c = Config::parse(&format!("{base}{twelve}"), "f").expect("204 s fits in 210 s");
        assert_eq!(
            c.services[0]
                .health
                .as_ref()
                .map(HealthConfig::worst_case_ms),
            Some(17_000)
        );
        let thirteen = format!("{twelve}{}", svc("s12", 3, 5000, 1000));
        let text = format!("{base}{thirteen}");
        let e = Config::parse(&text, "f").expect_err("221 s does not fit");
        assert_eq!(e.field, "services[12].health");
        assert!(e.message.contains("221 s"), "{}", e.message);
        assert!(e.message.contains("210 s"), "{}", e.message);
        // The line is the service's [services.health] table.
        let line = e.line.expect("a line");
        assert_eq!(text.lines().nth(line - 1), Some("[services.health]"));
        assert_eq!(
            text.lines()
                .take(line)
                .filter(|l| *l == "[[services]]")
                .count(),
            13
        );
        // One service alone can be too slow too, and huge values do not overflow.
        let e = Config::parse(
            &format!("{base}{}", svc("a", 4294967295, u64::MAX, u64::MAX)),
            "f",
        )
        .expect_err("no overflow");
        assert_eq!(e.field, "services[0].health");
        assert_eq!(
            u64::from(HEALTH_CHECK_TIMEOUT_SECONDS - HEALTH_CHECK_MARGIN_SECONDS),
            210
        );
    }

    /// The health URL must parse as http(s) with a host; the host is a bare name (a port in it
    /// would not be what TLS and the host rules see).
    #[test]
    fn health_url_and_host_are_checked() {
        let with = |url: &str, host: &str| {
            Config::parse(
                &format!("environment = \"s\"\ncluster = \"c\"\n[[services]]\nname = \"api\"\nrepository = \"repo\"\n[services.health]\nurl = \"{url}\"\nhost = \"{host}\"\n"),
                "f",
            )
        };
        assert!(with(
            "https://alb-1.us-east-1.elb.amazonaws.com/health",
            "api.staging.example.com"
        )
        .is_ok());
        assert!(with("https://[::1]:8443/health", "api").is_ok());
        for (url, host, field) in [
            ("alb/health", "api.example.com", "services[0].health.url"),
            (
                "ftp://alb/health",
                "api.example.com",
                "services[0].health.url",
            ),
            (
                "https://alb/health",
                "api.example.com:8443",
                "services[0].health.host",
            ),
            (
                "https://alb/health",
                "https://api.example.com",
                "services[0].health.host",
            ),
            (
                "https://alb/health",
                "api..example.com",
                "services[0].health.host",
            ),
            (
                "https://alb/health",
                "*.example.com",
                "services[0].health.host",
            ),
            (
                "https://alb/health",
                "-api.example.com",
                "services[0].health.host",
            ),
        ] {
            let e = with(url, host).expect_err(host);
            assert_eq!(e.field, field, "{url} {host}: {e}");
        }
    }

    /// Names that reach the template's ARNs and resource names follow AWS's rules: no
    /// wildcard can widen a grant, no `${` is substituted, no name is over its limit.
    #[test]
    fn names_that_reach_the_template_follow_aws_rules() {
        let base = |env: &str, cluster: &str, svc: &str, extra: &str| {
            format!("environment = \"{env}\"\ncluster = \"{cluster}\"\n{extra}[[services]]\nname = \"api\"\nrepository = \"staging/api\"\n{svc}")
        };
        let ok = |text: String| {
            Config::parse(&text, "f")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(ok(base("staging", "staging", "", "")), Ok(()));
        assert_eq!(
            ok(base(
                &"e".repeat(40),
                "arn:aws:ecs:us-east-1:123456789012:cluster/staging",
                "",
                ""
            )),
            Ok(())
        );
        let staging = Config::parse(STAGING, "examples/staging/slipway.toml").expect("valid");
        assert_eq!(staging.environment, "staging");
        for (text, field) in [
            (base(&"e".repeat(41), "c", "", ""), "environment"),
            (base("stag ing", "c", "", ""), "environment"),
            (base("prod_eu", "c", "", ""), "environment"),
            (base("s", "*", "", ""), "cluster"),
            (base("s", "arn:aws:ecs:us-east-1:123456789012:cluster/*", "", ""), "cluster"),
            (base("s", "c", "ecs_service = \"api*\"\n", ""), "services[0].ecs_service"),
            (base("s", "c", "container = \"${AWS::AccountId}\"\n", ""), "services[0].container"),
            (base("s", "c", "target_group_arn = \"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*\"\n", ""), "services[0].target_group_arn"),
            (base("s", "c", "", "[[stacks]]\nname = \"${AWS::StackName}\"\n"), "stacks[0].name"),
            (base("s", "c", "", "[[stacks]]\nname = \"st\"\nrole_arn = \"arn:aws:iam::123456789012:role/*\"\n"), "stacks[0].role_arn"),
            (base("s", "c", "", "[notifications]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:*\"\n"), "notifications.sns_topic_arn"),
            (base("s", "c", "", "[notifications]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:deploys.fifo\"\n"), "notifications.sns_topic_arn"),
            (base("s", "c", "", "[notifications]\nevent_bus = \"bus?\"\n"), "notifications.event_bus"),
        ] {
            let e = Config::parse(&text, "f").expect_err(field);
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains("is not valid here"), "{e}");
        }
        let e = Config::parse(
            &base("s", "c", "", "").replace("staging/api", "Staging/API"),
            "f",
        )
        .expect_err("upper case");
        assert_eq!(e.field, "services[0].repository");
    }

    /// A service nothing checks is valid, but check-config and bootstrap say so, and it is
    /// the only kind that gets a warning.
    #[test]
    fn a_service_nothing_checks_is_flagged() {
        let text = "environment = \"s\"\ncluster = \"c\"\n\
            [[services]]\nname = \"worker\"\nrepository = \"repo\"\n\
            [[services]]\nname = \"api\"\nrepository = \"repo\"\ntarget_group_arn = \"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/73e2d6bc24d8a067\"\n\
            [[services]]\nname = \"web\"\nrepository = \"repo\"\n[services.health]\nurl = \"http://alb/\"\n";
        let c = Config::parse(text, "f").expect("valid");
        let checks: Vec<&str> = c.services.iter().map(ServiceConfig::checks).collect();
        assert_eq!(checks, ["not checked", "targets", "http"]);
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, "services[0]");
        assert!(
            w[0].1
                .contains("\"worker\" has neither health nor target_group_arn"),
            "{}",
            w[0].1
        );
        let staging = Config::parse(STAGING, "examples/staging/slipway.toml").expect("valid");
        assert!(staging.warnings().is_empty());
    }
}
