//! ECS's own blue/green, linear and canary deployments (`deploymentConfiguration.strategy`
//! `BLUE_GREEN` | `LINEAR` | `CANARY`), as the ECS Developer Guide describes them ("Amazon ECS
//! blue/green deployments", "How Amazon ECS blue/green deployments work", "Linear
//! deployments", "Canary deployments", "Lifecycle hooks for Amazon ECS service deployments")
//! and botocore's `ecs` shapes:
//!
//! - the green revision starts beside the blue one, its tasks registered with the load
//!   balancer's `advancedConfiguration.alternateTargetGroupArn`, the blue ones staying in the
//!   service's target group;
//! - the lifecycle stages run in order — PRE_SCALE_UP, SCALE_UP (green scales to 100 %),
//!   POST_SCALE_UP, TEST_TRAFFIC_SHIFT (the `testListenerRule` forwards to green),
//!   POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT (the `productionListenerRule`'s
//!   weights: all at once for BLUE_GREEN; `stepPercent` at a time with `stepBakeTimeInMinutes`
//!   between for LINEAR; `canaryPercent`, `canaryBakeTimeInMinutes`, then the rest for
//!   CANARY; no bake after 100 %), POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME
//!   (`bakeTimeInMinutes`, blue still running), CLEAN_UP (blue scales to 0) — and the
//!   service deployment ends SUCCESSFUL; the two target groups then swap roles;
//! - a Lambda lifecycle hook registered for a stage is invoked when the deployment reaches it
//!   (at PRODUCTION_TRAFFIC_SHIFT, at every step) with `{executionId, lifecycleStage,
//!   resourceArn, executionDetails {serviceArn, targetServiceRevisionArn,
//!   testTrafficWeights, productionTrafficWeights}, hookDetails}`; it answers `hookStatus`
//!   SUCCEEDED (go on), IN_PROGRESS (invoked again after `callBackDelay`, default 30 s) or
//!   FAILED; FAILED, an invalid answer or a function error rolls the deployment back;
//! - a rollback (a hook, the circuit breaker, the deployment alarms,
//!   StopServiceDeployment ROLLBACK) sends all traffic back to blue, which never stopped, and
//!   scales green in: ROLLBACK_IN_PROGRESS, then ROLLBACK_SUCCESSFUL.
//!
//! Not modelled: RECONCILE_SERVICE, pause hooks, hook timeouts, re-invoking the traffic-shift
//! hooks during a rollback, Network Load Balancers and Service Connect.

use serde_json::{json, Value};

use super::{Ecs, Rollout, Service, TaskState};
use crate::elb::Elb;
use crate::env::Env;
use crate::wire::{ApiError, ApiResult};

/// The strategies this module runs.
pub const STRATEGIES: [&str; 3] = ["BLUE_GREEN", "LINEAR", "CANARY"];

/// The stages a Lambda hook may be registered for (bc:ecs DeploymentLifecycleHookStage).
const HOOK_STAGES: [&str; 8] = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

/// How long ECS waits before invoking a hook that answered IN_PROGRESS again, by default.
const CALLBACK_DELAY: f64 = 30.0;

/// One hook's run at a stage.
#[derive(Debug, Clone)]
pub struct HookRun {
    /// The invocation's `executionId`.
    pub execution_id: String,
    /// Its index in `lifecycleHooks`.
    pub hook: usize,
    /// Where it stands.
    pub status: HookStatus,
    /// `hookDetails` it returned with IN_PROGRESS (passed back on the next invocation).
    pub details: Option<Value>,
}

/// A hook run's state.
#[derive(Debug, Clone, PartialEq)]
pub enum HookStatus {
    /// Invoked; no answer yet.
    Invoking,
    /// Answered IN_PROGRESS: invoke again at this time.
    RetryAt(f64),
    /// Answered SUCCEEDED.
    Succeeded,
    /// Answered FAILED, answered nonsense, or the function failed.
    Failed(String),
}

