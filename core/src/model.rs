//! The documents that travel through an execution: the release `plan` makes, and what each
//! later step writes beside it. Field docs are the contract with `statemachine/`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::input::{ImageRef, Trigger};

/// What `plan` receives: the execution input, and who is asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEvent {
    /// The execution input, in either form (see [`crate::input`]).
    pub input: Value,
    /// The execution's id (`$$.Execution.Id`): the lock owner and the release id's source.
    pub execution: String,
}

/// What `plan` decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PlanOutput {
    /// Deploy this release.
    Deploy {
        /// The release.
        release: Box<Release>,
    },
    /// Roll back, record and announce the release of an execution that was stopped or timed
    /// out (the input was its status-change event).
    Recover {
        /// The release that execution stored.
        release: Box<Release>,
        /// `{"Error": "Slipway.Aborted" | "Slipway.TimedOut", "Cause": …}`: the error the
        /// rollback, the record and this execution's end carry.
        error: Value,
    },
    /// Another release holds a lock this one needs, and this one's image is not older than
    /// the holder's: wait (`WaitForLock`) and plan again. The wait lasts, at most, as long as
    /// the holder's lock: once it expires, plan takes it.
    Wait {
        /// Who holds what, in a sentence.
        reason: String,
        /// When the holder's lock expires, epoch seconds.
        until: i64,
    },
    /// Nothing to deploy; the execution ends successfully.
    NothingToDo {
        /// Why, in a sentence.
        reason: String,
        /// Each service considered and why it is not deployed.
        #[serde(default)]
        skipped: Vec<Skipped>,
    },
}

/// A service left out of a release, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// The service.
    pub service: String,
    /// Why it is not deployed.
    pub reason: String,
}

/// One release: what an execution deploys, and what ran before it (for rollback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Release {
    /// The release id (derived from the execution; names change sets and records).
    pub id: String,
    /// The execution that owns the locks.
    pub owner: String,
    /// The environment (from the configuration).
    pub environment: String,
    /// What started it.
    pub trigger: Trigger,
    /// The image requested.
    pub image: ImageRef,
    /// When plan ran, epoch seconds.
    pub started_at: i64,
    /// Past this (epoch seconds) the release is not stable in time: `Slipway.NotStable`.
    pub deadline: i64,
    /// Seconds between the two health checks.
    pub bake_seconds: u32,
    /// Minutes the rollback may take (release documents from before this field: 15).
    #[serde(default = "default_rollback_minutes")]
    pub rollback_minutes: u32,
    /// How the state machine waits for the services' rollouts (the configuration's).
    #[serde(default)]
    pub stability_wait: crate::config::StabilityWait,
    /// The services it moves.
    pub services: Vec<ServiceRelease>,
    /// Service names by order group, groups in order: each group deploys after the one before
    /// is stable.
    pub groups: Vec<Vec<String>>,
    /// The stacks it updates, in order.
    pub stacks: Vec<StackRelease>,
    /// Services considered and left out.
    pub skipped: Vec<Skipped>,
    /// Where the result is announced.
    #[serde(default)]
    pub notifications: crate::config::Notifications,
    /// Earlier owners of this release (the execution that planned it, then each recovery
    /// that took it over): each stored it in the state table, and finish forgets them all.
    #[serde(default)]
    pub executions: Vec<String>,
    /// The CloudWatch alarms it watches from plan to the end of the bake (the environment's
    /// and its services'): one in ALARM is `Slipway.AlarmTriggered`.
    #[serde(default)]
    pub alarms: Vec<String>,
}

