//! The test harness: endpoints of the running test bed, SDK clients pointed at them, and
//! helpers to drive the simulator, awscli and the state machine interpreter.
//!
//! The test bed is started by `scripts/testbed run -- …` (the README's test command), which
//! writes `.testbed/env`; tests read that file, so they also run under `cargo test --workspace
//! --features slipway-core/testbed-clock` while `scripts/testbed up` has a bed running (the
//! feature lets the steps' clock follow the simulator's; every test-bed build enables it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde_json::Value;

pub mod app;
pub mod staging;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The running test bed.
#[derive(Debug, Clone)]
pub struct Testbed {
    /// Every variable of `.testbed/env`.
    pub vars: HashMap<String, String>,
}

impl Testbed {
    /// Reads `.testbed/env`; panics with what to run when the bed is not up.
    pub fn get() -> Self {
        let file = root().join(".testbed/env");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
            panic!(
                "the test bed is not running ({} is missing): run the tests with `scripts/testbed run -- cargo test --workspace --features slipway-core/testbed-clock`, or `scripts/testbed up` first",
                file.display()
            )
        });
        let vars = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { vars }
    }

    /// A variable of the env file.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from .testbed/env"))
    }

    /// moto server's endpoint.
    pub fn moto(&self) -> &str {
        self.var("SLIPWAY_MOTO_ENDPOINT")
    }

    /// slipway-sim's endpoint.
    pub fn sim(&self) -> &str {
        self.var("SLIPWAY_SIM_ENDPOINT")
    }

    /// `cargo lambda watch`'s Invoke API endpoint.
    pub fn lambda(&self) -> &str {
        self.var("SLIPWAY_LAMBDA_ENDPOINT")
    }

    /// How many times faster than real time the simulator runs.
    pub fn speed(&self) -> f64 {
        self.var("SLIPWAY_SIM_SPEED").parse().unwrap_or(1.0)
    }

    /// SDK configuration with static test credentials and the given endpoint.
    pub async fn sdk_config(&self, endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "slipway-tests",
            ))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    /// An ECS client on the simulator.
    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config(self.sim()).await)
    }

    /// A CloudFormation client on the simulator.
    pub async fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.sdk_config(self.sim()).await)
    }

    /// An ELBv2 client on the simulator.
    pub async fn elbv2(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk_config(self.sim()).await)
    }

    /// A CloudWatch client on the simulator (its alarms: moto does not speak the SDK's
    /// RPC v2 CBOR protocol).
    pub async fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::new(&self.sdk_config(self.sim()).await)
    }

    /// An ECR client on moto.
    pub async fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config(self.moto()).await)
    }

    /// Slipway's clients, each at its test bed endpoint, on state table `table`.
    pub async fn clients(&self, table: &str) -> slipway_core::aws::Clients {
        let moto = self.sdk_config(self.moto()).await;
        let sim = self.sdk_config(self.sim()).await;
        slipway_core::aws::Clients {
            ecs: aws_sdk_ecs::Client::new(&sim),
            ecr: aws_sdk_ecr::Client::new(&moto),
            cloudformation: aws_sdk_cloudformation::Client::new(&sim),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&sim),
            dynamodb: aws_sdk_dynamodb::Client::new(&moto),
            sns: aws_sdk_sns::Client::new(&moto),
            eventbridge: aws_sdk_eventbridge::Client::new(&moto),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sim),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sim),
            // Step Functions' callback API (SendTask*) is the simulator's on the test bed.
            sfn: aws_sdk_sfn::Client::new(&sim),
            table: table.to_owned(),
        }
    }

    /// The state table the Lambdas under `cargo lambda watch` use (`SLIPWAY_TABLE`).
    pub fn lambda_table(&self) -> &str {
        self.var("SLIPWAY_TABLE")
    }

    /// Invokes a function through `cargo lambda watch`'s Invoke API: `Ok(output)`, or
    /// `Err((errorType, errorMessage))` for a handler error.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, (String, String)> {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.lambda()
            ))
            .body(payload.to_string())
            .send()
            .await
            .expect("reach cargo lambda watch");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON from the function");
        if status.is_success() {
            Ok(body)
        } else {
            Err((
                body["errorType"].as_str().unwrap_or_default().to_owned(),
                body["errorMessage"].as_str().unwrap_or_default().to_owned(),
            ))
        }
    }

    /// Runs the project's awscli (`.venv/bin/aws`) against `endpoint`; returns (exit code,
    /// stdout, stderr).
    pub fn aws(&self, endpoint: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(root().join(".venv/bin/aws"))
            .args([
                "--endpoint-url",
                endpoint,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("run .venv/bin/aws (installed by scripts/testbed install)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `slipway` (the workspace's CLI binary) on the test bed: moto for the state table,
    /// ECR and Step Functions; the simulator for ECS, CloudFormation, ELBv2 and CloudWatch
    /// Logs. Returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(root().join("target/debug/slipway"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.moto())
            .env("AWS_ENDPOINT_URL_ECS", self.sim())
            .env("AWS_ENDPOINT_URL_CLOUDFORMATION", self.sim())
            .env("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", self.sim())
            .env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", self.sim())
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", self.sim())
            .output()
            .expect("run target/debug/slipway");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Adds to the simulator's scenario (JSON, as `POST /_sim/scenario` takes it).
    pub async fn add_scenario(&self, scenario: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/_sim/scenario", self.sim()))
            .body(scenario.to_string())
            .send()
            .await
            .expect("reach slipway-sim");
        let status = response.status();
        assert!(
            status.is_success(),
            "scenario refused: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Removes the simulator's scenario rules scoped to `token` (those whose `match`,
    /// `contains` or stack `name` contains it), so rules never outlive their test.
    pub async fn remove_scenario(&self, token: &str) {
        let response = reqwest::Client::new()
            .delete(format!("{}/_sim/scenario?scope={token}", self.sim()))
            .send()
            .await
            .expect("reach slipway-sim");
        assert!(response.status().is_success(), "scenario removal refused");
    }

    /// GETs a simulator path and parses the JSON answer.
    pub async fn sim_json(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.sim()))
            .await
            .expect("reach slipway-sim")
            .json()
            .await
            .expect("JSON from slipway-sim")
    }

    /// Runs an ASL definition in aws-local-stepfunctions, its Lambda Tasks invoking the
    /// functions served by `cargo lambda watch`. `subs` are DefinitionSubstitutions; `name`
    /// the execution's name (random when absent).
    pub fn run_execution(
        &self,
        definition: &Path,
        input: &Value,
        subs: &[(&str, &str)],
        name: Option<&str>,
    ) -> Execution {
        self.run_execution_with(definition, input, subs, name, &[])
    }

    /// [`Testbed::run_execution`] with more runner options (`--abort-at STATE[:N]`,
    /// `--timeout-seconds S`).
    pub fn run_execution_with(
        &self,
        definition: &Path,
        input: &Value,
        subs: &[(&str, &str)],
        name: Option<&str>,
        options: &[String],
    ) -> Execution {
        let mut cmd = Command::new("node");
        cmd.arg(root().join("tests/sfn/run-execution.mjs"))
            .arg("--definition")
            .arg(definition)
            .args([
                "--input",
                &input.to_string(),
                "--lambda-endpoint",
                self.lambda(),
            ])
            .args(["--wait-scale", &self.speed().to_string()])
            .current_dir(root());
        for (k, v) in subs {
            cmd.args(["--sub", &format!("{k}={v}")]);
        }
        if let Some(name) = name {
            cmd.args(["--name", name]);
        }
        cmd.args(options);
        let out = cmd.output().expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run-execution failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("run-execution printed {stdout:?}: {e}"))
    }
}

impl Testbed {
    /// Puts a template where CloudFormation reads `TemplateURL`s: moto's S3 (path style,
    /// which moto serves without signatures), and returns the `https://` URL to pass —
    /// as `cdk deploy` does for templates over `TemplateBody`'s 51,200 bytes.
    pub async fn upload_template(&self, key: &str, body: &str) -> String {
        const BUCKET: &str = "slipway-testbed-templates";
        let http = reqwest::Client::new();
        // Creating a bucket that exists is fine here (moto answers 200 or 409).
        let _ = http.put(format!("{}/{BUCKET}", self.moto())).send().await;
        let put = http
            .put(format!("{}/{BUCKET}/{key}", self.moto()))
            .body(body.to_owned())
            .send()
            .await
            .expect("reach moto's S3");
        assert!(put.status().is_success(), "S3 PutObject: {}", put.status());
        format!("https://{BUCKET}.s3.amazonaws.com/{key}")
    }
}

/// The deploy state machine's substitutions: every function the workspace builds.
pub const FUNCTIONS: [(&str, &str); 7] = [
    ("PlanFunctionArn", "plan"),
    ("DeployStackFunctionArn", "deploy-stack"),
    ("UpdateServicesFunctionArn", "update-services"),
    ("CheckStabilityFunctionArn", "check-stability"),
    ("HealthCheckFunctionArn", "health-check"),
    ("RollBackFunctionArn", "roll-back"),
    ("FinishFunctionArn", "finish"),
];

impl Testbed {
    /// Runs `statemachine/deploy.asl.json` as execution `name`, every Task the real Lambda.
    pub async fn deploy(&self, input: &Value, name: &str) -> Execution {
        self.deploy_with(input, name, &[]).await
    }

    /// [`Testbed::deploy`] with runner options: `["--abort-at", "CheckStability"]` stops the
    /// execution there (ABORTED), `["--timeout-seconds", "20"]` times it out (TIMED_OUT).
    pub async fn deploy_with(&self, input: &Value, name: &str, options: &[&str]) -> Execution {
        let mut options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        // No scenario needs more than a few minutes of real time (the clock runs
        // SLIPWAY_SIM_SPEED times faster); one that loops forever ends TIMED_OUT here instead
        // of holding the suite for the definition's 7200 s.
        if !options.iter().any(|o| o == "--timeout-seconds") {
            options.extend(["--timeout-seconds".to_owned(), "300".to_owned()]);
        }
        let (bed, input, name) = (self.clone(), input.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            let arns: Vec<(String, String)> = FUNCTIONS
                .iter()
                .map(|(k, f)| {
                    (
                        (*k).to_owned(),
                        format!("arn:aws:lambda:us-east-1:123456789012:function:{f}"),
                    )
                })
                .collect();
            let subs: Vec<(&str, &str)> =
                arns.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            bed.run_execution_with(
                &root().join("statemachine/deploy.asl.json"),
                &input,
                &subs,
                Some(&name),
                &options,
            )
        })
        .await
        .expect("the execution runner thread")
    }
}

/// A digest-like layer id, different on every call (moto derives image digests from layers).
pub fn fresh_layer() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n =
        u128::from(N.fetch_add(1, Ordering::Relaxed)) << 100 | u128::from(std::process::id()) << 80;
    format!("sha256:{:064x}", nanos ^ n)
}

