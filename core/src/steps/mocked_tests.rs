//! Unit tests of the steps' branches with `aws-smithy-mocks`: the SDK clients answer from
//! rules, and the tests assert what was asked.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::types::{
    ChangeSetStatus, ResourceStatus, Stack, StackEvent, StackStatus,
};
use aws_sdk_ecs::operation::describe_services::{DescribeServicesError, DescribeServicesOutput};
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::types::{
    ContainerDefinition, Deployment, DeploymentRolloutState, Service, TaskDefinition,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

use super::*;
use crate::aws::Clients;
use crate::config::HealthConfig;
use crate::input::{ImageRef, Trigger};
use crate::model::*;
use crate::StepError;

struct FixedClock(i64);
impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0
    }
}

fn clients(ecs: &[&Rule], cfn: &[&Rule], elb: &[&Rule]) -> Clients {
    Mocks {
        ecs,
        cfn,
        elb,
        ..Mocks::default()
    }
    .clients()
}

/// Rules per client; a client without rules answers nothing (a call to it fails the test).
#[derive(Default)]
struct Mocks<'a> {
    ecs: &'a [&'a Rule],
    cfn: &'a [&'a Rule],
    elb: &'a [&'a Rule],
    ecr: &'a [&'a Rule],
    dynamodb: &'a [&'a Rule],
    sns: &'a [&'a Rule],
    sfn: &'a [&'a Rule],
    events: &'a [&'a Rule],
    logs: &'a [&'a Rule],
    cloudwatch: &'a [&'a Rule],
}

impl Mocks<'_> {
    fn clients(self) -> Clients {
        let no_retries = |c: aws_sdk_ecs::config::Builder| {
            c.retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
        };
        Clients {
            ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, self.ecs, no_retries),
            ecr: mock_client!(aws_sdk_ecr, RuleMode::MatchAny, self.ecr),
            cloudformation: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, self.cfn),
            elbv2: mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, self.elb),
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, self.dynamodb),
            sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, self.sns),
            eventbridge: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, self.events),
            logs: mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, self.logs),
            cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, self.cloudwatch),
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, self.sfn),
            table: "slipway".into(),
        }
    }
}

fn service_release(name: &str) -> ServiceRelease {
    ServiceRelease {
        name: name.into(),
        cluster: "staging".into(),
        ecs_service: format!("staging-{name}"),
        container: name.into(),
        repository: format!("staging/{name}"),
        image: format!(
            "123.dkr.ecr.us-east-1.amazonaws.com/staging/{name}@sha256:{}",
            "b".repeat(64)
        ),
        digest: format!("sha256:{}", "b".repeat(64)),
        previous_task_definition: format!(
            "arn:aws:ecs:us-east-1:123:task-definition/staging-{name}:1"
        ),
        previous_image: format!(
            "123.dkr.ecr.us-east-1.amazonaws.com/staging/{name}@sha256:{}",
            "a".repeat(64)
        ),
        group: 1,
        health: None,
        target_group_arn: None,
        stack: None,
        staged: None,
        to_rolling: false,
    }
}

fn release(names: &[&str]) -> Release {
    Release {
        id: "r1".into(),
        owner: "exec".into(),
        environment: "staging".into(),
        trigger: Trigger::Manual {
            reason: None,
            commit: None,
        },
        image: ImageRef {
            tag: Some("3f2a1bc".into()),
            digest: None,
        },
        started_at: 1000,
        deadline: 2000,
        bake_seconds: 0,
        rollback_minutes: 15,
        stability_wait: Default::default(),
        services: names.iter().map(|n| service_release(n)).collect(),
        groups: vec![names.iter().map(|n| n.to_string()).collect()],
        stacks: vec![],
        skipped: vec![],
        notifications: Default::default(),
        executions: vec![],
        alarms: vec![],
    }
}

fn td(name: &str, rev: u32) -> String {
    format!("arn:aws:ecs:us-east-1:123:task-definition/staging-{name}:{rev}")
}

fn deployment(
    status: &str,
    td: &str,
    state: DeploymentRolloutState,
    reason: &str,
    running: i32,
) -> Deployment {
    Deployment::builder()
        .id(format!("ecs-svc/{}", td.len()))
        .status(status)
        .task_definition(td)
        .rollout_state(state)
        .rollout_state_reason(reason)
        .running_count(running)
        .desired_count(2)
        .build()
}

fn service(name: &str, deployments: Vec<Deployment>) -> Service {
    let current = deployments
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.task_definition())
        .map(str::to_owned);
    Service::builder()
        .service_name(format!("staging-{name}"))
        .service_arn(service_arn(name))
        .set_task_definition(current)
        .desired_count(2)
        .set_deployments(Some(deployments))
        .build()
}

fn service_arn(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123:service/staging/staging-{name}")
}

fn target(name: &str, rev: u32) -> ServiceTarget {
    ServiceTarget {
        service: name.into(),
        task_definition: td(name, rev),
        started: true,
    }
}

fn describe(services: Vec<Service>) -> Rule {
    mock!(aws_sdk_ecs::Client::describe_services).then_output(move || {
        DescribeServicesOutput::builder()
            .set_services(Some(services.clone()))
            .build()
    })
}

#[tokio::test]
async fn stability_failed_deployment_is_deployment_failed_with_ecs_reason() {
    let rule = describe(vec![service(
        "api",
        vec![deployment(
            "PRIMARY",
            &td("api", 2),
            DeploymentRolloutState::Failed,
            "ECS deployment circuit breaker: tasks failed to start.",
            0,
        )],
    )]);
    let c = clients(&[&rule], &[], &[]);
    let input = CheckStabilityInput {
        release: release(&["api"]),
        targets: vec![target("api", 2)],
        rollback: false,
        rollback_deadline: None,
        task_token: None,
    };
    let e = check_stability(&c, &FixedClock(1500), input)
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Slipway.DeploymentFailed");
    assert!(e.to_string().contains("tasks failed to start"), "{e}");
}

#[tokio::test]
async fn stability_circuit_breaker_rollback_is_never_stable() {
    let rule = describe(vec![service(
        "api",
        vec![deployment(
            "PRIMARY",
            &td("api", 1),
            DeploymentRolloutState::Completed,
            "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.",
            2,
        )],
    )]);
    let c = clients(&[&rule], &[], &[]);
    let input = CheckStabilityInput {
        release: release(&["api"]),
        targets: vec![target("api", 2)],
        rollback: false,
        rollback_deadline: None,
        task_token: None,
    };
    let e = check_stability(&c, &FixedClock(1500), input.clone())
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Slipway.DeploymentFailed");
    assert!(
        e.to_string().contains("circuit breaker rolled it back"),
        "{e}"
    );
    // Watching a rollback to revision 1, the same answer is stable.
    let rollback = CheckStabilityInput {
        targets: vec![target("api", 1)],
        rollback: true,
        rollback_deadline: None,
        ..input
    };
    assert!(
        check_stability(&c, &FixedClock(1500), rollback)
            .await
            .unwrap()
            .stable
    );
}

