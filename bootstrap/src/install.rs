//! `slipway bootstrap` and `slipway uninstall`: the orchestrator's stack in an account.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use sha2::{Digest, Sha256};
use slipway_core::config::Config;

use crate::template::{self, FUNCTIONS};

/// What `bootstrap` needs besides the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prebuilt zips (`<function>.zip`); when absent, `cargo lambda build` makes them.
    pub artifacts: Option<PathBuf>,
    /// Region override (else the credentials' configuration).
    pub region: Option<String>,
    /// Account override (else STS says whose the credentials are).
    pub account: Option<String>,
    /// Template options (GitHub OIDC, SNS topic).
    pub template: template::Options,
    /// Seconds between looks at the stack while it changes.
    pub poll_seconds: u64,
}

/// What an installation is, once bootstrapped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// The stack.
    pub stack: String,
    /// The state machine.
    pub state_machine_arn: String,
    /// The state table.
    pub table: String,
    /// The GitHub deploy role, when one was asked for.
    pub github_role_arn: Option<String>,
    /// Whether this run changed anything.
    pub changed: bool,
}

/// The stack name of an environment.
pub fn stack_name(environment: &str) -> String {
    format!("slipway-{environment}")
}

pub(crate) async fn sdk(region: Option<&str>) -> Result<SdkConfig, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    let conf = loader.load().await;
    if conf.region().is_none() {
        return Err(
            "no AWS region: set AWS_REGION (or a profile's region), or pass --region".into(),
        );
    }
    Ok(conf)
}

fn say(text: impl AsRef<str>) {
    eprintln!("{}", text.as_ref());
}

/// Installs or updates the orchestrator for `config`; idempotent ("no changes" is success).
pub async fn bootstrap(config_path: &Path, options: &Options) -> Result<Installed, String> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config =
        Config::parse(&text, &config_path.display().to_string()).map_err(|e| e.to_string())?;
    for (field, message) in config.warnings() {
        say(format!(
            "warning: {}: {field}: {message}",
            config_path.display()
        ));
    }
    let conf = sdk(options.region.as_deref()).await?;
    let region = conf.region().map(ToString::to_string).unwrap_or_default();
    let account = match &options.account {
        Some(a) => a.clone(),
        None => aws_sdk_sts::Client::new(&conf)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                format!(
                    "no usable AWS credentials ({}): configure them (aws configure, AWS_PROFILE, or OIDC in CI) and run again",
                    aws_sdk_sts::error::DisplayErrorContext(&e)
                )
            })?
            .account()
            .unwrap_or_default()
            .to_owned(),
    };
    say(format!(
        "account {account}, region {region}, environment {}",
        config.environment
    ));

    let zips = artifacts(options.artifacts.as_deref())?;
    let mut hash = Sha256::new();
    for (_, bytes) in &zips {
        hash.update(bytes);
    }
    let digest: String = hash
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix = format!("{}/{digest}/", config.environment);
    let bucket = format!("slipway-{account}-{region}");
    upload(&conf, &bucket, &region, &prefix, &zips).await?;

    let body = serde_json::to_string(&template::template(&config, &options.template))
        .map_err(|e| e.to_string())?;
    let stack = stack_name(&config.environment);
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let params = vec![
        Parameter::builder()
            .parameter_key("ArtifactBucket")
            .parameter_value(&bucket)
            .build(),
        Parameter::builder()
            .parameter_key("ArtifactPrefix")
            .parameter_value(&prefix)
            .build(),
    ];
    let exists = match cfn.describe_stacks().stack_name(&stack).send().await {
        Ok(out) => out
            .stacks()
            .first()
            .is_some_and(|s| s.stack_status() != Some(&StackStatus::DeleteComplete)),
        Err(e) if format!("{e:?}").contains("does not exist") => false,
        Err(e) => {
            return Err(format!(
                "cloudformation:DescribeStacks {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(&e)
            ))
        }
    };
    let seen = seen_events(&cfn, &stack).await;
    let changed = if exists {
        let result = cfn
            .update_stack()
            .stack_name(&stack)
            .template_body(&body)
            .set_parameters(Some(params))
            .capabilities(Capability::CapabilityIam)
            .send()
            .await;
        match result {
            Ok(_) => true,
            Err(e) if format!("{e:?}").contains("No updates are to be performed") => false,
            Err(e) => {
                return Err(format!(
                    "cloudformation:UpdateStack {stack}: {}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                ))
            }
        }
    } else {
        cfn.create_stack()
            .stack_name(&stack)
            .template_body(&body)
            .set_parameters(Some(params))
            .capabilities(Capability::CapabilityIam)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cloudformation:CreateStack {stack}: {}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                )
            })?;
        true
    };
    if changed {
        say(format!(
            "stack {stack}: {}",
            if exists { "updating" } else { "creating" }
        ));
        wait(&cfn, &stack, seen, options.poll_seconds).await?;
    } else {
        say(format!("stack {stack}: no changes"));
    }

    let out = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let output = |key: &str| {
        out.stacks()
            .first()
            .and_then(|s| s.outputs().iter().find(|o| o.output_key() == Some(key)))
            .and_then(|o| o.output_value())
            .map(str::to_owned)
    };
    let installed = Installed {
        stack: stack.clone(),
        state_machine_arn: output("StateMachineArn")
            .ok_or("the stack has no StateMachineArn output")?,
        table: output("StateTableName").ok_or("the stack has no StateTableName output")?,
        github_role_arn: output("GitHubDeployRoleArn"),
        changed,
    };
    let clients = slipway_core::aws::Clients::new(&conf, installed.table.clone());
    slipway_core::state::store_config(&clients, &text)
        .await
        .map_err(|e| format!("storing the configuration: {e}"))?;
    say(format!("configuration stored in {}", installed.table));
    Ok(installed)
}

