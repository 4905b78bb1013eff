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

use serde_json::{json, Value};

use crate::ecs::Ecs;
use crate::elb::{self, Elb};
use crate::env::Env;
use crate::template::{self, Scope};

mod ops;
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

/// A resource of a stack, as created.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
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

/// The template and parameters an operation moves a stack to.
#[derive(Debug, Clone)]
pub struct Pending {
    body: String,
    template: Value,
    params: BTreeMap<String, String>,
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
    /// The operation running on it (or stopped in UPDATE_ROLLBACK_FAILED).
    op: Option<ops::Operation>,
    /// The template's NoEcho parameters: DescribeStacks masks them.
    no_echo: Vec<String>,
    /// The CloudFormation service role (`RoleARN`), once given.
    role_arn: Option<String>,
    /// Capabilities of the last operation.
    capabilities: Vec<String>,
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
    capabilities: Vec<String>,
    role_arn: Option<String>,
}

/// Logical id → physical id, and logical id → attributes (what `Ref`/`Fn::GetAtt` resolve).
type Names = (
    BTreeMap<String, String>,
    BTreeMap<String, BTreeMap<String, String>>,
);

impl Stack {
    /// Its resources' physical ids and attributes, by logical id.
    fn names(&self) -> Names {
        let physical = self
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), r.physical.clone()))
            .collect();
        let attrs = self
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), r.attrs.clone()))
            .collect();
        (physical, attrs)
    }
}

impl ChangeSet {
    /// (Status, ExecutionStatus, StatusReason). Creation is asynchronous (bc:cfn
    /// CreateChangeSet): CREATE_PENDING for its first quarter, then CREATE_IN_PROGRESS,
    /// ExecutionStatus UNAVAILABLE ("CloudFormation is still creating it") until done.
    fn status(&self, now: f64) -> (&'static str, &'static str, Option<&str>) {
        let pending_until = self.created_at + (self.ready_at - self.created_at) / 4.0;
        if now < pending_until {
            ("CREATE_PENDING", "UNAVAILABLE", None)
        } else if now < self.ready_at {
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

/// The largest `TemplateBody`: "Minimum length of 1. Maximum length of 51200." (bc:cfn
/// `CreateStackInput.TemplateBody`, the same for UpdateStack, CreateChangeSet,
/// ValidateTemplate and GetTemplateSummary); the quota page counts bytes.
pub const MAX_TEMPLATE_BODY: usize = 51_200;
/// The largest template fetched from `TemplateURL`: "max size: 1 MB" (bc:cfn
/// `CreateStackInput.TemplateURL`).
pub const MAX_TEMPLATE_URL_OBJECT: usize = 1024 * 1024;
/// The parameter the HTTP front sets when it fetched `TemplateURL` into `TemplateBody`
/// (never taken from a client: the front removes it from every request).
pub const FROM_URL: &str = "__SlipwaySimTemplateFromURL";

/// The template the request gives (`TemplateBody`, or what the front fetched from
/// `TemplateURL`), within AWS's size limits.
fn template_body(p: &Params) -> ApiResult<Option<String>> {
    let Some(body) = p.get("TemplateBody") else {
        return Ok(None);
    };
    if p.get(FROM_URL).is_some() {
        if body.len() > MAX_TEMPLATE_URL_OBJECT {
            // UNVERIFIED text: AWS documents the 1 MB limit but not its error message.
            return Err(validation("Template may not exceed 1048576 bytes in size."));
        }
    } else if body.len() > MAX_TEMPLATE_BODY || body.is_empty() {
        // Field-quoted text (mbailey/bash-my-aws#100, convox/rack#549); AWS echoes the value.
        return Err(validation(format!(
            "1 validation error detected: Value '{}' at 'templateBody' failed to satisfy constraint: Member must have length less than or equal to {MAX_TEMPLATE_BODY}",
            body.chars().take(64).collect::<String>() + "…"
        )));
    }
    Ok(Some(body.to_owned()))
}

/// The capabilities a request acknowledges; unknown values are refused (bc:cfn
/// `Capability`: CAPABILITY_IAM | CAPABILITY_NAMED_IAM | CAPABILITY_AUTO_EXPAND).
fn capabilities(p: &Params) -> ApiResult<Vec<String>> {
    let given = p.strings("Capabilities");
    for c in &given {
        if !matches!(
            c.as_str(),
            "CAPABILITY_IAM" | "CAPABILITY_NAMED_IAM" | "CAPABILITY_AUTO_EXPAND"
        ) {
            return Err(validation(format!("1 validation error detected: Value '[{c}]' at 'capabilities' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [CAPABILITY_AUTO_EXPAND, CAPABILITY_NAMED_IAM, CAPABILITY_IAM]]")));
        }
    }
    Ok(given)
}

/// The IAM resource types that need CAPABILITY_IAM, and the property that gives each a
/// custom name (which needs CAPABILITY_NAMED_IAM) — bc:cfn `CreateStackInput.Capabilities`.
const IAM_TYPES: [(&str, Option<&str>); 8] = [
    ("AWS::IAM::AccessKey", None),
    ("AWS::IAM::Group", Some("GroupName")),
    ("AWS::IAM::InstanceProfile", Some("InstanceProfileName")),
    ("AWS::IAM::ManagedPolicy", Some("ManagedPolicyName")),
    ("AWS::IAM::Policy", None),
    ("AWS::IAM::Role", Some("RoleName")),
    ("AWS::IAM::User", Some("UserName")),
    ("AWS::IAM::UserToGroupAddition", None),
];

/// The capabilities a template needs (bc:cfn `CreateStackInput.Capabilities`): IAM
/// resources need CAPABILITY_IAM or CAPABILITY_NAMED_IAM, named ones CAPABILITY_NAMED_IAM;
/// macros and transforms need CAPABILITY_AUTO_EXPAND, except in CreateChangeSet, where "it
/// doesn't apply … and specifying it … has no effect" (bc:cfn
/// `CreateChangeSetInput.Capabilities`).
pub fn required_capabilities(template: &Value, change_set: bool) -> Vec<&'static str> {
    let mut needed = Vec::new();
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .into_iter()
        .flatten();
    let (mut iam, mut named) = (false, false);
    for (_, r) in resources {
        let kind = r.get("Type").and_then(Value::as_str).unwrap_or_default();
        if let Some((_, name)) = IAM_TYPES.iter().find(|(t, _)| *t == kind) {
            iam = true;
            named |= name.is_some_and(|n| r.get("Properties").and_then(|p| p.get(n)).is_some());
        }
    }
    if named {
        needed.push("CAPABILITY_NAMED_IAM");
    } else if iam {
        needed.push("CAPABILITY_IAM");
    }
    let transforms =
        template.get("Transform").is_some() || template.to_string().contains("\"Fn::Transform\"");
    if transforms && !change_set {
        needed.push("CAPABILITY_AUTO_EXPAND");
    }
    needed
}

/// InsufficientCapabilitiesException (HTTP 400) when `given` lacks one the template needs.
/// The message is the field-reported one: "Requires capabilities : [CAPABILITY_IAM]".
/// CreateChangeSet refuses at once rather than going FAILED later (which path AWS takes
/// for which template is UNVERIFIED; both are reported).
fn check_capabilities(template: &Value, given: &[String], change_set: bool) -> ApiResult<()> {
    for needed in required_capabilities(template, change_set) {
        let ok = given.iter().any(|g| g == needed)
            || (needed == "CAPABILITY_IAM" && given.iter().any(|g| g == "CAPABILITY_NAMED_IAM"));
        if !ok {
            return Err(ApiError::new(
                "InsufficientCapabilitiesException",
                format!("Requires capabilities : [{needed}]"),
            ));
        }
    }
    Ok(())
}

/// The parameters a template declares `NoEcho`.
fn no_echo_parameters(template: &Value) -> Vec<String> {
    template
        .get("Parameters")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, d)| d.get("NoEcho").is_some_and(|v| v == true || v == "true"))
        .map(|(k, _)| k.clone())
        .collect()
}

