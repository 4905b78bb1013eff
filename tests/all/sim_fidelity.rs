//! The simulator is as strict as AWS where real accounts differ from a kind test bed: each
//! test cites what it checks (AWS-BEHAVIOUR.md collects the sources) and, where a client we
//! did not write can show it, awscli shows it too.

use std::time::Duration;

use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, Parameter, StackStatus};
use aws_sdk_cloudformation::Client;
use aws_sdk_ecs::types::{ContainerDefinition, DeploymentRolloutState, PortMapping};
use serde_json::{json, Value};
use slipway_tests::{eventually, unique, Testbed};

fn param(key: &str, value: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(key)
        .parameter_value(value)
        .build()
}

fn previous(key: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(key)
        .use_previous_value(true)
        .build()
}

/// A CDK-like stack: a task role, a task definition whose image and secret setting are
/// parameters, a service with the circuit breaker behind nothing.
pub fn service_template() -> Value {
    json!({
        "Parameters": {
            "Image": {"Type": "String"},
            "ApiKey": {"Type": "String", "NoEcho": true},
            "BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version"}
        },
        "Resources": {
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": {"Fn::Sub": "${AWS::StackName}-cluster"}}},
            "TaskRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}},
            "TaskDef": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Family": {"Fn::Sub": "${AWS::StackName}-app"}, "Cpu": "256", "Memory": "512", "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"], "TaskRoleArn": {"Fn::GetAtt": ["TaskRole", "Arn"]},
                "ContainerDefinitions": [{"Name": "app", "Image": {"Ref": "Image"}, "Essential": true,
                    "Environment": [{"Name": "API_KEY", "Value": {"Ref": "ApiKey"}}]}]}},
            "Service": {"Type": "AWS::ECS::Service", "Properties": {
                "Cluster": {"Ref": "Cluster"}, "ServiceName": "app", "TaskDefinition": {"Ref": "TaskDef"},
                "DesiredCount": 2, "LaunchType": "FARGATE",
                "DeploymentConfiguration": {"DeploymentCircuitBreaker": {"Enable": true, "Rollback": true}, "MinimumHealthyPercent": 100, "MaximumPercent": 200}}}
        }
    })
}

async fn status(cfn: &Client, stack: &str) -> StackStatus {
    let out = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .unwrap();
    out.stacks()[0].stack_status().unwrap().clone()
}

pub async fn wait_status(cfn: &Client, stack: &str, want: StackStatus) {
    eventually(
        &format!("{stack} to reach {want}"),
        Duration::from_secs(60),
        || async { (status(cfn, stack).await == want).then_some(()) },
    )
    .await;
}

/// Every event of the stack, oldest first, following NextToken.
async fn events(cfn: &Client, stack: &str) -> Vec<aws_sdk_cloudformation::types::StackEvent> {
    let pages: Vec<_> = cfn
        .describe_stack_events()
        .stack_name(stack)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let mut all: Vec<_> = pages
        .into_iter()
        .flat_map(|p| p.stack_events().to_vec())
        .collect();
    all.reverse();
    all
}

async fn td_of_service(bed: &Testbed, stack: &str) -> String {
    let s = bed
        .ecs()
        .await
        .describe_services()
        .cluster(format!("{stack}-cluster"))
        .services("app")
        .send()
        .await
        .unwrap();
    s.services()[0].task_definition().unwrap().to_owned()
}

async fn create_service_stack(bed: &Testbed, cfn: &Client, stack: &str, image: &str) {
    cfn.create_stack()
        .stack_name(stack)
        .template_body(service_template().to_string())
        .capabilities(Capability::CapabilityIam)
        .parameters(param("Image", image))
        .parameters(param("ApiKey", "hunter2"))
        .send()
        .await
        .unwrap();
    wait_status(cfn, stack, StackStatus::CreateComplete).await;
    let _ = bed;
}

