use std::time::Duration;

use aws_sdk_cloudformation::types::{ChangeAction, ChangeSetStatus, Parameter, StackStatus};
use aws_sdk_cloudformation::Client;
use serde_json::json;
use slipway_tests::{eventually, unique, Testbed};

/// A stack whose `Image` parameter feeds an ECS service's task definition.
fn template() -> String {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "one service whose image is a stack parameter",
        "Parameters": {"Image": {"Type": "String"}, "Desired": {"Type": "Number", "Default": 1}},
        "Resources": {
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": {"Fn::Sub": "${AWS::StackName}-cluster"}}},
            "TaskDef": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Family": {"Fn::Sub": "${AWS::StackName}-app"}, "Cpu": "256", "Memory": "512", "NetworkMode": "awsvpc",
                "ContainerDefinitions": [{"Name": "app", "Image": {"Ref": "Image"}, "Essential": true}]}},
            "Service": {"Type": "AWS::ECS::Service", "Properties": {
                "Cluster": {"Ref": "Cluster"}, "ServiceName": "app", "TaskDefinition": {"Ref": "TaskDef"},
                "DesiredCount": {"Ref": "Desired"}, "LaunchType": "FARGATE",
                "DeploymentConfiguration": {"DeploymentCircuitBreaker": {"Enable": true, "Rollback": true}}}},
            "Alarms": {"Type": "AWS::SNS::Topic"}
        },
        "Outputs": {"ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}, "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-service"}}}}
    })
    .to_string()
}

