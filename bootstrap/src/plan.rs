//! `slipway plan`: the dry run. What a release would do, read from the account: each
//! service's image now and after, each stack's parameter changes; with `--change-sets`, the
//! resource changes CloudFormation would make (the change sets are deleted again).

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_cloudformation::client::Waiters as _;
use aws_sdk_cloudformation::types::ChangeSetStatus;
use serde_json::{json, Value};
use slipway_core::model::{Preview, PreviewAction, StackPreview};
use slipway_core::steps::SystemClock;

use crate::shared::{outln, short_image, Exit, Failure, Installation};

/// `slipway plan`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub installation: Installation,
    /// The image tag a release would deploy.
    #[arg(long, required_unless_present_any = ["digest", "input"], conflicts_with_all = ["digest", "input"])]
    pub tag: Option<String>,
    /// The image digest a release would deploy (sha256:…).
    #[arg(long, conflicts_with = "input")]
    pub digest: Option<String>,
    /// An execution input (an ECR event or the manual form) instead; `-` reads stdin.
    #[arg(long, conflicts_with = "services")]
    pub input: Option<PathBuf>,
    /// A service a release would deploy (repeat for more); none: every service.
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Also make each changing stack's change set, show its resource changes, and delete it.
    #[arg(long)]
    pub change_sets: bool,
    /// Print the plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> Result<Exit, Failure> {
    let input = match &args.input {
        Some(file) => read_input(file)?,
        None => manual_input(&args.services, args.tag.as_deref(), args.digest.as_deref()),
    };
    let clients = args.installation.clients().await?;
    if !args.services.is_empty() {
        let config = crate::shared::config(&clients).await?;
        crate::shared::check_services(&config, &args.services)?;
    }
    let mut preview = preview(&clients, input).await?;
    if args.change_sets {
        for stack in preview.stacks.iter_mut() {
            if !stack.parameters.is_empty() {
                stack.changes = Some(resource_changes(&clients.cloudformation, stack).await?);
            }
        }
    }
    print(&preview, args.json);
    Ok(Exit::Done)
}

/// The manual input for these services and image.
pub fn manual_input(services: &[String], tag: Option<&str>, digest: Option<&str>) -> Value {
    let mut input = json!({});
    if !services.is_empty() {
        input["services"] = json!(services);
    }
    if let Some(t) = tag {
        input["tag"] = json!(t);
    }
    if let Some(d) = digest {
        input["digest"] = json!(d);
    }
    input
}

/// An execution input from a file (`-`: stdin).
fn read_input(file: &PathBuf) -> Result<Value, Failure> {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    read.map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::usage(format!("{}: not JSON: {e}", file.display())))
}

/// Plan's dry run of `input` on the installation of `clients` (an error names the field
/// and the error name plan would fail with).
pub async fn preview(
    clients: &slipway_core::aws::Clients,
    input: Value,
) -> Result<Preview, Failure> {
    slipway_core::steps::preview(clients, &SystemClock, input)
        .await
        .map_err(|e| format!("{e} ({})", e.name()).into())
}

