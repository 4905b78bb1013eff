//! `slipway init`: a starting slipway.toml read from an existing cluster.
//!
//! Each service of the cluster becomes a `[[services]]` entry: its ECS service, the container
//! the load balancer sends traffic to (else the first whose image is in ECR), that image's ECR
//! repository and the target group. Where the target group's load balancer has a listener
//! rule forwarding to it (or a default action), the health check is that load balancer's
//! address with the target group's health check path, and the rule's host header. The text
//! is checked with the same parser as `check-config` before it is printed.

use aws_sdk_ecs::error::ProvideErrorMetadata as _;
use slipway_core::config::Config;

use crate::shared::{outln, Exit, Failure};

/// `slipway init`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ECS cluster whose services to describe.
    #[arg(long)]
    pub cluster: String,
    /// The environment's name (default: the cluster's).
    #[arg(long)]
    pub environment: Option<String>,
    /// The region (default: from the credentials' configuration).
    #[arg(long)]
    pub region: Option<String>,
}

/// One service as init found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The ECS service name.
    pub ecs_service: String,
    /// The container the load balancer targets (or the first with an ECR image).
    pub container: Option<String>,
    /// Its image's ECR repository, when the image is in ECR.
    pub repository: Option<String>,
    /// The image, as the task definition names it.
    pub image: String,
    /// The target group the service registers its tasks in.
    pub target_group_arn: Option<String>,
    /// The health check URL and host, from the load balancer's listener rules.
    pub health: Option<(String, Option<String>)>,
    /// ECS's blue/green, linear or canary deployment of it: slipway.toml's `strategy` lines
    /// (a release refuses such a service until the file names one).
    pub strategy: Option<StrategyLines>,
}

/// A service's `strategy` lines, and how long one of ECS's deployments with it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyLines {
    /// The lines, for the service's table.
    pub lines: String,
    /// Its bake and steps, with the tasks' start and drain, minutes (check-config's
    /// `deployment_minutes`).
    pub deployment_minutes: u64,
}

/// The `strategy` lines of a service ECS deploys blue/green, linear or canary (its
/// deployment configuration's options), or None for a rolling one.
fn strategy_lines(
    c: Option<&aws_sdk_ecs::types::DeploymentConfiguration>,
) -> Option<StrategyLines> {
    let c = c?;
    let name = match c.strategy()?.as_str() {
        "BLUE_GREEN" => "blue-green",
        "LINEAR" => "linear",
        "CANARY" => "canary",
        _ => return None,
    };
    let mut out = format!("strategy = \"{name}\"   # ECS's, as the service has it\n");
    // The same settings as check-config reads them, for its figures.
    let mut settings = serde_json::json!({"name": "init", "repository": "init", "strategy": name});
    if let Some(b) = c.bake_time_in_minutes() {
        out += &format!("bake_minutes = {b}\n");
        settings["bake_minutes"] = b.into();
    }
    let (percent, minutes) = match name {
        "linear" => c
            .linear_configuration()
            .map(|l| (l.step_percent(), l.step_bake_time_in_minutes()))
            .unwrap_or_default(),
        "canary" => c
            .canary_configuration()
            .map(|l| (l.canary_percent(), l.canary_bake_time_in_minutes()))
            .unwrap_or_default(),
        _ => (None, None),
    };
    if let Some(p) = percent {
        out += &format!("step_percent = {p}\n");
        settings["step_percent"] = p.into();
    }
    if let Some(m) = minutes {
        out += &format!("step_minutes = {m}\n");
        settings["step_minutes"] = m.into();
    }
    let service: Option<slipway_core::config::ServiceConfig> =
        serde_json::from_value(settings).ok();
    Some(StrategyLines {
        lines: out,
        deployment_minutes: service
            .as_ref()
            .map_or(0, slipway_core::config::ServiceConfig::deployment_minutes),
    })
}

/// The `deadline_minutes` and `rollback_minutes` lines: commented-out defaults, or, where
/// a service's ECS deployments take longer than they allow, settings with room for them
/// (a release's deadline covers its rollout, and going back after ECS finished is such a
/// deployment too).
fn time_lines(found: &[Found]) -> String {
    use slipway_core::config::defaults;
    const ROOM_MINUTES: u64 = 5;
    let deployment = found
        .iter()
        .filter_map(|s| s.strategy.as_ref().map(|s| s.deployment_minutes))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    if deployment + ROOM_MINUTES > u64::from(defaults::deadline_minutes()) {
        out += &format!(
            "deadline_minutes = {}      # plan to stable: ECS's own deployments here take {deployment} minutes or more\n",
            deployment + ROOM_MINUTES
        );
    } else {
        out += &format!(
            "# deadline_minutes = {}      # plan to stable; past it the release is rolled back\n",
            defaults::deadline_minutes()
        );
    }
    if deployment + ROOM_MINUTES > u64::from(defaults::rollback_minutes()) {
        out += &format!(
            "rollback_minutes = {}      # going back after ECS finished is such a deployment too\n",
            deployment + ROOM_MINUTES
        );
    }
    out
}