fn image(value: &str) -> Parameter {
    Parameter::builder()
        .parameter_key("Image")
        .parameter_value(value)
        .build()
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

async fn wait_status(cfn: &Client, stack: &str, want: StackStatus) {
    eventually(
        &format!("{stack} to reach {want}"),
        Duration::from_secs(30),
        || async { (status(cfn, stack).await == want).then_some(()) },
    )
    .await;
}

/// The image the stack's ECS service runs now.
async fn service_image(bed: &Testbed, stack: &str) -> String {
    let ecs = bed.ecs().await;
    let s = ecs
        .describe_services()
        .cluster(format!("{stack}-cluster"))
        .services("app")
        .send()
        .await
        .unwrap();
    let td = s.services()[0].task_definition().unwrap().to_owned();
    let td = ecs
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .unwrap();
    td.task_definition().unwrap().container_definitions()[0]
        .image()
        .unwrap()
        .to_owned()
}

async fn create(cfn: &Client, stack: &str, img: &str) {
    cfn.create_stack()
        .stack_name(stack)
        .template_body(template())
        .parameters(image(img))
        .send()
        .await
        .unwrap();
    wait_status(cfn, stack, StackStatus::CreateComplete).await;
    let seen = statuses(cfn, stack).await;
    assert_eq!(seen, ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"]);
}

/// The stack's own statuses, oldest first, from its events.
async fn statuses(cfn: &Client, stack: &str) -> Vec<String> {
    let events = cfn
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .unwrap();
    let mut out: Vec<String> = events
        .stack_events()
        .iter()
        .filter(|e| e.logical_resource_id() == Some(stack))
        .map(|e| e.resource_status().unwrap().as_str().to_owned())
        .collect();
    out.reverse();
    out
}

/// Change sets diff for real: none → FAILED with AWS's reason (SDK and awscli); a new image →
/// the task definition replaced and the service modified; executing it moves the service.
#[tokio::test]
async fn change_sets_diff_and_an_empty_one_fails_with_aws_reason() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("svc");
    create(&cfn, &stack, "repo/api:v1").await;
    assert_eq!(service_image(&bed, &stack).await, "repo/api:v1");

    cfn.create_change_set()
        .stack_name(&stack)
        .change_set_name("same")
        .use_previous_template(true)
        .parameters(
            Parameter::builder()
                .parameter_key("Image")
                .use_previous_value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let failed = eventually(
        "the empty change set to fail",
        Duration::from_secs(10),
        || async {
            let cs = cfn
                .describe_change_set()
                .stack_name(&stack)
                .change_set_name("same")
                .send()
                .await
                .unwrap();
            (cs.status() == Some(&ChangeSetStatus::Failed)).then_some(cs)
        },
    )
    .await;
    assert_eq!(
        failed.status_reason(),
        Some("The submitted information didn't contain changes. Submit different information to create a change set.")
    );
    // ListChangeSets (botocore: StackName required, Summaries of ChangeSetSummary) lists
    // the stack's change sets until they are deleted.
    let listed = cfn
        .list_change_sets()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let summaries: Vec<(Option<&str>, Option<&ChangeSetStatus>)> = listed
        .summaries()
        .iter()
        .map(|c| (c.change_set_name(), c.status()))
        .collect();
    assert_eq!(summaries, [(Some("same"), Some(&ChangeSetStatus::Failed))]);
    assert_eq!(listed.summaries()[0].stack_name(), Some(stack.as_str()));
    let (code, out, err) = bed.aws(
        bed.sim(),
        &[
            "cloudformation",
            "describe-change-set",
            "--stack-name",
            &stack,
            "--change-set-name",
            "same",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["Status"], "FAILED");
    assert!(out["StatusReason"]
        .as_str()
        .unwrap()
        .starts_with("The submitted information didn't contain changes"));
    cfn.delete_change_set()
        .stack_name(&stack)
        .change_set_name("same")
        .send()
        .await
        .unwrap();
    let listed = cfn
        .list_change_sets()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    assert!(listed.summaries().is_empty(), "deleted: not listed");

    let nothing = cfn
        .update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .parameters(
            Parameter::builder()
                .parameter_key("Image")
                .use_previous_value(true)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(format!("{nothing:?}").contains("No updates are to be performed."));

    cfn.create_change_set()
        .stack_name(&stack)
        .change_set_name("v2")
        .template_body(template())
        .parameters(image("repo/api:v2"))
        .send()
        .await
        .unwrap();
    let cs = eventually(
        "the change set to be ready",
        Duration::from_secs(10),
        || async {
            let cs = cfn
                .describe_change_set()
                .stack_name(&stack)
                .change_set_name("v2")
                .send()
                .await
                .unwrap();
            (cs.status() == Some(&ChangeSetStatus::CreateComplete)).then_some(cs)
        },
    )
    .await;
    let changes: Vec<(String, ChangeAction, Option<String>)> = cs
        .changes()
        .iter()
        .map(|c| {
            let r = c.resource_change().unwrap();
            (
                r.logical_resource_id().unwrap().to_owned(),
                r.action().unwrap().clone(),
                r.replacement().map(|x| x.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "TaskDef".to_owned(),
                ChangeAction::Modify,
                Some("True".to_owned())
            ),
            (
                "Service".to_owned(),
                ChangeAction::Modify,
                Some("False".to_owned())
            ),
        ]
    );
    cfn.execute_change_set()
        .stack_name(&stack)
        .change_set_name("v2")
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateComplete).await;
    assert_eq!(service_image(&bed, &stack).await, "repo/api:v2");
    let template_now = cfn.get_template().stack_name(&stack).send().await.unwrap();
    assert_eq!(template_now.template_body(), Some(template().as_str()));
}

/// A failing update goes UPDATE_ROLLBACK_IN_PROGRESS → UPDATE_ROLLBACK_COMPLETE with the
/// failed resource and its reason in the stack events, and leaves the service as it was; a
/// cancelled update rolls back too.
#[tokio::test]
async fn failed_update_rolls_back_and_names_the_failed_resource() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("svc");
    create(&cfn, &stack, "repo/auth:v1").await;
    let broken = format!("repo/auth:{}", unique("broken"));
    bed.add_scenario(
        json!({"images": [{"match": broken, "failure": "stack-update-fails",
        "reason": "Resource handler returned message: \"Invalid request provided\""}]}),
    )
    .await;

    cfn.update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .parameters(image(&broken))
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateRollbackComplete).await;
    let seen = statuses(&cfn, &stack).await;
    assert_eq!(
        seen[2..],
        [
            "UPDATE_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_ROLLBACK_COMPLETE"
        ],
        "{seen:?}"
    );

    let events = cfn
        .describe_stack_events()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let events = events.stack_events();
    assert_eq!(
        events[0].resource_status(),
        Some(&aws_sdk_cloudformation::types::ResourceStatus::UpdateRollbackComplete),
        "newest first"
    );
    let failed = events
        .iter()
        .find(|e| {
            e.resource_status()
                == Some(&aws_sdk_cloudformation::types::ResourceStatus::UpdateFailed)
        })
        .expect("an UPDATE_FAILED event");
    assert_eq!(failed.logical_resource_id(), Some("TaskDef"));
    assert_eq!(failed.resource_type(), Some("AWS::ECS::TaskDefinition"));
    assert!(failed
        .resource_status_reason()
        .unwrap()
        .contains("Invalid request provided"));
    let rolling = events
        .iter()
        .find(|e| {
            e.resource_status()
                == Some(&aws_sdk_cloudformation::types::ResourceStatus::UpdateRollbackInProgress)
        })
        .unwrap();
    assert_eq!(
        rolling.resource_status_reason(),
        Some("The following resource(s) failed to update: [TaskDef]. ")
    );

    let described = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let params = described.stacks()[0].parameters();
    let img = params
        .iter()
        .find(|p| p.parameter_key() == Some("Image"))
        .unwrap();
    assert_eq!(
        img.parameter_value(),
        Some("repo/auth:v1"),
        "parameters rolled back"
    );
    assert_eq!(
        service_image(&bed, &stack).await,
        "repo/auth:v1",
        "the service never moved"
    );

    // CancelUpdateStack: only while UPDATE_IN_PROGRESS; rolls the update back.
    let not_now = cfn
        .cancel_update_stack()
        .stack_name(&stack)
        .send()
        .await
        .unwrap_err();
    assert!(format!("{not_now:?}")
        .contains("CancelUpdateStack cannot be called from current stack status"));
    cfn.update_stack()
        .stack_name(&stack)
        .use_previous_template(true)
        .parameters(image("repo/auth:v3"))
        .send()
        .await
        .unwrap();
    cfn.cancel_update_stack()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    wait_status(&cfn, &stack, StackStatus::UpdateRollbackComplete).await;
    let seen = statuses(&cfn, &stack).await;
    assert_eq!(
        seen.last().map(String::as_str),
        Some("UPDATE_ROLLBACK_COMPLETE")
    );
    let events = cfn
        .describe_stack_events()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let cancelled = events
        .stack_events()
        .iter()
        .find(|e| {
            e.logical_resource_id() == Some(stack.as_str())
                && e.resource_status().map(|s| s.as_str()) == Some("UPDATE_ROLLBACK_IN_PROGRESS")
        })
        .unwrap();
    assert_eq!(
        cancelled.resource_status_reason(),
        Some("User Initiated"),
        "the newest rollback is the cancel's"
    );
    assert_eq!(service_image(&bed, &stack).await, "repo/auth:v1");

    cfn.delete_stack().stack_name(&stack).send().await.unwrap();
    eventually(
        "the stack to be deleted",
        Duration::from_secs(30),
        || async {
            cfn.describe_stacks()
                .stack_name(&stack)
                .send()
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

/// Each stack status CloudFormation reaches is also a "CloudFormation Stack Status Change"
/// event (CloudFormation User Guide, "Stack Status Change event detail"): `resources` and
/// `detail.stack-id` are the stack id, `detail.status-details.status` the status — the same
/// sequence DescribeStackEvents shows.
#[tokio::test]
async fn stack_statuses_are_stack_status_change_events() {
    let bed = Testbed::get();
    let cfn = bed.cloudformation().await;
    let stack = unique("events");
    create(&cfn, &stack, "repo/app:v1").await;
    let id = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap()
        .stacks()[0]
        .stack_id()
        .unwrap()
        .to_owned();
    let events = bed.sim_json("/_sim/events").await;
    let seen: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["detail-type"] == "CloudFormation Stack Status Change"
                && e["source"] == "aws.cloudformation"
                && e["resources"][0] == id.as_str()
        })
        .map(|e| {
            assert_eq!(e["detail"]["stack-id"], id.as_str(), "{e}");
            e["detail"]["status-details"]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(seen, statuses(&cfn, &stack).await);
    assert_eq!(seen, ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"]);
}
