//! The reference app's files stay valid: its CloudFormation templates pass cfn-lint, and
//! its slipway.toml parses (the demo deploys both on the test bed); Slipway's own template
//! for it passes cfn-lint and checkov. (Here rather than in the CLI's tests: these linters
//! take minutes, and this binary's tests run beside the long scenarios.)

use std::process::Command;

use slipway_tests::root;

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
    let slipway = Command::new(root().join("target/debug/slipway"))
        .current_dir(root())
        .args([
            "template",
            "--config",
            "examples/staging/slipway.toml",
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
    let dir = std::env::temp_dir().join(format!("slipway-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
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
