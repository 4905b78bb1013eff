//! The HTTP front: protocol dispatch, throttling, the apps behind the "load balancer" and the
//! control endpoints.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::cfn::{self, Cfn};
use crate::cloudwatch::CloudWatch;
use crate::ecs::Ecs;
use crate::elb::{self, Elb};
use crate::env::{Env, Events, Target};
use crate::ids::Ids;
use crate::scenario::{Clock, Scenario};
use crate::sfn::{self, Tasks};
use crate::wire::{self, ApiError, ApiResult, Params};

const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
/// CloudWatch Logs' JSON 1.1 target prefix (botocore's logs service model, targetPrefix).
const LOGS_TARGET_PREFIX: &str = "Logs_20140328.";

/// The whole simulated account.
pub struct World {
    clock: Clock,
    scenario: Scenario,
    ids: Ids,
    events: Events,
    ecs: Ecs,
    cfn: Cfn,
    elb: Elb,
    region: String,
    account: String,
    calls: u64,
    /// Requests sent to apps (round robin over targets).
    calls_to_apps: u64,
    /// Requests routed by a weighted rule (which target group, in proportion).
    weighted_calls: u64,
    /// Action → how many calls of it were throttled.
    throttled: std::collections::BTreeMap<String, u64>,
    /// `service:Action` → calls received (what a benchmark counts).
    api_calls: std::collections::BTreeMap<String, u64>,
    /// Step Functions' `.waitForTaskToken` tasks.
    tasks: Tasks,
    /// CloudWatch's alarms.
    cloudwatch: crate::cloudwatch::CloudWatch,
    /// Events delivered to rule targets, and the time their invocations took (ms).
    deliveries: Arc<Deliveries>,
    s3_endpoint: Option<String>,
    /// Lambda functions by ARN → their invoke URL (`POST /_sim/functions`): where ECS's
    /// lifecycle hooks are sent.
    functions: std::collections::BTreeMap<String, String>,
    /// Hook invocations to send: (invoke URL, executionId, payload).
    hooks_out: Option<tokio::sync::mpsc::UnboundedSender<(String, String, Value)>>,
}

/// What the delivery of events to rule targets cost: invocations made (each attempt) and
/// their total real duration.
#[derive(Debug, Default)]
pub struct Deliveries {
    invocations: std::sync::atomic::AtomicU64,
    millis: std::sync::atomic::AtomicU64,
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario to start with.
    pub scenario: Scenario,
    /// How many times faster than real time the clock runs.
    pub speed: f64,
    /// The region in ARNs and events.
    pub region: String,
    /// The account id in ARNs and events.
    pub account: String,
    /// Where to append events as JSON lines, besides `GET /_sim/events`.
    pub events_file: Option<std::path::PathBuf>,
    /// The epoch second from which the clock runs fast (default: start-up).
    pub anchor: Option<f64>,
    /// Where S3 objects named by a `TemplateURL` are read (path style: `{endpoint}/{bucket}/{key}`),
    /// e.g. the test bed's moto.
    pub s3_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: Scenario::default(),
            speed: 1.0,
            region: "us-east-1".into(),
            account: "123456789012".into(),
            events_file: None,
            anchor: None,
            s3_endpoint: None,
        }
    }
}

/// Shared handle to the world.
pub type Shared = Arc<Mutex<World>>;

impl World {
    /// A new, empty account.
    pub fn new(options: Options) -> std::io::Result<Self> {
        let file = match &options.events_file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Ok(Self {
            clock: match options.anchor {
                Some(anchor) => Clock::anchored(anchor, options.speed),
                None => Clock::new(options.speed),
            },
            scenario: options.scenario,
            ids: Ids::new(seed),
            events: Events::with_file(file),
            ecs: Ecs::default(),
            cfn: Cfn::default(),
            elb: Elb::default(),
            region: options.region,
            account: options.account,
            calls: 0,
            calls_to_apps: 0,
            throttled: Default::default(),
            api_calls: Default::default(),
            tasks: Tasks::default(),
            cloudwatch: Default::default(),
            weighted_calls: 0,
            deliveries: Arc::default(),
            s3_endpoint: options.s3_endpoint,
            functions: Default::default(),
            hooks_out: None,
        })
    }

