//! The reference app's files stay valid: its CloudFormation templates pass cfn-lint, and
//! its slipway.toml parses (the demo deploys both on the test bed); Slipway's own template
//! for it passes cfn-lint and checkov. (Here rather than in the CLI's tests: these linters
//! take minutes, and this binary's tests run beside the long scenarios.)

use std::process::Command;

use slipway_tests::{root, FileServer, Scratch};

#[test]
fn staging_templates_pass_cfn_lint() {
    let dir = root().join("examples/staging/templates");
    let mut templates: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    templates.sort();
    assert_eq!(
        templates.len(),
        6,
        "network, database, cache, secrets, alb, ecs"
    );
    let out = std::process::Command::new(root().join(".venv/bin/cfn-lint"))
        .args(&templates)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn staging_config_names_its_stacks() {
    let text = std::fs::read_to_string(root().join("examples/staging/slipway.toml")).unwrap();
    let config =
        slipway_core::config::Config::parse(&text, "examples/staging/slipway.toml").unwrap();
    for stack in &config.stacks {
        assert!(
            root()
                .join(format!("examples/staging/templates/{}.json", stack.name))
                .exists(),
            "{} has a template",
            stack.name
        );
    }
}

/// This repository's workflows and the example workflow for users pass actionlint.
#[test]
fn workflows_pass_actionlint() {
    let out = std::process::Command::new(root().join(".venv/bin/actionlint"))
        .args([
            ".github/workflows/ci.yml",
            ".github/workflows/release.yml",
            "examples/github/deploy-staging.yml",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Supply chain: every action is pinned by a full commit SHA with its version in a comment,
/// every workflow starts from read-only `permissions`, checkouts keep no credentials, and in
/// the release workflow only the publish job can write (the build job cannot).
#[test]
fn workflows_pin_actions_and_grant_least_permissions() {
    for file in [
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
        "examples/github/deploy-staging.yml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let uses: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("uses: "))
            .collect();
        assert!(!uses.is_empty(), "{file}");
        for u in uses {
            let (action, rest) = u.split_once('@').unwrap_or((u, ""));
            // The example's one exception: Slipway's own action, at its release tag (its
            // commit SHA does not exist before the release; the comment says to pin it).
            if file.starts_with("examples/") && action == "slipway-deploy/slipway" {
                assert!(rest.starts_with('v'), "{file}: {u}");
                continue;
            }
            let (sha, comment) = rest.split_once(" # v").unwrap_or((rest, ""));
            assert!(
                sha.len() == 40
                    && sha.chars().all(|c| c.is_ascii_hexdigit())
                    && !comment.is_empty(),
                "{file}: {action} is not pinned by commit SHA with its version in a comment: {u}"
            );
        }
        assert!(
            text.lines().any(|l| l == "permissions:"),
            "{file}: no top-level permissions"
        );
        let checkouts = text.matches("actions/checkout@").count();
        assert_eq!(
            text.matches("persist-credentials: false").count(),
            checkouts,
            "{file}: a checkout keeps its credentials"
        );
    }
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    let (top, jobs) = release.split_once("\njobs:").unwrap();
    assert!(top.contains("permissions:\n  contents: read"), "{top}");
    let (build, publish) = jobs.split_once("\n  publish:").unwrap();
    assert!(
        !build.contains(": write"),
        "the build job can write: {build}"
    );
    assert!(
        build.contains("--locked") && build.contains("--require-hashes"),
        "{build}"
    );
    assert!(publish.contains("contents: write") && publish.contains("attest-build-provenance"));
    assert!(publish.contains("sha256sum --check"), "{publish}");
}

#[test]
fn template_for_the_staging_example_passes_cfn_lint() {
    // With every option of the template: alarms (DescribeAlarms on them) and a service ECS
    // deploys blue/green (the lifecycle hook's role, StopServiceDeployment).
    let dir = Scratch::new("slipway-template");
    let config = dir.join("slipway.toml");
    let staging = std::fs::read_to_string(root().join("examples/staging/slipway.toml")).unwrap();
    std::fs::write(
        &config,
        format!("alarms = [\"staging-5xx\"]\n{staging}").replacen(
            "[[services]]",
            "[[services]]\nstrategy = \"blue-green\"\nalarms = [\"web-latency\"]",
            1,
        ),
    )
    .unwrap();
    let slipway = Command::new(root().join("target/debug/slipway"))
        .current_dir(root())
        .arg("template")
        .arg("--config")
        .arg(&config)
        .args([
            "--github-repository",
            "acme/app",
            "--github-branch",
            "staging",
            "--create-topic",
        ])
        .output()
        .expect("target/debug/slipway (the workspace's build)");
    let out = String::from_utf8_lossy(&slipway.stdout);
    assert!(
        slipway.status.success(),
        "{}",
        String::from_utf8_lossy(&slipway.stderr)
    );
    let file = dir.join("slipway.template.json");
    std::fs::write(&file, out.as_bytes()).expect("write");
    let lint = root().join(".venv/bin/cfn-lint");
    let lint = Command::new(lint)
        .arg(&file)
        .output()
        .expect("cfn-lint from .venv (scripts/testbed install)");
    assert!(
        lint.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let template: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        template["Resources"]["StateMachine"]["Properties"]["StateMachineName"],
        "slipway-staging"
    );
    assert!(template["Resources"]["LifecycleHookRole"].is_object());
    assert!(out.contains("cloudwatch:DescribeAlarms"));

    // checkov (pinned, offline: no update check, no guideline download) finds nothing but
    // the checks the template skips, each with its reason in the resource's Metadata.
    let checkov = root().join(".venv-checkov/bin/checkov");
    let scan = Command::new(checkov)
        .args([
            "--framework",
            "cloudformation",
            "--skip-download",
            "--compact",
            "-o",
            "json",
            "-f",
        ])
        .arg(&file)
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CKV_PARSE_ERROR_FAIL", "true")
        .output()
        .expect("checkov from .venv-checkov (scripts/testbed install-checkov)");
    let report: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&scan.stdout),
            String::from_utf8_lossy(&scan.stderr)
        )
    });
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
        .collect();
    assert!(
        scan.status.success() && summary["failed"] == 0,
        "checkov failed checks: {failed:#?}"
    );
    assert!(
        summary["resource_count"].as_u64().unwrap_or(0) >= 30,
        "{summary}"
    );
    assert!(summary["passed"].as_u64().unwrap_or(0) >= 100, "{summary}");
    for skipped in report["results"]["skipped_checks"]
        .as_array()
        .expect("skipped")
    {
        assert!(
            skipped["check_result"]["suppress_comment"]
                .as_str()
                .is_some_and(|c| c.len() > 20),
            "a skip without its reason: {skipped}"
        );
    }
}

