//! `scripts/bench`: Slipway measured against the deploy job it replaces, on the local test bed
//! (the four-service staging app of `examples/staging`, slipway-sim at the bed's speed). It
//! prints figures and asserts nothing: timings are never test assertions.
//!
//! Times are in simulated seconds unless marked "real": the simulator's clock runs `speed`
//! times faster than real time, the state machine's Waits and timeouts are scaled to it, and
//! a real-time cost here (a Lambda invocation, a health check's interval) weighs `speed`
//! times more in simulated seconds than it would on AWS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slipway_core::{aws::Clients, state};
use slipway_tests::app::App;
use slipway_tests::staging::{self, push, SERVICES, STACKS};
use slipway_tests::{root, Execution, Testbed};

type Result<T> = std::result::Result<T, String>;

/// Public prices, us-east-1: Step Functions Standard $0.025 per 1,000 state transitions
/// (aws.amazon.com/step-functions/pricing); Lambda on arm64 $0.0000133334 per GB-second and
/// $0.20 per million requests (aws.amazon.com/lambda/pricing).
const PRICE_PER_TRANSITION: f64 = 0.025 / 1000.0;
const PRICE_PER_REQUEST: f64 = 0.20 / 1_000_000.0;
const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// The functions' MemorySize in the template (256 MB).
const MEMORY_GB: f64 = 0.25;

/// The staging release's groups (examples/staging/slipway.toml).
const GROUPS: [[&str; 2]; 2] = [["api", "auth"], ["web", "admin"]];

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Real time → the simulator's time.
#[derive(Debug, Clone, Copy)]
struct SimClock {
    speed: f64,
    sim_at: f64,
    real_at: f64,
}

impl SimClock {
    async fn read(bed: &Testbed) -> Self {
        let before = now_secs();
        let v = bed.sim_json("/_sim/clock").await;
        let after = now_secs();
        Self {
            speed: v["speed"].as_f64().unwrap_or(1.0),
            sim_at: v["now"].as_f64().unwrap_or(0.0),
            real_at: (before + after) / 2.0,
        }
    }

    fn sim(&self, real: f64) -> f64 {
        self.sim_at + (real - self.real_at) * self.speed
    }

    /// The simulated time at which `x` entered its `n`th (0-based) state named `state`.
    fn entered(&self, x: &Execution, state: &str, n: usize) -> Option<f64> {
        x.timeline
            .iter()
            .filter(|(s, _)| s == state)
            .nth(n)
            .map(|(_, ms)| self.sim((x.started_at_ms + ms) as f64 / 1000.0))
    }

    fn start(&self, x: &Execution) -> f64 {
        self.sim(x.started_at_ms as f64 / 1000.0)
    }

    fn end(&self, x: &Execution) -> f64 {
        let last = x.timeline.last().map_or(0, |(_, ms)| *ms);
        self.sim((x.started_at_ms + last) as f64 / 1000.0)
    }
}

