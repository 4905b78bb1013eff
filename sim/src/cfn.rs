//! AWS CloudFormation: stacks that take time to create and update, change sets with a real
//! diff, failures that roll back, and resources that act on the simulated ECS and ELBv2.
//!
//! Behaviour follows the CloudFormation User Guide and API Reference:
//! - a change set is CREATE_PENDING/CREATE_IN_PROGRESS, then CREATE_COMPLETE with its
//!   changes, or FAILED with "The submitted information didn't contain changes. Submit
//!   different information to create a change set." when there are none;
//! - `UpdateStack` with nothing to change is a ValidationError "No updates are to be performed.";
//! - a failed update: the resource UPDATE_FAILED with its reason, the stack
//!   UPDATE_ROLLBACK_IN_PROGRESS ("The following resource(s) failed to update: [X]. "),
//!   UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS, UPDATE_ROLLBACK_COMPLETE;
//! - `CancelUpdateStack` is only valid in UPDATE_IN_PROGRESS and rolls the update back.
//!
//! Resource types with an effect here: `AWS::ECS::Cluster`, `AWS::ECS::TaskDefinition`,
//! `AWS::ECS::Service` and `AWS::ElasticLoadBalancingV2::TargetGroup`; any other type is
//! recorded with a made-up physical id. Effects are applied when an operation succeeds, so
//! a failed or cancelled update leaves ECS as it was.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::ecs::Ecs;
use crate::elb::Elb;
use crate::env::Env;
use crate::scenario::Failure;
use crate::template::{self, Scope};
use crate::wire::{iso8601, ApiError, ApiResult, Params, Xml};

/// The XML namespace of CloudFormation (API version 2010-05-15).
pub const NAMESPACE: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

/// AWS's reason for a change set without changes.
pub const NO_CHANGES: &str = "The submitted information didn't contain changes. Submit different information to create a change set.";