/// The GitHub Action (action.yml): a composite action whose inputs reach its scripts only as
/// environment variables; its install step takes the CLI of a release from the release's
/// downloads (served here on 127.0.0.1) only when its SHA-256 is the one SHA256SUMS names,
/// and puts it on the job's PATH; its deploy step runs `slipway deploy --follow` with the
/// inputs as flags.
#[test]
fn the_action_installs_the_checked_cli_and_deploys_with_its_inputs() {
    let parsed = Command::new(root().join(".venv/bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join("action.yml"))
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let action: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(action["runs"]["using"], "composite");
    for required in ["environment", "tag"] {
        assert_eq!(action["inputs"][required]["required"], true, "{required}");
    }
    for step in action["runs"]["steps"].as_array().unwrap() {
        let run = step["run"].as_str().unwrap();
        assert!(!run.contains("${{"), "an input pasted into a script: {run}");
        let script = run.trim_matches('"').replace("$GITHUB_ACTION_PATH/", "");
        assert!(root().join(&script).exists(), "{script}");
    }

    // A release as GitHub serves it: <base>/<tag>/slipway-<target>.tar.gz and SHA256SUMS.
    let site = Scratch::new("release-site");
    let release = site.join("v9.9.9");
    std::fs::create_dir_all(&release).unwrap();
    let target = match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    };
    let tarball = format!("slipway-{target}.tar.gz");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(release.join(&tarball))
        .arg("-C")
        .arg(root().join("target/debug"))
        .arg("slipway")
        .status()
        .unwrap();
    assert!(tar.success());
    let sums = Command::new("sh")
        .args(["-c", "sha256sum ./*.tar.gz > SHA256SUMS"])
        .current_dir(&release)
        .status()
        .unwrap();
    assert!(sums.success());
    let server = FileServer::serve(&site);
    let install = |bin: &std::path::Path, path_file: &std::path::Path| {
        Command::new(root().join("scripts/install-cli"))
            .env("VERSION", "v9.9.9")
            .env("SLIPWAY_DOWNLOAD_BASE", &server.url)
            .env("BIN_DIR", bin)
            .env("GITHUB_PATH", path_file)
            .output()
            .unwrap()
    };
    let home = Scratch::new("action-home");
    let (bin, path_file) = (home.join("bin"), home.join("github-path"));
    let out = install(&bin, &path_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = Command::new(bin.join("slipway"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("deploy"),
        "the CLI runs"
    );
    assert_eq!(
        std::fs::read_to_string(&path_file).unwrap().trim(),
        bin.to_str().unwrap()
    );
    // A tarball that is not the one SHA256SUMS names is not installed.
    std::fs::write(release.join(&tarball), b"not the release's").unwrap();
    let other = home.join("other-bin");
    let out = install(&other, &home.join("other-path"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SHA256SUMS says") && err.contains("not installing it"),
        "{err}"
    );
    assert!(!other.join("slipway").exists());
    // An unknown release says so.
    let out = Command::new(root().join("scripts/install-cli"))
        .env("VERSION", "v0.0.0-none")
        .env("SLIPWAY_DOWNLOAD_BASE", &server.url)
        .env("BIN_DIR", &other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot download"));

    // The deploy step: the inputs become flags (a stand-in slipway prints them).
    let fake = home.join("print-args");
    std::fs::write(&fake, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n").unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    assert!(chmod.success());
    let out = Command::new(root().join("scripts/action-deploy"))
        .env("SLIPWAY", &fake)
        .env("ENVIRONMENT", "staging")
        .env("TAG", "3f2a1bc")
        .env("SERVICES", "api, web *")
        .env("REASON", "")
        .env("FOLLOW_TIMEOUT", "600")
        .env("GITHUB_SHA", "3f2a1bc0")
        .env("GITHUB_WORKFLOW", "deploy-staging")
        .env("GITHUB_RUN_ID", "42")
        .env("GITHUB_ACTOR", "octo")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        args,
        [
            "deploy",
            "--environment",
            "staging",
            "--tag",
            "3f2a1bc",
            "--follow",
            "--follow-timeout",
            "600",
            "--commit",
            "3f2a1bc0",
            "--service",
            "api",
            "--service",
            "web",
            "--service",
            "*",
            "--reason",
            "deploy-staging run 42 by octo"
        ]
    );
}
