//! `plan`: from the execution input to a release — or to "nothing to do", with the reason.

use std::collections::BTreeMap;

use aws_sdk_ecr::types::ImageIdentifier;
use serde_json::Value;

use crate::aws::{aws, Clients};
use crate::config::{Config, ServiceConfig};
use crate::input::{self, DeployRequest, PlanInput, ServiceSelection, Trigger};
use crate::model::{
    DeploymentRecord, ParameterChange, PlanEvent, PlanOutput, Preview, PreviewAction,
    RecordedService, Release, ReleaseResult, ServicePreview, ServiceRelease, Skipped, StackPreview,
    StackRelease,
};
use crate::state;
use crate::steps::{describe_services, Clock};
use crate::StepError;

/// Splits the state machine's `{"input": …, "execution": …}` from a bare input (a direct
/// invoke), which gets an execution id of its own.
fn event_parts(event: Value, clock: &dyn Clock) -> Result<(Value, String), StepError> {
    let wrapped = event
        .as_object()
        .is_some_and(|o| o.len() == 2 && o.contains_key("input") && o.contains_key("execution"));
    if wrapped {
        let e: PlanEvent = super::input(event)?;
        if e.execution.is_empty() {
            return Err(StepError::invalid("execution", "empty execution id"));
        }
        Ok((e.input, e.execution))
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok((
            event,
            format!("direct-{}-{:08x}", clock.now(), nanos ^ std::process::id()),
        ))
    }
}

/// The release id: the execution's name (its ARN's last part), safe for change set names
/// (a letter, then letters, digits and -). A name that had to change to fit (`a_b`, `9x`)
/// also gets a digest of the name itself, so two executions never share an id: `a_b` and
/// `a-b` are different releases.
pub fn release_id(execution: &str) -> String {
    let name = execution.rsplit(':').next().unwrap_or(execution);
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        id.insert_str(0, "r-");
    }
    if id != name {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        id.truncate(100 - 13);
        id.push('-');
        id.push_str(&hex);
    }
    id.truncate(100);
    id
}

