//! The stack operation engine: creates, updates, deletes, rollbacks and cleanups that move
//! resource by resource, in dependency order, each acting on the simulated ECS and ELBv2 when
//! it runs — not all at the end of the operation.
//!
//! Behaviour (CloudFormation User Guide, "Stack status codes" and "Update behaviors of stack
//! resources"; AWS-BEHAVIOUR.md §5–6 collects the sources):
//! - an update runs UPDATE_IN_PROGRESS → each changed resource IN_PROGRESS/COMPLETE →
//!   UPDATE_COMPLETE_CLEANUP_IN_PROGRESS (old resources of replacements and removed ones are
//!   deleted: a replaced `AWS::ECS::TaskDefinition` is deregistered, INACTIVE) →
//!   UPDATE_COMPLETE;
//! - an `AWS::ECS::Service` create or update stays IN_PROGRESS until its ECS deployment
//!   completes ("the resource depends on the service to stabilize"); when the deployment
//!   circuit breaker fails it, the resource fails with "Error occurred during operation 'ECS
//!   Deployment Circuit Breaker was triggered'." (field-quoted text, aws/copilot-cli#2584);
//!   without a circuit breaker CloudFormation keeps waiting — about 3 hours by field reports
//!   (aws/containers-roadmap#1303; the exact limit is UNVERIFIED) — then fails the resource
//!   with "Service … did not stabilize.";
//! - a failure rolls back: UPDATE_ROLLBACK_IN_PROGRESS ("The following resource(s) failed to
//!   update: [X]. "), each resource changed so far put back in reverse order (a service back
//!   on its old task definition waits for that deployment too), then
//!   UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS (new resources deleted, new task definition
//!   revisions deregistered), UPDATE_ROLLBACK_COMPLETE;
//! - a resource whose rollback fails leaves the stack UPDATE_ROLLBACK_FAILED until
//!   ContinueUpdateRollback, which may skip it (`ResourcesToSkip`: "CloudFormation sets the
//!   status of the specified resources to UPDATE_COMPLETE", botocore
//!   `ContinueUpdateRollbackInput`);
//! - CancelUpdateStack (only in UPDATE_IN_PROGRESS) rolls the update back the same way.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

use super::{Cfn, Pending, Resource, StackEvent};
use crate::ecs::{Ecs, Rollout};
use crate::elb::Elb;
use crate::env::Env;
use crate::scenario::Failure;
use crate::template;

/// How long CloudFormation waits for an ECS service to stabilise before failing the
/// resource. UNVERIFIED: field reports say "~3 hours".
pub const SERVICE_STABILIZE_TIMEOUT: f64 = 3.0 * 3600.0;

/// The resource status reason of a service whose deployment the circuit breaker failed.
pub fn circuit_breaker_reason(token: &str) -> String {
    format!("Resource handler returned message: \"Error occurred during operation 'ECS Deployment Circuit Breaker was triggered'.\" (RequestToken: {token}, HandlerErrorCode: GeneralServiceException)")
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// CreateStack or a CREATE change set.
    Create,
    /// UpdateStack or an UPDATE change set.
    Update,
    /// DeleteStack.
    Delete,
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creating, updating or deleting resources.
    Forward,
    /// Putting resources back after a failure or a cancel.
    Rollback,
    /// A resource's rollback failed: UPDATE_ROLLBACK_FAILED until ContinueUpdateRollback.
    RollbackFailed,
    /// Deleting what the operation left behind; `ok` when the update succeeded.
    Cleanup {
        /// The update succeeded (else it rolled back).
        ok: bool,
    },
}

/// One resource's part of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create it.
    Add,
    /// Update it in place.
    Modify,
    /// Create a new physical resource for it; the old one goes at cleanup.
    Replace,
    /// Delete it (stack deletion, creation rollback, cleanup).
    Delete,
    /// Put it back as it was before the operation.
    Restore,
    /// Drop a resource the failed update added; it is deleted at rollback cleanup.
    Discard,
}