/// How DescribeStacks shows a NoEcho value. The user guide says "masked as asterisks
/// (*****)" (parameters-section-structure.html); the API returns four
/// (mapbox/cfn-config#177 quotes the literal `****` read back from DescribeStacks).
pub const MASKED: &str = "****";

/// Stack events per DescribeStackEvents page (a simulator choice; see there).
pub const EVENTS_PER_PAGE: usize = 100;

fn scalar_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `Capabilities`, `CapabilitiesReason` and `DeclaredTransforms` of a template summary.
fn capabilities_xml(x: &mut Xml, template: &Value) {
    let needed = required_capabilities(template, false);
    x.open("Capabilities");
    for c in &needed {
        x.leaf("member", c);
    }
    x.close("Capabilities");
    if !needed.is_empty() {
        x.leaf(
            "CapabilitiesReason",
            "The following resource(s) require capabilities: [AWS::IAM::Role]",
        );
    }
    x.open("DeclaredTransforms");
    match template.get("Transform") {
        Some(Value::String(t)) => {
            x.leaf("member", t);
        }
        Some(Value::Array(ts)) => {
            for t in ts.iter().filter_map(Value::as_str) {
                x.leaf("member", t);
            }
        }
        _ => {}
    }
    x.close("DeclaredTransforms");
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
            "DeleteChangeSet" => self.delete_change_set(env, p),
            "ListChangeSets" => {
                p.required("StackName")?;
                Ok(self.list_change_sets(env, p))
            }
            "CancelUpdateStack" => self.cancel_update_stack(env, p),
            "ContinueUpdateRollback" => self.continue_update_rollback(env, p),
            "ListExports" => Ok(self.list_exports()),
            "ValidateTemplate" => self.validate_template(p),
            "GetTemplateSummary" => self.get_template_summary(p),
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
            op: None,
            no_echo: Vec::new(),
            role_arn: None,
            capabilities: Vec::new(),
            deleted: false,
        });
        Ok(self.stacks.len() - 1)
    }

    fn create_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let name = p.required("StackName")?;
        let body = template_body(p)?
            .ok_or_else(|| validation("Either Template URL or Template Body must be specified."))?;
        let template = parse_template(&body)?;
        let capabilities = capabilities(p)?;
        check_capabilities(&template, &capabilities, false)?;
        let params = parameter_values(&template, &p.members("Parameters"), &BTreeMap::new())?;
        let description = template
            .get("Description")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let i = self.new_stack(env, name, description)?;
        self.stacks[i].capabilities = capabilities;
        self.stacks[i].role_arn = p.get("RoleARN").map(str::to_owned);
        self.start(
            env,
            i,
            Pending {
                body,
                template,
                params,
            },
            ops::Verb::Create,
        )?;
        let mut x = Xml::new();
        x.leaf("StackId", &self.stacks[i].id);
        Ok(x.finish())
    }

    fn updatable(&self, i: usize) -> ApiResult<()> {
        let s = &self.stacks[i];
        if s.op.is_some()
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
        let given = template_body(p)?;
        let body = match (p.flag("UsePreviousTemplate"), given) {
            (true, None) => s.body.clone(),
            (false, Some(body)) => body,
            // bc:cfn:CreateChangeSetInput.TemplateBody: exactly one of TemplateBody,
            // TemplateURL and UsePreviousTemplate.
            (true, Some(_)) => {
                return Err(validation(
                    "Specify exactly one of TemplateBody, TemplateURL or UsePreviousTemplate.",
                ))
            }
            (false, None) => {
                return Err(validation(
                    "Either Template URL or Template Body must be specified.",
                ))
            }
        };
        let template = parse_template(&body)?;
        let params = parameter_values(&template, &p.members("Parameters"), &s.params)?;
        Ok((body, template, params))
    }

    fn update_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let i = self.stack_index(p.required("StackName")?)?;
        self.updatable(i)?;
        let (body, template, params) = self.proposal(i, p)?;
        let capabilities = capabilities(p)?;
        check_capabilities(&template, &capabilities, false)?;
        let changes = self.diff(env, i, &template, &params)?;
        if changes.is_empty() && params == self.stacks[i].params {
            return Err(validation("No updates are to be performed."));
        }
        self.stacks[i].capabilities = capabilities;
        if let Some(role) = p.get("RoleARN") {
            self.stacks[i].role_arn = Some(role.to_owned());
        }
        self.start(
            env,
            i,
            Pending {
                body,
                template,
                params,
            },
            ops::Verb::Update,
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
        if self.stacks[i].status.ends_with("_IN_PROGRESS") {
            // Field-quoted (aws/aws-toolkit-azure-devops#317).
            return Err(validation(format!(
                "Stack cannot be deleted while in status {}",
                self.stacks[i].status
            )));
        }
        let s = &self.stacks[i];
        let pending = Pending {
            body: s.body.clone(),
            template: s.template.clone(),
            params: s.params.clone(),
        };
        self.stacks[i].op = None;
        self.start(env, i, pending, ops::Verb::Delete)?;
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
        let (physical, attrs) = stack.names();
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

    /// Where the scenario makes stack `i`'s next update fail: (resource, reason).
    fn stack_rule_failure(env: &Env, name: &str) -> Option<(String, String)> {
        env.scenario
            .stacks
            .iter()
            .filter(|r| r.name == name)
            .find_map(|r| r.fail_update.as_ref())
            .map(|f| (f.resource.clone(), f.reason.clone()))
    }

    /// Starts an operation on stack `i`: its resources change one by one from now on
    /// (see [`ops`]).
    fn start(
        &mut self,
        env: &mut Env,
        i: usize,
        pending: Pending,
        verb: ops::Verb,
    ) -> ApiResult<()> {
        let t = &env.scenario.timings;
        let duration = match verb {
            ops::Verb::Create => t.stack_create,
            ops::Verb::Update => t.stack_update,
            ops::Verb::Delete => t.stack_delete,
        };
        let work: Vec<ops::Work> = match verb {
            ops::Verb::Delete => {
                // Dependents first: the reverse of the creation order.
                let resources = self.stacks[i]
                    .template
                    .get("Resources")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut order = template::creation_order(&resources).unwrap_or_default();
                order.retain(|k| self.stacks[i].resources.contains_key(k));
                order
                    .iter()
                    .rev()
                    .map(|k| ops::Work {
                        logical: k.clone(),
                        kind: self.stacks[i].resources[k].kind.clone(),
                        action: ops::Action::Delete,
                        resource: None,
                    })
                    .collect()
            }
            _ => self
                .diff(env, i, &pending.template, &pending.params)?
                .into_iter()
                .filter(|c| c.action != "Remove")
                .map(|c| ops::Work {
                    logical: c.logical,
                    kind: c.kind,
                    action: match (c.action, c.replacement) {
                        ("Add", _) => ops::Action::Add,
                        (_, Some("True")) => ops::Action::Replace,
                        _ => ops::Action::Modify,
                    },
                    resource: None,
                })
                .collect(),
        };
        let slot = duration / (work.len() as f64 + 1.0);
        let conditions = {
            let stack = &self.stacks[i];
            let types = param_types(&pending.template);
            let (none, no_attrs, no_conditions) =
                (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
            let scope = Self::scope(
                env,
                stack,
                &pending.params,
                &types,
                &none,
                &no_attrs,
                &self.exports,
                &no_conditions,
            );
            template::conditions(&pending.template, &scope).map_err(validation)?
        };
        let failure = match verb {
            ops::Verb::Delete => None,
            _ => Self::stack_rule_failure(env, &self.stacks[i].name),
        };
        let stack = &mut self.stacks[i];
        let before = ops::Before {
            params: stack.params.clone(),
            resources: stack.resources.clone(),
        };
        stack.no_echo = no_echo_parameters(&pending.template);
        if verb == ops::Verb::Update {
            stack.updated_at = Some(env.now);
        }
        // CloudFormation shows the new parameters while the operation runs, and the old ones
        // again once it has rolled back.
        if verb != ops::Verb::Delete {
            stack.params = pending.params.clone();
        }
        stack.op = Some(ops::Operation::new(
            verb, pending, before, conditions, work, slot, failure,
        ));
        let status = match verb {
            ops::Verb::Create => "CREATE_IN_PROGRESS",
            ops::Verb::Update => "UPDATE_IN_PROGRESS",
            ops::Verb::Delete => "DELETE_IN_PROGRESS",
        };
        let s = &mut self.stacks[i];
        s.status = status.to_owned();
        s.reason = Some("User Initiated".into());
        let (logical, physical) = (s.name.clone(), s.id.clone());
        status_change(env, &physical, status, Some("User Initiated"));
        s.events.push(StackEvent {
            id: env.ids.uuid(),
            at: env.now,
            logical,
            physical,
            kind: "AWS::CloudFormation::Stack".into(),
            status: status.into(),
            reason: Some("User Initiated".into()),
        });
        Ok(())
    }

    fn cancel_update_stack(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let i = self.stack_index(p.required("StackName")?)?;
        let stack = &self.stacks[i];
        let forward = stack
            .op
            .as_ref()
            .is_some_and(|op| op.phase == ops::Phase::Forward && op.verb == ops::Verb::Update);
        if stack.status != "UPDATE_IN_PROGRESS" || !forward {
            return Err(validation(format!(
                "CancelUpdateStack cannot be called from current stack status: {}",
                stack.status
            )));
        }
        self.cancel(env, i);
        Ok(String::new())
    }

    fn continue_update_rollback(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let i = self.stack_index(p.required("StackName")?)?;
        if self.stacks[i].status != "UPDATE_ROLLBACK_FAILED" {
            return Err(validation(format!(
                "Stack {} is in {} state and can not continue the update rollback: ContinueUpdateRollback cannot be called from current stack status",
                self.stacks[i].name, self.stacks[i].status
            )));
        }
        let skip = p.strings("ResourcesToSkip");
        self.continue_rollback(env, i, &skip).map_err(validation)?;
        Ok(String::new())
    }

    /// Sets stack `i`'s outputs and exports from `pending`, as its resources are now.
    fn set_outputs(&mut self, env: &Env, i: usize, pending: &Pending) {
        let stack = &self.stacks[i];
        let types = param_types(&pending.template);
        let (physical, attrs) = stack.names();
        let conditions = stack
            .op
            .as_ref()
            .map(|op| op.conditions().clone())
            .unwrap_or_default();
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
        let mut outputs = Vec::new();
        for (key, o) in pending
            .template
            .get("Outputs")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(c) = o.get("Condition").and_then(Value::as_str) {
                if conditions.get(c) == Some(&false) {
                    continue;
                }
            }
            let Ok(value) = template::resolve(o.get("Value").unwrap_or(&Value::Null), &scope)
            else {
                continue;
            };
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            let export = o
                .get("Export")
                .and_then(|e| e.get("Name"))
                .and_then(|n| template::resolve(n, &scope).ok())
                .and_then(|n| n.as_str().map(str::to_owned));
            outputs.push((key.clone(), value, export));
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
                // Health check settings and attributes change in place: the old group goes
                // once the new settings are accepted (same name: delete first, restore on error).
                let arn = previous.map(|p| p.physical.clone()).unwrap_or_default();
                let saved = previous.and_then(|p| elb.take(&p.physical));
                let created = elb
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
                        elb::health_from_template(&props),
                    )
                    .map_err(|e| {
                        if let Some(g) = saved.clone() {
                            elb.put_back(g);
                        }
                        e.message
                    });
                let created = created?;
                let arn = if arn.is_empty() {
                    created
                } else {
                    elb.rename(&created, &arn);
                    arn
                };
                let attributes: Vec<(String, String)> = props["TargetGroupAttributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| {
                        Some((
                            a.get("Key")?.as_str()?.to_owned(),
                            a.get("Value")
                                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))?,
                        ))
                    })
                    .collect();
                elb.set_attributes(&arn, &attributes);
                attrs.insert("TargetGroupArn".into(), arn.clone());
                attrs.insert("TargetGroupName".into(), name);
                attrs.insert(
                    "TargetGroupFullName".into(),
                    arn.rsplit(':').next().unwrap_or_default().to_owned(),
                );
                arn
            }
            "AWS::ElasticLoadBalancingV2::LoadBalancer" => {
                if let Some(p) = previous {
                    attrs.clone_from(&p.attrs);
                    p.physical.clone()
                } else {
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
                    let arn = elb
                        .create_load_balancer(env, &name)
                        .map_err(|e| e.message)?;
                    attrs.insert(
                        "DNSName".into(),
                        elb.dns_name(&arn).unwrap_or_default().to_owned(),
                    );
                    attrs.insert("LoadBalancerName".into(), name);
                    attrs.insert(
                        "LoadBalancerFullName".into(),
                        arn.split(":loadbalancer/")
                            .nth(1)
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    attrs.insert("CanonicalHostedZoneID".into(), "Z35SXDOTRQ7X7K".into());
                    attrs.insert("LoadBalancerArn".into(), arn.clone());
                    arn
                }
            }
            "AWS::ElasticLoadBalancingV2::Listener" => {
                if let Some(p) = previous {
                    elb.delete(&p.physical);
                }
                let lb = props
                    .get("LoadBalancerArn")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let default = props["DefaultActions"]
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(elb::action_from_template);
                let port = props
                    .get("Port")
                    .and_then(|p| p.as_i64().or_else(|| p.as_str()?.parse().ok()))
                    .unwrap_or(80);
                let protocol = props
                    .get("Protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("HTTP");
                let arn = elb
                    .create_listener(env, lb, port, protocol, default)
                    .map_err(|e| e.message)?;
                attrs.insert("ListenerArn".into(), arn.clone());
                arn
            }
            "AWS::IAM::Role" => {
                // Physical id = RoleName (or a generated one, at most 64 characters); the
                // `Arn` and `RoleId` attributes (AWS::IAM::Role return values).
                let name = props
                    .get("RoleName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| previous.map(|p| p.physical.clone()))
                    .unwrap_or_else(|| {
                        let g = generated(env);
                        g[g.len().saturating_sub(64)..].to_owned()
                    });
                let path = props.get("Path").and_then(Value::as_str).unwrap_or("/");
                attrs.insert(
                    "Arn".into(),
                    format!("arn:aws:iam::{}:role{path}{name}", env.account),
                );
                attrs.insert("RoleId".into(), format!("AROA{:016X}", env.ids.next_u64()));
                name
            }
            "AWS::Logs::LogGroup" => {
                let name = props
                    .get("LogGroupName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| previous.map(|p| p.physical.clone()))
                    .unwrap_or_else(|| generated(env));
                attrs.insert(
                    "Arn".into(),
                    env.arn("logs", &format!("log-group:{name}:*")),
                );
                name
            }
            "AWS::ElasticLoadBalancingV2::ListenerRule" => {
                // Host-header routing: requests for these hosts take the rule's action.
                if let Some(p) = previous {
                    elb.delete(&p.physical);
                }
                let hosts = elb::hosts_from_template(&props["Conditions"]);
                let action = props["Actions"]
                    .as_array()
                    .and_then(|a| a.iter().find_map(elb::action_from_template))
                    .ok_or("a listener rule needs a forward or fixed-response action")?;
                let priority = props
                    .get("Priority")
                    .and_then(|p| p.as_i64().or_else(|| p.as_str()?.parse().ok()))
                    .unwrap_or(1);
                let listener = props
                    .get("ListenerArn")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let arn = elb
                    .create_rule(env, listener, priority, hosts, action)
                    .map_err(|e| e.message)?;
                attrs.insert("RuleArn".into(), arn.clone());
                arn
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
            "AWS::ElasticLoadBalancingV2::TargetGroup"
            | "AWS::ElasticLoadBalancingV2::LoadBalancer"
            | "AWS::ElasticLoadBalancingV2::Listener"
            | "AWS::ElasticLoadBalancingV2::ListenerRule" => elb.delete(&r.physical),
            // Deleting a task definition resource deregisters the revision: INACTIVE
            // (field: aws/containers-roadmap#328, "the stack cleans up old task
            // definitions ... marked INACTIVE").
            "AWS::ECS::TaskDefinition" => {
                let _ = ecs.deregister(env, &r.physical);
            }
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
                let shown = if s.no_echo.contains(k) { MASKED } else { v };
                x.open("member")
                    .leaf("ParameterKey", k)
                    .leaf("ParameterValue", shown)
                    .close("member");
            }
            x.close("Parameters").open("Capabilities");
            for c in &s.capabilities {
                x.leaf("member", c);
            }
            x.close("Capabilities")
                .opt("RoleARN", s.role_arn.as_deref())
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
        // Newest first (bc:cfn DescribeStackEvents: "reverse chronological order"), in pages
        // with NextToken. AWS pages by size (1 MB); the number per page is UNVERIFIED, so
        // the simulator pages every EVENTS_PER_PAGE events to make clients follow NextToken.
        let start: usize = match p.get("NextToken") {
            Some(t) => t
                .strip_prefix("events-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| validation("Invalid NextToken"))?,
            None => 0,
        };
        let mut x = Xml::new();
        x.open("StackEvents");
        for e in s.events.iter().rev().skip(start).take(EVENTS_PER_PAGE) {
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
        let next = start + EVENTS_PER_PAGE;
        if next < s.events.len() {
            x.leaf("NextToken", format!("events-{next}"));
        }
        Ok(x.finish())
    }

    /// ValidateTemplate: the template's parameters, description, capabilities and
    /// transforms (bc:cfn `ValidateTemplateOutput`).
    fn validate_template(&self, p: &Params) -> ApiResult<String> {
        let body = template_body(p)?
            .ok_or_else(|| validation("Either Template URL or Template Body must be specified."))?;
        let template = parse_template(&body)?;
        let mut x = Xml::new();
        x.open("Parameters");
        for (k, d) in template
            .get("Parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            x.open("member")
                .leaf("ParameterKey", k)
                .opt("DefaultValue", d.get("Default").map(scalar_text))
                .leaf(
                    "NoEcho",
                    no_echo_parameters(&template).contains(k).to_string(),
                )
                .opt("Description", d.get("Description").and_then(Value::as_str))
                .close("member");
        }
        x.close("Parameters").opt(
            "Description",
            template.get("Description").and_then(Value::as_str),
        );
        capabilities_xml(&mut x, &template);
        Ok(x.finish())
    }

    /// GetTemplateSummary for a template or an existing stack (bc:cfn
    /// `GetTemplateSummaryOutput`); `aws cloudformation deploy` reads it.
    fn get_template_summary(&self, p: &Params) -> ApiResult<String> {
        let template = match (template_body(p)?, p.get("StackName")) {
            (Some(body), None) => parse_template(&body)?,
            (None, Some(name)) => self.stacks[self.stack_index(name)?].template.clone(),
            _ => {
                return Err(validation(
                    "Specify exactly one of TemplateBody, TemplateURL or StackName.",
                ))
            }
        };
        let mut x = Xml::new();
        x.open("Parameters");
        let no_echo = no_echo_parameters(&template);
        for (k, d) in template
            .get("Parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            x.open("member")
                .leaf("ParameterKey", k)
                .opt("DefaultValue", d.get("Default").map(scalar_text))
                .leaf(
                    "ParameterType",
                    d.get("Type").and_then(Value::as_str).unwrap_or("String"),
                )
                .leaf("NoEcho", no_echo.contains(k).to_string())
                .opt("Description", d.get("Description").and_then(Value::as_str))
                .open("ParameterConstraints")
                .close("ParameterConstraints")
                .close("member");
        }
        x.close("Parameters").opt(
            "Description",
            template.get("Description").and_then(Value::as_str),
        );
        capabilities_xml(&mut x, &template);
        x.open("ResourceTypes");
        let mut types: Vec<&str> = template
            .get("Resources")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(_, r)| r.get("Type").and_then(Value::as_str))
            .collect();
        types.sort_unstable();
        types.dedup();
        for t in types {
            x.leaf("member", t);
        }
        x.close("ResourceTypes").leaf(
            "Version",
            template
                .get("AWSTemplateFormatVersion")
                .and_then(Value::as_str)
                .unwrap_or("2010-09-09"),
        );
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
        let created_here = self.stacks[i].status == "REVIEW_IN_PROGRESS"
            && self.stacks[i].events.is_empty()
            && !self
                .change_sets
                .iter()
                .any(|c| c.stack_id == self.stacks[i].id);
        let checked = self.proposal(i, p).and_then(|(body, template, params)| {
            let caps = capabilities(p)?;
            check_capabilities(&template, &caps, true)?;
            if p.get("ChangeSetType") == Some("CREATE")
                && p.members("Parameters")
                    .iter()
                    .any(|m| m.flag("UsePreviousValue"))
            {
                return Err(validation(
                    "Cannot specify UsePreviousValue on Parameters when ChangeSetType is CREATE",
                ));
            }
            let changes = self.diff(env, i, &template, &params)?;
            Ok((body, template, params, caps, changes))
        });
        let (body, template, params, caps, changes) = match checked {
            Ok(v) => v,
            Err(e) => {
                // A stack this call made only for the change set goes with it.
                if created_here {
                    self.stacks.remove(i);
                }
                return Err(e);
            }
        };
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
            capabilities: caps,
            role_arn: p.get("RoleARN").map(str::to_owned),
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
        // bc:cfn ChangeSetNotFoundException: code ChangeSetNotFound, HTTP 404.
        found.ok_or_else(|| ApiError {
            status: 404,
            ..ApiError::new(
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
        // Masked as in DescribeStacks (AWS does not say; LocalStack masks here too — UNVERIFIED).
        let no_echo = no_echo_parameters(&cs.template);
        for (k, v) in &cs.params {
            let shown = if no_echo.contains(k) { MASKED } else { v };
            x.open("member")
                .leaf("ParameterKey", k)
                .leaf("ParameterValue", shown)
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
                // Field-quoted form (aws/amazon-chime-sdk-js#1089); bc:cfn
                // InvalidChangeSetStatusException.
                format!("ChangeSet [{id}] cannot be executed in its current execution status of [{execution}]"),
            ));
        }
        let cs = self
            .change_sets
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| validation("change set vanished"))?;
        let i = self.stack_index(&cs.stack_id)?;
        let verb = if self.stacks[i].status == "REVIEW_IN_PROGRESS" {
            ops::Verb::Create
        } else {
            self.updatable(i)?;
            ops::Verb::Update
        };
        let pending = Pending {
            body: cs.body.clone(),
            template: cs.template.clone(),
            params: cs.params.clone(),
        };
        let (stack_id, caps, role) = (
            cs.stack_id.clone(),
            cs.capabilities.clone(),
            cs.role_arn.clone(),
        );
        self.stacks[i].capabilities = caps;
        if role.is_some() {
            self.stacks[i].role_arn = role;
        }
        self.start(env, i, pending, verb)?;
        if let Some(op) = self.stacks[i].op.as_mut() {
            op.change_set = Some(id.clone());
        }
        // "CloudFormation deletes all other change sets associated with the stack because
        // they aren't valid for the updated stack" (bc:cfn ExecuteChangeSet).
        self.change_sets
            .retain(|c| c.stack_id != stack_id || c.id == id);
        if let Some(c) = self.change_sets.iter_mut().find(|c| c.id == id) {
            c.execution = "EXECUTE_IN_PROGRESS";
        }
        Ok(String::new())
    }

    /// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListChangeSets.html
    /// (bc:cfn ListChangeSets): StackName (name or ARN) required; `Summaries` of
    /// ChangeSetSummary (ChangeSetId, ChangeSetName, StackId, StackName, ExecutionStatus,
    /// Status, StatusReason, CreationTime, Description, IncludeNestedStacks); "Returns the ID
    /// and status of each active change set for a stack" — a deleted one is gone.
    fn list_change_sets(&self, env: &Env, p: &Params) -> String {
        let stack = p.get("StackName").unwrap_or_default();
        let mut x = Xml::new();
        x.open("Summaries");
        for cs in self
            .change_sets
            .iter()
            .filter(|c| c.stack_name == stack || c.stack_id == stack)
        {
            let (status, execution, reason) = cs.status(env.now);
            x.open("member")
                .leaf("StackId", &cs.stack_id)
                .leaf("StackName", &cs.stack_name)
                .leaf("ChangeSetId", &cs.id)
                .leaf("ChangeSetName", &cs.name)
                .leaf("ExecutionStatus", execution)
                .leaf("Status", status)
                .opt("StatusReason", reason)
                .leaf("CreationTime", iso8601(cs.created_at))
                .opt("Description", cs.description.as_deref())
                .leaf("IncludeNestedStacks", "false")
                .close("member");
        }
        x.close("Summaries");
        x.finish()
    }

    /// DeleteChangeSet refuses a change set CloudFormation is still creating or executing:
    /// `InvalidChangeSetStatus` — "the change set status might be CREATE_IN_PROGRESS, or the
    /// stack status might be UPDATE_IN_PROGRESS" (bc:cfn DeleteChangeSet,
    /// InvalidChangeSetStatusException).
    fn delete_change_set(&mut self, env: &mut Env, p: &Params) -> ApiResult<String> {
        let (id, status, execution) = {
            let cs = self.change_set(p.required("ChangeSetName")?, p.get("StackName"))?;
            let (status, execution, _) = cs.status(env.now);
            (cs.id.clone(), status, execution)
        };
        if matches!(status, "CREATE_PENDING" | "CREATE_IN_PROGRESS")
            || execution == "EXECUTE_IN_PROGRESS"
        {
            return Err(ApiError::new(
                "InvalidChangeSetStatus",
                format!("ChangeSet [{id}] cannot be deleted in its current status of [{status}] and execution status of [{execution}]"),
            ));
        }
        self.change_sets.retain(|c| c.id != id);
        Ok(String::new())
    }
}

/// The "CloudFormation Stack Status Change" event of a stack's new status, as CloudFormation
/// sends it to EventBridge (CloudFormation User Guide, "Stack Status Change event detail"):
/// `resources` is the stack id, `detail` has `stack-id`, `status-details` (`status`,
/// `status-reason`) and `client-request-token`.
pub(crate) fn status_change(env: &mut Env, stack_id: &str, status: &str, reason: Option<&str>) {
    env.emit(
        "aws.cloudformation",
        "CloudFormation Stack Status Change",
        vec![stack_id.to_owned()],
        serde_json::json!({
            "stack-id": stack_id,
            "status-details": {"status": status, "status-reason": reason.unwrap_or_default()},
            "client-request-token": "",
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change_set(failed: Option<String>) -> ChangeSet {
        ChangeSet {
            id: "cs".into(),
            name: "cs".into(),
            stack_id: "s".into(),
            stack_name: "s".into(),
            body: String::new(),
            template: json!({}),
            params: BTreeMap::new(),
            changes: Vec::new(),
            created_at: 100.0,
            ready_at: 108.0,
            failed,
            execution: "AVAILABLE",
            description: None,
            capabilities: Vec::new(),
            role_arn: None,
        }
    }

    // bc:cfn ChangeSetStatus / ExecutionStatus: creation is asynchronous, UNAVAILABLE until done.
    #[test]
    fn change_sets_go_pending_then_in_progress_then_complete_or_failed() {
        let cs = change_set(None);
        assert_eq!(cs.status(100.0), ("CREATE_PENDING", "UNAVAILABLE", None));
        assert_eq!(
            cs.status(103.0),
            ("CREATE_IN_PROGRESS", "UNAVAILABLE", None)
        );
        assert_eq!(cs.status(108.0), ("CREATE_COMPLETE", "AVAILABLE", None));
        let empty = change_set(Some(NO_CHANGES.into()));
        assert_eq!(
            empty.status(200.0),
            ("FAILED", "UNAVAILABLE", Some(NO_CHANGES))
        );
    }

    // bc:cfn DeleteChangeSet: InvalidChangeSetStatus while CloudFormation still creates it;
    // deleted once created.
    #[test]
    fn a_change_set_being_created_cannot_be_deleted() {
        let mut cfn = Cfn::default();
        cfn.change_sets.push(change_set(None));
        let mut ids = crate::ids::Ids::new(1);
        let mut events = crate::env::Events::default();
        let scenario = crate::scenario::Scenario::default();
        let params = Params(
            [("ChangeSetName", "cs"), ("StackName", "s")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        for (now, refused) in [(101.0, true), (104.0, true), (109.0, false)] {
            let mut env = Env {
                now,
                ids: &mut ids,
                events: &mut events,
                scenario: &scenario,
                region: "us-east-1",
                account: "123456789012",
            };
            let result = cfn.delete_change_set(&mut env, &params);
            assert_eq!(
                result.as_ref().err().map(|e| e.code.as_ref()),
                refused.then_some("InvalidChangeSetStatus"),
                "at {now}"
            );
        }
        assert!(cfn.change_sets.is_empty());
    }

    // bc:cfn CreateStackInput.Capabilities.
    #[test]
    fn capabilities_follow_the_template() {
        let role = json!({"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {}}}});
        assert_eq!(required_capabilities(&role, false), ["CAPABILITY_IAM"]);
        let named = json!({"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "x"}}}});
        assert_eq!(
            required_capabilities(&named, false),
            ["CAPABILITY_NAMED_IAM"]
        );
        let policy = json!({"Resources": {"P": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyName": "p"}}}});
        assert_eq!(required_capabilities(&policy, false), ["CAPABILITY_IAM"]);
        let sam = json!({"Transform": "AWS::Serverless-2016-10-31", "Resources": {"T": {"Type": "AWS::SNS::Topic"}}});
        assert_eq!(
            required_capabilities(&sam, false),
            ["CAPABILITY_AUTO_EXPAND"]
        );
        assert!(
            required_capabilities(&sam, true).is_empty(),
            "not for change sets"
        );
        let iam = vec!["CAPABILITY_NAMED_IAM".to_owned()];
        assert!(
            check_capabilities(&role, &iam, false).is_ok(),
            "NAMED_IAM covers IAM"
        );
        let e = check_capabilities(&named, &["CAPABILITY_IAM".into()], false).unwrap_err();
        assert_eq!(e.code, "InsufficientCapabilitiesException");
        assert_eq!(e.message, "Requires capabilities : [CAPABILITY_NAMED_IAM]");
    }
}
