//! The `slipway` command line.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckInput { file } => check_input(&file),
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