/// `<function>.zip` for every function: from `dir`, or built with `cargo lambda build`.
fn artifacts(dir: Option<&Path>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            say("building the functions: cargo lambda build --release --arm64 --output-format zip");
            let status = std::process::Command::new("cargo")
                .args(["lambda", "build", "--release", "--arm64", "--output-format", "zip", "--workspace", "--bins"])
                .status()
                .map_err(|e| format!("cannot run cargo lambda ({e}): install it (pip install cargo-lambda) or pass --artifacts DIR with the release's zips"))?;
            if !status.success() {
                return Err("cargo lambda build failed (run it from the Slipway repository, or pass --artifacts DIR with the release's zips)".into());
            }
            let staged = PathBuf::from("target/lambda/slipway-artifacts");
            std::fs::create_dir_all(&staged).map_err(|e| e.to_string())?;
            for (name, _, _) in FUNCTIONS {
                std::fs::copy(
                    format!("target/lambda/{name}/bootstrap.zip"),
                    staged.join(format!("{name}.zip")),
                )
                .map_err(|e| format!("target/lambda/{name}/bootstrap.zip: {e}"))?;
            }
            staged
        }
    };
    FUNCTIONS
        .iter()
        .map(|(name, _, _)| {
            let path = dir.join(format!("{name}.zip"));
            std::fs::read(&path)
                .map(|bytes| ((*name).to_owned(), bytes))
                .map_err(|e| {
                    format!(
                        "{}: {e} (the artifacts directory needs one <function>.zip per step)",
                        path.display()
                    )
                })
        })
        .collect()
}

async fn upload(
    conf: &SdkConfig,
    bucket: &str,
    region: &str,
    prefix: &str,
    zips: &[(String, Vec<u8>)],
) -> Result<(), String> {
    let s3 = aws_sdk_s3::Client::new(conf);
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        let mut create = s3.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        create.send().await.map_err(|e| {
            format!(
                "s3:CreateBucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
        say(format!("created bucket {bucket}"));
    }
    for (name, bytes) in zips {
        let key = format!("{prefix}{name}.zip");
        if s3
            .head_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .is_ok()
        {
            continue; // content-addressed: already there
        }
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(bytes.clone().into())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "s3:PutObject {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        say(format!(
            "uploaded s3://{bucket}/{key} ({} KiB)",
            bytes.len() / 1024
        ));
    }
    Ok(())
}

