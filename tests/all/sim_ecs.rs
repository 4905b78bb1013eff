use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, DeploymentRolloutState};
use aws_sdk_ecs::Client;
use serde_json::json;
use slipway_tests::app::{circuit_breaker_with_rollback, describe, wait_completed};
use slipway_tests::{eventually, unique, Testbed};

/// A cluster with one service of `desired` tasks on `image`, rolled out; returns
/// (cluster, service, task definition ARN).
pub async fn service_running(ecs: &Client, image: &str, desired: i32) -> (String, String, String) {
    let cluster = unique("cluster");
    let name = unique("svc");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let td = register(ecs, &name, image).await;
    ecs.create_service()
        .cluster(&cluster)
        .service_name(&name)
        .task_definition(&td)
        .desired_count(desired)
        .deployment_configuration(circuit_breaker_with_rollback())
        .send()
        .await
        .unwrap();
    wait_completed(ecs, &cluster, &name, &td).await;
    (cluster, name, td)
}

/// Registers a revision of `family` running `image` (with fields that must survive a copy).
pub async fn register(ecs: &Client, family: &str, image: &str) -> String {
    let out = ecs
        .register_task_definition()
        .family(family)
        .cpu("256")
        .memory("512")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(image)
                .essential(true)
                .environment(
                    aws_sdk_ecs::types::KeyValuePair::builder()
                        .name("MODE")
                        .value("staging")
                        .build(),
                )
                .log_configuration(
                    aws_sdk_ecs::types::LogConfiguration::builder()
                        .log_driver(aws_sdk_ecs::types::LogDriver::Awslogs)
                        .options("awslogs-group", format!("/ecs/{family}"))
                        .options("awslogs-stream-prefix", "ecs")
                        .build()
                        .unwrap(),
                )
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

/// A rollout is seen IN_PROGRESS (two deployments, the new one PRIMARY), then COMPLETED with
/// the old one gone; the task definition keeps every field given.
#[tokio::test]
async fn rollout_goes_in_progress_then_completed() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let (cluster, name, v1) = service_running(&ecs, "repo/web:v1", 2).await;

    // Its tasks take 60 simulated seconds to start: a wide window to see it IN_PROGRESS.
    let image = format!("repo/web:{}", unique("v2"));
    bed.add_scenario(json!({"images": [{"match": image, "failure": "slow", "start_seconds": 60}]}))
        .await;
    let v2 = register(&ecs, &name, &image).await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    let s = describe(&ecs, &cluster, &name).await;
    let d = s.deployments();
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0].status(), Some("PRIMARY"));
    assert_eq!(d[0].task_definition(), Some(v2.as_str()));
    assert_eq!(
        d[0].rollout_state(),
        Some(&DeploymentRolloutState::InProgress)
    );
    assert_eq!(d[1].status(), Some("ACTIVE"));
    assert_eq!(d[1].task_definition(), Some(v1.as_str()));
    assert_eq!(
        s.running_count(),
        2,
        "the old tasks keep serving while the new ones start"
    );

    let s = wait_completed(&ecs, &cluster, &name, &v2).await;
    assert!(s.deployments()[0]
        .rollout_state_reason()
        .unwrap()
        .ends_with("completed."));
    let messages: Vec<&str> = s.events().iter().filter_map(|e| e.message()).collect();
    assert!(
        messages[0].contains("has reached a steady state"),
        "{messages:?}"
    );

    let td = ecs
        .describe_task_definition()
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!(td.revision(), 2);
    assert_eq!(td.cpu(), Some("256"));
    assert_eq!(
        td.container_definitions()[0].environment()[0].value(),
        Some("staging")
    );

    // The same task definition again starts no new deployment.
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(describe(&ecs, &cluster, &name).await.deployments().len(), 1);
}

