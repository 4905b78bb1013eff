//! `slipway bootstrap` and `slipway uninstall`: the orchestrator's stack in an account.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::error::ProvideErrorMetadata as _;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use sha2::{Digest, Sha256};
use slipway_core::config::Config;

use crate::template::{self, FUNCTIONS};

/// What `bootstrap` needs besides the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prebuilt zips (`<function>.zip`); when absent, `cargo lambda build` makes them.
    pub artifacts: Option<PathBuf>,
    /// A Slipway release whose zips to download (instead of `artifacts`).
    pub artifacts_version: Option<String>,
    /// Region override (else the credentials' configuration).
    pub region: Option<String>,
    /// Account override (else STS says whose the credentials are).
    pub account: Option<String>,
    /// Template options (GitHub OIDC, SNS topic, the health check's VPC) as given; what is
    /// not given is kept from the installed stack, unless `drop` says to drop it.
    pub template: template::Options,
    /// Stored options to drop.
    pub drop: template::DropOptions,
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

    let clients = slipway_core::aws::Clients::new(&conf, stack_name(&config.environment));
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let stack = stack_name(&config.environment);
    let (mut template_options, mut kept) = match stored_options(&cfn, &stack).await? {
        Some(stored) => options.template.keeping(&stored, options.drop),
        None => (options.template.clone(), Vec::new()),
    };
    if config.notifications.sns_topic_arn.is_some() {
        if options.template.create_topic {
            say("warning: --create-topic ignored: slipway.toml names notifications.sns_topic_arn");
        } else if template_options.create_topic {
            say(format!(
                "warning: the topic slipway-{} that --create-topic made is deleted, with its subscriptions: slipway.toml now names notifications.sns_topic_arn",
                config.environment
            ));
        }
        template_options.create_topic = false;
        kept.retain(|k| k != "--create-topic");
    }
    if !kept.is_empty() {
        say(format!(
            "keeping the installed options: {} (--no-github, --no-topic or --no-health-check-vpc drops them)",
            kept.join(" ")
        ));
    }
    let read = task_definitions(&clients, &config, &account, &region).await?;
    template_options.task_families = read.families;
    template_options.task_roles = read.roles;
    template_options.task_log_groups = read.log_groups;
    say(format!(
        "update-services may register {} and pass {}",
        template_options.task_families.join(", "),
        if template_options.task_roles.is_empty() {
            "no role".to_owned()
        } else {
            template_options.task_roles.join(", ")
        }
    ));

    // The template first: a configuration it cannot be made from stops here, before any
    // build or upload.
    let made = template::template(&config, &template_options);
    template::check_policy_sizes(&made, &config)?;
    let body = serde_json::to_string(&made).map_err(|e| e.to_string())?;
    if body.len() > MAX_TEMPLATE_URL_OBJECT {
        return Err(format!(
            "the template is {} bytes, over CloudFormation's {MAX_TEMPLATE_URL_OBJECT} for a template in S3: configure fewer services or stacks per environment",
            body.len()
        ));
    }
    let downloaded = match &options.artifacts_version {
        Some(version) => Some(download(version).await?),
        None => None,
    };
    let zips = artifacts(downloaded.as_deref().or(options.artifacts.as_deref()));
    // The downloaded release is read (and checked) into memory: its directory goes, whatever
    // the check said, rather than leaving hundreds of MB in the temporary directory.
    if let Some(dir) = &downloaded {
        let _ = std::fs::remove_dir_all(dir);
    }
    let zips = zips?;
    let mut hash = Sha256::new();
    for (_, bytes) in &zips {
        hash.update(bytes);
    }
    let digest = hex(&hash.finalize()[..8]);
    let prefix = format!("{}/{digest}/", config.environment);
    let bucket = format!("slipway-{account}-{region}");
    let versions = upload(&conf, &bucket, &account, &region, &prefix, &zips).await?;
    let template_url = upload_template(
        &conf,
        &bucket,
        &account,
        &region,
        &config.environment,
        &body,
    )
    .await?;
    let mut params = vec![
        Parameter::builder()
            .parameter_key("ArtifactBucket")
            .parameter_value(&bucket)
            .build(),
        Parameter::builder()
            .parameter_key("ArtifactPrefix")
            .parameter_value(&prefix)
            .build(),
    ];
    for ((_, stem, _), version) in FUNCTIONS.iter().zip(&versions) {
        params.push(
            Parameter::builder()
                .parameter_key(template::code_version_parameter(stem))
                .parameter_value(version)
                .build(),
        );
    }
    let exists = match cfn.describe_stacks().stack_name(&stack).send().await {
        Ok(out) => out
            .stacks()
            .first()
            .is_some_and(|s| s.stack_status() != Some(&StackStatus::DeleteComplete)),
        // DescribeStacks of a missing stack: ValidationError "Stack with id … does not exist".
        Err(e)
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist")) =>
        {
            false
        }
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
            .template_url(&template_url)
            .set_parameters(Some(params))
            .capabilities(Capability::CapabilityIam)
            .send()
            .await;
        match result {
            Ok(_) => true,
            // UpdateStack with nothing to change: ValidationError "No updates are to be
            // performed." (UpdateStack API reference).
            Err(e)
                if e.code() == Some("ValidationError")
                    && e.message()
                        .is_some_and(|m| m.contains("No updates are to be performed")) =>
            {
                false
            }
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
            .template_url(&template_url)
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
        wait(&cfn, &stack, seen, options.poll_seconds)
            .await
            .map_err(|e| {
                if e.contains("GitHubOidcProvider") {
                    format!("{e} (the account already has GitHub's OIDC provider? pass --github-oidc-provider arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com)")
                } else {
                    e
                }
            })?;
    } else {
        say(format!("stack {stack}: no changes"));
    }

    let out = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cloudformation:DescribeStacks {stack}: {}",
                crate::run::sdk_error(&e)
            )
        })?;
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
    let clients = slipway_core::aws::Clients {
        table: installed.table.clone(),
        ..clients
    };
    slipway_core::state::store_config(&clients, &text)
        .await
        .map_err(|e| format!("storing the configuration: {e}"))?;
    say(format!("configuration stored in {}", installed.table));
    Ok(installed)
}

