//! `slipway history`: the deployment records of the state table, as a table or JSON.

use slipway_core::model::DeploymentRecord;

use crate::shared::{outln, short_image, Exit, Failure, Installation};

/// `slipway history`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub installation: Installation,
    /// Only deployments that moved this service (applied before --limit).
    #[arg(long)]
    pub service: Option<String>,
    /// How many records to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i32,
    /// Full image digests in the table.
    #[arg(long)]
    pub wide: bool,
    /// Print the records as JSON (one array) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> Result<Exit, Failure> {
    if args.limit < 1 {
        return Err(Failure::usage(format!(
            "--limit {}: must be at least 1",
            args.limit
        )));
    }
    let clients = args.installation.clients().await?;
    let table = clients.table.clone();
    let service = args.service.clone();
    let keep = |r: &DeploymentRecord| {
        service
            .as_ref()
            .is_none_or(|s| r.services.iter().any(|x| &x.service == s))
    };
    let (records, problems) = crate::shared::records(&clients, args.limit, keep).await?;
    // A record that cannot be read is reported, never silently dropped; the exit code says so.
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let status = if problems.is_empty() {
        Exit::Done
    } else {
        Exit::Failed
    };
    if args.json {
        let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
        outln!("{text}");
        return Ok(status);
    }
    if records.is_empty() {
        eprintln!(
            "no deployments recorded in {table}{}",
            args.service
                .map(|s| format!(" for {s}"))
                .unwrap_or_default()
        );
        return Ok(status);
    }
    outln!("{}", render(&records, args.wide).trim_end());
    Ok(status)
}

/// The records as an aligned text table (`wide`: with full digests).
pub fn render(records: &[DeploymentRecord], wide: bool) -> String {
    let short = |image: &str| {
        if wide {
            image
                .rsplit_once('@')
                .map_or(image, |(_, digest)| digest)
                .to_owned()
        } else {
            short_image(image)
        }
    };
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            let services: Vec<String> = r
                .services
                .iter()
                .map(|s| {
                    // Said only when nothing checked it: the usual case stays short.
                    let unchecked = if s.checks == "not checked" {
                        " (not checked)"
                    } else {
                        ""
                    };
                    format!(
                        "{} {}→{}{unchecked}",
                        s.service,
                        short(&s.from),
                        short(&s.to)
                    )
                })
                .collect();
            // The error's name; for a release that never started (superseded), why; for a
            // failure, what ECS said first (`status --release` shows all of it).
            let mut error = r
                .error
                .as_ref()
                .and_then(|e| e["Error"].as_str())
                .or(r.reason.as_deref())
                .unwrap_or("")
                .to_owned();
            if let Some(why) = slipway_core::why::headline(&r.why) {
                error = format!("{error} ({why})");
            }
            [
                slipway_core::wire_time(r.started_at),
                r.release.clone(),
                r.result.to_string(),
                format!("{}s", r.finished_at - r.started_at),
                services.join(", "),
                error,
            ]
        })
        .collect();
    crate::shared::table(
        [
            "STARTED (UTC)",
            "RELEASE",
            "RESULT",
            "TOOK",
            "SERVICES",
            "ERROR",
        ],
        &rows,
    )
}
