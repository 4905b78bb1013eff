//! The `slipway` command line.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod history;
mod init;
mod install;
mod plan;
mod rollback;
mod run;
mod shared;
mod template;

use shared::{outln, Exit, Failure, Installation};
use slipway_core::why;

/// Slipway: deploy ECS Fargate services on every ECR push, through AWS Step Functions.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a starting slipway.toml to stdout from an existing cluster: its services, their
    /// containers, ECR repositories and target groups, and health checks from the load
    /// balancer's listener rules (it passes check-config as it is).
    Init(init::Args),
    /// Install (or update) Slipway for an environment: upload the functions, create or update
    /// its stack (no changes is success), store the configuration; prints the state machine
    /// ARN and what a GitHub workflow needs.
    Bootstrap {
        /// The environment's configuration.
        #[arg(long)]
        config: PathBuf,
        /// A directory with the functions' zips (`<function>.zip`, as a release ships them);
        /// without it (or --artifacts-version) they are built with `cargo lambda build --arm64`.
        #[arg(long, conflicts_with = "artifacts_version")]
        artifacts: Option<PathBuf>,
        /// Download the functions' zips of this Slipway release (vX.Y.Z) from its GitHub
        /// release, checked against its SHA256SUMS: no Rust toolchain needed.
        #[arg(long)]
        artifacts_version: Option<String>,
        /// The region (default: from the credentials' configuration).
        #[arg(long)]
        region: Option<String>,
        /// The account (default: whose the credentials are, from STS).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        github: GitHubArgs,
        /// Create an SNS topic for notifications (when the configuration names none).
        #[arg(long, conflicts_with = "no_topic")]
        create_topic: bool,
        #[command(flatten)]
        vpc: VpcArgs,
        /// Drop the GitHub deploy role an earlier bootstrap installed (a re-run without
        /// --github-repository keeps it).
        #[arg(long, conflicts_with = "github_repository")]
        no_github: bool,
        /// Drop the topic an earlier --create-topic made (a re-run keeps it).
        #[arg(long)]
        no_topic: bool,
        /// Take the health-check function out of the VPC an earlier bootstrap put it in (a
        /// re-run without --health-check-subnet keeps it there).
        #[arg(long, conflicts_with = "health_check_subnets")]
        no_health_check_vpc: bool,
        /// Seconds between looks at the stack while it changes.
        #[arg(long, default_value_t = 5)]
        poll_seconds: u64,
        /// Print the installation as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Start a release (the manual input); with --follow, show each step until it ends and
    /// exit 0 only if it succeeded.
    Deploy {
        #[command(flatten)]
        installation: Installation,
        /// A service to deploy (repeat for more); none: every service.
        #[arg(long = "service")]
        services: Vec<String>,
        /// The image tag to deploy.
        #[arg(long, required_unless_present = "digest", conflicts_with = "digest")]
        tag: Option<String>,
        /// The image digest to deploy (sha256:…).
        #[arg(long)]
        digest: Option<String>,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
        /// The commit the image was built from.
        #[arg(long)]
        commit: Option<String>,
        /// Follow the execution until it ends.
        #[arg(long)]
        follow: bool,
        /// Stop following after this many seconds (the execution goes on).
        #[arg(long, default_value_t = 3600)]
        follow_timeout: u64,
        /// Machine-readable output on stdout.
        #[arg(long)]
        json: bool,
    },
    /// An execution's status, or the latest executions of the environment's state machine.
    Status {
        /// The execution ARN; none: list the latest executions. When it failed, what ECS
        /// says about why (with the environment's state table).
        execution: Option<String>,
        /// A recorded release instead (its id, as `history` shows it): its record and, when
        /// it failed, why.
        #[arg(long, conflicts_with = "execution")]
        release: Option<String>,
        #[command(flatten)]
        installation: Installation,
        /// Machine-readable output on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show past deployments, newest first, from the state table.
    History(history::Args),
    /// The dry run: what a release of an image (or an execution input) would do — each
    /// service's image now and after, each stack's parameter changes — read from the account,
    /// changing nothing.
    Plan(plan::Args),
    /// Put services back on the images they ran before their current release (or on those
    /// of --to RELEASE), through a normal release by digest.
    Rollback(rollback::Args),
    /// Check an execution input (an ECR event or the manual form) and print what it asks for,
    /// exactly as the plan step will read it.
    CheckInput {
        /// The input file; `-` reads standard input.
        file: PathBuf,
    },
    /// Print a JSON Schema: of the execution input, or of slipway.toml.
    Schema {
        /// `input` or `config`.
        #[arg(value_enum)]
        of: SchemaOf,
    },
    /// Print the orchestrator's CloudFormation template for an environment: the seven step
    /// functions with one least-privilege role each, the state machine, the state table, the
    /// ECR push rule, log groups; optionally an SNS topic and a GitHub OIDC deploy role.
    Template {
        /// The environment's configuration.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        github: GitHubArgs,
        /// Create an SNS topic for notifications (when the configuration names none).
        #[arg(long)]
        create_topic: bool,
        #[command(flatten)]
        vpc: VpcArgs,
        /// A role update-services may pass to ECS (repeat for each task and execution role
        /// of the services; bootstrap reads them from the services itself).
        #[arg(long = "task-role")]
        task_roles: Vec<String>,
        /// A task definition family update-services may register revisions of (repeat for
        /// each service's; none: any family in the account and region).
        #[arg(long = "task-family")]
        task_families: Vec<String>,
    },
    /// Check a slipway.toml, naming the file, line and field of the first problem.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Remove an environment's installation; its state table (the history) only with
    /// --delete-data.
    Uninstall {
        /// The environment, as in its slipway.toml.
        #[arg(long)]
        environment: String,
        /// The region (default: from the credentials' configuration).
        #[arg(long)]
        region: Option<String>,
        /// Delete the state table too.
        #[arg(long)]
        delete_data: bool,
        /// Do not ask for confirmation (needed when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// The demo of the README's first line: the local test bed, the reference staging app,
    /// bootstrap into moto, a deployment from an ECR push, and a rollback (runs
    /// `scripts/demo` of the Slipway repository this is run in).
    Demo,
}

/// Who may deploy from GitHub Actions (OIDC).
#[derive(Debug, clap::Args)]
struct GitHubArgs {
    /// GitHub `owner/repo` whose workflows may start and watch deployments (OIDC).
    #[arg(long)]
    github_repository: Option<String>,
    /// The branch of that repository allowed to deploy (the token's `sub` is
    /// `repo:OWNER/REPO:ref:refs/heads/BRANCH`).
    #[arg(
        long,
        default_value = "main",
        requires = "github_repository",
        conflicts_with = "github_environment"
    )]
    github_branch: String,
    /// Allow the jobs of this GitHub environment instead of a branch (`sub` is
    /// `repo:OWNER/REPO:environment:NAME`; GitHub puts the environment there whenever a job
    /// names one).
    #[arg(long, requires = "github_repository")]
    github_environment: Option<String>,
    /// The account's existing GitHub OIDC provider (its ARN) instead of creating one (an
    /// account has one per URL; one the stack creates is kept on uninstall, so pass it when
    /// installing again).
    #[arg(long, requires = "github_repository")]
    github_oidc_provider: Option<String>,
}