/// Where Slipway's releases are downloaded from: `SLIPWAY_DOWNLOAD_BASE` (the tests serve one
/// on 127.0.0.1), else the GitHub releases of the repository.
fn download_base() -> String {
    std::env::var("SLIPWAY_DOWNLOAD_BASE")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "https://github.com/slipway-deploy/slipway/releases/download".into())
}

/// Downloads release `version`'s seven zips and SHA256SUMS into a fresh directory (checked
/// by [`artifacts`] before anything is uploaded); returns it.
async fn download(version: &str) -> Result<PathBuf, String> {
    let ok = version.starts_with('v')
        && version.len() > 1
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if !ok {
        return Err(format!(
            "--artifacts-version {version:?}: expected a release tag such as v1.2.3"
        ));
    }
    let base = format!("{}/{version}", download_base());
    // A directory of our own: created here (an existing one, which someone else could have
    // prepared, is refused), named by the process and the moment.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "slipway-artifacts-{version}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let fetched = fetch_release(&base, version, &dir).await;
    if fetched.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    fetched.map(|()| dir)
}

/// Downloads the seven zips and SHA256SUMS of the release at `base` into `dir`.
async fn fetch_release(base: &str, version: &str, dir: &Path) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| format!("an HTTP client: {e}"))?;
    let names: Vec<String> = FUNCTIONS
        .iter()
        .map(|(name, _, _)| format!("{name}.zip"))
        .chain(std::iter::once("SHA256SUMS".to_owned()))
        .collect();
    say(format!(
        "downloading release {version}'s functions from {base}"
    ));
    for name in names {
        let url = format!("{base}/{name}");
        let bytes = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot download {url}: {e} (is {version} a Slipway release?)"))?
            .bytes()
            .await
            .map_err(|e| format!("cannot download {url}: {e}"))?;
        std::fs::write(dir.join(&name), &bytes)
            .map_err(|e| format!("{}: {e}", dir.join(&name).display()))?;
    }
    Ok(())
}