/// bc:cfn CreateStackInput.Capabilities: IAM resources need CAPABILITY_IAM, named ones
/// CAPABILITY_NAMED_IAM; without them CreateStack, UpdateStack and CreateChangeSet fail with
/// InsufficientCapabilitiesException "Requires capabilities : [CAPABILITY_IAM]" (field text).
#[tokio::test]
async fn iam_resources_need_capabilities() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("caps");
    let body = service_template().to_string();
    let e = cfn
        .create_stack()
        .stack_name(&stack)
        .template_body(&body)
        .parameters(param("Image", "repo/app:v1"))
        .parameters(param("ApiKey", "k"))
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert!(e.is_insufficient_capabilities_exception(), "{e:?}");
    assert_eq!(
        e.meta().message(),
        Some("Requires capabilities : [CAPABILITY_IAM]")
    );

    // A named role needs CAPABILITY_NAMED_IAM: CAPABILITY_IAM is not enough.
    let mut named = service_template();
    named["Resources"]["TaskRole"]["Properties"]["RoleName"] = json!(format!("{stack}-task"));
    let e = cfn
        .create_stack()
        .stack_name(&stack)
        .template_body(named.to_string())
        .capabilities(Capability::CapabilityIam)
        .parameters(param("Image", "repo/app:v1"))
        .parameters(param("ApiKey", "k"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        e.meta().message(),
        Some("Requires capabilities : [CAPABILITY_NAMED_IAM]")
    );

    // awscli, a client we did not write, reads the same error.
    let scratch = slipway_tests::Scratch::new("template");
    let file = scratch.join(format!("{stack}.json"));
    std::fs::write(&file, &body).unwrap();
    let (code, _, stderr) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "create-stack",
            "--stack-name",
            &stack,
            "--template-body",
            &format!("file://{}", file.display()),
            "--parameters",
            "ParameterKey=Image,ParameterValue=repo/app:v1",
            "ParameterKey=ApiKey,ParameterValue=k",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("InsufficientCapabilitiesException")
            && stderr.contains("Requires capabilities : [CAPABILITY_IAM]"),
        "{stderr}"
    );

    // With them it is created; a change set without them is refused too.
    create_service_stack(&bed, &cfn, &stack, "repo/app:v1").await;
    let e = cfn
        .create_change_set()
        .stack_name(&stack)
        .change_set_name("no-caps")
        .use_previous_template(true)
        .parameters(param("Image", "repo/app:v2"))
        .parameters(previous("ApiKey"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_insufficient_capabilities_exception(), "{e:?}");
    let described = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.stacks()[0].capabilities(),
        [Capability::CapabilityIam]
    );
}

/// TemplateBody is at most 51,200 bytes (bc:cfn CreateStackInput.TemplateBody); a larger
/// template goes through TemplateURL, an S3 object of up to 1 MB. GetTemplateSummary and
/// ValidateTemplate read either.
#[tokio::test]
async fn template_body_is_capped_and_larger_templates_come_from_s3() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("big");
    let mut big = json!({"Description": "sixty topics", "Resources": {}});
    for n in 0..400 {
        big["Resources"][format!("Topic{n}")] = json!({"Type": "AWS::SNS::Topic", "Properties": {
            "DisplayName": format!("topic number {n} of the large template, padded as CDK pads its metadata")}});
    }
    let body = serde_json::to_string_pretty(&big).unwrap();
    assert!(body.len() > 51_200, "{} bytes", body.len());
    let e = cfn
        .create_stack()
        .stack_name(&stack)
        .template_body(&body)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.meta().code(), Some("ValidationError"));
    assert!(
        e.meta()
            .message()
            .unwrap_or_default()
            .contains("Member must have length less than or equal to 51200"),
        "{e:?}"
    );

    let url = bed.upload_template(&format!("{stack}.json"), &body).await;
    let summary = cfn
        .get_template_summary()
        .template_url(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(summary.resource_types(), ["AWS::SNS::Topic"]);
    assert_eq!(summary.description(), Some("sixty topics"));
    cfn.create_stack()
        .stack_name(&stack)
        .template_url(&url)
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::CreateComplete).await;
    let e = cfn
        .create_stack()
        .stack_name(unique("nourl"))
        .template_url("http://example.com/t.json")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.meta().code(), Some("ValidationError"));

    // DescribeStackEvents pages with NextToken: 802 events here.
    let first = cfn
        .describe_stack_events()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    assert!(first.next_token().is_some());
    let all = events(&cfn, &stack).await;
    assert_eq!(all.len(), 2 + 2 * 400, "every event, across pages");
    assert_eq!(all[0].resource_status_reason(), Some("User Initiated"));
}

