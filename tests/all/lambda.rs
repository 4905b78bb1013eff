use aws_sdk_lambda::primitives::Blob;
use serde_json::{json, Value};
use slipway_tests::{root, Testbed};

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `plan` answers a valid ECR event through cargo lambda watch's Invoke API, called with the
/// unmodified Lambda SDK client.
#[tokio::test]
async fn plan_normalises_an_ecr_push_through_the_invoke_api() {
    let bed = Testbed::get();
    let lambda = bed.lambda_client().await;
    let out = lambda
        .invoke()
        .function_name("plan")
        .payload(Blob::new(fixture("ecr-push.json").to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.function_error(), None);
    let body: Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["action"], "deploy");
    assert_eq!(
        body["request"]["services"],
        json!({"by": "repository", "name": "my-repository-name"})
    );
    assert_eq!(
        body["request"]["image"]["digest"],
        "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234"
    );
    assert_eq!(
        body["request"]["trigger"]["event_id"],
        "13cde686-328b-6117-af20-0e5566167482"
    );
}

/// An invalid input comes back as HTTP 500 with the stable error name, not a Rust type path,
/// and a message naming the field.
#[tokio::test]
async fn plan_rejects_an_invalid_input_with_its_error_name() {
    let bed = Testbed::get();
    let url = format!("{}/2015-03-31/functions/plan/invocations", bed.lambda());
    let client = reqwest::Client::new();
    for (input, field) in [
        (
            json!({"services": ["api", 3], "tag": "3f2a1bc"}),
            "services[1]",
        ),
        (json!({"services": ["api"], "tag": "bad tag"}), "tag"),
        (
            json!({"services": ["api"], "tag": "x", "colour": "red"}),
            "colour",
        ),
        (
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
                "id": "1", "account": "1", "time": "t", "region": "r", "detail": {}}),
            "detail-type",
        ),
    ] {
        let response = client
            .post(&url)
            .body(input.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500, "{input}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errorType"], "Slipway.InvalidInput", "{input}");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{input} → {message}"
        );
    }
}