/// awscli's `aws ecs wait services-stable` returns once the simulated rollout completes.
#[tokio::test]
async fn awscli_waits_for_services_stable() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let (cluster, name, _) = service_running(&ecs, "repo/auth:v1", 1).await;
    // 100 simulated seconds to start: not stable at the waiter's first look.
    let image = format!("repo/auth:{}", unique("v2"));
    bed.add_scenario(
        json!({"images": [{"match": image, "failure": "slow", "start_seconds": 100}]}),
    )
    .await;
    let v2 = register(&ecs, &name, &image).await;
    let (code, _, err) = bed.aws(
        bed.sim(),
        &[
            "ecs",
            "update-service",
            "--cluster",
            &cluster,
            "--service",
            &name,
            "--task-definition",
            &v2,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        describe(&ecs, &cluster, &name).await.deployments().len(),
        2,
        "not stable yet"
    );
    let (code, _, err) = bed.aws(
        bed.sim(),
        &[
            "ecs",
            "wait",
            "services-stable",
            "--cluster",
            &cluster,
            "--services",
            &name,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = describe(&ecs, &cluster, &name).await;
    assert_eq!(s.deployments().len(), 1);
    assert_eq!(s.deployments()[0].task_definition(), Some(v2.as_str()));
    assert_eq!(
        s.deployments()[0].rollout_state(),
        Some(&DeploymentRolloutState::Completed)
    );

    // awscli reads the simulator's errors too.
    let (code, _, err) = bed.aws(
        bed.sim(),
        &[
            "ecs",
            "describe-services",
            "--cluster",
            "no-such-cluster",
            "--services",
            "x",
        ],
    );
    assert_eq!(code, 255);
    assert!(err.contains("ClusterNotFoundException"), "{err}");
}

/// Tasks that crash before RUNNING trip the circuit breaker: the deployment turns FAILED and
/// a rollback deployment to the last COMPLETED task definition runs to completion; the
/// events go to the sink.
#[tokio::test]
async fn crashing_tasks_trip_the_circuit_breaker_and_roll_back() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let (cluster, name, v1) = service_running(&ecs, "repo/api:v1", 2).await;
    let bad_image = format!("repo/api:{}", unique("crash"));
    bed.add_scenario(
        json!({"images": [{"match": bad_image, "failure": "crash", "logs": ["l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "booting", "panic: no config"]}]}),
    )
    .await;
    let bad = register(&ecs, &name, &bad_image).await;
    ecs.update_service()
        .cluster(&cluster)
        .service(&name)
        .task_definition(&bad)
        .send()
        .await
        .unwrap();

    let s = eventually(
        "the circuit breaker to roll back",
        Duration::from_secs(30),
        || async {
            let s = describe(&ecs, &cluster, &name).await;
            (s.deployments().len() >= 2
                && s.deployments()[0].task_definition() == Some(v1.as_str()))
            .then_some(s)
        },
    )
    .await;
    // The rollback is PRIMARY; the failed deployment (and the original one, whose tasks still
    // serve) stay ACTIVE until the rollback completes.
    let rollback = &s.deployments()[0];
    let failed = s
        .deployments()
        .iter()
        .find(|d| d.task_definition() == Some(bad.as_str()))
        .unwrap();
    assert_eq!(
        failed.rollout_state(),
        Some(&DeploymentRolloutState::Failed)
    );
    assert!(
        failed.failed_tasks() >= 3,
        "threshold is at least 3: {failed:?}"
    );
    assert!(failed
        .rollout_state_reason()
        .unwrap()
        .contains("circuit breaker"));
    assert_eq!(rollback.status(), Some("PRIMARY"));
    assert!(
        rollback
            .rollout_state_reason()
            .unwrap()
            .contains("rolling back to deploymentId"),
        "{rollback:?}"
    );
    assert_eq!(s.task_definition(), Some(v1.as_str()));
    // The old tasks never stopped: the service runs at least its desired count throughout.
    // More is right too: the rollback deployment starts its own tasks beside them (up to
    // maximumPercent, 200% by default) before the old ones are stopped, so how many run when
    // this is read depends on how far the rollback got.
    assert!(
        s.running_count() >= 2,
        "the old tasks never stopped: {} running",
        s.running_count()
    );

    wait_completed(&ecs, &cluster, &name, &v1).await;

    // The crashed tasks, through ListTasks (API_ListTasks.html, API_DescribeTasks.html,
    // API_Task.html stopCode; desiredStatus STOPPED: "tasks that Amazon ECS has
    // set the desired status to STOPPED"; listed "for at least one hour") and DescribeTasks:
    // stopCode EssentialContainerExited, the reason, the essential container's exit code.
    let stopped = ecs
        .list_tasks()
        .cluster(&cluster)
        .service_name(&name)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert!(stopped.task_arns().len() >= 3, "{stopped:?}");
    let mut wanted = stopped.task_arns().to_vec();
    wanted.push("0123456789abcdef0123456789abcdef".into());
    let described = ecs
        .describe_tasks()
        .cluster(&cluster)
        .set_tasks(Some(wanted))
        .send()
        .await
        .unwrap();
    let crashed: Vec<_> = described
        .tasks()
        .iter()
        .filter(|t| {
            t.stop_code() == Some(&aws_sdk_ecs::types::TaskStopCode::EssentialContainerExited)
        })
        .collect();
    assert!(crashed.len() >= 3, "{described:?}");
    for t in crashed {
        assert_eq!(t.last_status(), Some("STOPPED"));
        assert_eq!(t.desired_status(), Some("STOPPED"));
        assert_eq!(
            t.stopped_reason(),
            Some("Essential container in task exited")
        );
        assert_eq!(t.task_definition_arn(), Some(bad.as_str()));
        assert_eq!(t.containers()[0].exit_code(), Some(1));
        assert!(t.task_arn().unwrap().contains(&format!(":task/{cluster}/")));
    }
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    // What the crashed container printed is in its awslogs stream,
    // <prefix>/<container>/<task id>, read with awscli (botocore's GetLogEvents).
    let task_id = described
        .tasks()
        .iter()
        .find(|t| {
            t.stop_code() == Some(&aws_sdk_ecs::types::TaskStopCode::EssentialContainerExited)
        })
        .and_then(|t| t.task_arn())
        .and_then(|a| a.rsplit('/').next())
        .unwrap()
        .to_owned();
    let group = format!("/ecs/{name}");
    let get = |group: &str, stream: &str| {
        bed.aws(
            bed.sim(),
            &[
                "logs",
                "get-log-events",
                "--log-group-name",
                group,
                "--log-stream-name",
                stream,
                "--limit",
                "10",
            ],
        )
    };
    let (code, out, err) = get(&group, &format!("ecs/app/{task_id}"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<String> = serde_json::from_str::<serde_json::Value>(&out).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    // Without startFromHead, the newest ten, oldest first.
    assert_eq!(
        lines,
        [
            "l3",
            "l4",
            "l5",
            "l6",
            "l7",
            "l8",
            "l9",
            "l10",
            "booting",
            "panic: no config"
        ]
    );
    let (code, _, err) = get(&group, "ecs/app/no-such-task");
    assert_ne!(code, 0);
    assert!(
        err.contains("ResourceNotFoundException") && err.contains("log stream does not exist"),
        "{err}"
    );
    let (code, _, err) = get("/ecs/no-such-group", &format!("ecs/app/{task_id}"));
    assert_ne!(code, 0);
    assert!(err.contains("log group does not exist"), "{err}");
    // Running tasks are listed by default (desiredStatus RUNNING).
    let running = ecs
        .list_tasks()
        .cluster(&cluster)
        .service_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(running.task_arns().len(), 2, "{running:?}");

    let events = bed.sim_json("/_sim/events").await;
    let arn = s.service_arn().unwrap();
    let names: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resources"][0] == arn && e["detail-type"] == "ECS Deployment State Change")
        .map(|e| e["detail"]["eventName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"SERVICE_DEPLOYMENT_FAILED"), "{names:?}");
    assert_eq!(
        names.last(),
        Some(&"SERVICE_DEPLOYMENT_COMPLETED"),
        "{names:?}"
    );
    // The events file the test bed configured has them too.
    let file = std::fs::read_to_string(bed.var("SLIPWAY_SIM_EVENTS_FILE")).unwrap();
    assert!(file
        .lines()
        .any(|l| l.contains(arn) && l.contains("SERVICE_DEPLOYMENT_FAILED")));
}

/// Throttling errors from the simulator are retried by the SDK's standard retry.
#[tokio::test]
async fn sdk_retries_recover_from_throttling() {
    let bed = Testbed::get();
    let ecs = bed.ecs().await;
    let cluster = unique("throttled");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let before = bed.sim_json("/_sim/stats").await;
    let token = format!("\"{cluster}\"");
    bed.add_scenario(
        json!({"throttles": [{"one_in": 2, "actions": ["DescribeClusters"], "contains": token}]}),
    )
    .await;
    for _ in 0..6 {
        let out = ecs
            .describe_clusters()
            .clusters(&cluster)
            .send()
            .await
            .unwrap();
        assert_eq!(out.clusters()[0].cluster_name(), Some(cluster.as_str()));
    }
    let stats = bed.sim_json("/_sim/stats").await;
    bed.remove_scenario(&token).await;
    let count = |v: &serde_json::Value| v["throttled"]["DescribeClusters"].as_u64().unwrap_or(0);
    assert!(
        count(&stats) - count(&before) >= 3,
        "every other call was throttled and retried: {before} → {stats}"
    );
}
