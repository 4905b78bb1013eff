//! slipway-sim's ECS blue/green, linear and canary deployments, driven directly (the SDK and
//! awscli): the lifecycle stages in order, Lambda lifecycle hooks (their payload, IN_PROGRESS
//! with callBackDelay and hookDetails passed back, FAILED, a function that does not exist),
//! test and production traffic through the listener rules, linear steps, StopServiceDeployment.
//! What each test expects comes from the ECS Developer Guide ("How Amazon ECS blue/green
//! deployments work", "Linear deployments", "Lambda hooks for Amazon ECS service
//! deployments") and the API Reference (DescribeServiceDeployments, StopServiceDeployment:
//! "The valid values are ROLLBACK"), as cited in sim/src/ecs/staged.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types::{
    DeploymentConfiguration, DeploymentLifecycleHook, DeploymentLifecycleHookStage,
    DeploymentStrategy, LinearConfiguration, ServiceDeployment,
};
use serde_json::{json, Value};
use slipway_tests::app::{describe, App, AppService};
use slipway_tests::{eventually, unique, Testbed};

/// The order ECS runs a blue/green deployment's stages in (ECS Developer Guide, "How Amazon
/// ECS blue/green deployments work").
const STAGES: [&str; 10] = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
];

/// A hook function on 127.0.0.1 that answers from `script` (then SUCCEEDED) and records each
/// payload with the images the test and production Hosts reach at that moment; registered
/// with the simulator under a fresh ARN, which it returns.
async fn hook_function(
    bed: &Testbed,
    script: Vec<Value>,
    hosts: (String, String),
) -> (String, Arc<Mutex<Vec<(Value, String, String)>>>) {
    let calls: Arc<Mutex<Vec<(Value, String, String)>>> = Arc::default();
    let script = Arc::new(Mutex::new(script));
    let (sim, seen) = (bed.sim().to_owned(), calls.clone());
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (script, seen, sim, hosts) = (script.clone(), seen.clone(), sim.clone(), hosts.clone());
        async move {
            let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let image = |host: String| {
                let sim = sim.clone();
                async move {
                    let r = reqwest::Client::new()
                        .get(format!("{sim}/"))
                        .header("host", host)
                        .send()
                        .await
                        .unwrap();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    v["image"].as_str().unwrap_or_default().to_owned()
                }
            };
            let (test, production) = (image(hosts.0.clone()).await, image(hosts.1.clone()).await);
            seen.lock().unwrap().push((payload, test, production));
            let answer = {
                let mut s = script.lock().unwrap();
                if s.is_empty() {
                    json!({"hookStatus": "SUCCEEDED"})
                } else {
                    s.remove(0)
                }
            };
            ([("content-type", "application/json")], answer.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let arn = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:{}",
        unique("hook")
    );
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/functions", bed.sim()))
        .body(json!({"arn": arn, "url": format!("http://127.0.0.1:{port}/")}).to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    (arn, calls)
}

async fn current(app: &App, s: &AppService) -> ServiceDeployment {
    let svc = describe(&app.clients.ecs, &app.cluster, &s.ecs_service).await;
    let arn = svc.current_service_deployment().unwrap();
    crate::app::describe_service_deployment(&app.clients.ecs, arn).await
}

fn hook(arn: &str, stages: &[DeploymentLifecycleHookStage]) -> DeploymentLifecycleHook {
    DeploymentLifecycleHook::builder()
        .hook_target_arn(arn)
        .role_arn("arn:aws:iam::123456789012:role/ecs-hooks")
        .set_lifecycle_stages(Some(stages.to_vec()))
        .hook_details(aws_smithy_types::Document::Object(
            [(
                "owner".to_owned(),
                aws_smithy_types::Document::String("test".into()),
            )]
            .into(),
        ))
        .build()
}

/// Points `s` at `td` with this deployment configuration.
async fn deploy(app: &App, s: &AppService, td: &str, config: DeploymentConfiguration) {
    app.clients
        .ecs
        .update_service()
        .cluster(&app.cluster)
        .service(&s.ecs_service)
        .task_definition(td)
        .deployment_configuration(config)
        .send()
        .await
        .unwrap();
}

/// Blue/green: the stages in order; a hook at POST_TEST_TRAFFIC_SHIFT answering IN_PROGRESS
/// (callBackDelay, hookDetails) is invoked again with its details, while test traffic reaches
/// green and production traffic blue; the hook at PRODUCTION_TRAFFIC_SHIFT sees green at
/// 100; then bake, clean-up, SUCCESSFUL, and the target groups swap.
#[tokio::test]
async fn blue_green_runs_its_stages_hooks_and_traffic_shifts() {
    let bed = Testbed::get();
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let (green, _) = app.prepare_staged(api).await;
    let rule = app.rules[0].1.clone();
    let (function, calls) = hook_function(
        &bed,
        vec![
            json!({"hookStatus": "IN_PROGRESS", "callBackDelay": 20, "hookDetails": {"round": 1}}),
        ],
        (app.test_host(api), app.host(api)),
    )
    .await;
    let v2 = app.register(api, &format!("{}:v2", api.uri)).await;
    deploy(
        &app,
        api,
        &v2,
        DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::BlueGreen)
            .bake_time_in_minutes(1)
            .lifecycle_hooks(hook(
                &function,
                &[
                    DeploymentLifecycleHookStage::PostTestTrafficShift,
                    DeploymentLifecycleHookStage::ProductionTrafficShift,
                ],
            ))
            .build(),
    )
    .await;
    let mut seen: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    let done = loop {
        let d = current(&app, api).await;
        if let Some(stage) = d.lifecycle_stage() {
            if seen.last().map(String::as_str) != Some(stage.as_str()) {
                seen.push(stage.as_str().to_owned());
            }
        }
        if d.status().map(|s| s.as_str()) == Some("SUCCESSFUL") {
            break d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not SUCCESSFUL: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let order: Vec<usize> = seen
        .iter()
        .map(|s| STAGES.iter().position(|x| x == s).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "stages in order: {seen:?}"
    );
    for held in ["POST_TEST_TRAFFIC_SHIFT", "BAKE_TIME"] {
        assert!(
            seen.iter().any(|s| s == held),
            "{held} lasts long enough to be seen: {seen:?}"
        );
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let (first, again, production) = (&calls[0].0, &calls[1].0, &calls[2].0);
    assert_eq!(first["lifecycleStage"], "POST_TEST_TRAFFIC_SHIFT");
    assert_eq!(first["resourceArn"], done.service_deployment_arn().unwrap());
    assert_eq!(
        first["executionDetails"]["serviceArn"],
        done.service_arn().unwrap()
    );
    let target = done.target_service_revision().unwrap().arn().unwrap();
    assert_eq!(
        first["executionDetails"]["targetServiceRevisionArn"],
        target
    );
    assert_eq!(first["hookDetails"], json!({"owner": "test"}));
    assert_eq!(
        again["executionId"], first["executionId"],
        "the same hook execution, invoked again"
    );
    assert_eq!(
        again["hookDetails"],
        json!({"round": 1}),
        "what IN_PROGRESS returned comes back"
    );
    // Meanwhile test traffic reached green, production traffic blue.
    assert!(
        calls[0].1.ends_with(":v2") && !calls[0].2.ends_with(":v2"),
        "{calls:?}"
    );
    assert_eq!(production["lifecycleStage"], "PRODUCTION_TRAFFIC_SHIFT");
    assert_eq!(
        production["executionDetails"]["productionTrafficWeights"][target],
        100.0
    );
    let hooks = done.lifecycle_hook_details();
    assert_eq!(hooks.len(), 2);
    assert!(hooks
        .iter()
        .all(|h| h.status().map(|s| s.as_str()) == Some("SUCCEEDED")));
    assert_eq!(app.forwards(&rule).await, [(green.clone(), 100)]);
    let s = describe(&app.clients.ecs, &app.cluster, &api.ecs_service).await;
    assert_eq!(s.deployments().len(), 1);
    assert_eq!(s.task_definition(), Some(v2.as_str()));
    let lb = &s.load_balancers()[0];
    assert_eq!(
        lb.target_group_arn(),
        Some(green.as_str()),
        "green's target group is the service's now"
    );
    assert_eq!(
        lb.advanced_configuration()
            .unwrap()
            .alternate_target_group_arn(),
        Some(api.target_group.as_str())
    );
}

/// Linear (30 % steps): production weights 30, 60, 90 one step bake apart; a
/// StopServiceDeployment ROLLBACK then sends everything back to blue (ROLLBACK_SUCCESSFUL),
/// and a finished deployment cannot be stopped (awscli sees ConflictException).
#[tokio::test]
async fn linear_steps_and_a_stop_rolls_back() {
    let bed = Testbed::get();
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let (green, _) = app.prepare_staged(api).await;
    let rule = app.rules[0].1.clone();
    let v2 = app.register(api, &format!("{}:v2", api.uri)).await;
    deploy(
        &app,
        api,
        &v2,
        DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::Linear)
            .bake_time_in_minutes(1)
            .linear_configuration(
                LinearConfiguration::builder()
                    .step_percent(30.0)
                    .step_bake_time_in_minutes(1)
                    .build(),
            )
            .build(),
    )
    .await;
    let mut weights: Vec<i32> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let w = app
            .forwards(&rule)
            .await
            .into_iter()
            .find(|(tg, _)| *tg == green)
            .map_or(0, |(_, w)| w);
        if w > 0 && weights.last() != Some(&w) {
            weights.push(w);
        }
        if w == 900 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "steps seen: {weights:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        weights,
        [300, 600, 900],
        "per mille: ALB weights are 0 to 999"
    );
    let d = current(&app, api).await;
    assert_eq!(
        d.lifecycle_stage().map(|s| s.as_str()),
        Some("PRODUCTION_TRAFFIC_SHIFT")
    );
    assert_eq!(
        d.target_service_revision()
            .unwrap()
            .requested_production_traffic_weight(),
        Some(90.0)
    );
    let arn = d.service_deployment_arn().unwrap().to_owned();
    app.clients
        .ecs
        .stop_service_deployment()
        .service_deployment_arn(&arn)
        .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
        .send()
        .await
        .unwrap();
    let d = eventually("the rollback", Duration::from_secs(60), || async {
        let d = current(&app, api).await;
        (d.status().map(|s| s.as_str()) == Some("ROLLBACK_SUCCESSFUL")).then_some(d)
    })
    .await;
    assert!(
        d.rollback()
            .unwrap()
            .reason()
            .unwrap()
            .contains("StopServiceDeployment"),
        "{d:?}"
    );
    assert_eq!(app.forwards(&rule).await, [(api.target_group.clone(), 100)]);
    let s = describe(&app.clients.ecs, &app.cluster, &api.ecs_service).await;
    assert_eq!(s.task_definition(), Some(api.task_definition.as_str()));
    assert_eq!(s.deployments().len(), 1);
    let (code, _, err) = bed.aws(
        bed.sim(),
        &[
            "ecs",
            "stop-service-deployment",
            "--service-deployment-arn",
            &arn,
            "--stop-type",
            "ROLLBACK",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("ConflictException"), "{err}");
    let (code, out, err) = bed.aws(
        bed.sim(),
        &[
            "ecs",
            "describe-service-deployments",
            "--service-deployment-arns",
            &arn,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        out["serviceDeployments"][0]["status"],
        "ROLLBACK_SUCCESSFUL"
    );
}

/// What ECS refuses, through awscli: BLUE_GREEN without bakeTimeInMinutes, a staged strategy
/// without the load balancer's advancedConfiguration; and a hook whose function does not
/// exist rolls the deployment back.
#[tokio::test]
async fn refusals_and_a_missing_hook_function() {
    let bed = Testbed::get();
    let app = App::create(&["api", "web"], None).await;
    let (api, web) = (app.service("api"), app.service("web"));
    app.prepare_staged(api).await;
    let update = |service: &str, config: &str| {
        bed.aws(
            bed.sim(),
            &[
                "ecs",
                "update-service",
                "--cluster",
                &app.cluster,
                "--service",
                service,
                "--deployment-configuration",
                config,
            ],
        )
    };
    let (code, _, err) = update(&api.ecs_service, r#"{"strategy": "BLUE_GREEN"}"#);
    assert_ne!(code, 0);
    assert!(
        err.contains("InvalidParameterException") && err.contains("bakeTimeInMinutes"),
        "{err}"
    );
    let (code, _, err) = update(&web.ecs_service, r#"{"strategy": "LINEAR"}"#);
    assert_ne!(code, 0);
    assert!(err.contains("advancedConfiguration"), "{err}");
    let v2 = app.register(api, &format!("{}:v2", api.uri)).await;
    deploy(
        &app,
        api,
        &v2,
        DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::BlueGreen)
            .bake_time_in_minutes(0)
            .lifecycle_hooks(hook(
                "arn:aws:lambda:us-east-1:123456789012:function:nowhere",
                &[DeploymentLifecycleHookStage::PreScaleUp],
            ))
            .build(),
    )
    .await;
    let d = eventually("the rollback", Duration::from_secs(60), || async {
        let d = current(&app, api).await;
        (d.status().map(|s| s.as_str()) == Some("ROLLBACK_SUCCESSFUL")).then_some(d)
    })
    .await;
    assert!(
        d.status_reason().unwrap().contains("Function not found"),
        "{d:?}"
    );
    assert_eq!(
        d.lifecycle_stage().map(|s| s.as_str()),
        Some("PRE_SCALE_UP")
    );
    let s = describe(&app.clients.ecs, &app.cluster, &api.ecs_service).await;
    assert_eq!(s.task_definition(), Some(api.task_definition.as_str()));
}