/// NoEcho values read back masked (user guide, parameters-section-structure: "masked as
/// asterisks"; `****` as the API returns it, mapbox/cfn-config#177); UsePreviousValue keeps
/// the real value, which the task definition the stack registers still carries.
#[tokio::test]
async fn no_echo_reads_back_masked_and_use_previous_value_keeps_it() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let ecs = bed.ecs().await;
    let stack = unique("noecho");
    create_service_stack(&bed, &cfn, &stack, "repo/app:v1").await;
    let out = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let shown: Vec<_> = out.stacks()[0]
        .parameters()
        .iter()
        .map(|p| (p.parameter_key().unwrap(), p.parameter_value().unwrap()))
        .collect();
    assert!(shown.contains(&("ApiKey", "****")), "{shown:?}");
    assert!(shown.contains(&("Image", "repo/app:v1")), "{shown:?}");

    cfn.update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .capabilities(Capability::CapabilityIam)
        .parameters(param("Image", "repo/app:v2"))
        .parameters(previous("ApiKey"))
        .parameters(previous("BootstrapVersion"))
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateComplete).await;
    let td = ecs
        .describe_task_definition()
        .task_definition(td_of_service(&bed, &stack).await)
        .send()
        .await
        .unwrap();
    let c = &td.task_definition().unwrap().container_definitions()[0];
    assert_eq!(c.image(), Some("repo/app:v2"));
    assert_eq!(c.environment()[0].value(), Some("hunter2"));
}

/// A stack that owns an ECS service (AWS-BEHAVIOUR.md §6): the task definition is replaced
/// first, the service's resource stays UPDATE_IN_PROGRESS while its deployment runs, the
/// stack completes only after it, and the cleanup deregisters the old revision — which
/// UpdateService then refuses ("TaskDefinition is inactive"). awscli's waiter agrees.
#[tokio::test]
async fn a_stack_owned_service_is_waited_for_and_its_old_revision_deregistered() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let ecs = bed.ecs().await;
    let stack = unique("owned");
    create_service_stack(&bed, &cfn, &stack, "repo/app:v1").await;
    let old_td = td_of_service(&bed, &stack).await;

    // 60 simulated seconds to start (and 40 more to count as healthy without a load
    // balancer): a window of seconds, not milliseconds.
    let slow = format!("repo/app:{}", unique("slow"));
    bed.add_scenario(json!({"images": [{"match": slow, "failure": "slow", "start_seconds": 60}]}))
        .await;
    cfn.update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .capabilities(Capability::CapabilityIam)
        .parameters(param("Image", &slow))
        .parameters(previous("ApiKey"))
        .parameters(previous("BootstrapVersion"))
        .send()
        .await
        .unwrap();
    eventually(
        "the service's resource to wait for ECS",
        Duration::from_secs(20),
        || async {
            let all = events(&cfn, &stack).await;
            let started = all.iter().any(|e| {
                e.logical_resource_id() == Some("Service")
                    && e.resource_status().map(|s| s.as_str()) == Some("UPDATE_IN_PROGRESS")
            });
            started.then_some(())
        },
    )
    .await;
    let s = slipway_tests::app::describe(&ecs, &format!("{stack}-cluster"), "app").await;
    assert_eq!(
        s.deployments()[0].rollout_state(),
        Some(&DeploymentRolloutState::InProgress)
    );
    assert_eq!(status(&cfn, &stack).await, StackStatus::UpdateInProgress);

    wait_status(&cfn, &stack, StackStatus::UpdateComplete).await;
    let all = events(&cfn, &stack).await;
    let order: Vec<String> = all
        .iter()
        .filter(|e| e.resource_status_reason() != Some("User Initiated"))
        .map(|e| {
            format!(
                "{} {}",
                e.logical_resource_id().unwrap(),
                e.resource_status().unwrap().as_str()
            )
        })
        .skip_while(|e| !e.starts_with("TaskDef UPDATE_IN_PROGRESS"))
        .collect();
    assert_eq!(
        order,
        [
            "TaskDef UPDATE_IN_PROGRESS",
            "TaskDef UPDATE_COMPLETE",
            "Service UPDATE_IN_PROGRESS",
            "Service UPDATE_COMPLETE",
            &format!("{stack} UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
            "TaskDef DELETE_IN_PROGRESS",
            "TaskDef DELETE_COMPLETE",
            &format!("{stack} UPDATE_COMPLETE"),
        ]
    );
    let s = slipway_tests::app::describe(&ecs, &format!("{stack}-cluster"), "app").await;
    assert_eq!(
        s.deployments()[0].rollout_state(),
        Some(&DeploymentRolloutState::Completed)
    );
    let (code, _, stderr) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "wait",
            "stack-update-complete",
            "--stack-name",
            &stack,
        ],
    );
    assert_eq!(code, 0, "{stderr}");

    let old = ecs
        .describe_task_definition()
        .task_definition(&old_td)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.task_definition().unwrap().status(),
        Some(&aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
    );
    let e = ecs
        .update_service()
        .cluster(format!("{stack}-cluster"))
        .service("app")
        .task_definition(&old_td)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_exception(), "{e:?}");
    assert_eq!(e.meta().message(), Some("TaskDefinition is inactive"));
}

