//! The `slipway` command line.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod history;
mod template;

/// Slipway: deploy ECS Fargate services on every ECR push, through AWS Step Functions.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        /// GitHub `owner/repo` whose workflows may start and watch deployments (OIDC).
        #[arg(long)]
        github_repository: Option<String>,
        /// The branch of that repository allowed to deploy.
        #[arg(long, default_value = "main", requires = "github_repository")]
        github_branch: String,
        /// Create an SNS topic for notifications (when the configuration names none).
        #[arg(long)]
        create_topic: bool,
    },
    /// Show past deployments, newest first, from the state table.
    History {
        /// Only deployments that moved this service.
        #[arg(long)]
        service: Option<String>,
        /// How many records to read.
        #[arg(long, default_value_t = 20)]
        limit: i32,
        /// The state table (default: $SLIPWAY_TABLE).
        #[arg(long, env = "SLIPWAY_TABLE")]
        table: Option<String>,
        /// Print the records as JSON (one array) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check a slipway.toml, naming the file, line and field of the first problem.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
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
            match serde_json::to_string_pretty(&schema) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Template {
            config,
            github_repository,
            github_branch,
            create_topic,
        } => {
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
            let options = template::Options {
                github_branch: github_repository.as_ref().map(|_| github_branch),
                github_repository,
                create_topic,
            };
            match serde_json::to_string_pretty(&template::template(&parsed, &options)) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::History {
            service,
            limit,
            table,
            json,
        } => history::run(service, limit, table, json),
        Command::CheckConfig { file } => match std::fs::read_to_string(&file) {
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                ExitCode::from(2)
            }
            Ok(text) => {
                match slipway_core::config::Config::parse(&text, &file.display().to_string()) {
                    Ok(c) => {
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
                Ok(json) => println!("{json}"),
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