/// Makes the stack's change set as the release would (same template, parameters,
/// capabilities and role), reads its resource changes, and deletes it.
async fn resource_changes(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &StackPreview,
) -> Result<Vec<Value>, Failure> {
    let Some(release) = &stack.release else {
        return Ok(vec![]);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!("slipway-plan-{}-{:06}", now.as_secs(), now.subsec_micros());
    let request = slipway_core::steps::change_set_request(
        cfn,
        release,
        &name,
        "slipway plan --change-sets (deleted after reading)".into(),
    );
    let failed = |what: &str, e: String| format!("stack {}: {what}: {e}", release.name);
    request
        .send()
        .await
        .map_err(|e| failed("CreateChangeSet", crate::run::sdk_error(&e)))?;
    // The SDK's waiter stops on CREATE_COMPLETE and on FAILED; either way the change set is
    // read, then deleted.
    let waited = cfn
        .wait_until_change_set_create_complete()
        .stack_name(&release.name)
        .change_set_name(&name)
        .wait(Duration::from_secs(300))
        .await;
    let described = cfn
        .describe_change_set()
        .stack_name(&release.name)
        .change_set_name(&name)
        .send()
        .await;
    let deleted = cfn
        .delete_change_set()
        .stack_name(&release.name)
        .change_set_name(&name)
        .send()
        .await;
    let described =
        described.map_err(|e| failed("DescribeChangeSet", crate::run::sdk_error(&e)))?;
    if let Err(e) = deleted {
        eprintln!(
            "warning: stack {}: change set {name} is left behind: {}",
            release.name,
            crate::run::sdk_error(&e)
        );
    }
    match described.status() {
        Some(ChangeSetStatus::CreateComplete) => {}
        // A change set whose parameters change nothing the resources use fails with this
        // reason (CreateChangeSet API reference): no resource changes.
        Some(ChangeSetStatus::Failed)
            if described.status_reason().is_some_and(|r| {
                r.contains("didn't contain changes") || r.contains("No updates")
            }) =>
        {
            return Ok(vec![]);
        }
        status => {
            return Err(failed(
                "change set",
                format!(
                    "{} ({}){}",
                    status.map(|s| s.as_str()).unwrap_or("no status"),
                    described.status_reason().unwrap_or_default(),
                    if waited.is_err() {
                        "; waiting for it failed"
                    } else {
                        ""
                    }
                ),
            )
            .into())
        }
    }
    Ok(described
        .changes()
        .iter()
        .filter_map(|c| c.resource_change())
        .map(|r| {
            json!({
                "action": r.action().map(|a| a.as_str()),
                "logicalResourceId": r.logical_resource_id(),
                "resourceType": r.resource_type(),
                "replacement": r.replacement().map(|x| x.as_str()),
            })
        })
        .collect())
}

/// Prints a preview: JSON, or two tables.
pub fn print(preview: &Preview, json_out: bool) {
    if json_out {
        let text = serde_json::to_string_pretty(preview).unwrap_or_default();
        outln!("{text}");
        return;
    }
    if let Some(reason) = &preview.nothing_to_do {
        outln!("nothing to do: {reason}");
        return;
    }
    let rows: Vec<[String; 5]> = preview
        .services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                action_name(s.action).to_owned(),
                short_image(&s.from),
                s.to.as_deref().map(short_image).unwrap_or_default(),
                s.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    outln!(
        "{}",
        crate::shared::table(["SERVICE", "ACTION", "FROM", "TO", "WHY"], &rows).trim_end()
    );
    for s in &preview.services {
        if let Some(strategy) = &s.strategy {
            outln!("service {}: ECS deploys it {strategy}", s.name);
        }
    }
    for a in &preview.alarms {
        let stop = if a.state == "ALARM" {
            " — a release now would stop before anything moves"
        } else {
            ""
        };
        outln!("alarm {}: {} ({}){stop}", a.name, a.state, a.reason);
    }
    if preview.stacks.is_empty() {
        return;
    }
    let mut rows: Vec<[String; 4]> = Vec::new();
    for st in &preview.stacks {
        if st.parameters.is_empty() {
            rows.push([
                st.name.clone(),
                "(no change)".into(),
                String::new(),
                String::new(),
            ]);
        }
        for (key, change) in &st.parameters {
            rows.push([
                st.name.clone(),
                key.clone(),
                change.from.clone(),
                change.to.clone(),
            ]);
        }
    }
    outln!();
    outln!(
        "{}",
        crate::shared::table(["STACK", "PARAMETER", "FROM", "TO"], &rows).trim_end()
    );
    for st in &preview.stacks {
        if let Some(why) = &st.locked {
            outln!("stack {}: {why}", st.name);
        }
        for c in st.changes.iter().flatten() {
            outln!(
                "stack {}: {} {} ({}){}",
                st.name,
                c["action"].as_str().unwrap_or("?"),
                c["logicalResourceId"].as_str().unwrap_or("?"),
                c["resourceType"].as_str().unwrap_or("?"),
                match c["replacement"].as_str() {
                    Some("True") => ", replaced",
                    Some("Conditional") => ", maybe replaced",
                    _ => "",
                }
            );
        }
    }
}

/// The action as `--json` spells it.
fn action_name(action: PreviewAction) -> &'static str {
    match action {
        PreviewAction::Deploy => "deploy",
        PreviewAction::SkipSameDigest => "skip-same-digest",
        PreviewAction::SkipTagPattern => "skip-tag-pattern",
        PreviewAction::SkipLocked => "skip-locked",
        PreviewAction::SkipSuperseded => "skip-superseded",
    }
}