pub async fn run(args: Args) -> Result<Exit, Failure> {
    let conf = crate::install::sdk(args.region.as_deref()).await?;
    let clients = slipway_core::aws::Clients::new(&conf, "");
    let found = discover(&clients, &args.cluster).await?;
    if found.is_empty() {
        return Err(format!("cluster {} has no services", args.cluster).into());
    }
    let environment = args.environment.unwrap_or_else(|| args.cluster.clone());
    let text = render(&environment, &args.cluster, &found);
    Config::parse(&text, "slipway.toml (from slipway init)").map_err(|e| {
        Failure::from(format!(
            "the configuration made from cluster {} does not pass check-config: {e}\n{text}",
            args.cluster
        ))
    })?;
    outln!("{}", text.trim_end());
    for f in &found {
        if f.repository.is_none() {
            eprintln!(
                "warning: service {}: image {} is not in ECR: its repository line needs editing",
                f.ecs_service, f.image
            );
        }
    }
    Ok(Exit::Done)
}

/// The ECR repository of an image reference (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>`
/// with `:tag` or `@digest`), or `None` for an image elsewhere.
pub fn ecr_repository(image: &str) -> Option<String> {
    let (host, path) = image.split_once('/')?;
    let ecr = host.contains(".dkr.ecr.") && host.contains(".amazonaws.com");
    if !ecr {
        return None;
    }
    let path = path.split('@').next().unwrap_or(path);
    // A tag follows the last `:` (the host, with its port, is already cut off).
    let repo = match path.rsplit_once(':') {
        Some((repo, _)) => repo,
        None => path,
    };
    (!repo.is_empty()).then(|| repo.to_owned())
}

/// A configured name for an ECS service: the service name without the cluster's name as
/// its prefix (`staging-api` in cluster `staging` is `api`).
pub fn service_name(cluster: &str, ecs_service: &str) -> String {
    ecs_service
        .strip_prefix(cluster)
        .and_then(|rest| rest.strip_prefix(['-', '_']))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(ecs_service)
        .to_owned()
}

/// A failed call as `<call>: <the SDK's whole error context>` (any service's SDK).
fn failed<E, R>(call: &str, e: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    format!("{call}: {}", aws_sdk_ecs::error::DisplayErrorContext(e))
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The slipway.toml text for the services found.
pub fn render(environment: &str, cluster: &str, found: &[Found]) -> String {
    let mut out = format!(
        "# slipway.toml made by `slipway init --cluster {cluster}`: check it, then\n\
         # `slipway check-config slipway.toml` and `slipway bootstrap --config slipway.toml`.\n\
         environment = {}\ncluster = {}\n{}\
         # bake_seconds = 60          # between the two health checks\n\n\
         # The CloudFormation stacks a release updates first, in order (none found by init):\n\
         # [[stacks]]\n# name = \"{environment}-app\"\n# parameters = {{ ImageTag = \"image:api\" }}\n",
        quote(environment),
        quote(cluster),
        time_lines(found),
    );
    for f in found {
        let name = service_name(cluster, &f.ecs_service);
        out += &format!("\n[[services]]\nname = {}\n", quote(&name));
        match &f.repository {
            Some(r) => out += &format!("repository = {}\n", quote(r)),
            None => {
                out += &format!(
                    "repository = {}   # the image ({}) is not in ECR: name its repository\n",
                    quote(&name),
                    f.image
                )
            }
        }
        out += &format!("ecs_service = {}\n", quote(&f.ecs_service));
        if let Some(c) = &f.container {
            out += &format!("container = {}\n", quote(c));
        }
        out +=
            "# tag_pattern = \"^[0-9a-f]{7,40}$\"   # deploy only commit-SHA tags\n# group = 1\n";
        if let Some(tg) = &f.target_group_arn {
            out += &format!("target_group_arn = {}\n", quote(tg));
        }
        if let Some(s) = &f.strategy {
            out += &s.lines;
        }
        match &f.health {
            Some((url, host)) => {
                out += &format!("[services.health]\nurl = {}\n", quote(url));
                if let Some(h) = host {
                    out += &format!("host = {}\n", quote(h));
                }
                out += "expect_status = 200\n";
            }
            None => {
                out += "# [services.health]   # no load balancer rule found for it: say where its health is\n# url = \"http://…/health\"\n";
            }
        }
    }
    out
}

/// Every service of `cluster`, with what its task definition and load balancer say.
pub async fn discover(
    clients: &slipway_core::aws::Clients,
    cluster: &str,
) -> Result<Vec<Found>, String> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = clients
            .ecs
            .list_services()
            .cluster(cluster)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("ClusterNotFoundException") => format!("cluster {cluster} not found"),
                _ => failed(&format!("ecs:ListServices {cluster}"), &e),
            })?;
        arns.extend(out.service_arns().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut found = Vec::new();
    // DescribeServices takes at most 10 services a call.
    for chunk in arns.chunks(10) {
        let out = clients
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| failed("ecs:DescribeServices", &e))?;
        for s in out.services() {
            found.push(describe(clients, s).await?);
        }
    }
    found.sort_by(|a, b| a.ecs_service.cmp(&b.ecs_service));
    Ok(found)
}