/// The circuit breaker inside a stack: the service's resource fails with "Error occurred
/// during operation 'ECS Deployment Circuit Breaker was triggered'." and the stack rolls
/// back, the service back on its old revision and the new one deregistered.
#[tokio::test]
async fn a_circuit_breaker_failure_rolls_the_stack_back() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let ecs = bed.ecs().await;
    let stack = unique("cb");
    create_service_stack(&bed, &cfn, &stack, "repo/app:v1").await;
    let old_td = td_of_service(&bed, &stack).await;
    let bad = format!("repo/app:{}", unique("crash"));
    bed.add_scenario(json!({"images": [{"match": bad, "failure": "crash"}]}))
        .await;
    cfn.update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .capabilities(Capability::CapabilityIam)
        .parameters(param("Image", &bad))
        .parameters(previous("ApiKey"))
        .parameters(previous("BootstrapVersion"))
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateRollbackComplete).await;
    let all = events(&cfn, &stack).await;
    let failed = all
        .iter()
        .find(|e| e.resource_status().map(|s| s.as_str()) == Some("UPDATE_FAILED"))
        .expect("a failed resource");
    assert_eq!(failed.logical_resource_id(), Some("Service"));
    assert!(failed.resource_status_reason().unwrap().contains(
        "Error occurred during operation 'ECS Deployment Circuit Breaker was triggered'."
    ));
    let reason = all
        .iter()
        .find(|e| e.resource_status().map(|s| s.as_str()) == Some("UPDATE_ROLLBACK_IN_PROGRESS"))
        .and_then(|e| e.resource_status_reason())
        .unwrap();
    assert_eq!(
        reason,
        "The following resource(s) failed to update: [Service]. "
    );
    let s =
        slipway_tests::app::wait_completed(&ecs, &format!("{stack}-cluster"), "app", &old_td).await;
    assert_eq!(s.task_definition(), Some(old_td.as_str()));
    let (code, _, stderr) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "wait",
            "stack-update-complete",
            "--stack-name",
            &stack,
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("terminal failure state"), "{stderr}");
    bed.remove_scenario(&bad).await;
}

/// Change sets start CREATE_PENDING (bc:cfn CreateChangeSet is asynchronous); executing one
/// deletes the stack's others (bc:cfn ExecuteChangeSet), which are then ChangeSetNotFound,
/// HTTP 404 (bc:cfn ChangeSetNotFoundException).
#[tokio::test]
async fn executing_a_change_set_deletes_its_siblings() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("siblings");
    create_service_stack(&bed, &cfn, &stack, "repo/app:v1").await;
    for (name, img) in [("one", "repo/app:v2"), ("two", "repo/app:v3")] {
        cfn.create_change_set()
            .stack_name(&stack)
            .change_set_name(name)
            .use_previous_template(true)
            .capabilities(Capability::CapabilityIam)
            .parameters(param("Image", img))
            .parameters(previous("ApiKey"))
            .parameters(previous("BootstrapVersion"))
            .send()
            .await
            .unwrap();
    }
    eventually("change set one", Duration::from_secs(20), || async {
        let d = cfn
            .describe_change_set()
            .stack_name(&stack)
            .change_set_name("one")
            .send()
            .await
            .unwrap();
        (d.status() == Some(&ChangeSetStatus::CreateComplete)).then_some(())
    })
    .await;
    cfn.execute_change_set()
        .stack_name(&stack)
        .change_set_name("one")
        .send()
        .await
        .unwrap();
    let e = cfn
        .describe_change_set()
        .stack_name(&stack)
        .change_set_name("two")
        .send()
        .await
        .unwrap_err();
    let status = e.raw_response().map(|r| r.status().as_u16());
    let e = e.into_service_error();
    assert!(e.is_change_set_not_found_exception(), "{e:?}");
    assert_eq!(status, Some(404));
    wait_status(&cfn, &stack, StackStatus::UpdateComplete).await;
    let one = cfn
        .describe_change_set()
        .stack_name(&stack)
        .change_set_name("one")
        .send()
        .await
        .unwrap();
    assert_eq!(
        one.execution_status().map(|s| s.as_str()),
        Some("EXECUTE_COMPLETE")
    );
}

