//! What the commands share: which installation they work on, their exit codes, and writing
//! to standard output.

use std::process::ExitCode;

/// How a command ended: its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (a release succeeded, a check passed).
    Done,
    /// 1: failed (a release failed, an AWS call failed, nothing to do where something was
    /// asked for).
    Failed,
    /// 2: usage (a flag or file is wrong; nothing was started).
    Usage,
    /// 3: still running (`--follow` gave up waiting; the execution goes on).
    Running,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Running => 3,
        })
    }
}

/// A command's failure: what to print, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A wrong flag or file (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            message: message.into(),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            exit: Exit::Failed,
            message,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// Prints a failure on stderr; the exit code.
pub fn finish(result: Result<Exit, Failure>) -> ExitCode {
    match result {
        Ok(exit) => exit.into(),
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.exit.into()
        }
    }
}

/// `println!` that ends the program quietly when standard output is a closed pipe
/// (`slipway history --json | head`): the reader has what it wanted.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::shared::stdout_failed(e);
        }
    }};
}
pub(crate) use outln;

/// Ends the program after a failed write to standard output: quietly (0) for a closed pipe,
/// with the error (1) otherwise.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1)
}

/// Which installation a command works on: `slipway-<environment>`, its state table and its
/// state machine, in the credentials' account and region.
#[derive(Debug, Clone, clap::Args)]
pub struct Installation {
    /// The environment, as in its slipway.toml (its installation is `slipway-<environment>`).
    #[arg(long)]
    pub environment: Option<String>,
    /// The region (default: from the credentials' configuration).
    #[arg(long)]
    pub region: Option<String>,
    /// The state table, instead of the environment's.
    #[arg(long)]
    pub table: Option<String>,
    /// The state machine ARN, instead of the environment's.
    #[arg(long)]
    pub state_machine: Option<String>,
}

impl Installation {
    /// The state table: `--table`, else the environment's, else `$SLIPWAY_TABLE`.
    pub fn table(&self) -> Result<String, Failure> {
        if let Some(t) = &self.table {
            return Ok(t.clone());
        }
        if let Some(e) = &self.environment {
            return Ok(crate::install::stack_name(e));
        }
        match std::env::var("SLIPWAY_TABLE") {
            Ok(t) if !t.is_empty() => Ok(t),
            _ => Err(Failure::usage(
                "name the environment (--environment E, as in its slipway.toml) or the state table (--table NAME, or SLIPWAY_TABLE)",
            )),
        }
    }

    /// The SDK configuration (credentials, region and endpoints from the environment).
    pub async fn sdk(&self) -> Result<aws_config::SdkConfig, Failure> {
        Ok(crate::install::sdk(self.region.as_deref()).await?)
    }

    /// Slipway's clients on this installation's state table.
    pub async fn clients(&self) -> Result<slipway_core::aws::Clients, Failure> {
        let table = self.table()?;
        Ok(slipway_core::aws::Clients::new(&self.sdk().await?, table))
    }

    /// The state machine's ARN.
    pub async fn state_machine(&self, conf: &aws_config::SdkConfig) -> Result<String, Failure> {
        Ok(crate::run::state_machine(
            conf,
            self.environment.as_deref(),
            self.state_machine.clone(),
        )
        .await?)
    }
}

/// Each `--service` name must be configured: a usage error naming the configured ones.
pub fn check_services(
    config: &slipway_core::config::Config,
    services: &[String],
) -> Result<(), Failure> {
    for s in services {
        if config.service(s).is_none() {
            let known: Vec<&str> = config.services.iter().map(|c| c.name.as_str()).collect();
            return Err(Failure::usage(format!(
                "--service {s}: no such service in the {} configuration (configured: {}); nothing was started",
                config.environment,
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// The configuration stored in the installation's state table.
pub async fn config(
    clients: &slipway_core::aws::Clients,
) -> Result<slipway_core::config::Config, Failure> {
    slipway_core::state::load_config(clients)
        .await
        .map_err(|e| {
            format!(
                "cannot read the configuration from table {}: {e} (has `slipway bootstrap` run?)",
                clients.table
            )
            .into()
        })
}

/// The newest `limit` deployment records `keep` accepts, and the unreadable items met on the
/// way.
pub async fn records(
    clients: &slipway_core::aws::Clients,
    limit: i32,
    keep: impl Fn(&slipway_core::model::DeploymentRecord) -> bool,
) -> Result<(Vec<slipway_core::model::DeploymentRecord>, Vec<String>), Failure> {
    slipway_core::state::records_where(clients, limit, keep)
        .await
        .map_err(|e| {
            format!(
                "cannot read the deployment records from table {}: {e}; check your AWS credentials and region, and that `slipway bootstrap` has run",
                clients.table
            )
            .into()
        })
}

/// An image as a person reads it: its digest's first 12 hex digits, or its tag.
pub fn short_image(image: &str) -> String {
    match image.rsplit_once('@') {
        Some((_, digest)) => digest.chars().take(19).collect(),
        None => image.rsplit('/').next().unwrap_or(image).to_owned(),
    }
}

/// Rows as an aligned text table, the header first.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