/// An image manifest with one fresh layer.
pub fn manifest() -> Value {
    let layer = fresh_layer();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1000, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1000, "digest": layer}]
    })
}

/// The "ECR Image Action" event EventBridge delivers for a push.
pub fn ecr_push_event(repository: &str, tag: &str, digest: &str) -> Value {
    serde_json::json!({
        "version": "0", "id": unique("event"), "detail-type": "ECR Image Action", "source": "aws.ecr",
        "account": "123456789012", "time": "2026-11-25T21:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"result": "SUCCESS", "repository-name": repository, "image-digest": digest, "action-type": "PUSH", "image-tag": tag}
    })
}

/// The lanes of the test bed (`SLIPWAY_LAMBDA_LANE_ENDPOINTS`): each a `cargo lambda watch` whose
/// Lambdas use a state table of their own. A test that runs the Lambdas writes its
/// configuration to that table, so it takes a lane for itself ([`Testbed::lane`]); tests on
/// different lanes run side by side.
struct Lanes {
    free: std::sync::Mutex<Vec<usize>>,
    permits: tokio::sync::Semaphore,
}

static LANES: std::sync::OnceLock<Lanes> = std::sync::OnceLock::new();

/// A lane held by one test; given back when dropped (also when the test panics).
#[derive(Debug)]
pub struct Lane {
    index: usize,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(lanes) = LANES.get() {
            lanes
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(self.index);
            lanes.permits.add_permits(1);
        }
    }
}

