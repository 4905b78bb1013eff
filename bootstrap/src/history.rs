//! `slipway history`: the deployment records of the state table, as a table or JSON.

use std::process::ExitCode;

use slipway_core::aws::Clients;
use slipway_core::model::DeploymentRecord;

pub fn run(service: Option<String>, limit: i32, table: Option<String>, json: bool) -> ExitCode {
    let Some(table) = table else {
        eprintln!("error: no state table: give --table NAME or set SLIPWAY_TABLE (`slipway bootstrap` prints it)");
        return ExitCode::from(2);
    };
    if limit < 1 {
        eprintln!("error: --limit {limit}: must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let records = runtime.block_on(async {
        let mut clients = Clients::from_env().await;
        clients.table = table.clone();
        slipway_core::state::records_and_problems(&clients, limit).await
    });
    let (mut records, problems) = match records {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read the deployment records from table {table}: {e}");
            eprintln!("       check your AWS credentials and region, and that `slipway bootstrap` has run");
            return ExitCode::FAILURE;
        }
    };
    // A record that cannot be read is reported, never silently dropped; the exit code says so.
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let status = if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if let Some(s) = &service {
        records.retain(|r| r.services.iter().any(|x| &x.service == s));
    }
    if json {
        match serde_json::to_string_pretty(&records) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return status;
    }
    if records.is_empty() {
        eprintln!(
            "no deployments recorded in {table}{}",
            service.map(|s| format!(" for {s}")).unwrap_or_default()
        );
        return status;
    }
    print!("{}", render(&records));
    status
}

/// The records as an aligned text table.
pub fn render(records: &[DeploymentRecord]) -> String {
    let short = |image: &str| match image.rsplit_once('@') {
        Some((_, digest)) => digest.chars().take(19).collect(),
        None => image.rsplit('/').next().unwrap_or(image).to_owned(),
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
            // The error's name; for a release that never started (superseded), why.
            let error = r
                .error
                .as_ref()
                .and_then(|e| e["Error"].as_str())
                .or(r.reason.as_deref())
                .unwrap_or("")
                .to_owned();
            [
                slipway_core::wire_time(r.started_at),
                r.release.clone(),
                r.result.clone(),
                format!("{}s", r.finished_at - r.started_at),
                services.join(", "),
                error,
            ]
        })
        .collect();
    let header = [
        "STARTED (UTC)",
        "RELEASE",
        "RESULT",
        "TOOK",
        "SERVICES",
        "ERROR",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
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
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
