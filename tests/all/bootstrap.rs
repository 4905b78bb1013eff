//! `slipway bootstrap` into moto from a fresh start: the stack, then each resource through
//! its own API (moto skips some resource types, so the stack status alone proves little);
//! a second bootstrap is a no-op; `uninstall` removes it all, the table only on request.

use std::process::Command;

use serde_json::Value;
use slipway_tests::{root, unique, Scratch, Testbed};

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
fn artifacts() -> Scratch {
    let dir = Scratch::new("slipway-artifacts");
    for f in FUNCTIONS {
        let status = Command::new(root().join(".venv/bin/python"))
            .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w') as z: z.write(sys.argv[1], 'bootstrap')"])
            .arg(root().join("target/debug").join(f))
            .arg(dir.join(format!("{f}.zip")))
            .status()
            .unwrap();
        assert!(status.success(), "zip {f}");
    }
    write_sums(&dir);
    dir
}

/// `SHA256SUMS` of the zips in `dir`, as the release workflow writes it.
pub fn write_sums(dir: &std::path::Path) {
    let status = Command::new("sh")
        .args(["-c", "sha256sum ./*.zip > SHA256SUMS"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "sha256sum");
}

/// The environment's cluster in the simulator, with one service per configured service, each
/// on a task definition of its own family with a task role and one shared execution role
/// (bootstrap reads them: the only roles update-services may pass).
fn services_in_sim(bed: &Testbed, cluster: &str, services: &[&str]) {
    use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode};
    let ecs = bed.ecs();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ecs = ecs.await;
        // Idempotent, as on AWS.
        ecs.create_cluster()
            .cluster_name(cluster)
            .send()
            .await
            .unwrap();
        for service in services {
            let td = ecs
                .register_task_definition()
                .family(format!("{cluster}-{service}"))
                .cpu("256")
                .memory("512")
                .network_mode(NetworkMode::Awsvpc)
                .requires_compatibilities(Compatibility::Fargate)
                .task_role_arn(format!("arn:aws:iam::123456789012:role/{service}-task"))
                .execution_role_arn("ecs-execution")
                .container_definitions(
                    ContainerDefinition::builder()
                        .name(*service)
                        .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1")
                        .essential(true)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            ecs.create_service()
                .cluster(cluster)
                .service_name(format!("staging-{service}"))
                .task_definition(td.task_definition().unwrap().task_definition_arn().unwrap())
                .desired_count(0)
                .send()
                .await
                .unwrap();
        }
    });
}

fn slipway(bed: &Testbed, args: &[&str]) -> (i32, String, String) {
    slipway_with(bed, args, &std::env::var("PATH").unwrap_or_default(), &[])
}