impl Testbed {
    /// Every lane: its state table and its Invoke API endpoint.
    pub fn lanes(&self) -> Vec<(String, String)> {
        self.var("SLIPWAY_LAMBDA_LANE_ENDPOINTS")
            .split(',')
            .map(|lane| {
                let (table, endpoint) = lane.split_once('@').unwrap_or_else(|| {
                    panic!("SLIPWAY_LAMBDA_LANE_ENDPOINTS: {lane:?} is not TABLE@ENDPOINT")
                });
                (table.to_owned(), endpoint.to_owned())
            })
            .collect()
    }

    /// Waits for a free lane and takes it: the bed returned has that lane's Lambdas
    /// ([`Testbed::lambda`]) and their state table ([`Testbed::lambda_table`]) until the
    /// [`Lane`] is dropped.
    pub async fn lane() -> (Lane, Testbed) {
        let mut bed = Testbed::get();
        let all = bed.lanes();
        let lanes = LANES.get_or_init(|| Lanes {
            free: std::sync::Mutex::new((0..all.len()).rev().collect()),
            permits: tokio::sync::Semaphore::new(all.len()),
        });
        lanes
            .permits
            .acquire()
            .await
            .expect("never closed")
            .forget();
        let index = lanes
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .expect("a permit means a free lane");
        let (table, endpoint) = all[index].clone();
        bed.vars.insert("SLIPWAY_TABLE".to_owned(), table.clone());
        bed.vars
            .insert("SLIPWAY_LAMBDA_ENDPOINT".to_owned(), endpoint);
        let lane = Lane { index };
        bed.clear_leftover_locks(&table).await;
        (lane, bed)
    }