async fn describe(
    clients: &slipway_core::aws::Clients,
    service: &aws_sdk_ecs::types::Service,
) -> Result<Found, String> {
    let name = service.service_name().unwrap_or_default().to_owned();
    let td = service.task_definition().unwrap_or_default();
    let def = crate::install::describe_task_definition(&clients.ecs, td).await?;
    let containers = def
        .as_ref()
        .map(|t| t.container_definitions())
        .unwrap_or_default();
    let lb = service
        .load_balancers()
        .iter()
        .find(|l| l.target_group_arn().is_some());
    let chosen = lb
        .and_then(|l| l.container_name())
        .and_then(|n| containers.iter().find(|c| c.name() == Some(n)))
        .or_else(|| {
            containers
                .iter()
                .find(|c| c.image().and_then(ecr_repository).is_some())
        })
        .or_else(|| containers.first());
    let image = chosen
        .and_then(|c| c.image())
        .unwrap_or_default()
        .to_owned();
    let target_group_arn = lb.and_then(|l| l.target_group_arn()).map(str::to_owned);
    let health = match &target_group_arn {
        Some(tg) => health(clients, tg).await?,
        None => None,
    };
    Ok(Found {
        ecs_service: name,
        container: chosen.and_then(|c| c.name()).map(str::to_owned),
        repository: ecr_repository(&image),
        image,
        target_group_arn,
        health,
        strategy: strategy_lines(service.deployment_configuration()),
    })
}

