//! `slipway rollback`: services back on the images they ran before their current release (or
//! on those of a named release), through a normal release by digest — locked, checked,
//! recorded and announced like any other, with the reason `rollback of <release>`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::json;
use slipway_core::model::{DeploymentRecord, Preview, ReleaseResult};

use crate::shared::{outln, Exit, Failure, Installation};

/// `slipway rollback`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub installation: Installation,
    /// A service to roll back (repeat for more); none: every service.
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Go back to the images this release deployed, instead of those before the current one.
    #[arg(long)]
    pub to: Option<String>,
    /// Print what the rollback would do (as `slipway plan` does) and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the rollback's execution(s) until they end.
    #[arg(long, conflicts_with = "dry_run")]
    pub follow: bool,
    /// Stop following after this many seconds (the execution goes on).
    #[arg(long, default_value_t = 3600)]
    pub follow_timeout: u64,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How many records back a rollback looks.
const LOOK_BACK: i32 = 500;

/// One release to start: these services to this image, undoing `of`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The release it undoes (or the one named with --to).
    pub of: String,
    /// The reason the release carries: `rollback of <release>` (it undoes that release; a
    /// later rollback passes over both), or `rollback to <release>` for --to (an ordinary
    /// release for a later rollback).
    pub reason: String,
    /// The image reference to deploy: `digest` (sha256:…) or a tag.
    pub image: Image,
    /// The services.
    pub services: Vec<String>,
}

/// An image a rollback goes back to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Image {
    /// By digest (what Slipway records).
    Digest(String),
    /// By tag (an image from before Slipway, recorded as `repo:tag`).
    Tag(String),
}

/// The image reference in a recorded image (`uri@sha256:…` or `uri:tag`).
fn image_of(recorded: &str) -> Option<Image> {
    if let Some((_, digest)) = recorded.rsplit_once('@') {
        return Some(Image::Digest(digest.to_owned()));
    }
    let last = recorded.rsplit('/').next()?;
    last.split_once(':')
        .map(|(_, tag)| Image::Tag(tag.to_owned()))
}

/// What to start, from the records (newest first) for `services`.
///
/// Without `to`: per service, its current release is the newest succeeded (or
/// rollback-failed: it may still run that image) one that moved it and that a later rollback
/// did not undo (rollback releases themselves are passed over with
/// the release they undid, so rolling back twice goes two releases back); it goes back to
/// the image it ran before that release. With `to`: the image that release gave it.
pub fn steps(
    records: &[DeploymentRecord],
    services: &[String],
    to: Option<&str>,
) -> Result<Vec<Step>, String> {
    // A failed release was rolled back (its services are on its `from` again); a
    // rollback-failed one may have left them on its `to`: it counts as current.
    let current = |r: &&DeploymentRecord| {
        matches!(
            r.result,
            ReleaseResult::Succeeded | ReleaseResult::RollbackFailed
        )
    };
    let mut targets: BTreeMap<(String, Image), Vec<String>> = BTreeMap::new();
    let mut nothing = Vec::new();
    match to {
        Some(name) => {
            let r = records
                .iter()
                .find(|r| r.release == name)
                .ok_or_else(|| format!("no release {name} among the last {LOOK_BACK} records (`slipway history` lists them)"))?;
            if r.result != ReleaseResult::Succeeded {
                return Err(format!(
                    "release {name} {}: its images never stayed, so there is nothing to go back to",
                    r.result
                ));
            }
            for s in services {
                match r
                    .services
                    .iter()
                    .find(|x| &x.service == s)
                    .and_then(|x| image_of(&x.to))
                {
                    Some(image) => targets
                        .entry((name.to_owned(), image))
                        .or_default()
                        .push(s.clone()),
                    None => nothing.push(format!("{s}: release {name} did not deploy it")),
                }
            }
        }
        None => {
            for s in services {
                let mut undone: HashSet<&str> = HashSet::new();
                let mut found = None;
                for r in records.iter().filter(current) {
                    let Some(moved) = r.services.iter().find(|x| &x.service == s) else {
                        continue;
                    };
                    if undone.contains(r.release.as_str()) {
                        continue;
                    }
                    if let Some(of) = rollback_of(r) {
                        undone.insert(of);
                        continue;
                    }
                    found = Some((r, moved));
                    break;
                }
                match found.and_then(|(r, m)| image_of(&m.from).map(|i| (r, i))) {
                    Some((r, image)) => targets
                        .entry((r.release.clone(), image))
                        .or_default()
                        .push(s.clone()),
                    None => nothing.push(format!(
                        "{s}: no succeeded release to go back from among the last {LOOK_BACK} records"
                    )),
                }
            }
        }
    }
    for n in &nothing {
        eprintln!("note: {n}");
    }
    if targets.is_empty() {
        return Err("nothing to roll back: no service has an image to go back to".into());
    }
    Ok(targets
        .into_iter()
        .map(|((of, image), services)| Step {
            reason: match to {
                Some(_) => format!("rollback to {of}"),
                None => format!("rollback of {of}"),
            },
            of,
            image,
            services,
        })
        .collect())
}

