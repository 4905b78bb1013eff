//! `slipway deploy` and `slipway status`: start a release and watch it.

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};

use crate::shared::{outln, Exit, Failure};

/// Which state machine: an explicit ARN, or the environment's (`slipway-<environment>` in
/// the credentials' account and region).
pub async fn state_machine(
    conf: &aws_config::SdkConfig,
    environment: Option<&str>,
    arn: Option<String>,
) -> Result<String, String> {
    if let Some(arn) = arn {
        return Ok(arn);
    }
    let environment = environment
        .ok_or("name the environment (--environment) or the state machine (--state-machine ARN)")?;
    let identity = aws_sdk_sts::Client::new(conf)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "no usable AWS credentials ({}): configure them and run again",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            )
        })?;
    let region = conf.region().map(ToString::to_string).unwrap_or_default();
    Ok(format!(
        "arn:aws:states:{region}:{}:stateMachine:slipway-{environment}",
        identity.account().unwrap_or_default()
    ))
}

pub(crate) use slipway_core::aws::sdk_error;

fn missing_machine<E, R>(arn: &str, e: &aws_sdk_sfn::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = sdk_error(e);
    if text.contains("StateMachineDoesNotExist") || text.contains("does not exist") {
        format!("no state machine {arn}: run `slipway bootstrap --config slipway.toml` first (or check --environment/--region)")
    } else {
        format!("{arn}: {text}")
    }
}

/// What `deploy` asks for.
pub struct Request {
    pub services: Vec<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub reason: Option<String>,
    pub commit: Option<String>,
}

/// Starts an execution with the manual input (validated here first, exactly as `plan` will);
/// with `follow`, shows each step as it starts until the execution ends.
pub async fn deploy(
    conf: &aws_config::SdkConfig,
    machine: &str,
    request: Request,
    follow: Option<Duration>,
    json_out: bool,
) -> Result<Exit, Failure> {
    let mut input = crate::plan::manual_input(
        &request.services,
        request.tag.as_deref(),
        request.digest.as_deref(),
    );
    for (key, value) in [("reason", &request.reason), ("commit", &request.commit)] {
        if let Some(v) = value {
            input[key] = json!(v);
        }
    }
    slipway_core::input::parse(input.clone())
        .map_err(|e| Failure::usage(format!("{e} ({})", e.name())))?;
    let what = request
        .tag
        .clone()
        .or(request
            .digest
            .clone()
            .map(|d| d.chars().skip(7).take(12).collect()))
        .unwrap_or_default();
    let sfn = aws_sdk_sfn::Client::new(conf);
    let arn = start(&sfn, machine, &format!("cli-{what}"), &input).await?;
    if json_out && follow.is_none() {
        outln!("{}", json!({"executionArn": arn, "input": input}));
    } else {
        eprintln!("started {arn}");
    }
    let Some(limit) = follow else {
        return Ok(Exit::Done);
    };
    Ok(watch(&sfn, &arn, limit, json_out).await?)
}

/// Starts an execution of `machine` with `input`, named `<prefix>-<time>` (unique per call:
/// starting the same request again is a new execution); its ARN.
pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
    prefix: &str,
    input: &Value,
) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // At most 80 characters (StartExecution `name`): the prefix is cut, never the time that
    // makes the name unique.
    let suffix = format!("-{}-{:06}", now.as_secs(), now.subsec_micros());
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(80 - suffix.len())
        .collect();
    let name = format!("{prefix}{suffix}");
    let out = sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| missing_machine(machine, &e))?;
    Ok(out.execution_arn().to_owned())
}