#[tokio::test]
async fn stability_in_progress_reports_progress_until_the_deadline() {
    let rule = describe(vec![service(
        "api",
        vec![
            deployment(
                "PRIMARY",
                &td("api", 2),
                DeploymentRolloutState::InProgress,
                "in progress",
                1,
            ),
            deployment(
                "ACTIVE",
                &td("api", 1),
                DeploymentRolloutState::Completed,
                "completed",
                2,
            ),
        ],
    )]);
    let c = clients(&[&rule], &[], &[]);
    let input = CheckStabilityInput {
        release: release(&["api"]),
        targets: vec![target("api", 2)],
        rollback: false,
        rollback_deadline: None,
        task_token: None,
    };
    let s = check_stability(&c, &FixedClock(1500), input.clone())
        .await
        .unwrap();
    assert!(!s.stable);
    assert_eq!((s.services[0].running, s.services[0].desired), (1, 2));
    assert_eq!(s.services[0].rollout_state, "IN_PROGRESS");
    let e = check_stability(&c, &FixedClock(2001), input)
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Slipway.NotStable");
    assert!(
        e.to_string().contains("api 1/2 running, IN_PROGRESS"),
        "{e}"
    );
}

#[tokio::test]
async fn stability_asks_for_at_most_ten_services_a_call() {
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let all: Vec<Service> = names
        .iter()
        .map(|n| {
            service(
                n,
                vec![deployment(
                    "PRIMARY",
                    &td(n, 2),
                    DeploymentRolloutState::Completed,
                    "done",
                    2,
                )],
            )
        })
        .collect();
    let rule = mock!(aws_sdk_ecs::Client::describe_services)
        .match_requests(|r| r.services().len() <= 10)
        .then_output(move || {
            DescribeServicesOutput::builder()
                .set_services(Some(all.clone()))
                .build()
        });
    let c = clients(&[&rule], &[], &[]);
    let targets = names.iter().map(|n| target(n, 2)).collect();
    let s = check_stability(
        &c,
        &FixedClock(1500),
        CheckStabilityInput {
            release: release(&refs),
            targets,
            rollback: false,
            rollback_deadline: None,
            task_token: None,
        },
    )
    .await
    .unwrap();
    assert!(s.stable);
    assert_eq!(s.services.len(), 12);
    assert_eq!(rule.num_calls(), 2, "10 + 2");
}

#[tokio::test]
async fn throttling_is_transient() {
    let rule = mock!(aws_sdk_ecs::Client::describe_services).then_error(|| {
        DescribeServicesError::generic(
            aws_sdk_ecs::error::ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("Rate exceeded")
                .build(),
        )
    });
    let c = clients(&[&rule], &[], &[]);
    let input = CheckStabilityInput {
        release: release(&["api"]),
        targets: vec![target("api", 2)],
        rollback: false,
        rollback_deadline: None,
        task_token: None,
    };
    let e = check_stability(&c, &FixedClock(1500), input)
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Slipway.Transient");
    assert!(
        e.to_string()
            .contains("ecs:DescribeServices: ThrottlingException: Rate exceeded"),
        "{e}"
    );
}

fn stack_release() -> Release {
    let mut r = release(&["api"]);
    r.stacks = vec![StackRelease {
        name: "staging-ecs".into(),
        parameters_before: BTreeMap::from([("Environment".into(), "staging".into())]),
        parameters: BTreeMap::from([("Environment".into(), "staging".into())]),
        capabilities: vec!["CAPABILITY_IAM".into()],
        role_arn: None,
    }];
    r
}

fn looking_at_change_set() -> Option<StackProgress> {
    Some(StackProgress {
        change_set: Some("slipway-r1".into()),
        ..Default::default()
    })
}

#[tokio::test]
async fn empty_change_set_is_a_no_op() {
    let describe = mock!(aws_sdk_cloudformation::Client::describe_change_set).then_output(|| {
        DescribeChangeSetOutput::builder()
            .status(ChangeSetStatus::Failed)
            .status_reason("The submitted information didn't contain changes. Submit different information to create a change set.")
            .build()
    });
    let delete = mock!(aws_sdk_cloudformation::Client::delete_change_set).then_output(|| {
        aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder()
            .build()
    });
    let c = clients(&[], &[&describe, &delete], &[]);
    let p = deploy_stack(
        &c,
        &FixedClock(0),
        DeployStackInput {
            release: stack_release(),
            progress: looking_at_change_set(),
            task_token: None,
        },
    )
    .await
    .unwrap();
    assert!(p.done);
    assert_eq!(p.unchanged, ["staging-ecs"]);
    assert!(p.changed.is_empty());
}

/// Right after ExecuteChangeSet, DescribeStacks may still show the previous operation's
/// UPDATE_COMPLETE: the stack counts as updated only once its change set is no longer
/// AVAILABLE or EXECUTE_IN_PROGRESS (EXECUTE_COMPLETE, or gone).
#[tokio::test]
async fn an_update_counts_as_done_only_once_its_change_set_has_executed() {
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name("staging-ecs")
                    .stack_status(StackStatus::UpdateComplete)
                    .build(),
            )
            .build()
    });
    let executing = Some(StackProgress {
        change_set: Some("slipway-r1".into()),
        executing: true,
        ..Default::default()
    });
    for (execution, done) in [
        (
            aws_sdk_cloudformation::types::ExecutionStatus::Available,
            false,
        ),
        (
            aws_sdk_cloudformation::types::ExecutionStatus::ExecuteInProgress,
            false,
        ),
        (
            aws_sdk_cloudformation::types::ExecutionStatus::ExecuteComplete,
            true,
        ),
    ] {
        let cs =
            mock!(aws_sdk_cloudformation::Client::describe_change_set).then_output(move || {
                DescribeChangeSetOutput::builder()
                    .status(ChangeSetStatus::CreateComplete)
                    .execution_status(execution.clone())
                    .build()
            });
        let c = clients(&[], &[&stacks, &cs], &[]);
        let p = deploy_stack(
            &c,
            &FixedClock(0),
            DeployStackInput {
                release: stack_release(),
                progress: executing.clone(),
                task_token: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(p.done, done, "{p:?}");
    }
}

/// While a stack's update moves forward (it rolls out the services it owns), each look
/// checks the release's alarms: one in ALARM is `Slipway.AlarmTriggered` naming the stack.
/// Once CloudFormation rolls the stack back, its failure is the one reported: no alarm check.
#[tokio::test]
async fn an_updating_stack_is_watched_by_the_release_alarms() {
    let stack = |status: StackStatus| {
        mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(move || {
            DescribeStacksOutput::builder()
                .stacks(
                    Stack::builder()
                        .stack_name("staging-ecs")
                        .stack_status(status.clone())
                        .build(),
                )
                .build()
        })
    };
    let alarms = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(|| {
        aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
            .metric_alarms(
                aws_sdk_cloudwatch::types::MetricAlarm::builder()
                    .alarm_name("api-5xx")
                    .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
                    .state_reason("Threshold Crossed")
                    .build(),
            )
            .build()
    });
    let mut release = stack_release();
    release.alarms = vec!["api-5xx".into()];
    let input = DeployStackInput {
        release,
        progress: Some(StackProgress {
            change_set: Some("slipway-r1".into()),
            executing: true,
            ..Default::default()
        }),
        task_token: None,
    };
    let updating = stack(StackStatus::UpdateInProgress);
    let c = Mocks {
        cfn: &[&updating],
        cloudwatch: &[&alarms],
        ..Mocks::default()
    }
    .clients();
    let e = deploy_stack(&c, &FixedClock(0), input.clone())
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Slipway.AlarmTriggered");
    assert!(
        e.to_string().contains(
            "in ALARM while stack staging-ecs updated: api-5xx (ALARM): Threshold Crossed"
        ),
        "{e}"
    );
    // CloudWatch is not asked (a client without rules fails the call) once the stack rolls
    // back: the loop goes on waiting for CloudFormation.
    let rolling_back = stack(StackStatus::UpdateRollbackInProgress);
    let c = clients(&[], &[&rolling_back], &[]);
    let p = deploy_stack(&c, &FixedClock(0), input).await.unwrap();
    assert!(!p.done && p.executing, "{p:?}");
    assert_eq!(alarms.num_calls(), 1);
}

#[tokio::test]
async fn change_set_in_progress_is_looked_at_again_and_a_failed_one_is_stack_failed() {
    let pending = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .sequence()
        .output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateInProgress)
                .build()
        })
        .output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::Failed)
                .status_reason("Parameters: [Colour] do not exist in the template")
                .build()
        })
        .build();
    let c = clients(&[], &[&pending], &[]);
    let input = DeployStackInput {
        release: stack_release(),
        progress: looking_at_change_set(),
        task_token: None,
    };
    let p = deploy_stack(&c, &FixedClock(0), input.clone())
        .await
        .unwrap();
    assert!(!p.done && !p.executing && p.change_set.is_some(), "{p:?}");
    let e = deploy_stack(&c, &FixedClock(0), input).await.unwrap_err();
    assert_eq!(e.name(), "Slipway.StackFailed");
    assert!(
        e.to_string().contains("do not exist in the template"),
        "{e}"
    );
}