impl Release {
    /// The service of this name.
    pub fn service(&self, name: &str) -> Option<&ServiceRelease> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// A service a release moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceRelease {
    /// The configured name.
    pub name: String,
    /// The ECS cluster.
    pub cluster: String,
    /// The ECS service.
    pub ecs_service: String,
    /// The container whose image changes.
    pub container: String,
    /// The ECR repository.
    pub repository: String,
    /// The image to run, pinned: `<repository URI>@sha256:…`.
    pub image: String,
    /// The digest.
    pub digest: String,
    /// The task definition running before (rollback target).
    pub previous_task_definition: String,
    /// The container's image before.
    pub previous_image: String,
    /// Its order group.
    pub group: u32,
    /// Its HTTP health check.
    #[serde(default)]
    pub health: Option<crate::config::HealthConfig>,
    /// Its ALB target group.
    #[serde(default)]
    pub target_group_arn: Option<String>,
    /// The stack whose parameter carries its image: that stack's update may move it (then
    /// update-services finds it on the image and calls nothing), and a rollback looks at it
    /// only once that stack is restored — an UpdateService back to the old revision is made
    /// only if the stack did not move it back.
    #[serde(default)]
    pub stack: Option<String>,
    /// ECS's blue/green, linear or canary deployment of it (absent: a rolling update).
    #[serde(default)]
    pub staged: Option<StagedRollout>,
    /// ECS deploys it with another strategy and slipway.toml says `strategy = "rolling"`:
    /// update-services switches it back to ECS's rolling update (and removes Slipway's
    /// lifecycle hook).
    #[serde(default)]
    pub to_rolling: bool,
}

/// How update-services asks ECS for a blue/green, linear or canary deployment (the
/// service's `strategy` and its options in slipway.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StagedRollout {
    /// ECS's strategy: `BLUE_GREEN`, `LINEAR` or `CANARY`.
    pub strategy: String,
    /// `bakeTimeInMinutes`.
    pub bake_minutes: u32,
    /// LINEAR `stepPercent` / CANARY `canaryPercent`.
    #[serde(default)]
    pub step_percent: Option<f64>,
    /// LINEAR `stepBakeTimeInMinutes` / CANARY `canaryBakeTimeInMinutes`.
    #[serde(default)]
    pub step_minutes: Option<u32>,
    /// The check ECS asks health-check to run at POST_TEST_TRAFFIC_SHIFT (through the test
    /// listener), when the service's health check names one.
    #[serde(default)]
    pub hook: Option<crate::config::HealthConfig>,
}

impl ServiceRelease {
    /// What health-check checks of it (see [`crate::config::checks`]).
    pub fn checks(&self) -> &'static str {
        crate::config::checks(self.health.is_some(), self.target_group_arn.is_some())
    }
}

/// A stack a release updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StackRelease {
    /// The stack name.
    pub name: String,
    /// Its parameters before (rollback target).
    pub parameters_before: BTreeMap<String, String>,
    /// Its parameters for this release.
    pub parameters: BTreeMap<String, String>,
    /// Capabilities acknowledged on its change sets and rollback (release documents from
    /// before this field get all three).
    #[serde(default = "all_capabilities")]
    pub capabilities: Vec<String>,
    /// Its CloudFormation service role, passed on every call.
    #[serde(default)]
    pub role_arn: Option<String>,
}

fn default_rollback_minutes() -> u32 {
    15
}

fn all_capabilities() -> Vec<String> {
    [
        "CAPABILITY_IAM",
        "CAPABILITY_NAMED_IAM",
        "CAPABILITY_AUTO_EXPAND",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Where the stack loop is: `deploy-stack`'s input and output (one look per call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StackProgress {
    /// Index of the stack being worked on; `release.stacks.len()` when done.
    pub index: usize,
    /// The change set created for it, once created.
    #[serde(default)]
    pub change_set: Option<String>,
    /// Whether that change set is executing.
    #[serde(default)]
    pub executing: bool,
    /// Stacks this release changed (rollback restores them).
    #[serde(default)]
    pub changed: Vec<String>,
    /// Stacks with nothing to change.
    #[serde(default)]
    pub unchanged: Vec<String>,
    /// The change sets of every stack from `index` on were created in one pass (the first
    /// call): a stack's turn starts at looking at its change set. (A progress document from
    /// before this field creates them one at a time.)
    #[serde(default)]
    pub prepared: bool,
    /// Every stack is done.
    #[serde(default)]
    pub done: bool,
}

/// `deploy-stack`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployStackInput {
    /// The release.
    pub release: Release,
    /// The previous call's output; absent on the first call.
    #[serde(default)]
    pub progress: Option<StackProgress>,
    /// Set by a `.waitForTaskToken` task (`$$.Task.Token`) while the current stack updates:
    /// deploy-stack then answers the task itself when the update has ended, and otherwise
    /// leaves the token for CloudFormation's stack status events to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
}

