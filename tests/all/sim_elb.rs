//! ELBv2 on the simulator: target health follows each target group's own health check
//! against what the tasks' image answers on its path (ALB User Guide, "Health checks for
//! your target groups"; AWS-BEHAVIOUR.md §8), old targets drain, unhealthy targets are failed
//! tasks to ECS, and requests reach apps only through listeners and their rules.

use std::time::Duration;

use aws_sdk_ecs::types::{DeploymentConfiguration, DeploymentRolloutState, LoadBalancer};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, HostHeaderConditionConfig, RuleCondition,
    TargetGroupAttribute, TargetHealthDescription, TargetHealthStateEnum,
};
use serde_json::{json, Value};
use slipway_tests::{eventually, unique, Testbed};

use crate::sim_ecs::register;
use slipway_tests::app::{circuit_breaker_with_rollback, describe, wait_completed};

/// A target group checking `path` every `interval` seconds (healthy 2, unhealthy 2), with a
/// deregistration delay; a load balancer whose listener routes `host` to it. Returns
/// (target group ARN, load balancer DNS name).
async fn routed_group(
    bed: &Testbed,
    name: &str,
    path: &str,
    interval: i32,
    delay: u32,
) -> (String, String) {
    let elb = bed.elbv2().await;
    let tg = elb
        .create_target_group()
        .name(name)
        .port(8080)
        .vpc_id("vpc-12345678")
        .health_check_path(path)
        .health_check_interval_seconds(interval)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .send()
        .await
        .unwrap();
    let tg = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
    elb.modify_target_group_attributes()
        .target_group_arn(&tg)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(delay.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let lb = elb
        .create_load_balancer()
        .name(unique("lb"))
        .subnets("subnet-1")
        .send()
        .await
        .unwrap();
    let dns = lb.load_balancers()[0].dns_name().unwrap().to_owned();
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
                        .message_body("no rule")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let listener = listener.listeners()[0].listener_arn().unwrap().to_owned();
    elb.create_rule()
        .listener_arn(&listener)
        .priority(1)
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .values(format!("{name}.test"))
                        .build(),
                )
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    (tg, dns)
}

async fn health(bed: &Testbed, tg: &str) -> Vec<TargetHealthDescription> {
    bed.elbv2()
        .await
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .unwrap()
        .target_health_descriptions()
        .to_vec()
}