    /// The shared context at the clock's now, and the services, borrowed apart.
    fn parts(&mut self) -> (Env<'_>, &mut Ecs, &mut Cfn, &mut Elb, &mut CloudWatch) {
        let now = self.clock.now();
        let World {
            ids,
            events,
            scenario,
            ecs,
            cfn,
            elb,
            region,
            account,
            cloudwatch,
            ..
        } = self;
        (
            Env {
                now,
                ids,
                events,
                scenario,
                region,
                account,
            },
            ecs,
            cfn,
            elb,
            cloudwatch,
        )
    }

    /// Brings the world up to the clock's now.
    pub fn step(&mut self) {
        let (mut env, ecs, cfn, elb, cloudwatch) = self.parts();
        cfn.advance(&mut env, ecs, elb);
        ecs.advance(&mut env, elb, cloudwatch);
        // ECS invokes lifecycle hooks with the Lambda Invoke API; a function it cannot find
        // fails the hook ("If your function … fails, Amazon ECS rolls back").
        for (arn, payload) in self.ecs.take_invocations() {
            let execution = payload["executionId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match (self.functions.get(&arn), &self.hooks_out) {
                (Some(url), Some(out)) => {
                    let _ = out.send((url.clone(), execution, payload));
                }
                _ => {
                    let now = self.clock.now();
                    self.ecs.hook_answer(
                        now,
                        &execution,
                        Err(format!(
                            "ResourceNotFoundException: Function not found: {arn}"
                        )),
                    );
                }
            }
        }
    }

    /// The throttling error for this call, if the scenario throttles it.
    fn throttled(&mut self, action: &str, request: &str) -> bool {
        let Some(t) = self
            .scenario
            .throttle
            .iter()
            .chain(&self.scenario.throttles)
            .find(|t| {
                (t.actions.is_empty() || t.actions.iter().any(|a| a == action))
                    && request.contains(&t.contains)
            })
        else {
            return false;
        };
        let one_in = t.one_in;
        self.calls += 1;
        let throttled = self.calls % one_in == 0;
        if throttled {
            *self.throttled.entry(action.to_owned()).or_default() += 1;
        }
        throttled
    }

    /// The injected fault for this call, if any.
    fn fault(&self, action: &str, request: &str) -> Option<ApiError> {
        let f = self
            .scenario
            .faults
            .iter()
            .find(|f| f.action == action && request.contains(&f.contains))?;
        Some(ApiError {
            status: f.status(),
            ..ApiError::new(f.code.clone(), f.message.clone())
        })
    }

    fn cloudwatch_call(&mut self, op: &str, input: &Value) -> Result<Value, ApiError> {
        let (mut env, _, _, _, cloudwatch) = self.parts();
        cloudwatch.call(&mut env, op, input)
    }

    fn ecs_call(&mut self, op: &str, input: &Value) -> Result<Value, ApiError> {
        let (mut env, ecs, _, _, _) = self.parts();
        ecs.call(&mut env, op, input)
    }

    fn query_call(
        &mut self,
        cloudformation: bool,
        action: &str,
        params: &Params,
    ) -> Result<String, ApiError> {
        let (mut env, ecs, cfn, elb, _) = self.parts();
        if cloudformation {
            cfn.call(&mut env, action, params)
        } else {
            elb.call(&mut env, ecs, action, params)
        }
    }

    fn count(&mut self, call: String) {
        *self.api_calls.entry(call).or_default() += 1;
    }

