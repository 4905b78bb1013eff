//! The reference app's files stay valid: its CloudFormation templates pass cfn-lint, and
//! its slipway.toml parses (the demo deploys both on the test bed).

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