/// A blue/green, linear or canary deployment's progress.
#[derive(Debug, Clone)]
pub struct Staged {
    strategy: String,
    /// The lifecycle stage (bc:ecs ServiceDeploymentLifecycleStage).
    pub stage: &'static str,
    blue: String,
    green: String,
    blue_tg: String,
    green_tg: String,
    production_rule: String,
    test_rule: Option<String>,
    /// Green's share of production traffic, percent.
    weight: f64,
    test_shifted: bool,
    step_shifted: bool,
    wait_until: Option<f64>,
    /// The current stage's hook runs.
    pub hooks: Vec<HookRun>,
    /// Every hook run of the deployment: (hookId, target ARN, status), as
    /// `lifecycleHookDetails` (bc:ecs DeploymentLifecycleHookDetail) reports them.
    history: Vec<(String, String, &'static str)>,
    rolling_back: bool,
}

impl Staged {
    /// The stage and the requested traffic weights, on a DescribeServiceDeployments answer.
    pub fn describe(&self, out: &mut Value) {
        out["lifecycleStage"] = json!(self.stage);
        let test = if self.test_shifted && !self.rolling_back {
            100.0
        } else {
            0.0
        };
        if let Some(sources) = out["sourceServiceRevisions"].as_array_mut() {
            for s in sources {
                s["requestedProductionTrafficWeight"] = json!(100.0 - self.weight);
                s["requestedTestTrafficWeight"] = json!(100.0 - test);
            }
        }
        out["targetServiceRevision"]["requestedProductionTrafficWeight"] = json!(self.weight);
        out["targetServiceRevision"]["requestedTestTrafficWeight"] = json!(test);
        out["lifecycleHookDetails"] = self
            .history
            .iter()
            .map(|(id, arn, status)| {
                json!({"hookId": id, "targetType": "AWS_LAMBDA", "targetArn": arn, "status": status})
            })
            .collect();
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameterException", message)
}

/// Checks a deployment configuration's strategy, its options and its lifecycle hooks against
/// the service's load balancers (bc:ecs DeploymentConfiguration, LinearConfiguration,
/// CanaryConfiguration, DeploymentLifecycleHook, AdvancedConfiguration). The messages are the
/// simulator's; ECS's wording of these errors is not documented.
pub fn validate(dc: &Value, load_balancers: &[Value]) -> ApiResult<()> {
    let strategy = dc["strategy"].as_str().unwrap_or("ROLLING");
    if strategy != "ROLLING" && !STRATEGIES.contains(&strategy) {
        return Err(invalid(format!(
            "deploymentConfiguration.strategy {strategy:?}: expected ROLLING, BLUE_GREEN, LINEAR or CANARY"
        )));
    }
    let range = |v: &Value, field: &str, low: f64, high: f64| -> ApiResult<()> {
        match v.as_f64() {
            Some(n) if (low..=high).contains(&n) => Ok(()),
            None if v.is_null() => Ok(()),
            _ => Err(invalid(format!("{field} must be between {low} and {high}"))),
        }
    };
    range(&dc["bakeTimeInMinutes"], "bakeTimeInMinutes", 0.0, 1440.0)?;
    range(
        &dc["linearConfiguration"]["stepPercent"],
        "linearConfiguration.stepPercent",
        3.0,
        100.0,
    )?;
    range(
        &dc["linearConfiguration"]["stepBakeTimeInMinutes"],
        "linearConfiguration.stepBakeTimeInMinutes",
        0.0,
        1440.0,
    )?;
    range(
        &dc["canaryConfiguration"]["canaryPercent"],
        "canaryConfiguration.canaryPercent",
        0.1,
        100.0,
    )?;
    range(
        &dc["canaryConfiguration"]["canaryBakeTimeInMinutes"],
        "canaryConfiguration.canaryBakeTimeInMinutes",
        0.0,
        1440.0,
    )?;
    if strategy == "ROLLING" {
        return Ok(());
    }
    // "You must provide this parameter when you use the BLUE_GREEN deployment strategy"
    // (bc:ecs DeploymentConfiguration.bakeTimeInMinutes).
    if strategy == "BLUE_GREEN" && dc["bakeTimeInMinutes"].is_null() {
        return Err(invalid(
            "bakeTimeInMinutes is required for the BLUE_GREEN strategy",
        ));
    }
    if load_balancers.is_empty() {
        return Err(invalid(format!(
            "the {strategy} strategy needs a load balancer"
        )));
    }
    for lb in load_balancers {
        let a = &lb["advancedConfiguration"];
        for field in [
            "alternateTargetGroupArn",
            "productionListenerRule",
            "roleArn",
        ] {
            if a[field].as_str().is_none_or(str::is_empty) {
                return Err(invalid(format!(
                    "the {strategy} strategy needs loadBalancers[].advancedConfiguration.{field}"
                )));
            }
        }
    }
    for (i, hook) in dc["lifecycleHooks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for field in ["hookTargetArn", "roleArn"] {
            if hook[field].as_str().is_none_or(str::is_empty) {
                return Err(invalid(format!("lifecycleHooks[{i}].{field} is required")));
            }
        }
        let stages = hook["lifecycleStages"].as_array().filter(|s| !s.is_empty());
        let stages = stages
            .ok_or_else(|| invalid(format!("lifecycleHooks[{i}].lifecycleStages is required")))?;
        for stage in stages {
            if !stage.as_str().is_some_and(|s| HOOK_STAGES.contains(&s)) {
                return Err(invalid(format!(
                    "lifecycleHooks[{i}].lifecycleStages: {stage} is not a stage a hook can run at"
                )));
            }
        }
    }
    Ok(())
}

impl Service {
    fn strategy(&self) -> &str {
        self.deployment_configuration["strategy"]
            .as_str()
            .unwrap_or("ROLLING")
    }