/// `plan`: validates the input, loads the configuration, picks the services, resolves the
/// image to its digest in ECR, skips what already runs it, takes the locks and snapshots
/// what runs now. Locks taken are released again if it then fails.
#[tracing::instrument(skip_all)]
pub async fn plan(
    clients: &Clients,
    clock: &dyn Clock,
    event: Value,
) -> Result<PlanOutput, StepError> {
    let (input, execution) = event_parts(event, clock)?;
    let request = match input::parse(input)? {
        PlanInput::NothingToDo { reason } => {
            tracing::info!(%reason, "nothing to do");
            return Ok(PlanOutput::NothingToDo {
                reason,
                skipped: vec![],
            });
        }
        PlanInput::Deploy { request } => request,
        PlanInput::Recover {
            execution: ended,
            status,
            input,
            started_ms,
        } => {
            let ended = Ended {
                execution: &ended,
                status: &status,
                input,
                started_ms,
            };
            return recover(clients, clock, &execution, ended).await;
        }
    };
    let config = state::load_config(clients).await?;
    let mut skipped = Vec::new();
    let chosen = choose_services(&config, &request, &mut skipped)?;
    if chosen.is_empty() {
        let reason = match &request.services {
            ServiceSelection::Repository { name } if skipped.is_empty() => {
                format!("no configured service uses the ECR repository {name}")
            }
            _ => "no service to deploy".to_owned(),
        };
        return Ok(PlanOutput::NothingToDo { reason, skipped });
    }

    // Resolve the image per repository (a digest is checked to exist).
    let mut images: BTreeMap<String, Resolved> = BTreeMap::new();
    for s in &chosen {
        if !images.contains_key(&s.repository) {
            let resolved = resolve_image(clients, &s.repository, &request).await?;
            images.insert(s.repository.clone(), resolved);
        }
    }
    // Push time decides between ECR pushes ("the later image wins", whatever order their
    // executions plan in). A manual request names its image on purpose — an older one too,
    // to go back — so it is never superseded; it waits its turn like any other.
    let by_push_time = matches!(request.trigger, Trigger::EcrPush { .. });

    let now = clock.now();
    let id = release_id(&execution);
    let who = Superseding {
        owner: &execution,
        config: &config,
        request: &request,
        chosen: &chosen,
        images: &images,
        id: &id,
        now,
    };
    let ttl = i64::from(config.lock.ttl_minutes) * 60;
    let mut locked: Vec<String> = Vec::new();
    // One lock per service and one per configured stack (so two releases never update — or
    // roll back — one stack at the same time, and whether a stack changes is decided under
    // its lock), all taken in one order for everyone: no deadlock. The locks of stacks the
    // release leaves unchanged go back once the snapshot says so.
    let mut keys: Vec<(String, Option<&Resolved>)> = chosen
        .iter()
        .map(|s| (s.name.clone(), Some(&images[&s.repository])))
        .chain(
            config
                .stacks
                .iter()
                .map(|st| (state::stack_lock(&st.name), None)),
        )
        .collect();
    // Services (by name) before stacks (by name): a second push of the same digest meets the
    // service's lock first and ends as nothing to do instead of waiting for the stack.
    keys.sort_by(|a, b| (a.1.is_none(), &a.0).cmp(&(b.1.is_none(), &b.0)));
    let first = images.values().next();
    for (key, image) in &keys {
        let claim = state::Claim {
            owner: &execution,
            release: &id,
            digest: image.or(first).map_or("", |i| i.digest.as_str()),
            pushed_at: image.or(first).and_then(|i| i.pushed_at),
        };
        let holder = match state::acquire_lock(clients, key, &claim, now, ttl).await {
            Ok(Ok(())) => {
                locked.push(key.clone());
                continue;
            }
            Ok(Err(holder)) => holder,
            Err(e) => {
                release_all(clients, &locked, &execution).await;
                return Err(e);
            }
        };
        release_all(clients, &locked, &execution).await;
        if image.is_some_and(|i| holder.digest == i.digest) {
            if by_push_time {
                leave_queues(clients, &chosen, &execution).await?;
            }
            return Ok(PlanOutput::NothingToDo {
                reason: format!(
                    "{key} is already being deployed to {} by {}",
                    claim.digest, holder.owner
                ),
                skipped,
            });
        }
        if by_push_time && image.is_some() && later(holder.pushed_at, claim.pushed_at) {
            let reason = format!(
                "superseded: {key} is being deployed to {}, pushed after {} ({}), by {}",
                holder.digest,
                claim.digest,
                pushed_times(holder.pushed_at, claim.pushed_at),
                holder.owner
            );
            return superseded(clients, &who, reason, skipped).await;
        }
        if by_push_time {
            // Queue up (or renew the place) as the newest image for each of its services,
            // whichever lock is busy, unless a later push already waits: then that one
            // deploys next and this one has nothing to do.
            for s in &chosen {
                let mine = state::Claim {
                    digest: &images[&s.repository].digest,
                    pushed_at: images[&s.repository].pushed_at,
                    ..claim
                };
                let waiting = state::wait_for_lock(clients, &s.name, &mine, now).await?;
                if let Some(w) = waiting.filter(|w| live_later_waiter(w, &mine, now)) {
                    let reason = format!(
                        "superseded: {} (pushed after {}, {}) is waiting to deploy {} too",
                        w.digest,
                        mine.digest,
                        pushed_times(Some(w.pushed_at), mine.pushed_at),
                        s.name
                    );
                    return superseded(clients, &who, reason, skipped).await;
                }
            }
        }
        let what = match key.strip_prefix(state::STACK_LOCK_PREFIX) {
            Some(stack) => format!("stack {stack} is being updated"),
            None => format!("service {key} is being deployed"),
        };
        let reason = format!(
            "{what} by {} (release {}, {}); waiting for it, at most until its lock expires at {} (epoch seconds)",
            holder.owner, holder.release, holder.digest, holder.expires_at
        );
        tracing::info!(%reason, "waiting for a lock");
        return Ok(PlanOutput::Wait {
            reason,
            until: holder.expires_at,
        });
    }
    if by_push_time {
        // Every lock is ours. A later push that queued for one of them while its holder
        // deployed goes next instead of this one.
        let queue = async {
            for s in &chosen {
                let claim = state::Claim {
                    owner: &execution,
                    release: &id,
                    digest: &images[&s.repository].digest,
                    pushed_at: images[&s.repository].pushed_at,
                };
                let waiting = state::waiter(clients, &s.name).await?;
                if let Some(w) = waiting.filter(|w| live_later_waiter(w, &claim, now)) {
                    return Ok(Some(format!(
                        "superseded: {} (pushed after {}, {}) is waiting to deploy {} too",
                        w.digest,
                        claim.digest,
                        pushed_times(Some(w.pushed_at), claim.pushed_at),
                        s.name
                    )));
                }
                state::stop_waiting(clients, &s.name, &execution).await?;
            }
            Ok::<_, StepError>(None)
        };
        match queue.await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                release_all(clients, &locked, &execution).await;
                return superseded(clients, &who, reason, skipped).await;
            }
            Err(e) => {
                release_all(clients, &locked, &execution).await;
                return Err(e);
            }
        }
    }

    let outcome = snapshot(
        clients,
        &config,
        &chosen,
        &images,
        by_push_time,
        &mut skipped,
    )
    .await;
    let (services, stacks) = match outcome {
        Ok(v) => v,
        Err(e) => {
            release_all(clients, &locked, &execution).await;
            return Err(e);
        }
    };
    // Locks of services that turned out to need nothing, and of stacks whose parameters the
    // release does not change, go back at once (all of them when nothing is left to deploy).
    let idle: Vec<String> = locked
        .iter()
        .filter(|n| {
            services.is_empty()
                || match n.strip_prefix(state::STACK_LOCK_PREFIX) {
                    Some(stack) => !stacks.iter().any(|st| st.name == stack),
                    None => !services.iter().any(|s| &s.name == *n),
                }
        })
        .cloned()
        .collect();
    // A lock that cannot go back here would stay until its TTL (finish releases only what the
    // release holds): fail, and Plan's retry gives them back (the locks are this execution's).
    for name in &idle {
        state::release_lock(clients, name, &execution).await?;
    }
    if services.is_empty() {
        if let Some(later) = skipped.iter().find(|s| s.reason.starts_with(SUPERSEDED)) {
            let reason = format!("{}: {}", later.service, later.reason);
            return superseded(clients, &who, reason, skipped).await;
        }
        if by_push_time {
            leave_queues(clients, &chosen, &execution).await?;
        }
        return Ok(PlanOutput::NothingToDo {
            reason: "every service already runs this image".into(),
            skipped,
        });
    }

    let mut group_ids: Vec<u32> = services.iter().map(|s| s.group).collect();
    group_ids.sort_unstable();
    group_ids.dedup();
    let groups = group_ids
        .iter()
        .map(|g| {
            services
                .iter()
                .filter(|s| s.group == *g)
                .map(|s| s.name.clone())
                .collect()
        })
        .collect();
    // An alarm already in ALARM fails the release before anything moves (its locks go back;
    // PlanFailed records it).
    let alarms = config.alarms_for(services.iter().map(|s| s.name.as_str()));
    if let Err(e) = crate::alarms::check(
        &clients.cloudwatch,
        &alarms,
        "already in ALARM when the release started, nothing was moved",
    )
    .await
    {
        release_all(clients, &locked, &execution).await;
        return Err(e);
    }
    let release = Release {
        id,
        owner: execution,
        environment: config.environment.clone(),
        trigger: request.trigger.clone(),
        image: request.image.clone(),
        started_at: now,
        deadline: now + i64::from(config.deadline_minutes) * 60,
        bake_seconds: config.bake_seconds,
        rollback_minutes: config.rollback_minutes,
        stability_wait: config.stability_wait,
        services,
        groups,
        stacks,
        skipped,
        notifications: config.notifications.clone(),
        executions: Vec::new(),
        alarms,
    };
    // Stored before any step moves anything: a stopped or timed-out execution is recovered
    // from this alone.
    if let Err(e) = state::put_release(clients, &release.owner, &release).await {
        release_all(clients, &locked, &release.owner).await;
        return Err(e);
    }
    tracing::info!(release = %release.id, services = release.services.len(), stacks = release.stacks.len(), "planned");
    Ok(PlanOutput::Deploy {
        release: Box::new(release),
    })
}