/// Builds the seven functions (and nothing else of the workspace) as arm64 Lambda zips with
/// `cargo lambda build`, saying how long it took; without cargo-lambda, says how to get it.
fn build_functions() -> Result<(), String> {
    const INSTALL: &str = "install cargo-lambda (`pip install cargo-lambda`, which brings zig for the arm64 cross build, or see https://www.cargo-lambda.info/guide/installation.html), or pass --artifacts DIR with a release's zips";
    let found = std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match found {
        Err(e) => return Err(format!("cannot run cargo ({e}): {INSTALL}")),
        Ok(status) if !status.success() => {
            return Err(format!("`cargo lambda` is not installed: {INSTALL}"))
        }
        Ok(_) => {}
    }
    let mut args: Vec<&str> = vec![
        "lambda",
        "build",
        "--release",
        "--arm64",
        "--output-format",
        "zip",
    ];
    for (name, _, _) in FUNCTIONS {
        args.extend(["--package", name]);
    }
    say(format!(
        "building the seven functions: cargo {} (from cold, a release build of the AWS SDK takes many minutes)",
        args.join(" ")
    ));
    let started = std::time::Instant::now();
    let status = std::process::Command::new("cargo")
        .args(&args)
        .status()
        .map_err(|e| format!("cannot run cargo lambda ({e}): {INSTALL}"))?;
    if !status.success() {
        return Err("cargo lambda build failed (run bootstrap from the Slipway repository, or pass --artifacts DIR with a release's zips)".into());
    }
    say(format!(
        "built the seven functions in {} s",
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// `<function>.zip` for every function: from `dir`, or built with `cargo lambda build`.
fn artifacts(dir: Option<&Path>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let options_dir_given = dir.is_some();
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            build_functions()?;
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
    let zips: Vec<(String, Vec<u8>)> = FUNCTIONS
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
        .collect::<Result<_, _>>()?;
    if options_dir_given {
        verify_sums(&dir, &zips)?;
    }
    Ok(zips)
}

/// Checks release zips against the `SHA256SUMS` beside them (as the release workflow writes
/// it: `sha256sum ./*.zip`): every step's zip listed, every digest equal.
fn verify_sums(dir: &Path, zips: &[(String, Vec<u8>)]) -> Result<(), String> {
    let path = dir.join("SHA256SUMS");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (a release's zips come with SHA256SUMS; for zips of your own build, write it with `sha256sum ./*.zip > SHA256SUMS`)",
            path.display()
        )
    })?;
    let mut sums = std::collections::HashMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let parsed = line.split_once(' ').and_then(|(hex, name)| {
            let name = name.trim_start_matches([' ', '*']).trim_start_matches("./");
            (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (name.to_owned(), hex.to_ascii_lowercase()))
        });
        let (name, hex) = parsed.ok_or_else(|| {
            format!(
                "{}:{}: expected `<sha256 hex>  <file>`, got {line:?}",
                path.display(),
                n + 1
            )
        })?;
        sums.insert(name, hex);
    }
    for (name, bytes) in zips {
        let file = format!("{name}.zip");
        let want = sums
            .get(&file)
            .ok_or_else(|| format!("{}: no digest for {file}", path.display()))?;
        let got = hex(&Sha256::digest(bytes));
        if &got != want {
            return Err(format!(
                "{}: {file} has sha256 {got}, SHA256SUMS says {want}: not uploading a zip that is not the release's",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The task definition families update-services may register, and the roles it may pass to
/// ECS: those of each configured service's current task definition (a release registers a
/// copy of it, in its family, with its task and execution roles).
async fn task_definitions(
    clients: &slipway_core::aws::Clients,
    config: &Config,
    account: &str,
    region: &str,
) -> Result<TaskDefinitions, String> {
    let mut families = std::collections::BTreeSet::new();
    let mut roles = std::collections::BTreeSet::new();
    let mut log_groups = std::collections::BTreeSet::new();
    for service in &config.services {
        let out = clients
            .ecs
            .describe_services()
            .cluster(&config.cluster)
            .services(service.ecs_service())
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|e| e.is_cluster_not_found_exception()) {
                    format!(
                        "cluster {} not found: create the cluster and its services before bootstrap (it reads their task and execution roles, the only roles Slipway may pass)",
                        config.cluster
                    )
                } else {
                    format!(
                        "ecs:DescribeServices {} (cluster {}): {}",
                        service.ecs_service(),
                        config.cluster,
                        aws_sdk_ecs::error::DisplayErrorContext(&e)
                    )
                }
            })?;
        let td = out
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
            .and_then(|s| s.task_definition())
            .ok_or_else(|| {
                format!(
                    "service {} ({} in cluster {}) not found: create the services before bootstrap (it reads their task and execution roles, the only roles Slipway may pass)",
                    service.name,
                    service.ecs_service(),
                    config.cluster
                )
            })?;
        if let Some(d) = describe_task_definition(&clients.ecs, td).await? {
            families.extend(d.family().map(str::to_owned));
            roles.extend(d.task_role_arn().map(str::to_owned));
            roles.extend(d.execution_role_arn().map(str::to_owned));
            for c in d.container_definitions() {
                let awslogs = c
                    .log_configuration()
                    .filter(|l| l.log_driver().as_str() == "awslogs");
                log_groups.extend(
                    awslogs
                        .and_then(|l| l.options())
                        .and_then(|o| o.get("awslogs-group"))
                        .cloned(),
                );
            }
        }
    }
    // A role given by name alone (ECS accepts one) is this account's role of that name.
    let roles = roles
        .into_iter()
        .map(|r| {
            if r.starts_with("arn:") {
                r
            } else {
                format!("arn:{}:iam::{account}:role/{r}", partition(region))
            }
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(TaskDefinitions {
        families: families.into_iter().collect(),
        roles,
        log_groups: log_groups.into_iter().collect(),
    })
}

/// What the services' task definitions say that the template needs.
struct TaskDefinitions {
    families: Vec<String>,
    roles: Vec<String>,
    /// The CloudWatch Logs groups their containers write to (`awslogs`).
    log_groups: Vec<String>,
}

/// A task definition, as DescribeTaskDefinition answers it (`None` when it says nothing).
pub(crate) async fn describe_task_definition(
    ecs: &aws_sdk_ecs::Client,
    td: &str,
) -> Result<Option<aws_sdk_ecs::types::TaskDefinition>, String> {
    let out = ecs
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .map_err(|e| {
            format!(
                "ecs:DescribeTaskDefinition {td}: {}",
                aws_sdk_ecs::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(out.task_definition().cloned())
}

/// The partition of a region (`cn-*`: aws-cn, `us-gov-*`: aws-us-gov, else aws).
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
pub fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", p, "iam", "", account, rest]
        if p.starts_with("aws") && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && rest.strip_prefix("role/").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))))
}

/// `arn:PARTITION:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com`.
pub fn is_github_provider_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", p, "iam", "", account, rest]
        if p.starts_with("aws") && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && *rest == format!("oidc-provider/{}", template::GITHUB_OIDC_URL.trim_start_matches("https://")))
}