/// Where the health-check function runs, for load balancers reachable only in their VPC.
#[derive(Debug, clap::Args)]
struct VpcArgs {
    /// A subnet for the health-check function (repeat for more, one per Availability Zone),
    /// for an internal load balancer; the subnets need a route to the Elastic Load Balancing
    /// API it calls (a NAT gateway, or an interface VPC endpoint).
    #[arg(
        long = "health-check-subnet",
        requires = "health_check_security_groups"
    )]
    health_check_subnets: Vec<String>,
    /// A security group for the health-check function in those subnets (repeat for more);
    /// the load balancer's must let it in.
    #[arg(
        long = "health-check-security-group",
        requires = "health_check_subnets"
    )]
    health_check_security_groups: Vec<String>,
}

/// Whether `id` is an EC2 id with this prefix (`subnet-`, `sg-`): 8 or 17 hex digits.
fn is_ec2_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

impl GitHubArgs {
    /// The template options these make, or what is wrong with them.
    fn options(self, create_topic: bool, vpc: VpcArgs) -> Result<template::Options, String> {
        for (flag, prefix, ids) in [
            (
                "--health-check-subnet",
                "subnet-",
                &vpc.health_check_subnets,
            ),
            (
                "--health-check-security-group",
                "sg-",
                &vpc.health_check_security_groups,
            ),
        ] {
            if let Some(bad) = ids.iter().find(|id| !is_ec2_id(id, prefix)) {
                return Err(format!(
                    "{flag} {bad:?}: expected {prefix} and 8 or 17 hex digits"
                ));
            }
            // Lambda's VpcConfig: at most 16 subnets and 5 security groups.
            let most = if prefix == "sg-" { 5 } else { 16 };
            if ids.len() > most {
                return Err(format!("{flag}: at most {most} (Lambda's VpcConfig limit)"));
            }
        }
        if let Some(repo) = &self.github_repository {
            let ok = |part: &str| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            match repo.split_once('/') {
                Some((owner, name)) if ok(owner) && ok(name) => {}
                _ => {
                    return Err(format!(
                        "--github-repository {repo:?}: expected OWNER/REPO (letters, digits, -, _ and .)"
                    ))
                }
            }
        }
        for (flag, value) in [
            ("--github-branch", Some(&self.github_branch)),
            ("--github-environment", self.github_environment.as_ref()),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.contains(['*', '?', ':']) || v.contains("${") {
                    return Err(format!(
                        "{flag} {v:?}: no wildcard (* ?), `:` or `${{` in a name the deploy role trusts"
                    ));
                }
            }
        }
        if let Some(arn) = &self.github_oidc_provider {
            if !install::is_github_provider_arn(arn) {
                return Err(format!(
                    "--github-oidc-provider {arn:?}: expected arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com"
                ));
            }
        }
        Ok(template::Options {
            github_branch: self.github_repository.as_ref().map(|_| self.github_branch),
            github_repository: self.github_repository,
            github_environment: self.github_environment,
            github_oidc_provider: self.github_oidc_provider,
            create_topic,
            health_check_subnets: vpc.health_check_subnets,
            health_check_security_groups: vpc.health_check_security_groups,
            task_roles: Vec::new(),
            task_families: Vec::new(),
            task_log_groups: Vec::new(),
        })
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemaOf {
    /// The execution input (an ECR event, or the manual form).
    Input,
    /// slipway.toml.
    Config,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckInput { file } => check_input(&file),
        Command::Schema { of } => {
            let schema = match of {
                SchemaOf::Input => schemars::schema_for!(slipway_core::input::ExecutionInput),
                SchemaOf::Config => schemars::schema_for!(slipway_core::config::Config),
            };
            print_json(&schema)
        }
        Command::Template {
            config,
            github,
            create_topic,
            vpc,
            task_roles,
            task_families,
        } => {
            let mut options = match github.options(create_topic, vpc) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(bad) = task_roles.iter().find(|r| !install::is_role_arn(r)) {
                eprintln!("error: --task-role {bad:?}: expected arn:aws:iam::ACCOUNT:role/NAME");
                return ExitCode::from(2);
            }
            if task_roles.is_empty() {
                eprintln!("warning: no --task-role: update-services may pass no role, so a task definition with a task or execution role cannot be registered (bootstrap reads them from the services)");
            }
            if task_families.is_empty() {
                eprintln!("warning: no --task-family: update-services may register any task definition family of the account and region (bootstrap reads the services')");
            }
            if let Some(bad) = task_families.iter().find(|f| {
                f.is_empty()
                    || f.len() > 255
                    || !f
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            }) {
                eprintln!(
                    "error: --task-family {bad:?}: a family is 1 to 255 letters, digits, - and _"
                );
                return ExitCode::from(2);
            }
            options.task_roles = task_roles;
            options.task_families = task_families;
            let text = match std::fs::read_to_string(&config) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            let parsed =
                match slipway_core::config::Config::parse(&text, &config.display().to_string()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            let made = template::template(&parsed, &options);
            if let Err(e) = template::check_policy_sizes(&made, &parsed) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            print_json(&made)
        }
        Command::Bootstrap {
            config,
            artifacts,
            artifacts_version,
            region,
            account,
            github,
            create_topic,
            vpc,
            no_github,
            no_topic,
            no_health_check_vpc,
            poll_seconds,
            json,
        } => {
            let template = match github.options(create_topic, vpc) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = install::Options {
                artifacts,
                artifacts_version,
                region,
                account,
                template,
                drop: template::DropOptions {
                    github: no_github,
                    topic: no_topic,
                    health_check_vpc: no_health_check_vpc,
                },
                poll_seconds,
            };
            match runtime().block_on(install::bootstrap(&config, &options)) {
                Ok(installed) => {
                    if json {
                        outln!(
                            "{}",
                            serde_json::to_string_pretty(&installed).unwrap_or_default()
                        );
                    } else {
                        outln!("state machine: {}", installed.state_machine_arn);
                        outln!("state table:   {}", installed.table);
                        outln!("for a GitHub workflow (repository variables/secrets):");
                        outln!(
                            "  SLIPWAY_STATE_MACHINE_ARN={}",
                            installed.state_machine_arn
                        );
                        if let Some(role) = &installed.github_role_arn {
                            outln!("  SLIPWAY_DEPLOY_ROLE_ARN={role}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Uninstall {
            environment,
            region,
            delete_data,
            yes,
        } => {
            if !yes {
                if let Err(f) = confirm_uninstall(&environment, delete_data) {
                    return shared::finish(Err(f));
                }
            }
            outcome(runtime().block_on(install::uninstall(
                &environment,
                region.as_deref(),
                delete_data,
            )))
        }
        Command::Deploy {
            installation,
            services,
            tag,
            digest,
            reason,
            commit,
            follow,
            follow_timeout,
            json,
        } => shared::finish(runtime().block_on(async {
            let conf = installation.sdk().await?;
            let machine = installation.state_machine(&conf).await?;
            if !services.is_empty() {
                check_services(&installation, &services).await?;
            }
            let request = run::Request {
                services,
                tag,
                digest,
                reason,
                commit,
            };
            let follow = follow.then(|| std::time::Duration::from_secs(follow_timeout));
            run::deploy(&conf, &machine, request, follow, json).await
        })),
        Command::Status {
            execution,
            release,
            installation,
            json,
        } => shared::finish(runtime().block_on(async {
            if let Some(release) = release {
                return release_status(&installation, &release, json).await;
            }
            let conf = installation.sdk().await?;
            let machine = match &execution {
                Some(_) => String::new(),
                None => installation.state_machine(&conf).await?,
            };
            let ended = run::status(&conf, &machine, execution.as_deref(), json).await?;
            // A failed execution: why, from its record and ECS, when the table is known.
            if let (Some(arn), Some(false)) = (&execution, ended) {
                if installation.table().is_ok() && !json {
                    let release = slipway_core::steps::release_id(arn);
                    if let Err(f) = release_status(&installation, &release, false).await {
                        eprintln!("note: no explanation: {}", f.message);
                    }
                }
            }
            Ok(Exit::Done)
        })),
        Command::Demo => demo(),
        Command::Init(args) => shared::finish(runtime().block_on(init::run(args))),
        Command::History(args) => shared::finish(runtime().block_on(history::run(args))),
        Command::Plan(args) => shared::finish(runtime().block_on(plan::run(args))),
        Command::Rollback(args) => shared::finish(runtime().block_on(rollback::run(args))),
        Command::CheckConfig { file } => match std::fs::read_to_string(&file) {
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                ExitCode::from(2)
            }
            Ok(text) => {
                match slipway_core::config::Config::parse(&text, &file.display().to_string()) {
                    Ok(c) => {
                        for (field, message) in c.warnings() {
                            eprintln!("warning: {}: {field}: {message}", file.display());
                        }
                        eprintln!(
                            "{}: ok ({} services, {} stacks)",
                            file.display(),
                            c.services.len(),
                            c.stacks.len()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        },
    }
}

/// A command's exit code: 0, or its error on stderr and 1.
fn outcome(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> ExitCode {
    outcome(
        serde_json::to_string_pretty(value)
            .map(|json| outln!("{json}"))
            .map_err(|e| e.to_string()),
    )
}

/// Runs `scripts/demo` of the Slipway checkout containing the current directory.
fn demo() -> ExitCode {
    let mut dir = std::env::current_dir().unwrap_or_default();
    loop {
        let script = dir.join("scripts/demo");
        if script.is_file() && dir.join("statemachine/deploy.asl.json").is_file() {
            return match std::process::Command::new(&script).status() {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: cannot run {}: {e}", script.display());
                    ExitCode::FAILURE
                }
            };
        }
        if !dir.pop() {
            eprintln!("error: `slipway demo` runs the demo of a Slipway checkout: run it inside one (git clone, then `scripts/demo`)");
            return ExitCode::from(2);
        }
    }
}

/// A recorded release: its record, and for one that failed what ECS says about why.
async fn release_status(
    installation: &Installation,
    release: &str,
    json: bool,
) -> Result<Exit, Failure> {
    use slipway_core::model::ReleaseResult;
    let clients = installation.clients().await?;
    let (found, _) = shared::records(&clients, 1, |r| r.release == release).await?;
    let record = found.into_iter().next().ok_or_else(|| {
        format!("no record of release {release} in table {} (`slipway history` lists them; a release still running has none yet)", clients.table)
    })?;
    let failed = !matches!(
        record.result,
        ReleaseResult::Succeeded | ReleaseResult::Superseded
    );
    let why = if failed {
        let config = shared::config(&clients).await?;
        // Those services still configured, from the release's start to a minute after its
        // record (the rollback's last stops).
        let targets: Vec<why::Target> = record
            .services
            .iter()
            .filter_map(|s| config.service(&s.service))
            .map(|c| why::Target {
                service: &c.name,
                cluster: &config.cluster,
                ecs_service: c.ecs_service(),
            })
            .collect();
        let live = why::explain(
            &clients.ecs,
            &clients.logs,
            &targets,
            record.started_at,
            record.finished_at + 60,
        )
        .await?;
        // ECS lists stopped tasks for about an hour; the record keeps what finish saw.
        if why::summary(live.clone(), usize::MAX, usize::MAX).is_empty() {
            record.why.clone()
        } else {
            live
        }
    } else {
        Vec::new()
    };
    if json {
        outln!("{}", serde_json::json!({"record": record, "why": why}));
        return Ok(Exit::Done);
    }
    outln!(
        "{}",
        history::render(std::slice::from_ref(&record), true).trim_end()
    );
    if let Some(e) = &record.error {
        outln!(
            "error: {}: {}",
            e["Error"].as_str().unwrap_or_default(),
            e["Cause"].as_str().unwrap_or_default()
        );
    }
    if failed {
        outln!("why (from ECS):");
        outln!("{}", why::render(&why).trim_end());
    }
    Ok(Exit::Done)
}

/// `deploy --service`: each name is checked against the stored configuration before anything
/// starts. A configuration that cannot be read (a deploy role without access to the table)
/// leaves the check to plan.
async fn check_services(installation: &Installation, services: &[String]) -> Result<(), Failure> {
    let config = match installation.clients().await {
        Ok(clients) => slipway_core::state::load_config(&clients)
            .await
            .map_err(|e| e.to_string()),
        Err(f) => Err(f.message),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("note: --service names not checked before starting (the stored configuration cannot be read: {e}); plan checks them");
            return Ok(());
        }
    };
    shared::check_services(&config, services)
}

/// Asks on the terminal before `uninstall` deletes anything; without a terminal to ask,
/// `--yes` is required.
fn confirm_uninstall(environment: &str, delete_data: bool) -> Result<(), Failure> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let what = format!(
        "This deletes stack slipway-{environment}: its functions, state machine, rules and roles{}. Kept: the artifact bucket, the log groups{}.",
        if delete_data { ", and the state table with the deployment history" } else { "" },
        if delete_data { "" } else { " and the state table (its history; --delete-data removes it)" }
    );
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{what} Standard input is not a terminal to ask on: pass --yes to confirm."
        )));
    }
    eprint!("{what}\nUninstall slipway-{environment}? Type the environment's name to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    if answer.trim() == environment {
        Ok(())
    } else {
        Err(Failure {
            exit: Exit::Failed,
            message: "not confirmed; nothing was deleted".into(),
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the async runtime: {e}"))
}

fn check_input(file: &PathBuf) -> ExitCode {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    if let Err(e) = read {
        eprintln!("error: cannot read {}: {e}", file.display());
        return ExitCode::from(2);
    }
    match slipway_core::input::parse_bytes(&bytes) {
        Ok(planned) => {
            match serde_json::to_string_pretty(&planned) {
                Ok(json) => outln!("{json}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: {} is not a valid execution input ({}): {e}",
                file.display(),
                e.name()
            );
            ExitCode::FAILURE
        }
    }
}