    fn request_id(&mut self) -> String {
        self.ids.uuid()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, World> {
    // A panic in one request must not take the whole simulator down with a poisoned lock.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The router serving a world.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/_sim/health", get(|| async { "ok" }))
        .route("/_sim/clock", get(clock))
        .route("/_sim/events", get(events))
        .route(
            "/_sim/scenario",
            get(get_scenario)
                .put(put_scenario)
                .post(add_scenario)
                .delete(remove_scoped),
        )
        .route("/_sim/stats", get(stats))
        .route("/_sim/event-targets", axum::routing::post(add_event_target))
        .route("/_sim/functions", axum::routing::post(add_function))
        .route("/_sim/task-tokens", axum::routing::post(open_task))
        .route(
            "/_sim/task-tokens/{token}",
            get(task_status).delete(close_task),
        )
        .fallback(dispatch)
        .with_state(shared)
}

/// Serves on `listener` until the process ends, moving the world forward in the background.
pub async fn serve(listener: tokio::net::TcpListener, world: World) -> std::io::Result<()> {
    let (outbox, mut to_deliver) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    let mut world = world;
    world.events.deliver_to(outbox);
    let deliveries = world.deliveries.clone();
    // Each event to its rule's Lambda target, asynchronously. Lambda's asynchronous
    // invocation retries a failed one twice (Lambda Developer Guide, "Error handling and
    // automatic retries in Lambda"), here a second apart.
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Some((url, event)) = to_deliver.recv().await {
            let http = http.clone();
            let deliveries = deliveries.clone();
            tokio::spawn(async move {
                for attempt in 0..3 {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    let began = std::time::Instant::now();
                    let sent = http.post(&url).json(&event).send().await;
                    let sent = match sent {
                        Ok(r) => {
                            let status = r.status();
                            r.bytes().await.map(|_| status)
                        }
                        Err(e) => Err(e),
                    };
                    use std::sync::atomic::Ordering::Relaxed;
                    deliveries.invocations.fetch_add(1, Relaxed);
                    deliveries
                        .millis
                        .fetch_add(began.elapsed().as_millis() as u64, Relaxed);
                    match sent {
                        Ok(status) if status.is_success() => return,
                        Ok(status) => tracing::warn!(%url, %status, "event target failed"),
                        Err(e) => tracing::warn!(%url, error = %e, "event target unreachable"),
                    }
                }
            });
        }
    });
    let (hooks_out, mut hooks_in) =
        tokio::sync::mpsc::unbounded_channel::<(String, String, Value)>();
    world.hooks_out = Some(hooks_out);
    let shared: Shared = Arc::new(Mutex::new(world));
    // Lifecycle hooks: each invocation (synchronous, RequestResponse) to its function; the
    // answer (or the function's error) goes back to the service deployment that waits.
    let answers = shared.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Some((url, execution, payload)) = hooks_in.recv().await {
            let (http, answers) = (http.clone(), answers.clone());
            tokio::spawn(async move {
                let answer = match http.post(&url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .map_err(|e| format!("the function's answer is not JSON: {e}")),
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        Err(format!(
                            "the function failed (HTTP {status}): {}",
                            body.chars().take(300).collect::<String>()
                        ))
                    }
                    Err(e) => Err(format!("the function could not be invoked: {e}")),
                };
                let mut w = lock(&answers);
                let now = w.clock.now();
                w.ecs.hook_answer(now, &execution, answer);
            });
        }
    });
    let ticker = shared.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        loop {
            interval.tick().await;
            lock(&ticker).step();
        }
    });
    axum::serve(listener, router(shared)).await
}