/// The options the installed stack was made with (read from its template); `None` when
/// there is no stack.
async fn stored_options(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<Option<template::Options>, String> {
    match cfn.get_template().stack_name(stack).send().await {
        Ok(out) => {
            let unreadable = |e: &dyn std::fmt::Display| {
                format!("stack {stack}: cannot read the options it was installed with ({e}): not changing it")
            };
            let body: serde_json::Value = serde_json::from_str(out.template_body().unwrap_or(""))
                .map_err(|e| unreadable(&e))?;
            template::Options::stored_in(&body)
                .map(Some)
                .map_err(|e| unreadable(&e))
        }
        // GetTemplate of a stack that does not exist: ValidationError "Stack with id X does
        // not exist" (as DescribeStacks answers it).
        Err(e)
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!(
            "cloudformation:GetTemplate {stack}: {}",
            aws_sdk_cloudformation::error::DisplayErrorContext(&e)
        )),
    }
}

/// CloudFormation's limits on a template: 51,200 bytes in `TemplateBody`, 1 MB from
/// `TemplateURL` (CreateStack API reference,
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html).
/// The template of a few services with a GitHub role and a topic is already over the first
/// (the staging example's is about 54 KB), so bootstrap always passes it by URL.
const MAX_TEMPLATE_URL_OBJECT: usize = 1024 * 1024;

