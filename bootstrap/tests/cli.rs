//! The `slipway` binary, run as a user runs it.
#![allow(missing_docs)]

use std::process::Command;

fn slipway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run slipway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_input_prints_the_normalised_request() {
    let (code, out, err) = slipway(&["check-input", "tests/fixtures/events/ecr-push.json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["action"], "deploy");
    assert_eq!(v["request"]["image"]["tag"], "latest");
}

#[test]
fn check_input_names_the_bad_field_and_fails() {
    let dir = std::env::temp_dir().join(format!("slipway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.json");
    std::fs::write(
        &file,
        r#"{"services": ["api"], "tag": "no spaces allowed"}"#,
    )
    .expect("write");
    let (code, out, err) = slipway(&["check-input", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("(Slipway.InvalidInput): tag: \"no spaces allowed\" contains ' '"),
        "{err}"
    );
    let (code, _, err) = slipway(&["check-input", "no/such/file.json"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read no/such/file.json"), "{err}");
}

#[test]
fn schema_of_the_input_describes_all_three_forms() {
    let (code, out, err) = slipway(&["schema", "input"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON schema");
    let forms = v["anyOf"].as_array().expect("three forms");
    assert_eq!(forms.len(), 3);
    let text = out.as_str();
    assert!(
        text.contains("repository-name")
            && text.contains("\"tag\"")
            && text.contains("executionArn"),
        "{text}"
    );
}

#[test]
fn check_config_accepts_the_staging_example_and_names_errors() {
    let (code, _, err) = slipway(&["check-config", "examples/staging/slipway.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("4 services, 6 stacks"), "{err}");
    let dir = std::env::temp_dir().join(format!("slipway-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("slipway.toml");
    std::fs::write(
        &file,
        "environment = \"x\"\ncluster = \"c\"\n[[services]]\nname = \"api\"\nrepo = \"r\"\n",
    )
    .expect("write");
    let (code, _, err) = slipway(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("slipway.toml:5: services[0].repo: unknown field `repo`"),
        "{err}"
    );
    // Valid, with a warning: nothing checks this service.
    std::fs::write(
        &file,
        "environment = \"x\"\ncluster = \"c\"\n[[services]]\nname = \"worker\"\nrepository = \"repo\"\n",
    )
    .expect("write");
    let (code, _, err) = slipway(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("services[0]: \"worker\" has neither health nor target_group_arn"),
        "{err}"
    );
    assert!(err.contains("ok (1 services, 0 stacks)"), "{err}");
    // The staging example checks every service: no warning.
    let (_, _, err) = slipway(&["check-config", "examples/staging/slipway.toml"]);
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn demo_outside_a_checkout_says_where_to_run_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("demo")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run slipway");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs the demo of a Slipway checkout"));
}