    /// Makes the service deployment of the new deployment `green` a staged one when the
    /// service's strategy says so and a COMPLETED revision (blue) runs beside it; otherwise
    /// (the first deployment of a new service) it rolls.
    pub(super) fn stage_if_strategy(&mut self, _env: &mut Env, green: &str) {
        let strategy = self.strategy().to_owned();
        if !STRATEGIES.contains(&strategy.as_str()) {
            return;
        }
        let Some((blue, _)) = self.last_completed.clone() else {
            return;
        };
        if !self.deployments.iter().any(|d| d.id == blue) {
            return;
        }
        let lb = self.load_balancers.first().cloned().unwrap_or_default();
        let a = &lb["advancedConfiguration"];
        let (Some(blue_tg), Some(green_tg), Some(production_rule)) = (
            lb["targetGroupArn"].as_str(),
            a["alternateTargetGroupArn"].as_str(),
            a["productionListenerRule"].as_str(),
        ) else {
            return;
        };
        // Blue's tasks stay where they are registered now.
        for t in &mut self.tasks {
            if t.deployment == blue && t.target_group.is_none() {
                t.target_group = Some(blue_tg.to_owned());
            }
        }
        let staged = Staged {
            strategy,
            stage: "PRE_SCALE_UP",
            blue,
            green: green.to_owned(),
            blue_tg: blue_tg.to_owned(),
            green_tg: green_tg.to_owned(),
            production_rule: production_rule.to_owned(),
            test_rule: a["testListenerRule"].as_str().map(str::to_owned),
            weight: 0.0,
            test_shifted: false,
            step_shifted: false,
            wait_until: None,
            hooks: Vec::new(),
            history: Vec::new(),
            rolling_back: false,
        };
        if let Some(sd) = self.service_deployments.last_mut() {
            sd.staged = Some(staged);
        }
    }

    /// The service deployment being staged (in progress, or rolling back), if any.
    pub(super) fn staged_index(&self) -> Option<usize> {
        self.service_deployments.iter().rposition(|sd| {
            sd.staged.is_some()
                && matches!(
                    sd.status,
                    "IN_PROGRESS" | "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS"
                )
        })
    }