/// Puts the template in the artifact bucket (named by its SHA-256, so a re-run with the same
/// template writes the same object) and returns the `TemplateURL` CloudFormation reads it
/// from (virtual-hosted style, the bucket's region).
async fn upload_template(
    conf: &SdkConfig,
    bucket: &str,
    account: &str,
    region: &str,
    environment: &str,
    body: &str,
) -> Result<String, String> {
    let key = format!(
        "{environment}/templates/{}.json",
        hex(&Sha256::digest(body.as_bytes())[..16])
    );
    aws_sdk_s3::Client::new(conf)
        .put_object()
        .bucket(bucket)
        .key(&key)
        .expected_bucket_owner(account)
        .content_type("application/json")
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .map_err(|e| {
            format!(
                "s3:PutObject {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
    // S3's regional endpoint; the China regions' domain is amazonaws.com.cn.
    let suffix = if partition(region) == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Ok(format!("https://{bucket}.s3.{region}.{suffix}/{key}"))
}

/// Makes sure the artifact bucket is this account's and hardened, and uploads the zips;
/// returns each zip's S3 version, in `zips`' order (the template pins them).
///
/// The name `slipway-<account>-<region>` is predictable, so every call carries
/// `ExpectedBucketOwner` (S3 answers 403 when another account owns the bucket: S3 User
/// Guide, "Verifying bucket ownership with bucket owner condition"). The bucket is versioned,
/// blocks public access and refuses requests without TLS (`aws:SecureTransport`), set on every
/// run so an older bucket gets them too. A zip already there with the same SHA-256 (S3's own
/// checksum) is not uploaded again, so an unchanged bootstrap stays a no-op.
async fn upload(
    conf: &SdkConfig,
    bucket: &str,
    account: &str,
    region: &str,
    prefix: &str,
    zips: &[(String, Vec<u8>)],
) -> Result<Vec<String>, String> {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, PublicAccessBlockConfiguration,
        VersioningConfiguration,
    };
    let s3 = aws_sdk_s3::Client::new(conf);
    let fail = |call: &str, e: &dyn std::fmt::Display| format!("s3:{call} {bucket}: {e}");
    match s3
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(account)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if status == Some(403) {
                return Err(format!(
                    "s3:HeadBucket {bucket}: 403: the bucket exists and another account owns it, or these credentials may not s3:ListBucket it: Slipway will not upload its functions there"
                ));
            }
            if status != Some(404) {
                return Err(fail(
                    "HeadBucket",
                    &aws_sdk_s3::error::DisplayErrorContext(&e),
                ));
            }
            let mut create = s3.create_bucket().bucket(bucket);
            if region != "us-east-1" {
                create = create.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region,
                        ))
                        .build(),
                );
            }
            create
                .send()
                .await
                .map_err(|e| fail("CreateBucket", &aws_sdk_s3::error::DisplayErrorContext(&e)))?;
            say(format!("created bucket {bucket}"));
        }
    }
    s3.put_public_access_block()
        .bucket(bucket)
        .expected_bucket_owner(account)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            fail(
                "PutPublicAccessBlock",
                &aws_sdk_s3::error::DisplayErrorContext(&e),
            )
        })?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .expected_bucket_owner(account)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            fail(
                "PutBucketVersioning",
                &aws_sdk_s3::error::DisplayErrorContext(&e),
            )
        })?;
    if slipway_core::TESTBED_BUILD {
        // moto (the test bed's S3) evaluates a bucket policy's Effect, Action and Resource
        // but not its Condition (moto/iam/access_control.py: "TODO add support for the
        // Resource and Condition parts"), so a TLS-only Deny would refuse every request.
        say("test-bed build: the bucket's TLS-only policy is left out (moto would apply its Deny without the condition)");
    } else {
        s3.put_bucket_policy()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .policy(bucket_policy(bucket, region).to_string())
            .send()
            .await
            .map_err(|e| {
                fail(
                    "PutBucketPolicy",
                    &aws_sdk_s3::error::DisplayErrorContext(&e),
                )
            })?;
    }

    let mut versions = Vec::new();
    for (name, bytes) in zips {
        let key = format!("{prefix}{name}.zip");
        let sha = base64_sha256(bytes);
        let existing = s3
            .head_object()
            .bucket(bucket)
            .key(&key)
            .expected_bucket_owner(account)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .ok()
            .filter(|h| h.checksum_sha256() == Some(sha.as_str()))
            .and_then(|h| h.version_id().map(str::to_owned));
        if let Some(version) = existing {
            versions.push(version);
            continue;
        }
        let put = s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .expected_bucket_owner(account)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(bytes.clone().into())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "s3:PutObject {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        let version = put.version_id().map(str::to_owned).ok_or_else(|| {
            format!("s3:PutObject {key}: no version id (is versioning enabled on {bucket}?)")
        })?;
        say(format!(
            "uploaded s3://{bucket}/{key} ({} KiB, version {version})",
            bytes.len() / 1024
        ));
        versions.push(version);
    }
    Ok(versions)
}

