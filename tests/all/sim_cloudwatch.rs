//! slipway-sim's CloudWatch alarms (the Rust SDK over Smithy RPC v2 CBOR, awscli over JSON
//! 1.0) and ECS's deployment alarms and service deployments, which read them. Expected
//! behaviour: the CloudWatch API Reference (PutMetricAlarm's initial state, SetAlarmState's
//! ResourceNotFound, DescribeAlarms' paging), the ECS Developer Guide ("How CloudWatch alarms
//! detect Amazon ECS deployment failures": the bake after the new tasks are in, the rollback)
//! and botocore's ServiceDeployment shapes, as cited in sim/src/cloudwatch.rs and sim/src/ecs.rs.

use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_ecs::types::{DeploymentAlarms, DeploymentRolloutState, ServiceDeploymentStatus};
use serde_json::Value;
use slipway_tests::app::{describe, wait_completed};
use slipway_tests::{eventually, unique, Testbed};

use crate::sim_ecs::{register, service_running};

async fn put_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str, period: i32) {
    slipway_tests::app::put_alarm(cw, name, period, 2).await;
}

/// PutMetricAlarm → INSUFFICIENT_DATA "Unchecked: Initial alarm creation"; SetAlarmState
/// moves it (seen by awscli, botocore's JSON 1.0, as by the SDK's CBOR); an unknown name is
/// left out of DescribeAlarms and is ResourceNotFound for SetAlarmState; MaxRecords pages.
#[tokio::test]
async fn alarms_are_served_to_the_sdk_and_to_awscli() {
    let bed = Testbed::get();
    let cw = bed.cloudwatch().await;
    let (a, b) = (unique("cw-a"), unique("cw-b"));
    put_alarm(&cw, &a, 60).await;
    put_alarm(&cw, &b, 60).await;
    let out = cw
        .describe_alarms()
        .alarm_names(&a)
        .alarm_names("no-such-alarm")
        .send()
        .await
        .unwrap();
    assert_eq!(out.metric_alarms().len(), 1, "{out:?}");
    let alarm = &out.metric_alarms()[0];
    assert_eq!(alarm.state_value(), Some(&StateValue::InsufficientData));
    assert_eq!(
        alarm.state_reason(),
        Some("Unchecked: Initial alarm creation")
    );
    assert_eq!(alarm.threshold(), Some(5.0));
    assert_eq!(alarm.evaluation_periods(), Some(2));
    assert!(
        alarm.state_updated_timestamp().is_some(),
        "a CBOR timestamp (tag 1)"
    );
    assert!(alarm.alarm_arn().unwrap().ends_with(&format!(":alarm:{a}")));

    let (code, _, err) = bed.aws(
        bed.sim(),
        &[
            "cloudwatch",
            "set-alarm-state",
            "--alarm-name",
            &a,
            "--state-value",
            "ALARM",
            "--state-reason",
            "Threshold Crossed: 2 datapoints",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = bed.aws(
        bed.sim(),
        &["cloudwatch", "describe-alarms", "--alarm-names", &a, &b],
    );
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<(&str, &str)> = out["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["AlarmName"].as_str().unwrap(),
                m["StateValue"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = vec![(a.as_str(), "ALARM"), (b.as_str(), "INSUFFICIENT_DATA")];
    want.sort_unstable();
    assert_eq!(states, want);
    let sdk = cw.describe_alarms().alarm_names(&a).send().await.unwrap();
    assert_eq!(
        sdk.metric_alarms()[0].state_reason(),
        Some("Threshold Crossed: 2 datapoints")
    );

    let e = cw
        .set_alarm_state()
        .alarm_name("no-such-alarm")
        .state_value(StateValue::Ok)
        .state_reason("x")
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert!(e.is_resource_not_found(), "{e:?}");
    let (code, _, err) = bed.aws(
        bed.sim(),
        &[
            "cloudwatch",
            "set-alarm-state",
            "--alarm-name",
            "no-such-alarm",
            "--state-value",
            "OK",
            "--state-reason",
            "x",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("ResourceNotFound"), "{err}");

    let page = cw
        .describe_alarms()
        .alarm_names(&a)
        .alarm_names(&b)
        .max_records(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.metric_alarms().len(), 1);
    let rest = cw
        .describe_alarms()
        .alarm_names(&a)
        .alarm_names(&b)
        .max_records(1)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.metric_alarms().len(), 1);
    assert!(rest.next_token().is_none());
    assert_ne!(
        page.metric_alarms()[0].alarm_name(),
        rest.metric_alarms()[0].alarm_name()
    );

    cw.delete_alarms()
        .alarm_names(&a)
        .alarm_names(&b)
        .send()
        .await
        .unwrap();
    assert!(cw
        .describe_alarms()
        .alarm_names(&a)
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .is_empty());
}

/// ECS's deployment alarms: after its tasks are in place a deployment stays IN_PROGRESS for
/// the bake (here Period × EvaluationPeriods = 60 s), then COMPLETES, its service deployment
/// SUCCESSFUL with the alarms MONITORING_COMPLETE; an alarm in ALARM during the next rollout
/// fails it and rolls back, and the service deployment says ROLLBACK_SUCCESSFUL, naming the
/// alarm.
#[tokio::test]
async fn deployment_alarms_bake_fail_and_roll_back() {
    let bed = Testbed::get();
    let (ecs, cw) = (bed.ecs().await, bed.cloudwatch().await);
    let alarm = unique("deploy-5xx");
    put_alarm(&cw, &alarm, 30).await;
    let (cluster, name, v1) = service_running(&ecs, "repo/api:v1", 2).await;
    let mut config = slipway_tests::app::circuit_breaker_with_rollback();
    config.alarms = Some(
        DeploymentAlarms::builder()
            .alarm_names(&alarm)
            .enable(true)
            .rollback(true)
            .build()
            .unwrap(),
    );
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .deployment_configuration(config)
        .send()
        .await
        .unwrap();
    let v2 = register(&ecs, &name, "repo/api:v2").await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    // Every new task in place, the old ones gone, and still IN_PROGRESS: the bake.
    eventually(
        "the new tasks in place",
        Duration::from_secs(30),
        || async {
            let s = describe(&ecs, &cluster, &name).await;
            let d = &s.deployments()[0];
            let others_gone = s.deployments()[1..].iter().all(|o| o.running_count() == 0);
            (others_gone && d.running_count() == 2 && d.task_definition() == Some(v2.as_str()))
                .then(|| {
                    assert_eq!(
                        d.rollout_state(),
                        Some(&DeploymentRolloutState::InProgress),
                        "{d:?}"
                    )
                })
        },
    )
    .await;
    wait_completed(&ecs, &cluster, &name, &v2).await;
    let listed = ecs
        .list_service_deployments()
        .cluster(&cluster)
        .service(&name)
        .send()
        .await
        .unwrap();
    let briefs = listed.service_deployments();
    assert_eq!(briefs.len(), 2, "the creation's and v2's: {briefs:?}");
    assert_eq!(
        briefs[0].status(),
        Some(&ServiceDeploymentStatus::Successful)
    );
    let v2_deployment = briefs[0].service_deployment_arn().unwrap().to_owned();
    assert!(
        v2_deployment.contains(&format!(":service-deployment/{cluster}/{name}/")),
        "{v2_deployment}"
    );
    let s = describe(&ecs, &cluster, &name).await;
    assert_eq!(s.current_service_deployment(), Some(v2_deployment.as_str()));

    let v3 = register(&ecs, &name, "repo/api:v3").await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v3)
        .send()
        .await
        .unwrap();
    cw.set_alarm_state()
        .alarm_name(&alarm)
        .state_value(StateValue::Alarm)
        .state_reason("Threshold Crossed")
        .send()
        .await
        .unwrap();
    let s = eventually(
        "the alarm to fail the deployment",
        Duration::from_secs(30),
        || async {
            let s = describe(&ecs, &cluster, &name).await;
            s.deployments()
                .iter()
                .any(|d| {
                    d.task_definition() == Some(v3.as_str())
                        && d.rollout_state() == Some(&DeploymentRolloutState::Failed)
                })
                .then_some(s)
        },
    )
    .await;
    assert!(
        s.events().iter().any(|e| e
            .message()
            .unwrap_or_default()
            .ends_with("deployment failed: alarm detected.")),
        "{:?}",
        s.events()
    );
    assert_eq!(
        s.task_definition(),
        Some(v2.as_str()),
        "rolled back to the last COMPLETED"
    );
    wait_completed(&ecs, &cluster, &name, &v2).await;
    let listed = ecs
        .list_service_deployments()
        .cluster(&cluster)
        .service(&name)
        .send()
        .await
        .unwrap();
    let newest = listed.service_deployments()[0]
        .service_deployment_arn()
        .unwrap()
        .to_owned();
    let described = ecs
        .describe_service_deployments()
        .service_deployment_arns(&newest)
        .service_deployment_arns(format!("{newest}-gone"))
        .send()
        .await
        .unwrap();
    let d = &described.service_deployments()[0];
    assert_eq!(
        d.status(),
        Some(&ServiceDeploymentStatus::RollbackSuccessful),
        "{d:?}"
    );
    let alarms = d.alarms().unwrap();
    assert_eq!(alarms.status().map(|s| s.as_str()), Some("TRIGGERED"));
    assert_eq!(alarms.triggered_alarm_names(), std::slice::from_ref(&alarm));
    assert!(d
        .rollback()
        .unwrap()
        .reason()
        .unwrap()
        .contains("rolling back to deploymentId"));
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    let _ = v1;
}
