//! `slipway deploy` and `slipway status`: start a release and watch it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};

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

/// An SDK error as `Code: message` (or its full context when the service said nothing).
fn sdk_error<E, R>(e: &aws_sdk_sfn::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        ),
        None => format!("{}", aws_sdk_sfn::error::DisplayErrorContext(e)),
    }
}

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
) -> Result<bool, String> {
    let mut input = json!({});
    if !request.services.is_empty() {
        input["services"] = json!(request.services);
    }
    for (key, value) in [
        ("tag", &request.tag),
        ("digest", &request.digest),
        ("reason", &request.reason),
        ("commit", &request.commit),
    ] {
        if let Some(v) = value {
            input[key] = json!(v);
        }
    }
    slipway_core::input::parse(input.clone()).map_err(|e| format!("{e} ({})", e.name()))?;
    let what = request
        .tag
        .clone()
        .or(request
            .digest
            .clone()
            .map(|d| d.chars().skip(7).take(12).collect()))
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name: String = format!("cli-{what}-{}-{:05x}", now.as_secs(), now.subsec_micros())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(80)
        .collect();
    let sfn = aws_sdk_sfn::Client::new(conf);
    let out = sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| missing_machine(machine, &e))?;
    let arn = out.execution_arn().to_owned();
    if json_out && follow.is_none() {
        println!("{}", json!({"executionArn": arn, "input": input}));
    } else {
        eprintln!("started {arn}");
    }
    let Some(limit) = follow else { return Ok(true) };
    watch(&sfn, &arn, limit, json_out).await
}

/// Follows an execution: prints each state as it is entered, then the result.
async fn watch(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
    limit: Duration,
    json_out: bool,
) -> Result<bool, String> {
    let start = Instant::now();
    let mut seen = HashSet::new();
    loop {
        let history = sfn
            .get_execution_history()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        for e in history.events() {
            // TaskStateEntered, ChoiceStateEntered, MapStateEntered, …
            if e.r#type().as_str().ends_with("StateEntered") && seen.insert(e.id()) {
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
                    println!("{}", describe_json(&d));
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
                return Ok(ok);
            }
        }
        if start.elapsed() >= limit {
            return Err(format!(
                "still RUNNING after {} s; it goes on: `slipway status {arn}`",
                limit.as_secs()
            ));
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

/// One execution in detail, or the state machine's latest executions as a table.
pub async fn status(
    conf: &aws_config::SdkConfig,
    machine: &str,
    execution: Option<&str>,
    json_out: bool,
) -> Result<(), String> {
    let sfn = aws_sdk_sfn::Client::new(conf);
    if let Some(arn) = execution {
        let d = sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| missing_machine(arn, &e))?;
        let v = describe_json(&d);
        if json_out {
            println!("{v}");
        } else {
            println!(
                "{}  {}  started {}",
                v["name"].as_str().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default(),
                v["startDate"].as_str().unwrap_or_default()
            );
            println!("input:  {}", v["input"]);
            if !v["output"].is_null() {
                println!("output: {}", v["output"]);
            }
            if let Some(e) = d.error() {
                println!("error:  {e}: {}", d.cause().unwrap_or_default());
            }
        }
        return Ok(());
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
        println!("{}", Value::Array(rows));
    } else if rows.is_empty() {
        eprintln!("no executions of {machine} yet");
    } else {
        println!("{:<24}  {:<10}  NAME", "STARTED", "STATUS");
        for r in rows {
            println!(
                "{:<24}  {:<10}  {}",
                r["startDate"].as_str().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