/// `2026-11-27T06:10:05.123Z` → epoch seconds.
fn parse_time(text: &str) -> Option<f64> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// ECS's deployment events for `ecs_service` between `from` and `to` (simulated seconds):
/// (eventName, time).
fn deployment_events(
    events: &[Value],
    ecs_service: &str,
    from: f64,
    to: f64,
) -> Vec<(String, f64)> {
    events
        .iter()
        .filter(|e| e["detail-type"] == "ECS Deployment State Change")
        .filter(|e| {
            e["resources"][0]
                .as_str()
                .is_some_and(|r| r.ends_with(&format!("/{ecs_service}")))
        })
        .filter_map(|e| {
            let at = parse_time(e["detail"]["updatedAt"].as_str()?)?;
            (at >= from && at <= to).then(|| {
                (
                    e["detail"]["eventName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    at,
                )
            })
        })
        .collect()
}

fn first(events: &[(String, f64)], name: &str) -> Option<f64> {
    events.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
}

/// The calls of each operation between two `/_sim/stats` answers.
fn calls_between(before: &Value, after: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some(calls) = after["calls"].as_object() {
        for (op, n) in calls {
            let was = before["calls"][op].as_u64().unwrap_or(0);
            let d = n.as_u64().unwrap_or(0).saturating_sub(was);
            if d > 0 {
                out.insert(op.clone(), d);
            }
        }
    }
    out
}

fn delta(before: &Value, after: &Value, path: &[&str]) -> u64 {
    let get = |v: &Value| path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
    get(after).saturating_sub(get(before))
}

fn throttled(before: &Value, after: &Value) -> u64 {
    let sum = |v: &Value| -> u64 {
        v["throttled"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    };
    sum(after).saturating_sub(sum(before))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// One measured run of the state machine.
struct Run {
    x: Execution,
    clock: SimClock,
    before: Value,
    after: Value,
    events: Vec<Value>,
}

impl Run {
    async fn of(bed: &Testbed, input: &Value, name: &str) -> Result<Self> {
        let before = bed.sim_json("/_sim/stats").await;
        let clock = SimClock::read(bed).await;
        let x = bed.deploy(input, name).await;
        // An event's rule target may still be answering: let deliveries settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = bed.sim_json("/_sim/stats").await;
        let events = bed
            .sim_json("/_sim/events")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            x,
            clock,
            before,
            after,
            events,
        })
    }

    fn e2e(&self) -> f64 {
        self.clock.end(&self.x) - self.clock.start(&self.x)
    }

    fn transitions(&self) -> usize {
        self.x.path.len()
    }

    /// Lambda invocations: the state machine's, and the rule's (event deliveries).
    fn invocations(&self) -> (usize, u64) {
        (
            self.x.invocations.len(),
            delta(&self.before, &self.after, &["deliveries", "invocations"]),
        )
    }

    /// Billed Lambda milliseconds (each invocation rounded up to 1 ms, Lambda's granularity):
    /// the state machine's invocations, and the rule's.
    fn billed_ms(&self) -> (u64, u64) {
        (
            self.x.invocations.iter().map(|(_, ms)| (*ms).max(1)).sum(),
            delta(&self.before, &self.after, &["deliveries", "millis"]),
        )
    }

    fn cost(&self) -> f64 {
        let (a, b) = self.invocations();
        let (ma, mb) = self.billed_ms();
        self.transitions() as f64 * PRICE_PER_TRANSITION
            + (a as u64 + b) as f64 * PRICE_PER_REQUEST
            + (ma + mb) as f64 / 1000.0 * MEMORY_GB * PRICE_PER_GB_SECOND
    }

    fn events_of(&self, ecs_service: &str) -> Vec<(String, f64)> {
        deployment_events(
            &self.events,
            ecs_service,
            self.clock.start(&self.x) - 1.0,
            self.clock.end(&self.x) + 1.0,
        )
    }
}

fn status_line(x: &Execution) -> String {
    match &x.error {
        Some(e) => format!("{} {e}", x.status),
        None => x.status.clone(),
    }
}

async fn set_config(clients: &Clients, config: &str) -> Result<()> {
    state::store_config(clients, config)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn with_wait(config: &str, wait: &str) -> String {
    let config = config
        .lines()
        .filter(|l| !l.starts_with("stability_wait"))
        .collect::<Vec<_>>()
        .join("\n");
    config.replacen(
        "bake_seconds",
        &format!("stability_wait = \"{wait}\"\nbake_seconds"),
        1,
    )
}

/// The staging release of all four services to a new tag, in the given wait mode.
async fn staging_release(
    bed: &Testbed,
    clients: &Clients,
    config: &str,
    wait: &str,
    tag: &str,
) -> Result<Run> {
    set_config(clients, &with_wait(config, wait)).await?;
    for s in SERVICES {
        push(clients, &format!("staging/{s}"), tag).await?;
    }
    let input = json!({"services": SERVICES, "tag": tag, "reason": format!("bench ({wait})")});
    Run::of(bed, &input, &format!("bench-{wait}-{tag}")).await
}

/// Per group: (rollout time as ECS reports it, detection latency).
fn groups_of(run: &Run) -> Vec<(f64, f64)> {
    GROUPS
        .iter()
        .enumerate()
        .filter_map(|(i, group)| {
            let (rollout, last_done) =
                rollouts(group.iter().map(|s| run.events_of(&format!("staging-{s}"))))?;
            let moved_on = run.clock.entered(&run.x, "GroupDone", i)?;
            Some((rollout, moved_on - last_done))
        })
        .collect()
}

/// Over services' deployment events: the slowest rollout (IN_PROGRESS → COMPLETED) and when
/// the last one completed; None when a service has no such pair.
fn rollouts(services: impl Iterator<Item = Vec<(String, f64)>>) -> Option<(f64, f64)> {
    let mut slowest = 0.0f64;
    let mut last_done = f64::NEG_INFINITY;
    for ev in services {
        let started = first(&ev, "SERVICE_DEPLOYMENT_IN_PROGRESS")?;
        let done = first(&ev, "SERVICE_DEPLOYMENT_COMPLETED")?;
        slowest = slowest.max(done - started);
        last_done = last_done.max(done);
    }
    Some((slowest, last_done))
}

/// The health checks' own minimum: per service (checked one after another) `passes − 1`
/// intervals, for the first check and the one after the bake (the health check's pauses run
/// at the simulator's speed on the test bed: simulated seconds).
fn health_minimum(config: &str) -> f64 {
    let Ok(parsed) = slipway_core::config::Config::parse(config, "slipway.toml") else {
        return 0.0;
    };
    let per_check: f64 = parsed
        .services
        .iter()
        .filter_map(|s| s.health.as_ref())
        .map(|h| f64::from(h.passes.saturating_sub(1)) * h.interval_ms as f64 / 1000.0)
        .sum();
    let checks = if parsed.bake_seconds > 0 { 2.0 } else { 1.0 };
    per_check * checks
}

fn bake_seconds(config: &str) -> f64 {
    slipway_core::config::Config::parse(config, "slipway.toml")
        .map_or(0.0, |c| f64::from(c.bake_seconds))
}

fn print_calls(calls: &BTreeMap<String, u64>) {
    let total: u64 = calls.values().sum();
    let list: Vec<String> = calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
    println!(
        "    AWS API calls on the simulator: {total} ({})",
        list.join(", ")
    );
}

/// What the seed's GitHub job does, on the same simulator: `cdk deploy --all` (for stacks
/// whose template and parameters are unchanged CDK skips the deployment after a
/// DescribeStacks and a GetTemplate: aws-cdk's deploy-stack `canSkipDeploy`), then `aws ecs
/// update-service --force-new-deployment` for each service, then `aws ecs
/// wait services-stable`: botocore's ECS waiter `ServicesStable` (delay 15 s, at most 40
/// attempts; stable when every service has one deployment and runningCount = desiredCount),
/// its delay scaled to the simulator's speed.
async fn baseline(bed: &Testbed, clients: &Clients) -> Result<(f64, f64, u64)> {
    let before = bed.sim_json("/_sim/stats").await;
    let clock = SimClock::read(bed).await;
    let start = now_secs();
    for stack in STACKS {
        clients
            .cloudformation
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| format!("DescribeStacks: {e:?}"))?;
        clients
            .cloudformation
            .get_template()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| format!("GetTemplate: {e:?}"))?;
    }
    // The call `aws ecs update-service --force-new-deployment` makes, through the SDK: an
    // awscli process takes most of a real second to start, which the simulator's speed would
    // turn into tens of simulated seconds the real job does not spend.
    for s in SERVICES {
        clients
            .ecs
            .update_service()
            .cluster("staging")
            .service(format!("staging-{s}"))
            .force_new_deployment(true)
            .send()
            .await
            .map_err(|e| format!("UpdateService: {e:?}"))?;
    }
    let names: Vec<String> = SERVICES.iter().map(|s| format!("staging-{s}")).collect();
    let delay = Duration::from_secs_f64(15.0 / clock.speed);
    let mut polls = 0;
    let stable_at = loop {
        polls += 1;
        let out = clients
            .ecs
            .describe_services()
            .cluster("staging")
            .set_services(Some(names.clone()))
            .send()
            .await
            .map_err(|e| format!("DescribeServices: {e:?}"))?;
        let stable = out
            .services()
            .iter()
            .all(|s| s.deployments().len() == 1 && s.running_count() == s.desired_count());
        if stable {
            break now_secs();
        }
        if polls >= 40 {
            return Err("services-stable: gave up after 40 attempts".into());
        }
        tokio::time::sleep(delay).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = bed.sim_json("/_sim/stats").await;
    let events = bed
        .sim_json("/_sim/events")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (s0, s1) = (clock.sim(start), clock.sim(stable_at));
    let (rollout, last_done) = rollouts(
        names
            .iter()
            .map(|name| deployment_events(&events, name, s0 - 1.0, s1 + 1.0)),
    )
    .unwrap_or((f64::NAN, f64::NAN));
    println!("\n## Baseline: the seed's job (cdk deploy --all; update-service --force-new-deployment; wait services-stable)");
    println!(
        "    end to end: {:.1} s (real {:.2} s); ideal (the slowest rollout) {:.1} s; overhead {:.1} s",
        s1 - s0,
        stable_at - start,
        rollout,
        s1 - s0 - rollout
    );
    println!(
        "    detection: {:.1} s after the last rollout completed ({polls} polls of 15 s)",
        s1 - last_done
    );
    println!("    no health check, no bake, no rollback, no record; all four services at once");
    let calls = calls_between(&before, &after);
    print_calls(&calls);
    Ok((s1 - s0, s1 - last_done, calls.values().sum()))
}

fn report_release(label: &str, run: &Run, config: &str) -> (f64, Vec<f64>) {
    let groups = groups_of(run);
    let rollouts: f64 = groups.iter().map(|(r, _)| r).sum();
    let health = health_minimum(config);
    let ideal = rollouts + bake_seconds(config) + health;
    let e2e = run.e2e();
    let detections: Vec<f64> = groups.iter().map(|(_, d)| *d).collect();
    println!(
        "\n## Slipway, four services in two groups, stability_wait = \"{label}\": {}",
        status_line(&run.x)
    );
    println!(
        "    end to end: {e2e:.1} s (real {:.2} s); ideal {ideal:.1} s = rollouts {rollouts:.1} + bake {:.0} + health checks' own minimum {health:.1}; overhead {:.1} s",
        e2e / run.clock.speed,
        bake_seconds(config),
        e2e - ideal
    );
    println!(
        "    detection (rollout COMPLETED → the state machine moves on), per group: {} (median {:.1}, max {:.1})",
        detections
            .iter()
            .map(|d| format!("{d:.1} s"))
            .collect::<Vec<_>>()
            .join(", "),
        median(detections.clone()),
        max(&detections)
    );
    let (sm, rule) = run.invocations();
    let (sm_ms, rule_ms) = run.billed_ms();
    println!(
        "    cost: {} state transitions, {} Lambda invocations ({sm} by the state machine, {rule} by the rule), {} billed ms (debug builds on this machine), ${:.6} per release",
        run.transitions(),
        sm as u64 + rule,
        sm_ms + rule_ms,
        run.cost()
    );
    let mut per_fn: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (f, ms) in &run.x.invocations {
        let e = per_fn.entry(f.as_str()).or_default();
        e.0 += 1;
        e.1 += ms;
    }
    println!(
        "    invocations by function: {}",
        per_fn
            .iter()
            .map(|(f, (n, ms))| format!("{f} {n} ({ms} ms)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_calls(&calls_between(&run.before, &run.after));
    println!(
        "    where the time goes (simulated s from one state entered to the next): {}",
        time_by_state(run)
    );
    (e2e, detections)
}

/// Simulated seconds from each state's entry to the next state's, summed per state name,
/// largest first (inside a parallel Map the states interleave: a rough split).
fn time_by_state(run: &Run) -> String {
    let mut by: BTreeMap<&str, f64> = BTreeMap::new();
    for pair in run.x.timeline.windows(2) {
        let d = (pair[1].1 - pair[0].1) as f64 / 1000.0 * run.clock.speed;
        *by.entry(pair[0].0.as_str()).or_default() += d;
    }
    let mut v: Vec<(&str, f64)> = by.into_iter().filter(|(_, d)| *d >= 0.5).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter()
        .map(|(s, d)| format!("{s} {d:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A fresh one-service app on a lane, in wait mode `wait`, whose image `tag` the scenario
/// `failure` (an image rule without its `match`) applies to: the release of that push, and
/// the ECS service's name.
async fn one_service_run(
    wait: &str,
    tag: &str,
    failure: Value,
    name: &str,
) -> Result<(Run, String)> {
    let (_lane, bed) = Testbed::lane().await;
    let app = App::create(&["api"], Some(bed.lambda_table())).await;
    // "events+alarms": events, watching one CloudWatch alarm that never fires.
    let (mode, alarm) = match wait.split_once('+') {
        Some((mode, _)) => (mode, Some(format!("bench-quiet-{tag}"))),
        None => (wait, None),
    };
    let mut config = with_wait(&app.config, mode);
    if let Some(alarm) = &alarm {
        slipway_tests::app::put_alarm(&bed.cloudwatch().await, alarm, 60, 1).await;
        config = format!("alarms = [\"{alarm}\"]\n{config}");
    }
    set_config(&app.clients, &config).await?;
    let api = app.service("api");
    let digest = app.push(api, tag).await;
    let mut rule = failure;
    rule["match"] = json!(digest);
    bed.add_scenario(json!({ "images": [rule] })).await;
    let run = Run::of(&bed, &app.event(api, tag, &digest), name).await?;
    Ok((run, api.ecs_service.clone()))
}

/// A release of one service whose tasks take 600 simulated seconds to start (a ten-minute
/// rollout), in each wait mode: state transitions and looks.
async fn long_rollout() -> Result<()> {
    println!("\n## A ten-minute rollout (one service; its tasks take 600 s to start)");
    for wait in ["events", "events+alarms", "polling"] {
        let tag = match wait {
            "events" => "60000ee",
            "events+alarms" => "60000aa",
            _ => "60000bb",
        };
        let slow = json!({"failure": "slow", "start_seconds": 600});
        let (run, _) = one_service_run(wait, tag, slow, &format!("bench-long-{wait}")).await?;
        let looks = run.x.path.iter().filter(|s| *s == "CheckStability").count();
        println!(
            "    {wait:>13}: {} in {:.0} s; {} state transitions, {looks} looks (CheckStability), ${:.6}",
            status_line(&run.x),
            run.e2e(),
            run.transitions(),
            run.cost()
        );
    }
    Ok(())
}

/// A crashing image (the circuit breaker fails the rollout): from the failure visible in ECS
/// (SERVICE_DEPLOYMENT_FAILED) to RollBack entered.
async fn failure_to_rollback() -> Result<()> {
    println!("\n## Failure → rollback started (a crashing image; ECS's circuit breaker fails the rollout)");
    for wait in ["events", "polling"] {
        let tag = if wait == "events" {
            "bad0e0e"
        } else {
            "bad0b0b"
        };
        let crash = json!({"failure": "crash"});
        let (run, ecs_service) =
            one_service_run(wait, tag, crash, &format!("bench-bad-{wait}")).await?;
        let ev = run.events_of(&ecs_service);
        let failed = first(&ev, "SERVICE_DEPLOYMENT_FAILED");
        let rollback = run.clock.entered(&run.x, "RollBack", 0);
        match (failed, rollback) {
            (Some(f), Some(r)) => println!(
                "    {wait:>7}: {}; rollback started {:.1} s after ECS reported the failure",
                status_line(&run.x),
                r - f
            ),
            _ => println!(
                "    {wait:>7}: {}; no FAILED event or no RollBack in this run",
                status_line(&run.x)
            ),
        }
    }
    Ok(())
}

/// Fifty services in five groups of ten, events: the time, DescribeServices calls per look,
/// and throttling.
async fn scale() -> Result<()> {
    let names: Vec<String> = (0..50).map(|i| format!("s{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_lane, bed) = Testbed::lane().await;
    let t = Instant::now();
    let app = App::create_with(&refs, Some(bed.lambda_table()), |name| {
        let i: usize = name.trim_start_matches('s').parse().unwrap_or(0);
        format!("group = {}\n", i / 10 + 1)
    })
    .await;
    let setup = t.elapsed().as_secs_f64();
    let tag = "5050505";
    for s in &app.services {
        app.push(s, tag).await;
    }
    let input = json!({"services": names, "tag": tag});
    let run = Run::of(&bed, &input, "bench-scale-50").await?;
    let calls = calls_between(&run.before, &run.after);
    let describes = calls.get("ecs:DescribeServices").copied().unwrap_or(0);
    println!("\n## Scale: 50 services in five groups of ten (events; set up in {setup:.0} s real)");
    println!(
        "    {} in {:.0} s (real {:.1} s); {} state transitions; {} Lambda invocations",
        status_line(&run.x),
        run.e2e(),
        run.e2e() / run.clock.speed,
        run.transitions(),
        run.invocations().0 as u64 + run.invocations().1
    );
    let looks = run.x.path.iter().filter(|s| *s == "CheckStability").count();
    let waits = run
        .x
        .path
        .iter()
        .filter(|s| *s == "WaitForGroupEvents")
        .count();
    println!(
        "    DescribeServices: {describes} calls in all (plan's and update-services' included); a look at a group of ten is one call (10 services a call): {looks} looks by CheckStability, {waits} waits (two looks each), {} by the rule; throttled calls: {}",
        run.invocations().1,
        throttled(&run.before, &run.after)
    );
    print_calls(&calls);
    Ok(())
}

/// Each function's size — its arm64 release zip when built (`cargo lambda build --release
/// --arm64 --output-format zip`), and the binary timed here zipped as Lambda takes it (one
/// `bootstrap` file, deflated) — and its cold init: process start to its first request for
/// an invocation (`GET /2018-06-01/runtime/invocation/next` on a runtime API served here).
/// `SLIPWAY_BENCH_BINARIES`: a directory of host-built binaries (default target/debug);
/// `SLIPWAY_BENCH_ZIPS`: where cargo lambda put the zips (default target/lambda).
async fn functions(bed: &Testbed) -> Result<()> {
    println!("\n## Functions: size and cold init (process start → first /invocation/next)");
    let dir = std::env::var("SLIPWAY_BENCH_BINARIES").unwrap_or_else(|_| "target/debug".into());
    let zips = std::env::var("SLIPWAY_BENCH_ZIPS").unwrap_or_else(|_| "target/lambda".into());
    for f in slipway_tests::FUNCTIONS.iter().map(|(_, f)| *f) {
        let arm = root().join(&zips).join(f).join("bootstrap.zip");
        let arm = std::fs::metadata(&arm)
            .map(|m| format!("{:.2} MB", m.len() as f64 / 1_000_000.0))
            .unwrap_or_else(|_| "not built".into());
        let binary = root().join(&dir).join(f);
        let zipped = zipped_size(&binary).map_or_else(
            || "—".to_owned(),
            |n| format!("{:.2} MB", n as f64 / 1_000_000.0),
        );
        let init = cold_init(bed, &binary).await;
        println!("    {f:>16}: arm64 zip {arm:>9}; {dir} zipped {zipped:>8}; cold init {init}");
    }
    Ok(())
}

/// The size of `binary` zipped as a Lambda package (one file `bootstrap`, deflated at the
/// default level, with the test bed's Python).
fn zipped_size(binary: &std::path::Path) -> Option<u64> {
    let dir = std::env::temp_dir().join(format!("slipway-bench-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::copy(binary, dir.join("bootstrap")).ok()?;
    let zip = dir.join("f.zip");
    let _ = std::fs::remove_file(&zip);
    let ok = std::process::Command::new(root().join(".venv/bin/python"))
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.write('bootstrap')",
        ])
        .arg(&zip)
        .current_dir(&dir)
        .status()
        .ok()?
        .success();
    let size = ok.then(|| std::fs::metadata(&zip).ok().map(|m| m.len()))??;
    let _ = std::fs::remove_dir_all(&dir);
    Some(size)
}

async fn cold_init(bed: &Testbed, binary: &std::path::Path) -> String {
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
        return "no port".into();
    };
    let Ok(addr) = listener.local_addr() else {
        return "no port".into();
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let child = tokio::process::Command::new(binary)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("SLIPWAY_TABLE", bed.lambda_table())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(mut child) = child else {
            return format!("cannot run {}", binary.display());
        };
        let first = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        let elapsed = started.elapsed();
        let _ = child.kill().await;
        match first {
            Ok(Ok(_)) => times.push(elapsed.as_secs_f64() * 1000.0),
            _ => return "no request within 10 s".into(),
        }
    }
    format!(
        "median {:.1} ms, max {:.1} ms (5 starts)",
        median(times.clone()),
        max(&times)
    )
}

async fn run() -> Result<()> {
    let parts: Vec<String> = std::env::args().skip(1).collect();
    const PARTS: [&str; 5] = ["staging", "failure", "long", "scale", "functions"];
    if let Some(bad) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
        return Err(format!(
            "unknown part {bad:?}: the parts are {} (none: all)",
            PARTS.join(", ")
        ));
    }
    let wants = |p: &str| parts.is_empty() || parts.iter().any(|x| x == p);
    let t = Instant::now();
    let bed = Testbed::get();
    let clients = bed.clients(bed.lambda_table()).await;
    println!("# slipway-bench");
    println!(
        "machine: {} cores; simulator speed {}×",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bed.speed()
    );
    if wants("staging") {
        staging_part(&bed, &clients, t).await?;
    }
    if wants("failure") {
        failure_to_rollback().await?;
    }
    if wants("long") {
        long_rollout().await?;
    }
    if wants("scale") {
        scale().await?;
    }
    if wants("functions") {
        functions(&bed).await?;
    }
    println!("\nbench done in {:.0} s (real)", t.elapsed().as_secs_f64());
    Ok(())
}

/// The staging release with events and with polling, and the seed's job, side by side.
async fn staging_part(bed: &Testbed, clients: &Clients, t: Instant) -> Result<()> {
    let config = staging::create(bed, clients, |_| {}).await?;
    println!(
        "staging app set up in {:.0} s (real)",
        t.elapsed().as_secs_f64()
    );

    // Warm the Lambdas (a debug build compiles on its first invocation under cargo lambda
    // watch): one release that is not measured.
    let warm = staging_release(bed, clients, &config, "events", "a000001").await?;
    println!("warm-up release: {}", status_line(&warm.x));

    let events = staging_release(bed, clients, &config, "events", "a000002").await?;
    let (e2e_events, det_events) = report_release("events", &events, &config);
    let polling = staging_release(bed, clients, &config, "polling", "a000003").await?;
    let (e2e_polling, det_polling) = report_release("polling", &polling, &config);
    set_config(clients, &config).await?;
    let (b_e2e, b_detect, b_calls) = baseline(bed, clients).await?;
    {
        let calls = |r: &Run| -> u64 { calls_between(&r.before, &r.after).values().sum() };
        println!("\n## Side by side (same run, same simulator)");
        println!(
            "    {:<28} {:>10} {:>14} {:>16}",
            "", "end to end", "detection max", "API calls (sim)"
        );
        println!(
            "    {:<28} {:>9.1}s {:>13.1}s {:>16}",
            "Slipway, events",
            e2e_events,
            max(&det_events),
            calls(&events)
        );
        println!(
            "    {:<28} {:>9.1}s {:>13.1}s {:>16}",
            "Slipway, polling",
            e2e_polling,
            max(&det_polling),
            calls(&polling)
        );
        println!(
            "    {:<28} {:>9.1}s {:>13.1}s {:>16}",
            "seed job (baseline)", b_e2e, b_detect, b_calls
        );
        println!(
            "    ratios to the baseline: end to end {:.2} (events) / {:.2} (polling); detection {:.2} / {:.2}",
            e2e_events / b_e2e,
            e2e_polling / b_e2e,
            max(&det_events) / b_detect,
            max(&det_polling) / b_detect
        );
    }

    Ok(())
}