fn json_response(v: &Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

async fn clock(State(shared): State<Shared>) -> Response {
    let w = lock(&shared);
    json_response(&json!({ "now": w.clock.now(), "speed": w.clock.speed() }))
}

async fn events(State(shared): State<Shared>) -> Response {
    let mut w = lock(&shared);
    w.step();
    json_response(&Value::Array(w.events.all().to_vec()))
}

async fn get_scenario(State(shared): State<Shared>) -> Response {
    json_response(&serde_json::to_value(&lock(&shared).scenario).unwrap_or_default())
}

async fn stats(State(shared): State<Shared>) -> Response {
    let w = lock(&shared);
    use std::sync::atomic::Ordering::Relaxed;
    json_response(&json!({
        "throttled": w.throttled,
        "calls": w.api_calls,
        "deliveries": {
            "invocations": w.deliveries.invocations.load(Relaxed),
            "millis": w.deliveries.millis.load(Relaxed),
        },
    }))
}

/// `POST /_sim/event-targets {"url", "source", "detail-types"}`: what an EventBridge rule with
/// a Lambda target does, for the events this simulator emits (see [`Target`]).
async fn add_event_target(State(shared): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Target>(&body) {
        Ok(t) if t.url.starts_with("http://127.0.0.1:") => {
            lock(&shared).events.add_target(t);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(t) => (
            StatusCode::BAD_REQUEST,
            format!("event target {}: only http://127.0.0.1 URLs\n", t.url),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("event target: {e}\n")).into_response(),
    }
}

/// `POST /_sim/functions {"arn", "url"}`: a Lambda function ECS can invoke (a lifecycle hook's
/// `hookTargetArn`) and its Invoke URL (a `cargo lambda watch` server on 127.0.0.1).
async fn add_function(State(shared): State<Shared>, body: Bytes) -> Response {
    let f: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (f["arn"].as_str(), f["url"].as_str()) {
        (Some(arn), Some(url)) if url.starts_with("http://127.0.0.1:") => {
            lock(&shared)
                .functions
                .insert(arn.to_owned(), url.to_owned());
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "function: {\"arn\", \"url\"} with an http://127.0.0.1 URL\n",
        )
            .into_response(),
    }
}

/// `POST /_sim/task-tokens`: opens a `.waitForTaskToken` task; answers `{"taskToken"}`.
async fn open_task(State(shared): State<Shared>) -> Response {
    let mut w = lock(&shared);
    let uuid = w.ids.uuid();
    let token = w.tasks.open(&uuid);
    json_response(&json!({ "taskToken": token }))
}

async fn task_status(
    State(shared): State<Shared>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match lock(&shared).tasks.status(&token) {
        Some(v) => json_response(&v),
        None => (StatusCode::NOT_FOUND, "no such task token\n").into_response(),
    }
}

async fn close_task(
    State(shared): State<Shared>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    if lock(&shared).tasks.close(&token) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such task token\n").into_response()
    }
}

/// `POST /_sim/scenario`: adds to the scenario in force — `images` and `stacks` rules are
/// appended, `timings` and `throttle` replace the current ones when given.
async fn add_scenario(State(shared): State<Shared>, body: Bytes) -> Response {
    let given: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("scenario: {e}\n")).into_response(),
    };
    let addition: Scenario = match serde_json::from_value(given.clone()) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("scenario: {e}\n")).into_response(),
    };
    let mut w = lock(&shared);
    w.step();
    let mut next = w.scenario.clone();
    next.images.extend(addition.images);
    next.stacks.extend(addition.stacks);
    next.faults.extend(addition.faults);
    next.throttles.extend(addition.throttles);
    if given.get("timings").is_some() {
        next.timings = addition.timings;
    }
    if given.get("throttle").is_some() {
        next.throttle = addition.throttle;
    }
    if let Err(e) = next.validate() {
        return (StatusCode::BAD_REQUEST, format!("scenario: {e}\n")).into_response();
    }
    w.scenario = next;
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_sim/scenario?scope=TOKEN`: removes the rules scoped to TOKEN (see
/// [`Scenario::remove_scoped`]); answers how many went.
async fn remove_scoped(
    State(shared): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(token) = q.get("scope").filter(|t| !t.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "scenario: ?scope=TOKEN is required\n",
        )
            .into_response();
    };
    let mut w = lock(&shared);
    w.step();
    let removed = w.scenario.remove_scoped(token);
    json_response(&json!({ "removed": removed }))
}

async fn put_scenario(State(shared): State<Shared>, body: Bytes) -> Response {
    let scenario: Scenario = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("scenario: {e}\n")).into_response(),
    };
    if let Err(e) = scenario.validate() {
        return (StatusCode::BAD_REQUEST, format!("scenario: {e}\n")).into_response();
    }
    let mut w = lock(&shared);
    w.step();
    w.scenario = scenario;
    StatusCode::NO_CONTENT.into_response()
}

async fn dispatch(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cloudwatch_op = uri
        .path()
        .strip_prefix("/service/")
        .and_then(|p| p.strip_prefix(crate::cloudwatch::SERVICE))
        .and_then(|p| p.strip_prefix("/operation/"));
    if let (&Method::POST, Some(op)) = (&method, cloudwatch_op) {
        let mut w = lock(&shared);
        w.step();
        w.count(format!("cloudwatch:{op}"));
        return cloudwatch_cbor_request(&mut w, op, &body);
    }
    if method == Method::POST && uri.path() == "/" {
        if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            let mut w = lock(&shared);
            w.step();
            if let Some(op) = target
                .strip_prefix(crate::cloudwatch::SERVICE)
                .and_then(|t| t.strip_prefix('.'))
            {
                w.count(format!("cloudwatch:{op}"));
                return cloudwatch_json_request(&mut w, op, &body);
            }
            if let Some(op) = target.strip_prefix(LOGS_TARGET_PREFIX) {
                w.count(format!("logs:{op}"));
                return logs_request(&mut w, op, &body);
            }
            if let Some(op) = target.strip_prefix(sfn::TARGET_PREFIX) {
                w.count(format!("states:{op}"));
                return sfn_request(&mut w, op, &body);
            }
            w.count(format!(
                "ecs:{}",
                target.strip_prefix(ECS_TARGET_PREFIX).unwrap_or(target)
            ));
            return ecs_request(&mut w, target, &body);
        }
        let mut params = Params::parse(&body);
        params.0.remove(cfn::FROM_URL);
        let s3 = lock(&shared).s3_endpoint.clone();
        if let Some(url) = params.get("TemplateURL").map(str::to_owned) {
            match fetch_template(s3.as_deref(), &url).await {
                Ok(text) => {
                    params.0.remove("TemplateURL");
                    params.0.insert("TemplateBody".into(), text);
                    params.0.insert(cfn::FROM_URL.into(), "true".into());
                }
                Err(e) => {
                    params.0.insert("__SlipwaySimTemplateURLError".into(), e);
                }
            }
        }
        let mut w = lock(&shared);
        w.step();
        let service = if params.get("Version") == Some("2010-05-15") {
            "cloudformation"
        } else {
            "elasticloadbalancing"
        };
        w.count(format!(
            "{service}:{}",
            params.get("Action").unwrap_or_default()
        ));
        return query_request(&mut w, params);
    }
    let mut w = lock(&shared);
    w.step();
    if method == Method::GET || method == Method::HEAD {
        return app_request(&mut w, &headers, &uri);
    }
    (
        StatusCode::NOT_FOUND,
        "slipway-sim: not an AWS API request\n",
    )
        .into_response()
}

/// CloudWatch Logs, as far as the `awslogs` streams of the simulated tasks go: GetLogEvents
/// (`logGroupName`, `logStreamName`, `limit` 1–10000, default 10000, `startFromHead`,
/// default false: the newest events; API reference,
/// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html).
/// One page: a stream here holds a few lines.
fn logs_request(w: &mut World, op: &str, body: &[u8]) -> Response {
    let request_id = w.request_id();
    let input: Value =
        serde_json::from_slice(if body.is_empty() { b"{}" } else { body }).unwrap_or(Value::Null);
    let result = match op {
        "GetLogEvents" => {
            let group = input["logGroupName"].as_str();
            let stream = input["logStreamName"].as_str();
            let limit = input["limit"].as_i64().unwrap_or(10_000);
            match (group, stream) {
                (Some(g), Some(s)) if (1..=10_000).contains(&limit) => {
                    let (_, ecs, _, _, _) = w.parts();
                    ecs.log_events(g, s).map(|events| {
                        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                        let skip = if input["startFromHead"].as_bool() == Some(true) {
                            0
                        } else {
                            events.len().saturating_sub(limit)
                        };
                        let events: Vec<Value> = events
                            .into_iter()
                            .skip(skip)
                            .take(limit)
                            .map(|(at, message)| {
                                let ms = (at * 1000.0) as i64;
                                json!({"timestamp": ms, "message": message, "ingestionTime": ms})
                            })
                            .collect();
                        json!({"events": events, "nextForwardToken": "f/0", "nextBackwardToken": "b/0"})
                    })
                }
                (Some(_), Some(_)) => Err(ApiError::new(
                    "InvalidParameterException",
                    "limit must be between 1 and 10000",
                )),
                _ => Err(ApiError::new(
                    "InvalidParameterException",
                    "logGroupName and logStreamName are required",
                )),
            }
        }
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("slipway-sim does not implement CloudWatch Logs {other}"),
        )),
    };
    json11_response(&request_id, result)
}

/// An AWS JSON 1.1 answer (ECS, CloudWatch Logs): the output, or the error as `__type` and
/// `message` with its HTTP status.
fn json11_response(request_id: &str, result: Result<Value, ApiError>) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            json!({ "__type": e.code, "message": e.message }),
        ),
    };
    (
        status,
        [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-requestid", request_id),
        ],
        body.to_string(),
    )
        .into_response()
}

/// CloudWatch over Smithy RPC v2 CBOR (Smithy docs, "RPC v2 CBOR protocol"): the body is
/// CBOR, and so is the answer — the output, or the error as `__type` and `message` with its
/// HTTP status — with `Content-Type: application/cbor` and `smithy-protocol: rpc-v2-cbor`
/// (an SDK refuses an answer without that header).
fn cloudwatch_cbor_request(w: &mut World, op: &str, body: &[u8]) -> Response {
    let request_id = w.request_id();
    let result = if body.is_empty() {
        Ok(json!({}))
    } else {
        crate::cbor::decode(body).map_err(|e| {
            ApiError::new(
                "SerializationException",
                format!("request body is not CBOR: {e}"),
            )
        })
    }
    .and_then(|input| w.cloudwatch_call(op, &input));
    match result {
        // An operation without output answers 200 with an empty body.
        Ok(Value::Null) => (
            StatusCode::OK,
            [
                ("smithy-protocol", "rpc-v2-cbor"),
                ("x-amzn-requestid", request_id.as_str()),
            ],
        )
            .into_response(),
        Ok(v) => (
            StatusCode::OK,
            [
                ("content-type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("x-amzn-requestid", request_id.as_str()),
            ],
            crate::cbor::encode(&v, &crate::cloudwatch::TIMESTAMPS),
        )
            .into_response(),
        // CloudWatch is awsQueryCompatible: its errors also carry `x-amzn-query-error`
        // (`Code;Sender`), from which SDKs take the code.
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            [
                ("content-type", "application/cbor".to_owned()),
                ("smithy-protocol", "rpc-v2-cbor".to_owned()),
                ("x-amzn-requestid", request_id.clone()),
                ("x-amzn-query-error", format!("{};Sender", e.code)),
            ],
            crate::cbor::encode(
                &json!({ "__type": format!("com.amazonaws.cloudwatch#{}", e.code), "message": e.message }),
                &[],
            ),
        )
            .into_response(),
    }
}

/// CloudWatch over AWS JSON 1.0 (what botocore's awscli may use: the model lists `json`
/// among CloudWatch's protocols); timestamps are epoch seconds.
fn cloudwatch_json_request(w: &mut World, op: &str, body: &[u8]) -> Response {
    json10_request(w, body, |w, input| {
        w.cloudwatch_call(op, input)
            .map(|v| if v.is_null() { json!({}) } else { v })
    })
}

/// Step Functions' SendTask* calls (JSON 1.0): see [`crate::sfn`].
fn sfn_request(w: &mut World, op: &str, body: &[u8]) -> Response {
    json10_request(w, body, |w, input| w.tasks.call(op, input))
}

/// An AWS JSON 1.0 call: the body (none is `{}`) to `call`, its answer or error as JSON 1.0.
fn json10_request(
    w: &mut World,
    body: &[u8],
    call: impl FnOnce(&mut World, &Value) -> ApiResult<Value>,
) -> Response {
    let request_id = w.request_id();
    let result = match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
        Ok(input) => call(w, &input),
        Err(e) => Err(ApiError::new(
            "SerializationException",
            format!("request body is not JSON: {e}"),
        )),
    };
    let mut response = json11_response(&request_id, result);
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

fn ecs_request(w: &mut World, target: &str, body: &[u8]) -> Response {
    let request_id = w.request_id();
    let op = target.strip_prefix(ECS_TARGET_PREFIX);
    let result = match op {
        None => Err(ApiError::new(
            "UnknownOperationException",
            format!("unknown target {target}"),
        )),
        Some(op) if w.throttled(op, &String::from_utf8_lossy(body)) => {
            Err(ApiError::new("ThrottlingException", "Rate exceeded"))
        }
        Some(op) if w.fault(op, &String::from_utf8_lossy(body)).is_some() => Err(w
            .fault(op, &String::from_utf8_lossy(body))
            .unwrap_or_else(|| ApiError::new("InternalFailure", ""))),
        Some(op) => {
            match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
                Ok(input) => w.ecs_call(op, &input),
                Err(e) => Err(ApiError::new(
                    "SerializationException",
                    format!("request body is not JSON: {e}"),
                )),
            }
        }
    };
    tracing::debug!(op = op.unwrap_or(target), ok = result.is_ok(), "ecs");
    json11_response(&request_id, result)
}

/// Reads the S3 object a `TemplateURL` names, from the configured S3 endpoint. AWS takes
/// "the URL of a file containing the template body … located in an Amazon S3 bucket", which
/// "must start with `https://`" (bc:cfn `CreateStackInput.TemplateURL`); virtual-hosted
/// (`https://<bucket>.s3[.<region>].amazonaws.com/<key>`) and path-style
/// (`https://s3[.<region>].amazonaws.com/<bucket>/<key>`) forms are read.
async fn fetch_template(s3: Option<&str>, url: &str) -> Result<String, String> {
    const BAD: &str = "TemplateURL must reference a valid S3 object to which you have access.";
    let rest = url.strip_prefix("https://").ok_or(BAD)?;
    let (host, key) = rest.split_once('/').ok_or(BAD)?;
    let host = host.split(':').next().unwrap_or_default();
    let regional = |h: &str| {
        h == "s3.amazonaws.com"
            || (h.starts_with("s3.") || h.starts_with("s3-")) && h.ends_with(".amazonaws.com")
    };
    let (bucket, key) = if regional(host) {
        key.split_once('/').ok_or(BAD)?
    } else {
        let (bucket, domain) = host.split_once('.').ok_or(BAD)?;
        if !regional(domain) {
            return Err(BAD.into());
        }
        (bucket, key)
    };
    let s3 =
        s3.ok_or("slipway-sim was started without --s3-endpoint: it cannot read TemplateURL")?;
    // CloudFormation reads the object with the caller's credentials; S3 (and moto) refuse
    // anonymous reads of private objects, so the request carries an Authorization header
    // (moto, run without IAM enforcement, does not check the signature).
    let response = reqwest::Client::new()
        .get(format!("{}/{bucket}/{key}", s3.trim_end_matches('/')))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=slipway-sim/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send()
        .await
        .map_err(|e| format!("{BAD} ({e})"))?;
    if !response.status().is_success() {
        return Err(BAD.into());
    }
    response.text().await.map_err(|e| format!("{BAD} ({e})"))
}