/// The artifact bucket's policy: no request without TLS (S3 User Guide, "Security best
/// practices for Amazon S3": deny when `aws:SecureTransport` is false).
pub fn bucket_policy(bucket: &str, region: &str) -> serde_json::Value {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, format!("{arn}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, base64 (as S3's `ChecksumSHA256`).
fn base64_sha256(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = Sha256::digest(bytes);
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
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
            .map_err(|e| {
                format!(
                    "cloudformation:DescribeStacks {stack}: {}",
                    crate::run::sdk_error(&e)
                )
            })?;
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
) -> Result<(), String> {
    use aws_sdk_cloudformation::client::Waiters as _;
    let conf = sdk(region).await?;
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let stack = stack_name(environment);
    match cfn.describe_stacks().stack_name(&stack).send().await {
        // DescribeStacks of a missing stack: ValidationError "Stack with id … does not exist"
        // (its only documented error is the generic one, so the message tells).
        Err(e)
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist")) =>
        {
            say(format!("stack {stack} does not exist"))
        }
        Err(e) => {
            return Err(format!(
                "cloudformation:DescribeStacks {stack}: {}",
                crate::run::sdk_error(&e)
            ))
        }
        Ok(_) => {
            cfn.delete_stack()
                .stack_name(&stack)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "cloudformation:DeleteStack {stack}: {}",
                        crate::run::sdk_error(&e)
                    )
                })?;
            // The SDK's StackDeleteComplete waiter: done on DELETE_COMPLETE (or once the stack
            // is gone), failed on DELETE_FAILED.
            cfn.wait_until_stack_delete_complete()
                .stack_name(&stack)
                .wait(Duration::from_secs(3600))
                .await
                .map_err(|e| {
                    format!(
                        "stack {stack} was not deleted: {}; see its events (aws cloudformation describe-stack-events --stack-name {stack})",
                        aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                    )
                })?;
            say(format!("stack {stack} deleted"));
        }
    }
    let table = stack_name(environment);
    if delete_data {
        let ddb = aws_sdk_dynamodb::Client::new(&conf);
        match ddb.delete_table().table_name(&table).send().await {
            Ok(_) => say(format!("table {table} deleted")),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                say(format!("table {table} does not exist"))
            }
            Err(e) => {
                return Err(format!(
                    "dynamodb:DeleteTable {table}: {}",
                    crate::run::sdk_error(&e)
                ))
            }
        }
    } else {
        say(format!(
            "table {table} kept (its deployment history); --delete-data removes it"
        ));
    }
    say(format!(
        "kept: the artifact bucket slipway-<account>-{}'s {environment}/ objects, the log groups of the functions and the state machine, and the GitHub OIDC provider if the stack created one",
        conf.region().map(ToString::to_string).unwrap_or_default()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refuses_requests_without_tls_in_its_partition() {
        let policy = bucket_policy("slipway-123456789012-cn-north-1", "cn-north-1");
        let s = &policy["Statement"][0];
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Principal"], "*");
        assert_eq!(s["Action"], "s3:*");
        assert_eq!(
            s["Resource"],
            serde_json::json!([
                "arn:aws-cn:s3:::slipway-123456789012-cn-north-1",
                "arn:aws-cn:s3:::slipway-123456789012-cn-north-1/*"
            ])
        );
        assert_eq!(s["Condition"]["Bool"]["aws:SecureTransport"], "false");
    }

    #[test]
    fn checksums_are_s3s_base64_sha256() {
        // sha256("") and sha256("abc"), base64 (as `openssl dgst -sha256 -binary | base64`).
        assert_eq!(
            base64_sha256(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            base64_sha256(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn sums_must_name_every_zip_with_its_digest() {
        let dir = std::env::temp_dir().join(format!("slipway-sums-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zips = vec![("plan".to_owned(), b"abc".to_vec())];
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        std::fs::write(dir.join("SHA256SUMS"), format!("{abc}  ./plan.zip\n")).unwrap();
        assert_eq!(verify_sums(&dir, &zips), Ok(()));
        std::fs::write(dir.join("SHA256SUMS"), format!("{abc} *other.zip\n")).unwrap();
        assert!(verify_sums(&dir, &zips)
            .unwrap_err()
            .contains("no digest for plan.zip"));
        std::fs::write(dir.join("SHA256SUMS"), "not a line\n").unwrap();
        assert!(verify_sums(&dir, &zips)
            .unwrap_err()
            .contains("SHA256SUMS:1: expected"));
        std::fs::remove_file(dir.join("SHA256SUMS")).unwrap();
        assert!(verify_sums(&dir, &zips)
            .unwrap_err()
            .contains("sha256sum ./*.zip > SHA256SUMS"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn role_and_provider_arns() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/path/app-task"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:role/*"));
        assert!(!is_role_arn("arn:aws:iam::12345:role/x"));
        assert!(is_github_provider_arn(
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
        ));
        assert!(!is_github_provider_arn(
            "arn:aws:iam::123456789012:oidc-provider/example.com"
        ));
    }
}