    /// The hooks registered for `stage` in the configuration the service deployment at `i`
    /// started with.
    fn hooks_at(&self, i: usize, stage: &str) -> Vec<(usize, Value)> {
        self.service_deployments[i].deployment_configuration["lifecycleHooks"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, h)| {
                h["lifecycleStages"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == stage))
            })
            .map(|(i, h)| (i, h.clone()))
            .collect()
    }

    /// The hook payload for a stage (Developer Guide, "Lambda hooks": the event ECS sends).
    fn hook_payload(&self, i: usize, st: &Staged, run: &HookRun, hook: &Value) -> Value {
        let sd = &self.service_deployments[i];
        let (green, blue) = (self.revision_of(&st.green), self.revision_of(&st.blue));
        let weights = |g: f64| json!({ green.clone(): g, blue.clone(): 100.0 - g });
        let (test, production) = match st.stage {
            "TEST_TRAFFIC_SHIFT" => (weights(100.0), json!({})),
            "PRODUCTION_TRAFFIC_SHIFT" => (json!({}), weights(st.weight)),
            _ => (json!({}), json!({})),
        };
        let mut payload = json!({
            "executionId": run.execution_id,
            "lifecycleStage": st.stage,
            "resourceArn": sd.arn,
            "executionDetails": {
                "serviceArn": self.arn,
                "targetServiceRevisionArn": green,
                "testTrafficWeights": test,
                "productionTrafficWeights": production,
            },
        });
        if let Some(details) = run
            .details
            .clone()
            .or_else(|| hook.get("hookDetails").cloned())
        {
            payload["hookDetails"] = details;
        }
        payload
    }

    /// The hooks of the current stage: invoked once the stage is reached (again after an
    /// IN_PROGRESS answer's delay). Ok(true) once all SUCCEEDED; Err when one failed.
    fn gate(
        &self,
        env: &mut Env,
        i: usize,
        st: &mut Staged,
        invocations: &mut Vec<(String, Value)>,
    ) -> Result<bool, String> {
        let hooks = self.hooks_at(i, st.stage);
        if hooks.is_empty() {
            return Ok(true);
        }
        if st.hooks.is_empty() {
            for (index, hook) in &hooks {
                let id = env.ids.uuid();
                let arn = hook["hookTargetArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                st.history.push((id.clone(), arn, "IN_PROGRESS"));
                st.hooks.push(HookRun {
                    execution_id: id,
                    hook: *index,
                    status: HookStatus::RetryAt(env.now),
                    details: None,
                });
            }
        }
        for r in 0..st.hooks.len() {
            let HookStatus::RetryAt(at) = st.hooks[r].status else {
                continue;
            };
            if env.now < at {
                continue;
            }
            let Some((_, hook)) = hooks.iter().find(|(index, _)| *index == st.hooks[r].hook) else {
                continue;
            };
            let payload = self.hook_payload(i, st, &st.hooks[r], hook);
            invocations.push((
                hook["hookTargetArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                payload,
            ));
            st.hooks[r].status = HookStatus::Invoking;
        }
        if let Some(why) = st.hooks.iter().find_map(|r| match &r.status {
            HookStatus::Failed(why) => Some(why.clone()),
            _ => None,
        }) {
            return Err(why);
        }
        if st.hooks.iter().all(|r| r.status == HookStatus::Succeeded) {
            st.hooks.clear();
            return Ok(true);
        }
        Ok(false)
    }

    /// Green's share after the next production traffic step.
    fn next_weight(&self, st: &Staged) -> f64 {
        let dc = &self.deployment_configuration;
        match st.strategy.as_str() {
            "LINEAR" => {
                let step = dc["linearConfiguration"]["stepPercent"]
                    .as_f64()
                    .unwrap_or(10.0);
                (st.weight + step).min(100.0)
            }
            "CANARY" if st.weight == 0.0 => dc["canaryConfiguration"]["canaryPercent"]
                .as_f64()
                .unwrap_or(5.0)
                .min(100.0),
            _ => 100.0,
        }
    }

    /// Minutes between production traffic steps.
    fn step_bake(&self, st: &Staged) -> f64 {
        let dc = &self.deployment_configuration;
        match st.strategy.as_str() {
            "LINEAR" => dc["linearConfiguration"]["stepBakeTimeInMinutes"]
                .as_f64()
                .unwrap_or(6.0),
            "CANARY" => dc["canaryConfiguration"]["canaryBakeTimeInMinutes"]
                .as_f64()
                .unwrap_or(10.0),
            _ => 0.0,
        }
    }

    /// The forward action's weights for green's share (percent): ALB weights are integers
    /// 0–999 (bc:elb TargetGroupTuple.Weight), so shares go as per mille, down to a 0.1 %
    /// canary.
    fn weights(st: &Staged, green: f64) -> Vec<(String, u32)> {
        let g = ((green * 10.0).round() as u32).min(1000);
        vec![
            (st.green_tg.clone(), g.min(999)),
            (st.blue_tg.clone(), (1000 - g).min(999)),
        ]
    }

    fn live_tasks_of(&self, deployment: &str) -> Vec<usize> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.deployment == deployment && !matches!(t.state, TaskState::Draining { .. })
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn stop_all_of(&mut self, elb: &Elb, deployment: &str, now: f64) {
        while let Some(&i) = self.live_tasks_of(deployment).last() {
            self.stop(elb, i, now);
        }
    }

    /// One step of the staged deployment at `i`.
    pub(super) fn advance_staged(
        &mut self,
        env: &mut Env,
        elb: &Elb,
        i: usize,
        next_ip: &mut u32,
        invocations: &mut Vec<(String, Value)>,
        shifts: &mut Vec<(String, Vec<(String, u32)>)>,
    ) {
        let now = env.now;
        let Some(mut st) = self.service_deployments[i].staged.take() else {
            return;
        };
        // Tasks of a revision that is neither blue nor green (a deployment this one replaced).
        let others: Vec<String> = self
            .deployments
            .iter()
            .filter(|d| d.id != st.blue && d.id != st.green)
            .map(|d| d.id.clone())
            .collect();
        for d in &others {
            self.stop_all_of(elb, d, now);
        }
        if st.rolling_back {
            self.stop_all_of(elb, &st.green.clone(), now);
            if !self.tasks.iter().any(|t| t.deployment == st.green) {
                let blue = st.blue.clone();
                self.deployments
                    .retain(|d| d.id == blue || self.tasks.iter().any(|t| t.deployment == d.id));
                let sd = &mut self.service_deployments[i];
                sd.status = "ROLLBACK_SUCCESSFUL";
                sd.finished_at = Some(now);
                sd.updated_at = now;
                let message = format!("(service {}) has reached a steady state.", self.name);
                self.event(env, message);
            }
            self.service_deployments[i].staged = Some(st);
            return;
        }
        let outcome: Result<(), String> = (|| {
            match st.stage {
                "PRE_SCALE_UP" => {
                    if self.gate(env, i, &mut st, invocations)? {
                        st.stage = "SCALE_UP";
                    }
                }
                "SCALE_UP" => {
                    let desired = self.desired;
                    let green_live = self.live_tasks_of(&st.green).len() as i64;
                    if green_live < desired {
                        let start = env.scenario.task_start(
                            self.images_of_deployment(&st.green)
                                .iter()
                                .map(String::as_str),
                        );
                        let mut started = Vec::new();
                        for _ in green_live..desired {
                            *next_ip += 1;
                            let id = env.ids.hex32();
                            started.push(format!("(task {id})"));
                            self.tasks.push(super::Task {
                                id,
                                deployment: st.green.clone(),
                                ip: format!(
                                    "10.0.{}.{}",
                                    (*next_ip / 250) % 256,
                                    *next_ip % 250 + 2
                                ),
                                state: TaskState::Pending {
                                    ready_at: now + start,
                                },
                                was_healthy: false,
                                target_group: Some(st.green_tg.clone()),
                            });
                        }
                        let message = format!(
                            "(service {}) has started {} tasks: {}.",
                            self.name,
                            started.len(),
                            started.join(" ")
                        );
                        self.event(env, message);
                    }
                    let healthy = self
                        .tasks
                        .iter()
                        .filter(|t| t.deployment == st.green && self.health(env, elb, t).0)
                        .count() as i64;
                    if healthy >= desired {
                        st.stage = "POST_SCALE_UP";
                    }
                }
                "POST_SCALE_UP" => {
                    if self.gate(env, i, &mut st, invocations)? {
                        st.stage = "TEST_TRAFFIC_SHIFT";
                    }
                }
                "TEST_TRAFFIC_SHIFT" => {
                    if !st.test_shifted {
                        if let Some(rule) = &st.test_rule {
                            shifts.push((rule.clone(), Self::weights(&st, 100.0)));
                        }
                        st.test_shifted = true;
                    }
                    if self.gate(env, i, &mut st, invocations)? {
                        st.stage = "POST_TEST_TRAFFIC_SHIFT";
                    }
                }
                "POST_TEST_TRAFFIC_SHIFT" => {
                    if self.gate(env, i, &mut st, invocations)? {
                        st.stage = "PRODUCTION_TRAFFIC_SHIFT";
                    }
                }
                "PRODUCTION_TRAFFIC_SHIFT" => {
                    if st.wait_until.is_some_and(|t| now < t) {
                        return Ok(());
                    }
                    st.wait_until = None;
                    if !st.step_shifted {
                        st.weight = self.next_weight(&st);
                        shifts.push((st.production_rule.clone(), Self::weights(&st, st.weight)));
                        st.step_shifted = true;
                        let message = format!(
                            "(service {}) shifted {}% of production traffic to service revision {}.",
                            self.name,
                            st.weight,
                            self.revision_of(&st.green)
                        );
                        self.event(env, message);
                    }
                    if self.gate(env, i, &mut st, invocations)? {
                        st.step_shifted = false;
                        if st.weight >= 100.0 {
                            st.stage = "POST_PRODUCTION_TRAFFIC_SHIFT";
                        } else {
                            st.wait_until = Some(now + self.step_bake(&st) * 60.0);
                        }
                    }
                }
                "POST_PRODUCTION_TRAFFIC_SHIFT" => {
                    if self.gate(env, i, &mut st, invocations)? {
                        st.stage = "BAKE_TIME";
                        let bake = self.deployment_configuration["bakeTimeInMinutes"]
                            .as_f64()
                            .unwrap_or(0.0);
                        st.wait_until = Some(now + bake * 60.0);
                    }
                }
                "BAKE_TIME" => {
                    if st.wait_until.is_none_or(|t| now >= t) {
                        st.wait_until = None;
                        st.stage = "CLEAN_UP";
                    }
                }
                _ => {
                    // CLEAN_UP: blue scales in; once it is gone the deployment is done.
                    self.stop_all_of(elb, &st.blue.clone(), now);
                    if !self.tasks.iter().any(|t| t.deployment != st.green) {
                        self.complete_staged(env, i, &st, shifts);
                    }
                }
            }
            Ok(())
        })();
        let failed = outcome.err();
        self.service_deployments[i].staged = Some(st);
        self.service_deployments[i].updated_at = now;
        if let Some(why) = failed {
            self.roll_back_staged(env, i, why, shifts);
        }
    }

    fn complete_staged(
        &mut self,
        env: &mut Env,
        i: usize,
        st: &Staged,
        shifts: &mut Vec<(String, Vec<(String, u32)>)>,
    ) {
        let now = env.now;
        // The target groups swap roles: green's is the service's now, blue's the alternate
        // for the next deployment.
        if let Some(lb) = self.load_balancers.first_mut() {
            lb["targetGroupArn"] = json!(st.green_tg);
            lb["advancedConfiguration"]["alternateTargetGroupArn"] = json!(st.blue_tg);
        }
        if let Some(rule) = &st.test_rule {
            shifts.push((rule.clone(), Self::weights(st, 100.0)));
        }
        let green = st.green.clone();
        self.deployments.retain(|d| d.id == green);
        let reason = format!("ECS deployment {green} completed.");
        let Some(d) = self.deployments.first_mut() else {
            return;
        };
        d.rollout = Rollout::Completed;
        d.reason = reason.clone();
        d.updated_at = now;
        let td = d.task_definition.clone();
        self.last_completed = Some((green.clone(), td));
        let sd = &mut self.service_deployments[i];
        sd.status = "SUCCESSFUL";
        sd.finished_at = Some(now);
        sd.updated_at = now;
        for monitor in [&mut sd.alarms.0, &mut sd.circuit_breaker.0] {
            if *monitor == "MONITORING" {
                *monitor = "MONITORING_COMPLETE";
            }
        }
        self.state_change(env, "SERVICE_DEPLOYMENT_COMPLETED", &green, &reason);
        let message = format!(
            "(service {}) (deployment {green}) deployment completed.",
            self.name
        );
        self.event(env, message);
        let message = format!("(service {}) has reached a steady state.", self.name);
        self.event(env, message);
    }

    /// Rolls the staged deployment at `i` back: all traffic to blue, green FAILED and
    /// scaling in, blue PRIMARY again; the service deployment ROLLBACK_IN_PROGRESS until
    /// green is gone.
    pub(super) fn roll_back_staged(
        &mut self,
        env: &mut Env,
        i: usize,
        reason: String,
        shifts: &mut Vec<(String, Vec<(String, u32)>)>,
    ) {
        let now = env.now;
        let Some(st) = self.service_deployments[i].staged.as_mut() else {
            return;
        };
        if st.rolling_back {
            return;
        }
        st.rolling_back = true;
        st.hooks.clear();
        let st = st.clone();
        shifts.push((st.production_rule.clone(), Self::weights(&st, 0.0)));
        if let Some(rule) = &st.test_rule {
            shifts.push((rule.clone(), Self::weights(&st, 0.0)));
        }
        let mut blue_td = None;
        for d in &mut self.deployments {
            if d.id == st.green {
                d.primary = false;
                if d.rollout == Rollout::InProgress {
                    d.rollout = Rollout::Failed;
                    d.reason = reason.clone();
                    d.updated_at = now;
                }
            } else if d.id == st.blue {
                d.primary = true;
                blue_td = Some(d.task_definition.clone());
            }
        }
        if let Some(td) = blue_td {
            self.task_definition = td;
        }
        let revision = self.revision_of(&st.blue);
        let sd = &mut self.service_deployments[i];
        sd.status = "ROLLBACK_IN_PROGRESS";
        sd.status_reason = reason.clone();
        sd.stopped_at = None;
        sd.finished_at = None;
        sd.updated_at = now;
        sd.rollback = Some((reason.clone(), now, revision));
        self.state_change(env, "SERVICE_DEPLOYMENT_FAILED", &st.green, &reason);
        let message = format!(
            "(service {}) deployment {} deployment failed: {reason} Rolling back to {}.",
            self.name, st.green, st.blue
        );
        self.event(env, message);
    }
}

impl Ecs {
    /// A lifecycle hook's answer (or its function's failure) for invocation `execution_id`.
    pub fn hook_answer(&mut self, now: f64, execution_id: &str, answer: Result<Value, String>) {
        for s in self.services.values_mut() {
            for sd in &mut s.service_deployments {
                let Some(st) = sd.staged.as_mut() else {
                    continue;
                };
                let Some(run) = st.hooks.iter_mut().find(|r| r.execution_id == execution_id) else {
                    continue;
                };
                if run.status != HookStatus::Invoking {
                    return;
                }
                let stage = st.stage;
                run.status = match answer {
                    Err(e) => HookStatus::Failed(format!("lifecycle hook failed at {stage}: {e}")),
                    Ok(v) => match v["hookStatus"].as_str() {
                        Some("SUCCEEDED") => HookStatus::Succeeded,
                        Some("IN_PROGRESS") => {
                            if let Some(d) = v.get("hookDetails").filter(|d| !d.is_null()) {
                                run.details = Some(d.clone());
                            }
                            let delay = v["callBackDelay"].as_f64().unwrap_or(CALLBACK_DELAY);
                            HookStatus::RetryAt(now + delay)
                        }
                        Some("FAILED") => {
                            HookStatus::Failed(format!("lifecycle hook answered FAILED at {stage}"))
                        }
                        _ => HookStatus::Failed(format!(
                            "lifecycle hook gave no valid hookStatus at {stage}: {v}"
                        )),
                    },
                };
                let shown = match run.status {
                    HookStatus::Succeeded => "SUCCEEDED",
                    HookStatus::Failed(_) => "FAILED",
                    _ => "IN_PROGRESS",
                };
                if let Some(h) = st.history.iter_mut().find(|h| h.0 == execution_id) {
                    h.2 = shown;
                }
                return;
            }
        }
    }

    /// StopServiceDeployment (`serviceDeploymentArn`, `stopType` ROLLBACK — "The valid
    /// values are ROLLBACK"): a PENDING or IN_PROGRESS service deployment moves to
    /// ROLLBACK_REQUESTED and then rolls back; one already rolling back goes on. A finished
    /// one cannot be stopped: `ConflictException` (ECS's wording is not documented).
    pub(super) fn stop_service_deployment(
        &mut self,
        _env: &mut Env,
        input: &Value,
    ) -> ApiResult<Value> {
        let arn = input["serviceDeploymentArn"]
            .as_str()
            .ok_or_else(|| invalid("serviceDeploymentArn is required"))?;
        if let Some(t) = input["stopType"].as_str().filter(|t| *t != "ROLLBACK") {
            return Err(invalid(format!(
                "stopType {t:?}: the valid value is ROLLBACK"
            )));
        }
        let sd = self
            .services
            .values_mut()
            .flat_map(|s| s.service_deployments.iter_mut())
            .find(|d| d.arn == arn)
            .ok_or_else(|| {
                ApiError::new(
                    "ServiceDeploymentNotFoundException",
                    format!("The service deployment {arn} does not exist."),
                )
            })?;
        match sd.status {
            "PENDING" | "IN_PROGRESS" => sd.status = "ROLLBACK_REQUESTED",
            "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS" | "STOP_REQUESTED" => {}
            done => {
                return Err(ApiError::new(
                    "ConflictException",
                    format!("The service deployment is {done} and cannot be stopped."),
                ))
            }
        }
        Ok(json!({ "serviceDeploymentArn": arn }))
    }
}