/// What a release of `input` would do, read from the account without changing anything:
/// `slipway plan`'s dry run. It resolves the image, reads what runs and each stack's
/// parameters exactly as [`plan`] does, and looks at the locks without taking them.
pub async fn preview(
    clients: &Clients,
    clock: &dyn Clock,
    input: Value,
) -> Result<Preview, StepError> {
    let request = match input::parse(input)? {
        PlanInput::Deploy { request } => request,
        PlanInput::NothingToDo { reason } => {
            return Ok(Preview {
                services: vec![],
                stacks: vec![],
                nothing_to_do: Some(reason),
                alarms: vec![],
            })
        }
        PlanInput::Recover { execution, .. } => {
            return Err(StepError::invalid(
                "input",
                format!("the status-change event of {execution} starts a recovery of that execution, not a release: there is nothing to preview"),
            ))
        }
    };
    let config = state::load_config(clients).await?;
    let mut pattern_skips = Vec::new();
    let chosen = choose_services(&config, &request, &mut pattern_skips)?;
    let mut considered = chosen.clone();
    considered.extend(
        pattern_skips
            .iter()
            .filter_map(|k| config.service(&k.service)),
    );
    considered.sort_by_key(|s| config.services.iter().position(|c| c.name == s.name));
    let now_running = running(clients, &config, &considered).await?;
    let mut images: BTreeMap<String, Resolved> = BTreeMap::new();
    for s in &chosen {
        if !images.contains_key(&s.repository) {
            let resolved = resolve_image(clients, &s.repository, &request).await?;
            images.insert(s.repository.clone(), resolved);
        }
    }
    let by_push_time = matches!(request.trigger, Trigger::EcrPush { .. });
    let mut skipped = Vec::new();
    let (moving, stacks) = snapshot(
        clients,
        &config,
        &chosen,
        &images,
        by_push_time,
        &mut skipped,
    )
    .await?;
    let now = clock.now();
    let held = |holder: Option<state::LockHolder>| {
        holder.filter(|h| h.expires_at > now).map(|h| {
            format!(
                "locked by {} (release {}, {}) until {} (epoch seconds): the release would wait for it",
                h.owner, h.release, h.digest, h.expires_at
            )
        })
    };
    let mut services = Vec::new();
    for (s, now_on) in considered.iter().zip(now_running) {
        let (to, action, reason) =
            if let Some(k) = pattern_skips.iter().find(|k| k.service == s.name) {
                (None, PreviewAction::SkipTagPattern, Some(k.reason.clone()))
            } else {
                let image = &images[&s.repository];
                let to = Some(format!("{}@{}", image.uri, image.digest));
                if moving.iter().any(|m| m.name == s.name) {
                    match held(state::lock_holder(clients, &s.name).await?) {
                        Some(why) => (to, PreviewAction::SkipLocked, Some(why)),
                        None => (to, PreviewAction::Deploy, None),
                    }
                } else {
                    let why = skipped
                        .iter()
                        .find(|k| k.service == s.name)
                        .map(|k| k.reason.clone());
                    let action = if why.as_deref().is_some_and(|w| w.starts_with(SUPERSEDED)) {
                        PreviewAction::SkipSuperseded
                    } else {
                        PreviewAction::SkipSameDigest
                    };
                    (to, action, why)
                }
            };
        let strategy = s.staged().then(|| {
            let check = s.health.as_ref().is_some_and(|h| h.tests_before_traffic());
            format!(
                "{}{}",
                s.strategy().ecs(),
                if check {
                    ", Slipway's check through the test listener at POST_TEST_TRAFFIC_SHIFT"
                } else {
                    ""
                }
            )
        });
        services.push(ServicePreview {
            name: s.name.clone(),
            from: now_on.image,
            to,
            action,
            reason,
            strategy,
        });
    }
    let mut previews = Vec::new();
    for st in stacks {
        let parameters = st
            .parameters
            .iter()
            .filter_map(|(k, to)| {
                let from = st.parameters_before.get(k).cloned().unwrap_or_default();
                (&from != to).then(|| {
                    (
                        k.clone(),
                        ParameterChange {
                            from,
                            to: to.clone(),
                        },
                    )
                })
            })
            .collect();
        previews.push(StackPreview {
            name: st.name.clone(),
            parameters,
            locked: held(state::lock_holder(clients, &state::stack_lock(&st.name)).await?),
            changes: None,
            release: Some(st),
        });
    }
    // plan takes every configured stack's lock before it knows which change: a stack the
    // release leaves alone still makes it wait while another release holds it.
    if !moving.is_empty() {
        for st in &config.stacks {
            if previews.iter().any(|p| p.name == st.name) {
                continue;
            }
            if let Some(why) =
                held(state::lock_holder(clients, &state::stack_lock(&st.name)).await?)
            {
                previews.push(StackPreview {
                    name: st.name.clone(),
                    parameters: Default::default(),
                    locked: Some(why),
                    changes: None,
                    release: None,
                });
            }
        }
    }
    // The alarms a release of the moving services would watch, as they are now.
    let watched = config.alarms_for(moving.iter().map(|s| s.name.as_str()));
    let alarms = crate::alarms::states(&clients.cloudwatch, &watched)
        .await?
        .into_iter()
        .map(|a| crate::model::AlarmPreview {
            name: a.name,
            state: a.state,
            reason: a.reason,
        })
        .collect();
    Ok(Preview {
        services,
        stacks: previews,
        nothing_to_do: None,
        alarms,
    })
}

