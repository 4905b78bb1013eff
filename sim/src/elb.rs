//! Elastic Load Balancing v2: load balancers, listeners and host-header rules that route
//! requests to target groups, and target health that follows each group's own health check
//! against what the ECS tasks registered with it answer (awsvpc tasks register by IP).
//!
//! Behaviour (ALB User Guide, "Health checks for your target groups"; botocore `elbv2`
//! shapes; AWS-BEHAVIOUR.md §8):
//! - health check settings and their defaults (bc:elb `CreateTargetGroupInput`): path `/`,
//!   interval 30 s, timeout 6 s, healthy threshold 5, unhealthy threshold 2, matcher `200`;
//!   `deregistration_delay.timeout_seconds` 300 (bc:elb `TargetGroupAttribute.Key`);
//! - a new target is `initial` — `Elb.RegistrationInProgress`, then
//!   `Elb.InitialHealthChecking` — and "must pass one health check to be considered
//!   healthy"; one that answers a code outside the matcher `UnhealthyThresholdCount` times
//!   is `unhealthy`, `Target.ResponseCodeMismatch` ("Health checks failed with these codes:
//!   [<code>]");
//! - a deregistered target is `draining` (`Target.DeregistrationInProgress`) for the
//!   deregistration delay;
//! - requests go to healthy targets; when none is healthy the ALB "fails open" to all of them.
//!
//! How long registration takes and when the first check runs are not documented
//! (UNVERIFIED): here registration takes [`REGISTRATION_SECONDS`] and checks run every
//! interval after it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ecs::{Ecs, TaskTarget};
use crate::env::Env;
use crate::scenario::Scenario;
use crate::wire::{ApiError, ApiResult, Params, Xml};

/// The XML namespace of ELBv2 (API version 2015-12-01).
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// Simulated seconds from a target's registration to its first health check window
/// (UNVERIFIED: a simulator choice).
pub const REGISTRATION_SECONDS: f64 = 5.0;

/// The ELBv2 part of the account.
#[derive(Debug, Default)]
pub struct Elb {
    target_groups: BTreeMap<String, TargetGroup>,
    load_balancers: BTreeMap<String, LoadBalancer>,
    listeners: BTreeMap<String, Listener>,
    rules: Vec<Rule>,
}

/// A target group's health check (bc:elb `TargetGroup` health check members).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `HealthCheckPath`.
    pub path: String,
    /// `HealthCheckIntervalSeconds`.
    pub interval: f64,
    /// `HealthCheckTimeoutSeconds`.
    pub timeout: f64,
    /// `HealthyThresholdCount`.
    pub healthy_threshold: u32,
    /// `UnhealthyThresholdCount`.
    pub unhealthy_threshold: u32,
    /// `Matcher.HttpCode`: `200`, `200,202` or `200-299`.
    pub matcher: String,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/".into(),
            interval: 30.0,
            timeout: 6.0,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: "200".into(),
        }
    }
}

impl HealthCheck {
    /// Whether `code` matches the matcher.
    pub fn matches(&self, code: u16) -> bool {
        self.matcher.split(',').any(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                    (a..=b).contains(&code)
                }
                None => part.parse() == Ok(code),
            }
        })
    }
}

/// A target group as it was, taken out during an update.
#[derive(Debug, Clone)]
pub struct TargetGroupState(TargetGroup);

#[derive(Debug, Clone)]
struct TargetGroup {
    arn: String,
    name: String,
    protocol: String,
    port: i64,
    vpc_id: String,
    health: HealthCheck,
    attributes: BTreeMap<String, String>,
}

impl TargetGroup {
    fn deregistration_delay(&self) -> f64 {
        self.attributes
            .get("deregistration_delay.timeout_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300.0)
    }
}

#[derive(Debug, Clone)]
struct LoadBalancer {
    arn: String,
    name: String,
    dns_name: String,
}

/// What a listener or rule does with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward to a target group.
    Forward(String),
    /// Forward to several target groups by weight (`ForwardConfig.TargetGroups` with
    /// `Weight`: "the load balancer routes requests to each target group in proportion to
    /// its weight", ALB User Guide, "Listener rules"); how ECS's blue/green, linear and
    /// canary deployments shift traffic.
    Weighted(Vec<(String, u32)>),
    /// Answer with a fixed response.
    Fixed {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
}

#[derive(Debug, Clone)]
struct Listener {
    arn: String,
    load_balancer: String,
    port: i64,
    protocol: String,
    default: Option<Action>,
}

#[derive(Debug, Clone)]
struct Rule {
    arn: String,
    listener: String,
    priority: i64,
    hosts: Vec<String>,
    action: Action,
}

/// What a target's health check sees, from registration on: the code its app answers and
/// when it turns healthy or unhealthy.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// When the target was registered.
    pub registered_at: f64,
    /// The code the app answers on the health check path.
    pub code: u16,
    /// When it is `healthy` (passing answers).
    pub healthy_at: Option<f64>,
    /// When it is `unhealthy` (failing answers).
    pub unhealthy_at: Option<f64>,
}