/// A resource to work on.
#[derive(Debug, Clone)]
pub struct Work {
    /// Logical id.
    pub logical: String,
    /// Resource type.
    pub kind: String,
    /// What to do.
    pub action: Action,
    /// For deletions: the physical resource to delete.
    pub resource: Option<Resource>,
}

#[derive(Debug, Clone)]
struct ServiceWait {
    cluster: String,
    service: String,
    task_definition: String,
    give_up_at: f64,
}

#[derive(Debug, Clone)]
struct Current {
    work: Work,
    due: f64,
    wait: Option<ServiceWait>,
    /// `Some(reason)`: the resource fails at `due`.
    fail: Option<String>,
    /// Its effect on ECS/ELBv2 happened (so a rollback must undo it).
    applied: bool,
}

/// What the stack was before the operation: what a rollback returns to.
#[derive(Debug, Clone)]
pub struct Before {
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Resources.
    pub resources: BTreeMap<String, Resource>,
}

/// A running operation on one stack.
#[derive(Debug)]
pub struct Operation {
    /// What it does.
    pub verb: Verb,
    /// The template and parameters it moves to.
    pub pending: Pending,
    /// What a rollback returns to.
    pub before: Before,
    conditions: BTreeMap<String, bool>,
    /// Where it is.
    pub phase: Phase,
    queue: VecDeque<Work>,
    current: Option<Current>,
    done: Vec<Work>,
    failed: Vec<String>,
    /// Resources whose rollback failed (what ContinueUpdateRollback may skip).
    pub rollback_failed: Vec<String>,
    garbage: Vec<Work>,
    slot: f64,
    /// A scenario failure on a resource, not met yet.
    scenario_failure: Option<(String, String)>,
    /// The change set being executed, if any.
    pub change_set: Option<String>,
}

impl Operation {
    /// The template's conditions, evaluated when the operation started.
    pub fn conditions(&self) -> &BTreeMap<String, bool> {
        &self.conditions
    }

    /// A new operation, its forward work in order.
    pub fn new(
        verb: Verb,
        pending: Pending,
        before: Before,
        conditions: BTreeMap<String, bool>,
        work: Vec<Work>,
        slot: f64,
        scenario_failure: Option<(String, String)>,
    ) -> Self {
        Self {
            verb,
            pending,
            before,
            conditions,
            phase: Phase::Forward,
            queue: work.into(),
            current: None,
            done: Vec::new(),
            failed: Vec::new(),
            rollback_failed: Vec::new(),
            garbage: Vec::new(),
            slot,
            scenario_failure,
            change_set: None,
        }
    }
}

fn verb_of(action: &Action, phase: Phase) -> &'static str {
    match (action, phase) {
        (Action::Add, _) => "CREATE",
        (Action::Delete, _) => "DELETE",
        _ => "UPDATE",
    }
}

impl Cfn {
    /// Moves every stack's operation forward to `env.now`.
    pub fn advance(&mut self, env: &mut Env, ecs: &mut Ecs, elb: &mut Elb) {
        for i in 0..self.stacks.len() {
            // Bounded: each tick either makes progress or returns false.
            for _ in 0..10_000 {
                if !self.tick(env, ecs, elb, i) {
                    break;
                }
            }
        }
    }