/// `update-services`' input: one service of the release (a `Map` iteration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateServiceInput {
    /// The release.
    pub release: Release,
    /// The service to move.
    pub service: String,
}

/// `update-services`' output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceTarget {
    /// The service.
    pub service: String,
    /// The task definition it must end on.
    pub task_definition: String,
    /// Whether this call started the deployment (false when an earlier attempt had).
    #[serde(default)]
    pub started: bool,
}

/// `check-stability`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStabilityInput {
    /// The release.
    pub release: Release,
    /// The services to check and the task definition each must be on.
    pub targets: Vec<ServiceTarget>,
    /// Checking a rollback: a circuit breaker rollback is then not a failure, and the
    /// release's deadline does not apply — the rollback's does (`rollback_deadline`).
    #[serde(default)]
    pub rollback: bool,
    /// The rollback's deadline (epoch seconds), when checking a rollback.
    #[serde(default)]
    pub rollback_deadline: Option<i64>,
    /// Set by a `.waitForTaskToken` task (`$$.Task.Token`): check-stability then answers the
    /// task itself when the services are already done, and otherwise leaves the token for
    /// ECS's deployment events to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
}

/// `check-stability`'s output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Stability {
    /// Every service is on its task definition, COMPLETED, running = desired.
    pub stable: bool,
    /// Per service.
    pub services: Vec<ServiceProgress>,
}

/// One service's rollout, as seen now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceProgress {
    /// The service.
    pub service: String,
    /// Running tasks of the target deployment.
    pub running: i32,
    /// Desired tasks.
    pub desired: i32,
    /// The target deployment's rollout state (`IN_PROGRESS`, `COMPLETED`, …).
    pub rollout_state: String,
    /// ECS's reason for it.
    pub reason: String,
    /// ECS's blue/green, linear or canary deployment: the service deployment's status and
    /// lifecycle stage, and the new revision's share of production traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// `health-check`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckInput {
    /// The release.
    pub release: Release,
    /// Present while the release bakes and watches alarms (the `WatchBake` loop): only the
    /// alarms are checked, and the output is the next [`BakeWatch`].
    #[serde(default)]
    pub bake: Option<BakeWatch>,
}

/// Where the bake's alarm watch stands: `health-check`'s input and output in the
/// `WatchBake` loop. The loop starts with the release's `bake_seconds` and no wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BakeWatch {
    /// Seconds of the bake left before the wait this value names.
    pub remaining_seconds: u32,
    /// The wait (seconds) before the next check; 0 once the bake is over.
    pub wait_seconds: u32,
}

impl BakeWatch {
    /// The watch after this one's wait: what remains, and the next wait (at most
    /// [`crate::config::ALARM_CHECK_SECONDS`]).
    pub fn next(self) -> Self {
        let remaining_seconds = self.remaining_seconds.saturating_sub(self.wait_seconds);
        Self {
            remaining_seconds,
            wait_seconds: remaining_seconds.min(crate::config::ALARM_CHECK_SECONDS),
        }
    }
}

/// `health-check`'s output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthReport {
    /// Per service checked.
    pub services: Vec<ServiceHealth>,
}

/// One service's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHealth {
    /// The service.
    pub service: String,
    /// Consecutive passing requests.
    pub passes: u32,
    /// Slowest passing request, milliseconds.
    pub max_latency_ms: u64,
    /// Healthy targets / all targets of its target group (when configured).
    #[serde(default)]
    pub targets: Option<(usize, usize)>,
}

/// `roll-back`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollBackInput {
    /// The release.
    pub release: Release,
    /// How far the stack loop got (absent if it never ran). Informational: roll-back looks
    /// at every stack of the release, since a stopped execution never recorded its progress.
    #[serde(default)]
    pub stacks: Option<StackProgress>,
    /// The previous pass's report (`null` on the first pass): what earlier passes restored
    /// stays in the report.
    #[serde(default)]
    pub previous: Option<Rollback>,
    /// The error that started the rollback (`{"Error", "Cause"}` as Step Functions catches it).
    #[serde(default)]
    pub error: Option<Value>,
}

