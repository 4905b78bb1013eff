//! A small copy of the reference app, made fresh for each test: ECR repositories with
//! images in moto, an ECS cluster with services behind target groups and a stack in
//! slipway-sim, a state table with its configuration in moto.
//!
//! Shared by the tests and the benchmark (it is test scaffolding: a failed call here is the
//! run's failure, so it unwraps).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::{eventually, unique, Testbed};
use aws_sdk_ecs::types::{
    ContainerDefinition, HealthCheck, KeyValuePair, LoadBalancer, LogConfiguration, LogDriver,
    NetworkMode, Secret,
};
use serde_json::Value;
use slipway_core::aws::Clients;
use slipway_core::state;

/// One service of the app.
#[derive(Debug, Clone)]
pub struct AppService {
    /// The configured name (`api`, …).
    pub name: String,
    /// Its ECR repository.
    pub repository: String,
    /// Its repository URI.
    pub uri: String,
    /// Its ECS service name (also the Host label its app answers to in the simulator).
    pub ecs_service: String,
    /// The task definition it runs at the start.
    pub task_definition: String,
    /// The digest it runs at the start.
    pub digest: String,
    /// Its target group.
    pub target_group: String,
}

/// The app.
pub struct App {
    /// The test bed it lives on.
    pub bed: Testbed,
    /// Clients on the test bed, on the app's state table.
    pub clients: Clients,
    /// Its ECS cluster.
    pub cluster: String,
    /// Its one stack.
    pub stack: String,
    /// Its services.
    pub services: Vec<AppService>,
    /// Its slipway.toml, as stored.
    pub config: String,
    /// Its load balancer's listener, and each service's listener rule (host-header routing).
    pub listener: String,
    /// (service name, rule ARN).
    pub rules: Vec<(String, String)>,
}

/// The app's stack: a parameter `Release` that [`App::change_stack`] changes.
pub const STACK_TEMPLATE: &str = r#"{
  "Parameters": {"Environment": {"Type": "String"}, "Release": {"Type": "String", "Default": "none"}},
  "Resources": {"Settings": {"Type": "AWS::SSM::Parameter", "Properties": {"Type": "String", "Value": {"Fn::Sub": "${Environment}/${Release}"}}}}
}"#;

impl App {
    /// An app with these services (each in group 1 unless `groups` says otherwise), running
    /// tag `1111111`, its configuration stored in a fresh state table (or `table`).
    pub async fn create(names: &[&str], table: Option<&str>) -> Self {
        Self::create_with(names, table, |_| String::new()).await
    }