/// Recovery of execution `ended` (status `ABORTED` or `TIMED_OUT`): the release it stored,
/// to be rolled back, recorded and announced by this execution under the error
/// `Slipway.Aborted` / `Slipway.TimedOut`. This execution takes the release's locks over and
/// becomes its owner (finish releases them as such); the release is stored again under this
/// execution, so that stopping the recovery is recovered in turn.
///
/// When `ended` stored no release, nothing moved. Whatever locks and places in a queue it
/// held go back now rather than when they expire; and if it held any — it ended in plan or
/// while waiting for a lock (a finished execution holds nothing) — a deploy request in its
/// input is recorded as `aborted` / `timed-out`, saying nothing was deployed, and
/// announced. Nothing to do when it held nothing (it ended before it took anything, it was
/// not a Slipway deployment, or it already finished).
async fn recover(
    clients: &Clients,
    clock: &dyn Clock,
    execution: &str,
    ended: Ended<'_>,
) -> Result<PlanOutput, StepError> {
    let Ended {
        execution: ended,
        status,
        input,
        started_ms,
    } = ended;
    let (error_name, how) = if status == "TIMED_OUT" {
        ("Slipway.TimedOut", "timed out (its TimeoutSeconds passed)")
    } else {
        ("Slipway.Aborted", "was stopped (StopExecution)")
    };
    let Some(release) = state::get_release(clients, ended).await? else {
        let config = state::load_config(clients).await?;
        // Read first, record, release last: a retry of this step after a failure part-way
        // still sees what the execution held, and so still writes (or completes) its record.
        let held = state::held_by(clients, &config, ended).await?;
        let mut reason = format!(
            "execution {ended} ({status}) left no unfinished release in the state table {}: it ended before plan stored one, or its finish step ran",
            clients.table
        );
        if !held.locks.is_empty() {
            reason.push_str(&format!(
                "; released the locks it held: {}",
                held.locks.join(", ")
            ));
        }
        if !held.queued_for.is_empty() {
            reason.push_str(&format!(
                "; gave up its place in the queue for {}",
                held.queued_for.join(", ")
            ));
        }
        let request = match input.map(crate::input::parse) {
            Some(Ok(PlanInput::Deploy { request })) if !held.is_empty() => Some(request),
            _ => None,
        };
        if let Some(request) = request {
            let why = if !held.locks.is_empty() || held.queued_for.is_empty() {
                format!("execution {ended} {how} in plan, before its release started: nothing was deployed")
            } else {
                format!(
                    "execution {ended} {how} while waiting for the lock of {}, held by another release: nothing was deployed",
                    held.queued_for.join(", ")
                )
            };
            let record = super::finish::record_unstarted(
                clients,
                clock,
                Some(&config),
                super::finish::Unstarted {
                    execution: ended,
                    request,
                    started_at: started_ms.map_or_else(|| clock.now(), |ms| ms.div_euclid(1000)),
                    result: if status == "TIMED_OUT" {
                        ReleaseResult::TimedOut
                    } else {
                        ReleaseResult::Aborted
                    },
                    reason: why.clone(),
                    error: Some(serde_json::json!({"Error": error_name, "Cause": why})),
                },
            )
            .await?;
            reason.push_str(&format!(
                "; recorded release {} as {}",
                record.release, record.result
            ));
        }
        state::release_locks_of(clients, &config, ended).await?;
        return Ok(PlanOutput::NothingToDo {
            reason,
            skipped: vec![],
        });
    };
    if let Some(record) = state::record_of(clients, release.started_at, &release.id).await? {
        return Ok(PlanOutput::NothingToDo {
            reason: format!(
                "release {} of execution {ended} is already recorded as {}",
                release.id, record.result
            ),
            skipped: vec![],
        });
    }
    let mut release = release;
    if execution != release.owner {
        // The recovery takes the release's locks over from the ended execution, with a fresh
        // lifetime, so nothing else deploys these services and stacks while it rolls back.
        // Another recovery of the same release holding them (the event delivered twice)
        // means this one has nothing to do.
        let config = state::load_config(clients).await?;
        let ttl = i64::from(config.lock.ttl_minutes) * 60;
        let names = release
            .services
            .iter()
            .map(|s| s.name.clone())
            .chain(release.stacks.iter().map(|st| state::stack_lock(&st.name)));
        for name in names {
            let taken = state::take_over_lock(
                clients,
                &name,
                &release.owner,
                execution,
                &release.id,
                clock.now(),
                ttl,
            )
            .await?;
            match taken {
                Ok(()) => {}
                Err(holder) if holder.release == release.id => {
                    return Ok(PlanOutput::NothingToDo {
                        reason: format!(
                            "release {} of execution {ended} is already being recovered by {}",
                            release.id, holder.owner
                        ),
                        skipped: vec![],
                    });
                }
                // Expired and taken by another release since: roll-back leaves alone what
                // that release moved (it checks every service and parameter it restores).
                Err(holder) => {
                    tracing::warn!(lock = %name, holder = %holder.owner, "lock now held by another release");
                }
            }
        }
        if !release.executions.iter().any(|e| e == &release.owner) {
            release.executions.push(release.owner.clone());
        }
        release.executions.push(execution.to_owned());
        release.owner = execution.to_owned();
        state::put_release(clients, execution, &release).await?;
    }
    tracing::warn!(release = %release.id, %ended, %status, "recovering");
    Ok(PlanOutput::Recover {
        error: serde_json::json!({
            "Error": error_name,
            "Cause": format!(
                "execution {ended} {how} before it finished release {}; recovered by {execution}: whatever it moved is rolled back",
                release.id
            ),
        }),
        release: Box::new(release),
    })
}

