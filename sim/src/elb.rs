//! Elastic Load Balancing v2: target groups, and target health that follows the ECS tasks
//! registered with them (awsvpc tasks register by IP).

use std::collections::BTreeMap;

use crate::ecs::Ecs;
use crate::env::Env;
use crate::scenario::Scenario;
use crate::wire::{ApiError, ApiResult, Params, Xml};

/// The XML namespace of ELBv2 (API version 2015-12-01).
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// The ELBv2 part of the account.
#[derive(Debug, Default)]
pub struct Elb {
    target_groups: BTreeMap<String, TargetGroup>,
    /// Listener rules with a host-header condition: host → target group ARN.
    host_rules: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct TargetGroup {
    arn: String,
    name: String,
    protocol: String,
    port: i64,
    vpc_id: String,
    health_check_path: String,
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
                let arn = self.create_target_group(
                    env,
                    p.required("Name")?,
                    p.get("Protocol").unwrap_or("HTTP"),
                    p.get("Port").and_then(|v| v.parse().ok()).unwrap_or(80),
                    p.get("VpcId").unwrap_or("vpc-00000000"),
                    p.get("HealthCheckPath").unwrap_or("/"),
                )?;
                Ok(self.groups_xml([arn.as_str()]))
            }
            "DescribeTargetGroups" => {
                let arns = p.strings("TargetGroupArns");
                let names = p.strings("Names");
                let found: Vec<&str> = self
                    .target_groups
                    .values()
                    .filter(|g| {
                        (arns.is_empty() && names.is_empty())
                            || arns.contains(&g.arn)
                            || names.contains(&g.name)
                    })
                    .map(|g| g.arn.as_str())
                    .collect();
                if found.len() < arns.len() + names.len() {
                    return Err(ApiError::new(
                        "TargetGroupNotFound",
                        "One or more target groups not found",
                    ));
                }
                let found: Vec<String> = found.into_iter().map(str::to_owned).collect();
                Ok(self.groups_xml(found.iter().map(String::as_str)))
            }
            "DescribeTargetHealth" => self.describe_target_health(ecs, env.scenario, p),
            _ => Err(ApiError::new(
                "InvalidAction",
                format!("slipway-sim does not implement ELBv2 {action}"),
            )),
        }
    }

    /// Creates a target group (idempotent for the same name, as in ELBv2) and returns its ARN.
    pub fn create_target_group(
        &mut self,
        env: &mut Env,
        name: &str,
        protocol: &str,
        port: i64,
        vpc_id: &str,
        health_check_path: &str,
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
            return Ok(g.arn.clone());
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
                health_check_path: health_check_path.to_owned(),
            },
        );
        Ok(arn)
    }

    /// Routes requests for `host` to `target_group` (a listener rule's host-header condition).
    pub fn add_host_rule(&mut self, host: &str, target_group: &str) {
        self.host_rules
            .insert(host.to_ascii_lowercase(), target_group.to_owned());
    }

    /// The target group a listener rule sends `host` to.
    pub fn target_group_for_host(&self, host: &str) -> Option<&str> {
        self.host_rules
            .get(&host.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Forgets a target group (stack deletion).
    pub fn delete_target_group(&mut self, arn: &str) {
        self.target_groups.remove(arn);
    }

    fn groups_xml<'a>(&self, arns: impl IntoIterator<Item = &'a str>) -> String {
        let mut x = Xml::new();
        x.open("TargetGroups");
        for g in arns.into_iter().filter_map(|a| self.target_groups.get(a)) {
            x.open("member")
                .leaf("TargetGroupArn", &g.arn)
                .leaf("TargetGroupName", &g.name)
                .leaf("Protocol", &g.protocol)
                .leaf("Port", g.port.to_string())
                .leaf("VpcId", &g.vpc_id)
                .leaf("HealthCheckProtocol", &g.protocol)
                .leaf("HealthCheckPath", &g.health_check_path)
                .leaf("HealthCheckEnabled", "true")
                .leaf("HealthCheckIntervalSeconds", "30")
                .leaf("HealthCheckTimeoutSeconds", "5")
                .leaf("HealthyThresholdCount", "5")
                .leaf("UnhealthyThresholdCount", "2")
                .leaf("TargetType", "ip")
                .open("Matcher")
                .leaf("HttpCode", "200")
                .close("Matcher")
                .open("LoadBalancerArns")
                .close("LoadBalancerArns")
                .close("member");
        }
        x.close("TargetGroups");
        x.finish()
    }

    fn describe_target_health(
        &self,
        ecs: &Ecs,
        scenario: &Scenario,
        p: &Params,
    ) -> ApiResult<String> {
        let arn = p.required("TargetGroupArn")?;
        if !self.target_groups.contains_key(arn) {
            return Err(ApiError::new(
                "TargetGroupNotFound",
                format!("Target groups '{arn}' not found"),
            ));
        }
        let mut x = Xml::new();
        x.open("TargetHealthDescriptions");
        for t in ecs.targets(arn, scenario) {
            x.open("member")
                .open("Target")
                .leaf("Id", &t.ip)
                .leaf("Port", t.port.to_string())
                .leaf("AvailabilityZone", "us-east-1a")
                .close("Target")
                .leaf("HealthCheckPort", t.port.to_string())
                .open("TargetHealth")
                .leaf("State", t.state)
                .opt("Reason", t.reason)
                .opt(
                    "Description",
                    t.reason.map(|r| match r {
                        "Elb.RegistrationInProgress" => "Target registration is in progress",
                        _ => "Health checks failed with these codes: [500]",
                    }),
                )
                .close("TargetHealth")
                .close("member");
        }
        x.close("TargetHealthDescriptions");
        Ok(x.finish())
    }
}
