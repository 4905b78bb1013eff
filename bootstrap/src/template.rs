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

/// Options beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// GitHub `owner/repo` allowed to start deployments through OIDC.
    pub github_repository: Option<String>,
    /// The branch of it allowed (default `main`).
    pub github_branch: Option<String>,
    /// Create an SNS topic for notifications (when the configuration names none).
    pub create_topic: bool,
}

fn sub(s: &str) -> Value {
    json!({ "Fn::Sub": s })
}

fn statement(actions: &[&str], resources: Vec<Value>) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resources })
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
    let stack_arns: Vec<Value> = config
        .stacks
        .iter()
        .map(|s| sub(&format!("arn:${{AWS::Partition}}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/{}/*", s.name)))
        .collect();
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

    let policies: Vec<(&str, Vec<Value>)> = vec![
        ("plan", {
            let mut p = vec![
                statement(
                    &[
                        "dynamodb:GetItem",
                        "dynamodb:PutItem",
                        "dynamodb:DeleteItem",
                    ],
                    vec![table.clone()],
                ),
                statement(
                    &["ecr:DescribeRepositories", "ecr:DescribeImages"],
                    repo_arns.clone(),
                ),
                statement(&["ecs:DescribeServices"], service_arns.clone()),
                statement(&["ecs:DescribeTaskDefinition"], vec![json!("*")]),
            ];
            if !stack_arns.is_empty() {
                p.push(statement(
                    &[
                        "cloudformation:DescribeStacks",
                        "cloudformation:GetTemplateSummary",
                    ],
                    stack_arns.clone(),
                ));
            }
            p
        }),
        (
            "deploy-stack",
            if stack_arns.is_empty() {
                vec![]
            } else {
                let mut p = vec![statement(
                    &[
                        "cloudformation:CreateChangeSet",
                        "cloudformation:DescribeChangeSet",
                        "cloudformation:ExecuteChangeSet",
                        "cloudformation:DeleteChangeSet",
                        "cloudformation:DescribeStacks",
                        "cloudformation:DescribeStackEvents",
                    ],
                    stack_arns.clone(),
                )];
                p.extend(pass_stack_roles.clone());
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
                statement(
                    &["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"],
                    vec![json!("*")],
                ),
                json!({
                    "Effect": "Allow", "Action": ["iam:PassRole"],
                    "Resource": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"),
                    "Condition": { "StringEquals": { "iam:PassedToService": "ecs-tasks.amazonaws.com" } }
                }),
            ],
        ),
        (
            "check-stability",
            vec![statement(&["ecs:DescribeServices"], service_arns.clone())],
        ),
        (
            "health-check",
            vec![statement(
                &["elasticloadbalancing:DescribeTargetHealth"],
                vec![json!("*")],
            )],
        ),
        ("roll-back", {
            let mut p = vec![
                statement(
                    &["ecs:DescribeServices", "ecs:UpdateService"],
                    service_arns.clone(),
                ),
                statement(&["ecs:DescribeTaskDefinition"], vec![json!("*")]),
            ];
            if !stack_arns.is_empty() {
                p.push(statement(
                    &[
                        "cloudformation:DescribeStacks",
                        "cloudformation:UpdateStack",
                        "cloudformation:CancelUpdateStack",
                    ],
                    stack_arns.clone(),
                ));
                p.extend(pass_stack_roles.clone());
            }
            p
        }),
        ("finish", {
            let mut p = vec![statement(
                &[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:DeleteItem",
                ],
                vec![table.clone()],
            )];
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
            "Properties": {
                "TableName": format!("slipway-{env}"),
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true}
            }
        }),
    );
    let mut substitutions = Map::new();
    for ((name, stem, substitution), (_, statements)) in FUNCTIONS.iter().zip(&policies) {
        let function_name = format!("slipway-{env}-{name}");
        let log_group = format!("{stem}LogGroup");
        resources.insert(
            log_group.clone(),
            json!({
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {"LogGroupName": format!("/aws/lambda/{function_name}"), "RetentionInDays": 30}
            }),
        );
        let mut all = statements.clone();
        all.push(statement(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            vec![json!({"Fn::Sub": format!("${{{log_group}.Arn}}:*")})],
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
        resources.insert(
            format!("{stem}Function"),
            json!({
                "Type": "AWS::Lambda::Function",
                "DependsOn": [log_group],
                "Properties": {
                    "FunctionName": function_name,
                    "Description": format!("Slipway step {name} ({env})"),
                    "Runtime": "provided.al2023",
                    "Architectures": ["arm64"],
                    "Handler": "bootstrap",
                    "MemorySize": 256,
                    "Timeout": lambda_timeout(name),
                    "Role": {"Fn::GetAtt": [format!("{stem}Role"), "Arn"]},
                    "Code": {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Fn::Sub": format!("${{ArtifactPrefix}}{name}.zip")}},
                    "Environment": {"Variables": {"SLIPWAY_TABLE": {"Ref": "StateTable"}, "AWS_LAMBDA_LOG_FORMAT": "JSON"}}
                }
            }),
        );
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
        json!({"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": format!("/aws/vendedlogs/states/slipway-{env}"), "RetentionInDays": 30}}),
    );
    let state_machine_arn = sub(&format!(
        "arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:slipway-{env}"
    ));
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
    if config.notifications.sns_topic_arn.is_none() && options.create_topic {
        // Encrypted at rest with SNS's AWS managed key.
        resources.insert("NotificationTopic".into(), json!({"Type": "AWS::SNS::Topic", "Properties": {"TopicName": format!("slipway-{env}"), "KmsMasterKeyId": "alias/aws/sns"}}));
    }
    let mut outputs = json!({
        "StateMachineArn": {"Value": {"Ref": "StateMachine"}},
        "StateTableName": {"Value": {"Ref": "StateTable"}}
    });
    if let Some(repo) = &options.github_repository {
        let branch = options.github_branch.as_deref().unwrap_or("main");
        resources.insert(
            "GitHubOidcProvider".into(),
            json!({
                "Type": "AWS::IAM::OIDCProvider",
                "Properties": {"Url": "https://token.actions.githubusercontent.com", "ClientIdList": ["sts.amazonaws.com"]}
            }),
        );
        resources.insert(
            "GitHubDeployRole".into(),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Federated": {"Ref": "GitHubOidcProvider"}},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                                "token.actions.githubusercontent.com:sub": format!("repo:{repo}:ref:refs/heads/{branch}")
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
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("Slipway deploy orchestrator for {env}"),
        "Parameters": {
            "ArtifactBucket": {"Type": "String", "Description": "S3 bucket holding the functions' zips"},
            "ArtifactPrefix": {"Type": "String", "Default": "", "Description": "Key prefix of the zips (<prefix><function>.zip)"}
        },
        "Resources": resources,
        "Outputs": outputs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Actions that take no resource ARN (AWS's service authorization reference lists them with
    /// resource type "*"): the only statements allowed `"Resource": "*"`.
    const UNSCOPABLE: [&str; 5] = [
        "ecs:DescribeTaskDefinition",
        "ecs:RegisterTaskDefinition",
        "elasticloadbalancing:DescribeTargetHealth",
        "logs:CreateLogGroup",
        "ecr:GetAuthorizationToken",
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
            let resource = task["Resource"].as_str().expect("resource");
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
        let github = &t["Resources"]["GitHubDeployRole"]["Properties"];
        let condition =
            &github["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            condition["token.actions.githubusercontent.com:sub"],
            "repo:acme/app:ref:refs/heads/staging"
        );
    }
}