/// The execution a recovery is for, as its status-change event describes it.
struct Ended<'a> {
    execution: &'a str,
    status: &'a str,
    input: Option<Value>,
    started_ms: Option<i64>,
}

/// A repository's image as plan resolved it.
#[derive(Debug, Clone)]
struct Resolved {
    /// The repository's URI.
    uri: String,
    /// The digest to deploy.
    digest: String,
    /// When ECR received it (`imagePushedAt`), epoch milliseconds.
    pushed_at: Option<i64>,
}

/// A skipped service's reason starts with this when a later push of its repository runs.
const SUPERSEDED: &str = "superseded";

/// `theirs` was pushed after `ours` (both known). Equal times decide nothing: ECR's
/// `imagePushedAt` is a timestamp, and two pushes can share one.
fn later(theirs: Option<i64>, ours: Option<i64>) -> bool {
    matches!((theirs, ours), (Some(t), Some(o)) if t > o)
}

fn pushed_times(theirs: Option<i64>, ours: Option<i64>) -> String {
    let at = |t: Option<i64>| {
        t.map_or_else(
            || "unknown".to_owned(),
            |t| format!("{}.{:03}", t / 1000, t % 1000),
        )
    };
    format!("pushed at {} and {} (epoch seconds)", at(theirs), at(ours))
}

/// `w` is another execution's live place in the queue, for an image pushed after `claim`'s.
fn live_later_waiter(w: &state::Waiter, claim: &state::Claim<'_>, now: i64) -> bool {
    w.owner != claim.owner && w.expires_at >= now && later(Some(w.pushed_at), claim.pushed_at)
}

/// What a superseded release's record is made of.
struct Superseding<'a> {
    owner: &'a str,
    config: &'a Config,
    request: &'a DeployRequest,
    chosen: &'a [&'a ServiceConfig],
    images: &'a BTreeMap<String, Resolved>,
    id: &'a str,
    now: i64,
}

/// Gives up `owner`'s places in the queues of `chosen` (a push that queued while it waited
/// and then has nothing to do must not hold a place a later turn would read as live).
async fn leave_queues(
    clients: &Clients,
    chosen: &[&ServiceConfig],
    owner: &str,
) -> Result<(), StepError> {
    for s in chosen {
        state::stop_waiting(clients, &s.name, owner).await?;
    }
    Ok(())
}

/// An ECR push older than the image running or about to run: nothing moves, and the record
/// (`superseded`) says why, so `slipway history` accounts for every push. Like CodePipeline's
/// superseded executions, a superseded push is not brought back if the later one then fails
/// and is rolled back: that failure is recorded and announced, and the next push decides.
async fn superseded(
    clients: &Clients,
    who: &Superseding<'_>,
    reason: String,
    skipped: Vec<Skipped>,
) -> Result<PlanOutput, StepError> {
    let record = DeploymentRecord {
        release: who.id.to_owned(),
        environment: who.config.environment.clone(),
        trigger: who.request.trigger.clone(),
        result: ReleaseResult::Superseded,
        tag: who.request.image.tag.clone(),
        reason: Some(reason.clone()),
        error: None,
        services: who
            .chosen
            .iter()
            .map(|s| {
                let image = &who.images[&s.repository];
                RecordedService {
                    service: s.name.clone(),
                    from: String::new(),
                    to: format!("{}@{}", image.uri, image.digest),
                    checks: String::new(),
                }
            })
            .collect(),
        stacks: Vec::new(),
        started_at: who.now,
        finished_at: who.now,
        timings: BTreeMap::new(),
        rollback: None,
        announced: BTreeMap::new(),
        why: Vec::new(),
    };
    state::put_record(clients, &record).await?;
    leave_queues(clients, who.chosen, who.owner).await?;
    tracing::info!(%reason, "superseded");
    Ok(PlanOutput::NothingToDo { reason, skipped })
}

async fn release_all(clients: &Clients, services: &[String], owner: &str) {
    for s in services {
        if let Err(e) = state::release_lock(clients, s, owner).await {
            // The lock expires on its own; say so rather than hide the original error.
            tracing::error!(service = %s, error = %e, "could not release a lock; it will expire");
        }
    }
}

/// The configured services the request names, minus those an ECR push must not deploy.
fn choose_services<'a>(
    config: &'a Config,
    request: &DeployRequest,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<&'a ServiceConfig>, StepError> {
    match &request.services {
        ServiceSelection::All => Ok(config.services.iter().collect()),
        ServiceSelection::Named { names } => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                config.service(n).ok_or_else(|| {
                    let known: Vec<&str> =
                        config.services.iter().map(|s| s.name.as_str()).collect();
                    StepError::invalid(
                        format!("services[{i}]"),
                        format!(
                            "no service named {n:?} in the {} configuration (configured: {})",
                            config.environment,
                            known.join(", ")
                        ),
                    )
                })
            })
            .collect(),
        ServiceSelection::Repository { name } => {
            let mut chosen = Vec::new();
            for s in config.services.iter().filter(|s| &s.repository == name) {
                let pattern = s
                    .tag_pattern
                    .as_deref()
                    .map(regex_lite::Regex::new)
                    .transpose();
                let pattern = pattern.map_err(|e| {
                    StepError::invalid("config", format!("services.{}.tag_pattern: {e}", s.name))
                })?;
                match (&pattern, &request.image.tag) {
                    (Some(p), Some(tag)) if !p.is_match(tag) => skipped.push(Skipped {
                        service: s.name.clone(),
                        reason: format!(
                            "tag {tag:?} does not match its tag_pattern {:?}",
                            p.as_str()
                        ),
                    }),
                    (Some(p), None) => skipped.push(Skipped {
                        service: s.name.clone(),
                        reason: format!(
                            "untagged push; its tag_pattern {:?} needs a tag",
                            p.as_str()
                        ),
                    }),
                    _ => chosen.push(s),
                }
            }
            Ok(chosen)
        }
    }
}

