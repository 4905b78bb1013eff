//! Step Functions' callback API for `.waitForTaskToken` tasks: the tokens the local
//! interpreter's harness opens (`POST /_sim/task-tokens`, one per task it runs), and
//! SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat, which close or beat them (JSON 1.0,
//! target prefix `AWSStepFunctions.`, botocore's stepfunctions service model). The harness
//! reads a token's outcome back (`GET /_sim/task-tokens/{token}`) and closes it on a timeout
//! (`DELETE`).
//!
//! What AWS does, as modelled (bc:sfn SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat):
//! - `taskToken` is 1–2048 characters, else `ValidationException`;
//! - a token Step Functions never issued is `InvalidToken` ("The provided token is not valid");
//! - a token whose task is closed (answered, timed out) is `TaskTimedOut` ("The task token has
//!   either expired or the task associated with the token has already been closed");
//! - SendTaskSuccess's `output` must be JSON, else `InvalidOutput`;
//! - SendTaskFailure's `error` is at most 256 characters and `cause` at most 32,768;
//! - SendTaskHeartbeat "resets the Heartbeat clock".

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::wire::ApiError;

/// botocore's stepfunctions service model: `targetPrefix`.
pub const TARGET_PREFIX: &str = "AWSStepFunctions.";

/// A task's outcome, as the harness reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Waiting for an answer.
    Open,
    /// SendTaskSuccess: its output.
    Succeeded(Value),
    /// SendTaskFailure: error and cause.
    Failed(String, String),
    /// Closed by the harness (the task timed out or the execution stopped).
    Closed,
}

#[derive(Debug)]
struct Task {
    outcome: Outcome,
    /// Real time of the last heartbeat (or of the opening), Unix milliseconds: the harness
    /// applies `HeartbeatSeconds` to it.
    beat_at_ms: u128,
    /// Heartbeats received.
    beats: u64,
}

