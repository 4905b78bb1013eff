//! `slipway template`: the orchestrator's CloudFormation template for one environment.
//!
//! One Lambda per step (provided.al2023, arm64, zips in S3), one IAM role per function with
//! only what that step calls, scoped to the configuration's cluster, services, stacks,
//! repositories and the state table; the state machine (`statemachine/deploy.asl.json`, its
//! function ARNs as `DefinitionSubstitutions`) and its role; the state table; an EventBridge
//! rule starting the state machine on "ECR Image Action" PUSH SUCCESS for the configured
//! repositories; log groups with retention; optionally an SNS topic and a GitHub OIDC
//! provider with a role that may only start and watch this state machine.

use serde_json::{json, Map, Value};
use slipway_core::config::Config;
use slipway_core::state;

/// The state machine definition, as the repository ships it.
pub const DEFINITION: &str = include_str!("../../statemachine/deploy.asl.json");

/// A step Lambda's timeout, seconds. Each Task state's `TimeoutSeconds` in the definition is
/// at least this plus 30 s (checked by a test), so that Step Functions never gives up on a
/// call Lambda is still running (the step would then act after the state machine moved on).
pub fn lambda_timeout(name: &str) -> u32 {
    if name == "health-check" {
        slipway_core::config::HEALTH_CHECK_TIMEOUT_SECONDS
    } else {
        60
    }
}

/// What a function in a VPC needs to manage its network interfaces, as AWS's managed policy
/// AWSLambdaVPCAccessExecutionRole grants them, on `"Resource": "*"` ("ec2:DescribeNetworkInterfaces
/// – This action only works if it's allowed on all resources": Lambda Developer Guide,
/// "Giving Lambda functions access to resources in an Amazon VPC",
/// https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html).
pub const LAMBDA_VPC_ACTIONS: [&str; 6] = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
];

/// The actions Step Functions needs to deliver its logs to CloudWatch Logs, which take no
/// resource ARN (the Step Functions Developer Guide's "IAM policies for logging to
/// CloudWatch Logs" grants them on `*`).
pub const LOG_DELIVERY: [&str; 8] = [
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
];

/// GitHub Actions' OIDC issuer.
pub const GITHUB_OIDC_URL: &str = "https://token.actions.githubusercontent.com";

/// checkov's checks that do not fit Slipway's functions (the template's checkov scan,
/// bootstrap/tests/cli.rs, skips them with these reasons: checkov reads a resource's
/// `Metadata.checkov.skip`).
const FUNCTION_SKIPS: [(&str, &str); 4] = [
    ("CKV_AWS_116", "no dead-letter queue: Step Functions invokes the steps synchronously (a DLQ only receives failed asynchronous invocations); its Retry and Catch handle failures"),
    ("CKV_AWS_117", "not in a VPC: the steps call only AWS APIs and the health URLs the configuration names; a VPC would need NAT or endpoints for nothing (health-check goes into one with --health-check-subnet, for an internal load balancer)"),
    ("CKV_AWS_115", "no reserved concurrency: the state machine bounds the invocations, and reserving concurrency can fail in accounts with a low quota"),
    ("CKV_AWS_173", "environment variables hold only the table name, the log format and the topic ARN (nothing secret); Lambda encrypts them at rest with its AWS managed key"),
];

/// checkov's check for a customer managed key on log groups.
const LOG_GROUP_SKIPS: [(&str, &str); 1] = [(
    "CKV_AWS_158",
    "CloudWatch Logs encrypts log groups by default; the logs hold no secrets (the state machine logs errors without execution data)",
)];

/// checkov's check for a customer managed key on the table.
const TABLE_SKIPS: [(&str, &str); 1] = [(
    "CKV_AWS_119",
    "DynamoDB encrypts the table at rest with an AWS owned key; it holds deployment state and records, nothing secret",
)];

fn checkov_skips(skips: &[(&str, &str)]) -> Value {
    json!({"checkov": {"skip": skips.iter().map(|(id, comment)| json!({"id": id, "comment": comment})).collect::<Vec<_>>()}})
}

/// The template parameter holding the S3 version of a step's zip.
pub fn code_version_parameter(stem: &str) -> String {
    format!("{stem}CodeVersion")
}

/// The steps: (function name, logical id stem, substitution name).
pub const FUNCTIONS: [(&str, &str, &str); 7] = [
    ("plan", "Plan", "PlanFunctionArn"),
    ("deploy-stack", "DeployStack", "DeployStackFunctionArn"),
    (
        "update-services",
        "UpdateServices",
        "UpdateServicesFunctionArn",
    ),
    (
        "check-stability",
        "CheckStability",
        "CheckStabilityFunctionArn",
    ),
    ("health-check", "HealthCheck", "HealthCheckFunctionArn"),
    ("roll-back", "RollBack", "RollBackFunctionArn"),
    ("finish", "Finish", "FinishFunctionArn"),
];

/// Options beyond the configuration. The installed stack's template holds what they made (the
/// GitHub role's trust, the topic, the health check's VPC), which a re-run reads back
/// ([`Options::stored_in`]) and keeps unless told otherwise ([`Options::keeping`]); the task
/// roles and families are read from the services each run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// GitHub `owner/repo` allowed to start deployments through OIDC.
    pub github_repository: Option<String>,
    /// The branch of it allowed (default `main`).
    pub github_branch: Option<String>,
    /// The GitHub environment allowed instead of a branch: the token's `sub` is then
    /// `repo:OWNER/REPO:environment:NAME` (GitHub's OIDC reference).
    pub github_environment: Option<String>,
    /// The account's existing GitHub OIDC provider (an IAM allows one per URL); without it
    /// the template creates one, retained when the stack is deleted.
    pub github_oidc_provider: Option<String>,
    /// Create an SNS topic for notifications (when the configuration names none).
    pub create_topic: bool,
    /// Subnets the health-check function runs in (with [`Options::health_check_security_groups`]):
    /// an internal load balancer answers only inside its VPC. None: outside any VPC.
    pub health_check_subnets: Vec<String>,
    /// The security groups of the health-check function in those subnets.
    pub health_check_security_groups: Vec<String>,
    /// The roles update-services may pass to ECS: the configured services' task and
    /// execution roles (bootstrap reads them from their task definitions). None: it may
    /// pass none (a task definition with a role then cannot be registered).
    pub task_roles: Vec<String>,
    /// The task definition families update-services may register revisions of: the
    /// configured services' (bootstrap reads them). None: any family of this account and
    /// region.
    pub task_families: Vec<String>,
    /// The CloudWatch Logs groups the services' containers write to (bootstrap reads them):
    /// finish may read their streams' last lines for why a release failed.
    pub task_log_groups: Vec<String>,
}

/// Stored options a bootstrap run is told to drop (`--no-github`, `--no-topic`,
/// `--no-health-check-vpc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropOptions {
    /// The GitHub role (and its trust).
    pub github: bool,
    /// The created topic.
    pub topic: bool,
    /// The health-check function's VPC.
    pub health_check_vpc: bool,
}

impl Options {
    /// These options (as given on the command line) completed by `stored` (those of the
    /// installed stack): what is not given is kept unless `drop` says otherwise. Returns the
    /// options and the flags that say what was kept, for the user to see.
    pub fn keeping(&self, stored: &Options, drop: DropOptions) -> (Options, Vec<String>) {
        let mut out = self.clone();
        let mut kept = Vec::new();
        if self.github_repository.is_none() && !drop.github {
            if let Some(repo) = &stored.github_repository {
                out.github_repository = Some(repo.clone());
                out.github_branch.clone_from(&stored.github_branch);
                out.github_environment
                    .clone_from(&stored.github_environment);
                kept.push(format!("--github-repository {repo}"));
                match (&stored.github_environment, &stored.github_branch) {
                    (Some(e), _) => kept.push(format!("--github-environment {e}")),
                    (None, Some(b)) => kept.push(format!("--github-branch {b}")),
                    (None, None) => {}
                }
            }
        }
        // The OIDC provider is the account's, not the repository's: a role for another
        // repository or branch still uses the provider the installation used.
        if out.github_repository.is_some() && self.github_oidc_provider.is_none() && !drop.github {
            if let Some(p) = &stored.github_oidc_provider {
                out.github_oidc_provider = Some(p.clone());
                kept.push(format!("--github-oidc-provider {p}"));
            }
        }
        if !self.create_topic && !drop.topic && stored.create_topic {
            out.create_topic = true;
            kept.push("--create-topic".into());
        }
        if self.health_check_subnets.is_empty() && !drop.health_check_vpc {
            out.health_check_subnets
                .clone_from(&stored.health_check_subnets);
            out.health_check_security_groups
                .clone_from(&stored.health_check_security_groups);
            kept.extend(
                stored
                    .health_check_subnets
                    .iter()
                    .map(|s| format!("--health-check-subnet {s}")),
            );
            kept.extend(
                stored
                    .health_check_security_groups
                    .iter()
                    .map(|s| format!("--health-check-security-group {s}")),
            );
        }
        (out, kept)
    }