/// The repository's URI, the digest to deploy and when it was pushed.
async fn resolve_image(
    clients: &Clients,
    repository: &str,
    request: &DeployRequest,
) -> Result<Resolved, StepError> {
    let not_found = |what: String| {
        StepError::invalid(
            if request.image.digest.is_some() {
                "digest"
            } else {
                "tag"
            },
            what,
        )
    };
    let repos = clients
        .ecr
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await
        .map_err(aws("ecr:DescribeRepositories"))
        .map_err(|e| {
            let code = e.code.clone();
            e.step(|m| {
                if code == "RepositoryNotFoundException" {
                    StepError::invalid(
                        "config",
                        format!("ECR repository {repository} does not exist ({m})"),
                    )
                } else {
                    StepError::invalid("config", m)
                }
            })
        })?;
    // An ECR push event names the account it came from; only the account that owns the
    // repository pushes to it, so a push "from" another account is a forged input (the
    // installed rule also matches only this account's events).
    if let (Trigger::EcrPush { account, .. }, Some(registry)) = (
        &request.trigger,
        repos.repositories().first().and_then(|r| r.registry_id()),
    ) {
        if account != registry {
            return Err(StepError::invalid(
                "account",
                format!("the ECR push event comes from account {account}, but repository {repository} belongs to account {registry}: only its own account's pushes deploy it"),
            ));
        }
    }
    let uri = repos
        .repositories()
        .first()
        .and_then(|r| r.repository_uri())
        .ok_or_else(|| {
            StepError::invalid(
                "config",
                format!("ECR repository {repository} does not exist"),
            )
        })?
        .to_owned();
    let id = match (&request.image.digest, &request.image.tag) {
        (Some(d), _) => ImageIdentifier::builder().image_digest(d).build(),
        (None, Some(t)) => ImageIdentifier::builder().image_tag(t).build(),
        (None, None) => return Err(StepError::invalid("tag", "missing")),
    };
    let out = clients
        .ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(id)
        .send()
        .await
        .map_err(aws("ecr:DescribeImages"))
        .map_err(|e| {
            let code = e.code.clone();
            e.step(|m| {
                if code == "ImageNotFoundException" {
                    let which = request
                        .image
                        .digest
                        .clone()
                        .or(request.image.tag.clone())
                        .unwrap_or_default();
                    not_found(format!("{which} is not in the ECR repository {repository}"))
                } else {
                    StepError::invalid("config", m)
                }
            })
        })?;
    let detail = out
        .image_details()
        .first()
        .ok_or_else(|| not_found(format!("no image in {repository} matches")))?;
    let digest = detail
        .image_digest()
        .ok_or_else(|| not_found(format!("no image in {repository} matches")))?
        .to_owned();
    Ok(Resolved {
        uri,
        digest,
        pushed_at: pushed_at(detail),
    })
}

/// `imagePushedAt` in epoch milliseconds.
fn pushed_at(detail: &aws_sdk_ecr::types::ImageDetail) -> Option<i64> {
    detail.image_pushed_at().and_then(|t| t.to_millis().ok())
}

/// When ECR received `digest` of `repository`, if it still has it.
async fn pushed_at_of(
    clients: &Clients,
    repository: &str,
    digest: &str,
) -> Result<Option<i64>, StepError> {
    let out = clients
        .ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_digest(digest).build())
        .send()
        .await
        .map_err(aws("ecr:DescribeImages"));
    match out {
        Ok(out) => Ok(out.image_details().first().and_then(pushed_at)),
        // Deleted since (lifecycle policy): its push time is unknown, so it decides nothing.
        Err(e) if e.code == "ImageNotFoundException" => Ok(None),
        Err(e) => Err(e.step(|m| StepError::invalid("config", m))),
    }
}

type Snapshot = (Vec<ServiceRelease>, Vec<StackRelease>);