    fn stack_event(&mut self, env: &mut Env, i: usize, status: &str, reason: Option<String>) {
        let s = &mut self.stacks[i];
        s.status = status.to_owned();
        s.reason.clone_from(&reason);
        let (logical, physical) = (s.name.clone(), s.id.clone());
        super::status_change(env, &physical, status, reason.as_deref());
        s.events.push(StackEvent {
            id: env.ids.uuid(),
            at: env.now,
            logical,
            physical,
            kind: "AWS::CloudFormation::Stack".into(),
            status: status.to_owned(),
            reason,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn resource_event(
        &mut self,
        env: &mut Env,
        i: usize,
        logical: &str,
        kind: &str,
        physical: String,
        status: String,
        reason: Option<String>,
    ) {
        self.stacks[i].events.push(StackEvent {
            id: env.ids.uuid(),
            at: env.now,
            logical: logical.to_owned(),
            physical,
            kind: kind.to_owned(),
            status,
            reason,
        });
    }

    fn physical_of(&self, i: usize, work: &Work) -> String {
        work.resource
            .as_ref()
            .map(|r| r.physical.clone())
            .or_else(|| {
                self.stacks[i]
                    .resources
                    .get(&work.logical)
                    .map(|r| r.physical.clone())
            })
            .unwrap_or_default()
    }

    /// One move of stack `i`'s operation; false when there is nothing to do yet.
    fn tick(&mut self, env: &mut Env, ecs: &mut Ecs, elb: &mut Elb, i: usize) -> bool {
        let Some(op) = self.stacks[i].op.as_mut() else {
            return false;
        };
        if op.phase == Phase::RollbackFailed {
            return false;
        }
        if let Some(cur) = &op.current {
            if env.now < cur.due {
                return false;
            }
            let mut fail = cur.fail.clone();
            if let (None, Some(w)) = (&fail, &cur.wait) {
                match ecs.rollout_of(&w.cluster, &w.service, &w.task_definition) {
                    Some((Rollout::Completed, _)) => {}
                    Some((Rollout::Failed, _)) => {
                        fail = Some(circuit_breaker_reason(&env.ids.uuid()));
                    }
                    Some((Rollout::InProgress, _)) if env.now < w.give_up_at => return false,
                    // The circuit breaker's rollback already replaced the failed deployment.
                    None if ecs.circuit_breaker_failed(
                        &w.cluster,
                        &w.service,
                        &w.task_definition,
                    ) =>
                    {
                        fail = Some(circuit_breaker_reason(&env.ids.uuid()));
                    }
                    _ => fail = Some(format!("Service {} did not stabilize.", w.service)),
                }
            }
            let Some(cur) = op.current.take() else {
                return false;
            };
            let phase = op.phase;
            let physical = self.physical_of(i, &cur.work);
            let verb = verb_of(&cur.work.action, phase);
            match fail {
                None => {
                    self.resource_event(
                        env,
                        i,
                        &cur.work.logical,
                        &cur.work.kind,
                        physical,
                        format!("{verb}_COMPLETE"),
                        None,
                    );
                    if phase == Phase::Forward {
                        if let Some(op) = self.stacks[i].op.as_mut() {
                            op.done.push(cur.work);
                        }
                    }
                }
                Some(reason) => {
                    self.resource_event(
                        env,
                        i,
                        &cur.work.logical,
                        &cur.work.kind,
                        physical,
                        format!("{verb}_FAILED"),
                        Some(reason),
                    );
                    self.failed(env, i, cur.work, cur.applied, None);
                }
            }
            return true;
        }
        if let Some(work) = op.queue.pop_front() {
            self.begin(env, ecs, elb, i, work);
            return true;
        }
        self.next_phase(env, ecs, elb, i);
        true
    }

    /// The operation failed on `work` (or was cancelled): roll back what it did.
    pub(super) fn failed(
        &mut self,
        env: &mut Env,
        i: usize,
        work: Work,
        applied: bool,
        stack_reason: Option<String>,
    ) {
        let Some(op) = self.stacks[i].op.as_mut() else {
            return;
        };
        match op.phase {
            Phase::Forward => {}
            Phase::Rollback => {
                // A resource's rollback failed: the stack waits for a person.
                op.phase = Phase::RollbackFailed;
                op.rollback_failed.push(work.logical.clone());
                let reason = format!(
                    "The following resource(s) failed to update: [{}]. ",
                    work.logical
                );
                op.queue.push_front(work);
                self.stack_event(env, i, "UPDATE_ROLLBACK_FAILED", Some(reason));
                return;
            }
            // Cleanup and deletions do not fail here.
            Phase::RollbackFailed | Phase::Cleanup { .. } => return,
        }
        op.failed.push(work.logical.clone());
        // So far the cleanup list holds the old halves of replacements, which the rollback
        // puts back: they must survive it.
        op.garbage.clear();
        let mut undo: Vec<Work> = op.done.drain(..).collect();
        if applied {
            undo.push(work);
        }
        op.queue.clear();
        let verb = op.verb;
        for w in undo.into_iter().rev() {
            let action = match (verb, &w.action) {
                (Verb::Create, _) => Action::Delete,
                (_, Action::Add) => Action::Discard,
                _ => Action::Restore,
            };
            op.queue.push_back(Work { action, ..w });
        }
        op.phase = Phase::Rollback;
        let failed = op.failed.join(", ");
        let (status, reason) = if verb == Verb::Create {
            (
                "ROLLBACK_IN_PROGRESS",
                format!("The following resource(s) failed to create: [{failed}]. Rollback requested by user."),
            )
        } else {
            (
                "UPDATE_ROLLBACK_IN_PROGRESS",
                format!("The following resource(s) failed to update: [{failed}]. "),
            )
        };
        self.stack_event(env, i, status, Some(stack_reason.unwrap_or(reason)));
    }

    /// Cancels a running update (CancelUpdateStack): the resource in progress is cancelled
    /// and everything rolls back.
    pub(super) fn cancel(&mut self, env: &mut Env, i: usize) {
        let Some(op) = self.stacks[i].op.as_mut() else {
            return;
        };
        match op.current.take() {
            Some(cur) => {
                let physical = self.physical_of(i, &cur.work);
                // UNVERIFIED wording (seen only in tools that filter it out).
                self.resource_event(
                    env,
                    i,
                    &cur.work.logical,
                    &cur.work.kind,
                    physical,
                    "UPDATE_FAILED".into(),
                    Some("Resource update cancelled".into()),
                );
                self.failed(env, i, cur.work, cur.applied, Some("User Initiated".into()));
            }
            None => {
                // Between resources: nothing in flight, roll back what is done.
                let work = Work {
                    logical: String::new(),
                    kind: String::new(),
                    action: Action::Modify,
                    resource: None,
                };
                self.failed(env, i, work, false, Some("User Initiated".into()));
                if let Some(op) = self.stacks[i].op.as_mut() {
                    op.failed.retain(|f| !f.is_empty());
                }
            }
        }
    }

    /// The resource's properties with every intrinsic resolved against the stack as it is now.
    fn resolve_now(&self, env: &Env, i: usize, logical: &str) -> Result<Value, String> {
        let stack = &self.stacks[i];
        let op = stack.op.as_ref().ok_or("no operation")?;
        let template = &op.pending.template;
        let types = super::param_types(template);
        let (physical, attrs) = stack.names();
        let scope = Self::scope(
            env,
            stack,
            &op.pending.params,
            &types,
            &physical,
            &attrs,
            &self.exports,
            &op.conditions,
        );
        let r = &template["Resources"][logical];
        template::resolve(r.get("Properties").unwrap_or(&json!({})), &scope)
    }

    /// Why `work` fails, if the scenario says so: a stack rule naming it, or an image rule
    /// matching its properties or the parameters they use.
    fn scenario_failure(&mut self, env: &Env, i: usize, work: &Work) -> Option<String> {
        let op = self.stacks[i].op.as_mut()?;
        if op.phase == Phase::Rollback {
            let stack = &self.stacks[i].name;
            return env
                .scenario
                .stacks
                .iter()
                .filter(|r| &r.name == stack)
                .filter_map(|r| r.fail_rollback.as_ref())
                .find(|f| f.resource == work.logical)
                .map(|f| f.reason.clone());
        }
        if op
            .scenario_failure
            .as_ref()
            .is_some_and(|(r, _)| *r == work.logical)
        {
            return op.scenario_failure.take().map(|(_, reason)| reason);
        }
        let resource = op.pending.template["Resources"].get(&work.logical)?;
        let mut refs = std::collections::BTreeSet::new();
        template::references(resource, &mut refs);
        let text = resource.to_string();
        let values: Vec<&str> = std::iter::once(text.as_str())
            .chain(
                refs.iter()
                    .filter_map(|r| op.pending.params.get(r))
                    .map(String::as_str),
            )
            .collect();
        let rule = env.scenario.image_rule(values, Failure::StackUpdateFails)?;
        Some(rule.reason.clone().unwrap_or_else(|| {
            format!("Resource handler returned message: \"Invalid request provided: image {} cannot be pulled\" (HandlerErrorCode: InvalidRequest)", rule.pattern)
        }))
    }

    /// Starts one resource's work.
    fn begin(&mut self, env: &mut Env, ecs: &mut Ecs, elb: &mut Elb, i: usize, work: Work) {
        let Some(op) = self.stacks[i].op.as_ref() else {
            return;
        };
        let (phase, slot) = (op.phase, op.slot);
        let due = env.now + slot;
        let mut cur = Current {
            work: work.clone(),
            due,
            wait: None,
            fail: None,
            applied: false,
        };
        let mut reason = None;
        let fails = match work.action {
            Action::Add | Action::Modify | Action::Replace | Action::Restore => {
                self.scenario_failure(env, i, &work)
            }
            _ => None,
        };
        let stack_name = self.stacks[i].name.clone();
        match (&work.action, fails) {
            (_, Some(why)) => cur.fail = Some(why),
            (Action::Add | Action::Modify | Action::Replace, None) => {
                let previous = self.stacks[i]
                    .resources
                    .get(&work.logical)
                    .filter(|_| work.action == Action::Modify)
                    .cloned();
                let result = self.resolve_now(env, i, &work.logical).and_then(|props| {
                    self.apply_resource(
                        env,
                        ecs,
                        elb,
                        &stack_name,
                        &work.logical,
                        &work.kind,
                        props,
                        previous.as_ref(),
                    )
                });
                match result {
                    Ok(resource) => {
                        cur.applied = true;
                        cur.wait = service_wait(env, &resource);
                        if work.action == Action::Replace {
                            reason = Some("Requested update requires the creation of a new physical resource; hence creating one.".to_owned());
                            if let Some(old) = self.stacks[i].resources.get(&work.logical).cloned()
                            {
                                if let Some(op) = self.stacks[i].op.as_mut() {
                                    op.garbage.push(Work {
                                        action: Action::Delete,
                                        resource: Some(old),
                                        ..work.clone()
                                    });
                                }
                            }
                        }
                        self.stacks[i]
                            .resources
                            .insert(work.logical.clone(), resource);
                    }
                    Err(e) => cur.fail = Some(e),
                }
            }
            (Action::Restore, None) => {
                let before = self.stacks[i]
                    .op
                    .as_ref()
                    .and_then(|op| op.before.resources.get(&work.logical).cloned());
                let now = self.stacks[i].resources.get(&work.logical).cloned();
                match (before, now) {
                    (Some(before), Some(now)) if before.physical != now.physical => {
                        // A replacement: point back at the old resource, drop the new one.
                        if let Some(op) = self.stacks[i].op.as_mut() {
                            op.garbage.push(Work {
                                action: Action::Delete,
                                resource: Some(now),
                                ..work.clone()
                            });
                        }
                        self.stacks[i]
                            .resources
                            .insert(work.logical.clone(), before);
                    }
                    (Some(before), now) => {
                        let result = self.apply_resource(
                            env,
                            ecs,
                            elb,
                            &stack_name,
                            &work.logical,
                            &work.kind,
                            before.props.clone(),
                            now.as_ref(),
                        );
                        match result {
                            Ok(resource) => {
                                cur.wait = service_wait(env, &resource);
                                self.stacks[i]
                                    .resources
                                    .insert(work.logical.clone(), resource);
                            }
                            Err(e) => cur.fail = Some(e),
                        }
                    }
                    (None, _) => {}
                }
            }
            (Action::Delete, None) => {
                let resource = work
                    .resource
                    .clone()
                    .or_else(|| self.stacks[i].resources.get(&work.logical).cloned());
                if let Some(r) = &resource {
                    Self::remove_resource(env, ecs, elb, r);
                }
                if work.resource.is_none() {
                    self.stacks[i].resources.remove(&work.logical);
                }
                cur.work.resource = resource;
            }
            (Action::Discard, None) => {
                // Deleted at cleanup, without an event now.
                if let Some(r) = self.stacks[i].resources.remove(&work.logical) {
                    if let Some(op) = self.stacks[i].op.as_mut() {
                        op.garbage.push(Work {
                            action: Action::Delete,
                            resource: Some(r),
                            ..work
                        });
                    }
                }
                return;
            }
        }
        let physical = self.physical_of(i, &cur.work);
        let verb = verb_of(&cur.work.action, phase);
        self.resource_event(
            env,
            i,
            &work.logical,
            &work.kind,
            physical,
            format!("{verb}_IN_PROGRESS"),
            reason,
        );
        if let Some(op) = self.stacks[i].op.as_mut() {
            op.current = Some(cur);
        }
    }

    /// The forward work is done, or the rollback, or the cleanup: on to the next phase.
    fn next_phase(&mut self, env: &mut Env, ecs: &mut Ecs, elb: &mut Elb, i: usize) {
        let Some(op) = self.stacks[i].op.as_mut() else {
            return;
        };
        match (op.phase, op.verb) {
            (Phase::Forward, _) if op.scenario_failure.is_some() => {
                // A scenario failure on a resource this update does not change fails it at
                // the end.
                let Some((logical, reason)) = op.scenario_failure.take() else {
                    return;
                };
                let kind = "AWS::CloudFormation::CustomResource".to_owned();
                let status = if op.verb == Verb::Create {
                    "CREATE_FAILED"
                } else {
                    "UPDATE_FAILED"
                };
                self.resource_event(
                    env,
                    i,
                    &logical,
                    &kind,
                    String::new(),
                    status.into(),
                    Some(reason),
                );
                let work = Work {
                    logical,
                    kind,
                    action: Action::Modify,
                    resource: None,
                };
                self.failed(env, i, work, false, None);
            }
            (Phase::Forward, Verb::Create) => {
                let pending = op.pending.clone();
                self.set_outputs(env, i, &pending);
                let s = &mut self.stacks[i];
                s.body = pending.body.clone();
                s.template = pending.template.clone();
                self.finish(env, i, "CREATE_COMPLETE", true);
            }
            (Phase::Forward, Verb::Update) => {
                // Resources the new template no longer has go at cleanup.
                let declared = op.pending.template["Resources"].clone();
                let gone: Vec<(String, Resource)> = self.stacks[i]
                    .resources
                    .iter()
                    .filter(|(k, _)| declared.get(k.as_str()).is_none())
                    .map(|(k, r)| (k.clone(), r.clone()))
                    .collect();
                for (k, r) in gone {
                    self.stacks[i].resources.remove(&k);
                    if let Some(op) = self.stacks[i].op.as_mut() {
                        op.garbage.push(Work {
                            logical: k,
                            kind: r.kind.clone(),
                            action: Action::Delete,
                            resource: Some(r),
                        });
                    }
                }
                let Some(op) = self.stacks[i].op.as_mut() else {
                    return;
                };
                let pending = op.pending.clone();
                op.phase = Phase::Cleanup { ok: true };
                op.queue = op.garbage.drain(..).collect();
                self.set_outputs(env, i, &pending);
                let s = &mut self.stacks[i];
                s.body = pending.body.clone();
                s.template = pending.template.clone();
                self.stack_event(env, i, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None);
            }
            (Phase::Forward, Verb::Delete) => {
                let leftovers: Vec<Resource> = std::mem::take(&mut self.stacks[i].resources)
                    .into_values()
                    .collect();
                for r in &leftovers {
                    Self::remove_resource(env, ecs, elb, r);
                }
                self.finish(env, i, "DELETE_COMPLETE", true);
                let s = &mut self.stacks[i];
                s.deleted = true;
                for (_, _, e) in std::mem::take(&mut s.outputs) {
                    if let Some(e) = e {
                        self.exports.remove(&e);
                    }
                }
            }
            (Phase::Rollback, Verb::Create) => {
                self.finish(env, i, "ROLLBACK_COMPLETE", false);
            }
            (Phase::Rollback, _) => {
                op.phase = Phase::Cleanup { ok: false };
                op.queue = op.garbage.drain(..).collect();
                let before = op.before.params.clone();
                self.stacks[i].params = before;
                self.stack_event(env, i, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None);
            }
            (Phase::Cleanup { ok }, _) => {
                let status = if ok {
                    "UPDATE_COMPLETE"
                } else {
                    "UPDATE_ROLLBACK_COMPLETE"
                };
                self.finish(env, i, status, ok);
            }
            (Phase::RollbackFailed, _) => {}
        }
    }

    /// Ends the operation with the stack in `status`.
    fn finish(&mut self, env: &mut Env, i: usize, status: &str, ok: bool) {
        self.stack_event(env, i, status, None);
        let Some(op) = self.stacks[i].op.take() else {
            return;
        };
        if !ok && op.verb == Verb::Update {
            self.stacks[i].params = op.before.params;
        }
        if let Some(cs) = op.change_set {
            if let Some(cs) = self.change_sets.iter_mut().find(|c| c.id == cs) {
                cs.execution = if ok {
                    "EXECUTE_COMPLETE"
                } else {
                    "EXECUTE_FAILED"
                };
            }
        }
    }

    /// ContinueUpdateRollback: resumes a rollback that failed, skipping `skip`.
    pub(super) fn continue_rollback(
        &mut self,
        env: &mut Env,
        i: usize,
        skip: &[String],
    ) -> Result<(), String> {
        let Some(op) = self.stacks[i].op.as_mut() else {
            return Err("no rollback to continue".into());
        };
        if let Some(bad) = skip.iter().find(|s| !op.rollback_failed.contains(s)) {
            return Err(format!("Resource [{bad}] cannot be skipped: only resources in UPDATE_FAILED state because their rollback failed can be skipped"));
        }
        let mut skipped = Vec::new();
        op.queue.retain(|w| {
            let keep = !skip.contains(&w.logical);
            if !keep {
                skipped.push(w.clone());
            }
            keep
        });
        op.rollback_failed.clear();
        op.phase = Phase::Rollback;
        self.stack_event(env, i, "UPDATE_ROLLBACK_IN_PROGRESS", None);
        for w in skipped {
            let physical = self.physical_of(i, &w);
            self.resource_event(
                env,
                i,
                &w.logical,
                &w.kind,
                physical,
                "UPDATE_COMPLETE".into(),
                None,
            );
        }
        Ok(())
    }
}

/// What CloudFormation waits for after creating or updating `resource`: an ECS service's
/// deployment of its task definition.
fn service_wait(env: &Env, resource: &Resource) -> Option<ServiceWait> {
    if resource.kind != "AWS::ECS::Service" {
        return None;
    }
    let cluster = resource
        .props
        .get("Cluster")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let task_definition = resource
        .props
        .get("TaskDefinition")
        .and_then(Value::as_str)?
        .to_owned();
    Some(ServiceWait {
        cluster,
        service: resource.physical.clone(),
        task_definition,
        give_up_at: env.now + SERVICE_STABILIZE_TIMEOUT,
    })
}
