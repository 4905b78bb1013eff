use std::time::Duration;

use aws_sdk_ecs::types::LoadBalancer;
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use serde_json::json;
use slipway_tests::{eventually, unique, Testbed};

use crate::sim_ecs::{describe, register, wait_completed};

/// Target health follows the service's tasks (initial, then healthy), and the app's own
/// `/health` answers according to the image its tasks run: an image whose /health is 500
/// still passes the load balancer's check.
#[tokio::test]
async fn target_health_and_app_health_follow_the_tasks() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let elb = bed.elbv2().await;
    let name = unique("web");
    let tg = elb
        .create_target_group()
        .name(&name)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id("vpc-12345678")
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let tg_arn = tg.target_groups()[0].target_group_arn().unwrap().to_owned();

    let cluster = unique("cluster");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let v1 = register(&ecs, &name, "repo/web:v1").await;
    ecs.create_service()
        .cluster(&cluster)
        .service_name(&name)
        .task_definition(&v1)
        .desired_count(2)
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(&tg_arn)
                .container_name("app")
                .container_port(8080)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let health = elb
        .describe_target_health()
        .target_group_arn(&tg_arn)
        .send()
        .await
        .unwrap();
    let states: Vec<_> = health
        .target_health_descriptions()
        .iter()
        .map(|d| d.target_health().unwrap().state().unwrap().clone())
        .collect();
    assert_eq!(
        states,
        [
            TargetHealthStateEnum::Initial,
            TargetHealthStateEnum::Initial
        ]
    );
    wait_completed(&ecs, &cluster, &name, &v1).await;
    let health = elb
        .describe_target_health()
        .target_group_arn(&tg_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(health.target_health_descriptions().len(), 2);
    for d in health.target_health_descriptions() {
        assert_eq!(
            d.target_health().unwrap().state(),
            Some(&TargetHealthStateEnum::Healthy)
        );
        assert_eq!(d.target().unwrap().port(), Some(8080));
    }

    // The app behind the "load balancer", by Host header.
    let client = reqwest::Client::new();
    let get = |host: String| {
        let client = client.clone();
        let url = format!("{}/health", bed.sim());
        async move { client.get(url).header("host", host).send().await.unwrap() }
    };
    let response = get(format!("{name}.staging.test")).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["image"], "repo/web:v1");

    let sick = format!("repo/web:{}", unique("sick"));
    bed.add_scenario(json!({"images": [{"match": sick, "failure": "health-500"}]}))
        .await;
    let v2 = register(&ecs, &name, &sick).await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    wait_completed(&ecs, &cluster, &name, &v2).await;
    eventually("/health to answer 500", Duration::from_secs(10), || async {
        (get(format!("{name}.staging.test")).await.status() == 500).then_some(())
    })
    .await;
    let health = elb
        .describe_target_health()
        .target_group_arn(&tg_arn)
        .send()
        .await
        .unwrap();
    assert!(health
        .target_health_descriptions()
        .iter()
        .all(|d| d.target_health().unwrap().state() == Some(&TargetHealthStateEnum::Healthy)));
    assert_eq!(describe(&ecs, &cluster, &name).await.deployments().len(), 1);

    // Unknown target groups and hosts get errors, not empty answers.
    let missing = elb
        .describe_target_health()
        .target_group_arn(format!("{tg_arn}0"))
        .send()
        .await;
    assert!(format!("{:?}", missing.unwrap_err()).contains("TargetGroupNotFound"));
    assert_eq!(get("nobody.staging.test".into()).await.status(), 404);
}