    /// Deletes the locks and queue places an earlier test on this lane left in its table when
    /// it failed half-way (that test has failed already; the next one starts clean instead of
    /// waiting out a lock no execution will release). Nothing when the table does not exist.
    async fn clear_leftover_locks(&self, table: &str) {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk_config(self.moto()).await);
        let Ok(out) = dynamodb.scan().table_name(table).send().await else {
            return;
        };
        let mut cleared = 0;
        for item in out.items() {
            let (Some(pk), Some(sk)) = (item.get("pk"), item.get("sk")) else {
                continue;
            };
            let leftover = pk.as_s().is_ok_and(|k| {
                k.starts_with("LOCK#") || k.starts_with("WAIT#") || k.starts_with("WAKE#")
            });
            if leftover
                && dynamodb
                    .delete_item()
                    .table_name(table)
                    .key("pk", pk.clone())
                    .key("sk", sk.clone())
                    .send()
                    .await
                    .is_ok()
            {
                cleared += 1;
            }
        }
        if cleared > 0 {
            eprintln!("lane table {table}: cleared {cleared} lock(s) an earlier failed test left");
        }
    }
}

/// One execution's result, as `tests/sfn/run-execution.mjs` prints it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Execution {
    /// SUCCEEDED, FAILED, ABORTED (`--abort-at`) or TIMED_OUT (`--timeout-seconds`).
    pub status: String,
    /// The output of a successful execution.
    #[serde(default)]
    pub output: Value,
    /// The error name of a failed execution.
    #[serde(default)]
    pub error: Option<String>,
    /// The cause of a failed execution.
    #[serde(default)]
    pub cause: Option<String>,
    /// The states entered, in order.
    pub path: Vec<String>,
    /// Each state entered and when, in milliseconds since the execution started.
    #[serde(default)]
    pub timeline: Vec<(String, u64)>,
    /// When the execution started, epoch milliseconds (real time).
    #[serde(default, rename = "startedAtMs")]
    pub started_at_ms: u64,
    /// Each Lambda invocation the interpreter made: the function and its real duration (ms).
    #[serde(default)]
    pub invocations: Vec<(String, u64)>,
}

/// A name unique to this test run and process: `prefix-<nonce>-<n>`, the nonce six base-36
/// characters from the start time and pid, so no name is another's prefix within a run
/// (each ends at a separator or the end) and runs on one bed never meet.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let nonce = NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut v = (nanos ^ u64::from(std::process::id()).rotate_left(32)) % 36u64.pow(6);
        let mut out = String::new();
        for _ in 0..6 {
            out.push(char::from_digit((v % 36) as u32, 36).unwrap_or('0'));
            v /= 36;
        }
        out
    });
    format!("{prefix}-{nonce}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A directory of a test's own in the temporary directory (`prefix-<nonce>-<n>`), removed
/// with everything in it when dropped, so also when the test fails: the test bed's
/// bootstraps zip 50 MB debug binaries, and a run that left them behind filled CI's disk.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates `<temp dir>/prefix-<nonce>-<n>`.
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }

    /// The names in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` on time-out.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ARN `tests/sfn/run-execution.mjs` gives execution `name` (`$$.Execution.Id`).
pub fn execution_arn(name: &str) -> String {
    format!("arn:aws:states:us-east-1:123456789012:execution:slipway:{name}")
}

/// The "Step Functions Execution Status Change" event of [`status_change_event`] for an execution that was started with `input` at `started_ms` (epoch
/// milliseconds): `detail.input` carries that input as a JSON string, as Step Functions sends
/// it.
pub fn status_change_event_of(name: &str, status: &str, input: &Value, started_ms: i64) -> Value {
    let mut event = status_change_event(name, status);
    event["detail"]["input"] = Value::String(input.to_string());
    event["detail"]["inputDetails"] = serde_json::json!({"included": true});
    event["detail"]["startDate"] = started_ms.into();
    event
}

/// The "Step Functions Execution Status Change" event EventBridge delivers when execution
/// `name` ends with `status` — what bootstrap's recovery rule passes as the input.
pub fn status_change_event(name: &str, status: &str) -> Value {
    serde_json::json!({
        "version": "0",
        "id": format!("status-{name}"),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-11-26T00:00:00Z",
        "region": "us-east-1",
        "resources": [execution_arn(name)],
        "detail": {
            "executionArn": execution_arn(name),
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:slipway",
            "name": name,
            "status": status,
            "startDate": 1_795_000_000_000_u64,
            "stopDate": 1_795_000_060_000_u64,
            "input": "{}",
            "output": null,
            "error": null,
            "cause": null
        }
    })
}

/// A directory served over HTTP on a free loopback port (Python's `http.server`), stopped
/// when dropped (also when the test fails): stands for GitHub's release downloads.
#[derive(Debug)]
pub struct FileServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl FileServer {
    /// Serves `dir`; returns once the server answers.
    pub fn serve(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the file server on port {port} did not answer within 10 s");
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