/// What runs now: each service's task definition and image (services already on the digest
/// are skipped), each stack's parameters (a rollback restores them with UsePreviousTemplate:
/// a release never changes a template, so none is kept). A stack whose parameters the release
/// does not change is left out.
async fn snapshot(
    clients: &Clients,
    config: &Config,
    chosen: &[&ServiceConfig],
    images: &BTreeMap<String, Resolved>,
    by_push_time: bool,
    skipped: &mut Vec<Skipped>,
) -> Result<Snapshot, StepError> {
    let now_running = running(clients, config, chosen).await?;
    let mut services = Vec::new();
    for (
        s,
        Running {
            task_definition: td_arn,
            container,
            image: current,
            ecs_strategy,
        },
    ) in chosen.iter().zip(now_running)
    {
        let Resolved {
            uri,
            digest,
            pushed_at,
        } = &images[&s.repository];
        if current.ends_with(&format!("@{digest}")) {
            skipped.push(Skipped {
                service: s.name.clone(),
                reason: format!("already runs {digest}"),
            });
            continue;
        }
        // A push older than the image the service runs (a later push already deployed, or
        // this execution's event arrived late) is skipped.
        let running = current
            .strip_prefix(uri.as_str())
            .and_then(|rest| rest.strip_prefix('@'));
        if let Some(running) = running.filter(|_| by_push_time) {
            let theirs = pushed_at_of(clients, &s.repository, running).await?;
            if later(theirs, *pushed_at) {
                skipped.push(Skipped {
                    service: s.name.clone(),
                    reason: format!(
                        "{SUPERSEDED}: it runs {running}, pushed after {digest} ({})",
                        pushed_times(theirs, *pushed_at)
                    ),
                });
                continue;
            }
        }
        services.push(ServiceRelease {
            name: s.name.clone(),
            cluster: config.cluster.clone(),
            ecs_service: s.ecs_service().to_owned(),
            container,
            repository: s.repository.clone(),
            image: format!("{uri}@{digest}"),
            digest: digest.clone(),
            previous_task_definition: td_arn,
            previous_image: current,
            group: s.group,
            health: s.health.clone(),
            target_group_arn: s.target_group_arn.clone(),
            stack: config.owning_stack(&s.name).map(|st| st.name.clone()),
            to_rolling: ecs_strategy.as_deref().is_some_and(|e| e != "ROLLING") && !s.staged(),
            staged: s.staged().then(|| crate::model::StagedRollout {
                strategy: s.strategy().ecs().to_owned(),
                bake_minutes: s
                    .bake_minutes
                    .unwrap_or(crate::config::DEFAULT_BAKE_MINUTES),
                step_percent: s.step_percent,
                step_minutes: s.step_minutes,
                hook: s
                    .health
                    .as_ref()
                    .filter(|h| h.tests_before_traffic())
                    .map(crate::config::HealthConfig::through_test_listener),
            }),
        });
    }

    let mut stacks = Vec::new();
    if !services.is_empty() {
        for st in &config.stacks {
            let out = clients
                .cloudformation
                .describe_stacks()
                .stack_name(&st.name)
                .send()
                .await
                .map_err(aws("cloudformation:DescribeStacks"))
                .map_err(|e| {
                    e.step(|m| StepError::invalid("config", format!("stack {}: {m}", st.name)))
                })?;
            let stack = out.stacks().first().ok_or_else(|| {
                StepError::invalid("config", format!("stack {} does not exist", st.name))
            })?;
            // Without RoleARN in a request CloudFormation acts through the role attached to the
            // stack (CreateChangeSet API reference): Slipway passes, and may pass, only the
            // configured one, so an attached role must be the configured one.
            if let Some(attached) = stack.role_arn() {
                if st.role_arn.as_deref() != Some(attached) {
                    return Err(StepError::invalid(
                        "config",
                        format!(
                            "stack {}: CloudFormation acts through its service role {attached}, which slipway.toml does not name: set role_arn = \"{attached}\" in its [[stacks]] table and run `slipway bootstrap` again",
                            st.name
                        ),
                    ));
                }
            }
            let before = super::stack_parameters(stack);
            let mut next = before.clone();
            for (key, value) in &st.parameters {
                let v = match value.strip_prefix("image:") {
                    Some(svc) => match services.iter().find(|s| s.name == svc) {
                        Some(s) => s.image.clone(),
                        None => continue, // not moving: keep its value
                    },
                    None => value.clone(),
                };
                if !before.contains_key(key) {
                    return Err(StepError::invalid(
                        "config",
                        format!(
                            "stacks.{}.parameters.{key}: the stack has no such parameter",
                            st.name
                        ),
                    ));
                }
                next.insert(key.clone(), v);
            }
            // NoEcho values read back masked, so a release must not set one: it could not
            // put the old value back on rollback.
            let summary = clients
                .cloudformation
                .get_template_summary()
                .stack_name(&st.name)
                .send()
                .await
                .map_err(aws("cloudformation:GetTemplateSummary"))
                .map_err(|e| {
                    e.step(|m| StepError::invalid("config", format!("stack {}: {m}", st.name)))
                })?;
            for p in summary.parameters() {
                let key = p.parameter_key().unwrap_or_default();
                if p.no_echo() == Some(true) && st.parameters.contains_key(key) {
                    return Err(StepError::invalid(
                        "config",
                        format!("stacks.{}.parameters.{key}: the parameter is NoEcho, so its value reads back as **** and a rollback could not restore it; leave it out of the release", st.name),
                    ));
                }
            }
            // Nothing to set: the update would be an empty change set (the template stays,
            // UsePreviousTemplate), so the release leaves the stack alone — no change set, no
            // DeployStacks call, no rollback to do there.
            if next == before {
                tracing::info!(stack = %st.name, "no parameter changes: not updated");
                continue;
            }
            // Only a stack the release updates must be idle: another operation on one it
            // leaves alone (a `cdk deploy`) holds up nothing.
            let status = stack
                .stack_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            if status.ends_with("_IN_PROGRESS") {
                return Err(StepError::Locked(format!(
                    "stack {} is {status}: another operation is running on it",
                    st.name
                )));
            }

            stacks.push(StackRelease {
                name: st.name.clone(),
                parameters_before: before,
                parameters: next,
                capabilities: st
                    .capabilities
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
                role_arn: st.role_arn.clone(),
            });
        }
    }
    Ok((services, stacks))
}

/// What a service runs now.
struct Running {
    /// Its task definition's ARN.
    task_definition: String,
    /// The container a release replaces the image of.
    container: String,
    /// That container's image.
    image: String,
    /// The service's `deploymentConfiguration.strategy`, when ECS says.
    ecs_strategy: Option<String>,
}