#[tokio::test]
async fn failed_update_names_the_failed_resources_from_the_events() {
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name("staging-ecs")
                    .stack_status(StackStatus::UpdateRollbackComplete)
                    .build(),
            )
            .build()
    });
    let event = |id: &str, status: ResourceStatus, reason: &str| {
        StackEvent::builder()
            .logical_resource_id(id)
            .resource_type(if id == "staging-ecs" {
                "AWS::CloudFormation::Stack"
            } else {
                "AWS::ECS::Service"
            })
            .resource_status(status)
            .resource_status_reason(reason)
            .build()
    };
    let events =
        mock!(aws_sdk_cloudformation::Client::describe_stack_events).then_output(move || {
            DescribeStackEventsOutput::builder()
                .stack_events(event(
                    "staging-ecs",
                    ResourceStatus::UpdateRollbackComplete,
                    "",
                ))
                .stack_events(event(
                    "ApiService",
                    ResourceStatus::UpdateFailed,
                    "Invalid request provided",
                ))
                .stack_events(event(
                    "staging-ecs",
                    ResourceStatus::UpdateInProgress,
                    "User Initiated",
                ))
                .stack_events(event(
                    "OldService",
                    ResourceStatus::UpdateFailed,
                    "from an older update",
                ))
                .build()
        });
    let c = clients(&[], &[&stacks, &events], &[]);
    let progress = Some(StackProgress {
        change_set: Some("slipway-r1".into()),
        executing: true,
        changed: vec!["staging-ecs".into()],
        ..Default::default()
    });
    let e = deploy_stack(
        &c,
        &FixedClock(0),
        DeployStackInput {
            release: stack_release(),
            progress,
            task_token: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.name(), "Slipway.StackFailed");
    let text = e.to_string();
    assert!(
        text.contains("ApiService (AWS::ECS::Service) UPDATE_FAILED: Invalid request provided"),
        "{text}"
    );
    assert!(
        !text.contains("OldService"),
        "only this update's failures: {text}"
    );
}

