//! `slipway-sim --port P [--scenario FILE] [--speed N]`: see the crate documentation.

use std::path::PathBuf;

use clap::Parser;
use slipway_sim::scenario::Scenario;
use slipway_sim::server::{serve, Options, World};

/// A local AWS control plane for ECS deployments, CloudFormation stacks and ELBv2 target
/// health, speaking the real wire protocols.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one (see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the port actually bound to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Scenario file (TOML, or JSON by extension): failures, timings, throttling.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// How many times faster than real time the simulated clock runs.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Region used in ARNs and events.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Account id used in ARNs and events.
    #[arg(long, default_value = "123456789012")]
    account: String,
    /// The epoch second from which the clock runs fast (default: start-up); give the same
    /// one to every process that must agree with the simulator on the time.
    #[arg(long)]
    epoch_anchor: Option<f64>,
    /// Append every EventBridge event emitted (e.g. "ECS Deployment State Change") to this file, one JSON per line.
    #[arg(long)]
    events_file: Option<PathBuf>,
    /// S3 endpoint (e.g. moto's) from which `TemplateURL` objects are read, path style.
    #[arg(long)]
    s3_endpoint: Option<String>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("slipway-sim: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(format!("--speed {}: must be a positive number", args.speed));
    }
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    let world = World::new(Options {
        scenario,
        speed: args.speed,
        region: args.region,
        account: args.account,
        events_file: args.events_file,
        anchor: args.epoch_anchor,
        s3_endpoint: args.s3_endpoint,
    })
    .map_err(|e| format!("cannot open the events file: {e}"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    if let Some(path) = &args.port_file {
        // Written whole then renamed, so a reader never sees a partial number.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n")).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    tracing::info!(
        port,
        speed = args.speed,
        "slipway-sim listening on 127.0.0.1"
    );
    serve(listener, world).await.map_err(|e| e.to_string())
}