/// The health URL (the load balancer's address, the listener's port, the target group's
/// health check path) and host (the rule's host header) of a target group, from the first
/// listener of its load balancer that forwards to it (HTTPS before HTTP).
async fn health(
    clients: &slipway_core::aws::Clients,
    target_group: &str,
) -> Result<Option<(String, Option<String>)>, String> {
    let elb = &clients.elbv2;
    let groups = elb
        .describe_target_groups()
        .target_group_arns(target_group)
        .send()
        .await
        .map_err(|e| failed("elasticloadbalancing:DescribeTargetGroups", &e))?;
    let Some(group) = groups.target_groups().first() else {
        return Ok(None);
    };
    let path = group.health_check_path().unwrap_or("/").to_owned();
    for lb in group.load_balancer_arns() {
        let dns = elb
            .describe_load_balancers()
            .load_balancer_arns(lb)
            .send()
            .await
            .map_err(|e| failed("elasticloadbalancing:DescribeLoadBalancers", &e))?
            .load_balancers()
            .first()
            .and_then(|l| l.dns_name())
            .unwrap_or_default()
            .to_owned();
        let mut listeners = elb
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .map_err(|e| failed("elasticloadbalancing:DescribeListeners", &e))?
            .listeners()
            .to_vec();
        // HTTPS first: a health check over the listener users reach.
        listeners.sort_by_key(|l| (l.protocol().map(|p| p.as_str()) != Some("HTTPS"), l.port()));
        for listener in listeners {
            let Some(arn) = listener.listener_arn() else {
                continue;
            };
            let rules = elb
                .describe_rules()
                .listener_arn(arn)
                .send()
                .await
                .map_err(|e| failed("elasticloadbalancing:DescribeRules", &e))?;
            let forwards = |actions: &[aws_sdk_elasticloadbalancingv2::types::Action]| {
                actions.iter().any(|a| {
                    a.target_group_arn() == Some(target_group)
                        || a.forward_config().is_some_and(|f| {
                            f.target_groups()
                                .iter()
                                .any(|t| t.target_group_arn() == Some(target_group))
                        })
                })
            };
            let Some(rule) = rules.rules().iter().find(|r| forwards(r.actions())) else {
                continue;
            };
            let host = rule
                .conditions()
                .iter()
                .filter(|c| c.field() == Some("host-header"))
                .flat_map(|c| {
                    c.host_header_config()
                        .map(|h| h.values().to_vec())
                        .unwrap_or_else(|| c.values().to_vec())
                })
                .find(|h| !h.contains(['*', '?']));
            let https = listener.protocol().map(|p| p.as_str()) == Some("HTTPS");
            let port = match (listener.port(), https) {
                (Some(443), true) | (Some(80), false) | (None, _) => String::new(),
                (Some(p), _) => format!(":{p}"),
            };
            let scheme = if https { "https" } else { "http" };
            return Ok(Some((format!("{scheme}://{dns}{port}{path}"), host)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_come_from_ecr_images_only() {
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(
            ecr_repository(&format!("{ecr}/staging/api:3f2a1bc")).as_deref(),
            Some("staging/api")
        );
        assert_eq!(
            ecr_repository(&format!("{ecr}/staging/api@sha256:abc")).as_deref(),
            Some("staging/api")
        );
        assert_eq!(
            ecr_repository(&format!("{ecr}/web")).as_deref(),
            Some("web")
        );
        assert_eq!(ecr_repository("nginx:1.27"), None);
        assert_eq!(ecr_repository("ghcr.io/acme/api:1"), None);
    }

    #[test]
    fn service_names_lose_the_cluster_prefix() {
        assert_eq!(service_name("staging", "staging-api"), "api");
        assert_eq!(service_name("staging", "staging_api"), "api");
        assert_eq!(service_name("staging", "api"), "api");
        assert_eq!(service_name("staging", "staging"), "staging");
        assert_eq!(service_name("staging", "stagingapi"), "stagingapi");
    }

    #[test]
    fn the_text_passes_check_config_with_and_without_health() {
        let found = [
            Found {
                ecs_service: "staging-api".into(),
                container: Some("api".into()),
                repository: Some("staging/api".into()),
                image: "x".into(),
                target_group_arn: Some(
                    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/1".into(),
                ),
                health: Some((
                    "https://alb.example.com/health".into(),
                    Some("api.example.com".into()),
                )),
                strategy: strategy_lines(Some(
                    &aws_sdk_ecs::types::DeploymentConfiguration::builder()
                        .strategy(aws_sdk_ecs::types::DeploymentStrategy::Canary)
                        .bake_time_in_minutes(2)
                        .canary_configuration(
                            aws_sdk_ecs::types::CanaryConfiguration::builder()
                                .canary_percent(10.0)
                                .canary_bake_time_in_minutes(4)
                                .build(),
                        )
                        .build(),
                )),
            },
            Found {
                ecs_service: "staging-worker".into(),
                container: None,
                repository: None,
                image: "busybox".into(),
                target_group_arn: None,
                health: None,
                strategy: strategy_lines(None),
            },
        ];
        let text = render("staging", "staging", &found);
        let c = Config::parse(&text, "init").expect("valid");
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].name, "api");
        assert_eq!(
            c.services[0].health.as_ref().map(|h| h.host.as_deref()),
            Some(Some("api.example.com"))
        );
        assert_eq!(c.services[1].repository, "worker");
        let api = &c.services[0];
        assert_eq!(
            (
                api.strategy(),
                api.bake_minutes,
                api.step_percent,
                api.step_minutes
            ),
            (
                slipway_core::config::Strategy::Canary,
                Some(2),
                Some(10.0),
                Some(4)
            ),
            "{text}"
        );
        assert_eq!(c.services[1].strategy, None);
        assert!(text.contains("is not in ECR"), "{text}");
        // The canary (2 + 4 minutes, and 5 for tasks to start and drain) leaves no room in
        // the default 15-minute rollback: init gives it 16; the deadline's default fits.
        assert_eq!((c.rollback_minutes, c.deadline_minutes), (16, 20), "{text}");
        assert!(text.contains("# deadline_minutes = 20"), "{text}");
        // Without a strategy, both are the defaults, commented out.
        let plain = render("staging", "staging", &found[1..]);
        assert!(
            !plain.contains("\nrollback_minutes") && !plain.contains("\ndeadline_minutes"),
            "{plain}"
        );
    }
}