async fn seen_events(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> HashSet<String> {
    match cfn.describe_stack_events().stack_name(stack).send().await {
        Ok(out) => out
            .stack_events()
            .iter()
            .filter_map(|e| e.event_id().map(str::to_owned))
            .collect(),
        Err(_) => HashSet::new(),
    }
}

/// Waits until the stack settles, printing its new events; a rollback or failure is an error
/// naming the failed resources.
async fn wait(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    mut seen: HashSet<String>,
    poll: u64,
) -> Result<(), String> {
    let mut failures = Vec::new();
    loop {
        if let Ok(out) = cfn.describe_stack_events().stack_name(stack).send().await {
            let mut new: Vec<_> = out
                .stack_events()
                .iter()
                .filter(|e| e.event_id().is_some_and(|id| !seen.contains(id)))
                .collect();
            new.reverse();
            for e in new {
                seen.insert(e.event_id().unwrap_or_default().to_owned());
                let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
                let reason = e
                    .resource_status_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default();
                say(format!(
                    "  {} {status}{reason}",
                    e.logical_resource_id().unwrap_or_default()
                ));
                if status.ends_with("_FAILED") {
                    failures.push(format!(
                        "{}: {}",
                        e.logical_resource_id().unwrap_or_default(),
                        e.resource_status_reason().unwrap_or_default()
                    ));
                }
            }
        }
        let out = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = out
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if status.ends_with("_IN_PROGRESS") {
            tokio::time::sleep(Duration::from_secs(poll)).await;
            continue;
        }
        if status.contains("ROLLBACK") || status.ends_with("_FAILED") {
            return Err(format!(
                "stack {stack} ended {status}; failed: {}",
                failures.join("; ")
            ));
        }
        say(format!("stack {stack}: {status}"));
        return Ok(());
    }
}

/// Removes the stack; with `delete_data`, the state table (kept by the stack) too.
pub async fn uninstall(
    environment: &str,
    region: Option<&str>,
    delete_data: bool,
    poll: u64,
) -> Result<(), String> {
    let conf = sdk(region).await?;
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let stack = stack_name(environment);
    match cfn.describe_stacks().stack_name(&stack).send().await {
        Err(e) if format!("{e:?}").contains("does not exist") => {
            say(format!("stack {stack} does not exist"))
        }
        Err(e) => {
            return Err(format!(
                "cloudformation:DescribeStacks {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(&e)
            ))
        }
        Ok(_) => {
            cfn.delete_stack()
                .stack_name(&stack)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            loop {
                match cfn.describe_stacks().stack_name(&stack).send().await {
                    Ok(out)
                        if out.stacks().first().and_then(|s| s.stack_status())
                            == Some(&StackStatus::DeleteInProgress) =>
                    {
                        tokio::time::sleep(Duration::from_secs(poll)).await;
                    }
                    Ok(out)
                        if out.stacks().first().and_then(|s| s.stack_status())
                            == Some(&StackStatus::DeleteFailed) =>
                    {
                        return Err(format!("stack {stack}: DELETE_FAILED"));
                    }
                    _ => break,
                }
            }
            say(format!("stack {stack} deleted"));
        }
    }
    let table = stack_name(environment);
    if delete_data {
        let ddb = aws_sdk_dynamodb::Client::new(&conf);
        match ddb.delete_table().table_name(&table).send().await {
            Ok(_) => say(format!("table {table} deleted")),
            Err(e) if format!("{e:?}").contains("ResourceNotFound") => {
                say(format!("table {table} does not exist"))
            }
            Err(e) => {
                return Err(format!(
                    "dynamodb:DeleteTable {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                ))
            }
        }
    } else {
        say(format!(
            "table {table} kept (its deployment history); --delete-data removes it"
        ));
    }
    Ok(())
}