#[tokio::test]
async fn update_on_the_release_image_already_registers_nothing() {
    let r = release(&["api"]);
    let image = r.services[0].image.clone();
    let svc = describe(vec![service(
        "api",
        vec![deployment(
            "PRIMARY",
            &td("api", 2),
            DeploymentRolloutState::InProgress,
            "",
            0,
        )],
    )]);
    let describe_td = mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(move || {
        DescribeTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(td("api", 2))
                    .family("staging-api")
                    .container_definitions(
                        ContainerDefinition::builder()
                            .name("api")
                            .image(&image)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let register = mock!(aws_sdk_ecs::Client::register_task_definition).then_output(|| {
        aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput::builder()
            .build()
    });
    let update = mock!(aws_sdk_ecs::Client::update_service).then_output(|| {
        aws_sdk_ecs::operation::update_service::UpdateServiceOutput::builder().build()
    });
    let c = clients(&[&svc, &describe_td, &register, &update], &[], &[]);
    let t = update_services(
        &c,
        UpdateServiceInput {
            release: r,
            service: "api".into(),
        },
    )
    .await
    .unwrap();
    assert!(!t.started);
    assert_eq!(t.task_definition, td("api", 2));
    assert_eq!((register.num_calls(), update.num_calls()), (0, 0));
}

#[tokio::test]
async fn roll_back_leaves_a_service_the_circuit_breaker_rolled_back() {
    let svc = describe(vec![service(
        "api",
        vec![deployment(
            "PRIMARY",
            &td("api", 1),
            DeploymentRolloutState::InProgress,
            "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.",
            1,
        )],
    )]);
    let update = mock!(aws_sdk_ecs::Client::update_service).then_output(|| {
        aws_sdk_ecs::operation::update_service::UpdateServiceOutput::builder().build()
    });
    let c = clients(&[&svc, &update], &[], &[]);
    let out = roll_back(
        &c,
        &FixedClock(1),
        RollBackInput {
            release: release(&["api"]),
            stacks: None,
            error: None,
            previous: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(out.services[0].action, "already-rolled-back-by-ecs");
    assert_eq!(
        out.targets,
        vec![ServiceTarget {
            service: "api".into(),
            task_definition: td("api", 1),
            started: false
        }]
    );
    assert_eq!(update.num_calls(), 0);
    assert!(out.done);
}

/// Answers health checks from a list, and records what was asked.
struct FakeProber {
    answers: Mutex<Vec<Result<Probe, String>>>,
    asked: Mutex<Vec<(String, Option<String>, Duration)>>,
}

impl Prober for FakeProber {
    fn get<'a>(
        &'a self,
        url: &'a str,
        host: Option<&'a str>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Probe, String>> + Send + 'a>> {
        self.asked
            .lock()
            .unwrap()
            .push((url.into(), host.map(str::to_owned), timeout));
        let next = self.answers.lock().unwrap().remove(0);
        Box::pin(async move { next })
    }
}

fn probe(status: u16, body: &str) -> Result<Probe, String> {
    Ok(Probe {
        status,
        body: body.into(),
        latency_ms: 7,
    })
}

async fn check(
    answers: Vec<Result<Probe, String>>,
) -> (Result<HealthReport, StepError>, FakeProber) {
    let mut r = release(&["api"]);
    r.services[0].health = Some(HealthConfig {
        url: "http://alb.example/health".into(),
        host: Some("api.staging.example.com".into()),
        expect_status: 200,
        body_contains: Some("ok".into()),
        passes: 3,
        timeout_ms: 1500,
        interval_ms: 1,
        test_url: None,
        test_host: None,
    });
    let prober = FakeProber {
        answers: Mutex::new(answers),
        asked: Mutex::new(vec![]),
    };
    let c = clients(&[], &[], &[]);
    let out = health_check(
        &c,
        &prober,
        HealthCheckInput {
            release: r,
            bake: None,
        },
    )
    .await;
    (out, prober)
}

#[tokio::test]
async fn health_needs_n_consecutive_passes_with_the_host_header_and_timeout() {
    let (out, prober) = check(vec![
        probe(200, "ok"),
        probe(200, "ok"),
        probe(200, "all ok"),
    ])
    .await;
    let report = out.unwrap();
    assert_eq!(report.services[0].passes, 3);
    assert_eq!(report.services[0].max_latency_ms, 7);
    let asked = prober.asked.lock().unwrap();
    assert_eq!(asked.len(), 3);
    assert_eq!(
        asked[0],
        (
            "http://alb.example/health".into(),
            Some("api.staging.example.com".into()),
            Duration::from_millis(1500)
        )
    );
}

#[tokio::test]
async fn health_failures_say_what_failed() {
    let (out, _) = check(vec![
        probe(200, "ok"),
        probe(502, "<html>Bad Gateway</html>"),
    ])
    .await;
    let e = out.unwrap_err();
    assert_eq!(e.name(), "Slipway.HealthCheckFailed");
    assert!(
        e.to_string()
            .contains("answered 502 in 7 ms, expected 200; body: \"<html>Bad Gateway</html>\""),
        "{e}"
    );

    let (out, _) = check(vec![probe(200, "degraded")]).await;
    assert!(out
        .unwrap_err()
        .to_string()
        .contains("without \"ok\" in its body: \"degraded\""));

    let (out, _) = check(vec![Err("no answer within 1500 ms".into())]).await;
    let e = out.unwrap_err();
    assert!(
        e.to_string()
            .contains("(Host api.staging.example.com): no answer within 1500 ms (after 0 passes)"),
        "{e}"
    );
}

#[tokio::test]
async fn finish_refuses_an_unknown_result() {
    let c = clients(&[], &[], &[]);
    let input = FinishInput {
        release: release(&["api"]),
        result: "maybe".into(),
        error: None,
        rollback: None,
        timings: BTreeMap::new(),
        execution: None,
    };
    let e = finish(&c, &FixedClock(1), input).await.unwrap_err();
    assert_eq!(e.name(), "Slipway.InvalidInput");
    assert!(e.to_string().starts_with("result: \"maybe\""), "{e}");
}

// --- plan ---------------------------------------------------------------------------------

use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ecr::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesOutput;
use aws_sdk_ecr::types::{ImageDetail, Repository};
use serde_json::json;

const CONFIG: &str = "environment = \"staging\"\ncluster = \"staging\"\n[[services]]\nname = \"api\"\nrepository = \"staging/api\"\necs_service = \"staging-api\"\ntag_pattern = \"^[0-9a-f]{7}$\"\n";
const DIGEST: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// When the event's image was pushed (epoch seconds).
const PUSHED_AT: i64 = 1_700_000_000;

/// A GetItem or DeleteItem of the item whose `pk` is `pk`.
fn pk_is(key: Option<&std::collections::HashMap<String, AttributeValue>>, pk: &str) -> bool {
    key.and_then(|k| k.get("pk"))
        .and_then(|v| v.as_s().ok())
        .is_some_and(|v| v == pk)
}

/// No image waits for the api's lock, and giving up a place in its queue succeeds.
fn empty_queue() -> (Rule, Rule) {
    (
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| pk_is(r.key(), "WAIT#api"))
            .then_output(|| GetItemOutput::builder().build()),
        mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| pk_is(r.key(), "WAIT#api"))
            .then_output(|| DeleteItemOutput::builder().build()),
    )
}

fn config_item() -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| {
            r.key()
                .and_then(|k| k.get("pk"))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("CONFIG")
        })
        .then_output(|| {
            GetItemOutput::builder()
                .item("pk", AttributeValue::S("CONFIG".into()))
                .item("toml", AttributeValue::S(CONFIG.into()))
                .build()
        })
}

fn ecr_rules() -> (Rule, Rule) {
    let repos = mock!(aws_sdk_ecr::Client::describe_repositories).then_output(|| {
        DescribeRepositoriesOutput::builder()
            .repositories(
                Repository::builder()
                    .repository_name("staging/api")
                    .repository_uri("123.dkr.ecr.us-east-1.amazonaws.com/staging/api")
                    .build(),
            )
            .build()
    });
    // The event carries the digest: plan checks that it exists.
    let images = mock!(aws_sdk_ecr::Client::describe_images)
        .match_requests(|r| r.image_ids().first().and_then(|i| i.image_digest()) == Some(DIGEST))
        .then_output(|| {
            DescribeImagesOutput::builder()
                .image_details(
                    ImageDetail::builder()
                        .image_digest(DIGEST)
                        .image_pushed_at(aws_smithy_types::DateTime::from_secs(PUSHED_AT))
                        .build(),
                )
                .build()
        });
    (repos, images)
}

fn push(tag: &str) -> serde_json::Value {
    json!({"input": {"version": "0", "id": "e1", "detail-type": "ECR Image Action", "source": "aws.ecr", "account": "123",
        "time": "2026-11-25T00:00:00Z", "region": "us-east-1",
        "detail": {"result": "SUCCESS", "repository-name": "staging/api", "image-digest": DIGEST, "action-type": "PUSH", "image-tag": tag}},
        "execution": "arn:aws:states:us-east-1:123:execution:slipway:exec-1"})
}

#[tokio::test]
async fn plan_ignores_a_tag_outside_the_pattern_without_asking_ecr() {
    let config = config_item();
    let c = Mocks {
        dynamodb: &[&config],
        ..Mocks::default()
    }
    .clients();
    match plan(&c, &FixedClock(1000), push("latest")).await.unwrap() {
        PlanOutput::NothingToDo { skipped, .. } => {
            assert_eq!(skipped[0].service, "api");
            assert!(
                skipped[0].reason.contains("does not match its tag_pattern"),
                "{skipped:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn conditional_check_failed() -> PutItemError {
    PutItemError::ConditionalCheckFailedException(
        aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .meta(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("ConditionalCheckFailedException")
                    .build(),
            )
            .build(),
    )
}

/// The api's lock, held by `exec-0` for an image pushed at `pushed_at` (epoch ms).
fn held_by_exec_0(pushed_at: i64) -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| pk_is(r.key(), "LOCK#api"))
        .then_output(move || {
            GetItemOutput::builder()
                .item("owner", AttributeValue::S("exec-0".into()))
                .item("release", AttributeValue::S("exec-0".into()))
                .item("digest", AttributeValue::S("sha256:aaaa".into()))
                .item("pushed_at", AttributeValue::N(pushed_at.to_string()))
                .item("expires_at", AttributeValue::N("4600".into()))
                .build()
        })
}

fn lock_put() -> Rule {
    mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| pk_is(r.item(), "LOCK#api"))
        .then_error(conditional_check_failed)
}

#[tokio::test]
async fn plan_locked_by_an_older_push_queues_waits_and_takes_nothing() {
    let config = config_item();
    let (repos, images) = ecr_rules();
    let refused = lock_put();
    let queued = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            pk_is(r.item(), "WAIT#api")
                && r.item()
                    .and_then(|i| i.get("pushed_at"))
                    .and_then(|v| v.as_n().ok())
                    == Some(&(PUSHED_AT * 1000).to_string())
                && r.condition_expression()
                    .is_some_and(|c| c.contains("pushed_at < :pushed"))
        })
        .then_output(|| PutItemOutput::builder().build());
    let holder = held_by_exec_0(PUSHED_AT * 1000 - 60_000);
    let (waiter, _) = empty_queue();
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let c = Mocks {
        dynamodb: &[&config, &refused, &queued, &holder, &waiter, &delete],
        ecr: &[&repos, &images],
        ..Mocks::default()
    }
    .clients();
    match plan(&c, &FixedClock(1000), push("3f2a1bc")).await.unwrap() {
        PlanOutput::Wait { reason, until } => {
            assert_eq!(until, 4600, "at most until the holder's lock expires");
            assert!(
                reason.contains("service api is being deployed by exec-0"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((refused.num_calls(), queued.num_calls()), (1, 1));
    assert_eq!(
        delete.num_calls(),
        0,
        "it took no lock, so it releases none"
    );
}

#[tokio::test]
async fn plan_locked_by_a_later_push_is_superseded_and_recorded() {
    let config = config_item();
    let (repos, images) = ecr_rules();
    let refused = lock_put();
    let holder = held_by_exec_0(PUSHED_AT * 1000 + 1);
    let recorded = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            pk_is(r.item(), "DEPLOYMENTS")
                && r.item()
                    .and_then(|i| i.get("result"))
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|v| v == "superseded")
        })
        .then_output(|| PutItemOutput::builder().build());
    let (_, stop_waiting) = empty_queue();
    let c = Mocks {
        dynamodb: &[&config, &refused, &holder, &recorded, &stop_waiting],
        ecr: &[&repos, &images],
        ..Mocks::default()
    }
    .clients();
    match plan(&c, &FixedClock(1000), push("3f2a1bc")).await.unwrap() {
        PlanOutput::NothingToDo { reason, .. } => {
            assert!(
                reason
                    .starts_with("superseded: api is being deployed to sha256:aaaa, pushed after"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(recorded.num_calls(), 1, "the record says superseded");
    assert_eq!(stop_waiting.num_calls(), 1, "and it leaves the queue");
}

#[tokio::test]
async fn plan_skips_a_service_already_on_the_digest_and_gives_its_lock_back() {
    let config = config_item();
    let (repos, images) = ecr_rules();
    let lock = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            r.condition_expression()
                .is_some_and(|c| c.contains("attribute_not_exists"))
        })
        .then_output(|| PutItemOutput::builder().build());
    let unlock = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|r| {
            r.key()
                .and_then(|k| k.get("pk"))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("LOCK#api")
        })
        .then_output(|| DeleteItemOutput::builder().build());
    let svc = describe(vec![service(
        "api",
        vec![deployment(
            "PRIMARY",
            &td("api", 3),
            DeploymentRolloutState::Completed,
            "",
            2,
        )],
    )]);
    let current = mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(|| {
        DescribeTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(td("api", 3))
                    .container_definitions(
                        ContainerDefinition::builder()
                            .name("api")
                            .image(format!(
                                "123.dkr.ecr.us-east-1.amazonaws.com/staging/api@{DIGEST}"
                            ))
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let (waiter, stop_waiting) = empty_queue();
    let c = Mocks {
        dynamodb: &[&config, &lock, &unlock, &waiter, &stop_waiting],
        ecr: &[&repos, &images],
        ecs: &[&svc, &current],
        ..Mocks::default()
    }
    .clients();
    match plan(&c, &FixedClock(1000), push("3f2a1bc")).await.unwrap() {
        PlanOutput::NothingToDo { reason, skipped } => {
            assert_eq!(reason, "every service already runs this image");
            assert_eq!(skipped[0].reason, format!("already runs {DIGEST}"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (lock.num_calls(), unlock.num_calls()),
        (1, 1),
        "the lock taken is given back"
    );
}

// --- roll-back of stacks, finish's announcements ------------------------------------------

#[tokio::test]
async fn roll_back_cancels_this_release_s_stack_update_still_running() {
    let mut r = stack_release();
    r.services.clear();
    r.groups.clear();
    r.stacks[0]
        .parameters
        .insert("Environment".into(), "next".into());
    let running = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name("staging-ecs")
                    .stack_status(StackStatus::UpdateInProgress)
                    .parameters(
                        aws_sdk_cloudformation::types::Parameter::builder()
                            .parameter_key("Environment")
                            .parameter_value("next")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let cancel = mock!(aws_sdk_cloudformation::Client::cancel_update_stack)
        .then_output(|| aws_sdk_cloudformation::operation::cancel_update_stack::CancelUpdateStackOutput::builder().build());
    let c = clients(&[], &[&running, &cancel], &[]);
    let progress = StackProgress {
        index: 0,
        change_set: Some("slipway-r1".into()),
        executing: true,
        changed: vec!["staging-ecs".into()],
        ..Default::default()
    };
    let out = roll_back(
        &c,
        &FixedClock(1),
        RollBackInput {
            release: r,
            stacks: Some(progress),
            error: None,
            previous: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(out.stacks[0].action, "cancelled");
    assert!(!out.done, "the cancelled update still has to roll back");
    assert_eq!(cancel.num_calls(), 1);
}

#[tokio::test]
async fn finish_releases_locks_records_and_announces() {
    let mut r = release(&["api"]);
    r.notifications.event_bus = Some("default".into());
    r.notifications.sns_topic_arn = Some("arn:aws:sns:us-east-1:123:deploys".into());
    let unlock = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|d| d.condition_expression() == Some("#owner = :owner"))
        .then_output(|| DeleteItemOutput::builder().build());
    let record = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|p| {
            p.item()
                .and_then(|i| i.get("pk"))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("DEPLOYMENTS")
        })
        .then_output(|| PutItemOutput::builder().build());
    // No earlier attempt wrote a record.
    let earlier =
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
    let forget = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|d| d.condition_expression().is_none())
        .then_output(|| DeleteItemOutput::builder().build());
    let event = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|e| {
            e.entries().first().and_then(|x| x.detail_type())
                == Some("Slipway Deployment State Change")
        })
        .then_output(|| {
            aws_sdk_eventbridge::operation::put_events::PutEventsOutput::builder()
                .failed_entry_count(0)
                .build()
        });
    let sns = mock!(aws_sdk_sns::Client::publish)
        .match_requests(|p| {
            let attributes = p.message_attributes().cloned().unwrap_or_default();
            let record: serde_json::Value = serde_json::from_str(
                attributes["slipway.record"]
                    .string_value()
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            p.subject() == Some("[staging] succeeded: api to 3f2a1bc")
                && p.message().is_some_and(|m| {
                    m.starts_with("Release r1 in staging: succeeded\n") && m.contains("  api: ")
                })
                && record["release"] == "r1"
                && attributes["slipway.result"].string_value() == Some("succeeded")
        })
        .then_output(|| {
            aws_sdk_sns::operation::publish::PublishOutput::builder()
                .message_id("m1")
                .build()
        });
    let c = Mocks {
        dynamodb: &[&unlock, &record, &earlier, &forget],
        events: &[&event],
        sns: &[&sns],
        ..Mocks::default()
    }
    .clients();
    let input = FinishInput {
        release: r,
        result: "succeeded".into(),
        error: None,
        rollback: None,
        timings: BTreeMap::new(),
        execution: None,
    };
    let out = finish(&c, &FixedClock(1234), input).await.unwrap();
    assert_eq!((out.result.as_str(), out.finished_at), ("succeeded", 1234));
    assert_eq!(
        out.announced.get("eventbridge").map(String::as_str),
        Some("sent")
    );
    assert_eq!(out.announced.get("sns").map(String::as_str), Some("sent"));
    // The record is written before announcing and again with what was announced.
    assert_eq!(
        (
            unlock.num_calls(),
            record.num_calls(),
            event.num_calls(),
            sns.num_calls(),
            forget.num_calls()
        ),
        (1, 2, 1, 1, 1)
    );
}

/// SNS takes a subject under 100 characters without line breaks or control characters
/// (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html): a long one is cut, a
/// control character becomes a space, and a release by digest names no tag.
#[test]
fn sns_subjects_fit_what_sns_takes() {
    let service = |n: usize| RecordedService {
        service: format!("service-number-{n}"),
        from: String::new(),
        to: "r@sha256:1".into(),
        checks: String::new(),
    };
    let mut r = DeploymentRecord {
        release: "r1".into(),
        environment: "stag\ning".into(),
        trigger: Trigger::Manual {
            reason: None,
            commit: None,
        },
        result: ReleaseResult::RollbackFailed,
        tag: None,
        reason: None,
        error: None,
        services: (0..10).map(service).collect(),
        stacks: vec![],
        started_at: 0,
        finished_at: 0,
        timings: BTreeMap::new(),
        rollback: None,
        announced: BTreeMap::new(),
        why: vec![],
    };
    let long = super::finish::subject(&r);
    assert_eq!(long.chars().count(), 99, "{long}");
    assert!(
        long.starts_with("[stag ing] rollback-failed: service-number-0, "),
        "{long}"
    );
    assert!(long.ends_with("..."), "{long}");
    r.services.truncate(1);
    r.tag = Some("3f2a1bc".into());
    assert_eq!(
        super::finish::subject(&r),
        "[stag ing] rollback-failed: service-number-0 to 3f2a1bc"
    );
    let body = super::finish::message(&r);
    assert!(body.contains("Started by hand, tag 3f2a1bc"), "{body}");
    assert!(
        body.contains("  service-number-0: - -> r@sha256:1"),
        "{body}"
    );
}

// --- the stability wait: task tokens and ECS's deployment events ---------------------------

use crate::state;
use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureOutput;
use aws_sdk_sfn::operation::send_task_heartbeat::SendTaskHeartbeatOutput;
use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};

fn wait_input(names: &[&str]) -> CheckStabilityInput {
    CheckStabilityInput {
        release: release(names),
        targets: names.iter().map(|n| target(n, 2)).collect(),
        rollback: false,
        rollback_deadline: None,
        task_token: None,
    }
}

/// The id the `deployment` helper gives a deployment of `td`.
fn deployment_id(td: &str) -> String {
    format!("ecs-svc/{}", td.len())
}

fn deployment_event_of(name: &str, event: &str) -> serde_json::Value {
    json!({
        "version": "0", "id": "e1", "detail-type": "ECS Deployment State Change",
        "source": "aws.ecs", "account": "123", "region": "us-east-1",
        "resources": [service_arn(name)],
        "detail": {"eventType": "INFO", "eventName": event, "deploymentId": deployment_id(&td(name, 2)), "reason": ""}
    })
}

/// The stored wait of `input` (token `tok`) under the keys `group`, as GetItem answers it.
fn stored_wait(input: &CheckStabilityInput, group: &[String]) -> Rule {
    let text = serde_json::to_string(input).unwrap();
    let group: Vec<AttributeValue> = group.iter().map(|k| AttributeValue::S(k.clone())).collect();
    mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
        GetItemOutput::builder()
            .item("token", AttributeValue::S("tok".into()))
            .item("input", AttributeValue::S(text.clone()))
            .item("group", AttributeValue::L(group.clone()))
            .build()
    })
}

fn rolling(name: &str) -> Service {
    service(
        name,
        vec![
            deployment(
                "PRIMARY",
                &td(name, 2),
                DeploymentRolloutState::InProgress,
                "",
                1,
            ),
            deployment(
                "ACTIVE",
                &td(name, 1),
                DeploymentRolloutState::Completed,
                "",
                1,
            ),
        ],
    )
}

fn done(name: &str) -> Service {
    service(
        name,
        vec![deployment(
            "PRIMARY",
            &td(name, 2),
            DeploymentRolloutState::Completed,
            "",
            2,
        )],
    )
}

#[tokio::test]
async fn a_failed_deployment_event_fails_the_waiting_task_with_ecs_reason() {
    let describe = describe(vec![service(
        "api",
        vec![deployment(
            "PRIMARY",
            &td("api", 2),
            DeploymentRolloutState::Failed,
            "ECS deployment circuit breaker: tasks failed to start.",
            0,
        )],
    )]);
    let key = state::wake_key(&service_arn("api"), &deployment_id(&td("api", 2)));
    let get = stored_wait(&wait_input(&["api"]), std::slice::from_ref(&key));
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests({
            let key = key.clone();
            move |r| pk_is(r.key(), &key)
        })
        .then_output(|| DeleteItemOutput::builder().build());
    let fail = mock!(aws_sdk_sfn::Client::send_task_failure)
        .match_requests(|r| {
            r.task_token() == Some("tok")
                && r.error() == Some("Slipway.DeploymentFailed")
                && r.cause()
                    .is_some_and(|c| c.contains("tasks failed to start"))
        })
        .then_output(|| SendTaskFailureOutput::builder().build());
    let c = Mocks {
        ecs: &[&describe],
        dynamodb: &[&get, &delete],
        sfn: &[&fail],
        ..Mocks::default()
    }
    .clients();
    let out = deployment_event(
        &c,
        &FixedClock(1500),
        deployment_event_of("api", "SERVICE_DEPLOYMENT_FAILED"),
    )
    .await
    .unwrap();
    assert_eq!(out["answered"], true, "{out}");
    assert_eq!((fail.num_calls(), delete.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_completed_event_answers_only_when_the_whole_group_is_done() {
    let keys = vec![
        state::wake_key(&service_arn("api"), &deployment_id(&td("api", 2))),
        state::wake_key(&service_arn("web"), &deployment_id(&td("web", 2))),
    ];
    let input = wait_input(&["api", "web"]);
    // web still rolls out: a heartbeat, and only api's key goes.
    let describe_one = describe(vec![done("api"), rolling("web")]);
    let get = stored_wait(&input, &keys);
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let beat = mock!(aws_sdk_sfn::Client::send_task_heartbeat)
        .match_requests(|r| r.task_token() == Some("tok"))
        .then_output(|| SendTaskHeartbeatOutput::builder().build());
    let c = Mocks {
        ecs: &[&describe_one],
        dynamodb: &[&get, &delete],
        sfn: &[&beat],
        ..Mocks::default()
    }
    .clients();
    let out = deployment_event(
        &c,
        &FixedClock(1500),
        deployment_event_of("api", "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert_eq!(out["answered"], false, "{out}");
    assert_eq!((beat.num_calls(), delete.num_calls()), (1, 1));

    // Both done: SendTaskSuccess with the stability, every key of the wait deleted.
    let describe_both = describe(vec![done("api"), done("web")]);
    let get = stored_wait(&input, &keys);
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let success = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| {
            r.task_token() == Some("tok")
                && r.output()
                    .is_some_and(|o| serde_json::from_str::<Stability>(o).is_ok_and(|s| s.stable))
        })
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let c = Mocks {
        ecs: &[&describe_both],
        dynamodb: &[&get, &delete],
        sfn: &[&success],
        ..Mocks::default()
    }
    .clients();
    let out = deployment_event(
        &c,
        &FixedClock(1500),
        deployment_event_of("web", "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert_eq!(out["answered"], true, "{out}");
    assert_eq!((success.num_calls(), delete.num_calls()), (1, 2));
}

#[tokio::test]
async fn an_event_nobody_waits_for_or_a_task_already_closed_is_not_an_error() {
    // IN_PROGRESS is not an end: nothing is asked at all.
    let c = Mocks::default().clients();
    let out = deployment_event(
        &c,
        &FixedClock(1500),
        deployment_event_of("api", "SERVICE_DEPLOYMENT_IN_PROGRESS"),
    )
    .await
    .unwrap();
    assert!(out["ignored"].is_string(), "{out}");
    // No wait stored for the deployment.
    let none =
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
    let c = Mocks {
        dynamodb: &[&none],
        ..Mocks::default()
    }
    .clients();
    let out = deployment_event(
        &c,
        &FixedClock(1500),
        deployment_event_of("api", "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert!(out["ignored"].is_string(), "{out}");
    // The fallback look answered first: SendTaskSuccess is TaskTimedOut, which is fine.
    let key = state::wake_key(&service_arn("api"), &deployment_id(&td("api", 2)));
    let get = stored_wait(&wait_input(&["api"]), &[key]);
    let describe = describe(vec![done("api")]);
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let closed = mock!(aws_sdk_sfn::Client::send_task_success).then_error(|| {
        SendTaskSuccessError::generic(
            aws_sdk_sfn::error::ErrorMetadata::builder()
                .code("TaskTimedOut")
                .message("The task token has either expired or the task associated with the token has already been closed")
                .build(),
        )
    });
    let c = Mocks {
        ecs: &[&describe],
        dynamodb: &[&get, &delete],
        sfn: &[&closed],
        ..Mocks::default()
    }
    .clients();
    let out = deployment_event(
        &c,
        &FixedClock(1500),
        deployment_event_of("api", "SERVICE_DEPLOYMENT_COMPLETED"),
    )
    .await
    .unwrap();
    assert_eq!(out["answered"], false, "{out}");
    assert_eq!(delete.num_calls(), 1);
}

#[tokio::test]
async fn a_wait_stores_its_token_then_looks_again_and_answers_a_rollout_done_meanwhile() {
    // First look: rolling; the token is stored; the second look finds it done (the event
    // came before the token was stored): the wait answers itself and deletes the token.
    let looks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let describe_twice = mock!(aws_sdk_ecs::Client::describe_services).then_output({
        let looks = looks.clone();
        move || {
            let first = looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            DescribeServicesOutput::builder()
                .services(if first { rolling("api") } else { done("api") })
                .build()
        }
    });
    let key = state::wake_key(&service_arn("api"), &deployment_id(&td("api", 2)));
    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests({
            let key = key.clone();
            move |r| {
                r.item().is_some_and(|i| {
                    i.get("pk").and_then(|v| v.as_s().ok()) == Some(&key)
                        && i.get("token")
                            .and_then(|v| v.as_s().ok())
                            .map(String::as_str)
                            == Some("tok")
                        && i.get("input")
                            .and_then(|v| v.as_s().ok())
                            .is_some_and(|t| !t.contains("task_token"))
                })
            }
        })
        .then_output(|| PutItemOutput::builder().build());
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let success = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| r.task_token() == Some("tok"))
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let c = Mocks {
        ecs: &[&describe_twice],
        dynamodb: &[&put, &delete],
        sfn: &[&success],
        ..Mocks::default()
    }
    .clients();
    let mut input = wait_input(&["api"]);
    input.task_token = Some("tok".into());
    let out = wait_for_stability(&c, &FixedClock(1500), input.clone())
        .await
        .unwrap();
    assert_eq!(out["answered"], true, "{out}");
    assert_eq!(
        (put.num_calls(), success.num_calls(), delete.num_calls()),
        (1, 1, 1)
    );

    // Still rolling on both looks: the token stays stored, nothing is answered.
    let describe = describe(vec![rolling("api")]);
    let put =
        mock!(aws_sdk_dynamodb::Client::put_item).then_output(|| PutItemOutput::builder().build());
    let c = Mocks {
        ecs: &[&describe],
        dynamodb: &[&put],
        ..Mocks::default()
    }
    .clients();
    let out = wait_for_stability(&c, &FixedClock(1500), input)
        .await
        .unwrap();
    assert_eq!(out["answered"], false, "{out}");
    assert_eq!((describe.num_calls(), put.num_calls()), (2, 1));
}

fn stack_status_event(status: &str) -> serde_json::Value {
    json!({
        "version": "0", "id": "e2", "detail-type": "CloudFormation Stack Status Change",
        "source": "aws.cloudformation", "account": "123", "region": "us-east-1",
        "resources": ["arn:aws:cloudformation:us-east-1:123:stack/staging-ecs/1"],
        "detail": {"stack-id": "arn:aws:cloudformation:us-east-1:123:stack/staging-ecs/1",
                   "status-details": {"status": status, "status-reason": ""}, "client-request-token": ""}
    })
}

#[tokio::test]
async fn a_stack_status_event_answers_the_stack_wait_with_the_stored_progress() {
    let key = state::stack_wake_key("arn:aws:cloudformation:us-east-1:123:stack/staging-ecs/1");
    let stored = || {
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests({
                let key = key.clone();
                move |r| pk_is(r.key(), &key)
            })
            .then_output(|| {
                GetItemOutput::builder()
                    .item("token", AttributeValue::S("tok".into()))
                    .item(
                        "input",
                        AttributeValue::S("{\"index\":0,\"executing\":true}".into()),
                    )
                    .item(
                        "group",
                        AttributeValue::L(vec![AttributeValue::S(
                            "WAKE#stack#arn:aws:cloudformation:us-east-1:123:stack/staging-ecs/1"
                                .into(),
                        )]),
                    )
                    .build()
            })
    };
    // On the way (cleanup): a heartbeat, the wait goes on.
    let get = stored();
    let beat = mock!(aws_sdk_sfn::Client::send_task_heartbeat)
        .then_output(|| SendTaskHeartbeatOutput::builder().build());
    let c = Mocks {
        dynamodb: &[&get],
        sfn: &[&beat],
        ..Mocks::default()
    }
    .clients();
    let out = stack_event(
        &c,
        stack_status_event("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
    )
    .await
    .unwrap();
    assert_eq!(
        (out["answered"].clone(), beat.num_calls()),
        (json!(false), 1)
    );
    // The operation ended: SendTaskSuccess with the stored progress, the token deleted.
    let get = stored();
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .then_output(|| DeleteItemOutput::builder().build());
    let success = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| {
            r.task_token() == Some("tok") && r.output() == Some("{\"index\":0,\"executing\":true}")
        })
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let c = Mocks {
        dynamodb: &[&get, &delete],
        sfn: &[&success],
        ..Mocks::default()
    }
    .clients();
    let out = stack_event(&c, stack_status_event("UPDATE_ROLLBACK_COMPLETE"))
        .await
        .unwrap();
    assert_eq!(out["answered"], true, "{out}");
    assert_eq!((success.num_calls(), delete.num_calls()), (1, 1));
    // Nobody waits: nothing is answered.
    let none =
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
    let c = Mocks {
        dynamodb: &[&none],
        ..Mocks::default()
    }
    .clients();
    let out = stack_event(&c, stack_status_event("UPDATE_COMPLETE"))
        .await
        .unwrap();
    assert!(out["ignored"].is_string(), "{out}");
}

#[tokio::test]
async fn the_lifecycle_hook_answers_from_the_check_through_the_test_listener() {
    let event = |health: serde_json::Value| {
        serde_json::json!({
            "executionId": "e1",
            "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
            "resourceArn": "arn:aws:ecs:us-east-1:123:service-deployment/staging/api/abc",
            "executionDetails": {
                "serviceArn": "arn:aws:ecs:us-east-1:123:service/staging/api",
                "targetServiceRevisionArn": "r2",
                "testTrafficWeights": {},
                "productionTrafficWeights": {}
            },
            "hookDetails": {"slipway": {"service": "api", "health": health}}
        })
    };
    let check = serde_json::json!({
        "url": "http://alb/health", "host": "test.api.example.com", "passes": 2, "interval_ms": 1
    });
    assert!(crate::steps::is_lifecycle_hook(&event(check.clone())));
    assert!(!crate::steps::is_lifecycle_hook(
        &serde_json::json!({"release": {}})
    ));
    let prober = |answers: Vec<Result<Probe, String>>| FakeProber {
        answers: Mutex::new(answers),
        asked: Mutex::new(vec![]),
    };
    let p = prober(vec![probe(200, "ok"), probe(200, "ok")]);
    let answer = crate::steps::lifecycle_hook(&p, &event(check.clone())).await;
    assert_eq!(answer, serde_json::json!({"hookStatus": "SUCCEEDED"}));
    let asked = p.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2);
    assert_eq!(
        asked[0].1.as_deref(),
        Some("test.api.example.com"),
        "through the test listener"
    );
    // A failed check is looked at again (IN_PROGRESS, the attempt counted in the hookDetails
    // ECS passes back), 10 s then 20 s then 40 s later; the fourth failure is FAILED.
    let mut ev = event(check);
    for (attempt, delay) in [(2, 10), (3, 20), (4, 40)] {
        let p = prober(vec![probe(500, "down")]);
        let answer = crate::steps::lifecycle_hook(&p, &ev).await;
        assert_eq!(answer["hookStatus"], "IN_PROGRESS", "{answer}");
        assert_eq!(answer["callBackDelay"], delay, "{answer}");
        assert_eq!(
            answer["hookDetails"]["slipway"]["attempt"], attempt,
            "{answer}"
        );
        assert_eq!(
            answer["hookDetails"]["slipway"]["health"], ev["hookDetails"]["slipway"]["health"],
            "the check goes back with it"
        );
        ev["hookDetails"] = answer["hookDetails"].clone();
    }
    let p = prober(vec![probe(500, "down")]);
    let answer = crate::steps::lifecycle_hook(&p, &ev).await;
    assert_eq!(answer, serde_json::json!({"hookStatus": "FAILED"}));
    // A pass on a later attempt is a pass.
    ev["hookDetails"]["slipway"]["attempt"] = serde_json::json!(3);
    let p = prober(vec![probe(200, "ok"), probe(200, "ok")]);
    let answer = crate::steps::lifecycle_hook(&p, &ev).await;
    assert_eq!(answer, serde_json::json!({"hookStatus": "SUCCEEDED"}));
    let p = prober(vec![]);
    let answer = crate::steps::lifecycle_hook(&p, &event(serde_json::json!("nonsense"))).await;
    assert_eq!(
        answer,
        serde_json::json!({"hookStatus": "FAILED"}),
        "no Slipway check: never a pass"
    );
}

/// Slipway's lifecycle hook is known by this installation's function or by its hookDetails;
/// the owner's hooks are kept.
#[test]
fn slipways_hook_is_known_and_only_it_is_removed() {
    use aws_sdk_ecs::types::{DeploymentConfiguration, DeploymentLifecycleHook};
    let hook = |function: &str, details: Option<serde_json::Value>| {
        DeploymentLifecycleHook::builder()
            .hook_target_arn(function)
            .set_hook_details(details.as_ref().map(super::document))
            .build()
    };
    let ours = hook(
        "f-health-check",
        Some(serde_json::json!({"slipway": {"service": "api"}})),
    );
    let old = hook("old-health-check", Some(serde_json::json!({"slipway": {}})));
    let owners = hook("owner", Some(serde_json::json!({"bucket": "b"})));
    assert!(super::is_slipway_hook(&ours, None));
    assert!(super::is_slipway_hook(
        &hook("f-health-check", None),
        Some("f-health-check")
    ));
    assert!(!super::is_slipway_hook(&owners, Some("f-health-check")));
    let config = DeploymentConfiguration::builder()
        .lifecycle_hooks(ours)
        .lifecycle_hooks(owners.clone())
        .lifecycle_hooks(old)
        .build();
    let without = super::without_slipway_hook(Some(&config), None).unwrap();
    assert_eq!(without.lifecycle_hooks(), std::slice::from_ref(&owners));
    // Nothing of Slipway's: nothing to change.
    assert_eq!(super::without_slipway_hook(Some(&without), None), None);
    assert_eq!(super::without_slipway_hook(None, None), None);
}