    /// Like [`App::create`]; `extra(service)` adds lines to each `[[services]]` table.
    pub async fn create_with(
        names: &[&str],
        table: Option<&str>,
        extra: impl Fn(&str) -> String,
    ) -> Self {
        let bed = Testbed::get();
        let prefix = unique("app");
        let table = table.map_or_else(|| unique("state"), str::to_owned);
        let clients = bed.clients(&table).await;
        state::create_table(&clients).await.unwrap();
        let cluster = prefix.clone();
        clients
            .ecs
            .create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .unwrap();

        let mut app = App {
            bed,
            clients,
            cluster,
            stack: format!("{prefix}-settings"),
            services: vec![],
            config: String::new(),
            listener: String::new(),
            rules: vec![],
        };
        for name in names {
            let repository = format!("{prefix}/{name}");
            let repo = app
                .clients
                .ecr
                .create_repository()
                .repository_name(&repository)
                .send()
                .await
                .unwrap();
            let uri = repo
                .repository()
                .unwrap()
                .repository_uri()
                .unwrap()
                .to_owned();
            let ecs_service = format!("{prefix}-{name}");
            let target_group = app
                .create_target_group(&format!("tg{}", name.chars().take(4).collect::<String>()))
                .await;
            let mut svc = AppService {
                name: name.to_string(),
                repository,
                uri,
                ecs_service,
                task_definition: String::new(),
                digest: String::new(),
                target_group,
            };
            svc.digest = app.push(&svc, "1111111").await;
            let td = app
                .register(&svc, &format!("{}@{}", svc.uri, svc.digest))
                .await;
            app.clients
                .ecs
                .create_service()
                .cluster(&app.cluster)
                .service_name(&svc.ecs_service)
                .task_definition(&td)
                .desired_count(2)
                .load_balancers(
                    LoadBalancer::builder()
                        .target_group_arn(&svc.target_group)
                        .container_name(*name)
                        .container_port(8080)
                        .build(),
                )
                .deployment_configuration(circuit_breaker_with_rollback())
                .send()
                .await
                .unwrap();
            svc.task_definition = td;
            app.services.push(svc);
        }
        app.route_hosts().await;
        app.clients
            .cloudformation
            .create_stack()
            .stack_name(&app.stack)
            .template_body(STACK_TEMPLATE)
            .parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("Environment")
                    .parameter_value("test")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for s in app.services.clone() {
            app.wait_on(&s, &s.task_definition).await;
        }
        let mut config = format!(
            "environment = \"test\"\ncluster = \"{}\"\ndeadline_minutes = 20\nbake_seconds = 1\n\n[[stacks]]\nname = \"{}\"\nparameters = {{ Environment = \"test\" }}\n",
            app.cluster, app.stack
        );
        for s in &app.services {
            config.push_str(&format!(
                "\n[[services]]\nname = \"{}\"\nrepository = \"{}\"\necs_service = \"{}\"\ncontainer = \"{}\"\ntag_pattern = \"^[0-9a-f]{{7,40}}$\"\ntarget_group_arn = \"{}\"\n{}[services.health]\nurl = \"{}/health\"\nhost = \"{}.staging.test\"\nbody_contains = \"ok\"\npasses = 2\ninterval_ms = 10\n",
                s.name, s.repository, s.ecs_service, s.name, s.target_group, extra(&s.name), app.bed.sim(), s.ecs_service
            ));
        }
        state::store_config(&app.clients, &config).await.unwrap();
        app.config = config;
        eventually(
            "the stack to be created",
            Duration::from_secs(30),
            || async {
                let out = app
                    .clients
                    .cloudformation
                    .describe_stacks()
                    .stack_name(&app.stack)
                    .send()
                    .await
                    .unwrap();
                (out.stacks()[0].stack_status().unwrap().as_str() == "CREATE_COMPLETE")
                    .then_some(())
            },
        )
        .await;
        app
    }

    /// Makes the next release change the stack: its `Release` parameter (created as
    /// `none`) set to `value` in the stored configuration. A release updates only the stacks
    /// whose parameters it changes, and the app's own (`Environment = "test"`) never does.
    pub async fn change_stack(&mut self, value: &str) {
        self.config = self.config.replace(
            "parameters = { Environment = \"test\" }",
            &format!("parameters = {{ Environment = \"test\", Release = \"{value}\" }}"),
        );
        assert!(
            self.config.contains(&format!("Release = \"{value}\"")),
            "{}",
            self.config
        );
        state::store_config(&self.clients, &self.config)
            .await
            .unwrap();
    }

    /// The Host each service answers to through the app's load balancer.
    pub fn host(&self, s: &AppService) -> String {
        format!("{}.staging.test", s.ecs_service)
    }