/// The release a record rolled back, when it is a rollback.
fn rollback_of(r: &DeploymentRecord) -> Option<&str> {
    match &r.trigger {
        slipway_core::input::Trigger::Manual {
            reason: Some(reason),
            ..
        } => reason.strip_prefix("rollback of "),
        _ => None,
    }
}

pub async fn run(args: Args) -> Result<Exit, Failure> {
    let clients = args.installation.clients().await?;
    let config = crate::shared::config(&clients).await?;
    crate::shared::check_services(&config, &args.services)?;
    let services: Vec<String> = if args.services.is_empty() {
        config.services.iter().map(|s| s.name.clone()).collect()
    } else {
        args.services.clone()
    };
    let (records, problems) = crate::shared::records(&clients, LOOK_BACK, |_| true).await?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let steps = steps(&records, &services, args.to.as_deref())?;
    let inputs: Vec<serde_json::Value> = steps
        .iter()
        .map(|st| {
            let (tag, digest) = match &st.image {
                Image::Digest(d) => (None, Some(d.as_str())),
                Image::Tag(t) => (Some(t.as_str()), None),
            };
            let mut input = crate::plan::manual_input(&st.services, tag, digest);
            input["reason"] = json!(st.reason);
            input
        })
        .collect();
    if args.dry_run {
        let mut all = Preview {
            services: vec![],
            stacks: vec![],
            nothing_to_do: None,
            alarms: vec![],
        };
        for input in inputs {
            let p = crate::plan::preview(&clients, input).await?;
            all.services.extend(p.services);
            for a in p.alarms {
                if !all.alarms.contains(&a) {
                    all.alarms.push(a);
                }
            }
            for st in p.stacks {
                match all.stacks.iter_mut().find(|s| s.name == st.name) {
                    Some(seen) => seen.parameters.extend(st.parameters),
                    None => all.stacks.push(st),
                }
            }
        }
        crate::plan::print(&all, args.json);
        return Ok(Exit::Done);
    }
    let conf = args.installation.sdk().await?;
    let machine = args.installation.state_machine(&conf).await?;
    let sfn = aws_sdk_sfn::Client::new(&conf);
    let mut started = Vec::new();
    for (st, input) in steps.iter().zip(&inputs) {
        slipway_core::input::parse(input.clone()).map_err(|e| format!("{e} ({})", e.name()))?;
        let arn = crate::run::start(&sfn, &machine, &format!("rollback-{}", st.of), input).await?;
        eprintln!(
            "started {arn}: {} back, {}",
            st.services.join(", "),
            st.reason
        );
        started.push(json!({"executionArn": arn, "input": input}));
    }
    if args.json && !args.follow {
        outln!("{}", serde_json::Value::Array(started));
        return Ok(Exit::Done);
    }
    if !args.follow {
        return Ok(Exit::Done);
    }
    // One after the other: every release takes every configured stack's lock while it plans,
    // and they would mostly wait for each other anyway.
    let mut worst = Exit::Done;
    for s in &started {
        let arn = s["executionArn"].as_str().unwrap_or_default();
        let exit = crate::run::watch(
            &sfn,
            arn,
            Duration::from_secs(args.follow_timeout),
            args.json,
        )
        .await?;
        if exit != Exit::Done && worst == Exit::Done {
            worst = exit;
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::input::Trigger;
    use slipway_core::model::RecordedService;

    fn record(
        release: &str,
        result: &str,
        reason: Option<&str>,
        moves: &[(&str, &str, &str)],
    ) -> DeploymentRecord {
        DeploymentRecord {
            release: release.into(),
            environment: "staging".into(),
            trigger: Trigger::Manual {
                reason: reason.map(str::to_owned),
                commit: None,
            },
            result: serde_json::from_value(serde_json::json!(result)).unwrap(),
            tag: None,
            reason: None,
            error: None,
            services: moves
                .iter()
                .map(|(s, from, to)| RecordedService {
                    service: (*s).into(),
                    from: format!("r/{s}@sha256:{from}"),
                    to: format!("r/{s}@sha256:{to}"),
                    checks: String::new(),
                })
                .collect(),
            stacks: vec![],
            started_at: 0,
            finished_at: 0,
            timings: Default::default(),
            rollback: None,
            announced: Default::default(),
            why: vec![],
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn back_to_what_ran_before_the_current_release() {
        // Newest first: r3 failed (rolled back), r2 is current for api, r1 for web.
        let records = [
            record("r3", "failed", None, &[("api", "b", "c")]),
            record("r2", "succeeded", None, &[("api", "a", "b")]),
            record(
                "r1",
                "succeeded",
                None,
                &[("web", "x", "y"), ("api", "0", "a")],
            ),
        ];
        let got = steps(&records, &names(&["api", "web"]), None).unwrap();
        assert_eq!(
            got,
            [
                Step {
                    of: "r1".into(),
                    reason: "rollback of r1".into(),
                    image: Image::Digest("sha256:x".into()),
                    services: names(&["web"])
                },
                Step {
                    of: "r2".into(),
                    reason: "rollback of r2".into(),
                    image: Image::Digest("sha256:a".into()),
                    services: names(&["api"])
                },
            ]
        );
    }

    #[test]
    fn a_second_rollback_goes_one_more_release_back() {
        let records = [
            record(
                "rb",
                "succeeded",
                Some("rollback of r2"),
                &[("api", "b", "a")],
            ),
            record("r2", "succeeded", None, &[("api", "a", "b")]),
            record("r1", "succeeded", None, &[("api", "0", "a")]),
        ];
        let got = steps(&records, &names(&["api"]), None).unwrap();
        assert_eq!(got[0].of, "r1");
        assert_eq!(got[0].image, Image::Digest("sha256:0".into()));
        // Nothing older: nothing to go back to.
        let only = [
            record(
                "rb",
                "succeeded",
                Some("rollback of r1"),
                &[("api", "a", "0")],
            ),
            record("r1", "succeeded", None, &[("api", "0", "a")]),
        ];
        let err = steps(&only, &names(&["api"]), None).unwrap_err();
        assert!(err.contains("nothing to roll back"), "{err}");
    }

    #[test]
    fn to_a_named_release() {
        let records = [
            record("r2", "succeeded", None, &[("api", "a", "b")]),
            record(
                "r1",
                "succeeded",
                None,
                &[("api", "0", "a"), ("web", "x", "y")],
            ),
            record("r0", "failed", None, &[("api", "0", "z")]),
        ];
        let got = steps(&records, &names(&["api"]), Some("r1")).unwrap();
        assert_eq!(
            got,
            [Step {
                of: "r1".into(),
                reason: "rollback to r1".into(),
                image: Image::Digest("sha256:a".into()),
                services: names(&["api"])
            }]
        );
        assert!(steps_err(&records, "r0").contains("failed"));
        assert!(steps_err(&records, "r9").contains("no release r9"));
        // An image from before Slipway, by tag.
        assert_eq!(
            image_of("123.dkr.ecr.us-east-1.amazonaws.com/staging/api:v1"),
            Some(Image::Tag("v1".into()))
        );
        assert_eq!(image_of("localhost:5000/api"), None);
    }

    #[test]
    fn a_release_whose_rollback_failed_is_current() {
        // r2's rollback failed: api may still run b, so going back means going to a.
        let records = [
            record("r2", "rollback-failed", None, &[("api", "a", "b")]),
            record("r1", "succeeded", None, &[("api", "0", "a")]),
        ];
        let got = steps(&records, &names(&["api"]), None).unwrap();
        assert_eq!(
            (got[0].of.as_str(), &got[0].image),
            ("r2", &Image::Digest("sha256:a".into()))
        );
    }

    #[test]
    fn after_a_rollback_to_a_release_the_next_goes_back_from_there() {
        // r1 0→a, r2 a→b, r3 b→c, then `--to r1` (c→a): the next rollback undoes that one
        // (back to c), it does not count r1 as undone.
        let records = [
            record(
                "rt",
                "succeeded",
                Some("rollback to r1"),
                &[("api", "c", "a")],
            ),
            record("r3", "succeeded", None, &[("api", "b", "c")]),
            record("r2", "succeeded", None, &[("api", "a", "b")]),
            record("r1", "succeeded", None, &[("api", "0", "a")]),
        ];
        let got = steps(&records, &names(&["api"]), None).unwrap();
        assert_eq!(
            (got[0].of.as_str(), &got[0].image),
            ("rt", &Image::Digest("sha256:c".into()))
        );
        assert_eq!(got[0].reason, "rollback of rt");
    }

    fn steps_err(records: &[DeploymentRecord], to: &str) -> String {
        steps(records, &names(&["api"]), Some(to)).unwrap_err()
    }
}