/// A rollback that fails leaves UPDATE_ROLLBACK_FAILED (no update is accepted); only
/// ContinueUpdateRollback moves on, and skipping the resource finishes it
/// (bc:cfn ContinueUpdateRollbackInput.ResourcesToSkip).
#[tokio::test]
async fn a_failed_rollback_waits_for_continue_update_rollback() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("stuck");
    let template = json!({
        "Parameters": {"Value": {"Type": "String"}},
        "Resources": {
            "First": {"Type": "AWS::SSM::Parameter", "Properties": {"Type": "String", "Value": {"Fn::Sub": "first-${Value}"}}},
            "Second": {"Type": "AWS::SSM::Parameter", "DependsOn": "First", "Properties": {"Type": "String", "Value": {"Fn::Sub": "second-${Value}"}}}
        }
    });
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .parameters(param("Value", "a"))
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::CreateComplete).await;
    bed.add_scenario(json!({"stacks": [{"name": stack,
        "fail_update": {"resource": "Second", "reason": "Parameter limit exceeded"},
        "fail_rollback": {"resource": "First", "reason": "Access denied"}}]}))
        .await;
    cfn.update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .parameters(param("Value", "b"))
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateRollbackFailed).await;
    let e = cfn
        .update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .parameters(param("Value", "c"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e
        .meta()
        .message()
        .unwrap_or_default()
        .contains("is in UPDATE_ROLLBACK_FAILED state and can not be updated"));
    // Without skipping, the rollback fails again.
    cfn.continue_update_rollback()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateRollbackFailed).await;
    cfn.continue_update_rollback()
        .stack_name(&stack)
        .resources_to_skip("First")
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateRollbackComplete).await;
    bed.remove_scenario(&stack).await;
}

/// Injected faults with a server-fault code answer 5xx (botocore marks them `fault`), so
/// clients treat them as AWS's errors, not theirs.
#[tokio::test]
async fn injected_server_faults_answer_5xx() {
    let bed = Testbed::get();
    let stack = unique("fault");
    bed.add_scenario(json!({"faults": [{"action": "DescribeStacks", "contains": stack, "code": "InternalFailure", "message": "boom"}]}))
        .await;
    let response = reqwest::Client::new()
        .post(bed.sim())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "Action=DescribeStacks&Version=2010-05-15&StackName={stack}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert!(response.text().await.unwrap().contains("InternalFailure"));
    bed.remove_scenario(&stack).await;
}

/// `aws cloudformation deploy` — change sets, waiters, ValidateTemplate and
/// GetTemplateSummary as awscli uses them — works against the simulator.
#[tokio::test]
async fn awscli_deploy_works() {
    let bed = Testbed::get();
    let stack = unique("deploy");
    let scratch = slipway_tests::Scratch::new("template");
    let file = scratch.join(format!("{stack}.json"));
    std::fs::write(
        &file,
        json!({"Parameters": {"Value": {"Type": "String"}},
            "Resources": {"Setting": {"Type": "AWS::SSM::Parameter", "Properties": {"Type": "String", "Value": {"Ref": "Value"}}}}})
        .to_string(),
    )
    .unwrap();
    let path = file.display().to_string();
    let (code, stdout, stderr) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "validate-template",
            "--template-body",
            &format!("file://{path}"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"ParameterKey\": \"Value\""), "{stdout}");
    // One deploy (awscli's stack waiter polls every 30 real seconds), then the same again:
    // an empty change set, which deploy reports as nothing to do.
    let (code, stdout, stderr) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "deploy",
            "--template-file",
            &path,
            "--stack-name",
            &stack,
            "--parameter-overrides",
            "Value=one",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Successfully created/updated stack"),
        "{stdout}"
    );
    let (code, stdout, stderr) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "deploy",
            "--template-file",
            &path,
            "--stack-name",
            &stack,
            "--parameter-overrides",
            "Value=one",
            "--no-fail-on-empty-changeset",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("No changes to deploy"), "{stdout}");
}