/// Follows an execution: prints each state as it is entered, then the result: done if it
/// succeeded, failed if not, running if it still ran after `limit`.
pub async fn watch(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
    limit: Duration,
    json_out: bool,
) -> Result<Exit, String> {
    let start = Instant::now();
    // Newest first, page by page (AWS returns at most 100 events a page), down to the last
    // event already shown: each look reads only what is new, however long the history.
    let mut last_id = 0;
    loop {
        let mut fresh = Vec::new();
        let mut pages = sfn
            .get_execution_history()
            .execution_arn(arn)
            .reverse_order(true)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(&e))?;
            let mut reached = false;
            for e in page.events() {
                if e.id() > last_id {
                    fresh.push(e.clone());
                } else {
                    reached = true;
                }
            }
            if reached {
                break;
            }
        }
        fresh.sort_by_key(|e| e.id());
        for e in fresh {
            last_id = last_id.max(e.id());
            // TaskStateEntered, ChoiceStateEntered, MapStateEntered, …
            if e.r#type().as_str().ends_with("StateEntered") {
                let name = e
                    .state_entered_event_details()
                    .map(|d| d.name())
                    .unwrap_or_default();
                eprintln!("[{:6.1}s] {name}", start.elapsed().as_secs_f64());
            }
        }
        let d = sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        match d.status() {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {}
            status => {
                let ok = status == &ExecutionStatus::Succeeded;
                if json_out {
                    outln!("{}", describe_json(&d));
                } else if ok {
                    eprintln!("SUCCEEDED");
                } else {
                    eprintln!(
                        "{}: {}: {}",
                        status.as_str(),
                        d.error().unwrap_or_default(),
                        d.cause().unwrap_or_default()
                    );
                }
                return Ok(if ok { Exit::Done } else { Exit::Failed });
            }
        }
        if start.elapsed() >= limit {
            eprintln!(
                "still RUNNING after {} s; it goes on: `slipway status {arn}`",
                limit.as_secs()
            );
            return Ok(Exit::Running);
        }
        tokio::time::sleep(Duration::from_secs(2).min(limit)).await;
    }
}

fn describe_json(d: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput) -> Value {
    let parse = |s: Option<&str>| {
        s.and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    json!({
        "executionArn": d.execution_arn(),
        "name": d.name(),
        "status": d.status().as_str(),
        "startDate": d.start_date().to_string(),
        "stopDate": d.stop_date().map(ToString::to_string),
        "input": parse(d.input()),
        "output": parse(d.output()),
        "error": d.error(),
        "cause": d.cause(),
    })
}

/// One execution in detail (while it runs, the step it is in), or the state machine's
/// latest executions as a table. For one execution: whether it ended, and succeeded (`None`
/// while it runs).
pub async fn status(
    conf: &aws_config::SdkConfig,
    machine: &str,
    execution: Option<&str>,
    json_out: bool,
) -> Result<Option<bool>, String> {
    let sfn = aws_sdk_sfn::Client::new(conf);
    if let Some(arn) = execution {
        let d = sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| missing_machine(arn, &e))?;
        let mut v = describe_json(&d);
        let running = d.status() == &ExecutionStatus::Running;
        if running {
            // Best effort: the status stands without it.
            v["step"] = current_step(&sfn, arn)
                .await
                .ok()
                .flatten()
                .map_or(Value::Null, Value::from);
        }
        if json_out {
            outln!("{v}");
        } else {
            outln!(
                "{}  {}  started {}",
                v["name"].as_str().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default(),
                v["startDate"].as_str().unwrap_or_default()
            );
            outln!("input:  {}", v["input"]);
            if !v["output"].is_null() {
                outln!("output: {}", v["output"]);
            }
            if let Some(step) = v["step"].as_str() {
                outln!("step:   {step}");
            }
            if let Some(e) = d.error() {
                outln!("error:  {e}: {}", d.cause().unwrap_or_default());
            }
        }
        return Ok((!running).then(|| d.status() == &ExecutionStatus::Succeeded));
    }
    let out = sfn
        .list_executions()
        .state_machine_arn(machine)
        .max_results(20)
        .send()
        .await
        .map_err(|e| missing_machine(machine, &e))?;
    let rows: Vec<Value> = out
        .executions()
        .iter()
        .map(|e| json!({"name": e.name(), "status": e.status().as_str(), "startDate": e.start_date().to_string(), "executionArn": e.execution_arn()}))
        .collect();
    if json_out {
        outln!("{}", Value::Array(rows));
    } else if rows.is_empty() {
        eprintln!("no executions of {machine} yet");
    } else {
        outln!("{:<24}  {:<10}  NAME", "STARTED", "STATUS");
        for r in rows {
            outln!(
                "{:<24}  {:<10}  {}",
                r["startDate"].as_str().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(None)
}

/// The state a running execution is in: the newest state entered.
async fn current_step(sfn: &aws_sdk_sfn::Client, arn: &str) -> Result<Option<String>, String> {
    let page = sfn
        .get_execution_history()
        .execution_arn(arn)
        .reverse_order(true)
        .max_results(50)
        .send()
        .await
        .map_err(|e| sdk_error(&e))?;
    Ok(page
        .events()
        .iter()
        .find(|e| e.r#type().as_str().ends_with("StateEntered"))
        .and_then(|e| e.state_entered_event_details())
        .map(|d| d.name().to_owned()))
}