/// `roll-back`'s output (one look per call, like the other loops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rollback {
    /// Every stack is back (or never changed) and no stack operation is in progress.
    pub done: bool,
    /// What happened to each service.
    pub services: Vec<RollbackAction>,
    /// What happened to each stack.
    pub stacks: Vec<RollbackAction>,
    /// The services to watch until stable, and the task definition each returns to.
    pub targets: Vec<ServiceTarget>,
    /// Past this (epoch seconds, set by the first pass: then + `rollback_minutes`) the
    /// rollback ends as `Slipway.RollbackFailed`.
    #[serde(default)]
    pub deadline: i64,
}

/// What roll-back did to one service or stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RollbackAction {
    /// The service or stack.
    pub name: String,
    /// `restored`, `already-rolled-back-by-ecs`, `on-previous` (never moved, or already restored), `moved-by-someone-else`,
    /// `restored-by-stack` (its stack's restore moved it back), `waiting-for-stack` (its
    /// stack is still being restored),
    /// `cancelled`, `rolling-back`, `unchanged`, `waiting-for-change-set` (a stack the
    /// release never got to, whose change set CloudFormation is still creating: deleted on a
    /// later pass).
    pub action: String,
}

/// `finish`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishInput {
    /// The release.
    pub release: Release,
    /// `succeeded`, `failed` or `rollback-failed`.
    pub result: String,
    /// The error, for a failure.
    #[serde(default)]
    pub error: Option<Value>,
    /// The rollback's report, when there was one.
    #[serde(default)]
    pub rollback: Option<Rollback>,
    /// Per-step timings (state name → seconds), as the state machine measured them.
    #[serde(default)]
    pub timings: BTreeMap<String, f64>,
    /// The execution running finish (`$$.Execution.Id`): a recovery run stored the release
    /// under its own ARN too, which finish forgets as well.
    #[serde(default)]
    pub execution: Option<String>,
}

/// `finish`'s input from the `PlanFailed` catch: plan failed (an error, a crash or its
/// timeout), possibly after taking locks or storing the release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFailedInput {
    /// The execution whose plan failed (`$$.Execution.Id`): the owner of whatever it took.
    pub execution: String,
    /// Plan's error, as Step Functions caught it.
    #[serde(default)]
    pub error: Option<Value>,
    /// The execution's input (`$$.Execution.Input`): when it is a deploy request, the
    /// failure is recorded and announced like any release's end.
    #[serde(default)]
    pub input: Option<Value>,
    /// When the execution started (`$$.Execution.StartTime`, RFC 3339): the record's
    /// `started_at`, the same on every retry (a retried finish overwrites one record).
    #[serde(default)]
    pub started: Option<String>,
}

/// `finish`'s answer to a [`PlanFailedInput`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanFailedCleanup {
    /// Services whose lock this execution held and released.
    pub released: Vec<String>,
    /// The record written for the failed request (none when the input was not a deploy
    /// request plan could read).
    #[serde(default)]
    pub record: Option<DeploymentRecord>,
}

/// The record of one deployment, as the state table keeps it and `slipway history` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentRecord {
    /// The release id.
    pub release: String,
    /// The environment.
    pub environment: String,
    /// Who or what started it.
    pub trigger: Trigger,
    /// `succeeded`, `failed`, `rollback-failed`, or — for a release whose execution was stopped
    /// or timed out and then recovered — `aborted` or `timed-out`; `superseded` for an ECR
    /// push that planned after a later push of the same repository (nothing moved).
    pub result: ReleaseResult,
    /// The tag the release was asked for (absent for a release by digest, and in records
    /// written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Why, for a release that never started (`superseded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The error name and cause, for a failure.
    pub error: Option<Value>,
    /// Per service: from which image to which.
    pub services: Vec<RecordedService>,
    /// Stacks updated.
    pub stacks: Vec<String>,
    /// Started, epoch seconds.
    pub started_at: i64,
    /// Finished, epoch seconds.
    pub finished_at: i64,
    /// Per-step timings, seconds.
    pub timings: BTreeMap<String, f64>,
    /// What the rollback did, if any.
    pub rollback: Option<Rollback>,
    /// Per announcement channel (`eventbridge`, `sns`): `sent`, or `failed: <why>`. A failed
    /// announcement never changes `result`.
    #[serde(default)]
    pub announced: BTreeMap<String, String>,
    /// For a failed release, what ECS said about why (each service's last events and stopped
    /// tasks during the release), as `finish` saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<crate::why::ServiceWhy>,
}