    /// The options an installed template was made with, read from what they made: the
    /// GitHub role's trusted `sub` (repository, and branch or environment) and its provider
    /// (an ARN, or the one the stack created), the created topic, the health-check
    /// function's `VpcConfig`. A template of another shape is an error, not "no options".
    pub fn stored_in(template: &Value) -> Result<Options, String> {
        let r = &template["Resources"];
        if !r.is_object() {
            return Err("the installed template has no Resources".into());
        }
        let mut o = Options {
            create_topic: r.get("NotificationTopic").is_some(),
            ..Options::default()
        };
        if let Some(role) = r.get("GitHubDeployRole") {
            let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
            let subject = trust["Condition"]["StringEquals"]
                ["token.actions.githubusercontent.com:sub"]
                .as_str()
                .ok_or("the installed GitHub role trusts no sub")?;
            let rest = subject
                .strip_prefix("repo:")
                .ok_or_else(|| format!("the installed GitHub role trusts {subject:?}"))?;
            if let Some((repo, env)) = rest.split_once(":environment:") {
                o.github_repository = Some(repo.to_owned());
                o.github_environment = Some(env.to_owned());
            } else if let Some((repo, branch)) = rest.split_once(":ref:refs/heads/") {
                o.github_repository = Some(repo.to_owned());
                o.github_branch = Some(branch.to_owned());
            } else {
                return Err(format!("the installed GitHub role trusts {subject:?}"));
            }
            o.github_oidc_provider = trust["Principal"]["Federated"].as_str().map(str::to_owned);
        }
        if let Some(vpc) = r.pointer("/HealthCheckFunction/Properties/VpcConfig") {
            let ids = |key: &str| -> Vec<String> {
                vpc[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            };
            o.health_check_subnets = ids("SubnetIds");
            o.health_check_security_groups = ids("SecurityGroupIds");
        }
        Ok(o)
    }

    /// The `sub` claim GitHub's token must carry to assume the deploy role.
    pub fn github_subject(&self) -> Option<String> {
        let repo = self.github_repository.as_ref()?;
        Some(match &self.github_environment {
            Some(env) => format!("repo:{repo}:environment:{env}"),
            None => format!(
                "repo:{repo}:ref:refs/heads/{}",
                self.github_branch.as_deref().unwrap_or("main")
            ),
        })
    }
}

fn sub(s: &str) -> Value {
    json!({ "Fn::Sub": s })
}

fn statement(actions: &[&str], resources: Vec<Value>) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resources })
}

