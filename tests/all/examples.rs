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
