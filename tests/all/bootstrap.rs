//! `slipway bootstrap` into moto from a fresh start: the stack, then each resource through
//! its own API (moto skips some resource types, so the stack status alone proves little);
//! a second bootstrap is a no-op; `uninstall` removes it all, the table only on request.

use std::process::Command;

use serde_json::Value;
use slipway_tests::{root, unique, Testbed};

const FUNCTIONS: [&str; 7] = [
    "plan",
    "deploy-stack",
    "update-services",
    "check-stability",
    "health-check",
    "roll-back",
    "finish",
];

/// Zips the debug binaries as the functions' artifacts (moto stores code, it runs none).
fn artifacts() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("slipway-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in FUNCTIONS {
        let status = Command::new(root().join(".venv/bin/python"))
            .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w') as z: z.write(sys.argv[1], 'bootstrap')"])
            .arg(root().join("target/debug").join(f))
            .arg(dir.join(format!("{f}.zip")))
            .status()
            .unwrap();
        assert!(status.success(), "zip {f}");
    }
    dir
}

fn slipway(bed: &Testbed, args: &[&str]) -> (i32, String, String) {
    // Installation goes to moto alone: no per-service endpoints to the simulator.
    let out = Command::new(root().join("target/debug/slipway"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", bed.moto())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn aws_json(bed: &Testbed, args: &[&str]) -> Value {
    let (code, out, err) = bed.aws(bed.moto(), args);
    assert_eq!(code, 0, "aws {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn bootstrap_installs_everything_idempotently_and_uninstall_removes_it() {
    let bed = Testbed::get();
    let env = unique("boot");
    let text = std::fs::read_to_string(root().join("examples/staging/slipway.toml"))
        .unwrap()
        .replace(
            "environment = \"staging\"",
            &format!("environment = \"{env}\""),
        );
    let config = std::env::temp_dir().join(format!("{env}.toml"));
    std::fs::write(&config, text).unwrap();
    let dir = artifacts();
    let args = [
        "bootstrap",
        "--config",
        config.to_str().unwrap(),
        "--artifacts",
        dir.to_str().unwrap(),
        "--poll-seconds",
        "1",
        "--github-repository",
        "acme/app",
        "--github-branch",
        "staging",
        "--json",
    ];

    let (code, out, err) = slipway(&bed, &args);
    assert_eq!(code, 0, "{err}");
    let installed: Value = serde_json::from_str(&out).unwrap();
    let stack = format!("slipway-{env}");
    assert_eq!(installed["stack"], stack);
    assert_eq!(installed["changed"], true);
    assert!(err.contains("CREATE_COMPLETE"), "progress shown: {err}");

    let stacks = aws_json(
        &bed,
        &["cloudformation", "describe-stacks", "--stack-name", &stack],
    );
    assert_eq!(stacks["Stacks"][0]["StackStatus"], "CREATE_COMPLETE");
    // Each resource through its own API.
    for f in FUNCTIONS {
        let got = aws_json(
            &bed,
            &[
                "lambda",
                "get-function",
                "--function-name",
                &format!("slipway-{env}-{f}"),
            ],
        );
        let c = &got["Configuration"];
        assert_eq!(
            (c["Runtime"].as_str(), c["Handler"].as_str()),
            (Some("provided.al2023"), Some("bootstrap")),
            "{f}"
        );
        assert_eq!(c["Environment"]["Variables"]["SLIPWAY_TABLE"], stack, "{f}");
        let role = c["Role"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let policies = aws_json(&bed, &["iam", "list-role-policies", "--role-name", &role]);
        assert_eq!(
            policies["PolicyNames"][0],
            format!("slipway-{f}"),
            "{f} has its own role"
        );
    }
    let table = aws_json(
        &bed,
        &["dynamodb", "describe-table", "--table-name", &stack],
    );
    let keys: Vec<&str> = table["Table"]["KeySchema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["AttributeName"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);
    let item = aws_json(
        &bed,
        &[
            "dynamodb",
            "get-item",
            "--table-name",
            &stack,
            "--key",
            r#"{"pk":{"S":"CONFIG"},"sk":{"S":"CURRENT"}}"#,
        ],
    );
    assert!(item["Item"]["toml"]["S"]
        .as_str()
        .unwrap()
        .contains(&format!("environment = \"{env}\"")));
    let machine = aws_json(
        &bed,
        &[
            "stepfunctions",
            "describe-state-machine",
            "--state-machine-arn",
            installed["state_machine_arn"].as_str().unwrap(),
        ],
    );
    assert!(machine["definition"]
        .as_str()
        .unwrap()
        .contains("\"DeployGroups\""));
    let resources = aws_json(
        &bed,
        &[
            "cloudformation",
            "describe-stack-resources",
            "--stack-name",
            &stack,
        ],
    );
    let physical = |logical: &str| {
        resources["StackResources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["LogicalResourceId"] == logical)
            .unwrap()["PhysicalResourceId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let rule = aws_json(
        &bed,
        &[
            "events",
            "describe-rule",
            "--name",
            &physical("EcrPushRule"),
        ],
    );
    let pattern: Value = serde_json::from_str(rule["EventPattern"].as_str().unwrap()).unwrap();
    assert_eq!(pattern["detail-type"][0], "ECR Image Action");
    assert_eq!(
        pattern["detail"]["repository-name"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let targets = aws_json(
        &bed,
        &[
            "events",
            "list-targets-by-rule",
            "--rule",
            &physical("EcrPushRule"),
        ],
    );
    assert_eq!(targets["Targets"][0]["Arn"], installed["state_machine_arn"]);
    let github = aws_json(
        &bed,
        &[
            "iam",
            "get-role",
            "--role-name",
            installed["github_role_arn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap(),
        ],
    );
    let trust = github["Role"]["AssumeRolePolicyDocument"].to_string();
    assert!(
        trust.contains("repo:acme/app:ref:refs/heads/staging"),
        "{trust}"
    );

    // Again, nothing changed: a no-op.
    let (code, out, err) = slipway(&bed, &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no changes"), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["changed"],
        false
    );

    // deploy and status against the installed state machine (moto keeps executions RUNNING:
    // it runs no Lambda code, so --follow can only time out here).
    let (code, out, err) = slipway(
        &bed,
        &[
            "deploy",
            "--environment",
            &env,
            "--service",
            "api",
            "--tag",
            "3f2a1bc",
            "--reason",
            "test",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    let execution = started["executionArn"].as_str().unwrap().to_owned();
    assert!(
        execution.contains(&format!(":execution:slipway-{env}:cli-3f2a1bc-")),
        "{execution}"
    );
    let (code, out, err) = slipway(&bed, &["status", "--environment", &env, "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["executionArn"], execution.as_str());
    assert_eq!(list[0]["status"], "RUNNING");
    let (code, out, err) = slipway(&bed, &["status", &execution, "--json"]);
    assert_eq!(code, 0, "{err}");
    let one: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        one["input"],
        serde_json::json!({"services": ["api"], "tag": "3f2a1bc", "reason": "test"})
    );
    let (code, _, err) = slipway(
        &bed,
        &[
            "deploy",
            "--environment",
            &env,
            "--tag",
            "3f2a1bc",
            "--follow",
            "--follow-timeout",
            "1",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("still RUNNING after 1 s"), "{err}");
    let (code, _, err) = slipway(&bed, &["deploy", "--environment", &env, "--tag", "bad tag"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tag: \"bad tag\" contains ' '") && err.contains("Slipway.InvalidInput"),
        "{err}"
    );
    let (code, _, err) = slipway(
        &bed,
        &[
            "deploy",
            "--environment",
            "not-installed",
            "--tag",
            "3f2a1bc",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("run `slipway bootstrap"), "{err}");

    // Uninstall: the stack and functions go, the history stays unless asked.
    let (code, _, err) = slipway(
        &bed,
        &["uninstall", "--environment", &env, "--poll-seconds", "1"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        bed.aws(
            bed.moto(),
            &["cloudformation", "describe-stacks", "--stack-name", &stack]
        )
        .0 != 0,
        "stack gone"
    );
    assert!(
        bed.aws(
            bed.moto(),
            &[
                "lambda",
                "get-function",
                "--function-name",
                &format!("slipway-{env}-plan")
            ]
        )
        .0 != 0,
        "functions gone"
    );
    let (code, _, err) = slipway(
        &bed,
        &[
            "uninstall",
            "--environment",
            &env,
            "--delete-data",
            "--poll-seconds",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        bed.aws(
            bed.moto(),
            &["dynamodb", "describe-table", "--table-name", &stack]
        )
        .0 != 0,
        "table gone with --delete-data"
    );

    // Without credentials or region, it says what to do.
    let out = Command::new(root().join("target/debug/slipway"))
        .args([
            "bootstrap",
            "--config",
            config.to_str().unwrap(),
            "--artifacts",
            dir.to_str().unwrap(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no AWS region"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