fn states(h: &[TargetHealthDescription]) -> Vec<(String, String)> {
    h.iter()
        .map(|d| {
            let t = d.target_health().unwrap();
            (
                t.state().unwrap().as_str().to_owned(),
                t.reason()
                    .map(|r| r.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn create_service(
    bed: &Testbed,
    cluster: &str,
    name: &str,
    td: &str,
    tg: &str,
    config: DeploymentConfiguration,
    grace: i32,
) {
    let ecs = bed.ecs().await;
    ecs.create_cluster()
        .cluster_name(cluster)
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster(cluster)
        .service_name(name)
        .task_definition(td)
        .desired_count(2)
        .health_check_grace_period_seconds(grace)
        .deployment_configuration(config)
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(tg)
                .container_name("app")
                .container_port(8080)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// New targets are `initial` (Elb.InitialHealthChecking) until they pass one check of the
/// group's path, then `healthy`; awscli's `target-in-service` waiter agrees; requests reach
/// the app only through the listener rule, the load balancer's default action answers the
/// rest, and a Host no listener knows is not an app.
#[tokio::test]
async fn targets_follow_their_groups_health_check_and_requests_follow_rules() {
    let bed = Testbed::get();
    let name = unique("web");
    // Checks every 60 s: the initial window lasts 3 s of test time.
    let (tg, dns) = routed_group(&bed, &name, "/health", 60, 5).await;
    let cluster = unique("cluster");
    let td = register(&bed.ecs().await, &name, "repo/web:v1").await;
    create_service(
        &bed,
        &cluster,
        &name,
        &td,
        &tg,
        circuit_breaker_with_rollback(),
        0,
    )
    .await;
    // Each target is seen in its initial health checking (its own window: the two tasks may
    // register a moment apart, and a busy machine may answer a poll late).
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    eventually(
        "initial health checking of both targets",
        Duration::from_secs(60),
        || async {
            for d in health(&bed, &tg).await {
                let t = d.target_health().unwrap();
                if t.state().map(|s| s.as_str()) == Some("initial")
                    && t.reason().map(|r| r.as_str()) == Some("Elb.InitialHealthChecking")
                {
                    let id = d.target().and_then(|t| t.id()).unwrap_or_default();
                    seen.lock().unwrap().insert(id.to_owned());
                }
            }
            (seen.lock().unwrap().len() == 2).then_some(())
        },
    )
    .await;
    let s = describe(&bed.ecs().await, &cluster, &name).await;
    assert_eq!(
        s.deployments()[0].rollout_state(),
        Some(&DeploymentRolloutState::InProgress)
    );
    wait_completed(&bed.ecs().await, &cluster, &name, &td).await;
    assert!(states(&health(&bed, &tg).await)
        .iter()
        .all(|(s, _)| s == "healthy"));
    let (code, _, stderr) = bed.aws(
        bed.sim(),
        &[
            "elbv2",
            "wait",
            "target-in-service",
            "--target-group-arn",
            &tg,
        ],
    );
    assert_eq!(code, 0, "{stderr}");

    let url = format!("{}/health", bed.sim());
    let get = |host: String| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
        }
    };
    let response = get(format!("{name}.test")).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["image"], "repo/web:v1");
    let response = get(dns).await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), "no rule");
    // The ECS service's own name is not a route: no first-label fallback.
    assert_eq!(get(format!("{name}.staging.test")).await.status(), 404);
}

/// A target group checking `/health` marks an image whose /health answers 500 `unhealthy`
/// (Target.ResponseCodeMismatch); ECS ignores that during the grace period, then stops the
/// tasks as failed, and the circuit breaker fails the deployment and rolls it back.
#[tokio::test]
async fn unhealthy_targets_are_failed_tasks_after_the_grace_period() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let name = unique("api");
    let (tg, _) = routed_group(&bed, &name, "/health", 5, 5).await;
    let cluster = unique("cluster");
    let v1 = register(&ecs, &name, "repo/api:v1").await;
    // 60 s of grace: unhealthy targets are seen for seconds before ECS acts.
    create_service(
        &bed,
        &cluster,
        &name,
        &v1,
        &tg,
        circuit_breaker_with_rollback(),
        150,
    )
    .await;
    wait_completed(&ecs, &cluster, &name, &v1).await;

    let sick = format!("repo/api:{}", unique("sick"));
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
    eventually(
        "the new targets to be unhealthy",
        Duration::from_secs(20),
        || async {
            let h = health(&bed, &tg).await;
            h.iter()
                .find(|d| {
                    d.target_health().unwrap().state() == Some(&TargetHealthStateEnum::Unhealthy)
                })
                .map(|d| d.target_health().unwrap().clone())
        },
    )
    .await;
    let h = health(&bed, &tg).await;
    let unhealthy = h
        .iter()
        .map(|d| d.target_health().unwrap())
        .find(|t| t.state() == Some(&TargetHealthStateEnum::Unhealthy))
        .unwrap();
    assert_eq!(
        unhealthy.reason().map(|r| r.as_str()),
        Some("Target.ResponseCodeMismatch")
    );
    assert_eq!(
        unhealthy.description(),
        Some("Health checks failed with these codes: [500]")
    );
    // Within the grace period nothing has failed yet.
    let s = describe(&ecs, &cluster, &name).await;
    let new = s
        .deployments()
        .iter()
        .find(|d| d.task_definition() == Some(v2.as_str()))
        .unwrap();
    assert_eq!(new.failed_tasks(), 0);
    assert_eq!(
        new.rollout_state(),
        Some(&DeploymentRolloutState::InProgress)
    );

    // After it, the failed tasks trip the circuit breaker, which rolls back to v1.
    let s = wait_completed(&ecs, &cluster, &name, &v1).await;
    let messages: Vec<&str> = s.events().iter().filter_map(|e| e.message()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Task failed ELB health checks in (target-group")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("rolling back to deployment")),
        "{messages:?}"
    );
    bed.remove_scenario(&sick).await;
}

/// An old target drains for the group's deregistration delay
/// (Target.DeregistrationInProgress) and its task keeps running meanwhile, so the rollout is
/// COMPLETED only after it.
#[tokio::test]
async fn old_targets_drain_before_the_rollout_completes() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let name = unique("drain");
    let (tg, _) = routed_group(&bed, &name, "/", 5, 60).await;
    let cluster = unique("cluster");
    let v1 = register(&ecs, &name, "repo/app:v1").await;
    create_service(
        &bed,
        &cluster,
        &name,
        &v1,
        &tg,
        circuit_breaker_with_rollback(),
        0,
    )
    .await;
    eventually("v1 targets healthy", Duration::from_secs(20), || async {
        let s = states(&health(&bed, &tg).await);
        (s.len() == 2 && s.iter().all(|(st, _)| st == "healthy")).then_some(())
    })
    .await;
    let v2 = register(&ecs, &name, "repo/app:v2").await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    // Read together, in one poll: while the old targets drain, the old deployment keeps its
    // tasks running (the service runs 4) — checked in the same turn that sees them draining,
    // so a slow machine cannot let the delay end between the two reads.
    let (deployments, running) =
        eventually("old targets draining", Duration::from_secs(20), || async {
            let s = states(&health(&bed, &tg).await);
            let draining = s
                .iter()
                .filter(|(st, r)| st == "draining" && r == "Target.DeregistrationInProgress")
                .count();
            if draining != 2 {
                return None;
            }
            let svc = describe(&ecs, &cluster, &name).await;
            Some((svc.deployments().len(), svc.running_count()))
        })
        .await;
    assert_eq!(
        deployments, 2,
        "the old deployment still has its draining tasks"
    );
    assert_eq!(running, 4, "draining tasks still run");
    wait_completed(&ecs, &cluster, &name, &v2).await;
    assert_eq!(health(&bed, &tg).await.len(), 2);
}