/// What each of `chosen` runs now (clear errors for a missing cluster, service or container).
async fn running(
    clients: &Clients,
    config: &Config,
    chosen: &[&ServiceConfig],
) -> Result<Vec<Running>, StepError> {
    let names: Vec<String> = chosen.iter().map(|s| s.ecs_service().to_owned()).collect();
    let described = describe_services(&clients.ecs, &config.cluster, &names)
        .await
        .map_err(|e| {
            let code = e.code.clone();
            let cluster = config.cluster.clone();
            e.step(|m| {
                if code == "ClusterNotFoundException" {
                    StepError::invalid(
                        "config",
                        format!("ECS cluster {cluster} does not exist ({m})"),
                    )
                } else {
                    StepError::invalid("config", m)
                }
            })
        })?;
    let mut out = Vec::new();
    for (s, found) in chosen.iter().zip(described) {
        let service = found.ok_or_else(|| {
            StepError::invalid(
                "config",
                format!(
                    "service {}: ECS service {} not found in cluster {}",
                    s.name,
                    s.ecs_service(),
                    config.cluster
                ),
            )
        })?;
        // ECS's own strategies shift traffic between two target groups through the
        // production (and test) listener rules: the service's owner sets them on every load
        // balancer of the service. A check through the test listener needs its rule.
        let ecs_strategy = service
            .deployment_configuration()
            .and_then(|c| c.strategy())
            .map(|x| x.as_str().to_owned());
        if s.strategy.is_none() && ecs_strategy.as_deref().is_some_and(|e| e != "ROLLING") {
            return Err(StepError::invalid(
                format!("services.{}.strategy", s.name),
                format!(
                    "ECS service {} deploys {} (its deploymentConfiguration.strategy), and slipway.toml names no strategy for it: set strategy = \"blue-green\", \"linear\" or \"canary\" (with its options) to keep ECS's, or strategy = \"rolling\" to switch it to rolling updates",
                    s.ecs_service(),
                    ecs_strategy.as_deref().unwrap_or_default()
                ),
            ));
        }
        if s.staged() {
            let needs_test = s.health.as_ref().is_some_and(|h| h.tests_before_traffic());
            let set = |v: Option<&str>| v.is_some_and(|x| !x.is_empty());
            let ready = !service.load_balancers().is_empty()
                && service.load_balancers().iter().all(|lb| {
                    lb.advanced_configuration().is_some_and(|a| {
                        set(a.alternate_target_group_arn())
                            && set(a.production_listener_rule())
                            && set(a.role_arn())
                            && (!needs_test || set(a.test_listener_rule()))
                    })
                });
            if !ready {
                return Err(StepError::invalid(
                    "config",
                    format!(
                        "service {}: strategy {} needs each load balancer of ECS service {} to have an advancedConfiguration with alternateTargetGroupArn, productionListenerRule and roleArn (and testListenerRule, for its check through the test listener), which its owner sets (CreateService/UpdateService, or the stack's AWS::ECS::Service LoadBalancers)",
                        s.name,
                        s.strategy().ecs(),
                        s.ecs_service()
                    ),
                ));
            }
        }
        let td_arn = service.task_definition().unwrap_or_default().to_owned();
        let td = clients
            .ecs
            .describe_task_definition()
            .task_definition(&td_arn)
            .send()
            .await
            .map_err(aws("ecs:DescribeTaskDefinition"))
            .map_err(|e| {
                e.step(|m| StepError::invalid("config", format!("service {}: {m}", s.name)))
            })?;
        let containers = td
            .task_definition()
            .map(|t| t.container_definitions())
            .unwrap_or_default();
        let container = pick_container(s, &td_arn, containers)?;
        out.push(Running {
            container: container.name().unwrap_or_default().to_owned(),
            image: container.image().unwrap_or_default().to_owned(),
            task_definition: td_arn,
            ecs_strategy,
        });
    }
    Ok(out)
}

/// The container whose image a release replaces.
fn pick_container<'a>(
    s: &ServiceConfig,
    td: &str,
    containers: &'a [aws_sdk_ecs::types::ContainerDefinition],
) -> Result<&'a aws_sdk_ecs::types::ContainerDefinition, StepError> {
    let names: Vec<&str> = containers.iter().filter_map(|c| c.name()).collect();
    match &s.container {
        Some(name) => containers.iter().find(|c| c.name() == Some(name.as_str())).ok_or_else(|| {
            StepError::invalid(
                "config",
                format!("services.{}.container: task definition {td} has no container {name:?} (it has: {})", s.name, names.join(", ")),
            )
        }),
        None if containers.len() == 1 => Ok(&containers[0]),
        None => Err(StepError::invalid(
            "config",
            format!(
                "services.{}.container: task definition {td} has {} containers ({}); name the one to deploy with `container`",
                s.name,
                containers.len(),
                names.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_come_from_execution_names() {
        assert_eq!(
            release_id("arn:aws:states:us-east-1:1:execution:slipway:api-3f2a1bc"),
            "api-3f2a1bc"
        );
        let changed = release_id("9f1c_x");
        assert!(changed.starts_with("r-9f1c-x-"), "{changed}");
        assert_eq!(changed.len(), "r-9f1c-x-".len() + 12);
        // Names that differ only where they were made safe stay different releases.
        assert_ne!(release_id("a_b"), release_id("a-b"));
        assert_eq!(release_id("a-b"), "a-b");
        assert_ne!(release_id("a_b"), release_id("a.b"));
        assert_eq!(release_id("a_b"), release_id("a_b"));
    }

    #[test]
    fn only_a_known_later_push_time_wins() {
        assert!(later(Some(2_000), Some(1_000)));
        assert!(
            !later(Some(1_000), Some(1_000)),
            "one second, two pushes: no winner"
        );
        assert!(!later(Some(1_000), Some(2_000)));
        assert!(!later(None, Some(1_000)));
        assert!(!later(Some(2_000), None));
        assert_eq!(
            pushed_times(Some(1_700_000_000_123), None),
            "pushed at 1700000000.123 and unknown (epoch seconds)"
        );
    }
}