fn query_request(w: &mut World, params: Params) -> Response {
    let request_id = w.request_id();
    let action = params.get("Action").unwrap_or_default().to_owned();
    let cloudformation = match params.get("Version") {
        Some("2010-05-15") => true,
        Some("2015-12-01") => false,
        other => {
            let e = ApiError::new(
                "InvalidAction",
                format!("unknown API version {other:?} for action {action:?}"),
            );
            return xml(
                StatusCode::BAD_REQUEST,
                wire::query_error(cfn::NAMESPACE, &e, &request_id),
                &request_id,
            );
        }
    };
    let namespace = if cloudformation {
        cfn::NAMESPACE
    } else {
        elb::NAMESPACE
    };
    let values: Vec<&str> = params.0.values().map(String::as_str).collect();
    let request = values.join("\n");
    let result = if w.throttled(&action, &request) {
        Err(ApiError::new("Throttling", "Rate exceeded"))
    } else if let Some(fault) = w.fault(&action, &request) {
        Err(fault)
    } else if let Some(e) = params.get("__SlipwaySimTemplateURLError") {
        Err(ApiError::new("ValidationError", e))
    } else {
        w.query_call(cloudformation, &action, &params)
    };
    tracing::debug!(%action, ok = result.is_ok(), "query");
    match result {
        Ok(inner) => xml(
            StatusCode::OK,
            wire::query_response(namespace, &action, &inner, &request_id),
            &request_id,
        ),
        Err(e) => xml(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            wire::query_error(namespace, &e, &request_id),
            &request_id,
        ),
    }
}