impl Verdict {
    /// (state, reason, description) at `now`.
    pub fn state_at(&self, now: f64) -> (&'static str, Option<&'static str>, Option<String>) {
        if now < self.registered_at + REGISTRATION_SECONDS {
            return (
                "initial",
                Some("Elb.RegistrationInProgress"),
                Some("Target registration is in progress".into()),
            );
        }
        if self.healthy_at.is_some_and(|t| now >= t) {
            return ("healthy", None, None);
        }
        if self.unhealthy_at.is_some_and(|t| now >= t) {
            return (
                "unhealthy",
                Some("Target.ResponseCodeMismatch"),
                Some(format!(
                    "Health checks failed with these codes: [{}]",
                    self.code
                )),
            );
        }
        (
            "initial",
            Some("Elb.InitialHealthChecking"),
            Some("Initial health checks in progress".into()),
        )
    }

    /// Healthy at `now`.
    pub fn healthy(&self, now: f64) -> bool {
        self.healthy_at.is_some_and(|t| now >= t)
    }
}

fn not_found(what: &str, arn: &str) -> ApiError {
    ApiError::new(
        format!("{what}NotFound"),
        format!("{what} '{arn}' not found"),
    )
}

/// Actions from the Query members `Key.member.N.*` (Type, TargetGroupArn,
/// FixedResponseConfig.StatusCode/MessageBody, ForwardConfig.TargetGroups.member.1.TargetGroupArn).
fn actions(p: &Params, key: &str) -> Vec<Action> {
    p.members(key)
        .iter()
        .filter_map(|a| match a.get("Type") {
            Some("forward") => a
                .get("TargetGroupArn")
                .or_else(|| a.get("ForwardConfig.TargetGroups.member.1.TargetGroupArn"))
                .map(|t| Action::Forward(t.to_owned())),
            Some("fixed-response") => Some(Action::Fixed {
                status: a
                    .get("FixedResponseConfig.StatusCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(503),
                body: a
                    .get("FixedResponseConfig.MessageBody")
                    .unwrap_or_default()
                    .to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// One action as DescribeListeners and DescribeRules answer it (`Type`, `Order`, and the
/// target group or the fixed response).
fn action_xml(x: &mut Xml, a: &Action) {
    x.open("member");
    match a {
        Action::Forward(tg) => {
            x.leaf("Type", "forward")
                .leaf("Order", "1")
                .leaf("TargetGroupArn", tg);
        }
        Action::Weighted(groups) => {
            x.leaf("Type", "forward")
                .leaf("Order", "1")
                .open("ForwardConfig")
                .open("TargetGroups");
            for (tg, weight) in groups {
                x.open("member")
                    .leaf("TargetGroupArn", tg)
                    .leaf("Weight", weight.to_string())
                    .close("member");
            }
            x.close("TargetGroups").close("ForwardConfig");
        }
        Action::Fixed { status, body } => {
            x.leaf("Type", "fixed-response")
                .leaf("Order", "1")
                .open("FixedResponseConfig")
                .leaf("StatusCode", status.to_string())
                .leaf("MessageBody", body)
                .close("FixedResponseConfig");
        }
    }
    x.close("member");
}

/// An action from a CloudFormation `Actions`/`DefaultActions` entry.
pub fn action_from_template(a: &Value) -> Option<Action> {
    match a.get("Type").and_then(Value::as_str)? {
        "forward" => a
            .get("TargetGroupArn")
            .and_then(Value::as_str)
            .or_else(|| {
                a.pointer("/ForwardConfig/TargetGroups/0/TargetGroupArn")
                    .and_then(Value::as_str)
            })
            .map(|t| Action::Forward(t.to_owned())),
        "fixed-response" => {
            let c = a.get("FixedResponseConfig")?;
            Some(Action::Fixed {
                status: c
                    .get("StatusCode")
                    .and_then(|s| {
                        s.as_str()
                            .and_then(|s| s.parse().ok())
                            .or(s.as_u64().map(|n| n as u16))
                    })
                    .unwrap_or(503),
                body: c
                    .get("MessageBody")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        }
        _ => None,
    }
}

/// The host-header values of CloudFormation `Conditions` (`HostHeaderConfig.Values` or the
/// older `Values`).
pub fn hosts_from_template(conditions: &Value) -> Vec<String> {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["Field"] == "host-header")
        .flat_map(|c| {
            c["HostHeaderConfig"]["Values"]
                .as_array()
                .or(c["Values"].as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

impl Elb {
    /// Dispatches one Query operation; returns the result XML.
    pub fn call(
        &mut self,
        env: &mut Env,
        ecs: &Ecs,
        action: &str,
        p: &Params,
    ) -> ApiResult<String> {
        match action {
            "CreateTargetGroup" => {
                let mut health = HealthCheck::default();
                apply_health_params(&mut health, p)?;
                let arn = self.create_target_group(
                    env,
                    p.required("Name")?,
                    p.get("Protocol").unwrap_or("HTTP"),
                    p.get("Port").and_then(|v| v.parse().ok()).unwrap_or(80),
                    p.get("VpcId").unwrap_or("vpc-00000000"),
                    health,
                )?;
                Ok(self.groups_xml([arn.as_str()]))
            }
            "ModifyTargetGroup" => {
                let arn = p.required("TargetGroupArn")?;
                let g = self
                    .target_groups
                    .get_mut(arn)
                    .ok_or_else(|| not_found("TargetGroup", arn))?;
                apply_health_params(&mut g.health, p)?;
                Ok(self.groups_xml([arn]))
            }
            "DescribeTargetGroups" => {
                let arns = p.strings("TargetGroupArns");
                let names = p.strings("Names");
                let found: Vec<String> = self
                    .target_groups
                    .values()
                    .filter(|g| {
                        (arns.is_empty() && names.is_empty())
                            || arns.contains(&g.arn)
                            || names.contains(&g.name)
                    })
                    .map(|g| g.arn.clone())
                    .collect();
                if found.len() < arns.len() + names.len() {
                    return Err(ApiError::new(
                        "TargetGroupNotFound",
                        "One or more target groups not found",
                    ));
                }
                Ok(self.groups_xml(found.iter().map(String::as_str)))
            }
            "ModifyTargetGroupAttributes" => {
                let arn = p.required("TargetGroupArn")?;
                let g = self
                    .target_groups
                    .get_mut(arn)
                    .ok_or_else(|| not_found("TargetGroup", arn))?;
                for a in p.members("Attributes") {
                    let (Some(k), Some(v)) = (a.get("Key"), a.get("Value")) else {
                        continue;
                    };
                    if k == "deregistration_delay.timeout_seconds"
                        && !v.parse::<u32>().is_ok_and(|n| n <= 3600)
                    {
                        return Err(ApiError::new(
                            "InvalidConfigurationRequest",
                            format!("The value of '{k}' must be between 0 and 3600"),
                        ));
                    }
                    g.attributes.insert(k.to_owned(), v.to_owned());
                }
                Ok(Self::attributes_xml(g))
            }
            "DescribeTargetGroupAttributes" => {
                let arn = p.required("TargetGroupArn")?;
                let g = self
                    .target_groups
                    .get(arn)
                    .ok_or_else(|| not_found("TargetGroup", arn))?;
                Ok(Self::attributes_xml(g))
            }
            "CreateLoadBalancer" => {
                let arn = self.create_load_balancer(env, p.required("Name")?)?;
                Ok(self.load_balancers_xml([arn.as_str()]))
            }
            // DescribeLoadBalancers: those named by `LoadBalancerArns` or `Names`, else all;
            // one that does not exist is LoadBalancerNotFound (ELBv2 API reference,
            // https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeLoadBalancers.html).
            "DescribeLoadBalancers" => {
                let mut arns = p.strings("LoadBalancerArns");
                let mut names = p.strings("Names");
                arns.sort();
                arns.dedup();
                names.sort();
                names.dedup();
                let found: Vec<String> = self
                    .load_balancers
                    .values()
                    .filter(|l| {
                        (arns.is_empty() && names.is_empty())
                            || arns.contains(&l.arn)
                            || names.contains(&l.name)
                    })
                    .map(|l| l.arn.clone())
                    .collect();
                let missing = arns.iter().any(|a| !self.load_balancers.contains_key(a))
                    || names
                        .iter()
                        .any(|n| !self.load_balancers.values().any(|l| &l.name == n));
                if missing {
                    return Err(ApiError::new(
                        "LoadBalancerNotFound",
                        "One or more load balancers not found",
                    ));
                }
                Ok(self.load_balancers_xml(found.iter().map(String::as_str)))
            }
            "CreateListener" => {
                let lb = p.required("LoadBalancerArn")?;
                let default = actions(p, "DefaultActions").into_iter().next();
                let arn = self.create_listener(
                    env,
                    lb,
                    p.get("Port").and_then(|v| v.parse().ok()).unwrap_or(80),
                    p.get("Protocol").unwrap_or("HTTP"),
                    default,
                )?;
                let l = &self.listeners[&arn];
                let mut x = Xml::new();
                x.open("Listeners")
                    .open("member")
                    .leaf("ListenerArn", &l.arn)
                    .leaf("LoadBalancerArn", &l.load_balancer)
                    .leaf("Port", l.port.to_string())
                    .leaf("Protocol", &l.protocol)
                    .close("member")
                    .close("Listeners");
                Ok(x.finish())
            }
            "CreateRule" => {
                let listener = p.required("ListenerArn")?;
                let priority = p
                    .required("Priority")?
                    .parse()
                    .map_err(|_| ApiError::new("ValidationError", "Priority must be a number"))?;
                let mut hosts = Vec::new();
                for c in p.members("Conditions") {
                    if c.get("Field") == Some("host-header") {
                        for n in 1.. {
                            let v = c
                                .get(&format!("HostHeaderConfig.Values.member.{n}"))
                                .or_else(|| c.get(&format!("Values.member.{n}")));
                            match v {
                                Some(v) => hosts.push(v.to_owned()),
                                None => break,
                            }
                        }
                    }
                }
                let action = actions(p, "Actions").into_iter().next().ok_or_else(|| {
                    ApiError::new(
                        "ValidationError",
                        "A rule needs a forward or fixed-response action",
                    )
                })?;
                let arn = self.create_rule(env, listener, priority, hosts, action)?;
                let mut x = Xml::new();
                x.open("Rules")
                    .open("member")
                    .leaf("RuleArn", &arn)
                    .leaf("Priority", priority.to_string())
                    .close("member")
                    .close("Rules");
                Ok(x.finish())
            }
            "DescribeListeners" => self.describe_listeners(p),
            "DescribeRules" => self.describe_rules(p),
            "DescribeTargetHealth" => self.describe_target_health(env, ecs, p),
            _ => Err(ApiError::new(
                "InvalidAction",
                format!("slipway-sim does not implement ELBv2 {action}"),
            )),
        }
    }

    /// Creates a target group and returns its ARN. The same name again with the same
    /// settings returns the existing group; with other settings it is `DuplicateTargetGroupName`
    /// (bc:elb CreateTargetGroup: "If you attempt to create multiple target groups with the
    /// same settings, each call succeeds").
    pub fn create_target_group(
        &mut self,
        env: &mut Env,
        name: &str,
        protocol: &str,
        port: i64,
        vpc_id: &str,
        health: HealthCheck,
    ) -> ApiResult<String> {
        if name.is_empty()
            || name.len() > 32
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ApiError::new(
                "ValidationError",
                format!("Target group name '{name}' can have a maximum of 32 characters, only alphanumeric characters and hyphens"),
            ));
        }
        if let Some(g) = self.target_groups.values().find(|g| g.name == name) {
            if g.port == port && g.protocol == protocol && g.health == health {
                return Ok(g.arn.clone());
            }
            return Err(ApiError::new(
                "DuplicateTargetGroupName",
                format!("A target group with the same name '{name}' exists, but with different settings"),
            ));
        }
        let suffix = env.ids.next_u64();
        let arn = env.arn(
            "elasticloadbalancing",
            &format!("targetgroup/{name}/{suffix:016x}"),
        );
        self.target_groups.insert(
            arn.clone(),
            TargetGroup {
                arn: arn.clone(),
                name: name.to_owned(),
                protocol: protocol.to_owned(),
                port,
                vpc_id: vpc_id.to_owned(),
                health,
                attributes: BTreeMap::new(),
            },
        );
        Ok(arn)
    }

    /// Takes a target group out (to put it back with [`Elb::put_back`] if its replacement fails).
    pub fn take(&mut self, arn: &str) -> Option<TargetGroupState> {
        self.target_groups.remove(arn).map(TargetGroupState)
    }

    /// Puts back a target group [`Elb::take`] took.
    pub fn put_back(&mut self, g: TargetGroupState) {
        self.target_groups.insert(g.0.arn.clone(), g.0);
    }

    /// Gives target group `from` the ARN `to` (an in-place update keeps its ARN).
    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(mut g) = self.target_groups.remove(from) {
            g.arn = to.to_owned();
            self.target_groups.insert(to.to_owned(), g);
        }
    }

    /// Sets target group attributes (CloudFormation `TargetGroupAttributes`).
    pub fn set_attributes(&mut self, arn: &str, attributes: &[(String, String)]) {
        if let Some(g) = self.target_groups.get_mut(arn) {
            for (k, v) in attributes {
                g.attributes.insert(k.clone(), v.clone());
            }
        }
    }

    /// Creates a load balancer; returns its ARN. Its DNS name routes to its listeners'
    /// default actions.
    pub fn create_load_balancer(&mut self, env: &mut Env, name: &str) -> ApiResult<String> {
        if name.is_empty() || name.len() > 32 {
            return Err(ApiError::new(
                "ValidationError",
                format!("Load balancer name '{name}' must have at most 32 characters"),
            ));
        }
        if let Some(lb) = self.load_balancers.values().find(|l| l.name == name) {
            return Ok(lb.arn.clone());
        }
        let id = env.ids.next_u64();
        let arn = env.arn(
            "elasticloadbalancing",
            &format!("loadbalancer/app/{name}/{id:016x}"),
        );
        let dns_name = format!(
            "{}-{}.{}.elb.amazonaws.com",
            name.to_ascii_lowercase(),
            id % 10_000_000_000,
            env.region
        );
        self.load_balancers.insert(
            arn.clone(),
            LoadBalancer {
                arn: arn.clone(),
                name: name.to_owned(),
                dns_name,
            },
        );
        Ok(arn)
    }

    /// A load balancer's DNS name.
    pub fn dns_name(&self, arn: &str) -> Option<&str> {
        self.load_balancers.get(arn).map(|l| l.dns_name.as_str())
    }

    /// Creates a listener; returns its ARN.
    pub fn create_listener(
        &mut self,
        env: &mut Env,
        load_balancer: &str,
        port: i64,
        protocol: &str,
        default: Option<Action>,
    ) -> ApiResult<String> {
        if !self.load_balancers.contains_key(load_balancer) {
            return Err(not_found("LoadBalancer", load_balancer));
        }
        let arn = format!(
            "{}/{:016x}",
            load_balancer.replace(":loadbalancer/", ":listener/"),
            env.ids.next_u64()
        );
        self.listeners.insert(
            arn.clone(),
            Listener {
                arn: arn.clone(),
                load_balancer: load_balancer.to_owned(),
                port,
                protocol: protocol.to_owned(),
                default,
            },
        );
        Ok(arn)
    }

    /// Creates a listener rule; returns its ARN.
    pub fn create_rule(
        &mut self,
        env: &mut Env,
        listener: &str,
        priority: i64,
        hosts: Vec<String>,
        action: Action,
    ) -> ApiResult<String> {
        if !self.listeners.contains_key(listener) {
            return Err(not_found("Listener", listener));
        }
        if self
            .rules
            .iter()
            .any(|r| r.listener == listener && r.priority == priority)
        {
            return Err(ApiError::new(
                "PriorityInUse",
                format!("Priority '{priority}' is currently in use"),
            ));
        }
        let arn = format!(
            "{}/{:016x}",
            listener.replace(":listener/", ":listener-rule/"),
            env.ids.next_u64()
        );
        self.rules.push(Rule {
            arn: arn.clone(),
            listener: listener.to_owned(),
            priority,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            action,
        });
        self.rules.sort_by_key(|r| r.priority);
        Ok(arn)
    }

    /// Sets a rule's forward action to these target groups and weights (what ECS does with
    /// ModifyRule when it shifts traffic); only one group of weight above 0 is a plain forward.
    /// `false` when there is no such rule.
    pub fn set_forward(&mut self, rule: &str, groups: Vec<(String, u32)>) -> bool {
        let Some(r) = self.rules.iter_mut().find(|r| r.arn == rule) else {
            return false;
        };
        let live: Vec<&(String, u32)> = groups.iter().filter(|(_, w)| *w > 0).collect();
        r.action = match live.as_slice() {
            [(tg, _)] => Action::Forward(tg.clone()),
            _ => Action::Weighted(groups),
        };
        true
    }

    /// Whether a rule exists.
    pub fn has_rule(&self, arn: &str) -> bool {
        self.rules.iter().any(|r| r.arn == arn)
    }

    /// Forgets a load balancer, listener, rule or target group (stack deletion).
    pub fn delete(&mut self, arn: &str) {
        self.target_groups.remove(arn);
        self.load_balancers.remove(arn);
        self.listeners.remove(arn);
        self.rules.retain(|r| r.arn != arn);
    }

    /// Where a request for `host` goes: the first listener rule (by priority) whose
    /// host-header condition matches, else the default action of the listener of the load
    /// balancer whose DNS name is `host`. `None`: no load balancer answers for it.
    pub fn route(&self, host: &str) -> Option<Action> {
        let host = host.to_ascii_lowercase();
        if let Some(r) = self.rules.iter().find(|r| {
            r.hosts.iter().any(|h| match h.strip_prefix('*') {
                Some(suffix) => host.ends_with(suffix),
                None => *h == host,
            })
        }) {
            return Some(r.action.clone());
        }
        let lb = self.load_balancers.values().find(|l| l.dns_name == host)?;
        self.listeners
            .values()
            .find(|l| l.load_balancer == lb.arn)
            .and_then(|l| l.default.clone())
    }

    /// What the health check of `target_group` sees of a target registered at
    /// `registered_at` whose app answers `answer(path)`.
    pub fn verdict(
        &self,
        target_group: &str,
        registered_at: f64,
        answer: impl Fn(&str) -> u16,
    ) -> Option<Verdict> {
        let g = self.target_groups.get(target_group)?;
        let h = &g.health;
        let code = answer(&h.path);
        let first = registered_at + REGISTRATION_SECONDS + h.interval;
        let (healthy_at, unhealthy_at) = if h.matches(code) {
            (Some(first), None)
        } else {
            (
                None,
                Some(first + h.interval * f64::from(h.unhealthy_threshold.max(1) - 1)),
            )
        };
        Some(Verdict {
            registered_at,
            code,
            healthy_at,
            unhealthy_at,
        })
    }

    /// The deregistration delay of a target group, seconds (300 when unknown).
    pub fn deregistration_delay(&self, target_group: &str) -> f64 {
        self.target_groups
            .get(target_group)
            .map_or(300.0, TargetGroup::deregistration_delay)
    }

    /// Whether a target group exists.
    pub fn has_target_group(&self, arn: &str) -> bool {
        self.target_groups.contains_key(arn)
    }

    fn attributes_xml(g: &TargetGroup) -> String {
        let mut all = BTreeMap::from([(
            "deregistration_delay.timeout_seconds".to_owned(),
            "300".to_owned(),
        )]);
        all.insert("stickiness.enabled".into(), "false".into());
        all.insert("load_balancing.algorithm.type".into(), "round_robin".into());
        all.extend(g.attributes.clone());
        let mut x = Xml::new();
        x.open("Attributes");
        for (k, v) in all {
            x.open("member")
                .leaf("Key", k)
                .leaf("Value", v)
                .close("member");
        }
        x.close("Attributes");
        x.finish()
    }

    /// DescribeListeners: the listeners of `LoadBalancerArn`, or those named in `ListenerArns`
    /// — "You must specify either a load balancer or one or more listeners"; unknown ones are
    /// `LoadBalancerNotFound` / `ListenerNotFound` (ELBv2 API reference, DescribeListeners,
    /// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeListeners.html).
    /// One page: the simulator never has more than the page size (default 400).
    fn describe_listeners(&self, p: &Params) -> ApiResult<String> {
        let arns = p.strings("ListenerArns");
        let lb = p.get("LoadBalancerArn");
        let listeners: Vec<&Listener> = match (lb, arns.is_empty()) {
            (Some(lb), true) => {
                if !self.load_balancers.contains_key(lb) {
                    return Err(not_found("LoadBalancer", lb));
                }
                let mut found: Vec<&Listener> = self
                    .listeners
                    .values()
                    .filter(|l| l.load_balancer == lb)
                    .collect();
                found.sort_by_key(|l| l.port);
                found
            }
            (None, false) => arns
                .iter()
                .map(|a| {
                    self.listeners
                        .get(a)
                        .ok_or_else(|| not_found("Listener", a))
                })
                .collect::<ApiResult<_>>()?,
            _ => {
                return Err(ApiError::new(
                    "ValidationError",
                    "You must specify either a load balancer or one or more listeners",
                ))
            }
        };
        let mut x = Xml::new();
        x.open("Listeners");
        for l in listeners {
            x.open("member")
                .leaf("ListenerArn", &l.arn)
                .leaf("LoadBalancerArn", &l.load_balancer)
                .leaf("Port", l.port.to_string())
                .leaf("Protocol", &l.protocol)
                .open("DefaultActions");
            if let Some(a) = &l.default {
                action_xml(&mut x, a);
            }
            x.close("DefaultActions").close("member");
        }
        x.close("Listeners");
        Ok(x.finish())
    }

    /// DescribeRules: the rules of `ListenerArn` (its default rule last, `Priority` "default"
    /// and `IsDefault` true), or those named in `RuleArns`; "You must specify either a
    /// listener or one or more rules"; unknown ones are `ListenerNotFound` / `RuleNotFound`
    /// (ELBv2 API reference, DescribeRules,
    /// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeRules.html).
    /// Host conditions come back as `HostHeaderConfig.Values` and `Values`, as ELBv2 answers.
    fn describe_rules(&self, p: &Params) -> ApiResult<String> {
        let arns = p.strings("RuleArns");
        let mut x = Xml::new();
        x.open("Rules");
        let rule_xml = |x: &mut Xml, r: &Rule| {
            x.open("member")
                .leaf("RuleArn", &r.arn)
                .leaf("Priority", r.priority.to_string())
                .leaf("IsDefault", "false")
                .open("Conditions");
            if !r.hosts.is_empty() {
                x.open("member").leaf("Field", "host-header").open("Values");
                for h in &r.hosts {
                    x.leaf("member", h);
                }
                x.close("Values").open("HostHeaderConfig").open("Values");
                for h in &r.hosts {
                    x.leaf("member", h);
                }
                x.close("Values").close("HostHeaderConfig").close("member");
            }
            x.close("Conditions").open("Actions");
            action_xml(x, &r.action);
            x.close("Actions").close("member");
        };
        match (p.get("ListenerArn"), arns.is_empty()) {
            (Some(listener), true) => {
                let l = self
                    .listeners
                    .get(listener)
                    .ok_or_else(|| not_found("Listener", listener))?;
                let mut rules: Vec<&Rule> = self
                    .rules
                    .iter()
                    .filter(|r| r.listener == listener)
                    .collect();
                rules.sort_by_key(|r| r.priority);
                for r in rules {
                    rule_xml(&mut x, r);
                }
                x.open("member")
                    .leaf(
                        "RuleArn",
                        format!("{}/default", l.arn.replace(":listener/", ":listener-rule/")),
                    )
                    .leaf("Priority", "default")
                    .leaf("IsDefault", "true")
                    .open("Conditions")
                    .close("Conditions")
                    .open("Actions");
                if let Some(a) = &l.default {
                    action_xml(&mut x, a);
                }
                x.close("Actions").close("member");
            }
            (None, false) => {
                for a in &arns {
                    let r = self
                        .rules
                        .iter()
                        .find(|r| &r.arn == a)
                        .ok_or_else(|| not_found("Rule", a))?;
                    rule_xml(&mut x, r);
                }
            }
            _ => {
                return Err(ApiError::new(
                    "ValidationError",
                    "You must specify either a listener or one or more rules",
                ))
            }
        }
        x.close("Rules");
        Ok(x.finish())
    }

    fn load_balancers_xml<'a>(&self, arns: impl IntoIterator<Item = &'a str>) -> String {
        let mut x = Xml::new();
        x.open("LoadBalancers");
        for l in arns.into_iter().filter_map(|a| self.load_balancers.get(a)) {
            x.open("member")
                .leaf("LoadBalancerArn", &l.arn)
                .leaf("LoadBalancerName", &l.name)
                .leaf("DNSName", &l.dns_name)
                .leaf("Scheme", "internet-facing")
                .leaf("Type", "application")
                .open("State")
                .leaf("Code", "active")
                .close("State")
                .close("member");
        }
        x.close("LoadBalancers");
        x.finish()
    }

    fn groups_xml<'a>(&self, arns: impl IntoIterator<Item = &'a str>) -> String {
        let mut x = Xml::new();
        x.open("TargetGroups");
        for g in arns.into_iter().filter_map(|a| self.target_groups.get(a)) {
            // The load balancers whose listeners forward to it, by a rule or by default.
            let forward = Action::Forward(g.arn.clone());
            let mut lbs: Vec<&str> = self
                .rules
                .iter()
                .filter(|r| r.action == forward)
                .filter_map(|r| self.listeners.get(&r.listener))
                .chain(
                    self.listeners
                        .values()
                        .filter(|l| l.default.as_ref() == Some(&forward)),
                )
                .map(|l| l.load_balancer.as_str())
                .collect();
            lbs.sort_unstable();
            lbs.dedup();
            let h = &g.health;
            x.open("member")
                .leaf("TargetGroupArn", &g.arn)
                .leaf("TargetGroupName", &g.name)
                .leaf("Protocol", &g.protocol)
                .leaf("Port", g.port.to_string())
                .leaf("VpcId", &g.vpc_id)
                .leaf("HealthCheckProtocol", &g.protocol)
                .leaf("HealthCheckPort", "traffic-port")
                .leaf("HealthCheckPath", &h.path)
                .leaf("HealthCheckEnabled", "true")
                .leaf(
                    "HealthCheckIntervalSeconds",
                    format!("{}", h.interval as i64),
                )
                .leaf("HealthCheckTimeoutSeconds", format!("{}", h.timeout as i64))
                .leaf("HealthyThresholdCount", h.healthy_threshold.to_string())
                .leaf("UnhealthyThresholdCount", h.unhealthy_threshold.to_string())
                .leaf("TargetType", "ip")
                .open("Matcher")
                .leaf("HttpCode", &h.matcher)
                .close("Matcher")
                .open("LoadBalancerArns");
            for lb in lbs {
                x.leaf("member", lb);
            }
            x.close("LoadBalancerArns").close("member");
        }
        x.close("TargetGroups");
        x.finish()
    }

    /// A target's (state, reason, description) now.
    pub fn target_state(
        &self,
        target_group: &str,
        t: &TaskTarget,
        scenario: &Scenario,
        now: f64,
    ) -> (&'static str, Option<&'static str>, Option<String>) {
        if t.draining {
            return (
                "draining",
                Some("Target.DeregistrationInProgress"),
                Some("Target deregistration is in progress".into()),
            );
        }
        let images: Vec<&str> = t.images.iter().map(String::as_str).collect();
        match self.verdict(target_group, t.registered_at, |path| {
            scenario.answer(images.iter().copied(), path)
        }) {
            Some(v) => v.state_at(now),
            None => ("unavailable", Some("Elb.InternalError"), None),
        }
    }

    fn describe_target_health(&self, env: &Env, ecs: &Ecs, p: &Params) -> ApiResult<String> {
        let arn = p.required("TargetGroupArn")?;
        if !self.target_groups.contains_key(arn) {
            return Err(ApiError::new(
                "TargetGroupNotFound",
                format!("Target groups '{arn}' not found"),
            ));
        }
        let mut x = Xml::new();
        x.open("TargetHealthDescriptions");
        for t in ecs.targets(arn) {
            let (state, reason, description) = self.target_state(arn, &t, env.scenario, env.now);
            x.open("member")
                .open("Target")
                .leaf("Id", &t.ip)
                .leaf("Port", t.port.to_string())
                .leaf("AvailabilityZone", format!("{}a", env.region))
                .close("Target")
                .leaf("HealthCheckPort", t.port.to_string())
                .open("TargetHealth")
                .leaf("State", state)
                .opt("Reason", reason)
                .opt("Description", description)
                .close("TargetHealth")
                .close("member");
        }
        x.close("TargetHealthDescriptions");
        Ok(x.finish())
    }
}

/// Health check settings from CreateTargetGroup/ModifyTargetGroup parameters, within the
/// API's ranges (bc:elb: interval 5–300, timeout 2–120, thresholds 2–10).
fn apply_health_params(h: &mut HealthCheck, p: &Params) -> ApiResult<()> {
    let num = |key: &str, lo: f64, hi: f64| -> ApiResult<Option<f64>> {
        match p.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::new(
                    "ValidationError",
                    format!("1 validation error detected: Value '{v}' at '{key}' failed to satisfy constraint: Member must have value between {lo} and {hi}"),
                )),
            },
        }
    };
    if let Some(v) = p.get("HealthCheckPath") {
        h.path = v.to_owned();
    }
    if let Some(v) = num("HealthCheckIntervalSeconds", 5.0, 300.0)? {
        h.interval = v;
    }
    if let Some(v) = num("HealthCheckTimeoutSeconds", 2.0, 120.0)? {
        h.timeout = v;
    }
    if let Some(v) = num("HealthyThresholdCount", 2.0, 10.0)? {
        h.healthy_threshold = v as u32;
    }
    if let Some(v) = num("UnhealthyThresholdCount", 2.0, 10.0)? {
        h.unhealthy_threshold = v as u32;
    }
    if let Some(v) = p.get("Matcher.HttpCode") {
        h.matcher = v.to_owned();
    }
    Ok(())
}

/// Health check settings from a CloudFormation `AWS::ElasticLoadBalancingV2::TargetGroup`.
pub fn health_from_template(props: &Value) -> HealthCheck {
    let mut h = HealthCheck::default();
    let num = |k: &str| {
        props
            .get(k)
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
    };
    if let Some(p) = props.get("HealthCheckPath").and_then(Value::as_str) {
        h.path = p.to_owned();
    }
    if let Some(v) = num("HealthCheckIntervalSeconds") {
        h.interval = v;
    }
    if let Some(v) = num("HealthCheckTimeoutSeconds") {
        h.timeout = v;
    }
    if let Some(v) = num("HealthyThresholdCount") {
        h.healthy_threshold = v as u32;
    }
    if let Some(v) = num("UnhealthyThresholdCount") {
        h.unhealthy_threshold = v as u32;
    }
    if let Some(m) = props
        .get("Matcher")
        .and_then(|m| m.get("HttpCode"))
        .and_then(Value::as_str)
    {
        h.matcher = m.to_owned();
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_take_lists_and_ranges() {
        let h = |m: &str| HealthCheck {
            matcher: m.into(),
            ..HealthCheck::default()
        };
        assert!(h("200").matches(200));
        assert!(!h("200").matches(204));
        assert!(h("200,204").matches(204));
        assert!(h("200-299").matches(250));
        assert!(!h("200-299").matches(500));
    }

    // ALB guide: a new target must pass one check to be healthy; a failing one is unhealthy
    // after UnhealthyThresholdCount failures; registration comes first.
    #[test]
    fn a_target_is_initial_then_healthy_or_unhealthy() {
        let v = Verdict {
            registered_at: 100.0,
            code: 200,
            healthy_at: Some(120.0),
            unhealthy_at: None,
        };
        assert_eq!(v.state_at(101.0).1, Some("Elb.RegistrationInProgress"));
        assert_eq!(v.state_at(110.0).1, Some("Elb.InitialHealthChecking"));
        assert_eq!(v.state_at(120.0).0, "healthy");
        let bad = Verdict {
            code: 500,
            healthy_at: None,
            unhealthy_at: Some(150.0),
            ..v
        };
        assert_eq!(bad.state_at(149.0).0, "initial");
        let (state, reason, description) = bad.state_at(150.0);
        assert_eq!(state, "unhealthy");
        assert_eq!(reason, Some("Target.ResponseCodeMismatch"));
        assert_eq!(
            description.as_deref(),
            Some("Health checks failed with these codes: [500]")
        );
    }
}