/// How a release ended, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseResult {
    /// Deployed, stable and healthy.
    Succeeded,
    /// Failed and rolled back.
    Failed,
    /// Failed, and the rollback failed too: a person has to look.
    RollbackFailed,
    /// Its execution was stopped; the recovery rolled it back.
    Aborted,
    /// Its execution timed out; the recovery rolled it back.
    TimedOut,
    /// An ECR push planned after a later push of the same repository: nothing moved.
    Superseded,
}

impl ReleaseResult {
    /// The name records and `--json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RollbackFailed => "rollback-failed",
            Self::Aborted => "aborted",
            Self::TimedOut => "timed-out",
            Self::Superseded => "superseded",
        }
    }
}

impl std::fmt::Display for ReleaseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ReleaseResult {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One service in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedService {
    /// The service.
    pub service: String,
    /// The image before.
    pub from: String,
    /// The image deployed.
    pub to: String,
    /// What health-check checked of it once it was stable: `http and targets`, `http`,
    /// `targets`, or `not checked` (it has neither `health` nor `target_group_arn`). Empty
    /// for a release that never started.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checks: String,
}

/// What a release of an input would do, read from the account without changing anything:
/// `slipway plan` (and `slipway rollback --dry-run`) print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// Each service the input names (or whose repository it is), in configured order.
    pub services: Vec<ServicePreview>,
    /// Each configured stack, in order, when a service would move (a release updates
    /// every stack).
    pub stacks: Vec<StackPreview>,
    /// Why the input itself asks for nothing (an ECR event that is not a successful push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nothing_to_do: Option<String>,
    /// The CloudWatch alarms the release would watch, as they are now (one in ALARM would
    /// stop it before anything moves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmPreview>,
}

/// One watched alarm in a [`Preview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmPreview {
    /// The alarm.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// CloudWatch's reason.
    pub reason: String,
}

/// One service in a [`Preview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePreview {
    /// The configured name.
    pub name: String,
    /// The image its container runs now.
    pub from: String,
    /// The image, pinned by digest, it would run (none when its tag pattern leaves it out).
    pub to: Option<String>,
    /// What a release would do with it.
    pub action: PreviewAction,
    /// Why, when it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How ECS would deploy it, when not with a rolling update (`BLUE_GREEN`, with Slipway's
    /// check at POST_TEST_TRAFFIC_SHIFT when one is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

/// What a release would do with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreviewAction {
    /// Move it to the new image.
    Deploy,
    /// Nothing: it already runs that digest.
    SkipSameDigest,
    /// Nothing: the pushed tag does not match its `tag_pattern` (ECR pushes only).
    SkipTagPattern,
    /// Not now: another release holds its lock, so the release would wait for it.
    SkipLocked,
    /// Nothing: it runs an image pushed after this one (ECR pushes only).
    SkipSuperseded,
}

/// One stack in a [`Preview`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackPreview {
    /// The stack.
    pub name: String,
    /// The parameters the release would change: `{"Key": {"from", "to"}}`.
    pub parameters: BTreeMap<String, ParameterChange>,
    /// Another release's hold on the stack, when one holds it (the release would wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<String>,
    /// The resource changes of a change set made for the preview (`slipway plan
    /// --change-sets`), as CloudFormation describes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Value>>,
    /// The stack as the release would update it (for making a change set).
    #[serde(skip)]
    pub release: Option<StackRelease>,
}

/// A parameter's value now and after the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterChange {
    /// Its value now.
    pub from: String,
    /// Its value after the release.
    pub to: String,
}