/// RegisterTaskDefinition validates as ECS does (Fargate sizes, awsvpc, image references)
/// and DescribeTaskDefinition returns the normalised form (bc:ecs TaskDefinition).
#[tokio::test]
async fn task_definitions_are_validated_and_normalised() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let family = unique("tdv");
    let base = || {
        ecs.register_task_definition()
            .family(&family)
            .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
            .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
            .cpu("256")
            .memory("512")
    };
    let container = |image: &str| {
        ContainerDefinition::builder()
            .name("app")
            .image(image)
            .port_mappings(PortMapping::builder().container_port(8080).build())
            .build()
    };
    let e = base()
        .memory("4096")
        .container_definitions(container("repo/app:v1"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_client_exception(), "{e:?}");
    assert!(e
        .meta()
        .message()
        .unwrap()
        .starts_with("No Fargate configuration exists for given values: 256 CPU, 4096 memory"));
    let e = base()
        .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
        .container_definitions(container("repo/app:v1"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        e.meta().message(),
        Some("Fargate only supports network mode 'awsvpc'.")
    );
    let e = base()
        .container_definitions(container("Repo/App:v 1"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.meta().message().unwrap().contains("image"), "{e:?}");

    let ok = base()
        .container_definitions(container("repo/app:v1"))
        .send()
        .await
        .unwrap();
    let td = ok.task_definition().unwrap();
    assert!(td.registered_at().is_some());
    assert!(td.registered_by().is_some());
    let attributes: Vec<&str> = td.requires_attributes().iter().map(|a| a.name()).collect();
    assert!(
        attributes.contains(&"ecs.capability.task-eni"),
        "{attributes:?}"
    );
    let port = &td.container_definitions()[0].port_mappings()[0];
    assert_eq!(port.host_port(), Some(8080));
    assert_eq!(port.protocol().map(|p| p.as_str()), Some("tcp"));
    assert_eq!(td.container_definitions()[0].essential(), Some(true));
}

/// Step Functions' callback API as the simulator serves it to the local interpreter
/// (sim/src/sfn.rs; bc:sfn SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat), driven by
/// awscli: an answer closes the task, a second answer is `TaskTimedOut`, a token never issued
/// is `InvalidToken`, output that is not JSON is `InvalidOutput`, and a failure keeps its
/// error and cause.
#[tokio::test]
async fn awscli_answers_task_tokens_as_step_functions_does() {
    let bed = Testbed::get();
    let open = || async {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/_sim/task-tokens", bed.sim()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["taskToken"].as_str().unwrap().to_owned()
    };
    let token = open().await;
    let sfn = |args: &[&str]| {
        let mut all = vec!["stepfunctions"];
        all.extend_from_slice(args);
        bed.aws(bed.sim(), &all)
    };
    let (code, _, err) = sfn(&["send-task-heartbeat", "--task-token", &token]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sfn(&[
        "send-task-success",
        "--task-token",
        &token,
        "--task-output",
        "not json",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("InvalidOutput"), "{err}");
    let (code, _, err) = sfn(&[
        "send-task-success",
        "--task-token",
        &token,
        "--task-output",
        r#"{"stable":true}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    let status = bed.sim_json(&format!("/_sim/task-tokens/{token}")).await;
    assert_eq!(status["status"], "SUCCEEDED");
    assert_eq!(status["output"], json!({"stable": true}));
    assert_eq!(status["heartbeats"], 1);
    let (code, _, err) = sfn(&["send-task-failure", "--task-token", &token]);
    assert_ne!(code, 0);
    assert!(err.contains("TaskTimedOut"), "{err}");
    let (code, _, err) = sfn(&["send-task-heartbeat", "--task-token", "never-issued"]);
    assert_ne!(code, 0);
    assert!(err.contains("InvalidToken"), "{err}");

    let failed = open().await;
    let (code, _, err) = sfn(&[
        "send-task-failure",
        "--task-token",
        &failed,
        "--error",
        "Slipway.DeploymentFailed",
        "--cause",
        "service api: deployment ecs-svc/1 FAILED",
    ]);
    assert_eq!(code, 0, "{err}");
    let status = bed.sim_json(&format!("/_sim/task-tokens/{failed}")).await;
    assert_eq!(status["status"], "FAILED");
    assert_eq!(status["error"], "Slipway.DeploymentFailed");
    assert_eq!(status["cause"], "service api: deployment ecs-svc/1 FAILED");
}