    /// An ALB with one listener and a host-header rule per service, forwarding to its target
    /// group: the only way a request reaches an app, as on AWS.
    async fn route_hosts(&mut self) {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, FixedResponseActionConfig,
        };
        let elb = &self.clients.elbv2;
        let lb = elb
            .create_load_balancer()
            .name(unique("alb"))
            .subnets("subnet-1")
            .send()
            .await
            .unwrap();
        let lb = lb.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned();
        let listener = elb
            .create_listener()
            .load_balancer_arn(&lb)
            .port(80)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::FixedResponse)
                    .fixed_response_config(
                        FixedResponseActionConfig::builder()
                            .status_code("404")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let listener = listener.listeners()[0].listener_arn().unwrap().to_owned();
        self.listener = listener.clone();
        for (i, s) in self.services.iter().enumerate() {
            let arn = self
                .forward_rule(i as i32 + 1, &self.host(s), &s.target_group)
                .await;
            self.rules.push((s.name.clone(), arn));
        }
    }

    /// Readies `s` for ECS's blue/green, linear and canary deployments, as its owner would:
    /// a second (alternate) target group, a test listener rule (Host `test.<host>`, on blue
    /// until ECS moves it), and the service's load balancer `advancedConfiguration` naming
    /// them with its production rule. Returns (alternate target group, test rule).
    pub async fn prepare_staged(&self, s: &AppService) -> (String, String) {
        use aws_sdk_ecs::types::{AdvancedConfiguration, LoadBalancer};
        let green = self.create_target_group("tggreen").await;
        let production = self.rule_of(s).to_owned();
        let priority = 100
            + self.rules.len() as i32
            + self.services.iter().position(|x| x.name == s.name).unwrap() as i32;
        let test = self
            .forward_rule(priority, &self.test_host(s), &s.target_group)
            .await;
        self.clients
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(&s.ecs_service)
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(&s.target_group)
                    .container_name(&s.name)
                    .container_port(8080)
                    .advanced_configuration(
                        AdvancedConfiguration::builder()
                            .alternate_target_group_arn(&green)
                            .production_listener_rule(&production)
                            .test_listener_rule(&test)
                            .role_arn("arn:aws:iam::123456789012:role/ecsInfrastructureRoleForLoadBalancers")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        (green, test)
    }

    /// A target group for an app's tasks: checks `/` every 5 s (the API's minimum), healthy
    /// after 2 passes; targets drain for 5 s (the default 300 s would make every test wait
    /// minutes).
    async fn create_target_group(&self, prefix: &str) -> String {
        let tg = self
            .clients
            .elbv2
            .create_target_group()
            .name(unique(prefix))
            .port(8080)
            .vpc_id("vpc-12345678")
            .health_check_interval_seconds(5)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            .send()
            .await
            .unwrap();
        let arn = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
        self.clients
            .elbv2
            .modify_target_group_attributes()
            .target_group_arn(&arn)
            .attributes(
                aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value("5")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        arn
    }

    /// Where a listener rule forwards: (target group, weight) of each group with a weight
    /// (a plain forward is one group at 100).
    pub async fn forwards(&self, rule: &str) -> Vec<(String, i32)> {
        let out = self
            .clients
            .elbv2
            .describe_rules()
            .rule_arns(rule)
            .send()
            .await
            .unwrap();
        let action = &out.rules()[0].actions()[0];
        match action.forward_config() {
            Some(f) if !f.target_groups().is_empty() => f
                .target_groups()
                .iter()
                .map(|t| {
                    (
                        t.target_group_arn().unwrap_or_default().to_owned(),
                        t.weight().unwrap_or(1),
                    )
                })
                .filter(|(_, w)| *w > 0)
                .collect(),
            _ => vec![(
                action.target_group_arn().unwrap_or_default().to_owned(),
                100,
            )],
        }
    }

    /// A rule of the app's listener: requests for `host` go to `target_group`. Returns its ARN.
    async fn forward_rule(&self, priority: i32, host: &str, target_group: &str) -> String {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, HostHeaderConditionConfig, RuleCondition,
        };
        let rule = self
            .clients
            .elbv2
            .create_rule()
            .listener_arn(&self.listener)
            .priority(priority)
            .conditions(
                RuleCondition::builder()
                    .field("host-header")
                    .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                    .build(),
            )
            .actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(target_group)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        rule.rules()[0].rule_arn().unwrap().to_owned()
    }

    /// `s`'s (production) listener rule.
    pub fn rule_of(&self, s: &AppService) -> &str {
        self.rules
            .iter()
            .find(|(n, _)| *n == s.name)
            .map(|(_, r)| r.as_str())
            .unwrap()
    }

    /// The Host of `s`'s test listener rule (see [`App::prepare_staged`]).
    pub fn test_host(&self, s: &AppService) -> String {
        format!("test.{}", self.host(s))
    }

    /// The service named `name` (panics if the app has none).
    pub fn service(&self, name: &str) -> &AppService {
        self.services.iter().find(|s| s.name == name).unwrap()
    }

    /// Pushes an image (distinct layers, so a distinct digest) tagged `tag`; returns its digest.
    pub async fn push(&self, s: &AppService, tag: &str) -> String {
        let manifest = crate::manifest().to_string();
        let out = self
            .clients
            .ecr
            .put_image()
            .repository_name(&s.repository)
            .image_manifest(manifest)
            .image_tag(tag)
            .send()
            .await
            .unwrap();
        out.image()
            .unwrap()
            .image_id()
            .unwrap()
            .image_digest()
            .unwrap()
            .to_owned()
    }

    /// Registers the service's task definition family with `image`, and the fields a copy
    /// must keep.
    pub async fn register(&self, s: &AppService, image: &str) -> String {
        let out = self
            .clients
            .ecs
            .register_task_definition()
            .family(&s.ecs_service)
            .cpu("512")
            .memory("1024")
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
            .task_role_arn("arn:aws:iam::123456789012:role/app-task")
            .execution_role_arn("arn:aws:iam::123456789012:role/app-execution")
            .container_definitions(
                ContainerDefinition::builder()
                    .name(&s.name)
                    .image(image)
                    .essential(true)
                    .environment(
                        KeyValuePair::builder()
                            .name("NODE_ENV")
                            .value("staging")
                            .build(),
                    )
                    .secrets(
                        Secret::builder()
                            .name("DATABASE_URL")
                            .value_from("arn:aws:secretsmanager:us-east-1:123456789012:secret:db")
                            .build()
                            .unwrap(),
                    )
                    .log_configuration(
                        LogConfiguration::builder()
                            .log_driver(LogDriver::Awslogs)
                            .options("awslogs-group", format!("/ecs/{}", s.name))
                            .options("awslogs-stream-prefix", "ecs")
                            .build()
                            .unwrap(),
                    )
                    .health_check(
                        HealthCheck::builder()
                            .command("CMD-SHELL")
                            .command("curl -f localhost:8080/health")
                            .interval(10)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("log-router")
                    .image("public.ecr.aws/aws-observability/aws-for-fluent-bit:stable")
                    .essential(false)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.task_definition()
            .unwrap()
            .task_definition_arn()
            .unwrap()
            .to_owned()
    }

    /// Waits until the service runs `td`, rolled out.
    pub async fn wait_on(&self, s: &AppService, td: &str) {
        wait_completed(&self.clients.ecs, &self.cluster, &s.ecs_service, td).await;
    }

    /// The ECR push event EventBridge would deliver for `tag` → `digest` of `s`.
    pub fn event(&self, s: &AppService, tag: &str, digest: &str) -> Value {
        crate::ecr_push_event(&s.repository, tag, digest)
    }

    /// The task definition a service runs now.
    pub async fn running(&self, s: &AppService) -> String {
        describe(&self.clients.ecs, &self.cluster, &s.ecs_service)
            .await
            .task_definition()
            .unwrap()
            .to_owned()
    }

    /// Lock items left in the state table.
    pub async fn locks(&self) -> Vec<String> {
        lock_items(&self.clients).await
    }
}

/// The lock items in a state table.
pub async fn lock_items(clients: &Clients) -> Vec<String> {
    items_with_prefix(clients, "LOCK#").await
}

/// The partition keys in a state table that start with `prefix`.
pub async fn items_with_prefix(clients: &Clients, prefix: &str) -> Vec<String> {
    let out = clients
        .dynamodb
        .scan()
        .table_name(&clients.table)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .filter(|pk| pk.starts_with(prefix))
        .collect()
}

/// The deployment configuration every test service uses: circuit breaker with rollback.
pub fn circuit_breaker_with_rollback() -> aws_sdk_ecs::types::DeploymentConfiguration {
    aws_sdk_ecs::types::DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            aws_sdk_ecs::types::DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .build()
}

/// The service as DescribeServices returns it.
pub async fn describe(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
) -> aws_sdk_ecs::types::Service {
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .unwrap();
    out.services()[0].clone()
}

/// One service deployment, as DescribeServiceDeployments returns it.
pub async fn describe_service_deployment(
    ecs: &aws_sdk_ecs::Client,
    arn: &str,
) -> aws_sdk_ecs::types::ServiceDeployment {
    let out = ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .unwrap();
    out.service_deployments()[0].clone()
}

/// Waits until the PRIMARY deployment is `td`, COMPLETED, alone and at its desired count.
pub async fn wait_completed(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
    td: &str,
) -> aws_sdk_ecs::types::Service {
    eventually(
        "the rollout to complete",
        Duration::from_secs(30),
        || async {
            let s = describe(ecs, cluster, service).await;
            let d = s.deployments();
            (d.len() == 1
                && d[0].task_definition() == Some(td)
                && d[0].rollout_state()
                    == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
                && s.running_count() == s.desired_count())
            .then_some(s)
        },
    )
    .await
}

/// A CloudWatch metric alarm on the test bed (slipway-sim's CloudWatch): created
/// INSUFFICIENT_DATA, as PutMetricAlarm creates one (CloudWatch API Reference); its
/// evaluation window, `period` × `evaluation_periods`, is what ECS's deployment alarms bake.
pub async fn put_alarm(
    cw: &aws_sdk_cloudwatch::Client,
    name: &str,
    period: i32,
    evaluation_periods: i32,
) {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(Statistic::Sum)
        .period(period)
        .evaluation_periods(evaluation_periods)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
}
