//! Bad inputs, table-driven: each gets its named error and a message that says what is
//! wrong; none panics; no lock is left held.

use serde_json::{json, Value};
use slipway_core::steps::{self, SystemClock};
use slipway_core::{state, StepError};

use crate::app::App;

struct Case {
    what: &'static str,
    input: Value,
    /// Replaces the stored configuration for this case: (what, with).
    config: Option<(String, String)>,
    error: &'static str,
    says: &'static str,
}

#[tokio::test]
async fn bad_inputs_get_named_errors_and_leave_no_lock() {
    let app = App::create(&["api"], None).await;
    let api = app.service("api");
    let tagged = app.push(api, "2222222").await;
    let good_event = app.event(api, "2222222", &tagged);
    // A stack with a CloudFormation service role attached: without RoleARN, CloudFormation
    // acts through it (CreateChangeSet API reference), so slipway.toml must name it.
    let roled = format!("{}-roled", app.stack);
    app.clients
        .cloudformation
        .create_stack()
        .stack_name(&roled)
        .template_body(crate::app::STACK_TEMPLATE)
        .role_arn("arn:aws:iam::123456789012:role/cfn-exec")
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("Environment")
                .parameter_value("test")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let replace = |what: &str, with: &str| Some((what.to_owned(), with.to_owned()));
    let cases = vec![
        Case {
            what: "not an object",
            input: json!(["api"]),
            config: None,
            error: "Slipway.InvalidInput",
            says: "$: expected a JSON object",
        },
        Case {
            what: "services of the wrong type",
            input: json!({"services": "api", "tag": "2222222"}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "services: invalid type",
        },
        Case {
            what: "a service name of the wrong type",
            input: json!({"services": [1], "tag": "2222222"}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "services[0]: invalid type",
        },
        Case {
            what: "an unknown service",
            input: json!({"services": ["billing"], "tag": "2222222"}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "services[0]: no service named \"billing\"",
        },
        Case {
            what: "an empty tag",
            input: json!({"services": ["api"], "tag": ""}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "tag: empty",
        },
        Case {
            what: "a malformed tag",
            input: json!({"services": ["api"], "tag": "v1/../x"}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "tag: \"v1/../x\" contains '/'",
        },
        Case {
            what: "a tag not in ECR",
            input: json!({"services": ["api"], "tag": "9999999"}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "tag: 9999999 is not in the ECR repository",
        },
        Case {
            what: "an unknown digest",
            input: json!({"services": ["api"], "digest": format!("sha256:{}", "0".repeat(64))}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "is not in the ECR repository",
        },
        Case {
            what: "a malformed digest",
            input: json!({"services": ["api"], "digest": "sha256:XYZ"}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "digest: \"sha256:XYZ\" is not an image digest",
        },
        Case {
            what: "tag and digest both",
            input: json!({"tag": "2222222", "digest": tagged}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "digest: give `tag` or `digest`, not both",
        },
        Case {
            what: "a non-ECR event",
            input: json!({"id": "1", "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "account": "1", "time": "t", "region": "r", "detail": {}}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "detail-type: Slipway starts from \"ECR Image Action\" events",
        },
        Case {
            what: "a 1 MB payload",
            input: json!({"tag": "2222222", "reason": "x".repeat(1 << 20)}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "$: input is",
        },
        Case {
            what: "an unknown field",
            input: json!({"tag": "2222222", "servces": ["api"]}),
            config: None,
            error: "Slipway.InvalidInput",
            says: "servces: unknown field `servces`",
        },
        Case {
            what: "a missing stack",
            input: good_event.clone(),
            config: replace(
                &format!("name = \"{}\"", app.stack),
                "name = \"no-such-stack\"",
            ),
            error: "Slipway.InvalidInput",
            says: "stack no-such-stack",
        },
        Case {
            what: "a stack whose service role slipway.toml does not name",
            input: good_event.clone(),
            config: replace(
                &format!("name = \"{}\"", app.stack),
                &format!("name = \"{roled}\""),
            ),
            error: "Slipway.InvalidInput",
            says: "acts through its service role arn:aws:iam::123456789012:role/cfn-exec, which slipway.toml does not name",
        },
        Case {
            what: "a stack parameter the stack lacks",
            input: good_event.clone(),
            config: replace("Environment = \"test\"", "Colour = \"blue\""),
            error: "Slipway.InvalidInput",
            says: "has no such parameter",
        },
        Case {
            what: "a missing ECS service",
            input: good_event.clone(),
            config: replace(
                &format!("ecs_service = \"{}\"", api.ecs_service),
                "ecs_service = \"gone\"",
            ),
            error: "Slipway.InvalidInput",
            says: "ECS service gone not found in cluster",
        },
        Case {
            what: "a missing cluster",
            input: good_event.clone(),
            config: replace(
                &format!("cluster = \"{}\"", app.cluster),
                "cluster = \"no-such-cluster\"",
            ),
            error: "Slipway.InvalidInput",
            says: "ECS cluster no-such-cluster does not exist",
        },
        Case {
            what: "a missing ECR repository",
            input: json!({"services": ["api"], "tag": "2222222"}),
            config: replace(
                &format!("repository = \"{}\"", api.repository),
                "repository = \"no/such-repo\"",
            ),
            error: "Slipway.InvalidInput",
            says: "ECR repository no/such-repo does not exist",
        },
        Case {
            what: "an ECR push event from another account",
            input: {
                let mut e = good_event.clone();
                e["account"] = json!("999999999999");
                e
            },
            config: None,
            error: "Slipway.InvalidInput",
            says: "account: the ECR push event comes from account 999999999999, but repository",
        },
        Case {
            what: "two containers and none named",
            input: good_event.clone(),
            config: replace("container = \"api\"\n", ""),
            error: "Slipway.InvalidInput",
            says: "has 2 containers (api, log-router); name the one to deploy with `container`",
        },
        Case {
            what: "a named container that is not there",
            input: good_event.clone(),
            config: replace("container = \"api\"", "container = \"app\""),
            error: "Slipway.InvalidInput",
            says: "has no container \"app\"",
        },
    ];
    for case in cases {
        if let Some((what, with)) = &case.config {
            assert!(
                app.config.contains(what.as_str()),
                "{}: the fixture config has no {what:?}",
                case.what
            );
            state::store_config(&app.clients, &app.config.replace(what.as_str(), with))
                .await
                .unwrap();
        }
        let payload = json!({"input": case.input, "execution": "bad-input"});
        let result = steps::plan(&app.clients, &SystemClock, payload).await;
        if case.config.is_some() {
            state::store_config(&app.clients, &app.config)
                .await
                .unwrap();
        }
        match result {
            Err(e) => {
                assert_eq!(e.name(), case.error, "{}: {e}", case.what);
                assert!(
                    e.to_string().contains(case.says),
                    "{}: {e:?} should say {:?}",
                    case.what,
                    case.says
                );
            }
            Ok(out) => panic!("{}: accepted: {out:?}", case.what),
        }
        assert!(
            app.locks().await.is_empty(),
            "{}: a lock was left behind",
            case.what
        );
    }

    // No configuration at all (bootstrap never ran).
    let empty = app.bed.clients(&slipway_tests::unique("empty")).await;
    state::create_table(&empty).await.unwrap();
    let e = steps::plan(
        &empty,
        &SystemClock,
        json!({"input": good_event, "execution": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.name(), "Slipway.InvalidInput");
    assert!(
        e.to_string()
            .contains("no configuration in the state table")
            && e.to_string().contains("slipway bootstrap"),
        "{e}"
    );
    // No state table at all.
    let missing = app.bed.clients("no-such-table").await;
    let e = steps::plan(
        &missing,
        &SystemClock,
        json!({"input": good_event, "execution": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.name(), "Slipway.InvalidInput");
    assert!(
        e.to_string()
            .contains("cannot read the state table no-such-table"),
        "{e}"
    );
    // An invalid configuration stored behind Slipway's back names its line and field.
    let broken = app
        .config
        .replace("bake_seconds = 1", "bake_seconds = \"soon\"");
    app.clients
        .dynamodb
        .put_item()
        .table_name(&app.clients.table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("CONFIG".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("CURRENT".into()),
        )
        .item("toml", aws_sdk_dynamodb::types::AttributeValue::S(broken))
        .send()
        .await
        .unwrap();
    let e = steps::plan(
        &app.clients,
        &SystemClock,
        json!({"input": good_event, "execution": "x"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(&e, StepError::InvalidInput { .. }), "{e}");
    assert!(
        e.to_string().contains(":4: bake_seconds: invalid type"),
        "{e}"
    );
    assert!(app.locks().await.is_empty());
}