fn slipway_with(
    bed: &Testbed,
    args: &[&str],
    path: &str,
    vars: &[(&str, &str)],
) -> (i32, String, String) {
    // Installation goes to moto alone: no per-service endpoints to the simulator.
    let out = Command::new(root().join("target/debug/slipway"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .env("PATH", path)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", bed.moto())
        // The services bootstrap reads their task definitions from run in the simulator.
        .env("AWS_ENDPOINT_URL_ECS", bed.sim())
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
        )
        .replace("cluster = \"staging\"", &format!("cluster = \"{env}\""));
    let scratch = Scratch::new("boot");
    let config = scratch.join(format!("{env}.toml"));
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

    let stack = format!("slipway-{env}");
    let no_stack = |bed: &Testbed| {
        bed.aws(
            bed.moto(),
            &["cloudformation", "describe-stacks", "--stack-name", &stack],
        )
        .0 != 0
    };
    // Before the cluster and its services exist, bootstrap stops with what to do, having
    // installed nothing.
    let (code, _, err) = slipway(&bed, &args);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cluster {env} not found: create the cluster and its services before bootstrap"
        )),
        "{err}"
    );
    assert!(no_stack(&bed));
    services_in_sim(&bed, &env, &["api", "auth", "admin"]);
    let (code, _, err) = slipway(&bed, &args);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("service web (staging-web in cluster {env}) not found: create the services before bootstrap")),
        "{err}"
    );
    assert!(no_stack(&bed));
    services_in_sim(&bed, &env, &["web"]);
    // A zip that is not the one SHA256SUMS names is refused before anything is uploaded.
    let tampered = Scratch::new("slipway-tampered");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tampered.join(entry.file_name())).unwrap();
    }
    std::fs::write(tampered.join("finish.zip"), b"not the release's zip").unwrap();
    let mut tampered_args = args;
    tampered_args[4] = tampered.to_str().unwrap();
    let (code, _, err) = slipway(&bed, &tampered_args);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("finish.zip has sha256") && err.contains("SHA256SUMS says"),
        "{err}"
    );
    assert!(no_stack(&bed));
    // Without --artifacts bootstrap builds the functions with cargo lambda; where that is not
    // installed (a PATH with cargo alone), it says how to get it, having uploaded nothing.
    let cargo_only = std::path::Path::new(env!("CARGO"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let unbuilt: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, a)| *a)
        .collect();
    // An empty CARGO_HOME: cargo finds no subcommand installed in the real one either.
    let cargo_home = Scratch::new("cargo-home");
    let (code, _, err) = slipway_with(
        &bed,
        &unbuilt,
        &cargo_only,
        &[("CARGO_HOME", cargo_home.to_str().unwrap())],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`cargo lambda` is not installed") && err.contains("pip install cargo-lambda"),
        "{err}"
    );
    assert!(no_stack(&bed));

    let (code, out, err) = slipway(&bed, &args);
    assert_eq!(code, 0, "{err}");
    let installed: Value = serde_json::from_str(&out).unwrap();
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

    // update-services may pass exactly the services' roles (read from their task definitions
    // in the simulator; a bare role name is this account's) and register only their families.
    let policy = aws_json(
        &bed,
        &[
            "iam",
            "get-role-policy",
            "--role-name",
            &physical("UpdateServicesRole"),
            "--policy-name",
            "slipway-update-services",
        ],
    );
    // moto returns the inline policy of a CloudFormation role as Python's repr of it (single
    // quotes); these documents hold no quote of their own.
    let document: Value = match &policy["PolicyDocument"] {
        Value::String(text) => serde_json::from_str(&text.replace('\'', "\"")).unwrap(),
        other => other.clone(),
    };
    let statements = document["Statement"].as_array().unwrap().clone();
    let granting = |action: &str| {
        statements
            .iter()
            .find(|s| s["Action"].as_array().unwrap().iter().any(|a| a == action))
            .unwrap_or_else(|| panic!("{action} granted"))["Resource"]
            .clone()
    };
    assert_eq!(
        granting("iam:PassRole"),
        serde_json::json!([
            "arn:aws:iam::123456789012:role/admin-task",
            "arn:aws:iam::123456789012:role/api-task",
            "arn:aws:iam::123456789012:role/auth-task",
            "arn:aws:iam::123456789012:role/ecs-execution",
            "arn:aws:iam::123456789012:role/web-task"
        ])
    );
    assert_eq!(
        granting("ecs:RegisterTaskDefinition"),
        serde_json::json!(["admin", "api", "auth", "web"]
            .map(|s| format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{env}-{s}:*")))
    );

    // The artifact bucket is versioned, private and TLS-only, and each function's code is
    // pinned to the version bootstrap uploaded.
    let bucket = "slipway-123456789012-us-east-1";
    assert_eq!(
        aws_json(
            &bed,
            &["s3api", "get-bucket-versioning", "--bucket", bucket]
        )["Status"],
        "Enabled"
    );
    let block = aws_json(
        &bed,
        &["s3api", "get-public-access-block", "--bucket", bucket],
    );
    for flag in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            block["PublicAccessBlockConfiguration"][flag], true,
            "{flag}"
        );
    }
    // (The TLS-only bucket policy is left out of test-bed builds: moto applies a policy's
    // Deny without its condition. Its document has a unit test in install.rs.)
    assert!(err.contains("TLS-only policy is left out"), "{err}");
    let parameters = stacks["Stacks"][0]["Parameters"]
        .as_array()
        .unwrap()
        .clone();
    let parameter = |key: &str| {
        parameters
            .iter()
            .find(|p| p["ParameterKey"] == key)
            .unwrap_or_else(|| panic!("parameter {key}"))["ParameterValue"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let prefix = parameter("ArtifactPrefix");
    for (f, stem) in [("plan", "Plan"), ("finish", "Finish")] {
        let head = aws_json(
            &bed,
            &[
                "s3api",
                "head-object",
                "--bucket",
                bucket,
                "--key",
                &format!("{prefix}{f}.zip"),
            ],
        );
        assert_eq!(
            parameter(&format!("{stem}CodeVersion")),
            head["VersionId"].as_str().unwrap(),
            "{f}"
        );
    }
    let log_group = physical("PlanLogGroup");

    // Again, nothing changed: a no-op. This time the zips come from a release's downloads
    // (--artifacts-version; served on 127.0.0.1 as GitHub would: <base>/<tag>/<file>),
    // checked against its SHA256SUMS: the same zips, so nothing to update.
    let site = Scratch::new("release-site");
    std::os::unix::fs::symlink(&dir, site.join("v0.0.1")).unwrap();
    let server = slipway_tests::FileServer::serve(&site);
    let released: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, a)| *a)
        .chain(["--artifacts-version", "v0.0.1"])
        .collect();
    let path = std::env::var("PATH").unwrap_or_default();
    // Bootstrap's own temporary directory, to see that the download does not stay there.
    let tmp = Scratch::new("bootstrap-tmp");
    let download_env = [
        ("SLIPWAY_DOWNLOAD_BASE", server.url.as_str()),
        ("TMPDIR", tmp.to_str().unwrap()),
    ];
    let (code, out, err) = slipway_with(&bed, &released, &path, &download_env);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("downloading release v0.0.1's functions"),
        "{err}"
    );
    assert!(err.contains("no changes"), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["changed"],
        false
    );
    assert_eq!(
        tmp.entries(),
        Vec::<String>::new(),
        "the download is removed"
    );
    // A release that is not there: said, and nothing left behind either.
    let missing: Vec<&str> = released
        .iter()
        .map(|a| if *a == "v0.0.1" { "v0.0.2" } else { *a })
        .collect();
    let (code, _, err) = slipway_with(&bed, &missing, &path, &download_env);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot download") && err.contains("is v0.0.2 a Slipway release?"),
        "{err}"
    );
    assert_eq!(
        tmp.entries(),
        Vec::<String>::new(),
        "a failed download is removed"
    );
    // Without the GitHub flags the stored options are kept (not a deleted role), and said.
    let github_flags = [
        "--github-repository",
        "acme/app",
        "--github-branch",
        "staging",
    ];
    let plain: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !github_flags.contains(a))
        .collect();
    let (code, out, err) = slipway(&bed, &plain);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "keeping the installed options: --github-repository acme/app --github-branch staging"
        ),
        "{err}"
    );
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["changed"], false, "{err}");
    assert_eq!(again["github_role_arn"], installed["github_role_arn"]);

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
    assert_eq!(code, 2, "a usage error: nothing started");
    assert!(
        err.contains("tag: \"bad tag\" contains ' '") && err.contains("Slipway.InvalidInput"),
        "{err}"
    );
    // --service is checked against the stored configuration before anything starts.
    let (code, _, err) = slipway(
        &bed,
        &[
            "deploy",
            "--environment",
            &env,
            "--service",
            "nope",
            "--tag",
            "3f2a1bc",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--service nope: no such service") && err.contains("nothing was started"),
        "{err}"
    );
    let (code, out, err) = slipway(&bed, &["history", "--environment", &env, "--json"]);
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");
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

    // Uninstall: the stack and functions go, the history and logs stay (the history unless
    // asked).
    let (code, _, err) = slipway(&bed, &["uninstall", "--environment", &env, "--yes"]);
    assert_eq!(code, 0, "{err}");
    let groups = aws_json(
        &bed,
        &[
            "logs",
            "describe-log-groups",
            "--log-group-name-prefix",
            &log_group,
        ],
    );
    assert_eq!(
        groups["logGroups"][0]["logGroupName"],
        log_group.as_str(),
        "the functions' logs outlive the installation"
    );
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
    // Without a terminal to ask on, --yes is required; it says what goes and what stays.
    let (code, _, err) = slipway(&bed, &["uninstall", "--environment", &env, "--delete-data"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pass --yes") && err.contains("the state table with the deployment history"),
        "{err}"
    );
    let (code, _, err) = slipway(
        &bed,
        &["uninstall", "--environment", &env, "--delete-data", "--yes"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kept: the artifact bucket"), "{err}");
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

/// `slipway init --cluster C` reads an existing cluster (ECS and ELBv2 in the simulator, ECR
/// images of moto's) and writes a slipway.toml that passes check-config as it is: one entry
/// per service with its ECS service, container, ECR repository and target group, and the
/// health check from the load balancer's host-header rule for that target group.
#[tokio::test]
async fn init_writes_a_configuration_from_the_cluster() {
    let bed = Testbed::get();
    let app = crate::app::App::create(&["api", "web"], None).await;
    let init = |args: &[&str]| bed.cli(&[["init"].as_slice(), args].concat());
    let (code, out, err) = init(&["--cluster", &app.cluster, "--environment", "staging"]);
    assert_eq!(code, 0, "{err}");
    let config =
        slipway_core::config::Config::parse(&out, "init").unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(config.environment, "staging");
    assert_eq!(config.cluster, app.cluster);
    let dns = app
        .clients
        .elbv2
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancers()
        .to_vec();
    for s in &app.services {
        let c = config
            .services
            .iter()
            .find(|c| c.ecs_service() == s.ecs_service)
            .unwrap_or_else(|| panic!("{} missing:\n{out}", s.ecs_service));
        // The cluster's name is the prefix of its service names here: cut off.
        assert_eq!(c.name, s.name, "{out}");
        assert_eq!(c.repository, s.repository, "{out}");
        assert_eq!(c.container.as_deref(), Some(s.name.as_str()), "{out}");
        assert_eq!(c.target_group_arn.as_deref(), Some(s.target_group.as_str()));
        let health = c
            .health
            .as_ref()
            .unwrap_or_else(|| panic!("no health:\n{out}"));
        assert_eq!(health.host.as_deref(), Some(app.host(s).as_str()), "{out}");
        assert!(
            dns.iter()
                .filter_map(|l| l.dns_name())
                .any(|d| health.url == format!("http://{d}/")),
            "{} is the listener's load balancer with the group's health check path:\n{out}",
            health.url
        );
    }
    // An unknown cluster is said, and nothing printed.
    let (code, out, err) = init(&["--cluster", "no-such-cluster"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("cluster no-such-cluster not found"), "{err}");
}