/// The open and closed tasks of the account.
#[derive(Debug, Default)]
pub struct Tasks {
    tasks: HashMap<String, Task>,
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Tasks {
    /// Opens a task; its token (opaque, like Step Functions', and well under 2048 characters).
    pub fn open(&mut self, uuid: &str) -> String {
        let token = format!("AQCEAAAAKgAAAAMAAAAA{}", uuid.replace('-', ""));
        self.tasks.insert(
            token.clone(),
            Task {
                outcome: Outcome::Open,
                beat_at_ms: now_ms(),
                beats: 0,
            },
        );
        token
    }

    /// A task's outcome and its last heartbeat (Unix ms), as JSON; None for an unknown token.
    pub fn status(&self, token: &str) -> Option<Value> {
        let t = self.tasks.get(token)?;
        let mut v = match &t.outcome {
            Outcome::Open => json!({"status": "OPEN"}),
            Outcome::Succeeded(output) => json!({"status": "SUCCEEDED", "output": output}),
            Outcome::Failed(error, cause) => {
                json!({"status": "FAILED", "error": error, "cause": cause})
            }
            Outcome::Closed => json!({"status": "CLOSED"}),
        };
        v["heartbeatAtMs"] = json!(t.beat_at_ms as u64);
        v["heartbeats"] = json!(t.beats);
        Some(v)
    }

    /// Closes a task (timed out, or its execution stopped): later answers are `TaskTimedOut`.
    pub fn close(&mut self, token: &str) -> bool {
        match self.tasks.get_mut(token) {
            Some(t) => {
                if t.outcome == Outcome::Open {
                    t.outcome = Outcome::Closed;
                }
                true
            }
            None => false,
        }
    }

    /// One SendTask* call.
    pub fn call(&mut self, op: &str, input: &Value) -> Result<Value, ApiError> {
        let token = input["taskToken"].as_str().ok_or_else(|| {
            ApiError::new(
                "ValidationException",
                "1 validation error detected: Value null at 'taskToken' failed to satisfy constraint: Member must not be null",
            )
        })?;
        if token.is_empty() || token.chars().count() > 2048 {
            return Err(ApiError::new(
                "ValidationException",
                "1 validation error detected: Value at 'taskToken' failed to satisfy constraint: Member must have length between 1 and 2048",
            ));
        }
        let task = self
            .tasks
            .get_mut(token)
            .ok_or_else(|| ApiError::new("InvalidToken", "The provided token is not valid"))?;
        if task.outcome != Outcome::Open {
            return Err(ApiError::new(
                "TaskTimedOut",
                "The task token has either expired or the task associated with the token has already been closed",
            ));
        }
        match op {
            "SendTaskSuccess" => {
                let text = input["output"].as_str().ok_or_else(|| {
                    ApiError::new(
                        "ValidationException",
                        "1 validation error detected: Value null at 'output' failed to satisfy constraint: Member must not be null",
                    )
                })?;
                let output: Value = serde_json::from_str(text).map_err(|e| {
                    ApiError::new("InvalidOutput", format!("Invalid output: not JSON: {e}"))
                })?;
                task.outcome = Outcome::Succeeded(output);
            }
            "SendTaskFailure" => {
                let error = input["error"].as_str().unwrap_or_default();
                let cause = input["cause"].as_str().unwrap_or_default();
                if error.chars().count() > 256 || cause.chars().count() > 32_768 {
                    return Err(ApiError::new(
                        "ValidationException",
                        "1 validation error detected: 'error' must be at most 256 characters and 'cause' at most 32768",
                    ));
                }
                task.outcome = Outcome::Failed(error.to_owned(), cause.to_owned());
            }
            "SendTaskHeartbeat" => {
                task.beat_at_ms = now_ms();
                task.beats += 1;
            }
            other => {
                return Err(ApiError::new(
                    "UnknownOperationException",
                    format!("{TARGET_PREFIX}{other} is not modelled by slipway-sim"),
                ))
            }
        }
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_closes_the_task_and_a_second_answer_is_task_timed_out() {
        let mut tasks = Tasks::default();
        let token = tasks.open("0f0e-1");
        assert_eq!(tasks.status(&token).unwrap()["status"], "OPEN");
        tasks
            .call(
                "SendTaskSuccess",
                &json!({"taskToken": token, "output": "{\"stable\":true}"}),
            )
            .unwrap();
        let s = tasks.status(&token).unwrap();
        assert_eq!(s["status"], "SUCCEEDED");
        assert_eq!(s["output"], json!({"stable": true}));
        let again = tasks
            .call(
                "SendTaskFailure",
                &json!({"taskToken": token, "error": "E"}),
            )
            .unwrap_err();
        assert_eq!(again.code, "TaskTimedOut");
    }

    #[test]
    fn unknown_empty_and_long_tokens_and_bad_output_are_refused() {
        let mut tasks = Tasks::default();
        let e = tasks
            .call(
                "SendTaskSuccess",
                &json!({"taskToken": "nope", "output": "{}"}),
            )
            .unwrap_err();
        assert_eq!(e.code, "InvalidToken");
        let e = tasks
            .call("SendTaskSuccess", &json!({"taskToken": "", "output": "{}"}))
            .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        let long = "a".repeat(2049);
        let e = tasks
            .call("SendTaskHeartbeat", &json!({"taskToken": long}))
            .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        let token = tasks.open("1");
        let e = tasks
            .call(
                "SendTaskSuccess",
                &json!({"taskToken": token, "output": "not json"}),
            )
            .unwrap_err();
        assert_eq!(e.code, "InvalidOutput");
        let e = tasks
            .call(
                "SendTaskFailure",
                &json!({"taskToken": token, "error": "x".repeat(257)}),
            )
            .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        // Still open after refused calls.
        assert_eq!(tasks.status(&token).unwrap()["status"], "OPEN");
    }

    #[test]
    fn failure_heartbeat_and_close() {
        let mut tasks = Tasks::default();
        let token = tasks.open("2");
        tasks
            .call("SendTaskHeartbeat", &json!({"taskToken": token}))
            .unwrap();
        assert_eq!(tasks.status(&token).unwrap()["heartbeats"], 1);
        tasks
            .call(
                "SendTaskFailure",
                &json!({"taskToken": token, "error": "Slipway.DeploymentFailed", "cause": "circuit breaker"}),
            )
            .unwrap();
        let s = tasks.status(&token).unwrap();
        assert_eq!(s["status"], "FAILED");
        assert_eq!(s["error"], "Slipway.DeploymentFailed");
        assert_eq!(s["cause"], "circuit breaker");
        // A timed-out task: closed by the harness, then answered late.
        let late = tasks.open("3");
        assert!(tasks.close(&late));
        let e = tasks
            .call(
                "SendTaskSuccess",
                &json!({"taskToken": late, "output": "{}"}),
            )
            .unwrap_err();
        assert_eq!(e.code, "TaskTimedOut");
        assert!(!tasks.close("never-issued"));
    }
}