/// minimumHealthyPercent and maximumPercent bound the rollout (bc:ecs
/// DeploymentConfiguration): at 50/100 ECS may never run more than the desired count, so it
/// stops one old task before it starts a new one; at 100/100 it cannot move and says so.
#[tokio::test]
async fn minimum_healthy_and_maximum_percent_bound_the_rollout() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let name = unique("bounds");
    let (tg, _) = routed_group(&bed, &name, "/", 5, 5).await;
    let cluster = unique("cluster");
    let v1 = register(&ecs, &name, "repo/app:v1").await;
    let config = |min: i32, max: i32| {
        DeploymentConfiguration::builder()
            .minimum_healthy_percent(min)
            .maximum_percent(max)
            .build()
    };
    create_service(&bed, &cluster, &name, &v1, &tg, config(50, 100), 0).await;
    wait_completed(&ecs, &cluster, &name, &v1).await;
    let slow = format!("repo/app:{}", unique("slow"));
    bed.add_scenario(json!({"images": [{"match": slow, "failure": "slow", "start_seconds": 60}]}))
        .await;
    let v2 = register(&ecs, &name, &slow).await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    eventually(
        "one new task pending, within 2 tasks",
        Duration::from_secs(20),
        || async {
            let s = describe(&ecs, &cluster, &name).await;
            let new = s
                .deployments()
                .iter()
                .find(|d| d.task_definition() == Some(v2.as_str()))?;
            (new.pending_count() == 1).then_some(())
        },
    )
    .await;
    let s = describe(&ecs, &cluster, &name).await;
    assert!(s.running_count() + s.pending_count() <= 2, "{s:?}");
    wait_completed(&ecs, &cluster, &name, &v2).await;

    // 100/100: no room to start and none may stop.
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .deployment_configuration(config(100, 100))
        .task_definition(&v1)
        .send()
        .await
        .unwrap();
    eventually("ECS to say it cannot move", Duration::from_secs(20), || async {
        let s = describe(&ecs, &cluster, &name).await;
        s.events()
            .iter()
            .any(|e| e.message().is_some_and(|m| m.contains("unable to stop or start tasks during a deployment because of the service deployment configuration")))
            .then_some(())
    })
    .await;
    bed.remove_scenario(&slow).await;
}