/// The CloudFormation part of the account.
#[derive(Debug, Default)]
pub struct Cfn {
    stacks: Vec<Stack>,
    change_sets: Vec<ChangeSet>,
    exports: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Resource {
    kind: String,
    physical: String,
    props: Value,
    attrs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct StackEvent {
    id: String,
    at: f64,
    logical: String,
    physical: String,
    kind: String,
    status: String,
    reason: Option<String>,
}

/// A step of an operation, due at `at`.
#[derive(Debug, Clone)]
struct Step {
    at: f64,
    logical: String,
    kind: String,
    status: String,
    reason: Option<String>,
    /// Apply the pending template and parameters at this step.
    apply: bool,
    /// The operation ends with this step; `Some(true)` when it succeeded.
    end: Option<bool>,
}

#[derive(Debug, Clone)]
struct Pending {
    body: String,
    template: Value,
    params: BTreeMap<String, String>,
    delete: bool,
}

#[derive(Debug)]
struct Stack {
    id: String,
    name: String,
    status: String,
    reason: Option<String>,
    description: Option<String>,
    body: String,
    template: Value,
    params: BTreeMap<String, String>,
    resources: BTreeMap<String, Resource>,
    outputs: Vec<(String, String, Option<String>)>,
    events: Vec<StackEvent>,
    created_at: f64,
    updated_at: Option<f64>,
    steps: Vec<Step>,
    pending: Option<Pending>,
    /// Parameters before the running update: CloudFormation shows the new ones while it
    /// runs, and the old ones again once it has rolled back.
    params_before: Option<BTreeMap<String, String>>,
    executing: Option<String>,
    deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Change {
    action: &'static str,
    logical: String,
    physical: Option<String>,
    kind: String,
    replacement: Option<&'static str>,
    properties: Vec<String>,
}

#[derive(Debug)]
struct ChangeSet {
    id: String,
    name: String,
    stack_id: String,
    stack_name: String,
    body: String,
    template: Value,
    params: BTreeMap<String, String>,
    changes: Vec<Change>,
    created_at: f64,
    ready_at: f64,
    failed: Option<String>,
    execution: &'static str,
    description: Option<String>,
}

impl ChangeSet {
    fn status(&self, now: f64) -> (&'static str, &'static str, Option<&str>) {
        if now < self.ready_at {
            ("CREATE_IN_PROGRESS", "UNAVAILABLE", None)
        } else if let Some(reason) = &self.failed {
            ("FAILED", "UNAVAILABLE", Some(reason.as_str()))
        } else {
            ("CREATE_COMPLETE", self.execution, None)
        }
    }
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationError", message)
}

fn parse_template(body: &str) -> ApiResult<Value> {
    let template: Value = serde_json::from_str(body).map_err(|e| {
        validation(format!(
            "Template format error: slipway-sim reads JSON templates only ({e})"
        ))
    })?;
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            validation("Template format error: At least one Resources member must be defined.")
        })?;
    for (name, r) in resources {
        if r.get("Type").and_then(Value::as_str).is_none() {
            return Err(validation(format!(
                "Template format error: [/Resources/{name}] Every Resources object must contain a Type member."
            )));
        }
    }
    Ok(template)
}

/// The parameter values an operation will use: given ones, previous ones, defaults.
fn parameter_values(
    template: &Value,
    given: &[Params],
    previous: &BTreeMap<String, String>,
) -> ApiResult<BTreeMap<String, String>> {
    let declared = template
        .get("Parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut values = BTreeMap::new();
    let mut unknown = Vec::new();
    for p in given {
        let key = p.get("ParameterKey").unwrap_or_default().to_owned();
        if !declared.contains_key(&key) {
            unknown.push(key);
            continue;
        }
        if p.get("UsePreviousValue") == Some("true") {
            match previous.get(&key) {
                Some(v) => {
                    values.insert(key, v.clone());
                }
                None => return Err(validation(format!("Invalid input for parameter key {key}. Cannot specify usePreviousValue as true for a parameter key not in the previous template"))),
            }
        } else {
            values.insert(key, p.get("ParameterValue").unwrap_or_default().to_owned());
        }
    }
    if !unknown.is_empty() {
        return Err(validation(format!(
            "Parameters: [{}] do not exist in the template",
            unknown.join(", ")
        )));
    }
    let mut missing = Vec::new();
    for (name, decl) in &declared {
        if values.contains_key(name) {
            continue;
        }
        match decl.get("Default") {
            Some(Value::String(d)) => {
                values.insert(name.clone(), d.clone());
            }
            Some(Value::Number(n)) => {
                values.insert(name.clone(), n.to_string());
            }
            _ => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(validation(format!(
            "Parameters: [{}] must have values",
            missing.join(", ")
        )));
    }
    Ok(values)
}

fn param_types(template: &Value) -> BTreeMap<String, String> {
    template
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|ps| {
            ps.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.get("Type")
                            .and_then(Value::as_str)
                            .unwrap_or("String")
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// CloudFormation's PascalCase property names to the ECS API's camelCase ones.
fn camel(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let key = c
                        .next()
                        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                        .unwrap_or_default();
                    (key, camel(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        other => other.clone(),
    }
}

impl Cfn {
    /// Dispatches one Query operation; returns the result XML.
    pub fn call(&mut self, env: &mut Env, action: &str, p: &Params) -> ApiResult<String> {
        match action {
            "CreateStack" => self.create_stack(env, p),
            "UpdateStack" => self.update_stack(env, p),
            "DeleteStack" => self.delete_stack(env, p),
            "DescribeStacks" => self.describe_stacks(p),
            "DescribeStackEvents" => self.describe_stack_events(p),
            "GetTemplate" => self.get_template(p),
            "CreateChangeSet" => self.create_change_set(env, p),
            "DescribeChangeSet" => self.describe_change_set(env, p),
            "ExecuteChangeSet" => self.execute_change_set(env, p),
            "DeleteChangeSet" => self.delete_change_set(p),
            "CancelUpdateStack" => self.cancel_update_stack(env, p),
            "ListExports" => Ok(self.list_exports()),
            _ => Err(ApiError::new(
                "InvalidAction",
                format!("slipway-sim does not implement CloudFormation {action}"),
            )),
        }
    }

    fn stack_index(&self, name_or_id: &str) -> ApiResult<usize> {
        let found = if name_or_id.starts_with("arn:") {
            self.stacks.iter().rposition(|s| s.id == name_or_id)
        } else {
            self.stacks
                .iter()
                .rposition(|s| s.name == name_or_id && !s.deleted)
        };
        found.ok_or_else(|| validation(format!("Stack with id {name_or_id} does not exist")))
    }

    fn new_stack(
        &mut self,
        env: &mut Env,
        name: &str,
        description: Option<String>,
    ) -> ApiResult<usize> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(validation(format!("1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*")));
        }
        if self.stacks.iter().any(|s| s.name == name && !s.deleted) {
            return Err(ApiError::new(
                "AlreadyExistsException",
                format!("Stack [{name}] already exists"),
            ));
        }
        let uuid = env.ids.uuid();
        let id = env.arn("cloudformation", &format!("stack/{name}/{uuid}"));
        self.stacks.push(Stack {
            id,
            name: name.to_owned(),
            status: "REVIEW_IN_PROGRESS".into(),
            reason: None,
            description,
            body: String::new(),
            template: json!({}),
            params: BTreeMap::new(),
            resources: BTreeMap::new(),
            outputs: Vec::new(),
            events: Vec::new(),
            created_at: env.now,
            updated_at: None,
            steps: Vec::new(),
            pending: None,
            params_before: None,
            executing: None,
            deleted: false,
        });
        Ok(self.stacks.len() - 1)
    }

    fn create_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let name = p.required("StackName")?;
        let body = p.required("TemplateBody")?;
        let template = parse_template(body)?;
        let params = parameter_values(&template, &p.members("Parameters"), &BTreeMap::new())?;
        let description = template
            .get("Description")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let i = self.new_stack(env, name, description)?;
        self.start(
            env,
            i,
            Pending {
                body: body.to_owned(),
                template,
                params,
                delete: false,
            },
        )?;
        let mut x = Xml::new();
        x.leaf("StackId", &self.stacks[i].id);
        Ok(x.finish())
    }

    fn updatable(&self, i: usize) -> ApiResult<()> {
        let s = &self.stacks[i];
        if !s.steps.is_empty()
            || !matches!(
                s.status.as_str(),
                "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE"
            )
        {
            return Err(validation(format!(
                "Stack:{} is in {} state and can not be updated.",
                s.id, s.status
            )));
        }
        Ok(())
    }

    /// The template and parameters an update or change set asks for.
    fn proposal(
        &self,
        i: usize,
        p: &Params,
    ) -> ApiResult<(String, Value, BTreeMap<String, String>)> {
        let s = &self.stacks[i];
        let body = if p.flag("UsePreviousTemplate") {
            s.body.clone()
        } else {
            p.get("TemplateBody")
                .ok_or_else(|| {
                    validation("Either Template URL or Template Body must be specified.")
                })?
                .to_owned()
        };
        let template = parse_template(&body)?;
        let params = parameter_values(&template, &p.members("Parameters"), &s.params)?;
        Ok((body, template, params))
    }

    fn update_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let i = self.stack_index(p.required("StackName")?)?;
        self.updatable(i)?;
        let (body, template, params) = self.proposal(i, p)?;
        let changes = self.diff(env, i, &template, &params)?;
        if changes.is_empty() && params == self.stacks[i].params {
            return Err(validation("No updates are to be performed."));
        }
        self.start(
            env,
            i,
            Pending {
                body,
                template,
                params,
                delete: false,
            },
        )?;
        let mut x = Xml::new();
        x.leaf("StackId", &self.stacks[i].id);
        Ok(x.finish())
    }

    fn delete_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let name = p.required("StackName")?;
        // Deleting a stack that does not exist succeeds, as in CloudFormation.
        let Ok(i) = self.stack_index(name) else {
            return Ok(String::new());
        };
        if self.stacks[i].deleted || self.stacks[i].status == "DELETE_IN_PROGRESS" {
            return Ok(String::new());
        }
        let s = &self.stacks[i];
        let pending = Pending {
            body: s.body.clone(),
            template: s.template.clone(),
            params: s.params.clone(),
            delete: true,
        };
        self.stacks[i].steps.clear();
        self.start(env, i, pending)?;
        Ok(String::new())
    }

    // Each name set is borrowed separately: callers hold them in different lifetimes.
    #[allow(clippy::too_many_arguments)]
    fn scope<'a>(
        env: &'a Env,
        stack: &'a Stack,
        params: &'a BTreeMap<String, String>,
        types: &'a BTreeMap<String, String>,
        physical: &'a BTreeMap<String, String>,
        attrs: &'a BTreeMap<String, BTreeMap<String, String>>,
        exports: &'a BTreeMap<String, String>,
        conditions: &'a BTreeMap<String, bool>,
    ) -> Scope<'a> {
        Scope {
            params,
            param_types: types,
            physical,
            attrs,
            exports,
            conditions,
            stack_name: &stack.name,
            stack_id: &stack.id,
            region: env.region,
            account: env.account,
        }
    }

    /// What an update to `template` + `params` would change, resource by resource.
    fn diff(
        &self,
        env: &Env,
        i: usize,
        template: &Value,
        params: &BTreeMap<String, String>,
    ) -> ApiResult<Vec<Change>> {
        let stack = &self.stacks[i];
        let types = param_types(template);
        let physical: BTreeMap<String, String> = stack
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), r.physical.clone()))
            .collect();
        let attrs: BTreeMap<String, BTreeMap<String, String>> = stack
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), r.attrs.clone()))
            .collect();
        let no_conditions = BTreeMap::new();
        let scope = Self::scope(
            env,
            stack,
            params,
            &types,
            &physical,
            &attrs,
            &self.exports,
            &no_conditions,
        );
        let conditions = template::conditions(template, &scope).map_err(validation)?;
        let mut physical_new = physical.clone();
        let resources = template
            .get("Resources")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let order = template::creation_order(&resources).map_err(validation)?;
        // Resources not created yet resolve to a placeholder, as "known after apply".
        for name in &order {
            physical_new
                .entry(name.clone())
                .or_insert_with(|| format!("{{{{new:{name}}}}}"));
        }
        let scope = Self::scope(
            env,
            stack,
            params,
            &types,
            &physical_new,
            &attrs,
            &self.exports,
            &conditions,
        );
        let mut changes = Vec::new();
        let mut replaced: BTreeSet<String> = BTreeSet::new();
        for name in &order {
            let r = &resources[name];
            if let Some(c) = r.get("Condition").and_then(Value::as_str) {
                if conditions.get(c) == Some(&false) {
                    continue;
                }
            }
            let kind = r
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let props = template::resolve(r.get("Properties").unwrap_or(&json!({})), &scope)
                .map_err(validation)?;
            match stack.resources.get(name) {
                None => changes.push(Change {
                    action: "Add",
                    logical: name.clone(),
                    physical: None,
                    kind,
                    replacement: None,
                    properties: Vec::new(),
                }),
                Some(old) => {
                    let mut refs = BTreeSet::new();
                    template::references(r, &mut refs);
                    let depends_on_replaced = refs.iter().any(|d| replaced.contains(d));
                    if old.props != props || old.kind != kind || depends_on_replaced {
                        let mut names: Vec<String> = props
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, v)| old.props.get(k.as_str()) != Some(v))
                            .map(|(k, _)| k.clone())
                            .collect();
                        names.extend(
                            old.props
                                .as_object()
                                .into_iter()
                                .flatten()
                                .filter(|(k, _)| props.get(k.as_str()).is_none())
                                .map(|(k, _)| k.clone()),
                        );
                        // A task definition is immutable: any change replaces it.
                        let replacement = if kind == "AWS::ECS::TaskDefinition" || old.kind != kind
                        {
                            replaced.insert(name.clone());
                            "True"
                        } else {
                            "False"
                        };
                        changes.push(Change {
                            action: "Modify",
                            logical: name.clone(),
                            physical: Some(old.physical.clone()),
                            kind,
                            replacement: Some(replacement),
                            properties: names,
                        });
                    }
                }
            }
        }
        for (name, old) in &stack.resources {
            if !resources.contains_key(name) {
                changes.push(Change {
                    action: "Remove",
                    logical: name.clone(),
                    physical: Some(old.physical.clone()),
                    kind: old.kind.clone(),
                    replacement: None,
                    properties: Vec::new(),
                });
            }
        }
        Ok(changes)
    }

    /// Where this operation fails, if the scenario says it does: (resource, reason).
    fn failure(
        &self,
        env: &Env,
        i: usize,
        pending: &Pending,
        changes: &[Change],
    ) -> Option<(String, String)> {
        let stack = &self.stacks[i];
        if let Some(rule) = env.scenario.stacks.iter().find(|r| r.name == stack.name) {
            return Some((
                rule.fail_update.resource.clone(),
                rule.fail_update.reason.clone(),
            ));
        }
        let resources = pending.template.get("Resources")?.as_object()?;
        for change in changes.iter().filter(|c| c.action != "Remove") {
            let text = resources
                .get(&change.logical)
                .map(Value::to_string)
                .unwrap_or_default();
            // The resource's own text, and the parameters it refers to.
            let mut refs = BTreeSet::new();
            template::references(resources.get(&change.logical)?, &mut refs);
            let values: Vec<&str> = std::iter::once(text.as_str())
                .chain(
                    refs.iter()
                        .filter_map(|r| pending.params.get(r))
                        .map(String::as_str),
                )
                .collect();
            if let Some(rule) = env.scenario.image_rule(values, Failure::StackUpdateFails) {
                let reason = rule.reason.clone().unwrap_or_else(|| {
                    format!("Resource handler returned message: \"Invalid request provided: image {} cannot be pulled\" (HandlerErrorCode: InvalidRequest)", rule.pattern)
                });
                return Some((change.logical.clone(), reason));
            }
        }
        None
    }

    /// Starts an operation on stack `i` and lays out its steps in time.
    fn start(&mut self, env: &mut Env, i: usize, pending: Pending) -> ApiResult<()> {
        let creating = self.stacks[i].status == "REVIEW_IN_PROGRESS";
        let changes = if pending.delete {
            self.stacks[i]
                .resources
                .iter()
                .map(|(k, r)| Change {
                    action: "Remove",
                    logical: k.clone(),
                    physical: Some(r.physical.clone()),
                    kind: r.kind.clone(),
                    replacement: None,
                    properties: vec![],
                })
                .collect()
        } else {
            self.diff(env, i, &pending.template, &pending.params)?
        };
        let failure = if pending.delete {
            None
        } else {
            self.failure(env, i, &pending, &changes)
        };
        let t = &env.scenario.timings;
        let (duration, verb) = if pending.delete {
            (t.stack_delete, "DELETE")
        } else if creating {
            (t.stack_create, "CREATE")
        } else {
            (t.stack_update, "UPDATE")
        };
        let now = env.now;
        let stack_kind = "AWS::CloudFormation::Stack".to_owned();
        let name = self.stacks[i].name.clone();
        let step =
            |at: f64, logical: &str, kind: &str, status: String, reason: Option<String>| Step {
                at,
                logical: logical.to_owned(),
                kind: kind.to_owned(),
                status,
                reason,
                apply: false,
                end: None,
            };
        let mut steps = vec![step(
            now,
            &name,
            &stack_kind,
            format!("{verb}_IN_PROGRESS"),
            Some("User Initiated".into()),
        )];
        let n = changes.len().max(1) as f64;
        let slot = duration / (n + 1.0);
        let mut done: Vec<&Change> = Vec::new();
        let mut failed_at = None;
        for (k, c) in changes.iter().enumerate() {
            let (res_verb, start_at) = match c.action {
                "Add" => ("CREATE", now + slot * (k as f64 + 0.5)),
                "Remove" => ("DELETE", now + slot * (k as f64 + 0.5)),
                _ => ("UPDATE", now + slot * (k as f64 + 0.5)),
            };
            let end_at = now + slot * (k as f64 + 1.0);
            steps.push(step(
                start_at,
                &c.logical,
                &c.kind,
                format!("{res_verb}_IN_PROGRESS"),
                None,
            ));
            if let Some((res, reason)) = failure.as_ref().filter(|(r, _)| *r == c.logical) {
                steps.push(step(
                    end_at,
                    res,
                    &c.kind,
                    format!("{res_verb}_FAILED"),
                    Some(reason.clone()),
                ));
                failed_at = Some((end_at, res.clone()));
                break;
            }
            steps.push(step(
                end_at,
                &c.logical,
                &c.kind,
                format!("{res_verb}_COMPLETE"),
                None,
            ));
            done.push(c);
        }
        // A scenario failure on a resource this update does not change fails it at the end.
        if let (Some((res, reason)), None) = (&failure, &failed_at) {
            let end_at = now + duration * 0.9;
            steps.push(step(
                end_at,
                res,
                "AWS::CloudFormation::CustomResource",
                format!("{verb}_FAILED"),
                Some(reason.clone()),
            ));
            failed_at = Some((end_at, res.clone()));
        }
        match failed_at {
            None => {
                let end = now + duration;
                if verb == "UPDATE" {
                    let mut s = step(
                        end,
                        &name,
                        &stack_kind,
                        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS".into(),
                        None,
                    );
                    s.apply = true;
                    steps.push(s);
                    let mut s = step(end, &name, &stack_kind, "UPDATE_COMPLETE".into(), None);
                    s.end = Some(true);
                    steps.push(s);
                } else {
                    let mut s = step(end, &name, &stack_kind, format!("{verb}_COMPLETE"), None);
                    s.apply = true;
                    s.end = Some(true);
                    steps.push(s);
                }
            }
            Some((at, res)) => {
                let (rolling, complete) = if creating {
                    ("ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE")
                } else {
                    ("UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE")
                };
                let reason = if creating {
                    format!("The following resource(s) failed to create: [{res}]. Rollback requested by user.")
                } else {
                    format!("The following resource(s) failed to update: [{res}]. ")
                };
                steps.push(step(at, &name, &stack_kind, rolling.into(), Some(reason)));
                let back = at + duration / 2.0;
                for (k, c) in done.iter().rev().enumerate() {
                    let t = at + (back - at) * (k as f64 + 1.0) / (done.len() as f64 + 2.0);
                    let (a, b) = if c.action == "Add" {
                        ("DELETE_IN_PROGRESS", "DELETE_COMPLETE")
                    } else {
                        ("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE")
                    };
                    steps.push(step(t, &c.logical, &c.kind, a.into(), None));
                    steps.push(step(t, &c.logical, &c.kind, b.into(), None));
                }
                if !creating {
                    steps.push(step(
                        back,
                        &name,
                        &stack_kind,
                        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS".into(),
                        None,
                    ));
                }
                let mut s = step(back, &name, &stack_kind, complete.into(), None);
                s.end = Some(false);
                steps.push(s);
            }
        }
        let stack = &mut self.stacks[i];
        stack.steps = steps;
        if !creating && !pending.delete {
            stack.updated_at = Some(now);
            stack.params_before =
                Some(std::mem::replace(&mut stack.params, pending.params.clone()));
        }
        stack.pending = Some(pending);
        Ok(())
    }

    fn cancel_update_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let i = self.stack_index(p.required("StackName")?)?;
        let stack = &mut self.stacks[i];
        if stack.status != "UPDATE_IN_PROGRESS" {
            return Err(validation(format!(
                "CancelUpdateStack cannot be called from current stack status: {}",
                stack.status
            )));
        }
        let now = env.now;
        let back = now + env.scenario.timings.stack_update / 2.0;
        let kind = "AWS::CloudFormation::Stack".to_owned();
        let mk = |at, status: &str, reason: Option<String>, end| Step {
            at,
            logical: stack.name.clone(),
            kind: kind.clone(),
            status: status.into(),
            reason,
            apply: false,
            end,
        };
        stack.steps = vec![
            mk(
                now,
                "UPDATE_ROLLBACK_IN_PROGRESS",
                Some("User Initiated".into()),
                None,
            ),
            mk(
                back,
                "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
                None,
                None,
            ),
            mk(back, "UPDATE_ROLLBACK_COMPLETE", None, Some(false)),
        ];
        Ok(String::new())
    }

    /// Moves every stack and change set forward to `env.now`.
    pub fn advance(&mut self, env: &mut Env, ecs: &mut Ecs, elb: &mut Elb) {
        for i in 0..self.stacks.len() {
            while self.stacks[i]
                .steps
                .first()
                .is_some_and(|s| s.at <= env.now)
            {
                let step = self.stacks[i].steps.remove(0);
                self.run_step(env, ecs, elb, i, step);
            }
        }
    }

    fn run_step(&mut self, env: &mut Env, ecs: &mut Ecs, elb: &mut Elb, i: usize, step: Step) {
        if step.apply {
            if let Some(pending) = self.stacks[i].pending.clone() {
                if let Err(e) = self.apply(env, ecs, elb, i, &pending) {
                    tracing::warn!(stack = %self.stacks[i].name, error = %e, "applying the stack's resources failed");
                }
            }
        }
        let stack = &mut self.stacks[i];
        let is_stack = step.kind == "AWS::CloudFormation::Stack";
        let physical = if is_stack {
            stack.id.clone()
        } else {
            stack
                .resources
                .get(&step.logical)
                .map(|r| r.physical.clone())
                .unwrap_or_default()
        };
        if is_stack {
            stack.status = step.status.clone();
            stack.reason = step.reason.clone();
        }
        stack.events.push(StackEvent {
            id: env.ids.uuid(),
            at: step.at,
            logical: step.logical,
            physical,
            kind: step.kind,
            status: step.status.clone(),
            reason: step.reason,
        });
        if let Some(ok) = step.end {
            let pending = stack.pending.take();
            if let Some(before) = stack.params_before.take() {
                if !ok {
                    stack.params = before;
                }
            }
            if pending.as_ref().is_some_and(|p| p.delete) && ok {
                stack.deleted = true;
            }
            if let Some(cs) = stack.executing.take() {
                if let Some(cs) = self.change_sets.iter_mut().find(|c| c.id == cs) {
                    cs.execution = if ok {
                        "EXECUTE_COMPLETE"
                    } else {
                        "EXECUTE_FAILED"
                    };
                }
            }
        }
    }

    /// Puts the pending template in place: resources created, updated or deleted in ECS/ELBv2.
    fn apply(
        &mut self,
        env: &mut Env,
        ecs: &mut Ecs,
        elb: &mut Elb,
        i: usize,
        pending: &Pending,
    ) -> Result<(), String> {
        let old = self.stacks[i].resources.clone();
        let template = &pending.template;
        let resources = if pending.delete {
            Map::new()
        } else {
            template
                .get("Resources")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let types = param_types(template);
        let order = template::creation_order(&resources)?;
        let mut physical: BTreeMap<String, String> = BTreeMap::new();
        let mut attrs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut applied: BTreeMap<String, Resource> = BTreeMap::new();
        let no_conditions = BTreeMap::new();
        let conditions = {
            let stack = &self.stacks[i];
            let scope = Self::scope(
                env,
                stack,
                &pending.params,
                &types,
                &physical,
                &attrs,
                &self.exports,
                &no_conditions,
            );
            template::conditions(template, &scope)?
        };
        for name in &order {
            let r = &resources[name];
            if let Some(c) = r.get("Condition").and_then(Value::as_str) {
                if conditions.get(c) == Some(&false) {
                    continue;
                }
            }
            let kind = r
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let props = {
                let stack = &self.stacks[i];
                let scope = Self::scope(
                    env,
                    stack,
                    &pending.params,
                    &types,
                    &physical,
                    &attrs,
                    &self.exports,
                    &conditions,
                );
                template::resolve(r.get("Properties").unwrap_or(&json!({})), &scope)?
            };
            let previous = old.get(name).filter(|o| o.kind == kind);
            let resource = match previous {
                Some(unchanged) if unchanged.props == props => unchanged.clone(),
                _ => {
                    let stack_name = self.stacks[i].name.clone();
                    self.apply_resource(env, ecs, elb, &stack_name, name, &kind, props, previous)?
                }
            };
            physical.insert(name.clone(), resource.physical.clone());
            attrs.insert(name.clone(), resource.attrs.clone());
            applied.insert(name.clone(), resource);
        }
        for (name, r) in &old {
            if !applied.contains_key(name) {
                Self::remove_resource(env, ecs, elb, r);
            }
        }
        // Outputs and exports.
        let mut outputs = Vec::new();
        if !pending.delete {
            let stack = &self.stacks[i];
            let scope = Self::scope(
                env,
                stack,
                &pending.params,
                &types,
                &physical,
                &attrs,
                &self.exports,
                &conditions,
            );
            for (key, o) in template
                .get("Outputs")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let value = template::resolve(o.get("Value").unwrap_or(&Value::Null), &scope)?;
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                let export = match o.get("Export").and_then(|e| e.get("Name")) {
                    Some(n) => Some(
                        template::resolve(n, &scope)?
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    None => None,
                };
                outputs.push((key.clone(), value, export));
            }
        }
        let stack = &mut self.stacks[i];
        for (_, _, e) in &stack.outputs {
            if let Some(e) = e {
                self.exports.remove(e);
            }
        }
        for (_, v, e) in &outputs {
            if let Some(e) = e {
                self.exports.insert(e.clone(), v.clone());
            }
        }
        stack.outputs = outputs;
        stack.resources = applied;
        stack.body = pending.body.clone();
        stack.template = pending.template.clone();
        stack.params = pending.params.clone();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_resource(
        &mut self,
        env: &mut Env,
        ecs: &mut Ecs,
        elb: &mut Elb,
        stack: &str,
        logical: &str,
        kind: &str,
        props: Value,
        previous: Option<&Resource>,
    ) -> Result<Resource, String> {
        let generated = |env: &mut Env| {
            format!(
                "{stack}-{logical}-{:012X}",
                env.ids.next_u64() & 0xFFFF_FFFF_FFFF
            )
        };
        let mut attrs = BTreeMap::new();
        let physical = match kind {
            "AWS::ECS::Cluster" => {
                let name = props
                    .get("ClusterName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| generated(env));
                let name = ecs.ensure_cluster(env, &name);
                attrs.insert("Arn".into(), env.arn("ecs", &format!("cluster/{name}")));
                name
            }
            "AWS::ECS::TaskDefinition" => {
                let mut input = camel(&props);
                if input.get("family").is_none() {
                    input["family"] = json!(format!("{stack}{logical}"));
                }
                let td = ecs.register(env, &input).map_err(|e| e.message)?;
                let arn = td["taskDefinitionArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                attrs.insert("TaskDefinitionArn".into(), arn.clone());
                arn
            }
            "AWS::ECS::Service" => {
                let mut input = camel(&props);
                let service = match previous {
                    Some(prev) => {
                        input["service"] = json!(prev.physical);
                        ecs.update_service_from(env, &input)
                            .map_err(|e| e.message)?
                    }
                    None => {
                        if input.get("serviceName").is_none() {
                            input["serviceName"] = json!(generated(env));
                        }
                        ecs.create_service_from(env, &input)
                            .map_err(|e| e.message)?
                    }
                };
                let arn = service["serviceArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                attrs.insert(
                    "Name".into(),
                    service["serviceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                attrs.insert("ServiceArn".into(), arn.clone());
                arn
            }
            "AWS::ElasticLoadBalancingV2::TargetGroup" => {
                let name = props
                    .get("Name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        let g = generated(env);
                        g[g.len().saturating_sub(32)..]
                            .trim_start_matches('-')
                            .to_owned()
                    });
                let port = props
                    .get("Port")
                    .and_then(|p| p.as_i64().or_else(|| p.as_str()?.parse().ok()))
                    .unwrap_or(80);
                let arn = elb
                    .create_target_group(
                        env,
                        &name,
                        props
                            .get("Protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("HTTP"),
                        port,
                        props
                            .get("VpcId")
                            .and_then(Value::as_str)
                            .unwrap_or("vpc-00000000"),
                        props
                            .get("HealthCheckPath")
                            .and_then(Value::as_str)
                            .unwrap_or("/"),
                    )
                    .map_err(|e| e.message)?;
                attrs.insert("TargetGroupArn".into(), arn.clone());
                attrs.insert("TargetGroupName".into(), name);
                arn
            }
            "AWS::ElasticLoadBalancingV2::ListenerRule" => {
                // Host-header routing: requests for these hosts go to the forward action's group.
                let hosts: Vec<String> = props["Conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["Field"] == "host-header")
                    .flat_map(|c| {
                        let values = c["HostHeaderConfig"]["Values"]
                            .as_array()
                            .or(c["Values"].as_array());
                        values
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let forward = props["Actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["Type"] == "forward")
                    .and_then(|a| a["TargetGroupArn"].as_str());
                if let Some(tg) = forward {
                    for h in &hosts {
                        elb.add_host_rule(h, tg);
                    }
                }
                match previous {
                    Some(p) => p.physical.clone(),
                    None => generated(env),
                }
            }
            _ => match previous {
                Some(p) => p.physical.clone(),
                None => generated(env),
            },
        };
        Ok(Resource {
            kind: kind.to_owned(),
            physical,
            props,
            attrs,
        })
    }

    fn remove_resource(env: &mut Env, ecs: &mut Ecs, elb: &mut Elb, r: &Resource) {
        match r.kind.as_str() {
            "AWS::ECS::Service" => {
                let cluster = r
                    .props
                    .get("Cluster")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let _ = ecs.delete_service_from(
                    env,
                    &json!({ "cluster": cluster, "service": r.physical, "force": true }),
                );
            }
            "AWS::ElasticLoadBalancingV2::TargetGroup" => elb.delete_target_group(&r.physical),
            _ => {}
        }
    }

    fn describe_stacks(&self, p: &Params) -> ApiResult<String> {
        let stacks: Vec<&Stack> = match p.get("StackName") {
            Some(name) => vec![&self.stacks[self.stack_index(name)?]],
            None => self.stacks.iter().filter(|s| !s.deleted).collect(),
        };
        let mut x = Xml::new();
        x.open("Stacks");
        for s in stacks {
            x.open("member")
                .leaf("StackId", &s.id)
                .leaf("StackName", &s.name)
                .opt("Description", s.description.as_deref())
                .open("Parameters");
            for (k, v) in &s.params {
                x.open("member")
                    .leaf("ParameterKey", k)
                    .leaf("ParameterValue", v)
                    .close("member");
            }
            x.close("Parameters")
                .leaf("CreationTime", iso8601(s.created_at))
                .opt("LastUpdatedTime", s.updated_at.map(iso8601))
                .leaf("StackStatus", &s.status)
                .opt("StackStatusReason", s.reason.as_deref())
                .leaf("DisableRollback", "false")
                .open("Outputs");
            for (k, v, e) in &s.outputs {
                x.open("member")
                    .leaf("OutputKey", k)
                    .leaf("OutputValue", v)
                    .opt("ExportName", e.as_deref())
                    .close("member");
            }
            x.close("Outputs")
                .open("Tags")
                .close("Tags")
                .open("DriftInformation")
                .leaf("StackDriftStatus", "NOT_CHECKED")
                .close("DriftInformation")
                .close("member");
        }
        x.close("Stacks");
        Ok(x.finish())
    }

    fn describe_stack_events(&self, p: &Params) -> ApiResult<String> {
        let s = &self.stacks[self.stack_index(p.required("StackName")?)?];
        let mut x = Xml::new();
        x.open("StackEvents");
        for e in s.events.iter().rev() {
            x.open("member")
                .leaf("StackId", &s.id)
                .leaf("EventId", &e.id)
                .leaf("StackName", &s.name)
                .leaf("LogicalResourceId", &e.logical)
                .leaf("PhysicalResourceId", &e.physical)
                .leaf("ResourceType", &e.kind)
                .leaf("Timestamp", iso8601(e.at))
                .leaf("ResourceStatus", &e.status)
                .opt("ResourceStatusReason", e.reason.as_deref())
                .close("member");
        }
        x.close("StackEvents");
        Ok(x.finish())
    }

    fn get_template(&self, p: &Params) -> ApiResult<String> {
        let body = match p.get("ChangeSetName") {
            Some(cs) => self.change_set(cs, p.get("StackName"))?.body.clone(),
            None => self.stacks[self.stack_index(p.required("StackName")?)?]
                .body
                .clone(),
        };
        let mut x = Xml::new();
        x.leaf("TemplateBody", body)
            .open("StagesAvailable")
            .leaf("member", "Original")
            .leaf("member", "Processed")
            .close("StagesAvailable");
        Ok(x.finish())
    }

    fn list_exports(&self) -> String {
        let mut x = Xml::new();
        x.open("Exports");
        for (name, value) in &self.exports {
            let stack = self.stacks.iter().find(|s| {
                !s.deleted && s.outputs.iter().any(|(_, _, e)| e.as_deref() == Some(name))
            });
            x.open("member")
                .opt("ExportingStackId", stack.map(|s| s.id.as_str()))
                .leaf("Name", name)
                .leaf("Value", value)
                .close("member");
        }
        x.close("Exports");
        x.finish()
    }

    fn create_change_set(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let stack_name = p.required("StackName")?;
        let name = p.required("ChangeSetName")?.to_owned();
        if name.is_empty()
            || !name.starts_with(|c: char| c.is_ascii_alphabetic())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || name.len() > 128
        {
            return Err(validation(format!("1 validation error detected: Value '{name}' at 'changeSetName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*")));
        }
        let i = match (
            p.get("ChangeSetType").unwrap_or("UPDATE"),
            self.stack_index(stack_name),
        ) {
            ("CREATE", Ok(i)) if self.stacks[i].status != "REVIEW_IN_PROGRESS" => {
                return Err(validation(format!("Stack [{stack_name}] already exists and cannot be created again with the changeSet [{name}].")));
            }
            ("CREATE", Ok(i)) => i,
            ("CREATE", Err(_)) => self.new_stack(env, stack_name, None)?,
            ("UPDATE", Ok(i)) => {
                if self.stacks[i].status == "REVIEW_IN_PROGRESS" {
                    return Err(validation(format!("Stack [{stack_name}] does not exist")));
                }
                i
            }
            ("UPDATE", Err(_)) => {
                return Err(validation(format!("Stack [{stack_name}] does not exist")))
            }
            (other, _) => {
                return Err(validation(format!(
                    "ChangeSetType {other} is not one of CREATE, UPDATE"
                )))
            }
        };
        if self
            .change_sets
            .iter()
            .any(|c| c.stack_id == self.stacks[i].id && c.name == name)
        {
            return Err(ApiError::new(
                "AlreadyExistsException",
                format!("ChangeSet {name} already exists"),
            ));
        }
        let (body, template, params) = self.proposal(i, p)?;
        let changes = self.diff(env, i, &template, &params)?;
        let failed = changes.is_empty().then(|| NO_CHANGES.to_owned());
        let stack = &self.stacks[i];
        let uuid = env.ids.uuid();
        let id = env.arn("cloudformation", &format!("changeSet/{name}/{uuid}"));
        self.change_sets.push(ChangeSet {
            id: id.clone(),
            name,
            stack_id: stack.id.clone(),
            stack_name: stack.name.clone(),
            body,
            template,
            params,
            changes,
            created_at: env.now,
            ready_at: env.now + env.scenario.timings.change_set,
            failed,
            execution: "AVAILABLE",
            description: p.get("Description").map(str::to_owned),
        });
        let mut x = Xml::new();
        x.leaf("Id", &id).leaf("StackId", &stack.id);
        Ok(x.finish())
    }

    fn change_set(&self, name_or_id: &str, stack: Option<&str>) -> ApiResult<&ChangeSet> {
        let found = if name_or_id.starts_with("arn:") {
            self.change_sets.iter().find(|c| c.id == name_or_id)
        } else {
            let stack = stack.ok_or_else(|| {
                validation(
                    "StackName must be specified if ChangeSetName is not specified as an ARN.",
                )
            })?;
            self.change_sets
                .iter()
                .rev()
                .find(|c| c.name == name_or_id && (c.stack_name == stack || c.stack_id == stack))
        };
        found.ok_or_else(|| {
            ApiError::new(
                "ChangeSetNotFound",
                format!("ChangeSet [{name_or_id}] does not exist"),
            )
        })
    }

    fn describe_change_set(&self, env: &Env, p: &Params) -> ApiResult<String> {
        let cs = self.change_set(p.required("ChangeSetName")?, p.get("StackName"))?;
        let (status, execution, reason) = cs.status(env.now);
        let mut x = Xml::new();
        x.leaf("ChangeSetName", &cs.name)
            .leaf("ChangeSetId", &cs.id)
            .leaf("StackId", &cs.stack_id)
            .leaf("StackName", &cs.stack_name)
            .opt("Description", cs.description.as_deref())
            .open("Parameters");
        for (k, v) in &cs.params {
            x.open("member")
                .leaf("ParameterKey", k)
                .leaf("ParameterValue", v)
                .close("member");
        }
        x.close("Parameters")
            .leaf("CreationTime", iso8601(cs.created_at))
            .leaf("ExecutionStatus", execution)
            .leaf("Status", status)
            .opt("StatusReason", reason)
            .leaf("IncludeNestedStacks", "false")
            .open("Changes");
        if status == "CREATE_COMPLETE" {
            for c in &cs.changes {
                x.open("member")
                    .leaf("Type", "Resource")
                    .open("ResourceChange")
                    .leaf("Action", c.action)
                    .leaf("LogicalResourceId", &c.logical)
                    .opt("PhysicalResourceId", c.physical.as_deref())
                    .leaf("ResourceType", &c.kind)
                    .opt("Replacement", c.replacement)
                    .open("Scope");
                if !c.properties.is_empty() {
                    x.leaf("member", "Properties");
                }
                x.close("Scope").open("Details");
                for prop in &c.properties {
                    x.open("member")
                        .open("Target")
                        .leaf("Attribute", "Properties")
                        .leaf("Name", prop)
                        .leaf(
                            "RequiresRecreation",
                            if c.replacement == Some("True") {
                                "Always"
                            } else {
                                "Never"
                            },
                        )
                        .close("Target")
                        .leaf("Evaluation", "Static")
                        .leaf("ChangeSource", "DirectModification")
                        .close("member");
                }
                x.close("Details").close("ResourceChange").close("member");
            }
        }
        x.close("Changes");
        Ok(x.finish())
    }

    fn execute_change_set(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let (id, status, execution) = {
            let cs = self.change_set(p.required("ChangeSetName")?, p.get("StackName"))?;
            let (status, execution, _) = cs.status(env.now);
            (cs.id.clone(), status, execution)
        };
        if status != "CREATE_COMPLETE" || execution != "AVAILABLE" {
            return Err(ApiError::new(
                "InvalidChangeSetStatus",
                format!("ChangeSet [{id}] cannot be executed in its current status of [{status}] and execution status of [{execution}]"),
            ));
        }
        let cs = self
            .change_sets
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| validation("change set vanished"))?;
        let i = self.stack_index(&cs.stack_id)?;
        if self.stacks[i].status != "REVIEW_IN_PROGRESS" {
            self.updatable(i)?;
        }
        let pending = Pending {
            body: cs.body.clone(),
            template: cs.template.clone(),
            params: cs.params.clone(),
            delete: false,
        };
        let stack_id = cs.stack_id.clone();
        self.start(env, i, pending)?;
        self.stacks[i].executing = Some(id.clone());
        for c in self
            .change_sets
            .iter_mut()
            .filter(|c| c.stack_id == stack_id)
        {
            c.execution = if c.id == id {
                "EXECUTE_IN_PROGRESS"
            } else {
                "OBSOLETE"
            };
        }
        Ok(String::new())
    }

    fn delete_change_set(&mut self, p: &Params) -> ApiResult<String> {
        let id = self
            .change_set(p.required("ChangeSetName")?, p.get("StackName"))?
            .id
            .clone();
        self.change_sets.retain(|c| c.id != id);
        Ok(String::new())
    }
}