fn xml(status: StatusCode, body: String, request_id: &str) -> Response {
    (
        status,
        [
            ("content-type", "text/xml"),
            ("x-amzn-requestid", request_id),
        ],
        body,
    )
        .into_response()
}

/// A request to an app behind the simulated load balancer, as an ALB routes it: the first
/// listener rule whose host-header condition matches the `Host`, else the default action of
/// the listener of the load balancer whose DNS name it is (ALB User Guide, "Listener rules");
/// no route is a 404 from the simulator itself. A forward goes to the target group's healthy
/// targets in turn — to all of them when none is healthy ("fails open"), 503 when it has none.
fn app_request(w: &mut World, headers: &HeaderMap, uri: &Uri) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let bare = host.split(':').next().unwrap_or_default();
    let target_group = match w.elb.route(bare) {
        None => {
            return (
                StatusCode::NOT_FOUND,
                format!("slipway-sim: no load balancer listener or rule routes Host {host:?}\n"),
            )
                .into_response()
        }
        Some(elb::Action::Fixed { status, body }) => {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND),
                body,
            )
                .into_response()
        }
        Some(elb::Action::Forward(tg)) => tg,
        // By weight: request n of every 100 goes to the group whose share covers it.
        Some(elb::Action::Weighted(groups)) => {
            w.weighted_calls += 1;
            let total: u32 = groups.iter().map(|(_, weight)| weight).sum::<u32>().max(1);
            let mut slot = (w.weighted_calls % u64::from(total)) as u32;
            let mut chosen = groups.first().map(|(tg, _)| tg.clone()).unwrap_or_default();
            for (tg, weight) in &groups {
                if slot < *weight {
                    chosen = tg.clone();
                    break;
                }
                slot -= weight;
            }
            chosen
        }
    };
    let now = w.clock.now();
    let targets: Vec<_> = w
        .ecs
        .targets(&target_group)
        .into_iter()
        .filter(|t| !t.draining)
        .collect();
    let healthy: Vec<_> = targets
        .iter()
        .filter(|t| w.elb.target_state(&target_group, t, &w.scenario, now).0 == "healthy")
        .collect();
    let pool = if healthy.is_empty() {
        targets.iter().collect()
    } else {
        healthy
    };
    if pool.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable\n",
        )
            .into_response();
    }
    w.calls_to_apps += 1;
    let task = pool[(w.calls_to_apps as usize) % pool.len()];
    let image = task.images.first().cloned().unwrap_or_default();
    let code = w
        .scenario
        .answer(task.images.iter().map(String::as_str), uri.path());
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let state = if status.is_success() { "ok" } else { "error" };
    let body = json!({ "status": state, "task": task.task, "image": image, "path": uri.path() });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