/// DescribeLoadBalancers (by ARN), DescribeListeners and DescribeRules as the ELBv2 API
/// reference has them, read through
/// awscli (botocore's parser): a load balancer's listeners with their default actions; a
/// listener's rules by priority with host-header conditions and forward actions, its default
/// rule last (`Priority` "default", `IsDefault`); neither selector is a ValidationError,
/// unknown ones are ListenerNotFound / LoadBalancerNotFound; a target group names the load
/// balancer that forwards to it. (API_DescribeListeners.html, API_DescribeRules.html.)
#[tokio::test]
async fn listeners_and_rules_are_described() {
    let bed = Testbed::get();
    let name = unique("lr");
    let (tg, dns) = routed_group(&bed, &name, "/health", 5, 5).await;
    let aws = |args: &[&str]| {
        let (code, out, err) = bed.aws(bed.sim(), args);
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null),
            err,
        )
    };
    let (code, groups, err) = aws(&[
        "elbv2",
        "describe-target-groups",
        "--target-group-arns",
        &tg,
    ]);
    assert_eq!(code, 0, "{err}");
    let lb = groups["TargetGroups"][0]["LoadBalancerArns"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, lbs, _) = aws(&[
        "elbv2",
        "describe-load-balancers",
        "--load-balancer-arns",
        &lb,
    ]);
    assert_eq!(lbs["LoadBalancers"][0]["DNSName"], dns);
    let (code, listeners, err) = aws(&["elbv2", "describe-listeners", "--load-balancer-arn", &lb]);
    assert_eq!(code, 0, "{err}");
    let l = &listeners["Listeners"][0];
    assert_eq!(
        (l["Port"].as_i64(), l["Protocol"].as_str()),
        (Some(80), Some("HTTP")),
        "{l}"
    );
    assert_eq!(l["DefaultActions"][0]["Type"], "fixed-response", "{l}");
    assert_eq!(
        l["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"], "404",
        "{l}"
    );
    let listener = l["ListenerArn"].as_str().unwrap().to_owned();
    let (code, rules, err) = aws(&["elbv2", "describe-rules", "--listener-arn", &listener]);
    assert_eq!(code, 0, "{err}");
    let rules = rules["Rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0]["Priority"], "1");
    assert_eq!(rules[0]["IsDefault"], false);
    assert_eq!(rules[0]["Conditions"][0]["Field"], "host-header");
    assert_eq!(
        rules[0]["Conditions"][0]["HostHeaderConfig"]["Values"],
        json!([format!("{name}.test")])
    );
    assert_eq!(rules[0]["Actions"][0]["Type"], "forward");
    assert_eq!(rules[0]["Actions"][0]["TargetGroupArn"], tg);
    assert_eq!(
        (
            rules[1]["Priority"].as_str(),
            rules[1]["IsDefault"].as_bool()
        ),
        (Some("default"), Some(true))
    );
    let one = rules[0]["RuleArn"].as_str().unwrap();
    let (code, by_arn, err) = aws(&["elbv2", "describe-rules", "--rule-arns", one]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(by_arn["Rules"][0]["RuleArn"], one);
    let (code, _, err) = aws(&[
        "elbv2",
        "describe-load-balancers",
        "--load-balancer-arns",
        &format!("{lb}0"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("LoadBalancerNotFound"), "{err}");
    let (code, _, err) = aws(&["elbv2", "describe-listeners"]);
    assert_ne!(code, 0);
    assert!(err.contains("ValidationError"), "{err}");
    let (code, _, err) = aws(&[
        "elbv2",
        "describe-rules",
        "--listener-arn",
        &format!("{listener}0"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("ListenerNotFound"), "{err}");
    let (code, _, err) = aws(&[
        "elbv2",
        "describe-listeners",
        "--load-balancer-arn",
        &format!("{lb}0"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("LoadBalancerNotFound"), "{err}");
}