/// Every stack of this name in the template's account and region.
fn stack_arn(name: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/{name}/*"
    ))
}

/// The change set names deploy-stack makes and passes (`slipway-<release>`, always with the
/// stack's name).
fn change_set_names() -> Value {
    json!(["slipway-*"])
}

/// `action` on each configured stack only with the service role configured for it
/// (`cloudformation:RoleArn`), or with none when it has none (a `Null` condition). Without
/// a role in the request CloudFormation uses the one attached to the stack, so plan refuses a
/// stack whose attached role the configuration does not name. With `change_set`, only for
/// Slipway's change set names (`cloudformation:ChangeSetName`). One statement per role.
fn stack_role_statements(config: &Config, action: &str, change_set: bool) -> Vec<Value> {
    let mut by_role: Vec<(Option<&str>, Vec<Value>)> = Vec::new();
    for stack in &config.stacks {
        let arn = stack_arn(&stack.name);
        match by_role
            .iter_mut()
            .find(|(r, _)| *r == stack.role_arn.as_deref())
        {
            Some((_, arns)) => arns.push(arn),
            None => by_role.push((stack.role_arn.as_deref(), vec![arn])),
        }
    }
    by_role
        .into_iter()
        .map(|(role, arns)| {
            let mut condition = match role {
                Some(r) => json!({"ArnEquals": {"cloudformation:RoleArn": r}}),
                None => json!({"Null": {"cloudformation:RoleArn": "true"}}),
            };
            if change_set {
                condition["StringLike"] =
                    json!({"cloudformation:ChangeSetName": change_set_names()});
            }
            json!({"Effect": "Allow", "Action": [action], "Resource": arns, "Condition": condition})
        })
        .collect()
}

/// The `dynamodb:LeadingKeys` pattern of a key: a prefix (ending in `#`) matches every key
/// it begins, any other key only itself.
fn leading_key_pattern(key: &str) -> String {
    if key.ends_with('#') {
        format!("{key}*")
    } else {
        key.to_owned()
    }
}

/// A step's access to the state table: each action only on the partition keys the step
/// uses (`dynamodb:LeadingKeys`, DynamoDB Developer Guide, "Using IAM policy conditions for
/// fine-grained access control"; a key prefix ending in `#` becomes `PREFIX#*`). No step may
/// write the configuration.
fn table_statements(table: &Value, access: &state::TableAccess) -> Vec<Value> {
    [
        ("dynamodb:GetItem", access.get),
        ("dynamodb:PutItem", access.put),
        ("dynamodb:DeleteItem", access.delete),
    ]
    .iter()
    .map(|(action, keys)| {
        let keys: Vec<String> = keys.iter().map(|k| leading_key_pattern(k)).collect();
        json!({
            "Effect": "Allow", "Action": [action], "Resource": [table],
            // ForAllValues is also true of a request without the key: Null false rules that
            // out (IAM User Guide, "Condition operators for multivalued context keys").
            "Condition": {
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys},
                "Null": {"dynamodb:LeadingKeys": "false"}
            }
        })
    })
    .collect()
}

/// The template, as JSON.
pub fn template(config: &Config, options: &Options) -> Value {
    let env = &config.environment;
    let cluster = config.cluster.rsplit('/').next().unwrap_or(&config.cluster);
    let service_arns: Vec<Value> = config
        .services
        .iter()
        .map(|s| sub(&format!("arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:service/{cluster}/{}", s.ecs_service())))
        .collect();
    let service_deployment_arns: Vec<Value> = config
        .services
        .iter()
        .map(|s| sub(&format!("arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:service-deployment/{cluster}/{}/*", s.ecs_service())))
        .collect();
    let repo_arns: Vec<Value> = config
        .services
        .iter()
        .map(|s| {
            sub(&format!(
                "arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{}",
                s.repository
            ))
        })
        .collect();
    let stack_arns: Vec<Value> = config.stacks.iter().map(|s| stack_arn(&s.name)).collect();
    let table = json!({ "Fn::GetAtt": ["StateTable", "Arn"] });
    // The stacks' CloudFormation service roles, passed on every stack call: only to
    // CloudFormation.
    let stack_roles: Vec<Value> = config
        .stacks
        .iter()
        .filter_map(|s| s.role_arn.as_deref())
        .map(|r| json!(r))
        .collect();
    let pass_stack_roles: Vec<Value> = if stack_roles.is_empty() {
        vec![]
    } else {
        vec![json!({
            "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": stack_roles,
            "Condition": { "StringEquals": { "iam:PassedToService": "cloudformation.amazonaws.com" } }
        })]
    };
    let created_topic = config.notifications.sns_topic_arn.is_none() && options.create_topic;
    let topic: Option<Value> = match (&config.notifications.sns_topic_arn, options.create_topic) {
        (Some(arn), _) => Some(json!(arn)),
        (None, true) => Some(json!({ "Ref": "NotificationTopic" })),
        (None, false) => None,
    };
    let bus = config.notifications.event_bus.as_ref().map(|b| {
        if b.starts_with("arn:") {
            json!(b)
        } else {
            sub(&format!(
                "arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:event-bus/{b}"
            ))
        }
    });

    // DescribeAlarms on the configured alarms only (its resource type is `alarm`: Service
    // Authorization Reference, Amazon CloudWatch), for every step that checks them.
    let alarm_arns: Vec<Value> = config
        .all_alarms()
        .iter()
        .map(|a| {
            // A `$` in a name (alarm names may hold one) is `${$}` to IAM, for which `${…}`
            // is a policy variable (IAM User Guide, "IAM policy elements: Variables and
            // tags", special characters), written `${!$}` for Fn::Sub, whose `${!` is a
            // literal `${` (CloudFormation User Guide, Fn::Sub).
            let a = a.replace('$', "${!$}");
            sub(&format!(
                "arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{a}"
            ))
        })
        .collect();
    let describe_alarms: Vec<Value> = if alarm_arns.is_empty() {
        vec![]
    } else {
        vec![statement(&["cloudwatch:DescribeAlarms"], alarm_arns)]
    };
    // ECS's own blue/green, linear or canary deployments: health-check is the services'
    // lifecycle hook, invoked by ECS with a role of its own.
    let staged = config
        .services
        .iter()
        .any(slipway_core::config::ServiceConfig::staged);
    let state_machine_arn = sub(&format!(
        "arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:slipway-{env}"
    ));
    let policies: Vec<(&str, Vec<Value>)> = vec![
        ("plan", {
            let mut p = table_statements(&table, &state::PLAN_ACCESS);
            p.extend([
                statement(
                    &["ecr:DescribeRepositories", "ecr:DescribeImages"],
                    repo_arns.clone(),
                ),
                statement(&["ecs:DescribeServices"], service_arns.clone()),
                statement(&["ecs:DescribeTaskDefinition"], vec![json!("*")]),
            ]);
            // A recovery (plan, for a stopped or timed-out execution) announces its record.
            if let Some(b) = &bus {
                p.push(statement(&["events:PutEvents"], vec![b.clone()]));
            }
            if let Some(t) = &topic {
                p.push(statement(&["sns:Publish"], vec![t.clone()]));
            }
            if !stack_arns.is_empty() {
                p.push(statement(
                    &[
                        "cloudformation:DescribeStacks",
                        "cloudformation:GetTemplateSummary",
                    ],
                    stack_arns.clone(),
                ));
            }
            p.extend(describe_alarms.clone());
            p
        }),
        (
            "deploy-stack",
            if stack_arns.is_empty() {
                vec![]
            } else {
                let mut p = stack_role_statements(config, "cloudformation:CreateChangeSet", true);
                p.push(json!({
                    "Effect": "Allow",
                    "Action": [
                        "cloudformation:DescribeChangeSet",
                        "cloudformation:ExecuteChangeSet",
                        "cloudformation:DeleteChangeSet"
                    ],
                    "Resource": stack_arns.clone(),
                    "Condition": {"StringLike": {"cloudformation:ChangeSetName": change_set_names()}}
                }));
                p.push(statement(
                    &[
                        "cloudformation:DescribeStacks",
                        "cloudformation:DescribeStackEvents",
                    ],
                    stack_arns.clone(),
                ));
                p.extend(pass_stack_roles.clone());
                // The stack update's wait: its token in the table, answered on the state
                // machine (as for check-stability).
                p.extend(table_statements(&table, &state::DEPLOY_STACK_ACCESS));
                p.push(statement(
                    &[
                        "states:SendTaskSuccess",
                        "states:SendTaskFailure",
                        "states:SendTaskHeartbeat",
                    ],
                    vec![state_machine_arn.clone()],
                ));
                // The release's alarms, at each look while a stack's update rolls out.
                p.extend(describe_alarms.clone());
                p
            },
        ),
        (
            "update-services",
            vec![
                statement(
                    &["ecs:DescribeServices", "ecs:UpdateService"],
                    service_arns.clone(),
                ),
                statement(&["ecs:DescribeTaskDefinition"], vec![json!("*")]),
                // RegisterTaskDefinition takes the task-definition resource type (Service
                // Authorization Reference, Amazon ECS), so only the services' families.
                statement(&["ecs:RegisterTaskDefinition"], {
                    let families: Vec<&str> = if options.task_families.is_empty() {
                        vec!["*"]
                    } else {
                        options.task_families.iter().map(String::as_str).collect()
                    };
                    families
                        .iter()
                        .map(|f| sub(&format!("arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task-definition/{f}:*")))
                        .collect()
                }),
            ]
            .into_iter()
            .chain(staged.then(|| {
                // The lifecycle hook's role, only to ECS (UpdateService passes it).
                json!({
                    "Effect": "Allow", "Action": ["iam:PassRole"],
                    "Resource": [{"Fn::GetAtt": ["LifecycleHookRole", "Arn"]}],
                    "Condition": { "StringEquals": { "iam:PassedToService": "ecs.amazonaws.com" } }
                })
            }))
            .chain((!options.task_roles.is_empty()).then(|| {
                // Only the services' own task and execution roles, only to ECS tasks.
                json!({
                    "Effect": "Allow", "Action": ["iam:PassRole"],
                    "Resource": options.task_roles,
                    "Condition": { "StringEquals": { "iam:PassedToService": "ecs-tasks.amazonaws.com" } }
                })
            }))
            .collect(),
        ),
        ("check-stability", {
            let mut p = table_statements(&table, &state::CHECK_STABILITY_ACCESS);
            p.extend([
                statement(&["ecs:DescribeServices"], service_arns.clone()),
                // Which of ECS's own deployment alarms failed a rollout (services whose
                // owner configured them): the services' deployments only.
                statement(&["ecs:ListServiceDeployments"], service_arns.clone()),
                statement(&["ecs:DescribeServiceDeployments"], service_deployment_arns.clone()),
                // Answering the stability wait's task token: on the state machine, as CDK's
                // StateMachine.grantTaskResponse grants it. Its ARN is built from its name
                // (a Ref would make the state machine, the function and this role a cycle).
                statement(
                    &[
                        "states:SendTaskSuccess",
                        "states:SendTaskFailure",
                        "states:SendTaskHeartbeat",
                    ],
                    vec![state_machine_arn.clone()],
                ),
            ]);
            p.extend(describe_alarms.clone());
            p
        }),
        ("health-check", {
            let mut p = vec![statement(
                &["elasticloadbalancing:DescribeTargetHealth"],
                vec![json!("*")],
            )];
            if config.services.iter().any(|s| s.strategy.is_some()) {
                // Which of the two target groups a blue/green service (or one switched back
                // to rolling) uses now.
                p.push(statement(&["ecs:DescribeServices"], service_arns.clone()));
            }
            p.extend(describe_alarms.clone());
            if !options.health_check_subnets.is_empty() {
                p.push(statement(&LAMBDA_VPC_ACTIONS, vec![json!("*")]));
            }
            p
        }),
        ("roll-back", {
            let mut p = vec![
                statement(
                    &["ecs:DescribeServices", "ecs:UpdateService"],
                    service_arns.clone(),
                ),
                statement(&["ecs:DescribeTaskDefinition"], vec![json!("*")]),
            ];
            if staged {
                // A blue/green, linear or canary deployment still running is stopped, and ECS
                // puts the traffic back.
                p.push(statement(
                    &["ecs:DescribeServiceDeployments", "ecs:StopServiceDeployment"],
                    service_deployment_arns.clone(),
                ));
            }
            if !stack_arns.is_empty() {
                p.extend(stack_role_statements(config, "cloudformation:UpdateStack", false));
                p.push(statement(
                    &[
                        "cloudformation:DescribeStacks",
                        "cloudformation:CancelUpdateStack",
                    ],
                    stack_arns.clone(),
                ));
                // The change sets deploy-stack made that the release never executed.
                p.push(json!({
                    "Effect": "Allow",
                    "Action": ["cloudformation:DeleteChangeSet"],
                    "Resource": stack_arns.clone(),
                    "Condition": {"StringLike": {"cloudformation:ChangeSetName": change_set_names()}}
                }));
                p.extend(pass_stack_roles.clone());
            }
            p
        }),
        ("finish", {
            let mut p = table_statements(&table, &state::FINISH_ACCESS);
            // Why a release failed, for its record: the services' events and their stopped
            // tasks. ListTasks names no task (its resource is a container instance): it is
            // held to this cluster by its `ecs:cluster` condition key.
            let cluster_arn = sub(&format!(
                "arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:cluster/{cluster}"
            ));
            p.extend([
                statement(&["ecs:DescribeServices"], service_arns.clone()),
                json!({
                    "Effect": "Allow", "Action": ["ecs:ListTasks"], "Resource": ["*"],
                    "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}}
                }),
                statement(
                    &["ecs:DescribeTasks"],
                    vec![sub(&format!(
                        "arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task/{cluster}/*"
                    ))],
                ),
                // To find a stopped container's log stream (no resource-level control).
                statement(&["ecs:DescribeTaskDefinition"], vec![json!("*")]),
            ]);
            if !options.task_log_groups.is_empty() {
                p.push(statement(
                    &["logs:GetLogEvents"],
                    options
                        .task_log_groups
                        .iter()
                        .map(|g| {
                            sub(&format!(
                                "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{g}:log-stream:*"
                            ))
                        })
                        .collect(),
                ));
            }
            if let Some(b) = &bus {
                p.push(statement(&["events:PutEvents"], vec![b.clone()]));
            }
            if let Some(t) = &topic {
                p.push(statement(&["sns:Publish"], vec![t.clone()]));
            }
            p
        }),
    ];

    let mut resources = Map::new();
    resources.insert(
        "StateTable".into(),
        json!({
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skips(&TABLE_SKIPS),
            "Properties": {
                "TableName": format!("slipway-{env}"),
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                // Items past their `expires_at` (expired locks and queue places, stability
                // waits nobody answered) are deleted by DynamoDB; records have none and stay.
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": true}
            }
        }),
    );
    let mut substitutions = Map::new();
    for ((name, stem, substitution), (_, statements)) in FUNCTIONS.iter().zip(&policies) {
        let function_name = format!("slipway-{env}-{name}");
        let log_group = format!("{stem}LogGroup");
        resources.insert(
            log_group.clone(),
            // Kept when the stack is deleted (what the functions did stays readable), so it
            // has no fixed name: a reinstall makes a new one rather than failing on an
            // existing name. The function logs into it through LoggingConfig (Lambda
            // Developer Guide, "Sending Lambda function logs to CloudWatch Logs": any name
            // not starting with aws/), and its role may write nowhere else.
            json!({
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Metadata": checkov_skips(&LOG_GROUP_SKIPS),
                "Properties": {"RetentionInDays": 30}
            }),
        );
        let mut all = statements.clone();
        all.push(statement(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            // A log group's Arn attribute ends in `:*` (AWS::Logs::LogGroup return values):
            // every stream of this group, and no other group.
            vec![json!({"Fn::GetAtt": [log_group.clone(), "Arn"]})],
        ));
        resources.insert(
            format!("{stem}Role"),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
                    },
                    "Policies": [{"PolicyName": format!("slipway-{name}"), "PolicyDocument": {"Version": "2012-10-17", "Statement": all}}]
                }
            }),
        );
        let mut variables =
            json!({"SLIPWAY_TABLE": {"Ref": "StateTable"}, "AWS_LAMBDA_LOG_FORMAT": "JSON"});
        let vpc =
            (*name == "health-check" && !options.health_check_subnets.is_empty()).then(|| {
                json!({
                    "SubnetIds": options.health_check_subnets,
                    "SecurityGroupIds": options.health_check_security_groups
                })
            });
        // The topic --create-topic made is the one plan and finish announce on (they alone
        // may publish) when slipway.toml names none.
        if created_topic && (*name == "plan" || *name == "finish") {
            variables[slipway_core::aws::TOPIC_ENV] = json!({"Ref": "NotificationTopic"});
        }
        if staged && *name == "update-services" {
            variables[slipway_core::aws::HOOK_FUNCTION_ENV] =
                json!({"Fn::GetAtt": ["HealthCheckFunction", "Arn"]});
            variables[slipway_core::aws::HOOK_ROLE_ENV] =
                json!({"Fn::GetAtt": ["LifecycleHookRole", "Arn"]});
        }
        resources.insert(
            format!("{stem}Function"),
            json!({
                "Type": "AWS::Lambda::Function",
                "Metadata": checkov_skips(&FUNCTION_SKIPS),
                "Properties": {
                    "FunctionName": function_name,
                    "Description": format!("Slipway step {name} ({env})"),
                    "Runtime": "provided.al2023",
                    "Architectures": ["arm64"],
                    "Handler": "bootstrap",
                    "MemorySize": 256,
                    "Timeout": lambda_timeout(name),
                    "Role": {"Fn::GetAtt": [format!("{stem}Role"), "Arn"]},
                    // The zip's S3 version, pinned: a later write to the key changes nothing.
                    "Code": {
                        "S3Bucket": {"Ref": "ArtifactBucket"},
                        "S3Key": {"Fn::Sub": format!("${{ArtifactPrefix}}{name}.zip")},
                        "S3ObjectVersion": {"Ref": code_version_parameter(stem)}
                    },
                    "LoggingConfig": {"LogGroup": {"Ref": log_group}, "LogFormat": "JSON"},
                    "Environment": {"Variables": variables}
                }
            }),
        );
        if let Some(vpc) = vpc {
            if let Some(f) = resources.get_mut(&format!("{stem}Function")) {
                f["Properties"]["VpcConfig"] = vpc;
            }
        }
        substitutions.insert(
            (*substitution).into(),
            json!({"Fn::GetAtt": [format!("{stem}Function"), "Arn"]}),
        );
    }
    let function_arns: Vec<Value> = FUNCTIONS
        .iter()
        .map(|(_, stem, _)| json!({"Fn::GetAtt": [format!("{stem}Function"), "Arn"]}))
        .collect();
    resources.insert(
        "StateMachineLogGroup".into(),
        // Kept when the stack is deleted; named after this stack's id, so a reinstall makes a
        // new one, under /aws/vendedlogs/ (the prefix CloudWatch Logs recommends for vended
        // logs: its resource policy then needs no entry per log group).
        json!({
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skips(&LOG_GROUP_SKIPS),
            "Properties": {
                "LogGroupName": {"Fn::Sub": [
                    format!("/aws/vendedlogs/states/slipway-{env}-${{StackId}}"),
                    {"StackId": {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}}
                ]},
                "RetentionInDays": 30
            }
        }),
    );
    let rule_names = [
        format!("slipway-{env}-ecr-push"),
        format!("slipway-{env}-recover"),
    ];
    let rule_arns: Vec<Value> = rule_names
        .iter()
        .map(|n| {
            sub(&format!(
                "arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{n}"
            ))
        })
        .collect();
    // Confused-deputy protection (IAM User Guide, "The confused deputy problem"): a service
    // principal may assume the role only for this account's own state machine or rules.
    let trust = |service: &str, source_arns: Vec<Value>| {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                "ArnEquals": {"aws:SourceArn": source_arns}
            }
        }]})
    };
    if staged {
        // What ECS assumes to invoke health-check as a lifecycle hook (Developer Guide,
        // "Lambda hooks": the hook's roleArn "grants Amazon ECS permission to call Lambda
        // functions"); only this account's ECS, only that function.
        resources.insert(
            "LifecycleHookRole".into(),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"}, "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
                    }]},
                    "Policies": [{"PolicyName": "slipway-lifecycle-hook", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                        statement(&["lambda:InvokeFunction"], vec![json!({"Fn::GetAtt": ["HealthCheckFunction", "Arn"]})])
                    ]}}]
                }
            }),
        );
    }
    resources.insert(
        "StateMachineRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust("states.amazonaws.com", vec![state_machine_arn]),
                "Policies": [{"PolicyName": "slipway-invoke-steps", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    statement(&["lambda:InvokeFunction"], function_arns),
                    // Logging to CloudWatch Logs: Step Functions' log delivery actions take
                    // no resource ARN (Step Functions Developer Guide, "IAM policies for
                    // logging to CloudWatch Logs").
                    statement(&LOG_DELIVERY, vec![json!("*")])
                ]}}]
            }
        }),
    );
    resources.insert(
        "StateMachine".into(),
        json!({
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": format!("slipway-{env}"),
                "StateMachineType": "STANDARD",
                "RoleArn": {"Fn::GetAtt": ["StateMachineRole", "Arn"]},
                // Errors only, and never the executions' data (inputs and outputs carry
                // configuration and images); the log group keeps them 30 days.
                "LoggingConfiguration": {
                    "Level": "ERROR",
                    "IncludeExecutionData": false,
                    "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["StateMachineLogGroup", "Arn"]}}}]
                },
                // A string rather than an object: moto (the local test bed) reads only
                // DefinitionString; real CloudFormation applies the substitutions to either.
                "DefinitionString": DEFINITION,
                "DefinitionSubstitutions": substitutions
            }
        }),
    );
    let repositories: Vec<&str> = config
        .services
        .iter()
        .map(|s| s.repository.as_str())
        .collect();
    resources.insert(
        "EcrPushRuleRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust("events.amazonaws.com", rule_arns),
                "Policies": [{"PolicyName": "slipway-start-execution", "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement(&["states:StartExecution"], vec![json!({"Ref": "StateMachine"})])]}}]
            }
        }),
    );
    resources.insert(
        "EcrPushRule".into(),
        json!({
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": rule_names[0],
                "Description": format!("Slipway ({env}): deploy on every image push to the configured repositories"),
                // Only this account's pushes (an event's `account` is the account it came
                // from; plan also refuses an ECR event whose account is not the registry's).
                "EventPattern": {
                    "source": ["aws.ecr"],
                    "account": [{"Ref": "AWS::AccountId"}],
                    "detail-type": ["ECR Image Action"],
                    "detail": {"action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": repositories}
                },
                "State": "ENABLED",
                "Targets": [{"Id": "slipway", "Arn": {"Ref": "StateMachine"}, "RoleArn": {"Fn::GetAtt": ["EcrPushRuleRole", "Arn"]}}]
            }
        }),
    );
    // A stopped or timed-out execution ends without its Catch states: its status-change
    // event starts a recovery execution (plan recognises the event). Only this state
    // machine's executions; Step Functions delivers these events best-effort (EventBridge
    // events reference, aws.states).
    resources.insert(
        "RecoveryRule".into(),
        json!({
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": rule_names[1],
                "Description": format!("Slipway ({env}): recover what a stopped or timed-out deployment left behind"),
                "EventPattern": {
                    "source": ["aws.states"],
                    "detail-type": [slipway_core::input::STATUS_CHANGE],
                    "detail": {"status": ["ABORTED", "TIMED_OUT"], "stateMachineArn": [{"Ref": "StateMachine"}]}
                },
                "State": "ENABLED",
                "Targets": [{"Id": "slipway-recover", "Arn": {"Ref": "StateMachine"}, "RoleArn": {"Fn::GetAtt": ["EcrPushRuleRole", "Arn"]}}]
            }
        }),
    );
    // ECS's service deployment events wake the stability wait (the state machine's
    // WaitForGroupEvents): to check-stability, which answers the waiting task. Only the
    // events that end a deployment, and only of this cluster's services (a service ARN
    // names its cluster).
    resources.insert(
        "DeploymentEventRule".into(),
        json!({
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": format!("slipway-{env}-deployment-events"),
                "Description": format!("Slipway ({env}): ECS deployment events wake the release waiting for them"),
                "EventPattern": {
                    "source": ["aws.ecs"],
                    "account": [{"Ref": "AWS::AccountId"}],
                    "detail-type": [slipway_core::steps::DEPLOYMENT_EVENT],
                    "resources": [{"prefix": {"Fn::Sub": format!("arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:service/{cluster}/")}}],
                    "detail": {"eventName": ["SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"]}
                },
                "State": "ENABLED",
                "Targets": [{"Id": "slipway-check-stability", "Arn": {"Fn::GetAtt": ["CheckStabilityFunction", "Arn"]}}]
            }
        }),
    );
    // CloudFormation's stack status events wake the stack loop (WaitForStackEvents): to
    // deploy-stack, which answers the waiting task. Only the configured stacks (a stack id
    // is `…:stack/<name>/<uuid>`).
    if !config.stacks.is_empty() {
        let prefixes: Vec<Value> = config
            .stacks
            .iter()
            .map(|s| json!({"prefix": sub(&format!(
                "arn:${{AWS::Partition}}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/{}/",
                s.name
            ))}))
            .collect();
        resources.insert(
            "StackEventRule".into(),
            json!({
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Name": format!("slipway-{env}-stack-events"),
                    "Description": format!("Slipway ({env}): stack status events wake the release waiting for its stack update"),
                    "EventPattern": {
                        "source": ["aws.cloudformation"],
                        "account": [{"Ref": "AWS::AccountId"}],
                        "detail-type": [slipway_core::steps::STACK_EVENT],
                        "resources": prefixes
                    },
                    "State": "ENABLED",
                    "Targets": [{"Id": "slipway-deploy-stack", "Arn": {"Fn::GetAtt": ["DeployStackFunction", "Arn"]}}]
                }
            }),
        );
        resources.insert(
            "StackEventPermission".into(),
            json!({
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": {"Ref": "DeployStackFunction"},
                    "Principal": "events.amazonaws.com",
                    "SourceArn": {"Fn::GetAtt": ["StackEventRule", "Arn"]},
                    "SourceAccount": {"Ref": "AWS::AccountId"}
                }
            }),
        );
    }
    // A rule invokes a Lambda target through the function's resource policy (EventBridge
    // User Guide, "Using resource-based policies for Amazon EventBridge": Lambda), for this
    // rule only.
    resources.insert(
        "DeploymentEventPermission".into(),
        json!({
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": "CheckStabilityFunction"},
                "Principal": "events.amazonaws.com",
                "SourceArn": {"Fn::GetAtt": ["DeploymentEventRule", "Arn"]},
                "SourceAccount": {"Ref": "AWS::AccountId"}
            }
        }),
    );
    if created_topic {
        // Encrypted at rest with SNS's AWS managed key.
        resources.insert("NotificationTopic".into(), json!({"Type": "AWS::SNS::Topic", "Properties": {"TopicName": format!("slipway-{env}"), "KmsMasterKeyId": "alias/aws/sns"}}));
    }
    let mut outputs = json!({
        "StateMachineArn": {"Value": {"Ref": "StateMachine"}},
        "StateTableName": {"Value": {"Ref": "StateTable"}}
    });
    if let Some(subject) = options.github_subject() {
        // IAM allows one provider per URL in an account: an existing one is used by ARN; one
        // created here is retained when the stack is deleted (other roles may trust it).
        let provider = match &options.github_oidc_provider {
            Some(arn) => json!(arn),
            None => {
                resources.insert(
                    "GitHubOidcProvider".into(),
                    json!({
                        "Type": "AWS::IAM::OIDCProvider",
                        "DeletionPolicy": "Retain",
                        "UpdateReplacePolicy": "Retain",
                        "Properties": {"Url": GITHUB_OIDC_URL, "ClientIdList": ["sts.amazonaws.com"]}
                    }),
                );
                json!({"Ref": "GitHubOidcProvider"})
            }
        };
        resources.insert(
            "GitHubDeployRole".into(),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Federated": provider},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                                "token.actions.githubusercontent.com:sub": subject
                            }
                        }
                    }]},
                    "Policies": [{"PolicyName": "slipway-deploy", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                        statement(&["states:StartExecution"], vec![json!({"Ref": "StateMachine"})]),
                        statement(&["states:DescribeExecution", "states:GetExecutionHistory"],
                            vec![sub(&format!("arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:slipway-{env}:*"))])
                    ]}}]
                }
            }),
        );
        outputs["GitHubDeployRoleArn"] =
            json!({"Value": {"Fn::GetAtt": ["GitHubDeployRole", "Arn"]}});
    }
    let mut parameters = json!({
        "ArtifactBucket": {"Type": "String", "Description": "S3 bucket holding the functions' zips"},
        "ArtifactPrefix": {"Type": "String", "Default": "", "Description": "Key prefix of the zips (<prefix><function>.zip)"}
    });
    for (name, stem, _) in FUNCTIONS {
        parameters[code_version_parameter(stem)] = json!({
            "Type": "String",
            "Description": format!("S3 version of {name}.zip (the bucket is versioned)")
        });
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("Slipway deploy orchestrator for {env}"),
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": outputs
    })
}

/// IAM's quota on the inline policies of one role together: 10,240 characters, whitespace
/// not counted (IAM User Guide, "IAM and AWS STS quotas": role policy size). Every ARN a
/// function may touch is named in its role (least privilege), so many services, stacks or
/// alarms can reach it; CloudFormation would then fail the stack's creation midway.
pub const ROLE_POLICY_SIZE_QUOTA: usize = 10_240;

/// What a reference in a policy is counted as: the longest partition (`aws-us-gov`), a long
/// region name, an account id; any other `Ref`, `Fn::GetAtt` or `${…}` as 100 characters
/// (an ARN of this stack's). The count is an estimate on the long side.
fn resolved_for_size(v: &Value) -> Value {
    fn fill(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            match name {
                "AWS::Partition" => out.push_str("aws-us-gov"),
                "AWS::Region" => out.push_str("ap-southeast-5"),
                "AWS::AccountId" => out.push_str("123456789012"),
                // `${!x}` is the literal `${x}`.
                _ if name.starts_with('!') => {
                    out.push_str("${");
                    out.push_str(&name[1..]);
                    out.push('}');
                }
                _ => out.push_str(&"0".repeat(100)),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
    match v {
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((k, Value::String(text))) if k == "Fn::Sub" => Value::String(fill(text)),
            Some((k, Value::Array(a))) if k == "Fn::Sub" => {
                Value::String(fill(a.first().and_then(Value::as_str).unwrap_or_default()))
            }
            Some((k, _)) if k == "Ref" || k == "Fn::GetAtt" => Value::String(fill("${x}")),
            _ => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), resolved_for_size(v)))
                    .collect(),
            ),
        },
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), resolved_for_size(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(resolved_for_size).collect()),
        other => other.clone(),
    }
}

/// Each role's inline policies together, as IAM counts them (non-whitespace characters), at
/// most [`ROLE_POLICY_SIZE_QUOTA`]; otherwise the roles over it, their sizes, and what to do.
pub fn check_policy_sizes(template: &Value, config: &Config) -> Result<(), String> {
    let mut over = Vec::new();
    for (name, r) in template["Resources"].as_object().into_iter().flatten() {
        if r["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let size: usize = r["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                resolved_for_size(&p["PolicyDocument"])
                    .to_string()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .count()
            })
            .sum();
        if size > ROLE_POLICY_SIZE_QUOTA {
            over.push(format!("{name} about {size}"));
        }
    }
    if over.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the functions' IAM policies would be over IAM's {ROLE_POLICY_SIZE_QUOTA} characters for one role's inline policies ({}): each names every resource the function may touch, and this environment has {} services, {} stacks and {} alarms; split it into environments, or name fewer alarms",
        over.join(", "),
        config.services.len(),
        config.stacks.len(),
        config.all_alarms().len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Actions that take no resource ARN (AWS's service authorization reference lists them with
    /// resource type "*"): the only statements allowed `"Resource": "*"`.
    const UNSCOPABLE: [&str; 3] = [
        "ecs:DescribeTaskDefinition",
        "elasticloadbalancing:DescribeTargetHealth",
        // Its resource type is container-instance; finish's statement carries the
        // `ecs:cluster` condition instead (checked in the test below).
        "ecs:ListTasks",
    ];

    /// Statements of every IAM policy in the template, with the resource that holds them.
    fn policy_statements(template: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (name, r) in template["Resources"].as_object().into_iter().flatten() {
            for p in r["Properties"]["Policies"].as_array().into_iter().flatten() {
                for s in p["PolicyDocument"]["Statement"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    out.push((name.clone(), s.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn health_check_in_a_vpc_gets_its_subnets_and_only_the_eni_actions() {
        let options = Options {
            health_check_subnets: vec!["subnet-0123abcd".into(), "subnet-4567abcd".into()],
            health_check_security_groups: vec!["sg-89abcdef".into()],
            ..Options::default()
        };
        let t = template(&staging(), &options);
        let r = &t["Resources"];
        assert_eq!(
            r["HealthCheckFunction"]["Properties"]["VpcConfig"],
            json!({"SubnetIds": ["subnet-0123abcd", "subnet-4567abcd"], "SecurityGroupIds": ["sg-89abcdef"]})
        );
        for (_, stem, _) in FUNCTIONS {
            if stem != "HealthCheck" {
                assert!(r[&format!("{stem}Function")]["Properties"]
                    .get("VpcConfig")
                    .is_none());
            }
        }
        let eni: Vec<(String, Value)> = policy_statements(&t)
            .into_iter()
            .filter(|(_, s)| s["Action"] == json!(LAMBDA_VPC_ACTIONS))
            .collect();
        assert_eq!(eni.len(), 1, "{eni:?}");
        assert_eq!(eni[0].0, "HealthCheckRole");
        assert_eq!(eni[0].1["Resource"], json!(["*"]));
        // Without subnets, no function is in a VPC and no role may touch interfaces.
        let plain = template(&staging(), &Options::default());
        assert!(plain["Resources"]["HealthCheckFunction"]["Properties"]
            .get("VpcConfig")
            .is_none());
        assert!(!serde_json::to_string(&plain)
            .unwrap()
            .contains("ec2:CreateNetworkInterface"));
    }

    #[test]
    fn options_are_stored_in_the_template_and_kept_unless_changed_or_dropped() {
        let installed = Options {
            github_repository: Some("acme/app".into()),
            github_branch: Some("staging".into()),
            github_oidc_provider: Some(
                "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
                    .into(),
            ),
            create_topic: true,
            health_check_subnets: vec!["subnet-0123abcd".into()],
            health_check_security_groups: vec!["sg-89abcdef".into()],
            task_roles: vec!["arn:aws:iam::123456789012:role/r".into()],
            ..Options::default()
        };
        let t = template(&staging(), &installed);
        let stored = Options::stored_in(&t).expect("our template");
        // The task roles and families are read from the services each run, not stored.
        assert_eq!(
            stored,
            Options {
                task_roles: vec![],
                ..installed.clone()
            }
        );
        // A template without options reads as none; one of another shape is an error.
        assert_eq!(
            Options::stored_in(&template(&staging(), &Options::default())),
            Ok(Options::default())
        );
        assert!(Options::stored_in(&json!({})).is_err());
        // A GitHub environment, and the provider the stack created (no ARN to keep).
        let env = Options {
            github_repository: Some("acme/app".into()),
            github_environment: Some("production".into()),
            ..Options::default()
        };
        let read = Options::stored_in(&template(&staging(), &env)).expect("our template");
        assert_eq!(
            (
                read.github_environment.as_deref(),
                read.github_branch.as_deref(),
                read.github_oidc_provider.as_deref()
            ),
            (Some("production"), None, None)
        );
        let (_, said) = Options::default().keeping(&read, DropOptions::default());
        assert_eq!(
            said,
            [
                "--github-repository acme/app",
                "--github-environment production"
            ]
        );

        // A re-run with no flags keeps everything, and says so.
        let (kept, said) = Options::default().keeping(&stored, DropOptions::default());
        assert_eq!(kept, stored);
        assert_eq!(
            said,
            [
                "--github-repository acme/app",
                "--github-branch staging",
                "--github-oidc-provider arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
                "--create-topic",
                "--health-check-subnet subnet-0123abcd",
                "--health-check-security-group sg-89abcdef"
            ]
        );
        // A flag given replaces its group; a drop removes it; the rest is kept.
        let given = Options {
            github_repository: Some("acme/other".into()),
            github_branch: Some("main".into()),
            ..Options::default()
        };
        let drop = DropOptions {
            topic: true,
            health_check_vpc: true,
            github: false,
        };
        let (changed, said) = given.keeping(&stored, drop);
        assert_eq!(changed.github_repository.as_deref(), Some("acme/other"));
        // The account's provider stays: the new role must not try to create another one.
        assert_eq!(
            changed.github_oidc_provider, stored.github_oidc_provider,
            "the account's provider is kept"
        );
        assert!(!changed.create_topic);
        assert!(changed.health_check_subnets.is_empty());
        assert_eq!(
            said,
            ["--github-oidc-provider arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"]
        );
        let (dropped, _) = Options::default().keeping(
            &stored,
            DropOptions {
                github: true,
                ..DropOptions::default()
            },
        );
        assert_eq!(dropped.github_repository, None);
        assert!(dropped.create_topic);
    }

    /// Handler permissions of the template's resource types that docs/bootstrap-policy.json
    /// leaves out, each with why the template never needs it (an action, or a service
    /// prefix ending in `:`).
    const NOT_NEEDED: [(&str, &str); 13] = [
        ("kms:", "no customer managed key: the topic uses alias/aws/sns; the table, the logs and the functions' variables AWS owned keys"),
        ("kinesis:", "no Kinesis streaming destination on the table"),
        ("firehose:", "the log groups deliver nowhere"),
        ("elasticfilesystem:", "no file system mounted in a function"),
        ("s3files:", "no file system mounted in a function"),
        ("s3:REST.PUT.OBJECT", "not an IAM action (the LogGroup schema lists it as written)"),
        ("s3:GetObjectMetadata", "the table is not imported from S3"),
        ("lambda:PassCapacityProvider", "no Lambda capacity provider"),
        ("dynamodb:ImportTable", "the table is not imported from S3"),
        ("dynamodb:DescribeImport", "the table is not imported from S3"),
        ("dynamodb:CreateTableReplica", "not a global table"),
        ("dynamodb:AssociateTableReplica", "not a global table"),
        ("iam:CreateServiceLinkedRole", "no global table or contributor insights, which would make one"),
    ];

    /// What `slipway bootstrap` and `uninstall` call themselves (install.rs), besides what
    /// CloudFormation does with the caller's permissions.
    const BOOTSTRAP_CALLS: [&str; 18] = [
        "sts:GetCallerIdentity",
        "ecs:DescribeServices",
        "ecs:DescribeTaskDefinition",
        "s3:ListBucket",
        "s3:CreateBucket",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
        "s3:GetObject",
        "s3:PutObject",
        "cloudformation:DescribeStacks",
        "cloudformation:CreateStack",
        "cloudformation:UpdateStack",
        "cloudformation:DeleteStack",
        "cloudformation:DescribeStackEvents",
        "cloudformation:GetTemplate",
        "dynamodb:PutItem",
        "dynamodb:DeleteTable",
    ];

    /// docs/bootstrap-policy.json lets its holder install everything the template creates:
    /// for each resource type of a template with every option, each permission its
    /// CloudFormation handlers need (tests/fixtures/cfn-handler-permissions.json, from the
    /// registry schemas) is allowed, or NOT_NEEDED says why not; so are bootstrap's own
    /// calls. A new resource type fails here until the fixture and the policy cover it.
    #[test]
    fn the_bootstrap_policy_covers_every_resource_type_the_template_creates() {
        let policy: Value =
            serde_json::from_str(include_str!("../../docs/bootstrap-policy.json")).expect("JSON");
        let handlers: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/cfn-handler-permissions.json"
        ))
        .expect("JSON");
        assert_eq!(policy["Version"], "2012-10-17");
        let mut allowed = std::collections::HashSet::new();
        for s in policy["Statement"].as_array().expect("statements") {
            assert_eq!(s["Effect"], "Allow", "{s}");
            for a in s["Action"].as_array().expect("a list of actions") {
                let a = a.as_str().expect("an action");
                assert!(!a.contains('*'), "no wildcard action: {a}");
                allowed.insert(a.to_owned());
            }
        }
        let options = Options {
            github_repository: Some("acme/app".into()),
            github_branch: Some("staging".into()),
            create_topic: true,
            health_check_subnets: vec!["subnet-0123abcd".into()],
            health_check_security_groups: vec!["sg-89abcdef".into()],
            task_roles: vec!["arn:aws:iam::123456789012:role/task".into()],
            task_families: vec!["staging-api".into()],
            task_log_groups: vec!["/ecs/staging-api".into()],
            ..Options::default()
        };
        let t = template(&staging(), &options);
        let types: std::collections::BTreeSet<&str> = t["Resources"]
            .as_object()
            .expect("resources")
            .values()
            .filter_map(|r| r["Type"].as_str())
            .collect();
        assert!(types.len() >= 8, "{types:?}");
        let not_needed = |a: &str| {
            NOT_NEEDED.iter().any(|(n, _)| {
                if n.ends_with(':') {
                    a.starts_with(n)
                } else {
                    a == *n
                }
            })
        };
        let mut missing = Vec::new();
        for ty in &types {
            let actions = handlers[*ty].as_array().unwrap_or_else(|| {
                panic!("{ty}: not in tests/fixtures/cfn-handler-permissions.json: add its handlers' permissions from its CloudFormation schema, then to docs/bootstrap-policy.json")
            });
            for a in actions.iter().filter_map(Value::as_str) {
                if !allowed.contains(a) && !not_needed(a) {
                    missing.push(format!("{ty}: {a}"));
                }
            }
        }
        for a in BOOTSTRAP_CALLS {
            if !allowed.contains(a) {
                missing.push(format!("bootstrap: {a}"));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/bootstrap-policy.json lacks: {missing:#?}"
        );
    }

    fn staging() -> Config {
        let text = include_str!("../../examples/staging/slipway.toml");
        Config::parse(text, "examples/staging/slipway.toml").expect("valid example")
    }

    #[test]
    fn one_function_role_and_log_group_per_step_and_the_definition_substituted() {
        let t = template(&staging(), &Options::default());
        let r = t["Resources"].as_object().expect("resources");
        for (name, stem, substitution) in FUNCTIONS {
            assert_eq!(
                r[&format!("{stem}Function")]["Properties"]["FunctionName"],
                format!("slipway-staging-{name}")
            );
            assert_eq!(
                r[&format!("{stem}Function")]["Properties"]["Architectures"][0],
                "arm64"
            );
            assert!(
                r.contains_key(&format!("{stem}Role"))
                    && r.contains_key(&format!("{stem}LogGroup"))
            );
            assert!(
                DEFINITION.contains(&format!("${{{substitution}}}")),
                "{substitution} used by the definition"
            );
            assert!(r["StateMachine"]["Properties"]["DefinitionSubstitutions"]
                .get(substitution)
                .is_some());
        }
        let pattern = &r["EcrPushRule"]["Properties"]["EventPattern"];
        assert_eq!(
            pattern["detail"]["repository-name"],
            json!([
                "staging/web",
                "staging/api",
                "staging/auth",
                "staging/admin"
            ])
        );
        assert!(!r.contains_key("GitHubDeployRole"));
    }

    /// How much longer than its Lambda's timeout a Task state waits, at least.
    const STATE_MARGIN_SECONDS: u32 = 30;

    #[test]
    fn every_task_state_outlasts_its_lambda() {
        let t = template(&staging(), &Options::default());
        let definition: Value = serde_json::from_str(DEFINITION).expect("definition");
        let mut tasks = Vec::new();
        fn collect(states: &Value, out: &mut Vec<(String, Value)>) {
            for (name, state) in states.as_object().expect("states") {
                if state["Type"] == "Task" {
                    out.push((name.clone(), state.clone()));
                }
                if let Some(inner) = state.get("ItemProcessor") {
                    collect(&inner["States"], out);
                }
            }
        }
        collect(&definition["States"], &mut tasks);
        assert!(tasks.len() >= 10);
        for (state, task) in tasks {
            // A `.waitForTaskToken` task names its function in its Parameters.
            let resource = task["Parameters"]["FunctionName"]
                .as_str()
                .filter(|_| task["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken")
                .or_else(|| task["Resource"].as_str())
                .expect("resource");
            let (name, stem, _) = FUNCTIONS
                .iter()
                .find(|(_, _, sub)| resource == format!("${{{sub}}}"))
                .unwrap_or_else(|| panic!("{state}: unknown resource {resource}"));
            let lambda = &t["Resources"][format!("{stem}Function")]["Properties"]["Timeout"];
            assert_eq!(lambda, lambda_timeout(name), "{state}");
            let timeout = task["TimeoutSeconds"].as_u64().expect("TimeoutSeconds");
            assert!(
                timeout >= u64::from(lambda_timeout(name) + STATE_MARGIN_SECONDS),
                "{state}: TimeoutSeconds {timeout} but its Lambda ({name}) may run {lambda}s"
            );
        }
    }

    #[test]
    fn stopped_and_timed_out_executions_of_this_machine_start_a_recovery() {
        let t = template(&staging(), &Options::default());
        let rule = &t["Resources"]["RecoveryRule"]["Properties"];
        assert_eq!(rule["EventPattern"]["source"], json!(["aws.states"]));
        assert_eq!(
            rule["EventPattern"]["detail"],
            json!({"status": ["ABORTED", "TIMED_OUT"], "stateMachineArn": [{"Ref": "StateMachine"}]})
        );
        assert_eq!(rule["Targets"][0]["Arn"], json!({"Ref": "StateMachine"}));
    }

    /// The service roles trust their service only for this account's own state machine and
    /// rules (confused-deputy protection), the push rule matches only this account's events,
    /// the state machine logs errors without execution data, and the topic is encrypted.
    #[test]
    fn trust_is_scoped_to_this_account_and_logs_and_topic_are_safe() {
        let options = Options {
            create_topic: true,
            ..Options::default()
        };
        let t = template(&staging(), &options);
        let r = &t["Resources"];
        // The created topic is wired: plan and finish (the two that may publish to it) are
        // told its ARN, the other steps are not.
        for (_, stem, _) in FUNCTIONS {
            let variables =
                &r[&format!("{stem}Function")]["Properties"]["Environment"]["Variables"];
            let wired = stem == "Plan" || stem == "Finish";
            assert_eq!(
                variables.get(slipway_core::aws::TOPIC_ENV),
                wired.then(|| json!({"Ref": "NotificationTopic"})).as_ref(),
                "{stem}"
            );
        }
        let mut publishers: Vec<String> = policy_statements(&t)
            .into_iter()
            .filter(|(_, s)| s["Action"] == json!(["sns:Publish"]))
            .map(|(role, s)| {
                assert_eq!(
                    s["Resource"],
                    json!([{"Ref": "NotificationTopic"}]),
                    "{role}"
                );
                role
            })
            .collect();
        publishers.sort();
        assert_eq!(publishers, ["FinishRole", "PlanRole"]);
        let sub = |s: &str| json!({"Fn::Sub": s});
        for (role, service, arns) in [
            (
                "StateMachineRole",
                "states.amazonaws.com",
                json!([sub("arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:slipway-staging")]),
            ),
            (
                "EcrPushRuleRole",
                "events.amazonaws.com",
                json!([
                    sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/slipway-staging-ecr-push"),
                    sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/slipway-staging-recover")
                ]),
            ),
        ] {
            let statements = r[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
                .as_array()
                .expect("statements");
            assert_eq!(statements.len(), 1, "{role}");
            let s = &statements[0];
            assert_eq!(s["Principal"], json!({"Service": service}), "{role}");
            assert_eq!(
                s["Condition"]["StringEquals"]["aws:SourceAccount"],
                json!({"Ref": "AWS::AccountId"}),
                "{role}"
            );
            assert_eq!(s["Condition"]["ArnEquals"]["aws:SourceArn"], arns, "{role}");
        }
        // The rules the EventBridge role trusts are the ones the template names.
        assert_eq!(
            r["EcrPushRule"]["Properties"]["Name"],
            "slipway-staging-ecr-push"
        );
        assert_eq!(
            r["RecoveryRule"]["Properties"]["Name"],
            "slipway-staging-recover"
        );
        assert_eq!(
            r["EcrPushRule"]["Properties"]["EventPattern"]["account"],
            json!([{"Ref": "AWS::AccountId"}])
        );
        let logging = &r["StateMachine"]["Properties"]["LoggingConfiguration"];
        assert_eq!(logging["Level"], "ERROR");
        assert_eq!(logging["IncludeExecutionData"], false);
        assert_eq!(
            logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"],
            json!({"Fn::GetAtt": ["StateMachineLogGroup", "Arn"]})
        );
        assert_eq!(
            r["NotificationTopic"]["Properties"]["KmsMasterKeyId"],
            "alias/aws/sns"
        );
    }

    #[test]
    fn no_wildcard_resource_where_aws_lets_one_be_named() {
        let options = Options {
            github_repository: Some("acme/app".into()),
            github_branch: Some("staging".into()),
            create_topic: true,
            task_roles: vec!["arn:aws:iam::123456789012:role/api-task".into()],
            task_families: vec!["staging-api".into()],
            task_log_groups: vec!["/ecs/staging-api".into()],
            ..Options::default()
        };
        let t = template(&staging(), &options);
        let statements = policy_statements(&t);
        assert!(statements.len() > 15);
        for (holder, s) in statements {
            let resources: Vec<Value> = match &s["Resource"] {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            assert!(
                !resources.is_empty(),
                "{holder}: a statement without resources: {s}"
            );
            if resources.iter().any(|r| r == "*") {
                let actions: Vec<&str> = s["Action"]
                    .as_array()
                    .expect("actions")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                for a in actions {
                    if a == "ecs:ListTasks" {
                        assert!(
                            s["Condition"]["ArnEquals"]["ecs:cluster"].is_object(),
                            "{holder}: ListTasks on \"*\" without its ecs:cluster condition: {s}"
                        );
                    }
                    assert!(
                        UNSCOPABLE.contains(&a)
                            || (holder == "StateMachineRole" && LOG_DELIVERY.contains(&a)),
                        "{holder}: {a} on \"*\", but AWS lets its resource be named"
                    );
                }
            }
            let text = s.to_string();
            assert!(
                !text.contains(":*:*") && !text.contains("\"Action\":\"*\""),
                "{holder}: too broad: {text}"
            );
        }
        // finish reads only the services' log groups' streams.
        let reads: Vec<(String, Value)> = policy_statements(&t)
            .into_iter()
            .filter(|(_, s)| s["Action"] == json!(["logs:GetLogEvents"]))
            .collect();
        assert_eq!(reads.len(), 1, "{reads:?}");
        assert_eq!(reads[0].0, "FinishRole");
        assert_eq!(
            reads[0].1["Resource"],
            json!([{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/ecs/staging-api:log-stream:*"}])
        );
        let github = &t["Resources"]["GitHubDeployRole"]["Properties"];
        let condition =
            &github["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            condition["token.actions.githubusercontent.com:sub"],
            "repo:acme/app:ref:refs/heads/staging"
        );
    }

    /// The statements of one role's policy.
    fn role_statements(t: &Value, role: &str) -> Vec<Value> {
        t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
            .clone()
    }

    /// The statements granting `action`.
    fn granting(statements: &[Value], action: &str) -> Vec<Value> {
        statements
            .iter()
            .filter(|s| {
                s["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == action))
            })
            .cloned()
            .collect()
    }

    #[test]
    fn each_step_reaches_only_its_own_table_keys_and_none_writes_the_configuration() {
        let t = template(&staging(), &Options::default());
        for (role, access) in [
            ("PlanRole", state::PLAN_ACCESS),
            ("FinishRole", state::FINISH_ACCESS),
            ("CheckStabilityRole", state::CHECK_STABILITY_ACCESS),
            ("DeployStackRole", state::DEPLOY_STACK_ACCESS),
        ] {
            let statements = role_statements(&t, role);
            for (action, keys) in [
                ("dynamodb:GetItem", access.get),
                ("dynamodb:PutItem", access.put),
                ("dynamodb:DeleteItem", access.delete),
            ] {
                let granted = granting(&statements, action);
                assert_eq!(granted.len(), 1, "{role} {action}");
                let condition = &granted[0]["Condition"];
                let leading: Vec<&str> = condition["ForAllValues:StringLike"]
                    ["dynamodb:LeadingKeys"]
                    .as_array()
                    .expect("LeadingKeys")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let want: Vec<String> = keys.iter().map(|k| leading_key_pattern(k)).collect();
                assert_eq!(leading, want, "{role} {action}");
                assert_eq!(
                    condition["Null"]["dynamodb:LeadingKeys"], "false",
                    "{role} {action}"
                );
                if action != "dynamodb:GetItem" {
                    assert!(
                        !leading.contains(&state::CONFIG_KEY),
                        "{role} may not {action} the configuration"
                    );
                }
            }
        }
        // The keys the code uses are the ones granted: a lock and a queue place of a
        // service, a stack lock, a release, the records.
        let plan = state::PLAN_ACCESS;
        for key in [
            format!("{}api", state::LOCK_KEY),
            state::stack_lock("net"),
            format!("{}api", state::WAIT_KEY),
        ] {
            let key = if key.starts_with(state::STACK_LOCK_PREFIX) {
                format!("{}{key}", state::LOCK_KEY)
            } else {
                key
            };
            assert!(plan.put.iter().any(|p| key.starts_with(p)), "{key}");
        }
        // No other step touches the table.
        for (_, stem, _) in FUNCTIONS
            .iter()
            .filter(|(n, _, _)| !["plan", "finish", "check-stability", "deploy-stack"].contains(n))
        {
            let text = serde_json::to_string(&role_statements(&t, &format!("{stem}Role"))).unwrap();
            assert!(!text.contains("dynamodb:"), "{stem}: {text}");
        }
    }

    #[test]
    fn update_services_passes_and_registers_only_the_services_own_roles_and_families() {
        let options = Options {
            task_roles: vec![
                "arn:aws:iam::123456789012:role/api-task".into(),
                "arn:aws:iam::123456789012:role/ecs-execution".into(),
            ],
            task_families: vec!["staging-api".into(), "staging-web".into()],
            ..Options::default()
        };
        let t = template(&staging(), &options);
        let statements = role_statements(&t, "UpdateServicesRole");
        let pass = granting(&statements, "iam:PassRole");
        assert_eq!(pass.len(), 1);
        assert_eq!(pass[0]["Resource"], json!(options.task_roles));
        assert_eq!(
            pass[0]["Condition"]["StringEquals"]["iam:PassedToService"],
            "ecs-tasks.amazonaws.com"
        );
        let register = granting(&statements, "ecs:RegisterTaskDefinition");
        assert_eq!(
            register[0]["Resource"],
            json!([
                {"Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/staging-api:*"},
                {"Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/staging-web:*"}
            ])
        );
        // Without roles it may pass none (never role/*).
        let t = template(&staging(), &Options::default());
        assert!(granting(&role_statements(&t, "UpdateServicesRole"), "iam:PassRole").is_empty());
        assert!(!t.to_string().contains(":role/*"));
    }

    #[test]
    fn role_policies_over_iams_quota_are_refused_before_anything_is_installed() {
        // The staging example, with every option, fits.
        let text = "alarms = [\"staging-5xx\"]\n".to_owned()
            + &include_str!("../../examples/staging/slipway.toml").replacen(
                "[[services]]",
                "[[services]]\nstrategy = \"blue-green\"\nalarms = [\"web-latency\"]",
                1,
            );
        let config = Config::parse(&text, "slipway.toml").expect("valid");
        assert_eq!(
            check_policy_sizes(&template(&config, &Options::default()), &config),
            Ok(())
        );
        // Two hundred alarms, each named in four roles, do not.
        let names: Vec<String> = (0..200).map(|i| format!("\"staging-alarm-{i}\"")).collect();
        let many = format!("alarms = [{}]\n", names.join(", "))
            + include_str!("../../examples/staging/slipway.toml");
        let config = Config::parse(&many, "slipway.toml").expect("valid");
        let e = check_policy_sizes(&template(&config, &Options::default()), &config).unwrap_err();
        for role in [
            "PlanRole",
            "DeployStackRole",
            "CheckStabilityRole",
            "HealthCheckRole",
        ] {
            assert!(e.contains(&format!("{role} about ")), "{e}");
        }
        assert!(!e.contains("FinishRole"), "{e}");
        assert!(
            e.contains("over IAM's 10240 characters") && e.contains("200 alarms"),
            "{e}"
        );
        // A reference counts at its longest; `${!x}` is the literal `${x}`.
        assert_eq!(
            resolved_for_size(
                &json!({"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:alarm:a-${!b}"})
            ),
            json!("arn:aws-us-gov:x:ap-southeast-5:123456789012:alarm:a-${b}")
        );
    }

    #[test]
    fn describe_alarms_is_granted_on_the_configured_alarms_to_the_steps_that_check_them() {
        let text = "alarms = [\"staging-5xx\"]\n".to_owned()
            + &include_str!("../../examples/staging/slipway.toml").replacen(
                "[[services]]",
                "[[services]]\nalarms = [\"api-latency-p99\", \"staging-5xx\", \"odd-${x}\"]",
                1,
            );
        let config = Config::parse(&text, "slipway.toml").expect("valid");
        let t = template(&config, &Options::default());
        let arn = |a: &str| json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{a}")});
        for (_, stem, _) in FUNCTIONS {
            let granted = granting(
                &role_statements(&t, &format!("{stem}Role")),
                "cloudwatch:DescribeAlarms",
            );
            if ["Plan", "DeployStack", "CheckStability", "HealthCheck"].contains(&stem) {
                assert_eq!(granted.len(), 1, "{stem}");
                assert_eq!(
                    granted[0]["Resource"],
                    json!([
                        arn("api-latency-p99"),
                        arn("odd-${!$}{x}"),
                        arn("staging-5xx")
                    ]),
                    "{stem}: the configured alarms, each once, never alarm:*; a `$` in a name is IAM's `${{$}}`"
                );
            } else {
                assert!(granted.is_empty(), "{stem} does not check alarms");
            }
        }
        // Without alarms, nobody may read any.
        let plain = template(&staging(), &Options::default());
        assert!(!plain.to_string().contains("cloudwatch:DescribeAlarms"));
    }

    #[test]
    fn a_staged_strategy_installs_the_hook_role_and_only_the_calls_it_needs() {
        let text = include_str!("../../examples/staging/slipway.toml").replacen(
            "[[services]]",
            "[[services]]\nstrategy = \"blue-green\"",
            1,
        );
        let config = Config::parse(&text, "slipway.toml").expect("valid");
        let t = template(&config, &Options::default());
        let r = &t["Resources"];
        let hook_role = &r["LifecycleHookRole"]["Properties"];
        let trust = &hook_role["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(trust["Principal"]["Service"], "ecs.amazonaws.com");
        assert_eq!(
            trust["Condition"]["StringEquals"]["aws:SourceAccount"],
            json!({"Ref": "AWS::AccountId"})
        );
        let invoke = &hook_role["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(
            invoke,
            &json!([{"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [{"Fn::GetAtt": ["HealthCheckFunction", "Arn"]}]}]),
            "health-check only"
        );
        let variables = &r["UpdateServicesFunction"]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            variables[slipway_core::aws::HOOK_FUNCTION_ENV],
            json!({"Fn::GetAtt": ["HealthCheckFunction", "Arn"]})
        );
        assert_eq!(
            variables[slipway_core::aws::HOOK_ROLE_ENV],
            json!({"Fn::GetAtt": ["LifecycleHookRole", "Arn"]})
        );
        let pass = granting(&role_statements(&t, "UpdateServicesRole"), "iam:PassRole");
        assert_eq!(pass.len(), 1, "{pass:?}");
        assert_eq!(
            pass[0]["Condition"]["StringEquals"]["iam:PassedToService"],
            "ecs.amazonaws.com"
        );
        let stop = granting(
            &role_statements(&t, "RollBackRole"),
            "ecs:StopServiceDeployment",
        );
        assert_eq!(stop.len(), 1);
        assert!(stop[0]["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.to_string().contains(":service-deployment/staging/")));
        assert_eq!(
            granting(
                &role_statements(&t, "HealthCheckRole"),
                "ecs:DescribeServices"
            )
            .len(),
            1,
            "which target group the service uses now"
        );
        // Rolling services only: none of it.
        let plain = template(&staging(), &Options::default()).to_string();
        for absent in [
            "LifecycleHookRole",
            "ecs:StopServiceDeployment",
            slipway_core::aws::HOOK_FUNCTION_ENV,
        ] {
            assert!(!plain.contains(absent), "{absent}");
        }
    }

    #[test]
    fn stack_calls_carry_the_stack_role_and_slipway_change_set_names_only() {
        let role = "arn:aws:iam::123456789012:role/cfn-exec";
        let text = include_str!("../../examples/staging/slipway.toml").replacen(
            "# role_arn = \"arn:aws:iam::123456789012:role/cdk-hnb659fds-cfn-exec-role-123456789012-us-east-1\"",
            &format!("role_arn = \"{role}\""),
            1,
        );
        let config = Config::parse(&text, "slipway.toml").expect("valid");
        let t = template(&config, &Options::default());
        let ecs_stack = json!({"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/staging-ecs/*"});
        for (role_name, action) in [
            ("DeployStackRole", "cloudformation:CreateChangeSet"),
            ("RollBackRole", "cloudformation:UpdateStack"),
        ] {
            let statements = role_statements(&t, role_name);
            let granted = granting(&statements, action);
            assert_eq!(
                granted.len(),
                2,
                "{role_name}: one statement with the role, one without"
            );
            let with_role = granted
                .iter()
                .find(|s| s["Resource"] == json!([ecs_stack]))
                .expect("staging-ecs");
            assert_eq!(
                with_role["Condition"]["ArnEquals"]["cloudformation:RoleArn"],
                role
            );
            let without = granted
                .iter()
                .find(|s| s["Resource"] != json!([ecs_stack]))
                .expect("the others");
            assert_eq!(without["Resource"].as_array().unwrap().len(), 5);
            assert_eq!(
                without["Condition"]["Null"]["cloudformation:RoleArn"],
                "true"
            );
            if action == "cloudformation:CreateChangeSet" {
                for s in &granted {
                    assert_eq!(
                        s["Condition"]["StringLike"]["cloudformation:ChangeSetName"],
                        change_set_names()
                    );
                }
                for other in [
                    "cloudformation:ExecuteChangeSet",
                    "cloudformation:DeleteChangeSet",
                    "cloudformation:DescribeChangeSet",
                ] {
                    let g = granting(&statements, other);
                    assert_eq!(g.len(), 1, "{other}");
                    assert_eq!(
                        g[0]["Condition"]["StringLike"]["cloudformation:ChangeSetName"],
                        change_set_names()
                    );
                }
            }
            let pass = granting(&statements, "iam:PassRole");
            assert_eq!(pass[0]["Resource"], json!([role]));
            assert_eq!(
                pass[0]["Condition"]["StringEquals"]["iam:PassedToService"],
                "cloudformation.amazonaws.com"
            );
        }
    }

    #[test]
    fn github_role_trusts_one_subject_and_uses_an_existing_provider_when_given() {
        let provider =
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
        let options = Options {
            github_repository: Some("acme/app".into()),
            github_environment: Some("staging".into()),
            github_oidc_provider: Some(provider.into()),
            ..Options::default()
        };
        let t = template(&staging(), &options);
        let trust = &t["Resources"]["GitHubDeployRole"]["Properties"]["AssumeRolePolicyDocument"]
            ["Statement"][0];
        assert_eq!(trust["Principal"]["Federated"], provider);
        assert_eq!(
            trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"],
            "repo:acme/app:environment:staging"
        );
        assert!(t["Resources"].get("GitHubOidcProvider").is_none());
        // Created here: kept when the stack goes (other roles may trust it).
        let options = Options {
            github_oidc_provider: None,
            github_environment: None,
            ..options
        };
        let t = template(&staging(), &options);
        let created = &t["Resources"]["GitHubOidcProvider"];
        assert_eq!(created["DeletionPolicy"], "Retain");
        assert_eq!(created["Properties"]["Url"], GITHUB_OIDC_URL);
        assert_eq!(
            t["Resources"]["GitHubDeployRole"]["Properties"]["AssumeRolePolicyDocument"]
                ["Statement"][0]["Condition"]["StringEquals"]
                ["token.actions.githubusercontent.com:sub"],
            "repo:acme/app:ref:refs/heads/main"
        );
    }

    #[test]
    fn log_groups_outlive_the_stack_and_code_is_pinned_to_its_s3_version() {
        let t = template(&staging(), &Options::default());
        let r = &t["Resources"];
        for (name, stem, _) in FUNCTIONS {
            let group = &r[format!("{stem}LogGroup")];
            assert_eq!(group["DeletionPolicy"], "Retain", "{name}");
            assert!(
                group["Properties"].get("LogGroupName").is_none(),
                "{name}: a fixed name would block a reinstall"
            );
            let function = &r[format!("{stem}Function")]["Properties"];
            assert_eq!(
                function["LoggingConfig"]["LogGroup"],
                json!({"Ref": format!("{stem}LogGroup")})
            );
            assert_eq!(
                function["Code"]["S3ObjectVersion"],
                json!({"Ref": code_version_parameter(stem)})
            );
            assert_eq!(
                t["Parameters"][code_version_parameter(stem)]["Type"],
                "String"
            );
        }
        assert_eq!(r["StateMachineLogGroup"]["DeletionPolicy"], "Retain");
        assert_eq!(r["StateTable"]["DeletionPolicy"], "Retain");
    }
}
