//! The execution input, in both of its forms, and its normalised form.
//!
//! An execution starts from either
//! - an EventBridge "ECR Image Action" event, exactly as EventBridge delivers it, or
//! - the manual form `{"services": ["api"], "tag": "3f2a1bc", "reason": "…", "commit": "…"}`
//!   (`digest` instead of `tag`; no `services` means every service).
//!
//! [`parse`] turns either into a [`PlanInput`]; anything else is
//! [`StepError::InvalidInput`] naming the field at fault.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StepError;

/// The largest execution input Step Functions accepts (256 KiB).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// What an execution input asks for, once parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PlanInput {
    /// Deploy an image.
    Deploy {
        /// The request to deploy.
        request: DeployRequest,
    },
    /// Recover what an execution that ended without its own clean-up (stopped, or past its
    /// `TimeoutSeconds`) left behind: roll back its release, record and announce it, release
    /// its locks. From the "Step Functions Execution Status Change" event of that execution.
    Recover {
        /// The ARN of the execution that ended.
        execution: String,
        /// How it ended: `ABORTED` or `TIMED_OUT`.
        status: String,
        /// Its input (`detail.input`, a JSON string, when `inputDetails.included`): a deploy
        /// request that ended before its release started is recorded from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
        /// When it started (`detail.startDate`, milliseconds since the epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_ms: Option<i64>,
    },
    /// A valid input that asks for nothing (an ECR delete, a failed push): the execution ends
    /// successfully at once.
    NothingToDo {
        /// Why there is nothing to do, for the execution's output and the logs.
        reason: String,
    },
}

/// A validated request to deploy one image to a set of services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeployRequest {
    /// Which services: every one, those named, or those whose ECR repository this is.
    pub services: ServiceSelection,
    /// The image to run, by tag, digest or both.
    pub image: ImageRef,
    /// What started the execution.
    pub trigger: Trigger,
}

/// Which services a request moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum ServiceSelection {
    /// Every service of the configuration (manual input without `services`).
    All,
    /// The services named, in the order given, without duplicates.
    Named {
        /// Service names as the configuration spells them.
        names: Vec<String>,
    },
    /// The services whose image lives in this ECR repository (an ECR event).
    Repository {
        /// The ECR repository name, e.g. `staging/api`.
        name: String,
    },
}

/// An image, by tag and/or digest. At least one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRef {
    /// The tag, e.g. the commit SHA or `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The content digest, `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// What started the execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Trigger {
    /// An image push reported by ECR through EventBridge.
    EcrPush {
        /// The EventBridge event id (the same push delivered twice has the same id).
        event_id: String,
        /// The account the repository belongs to.
        account: String,
        /// The region of the repository.
        region: String,
        /// When ECR reported the push (RFC 3339).
        time: String,
    },
    /// A person, a GitHub workflow or `slipway deploy`.
    Manual {
        /// Why, in the caller's words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The commit the image was built from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
}

/// The manual form of the execution input, as callers write it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualInput {
    /// The services to deploy, by configured name; absent means every service.
    #[schemars(length(min = 1))]
    pub services: Option<Vec<String>>,
    /// The image tag to deploy (resolved to its digest in ECR). Give `tag` or `digest`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: Option<String>,
    /// The image digest to deploy, `sha256:<hex>`. Give `tag` or `digest`.
    #[schemars(regex(pattern = r"^sha(256|512):[0-9a-f]{32,128}$"))]
    pub digest: Option<String>,
    /// Why, in the caller's words (at most 1024 bytes).
    pub reason: Option<String>,
    /// The commit the image was built from (at most 128 bytes).
    pub commit: Option<String>,
}

/// The execution input, any of its three forms: what `slipway schema input` publishes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExecutionInput {
    /// An EventBridge "ECR Image Action" event, as delivered.
    EcrEvent(EcrEventSchema),
    /// An EventBridge "Step Functions Execution Status Change" event of an ABORTED or
    /// TIMED_OUT execution of this state machine (the recovery rule bootstrap installs).
    StatusChange(StatusChangeSchema),
    /// The manual form.
    Manual(ManualInput),
}

/// An "ECR Image Action" event as EventBridge delivers it (documented fields only; AWS may add more).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EcrEventSchema {
    /// The event id.
    pub id: String,
    /// Always "ECR Image Action".
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// Always "aws.ecr".
    pub source: String,
    /// The account.
    pub account: String,
    /// When, RFC 3339.
    pub time: String,
    /// The region.
    pub region: String,
    /// What happened.
    pub detail: EcrDetailSchema,
}

/// The `detail` of an "ECR Image Action" event.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EcrDetailSchema {
    /// `SUCCESS` or `FAILURE`.
    pub result: String,
    /// The repository.
    #[serde(rename = "repository-name")]
    pub repository_name: String,
    /// The image digest.
    #[serde(rename = "image-digest")]
    pub image_digest: Option<String>,
    /// `PUSH` or `DELETE`.
    #[serde(rename = "action-type")]
    pub action_type: String,
    /// The tag pushed, absent for an untagged push.
    #[serde(rename = "image-tag")]
    pub image_tag: Option<String>,
}

/// A "Step Functions Execution Status Change" event as EventBridge delivers it (the fields
/// Slipway reads; AWS sends more). Shape: Step Functions developer guide, "Automating Step
/// Functions event delivery with EventBridge"; the EventBridge events reference for
/// `aws.states`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusChangeSchema {
    /// The event id.
    pub id: String,
    /// Always "Step Functions Execution Status Change".
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// Always "aws.states".
    pub source: String,
    /// The account.
    pub account: String,
    /// When, RFC 3339.
    pub time: String,
    /// The region.
    pub region: String,
    /// The execution.
    pub detail: StatusChangeDetailSchema,
}

/// The `detail` of a "Step Functions Execution Status Change" event.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusChangeDetailSchema {
    /// The execution that changed status.
    #[serde(rename = "executionArn")]
    pub execution_arn: String,
    /// Its state machine.
    #[serde(rename = "stateMachineArn")]
    pub state_machine_arn: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`; Slipway recovers the last two.
    pub status: String,
    /// The execution's input, as a JSON string (null when too large to include).
    #[serde(default)]
    pub input: Option<String>,
    /// When the execution started, milliseconds since the epoch.
    #[serde(rename = "startDate", default)]
    pub start_date: Option<i64>,
}

/// The `detail` of a "Step Functions Execution Status Change" event, as read. Its fields:
/// <https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html> and
/// <https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-states.html>
/// (`executionArn`, `status`, `startDate` in epoch milliseconds, `input` as a JSON string;
/// `inputDetails.included` says whether the input was included).
#[derive(Debug, Deserialize)]
struct StatusChange {
    #[serde(rename = "executionArn")]
    execution_arn: String,
    status: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(rename = "startDate", default)]
    start_date: Option<i64>,
}

/// An EventBridge event envelope. Unknown fields are allowed: AWS adds fields over time.
#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: String,
    time: String,
    region: String,
    detail: Value,
}

/// The `detail` of an "ECR Image Action" event.
#[derive(Debug, Deserialize)]
struct EcrImageAction {
    result: String,
    #[serde(rename = "repository-name")]
    repository_name: String,
    #[serde(rename = "image-digest")]
    image_digest: Option<String>,
    #[serde(rename = "action-type")]
    action_type: String,
    #[serde(rename = "image-tag")]
    image_tag: Option<String>,
}

/// Parses raw execution input bytes (as the CLI reads them from a file).
pub fn parse_bytes(bytes: &[u8]) -> Result<PlanInput, StepError> {
    check_size(bytes.len())?;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        StepError::invalid(
            "$",
            format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })?;
    parse(value)
}

/// Parses and validates an execution input, in either form.
pub fn parse(input: Value) -> Result<PlanInput, StepError> {
    // serde_json::Value has no cheap size; its compact serialisation is what Step Functions counts.
    check_size(serde_json::to_vec(&input).map_or(0, |v| v.len()))?;
    let Value::Object(map) = &input else {
        return Err(StepError::invalid(
            "$",
            format!(
                "expected a JSON object (an ECR Image Action event or {{\"services\":[…],\"tag\":…}}), found {}",
                kind(&input)
            ),
        ));
    };
    if map.contains_key("detail-type") || map.contains_key("source") || map.contains_key("detail") {
        parse_event(input)
    } else {
        parse_manual(input)
    }
}

fn check_size(len: usize) -> Result<(), StepError> {
    if len > MAX_INPUT_BYTES {
        return Err(StepError::invalid(
            "$",
            format!("input is {len} bytes; Step Functions accepts at most {MAX_INPUT_BYTES}"),
        ));
    }
    Ok(())
}

fn parse_event(input: Value) -> Result<PlanInput, StepError> {
    let event: Event = from_value(input, "")?;
    if event.source == "aws.states" && event.detail_type == STATUS_CHANGE {
        return parse_status_change(event.detail);
    }
    if event.source != "aws.ecr" || event.detail_type != "ECR Image Action" {
        return Err(StepError::invalid(
            "detail-type",
            format!(
                "Slipway starts from \"ECR Image Action\" events of source \"aws.ecr\" and \"{STATUS_CHANGE}\" events of source \"aws.states\", this is {:?} from {:?}",
                event.detail_type, event.source
            ),
        ));
    }
    let detail: EcrImageAction = from_value(event.detail, "detail.")?;
    if detail.action_type != "PUSH" {
        return Ok(PlanInput::NothingToDo {
            reason: format!(
                "ECR action {:?} on {} is not a push",
                detail.action_type, detail.repository_name
            ),
        });
    }
    if detail.result != "SUCCESS" {
        return Ok(PlanInput::NothingToDo {
            reason: format!(
                "ECR push to {} did not succeed (result {:?})",
                detail.repository_name, detail.result
            ),
        });
    }
    check_repository(&detail.repository_name, "detail.repository-name")?;
    let image = image_ref(
        detail.image_tag,
        detail.image_digest,
        "detail.image-tag",
        "detail.image-digest",
    )?;
    if image.digest.is_none() {
        return Err(StepError::invalid(
            "detail.image-digest",
            "missing: an ECR push event always carries the pushed digest",
        ));
    }
    Ok(PlanInput::Deploy {
        request: DeployRequest {
            services: ServiceSelection::Repository {
                name: detail.repository_name,
            },
            image,
            trigger: Trigger::EcrPush {
                event_id: event.id,
                account: event.account,
                region: event.region,
                time: event.time,
            },
        },
    })
}

/// The `detail-type` of Step Functions' execution status events.
pub const STATUS_CHANGE: &str = "Step Functions Execution Status Change";

/// An execution's status change: ABORTED and TIMED_OUT ones are recovered; the others ended
/// through the state machine's own states (a FAILED one has rolled back and recorded itself).
fn parse_status_change(detail: Value) -> Result<PlanInput, StepError> {
    let change: StatusChange = from_value(detail, "detail.")?;
    let arn = &change.execution_arn;
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 8 || parts[0] != "arn" || parts[2] != "states" || parts[5] != "execution" {
        return Err(StepError::invalid(
            "detail.executionArn",
            format!("{arn:?} is not a Step Functions execution ARN (arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME)"),
        ));
    }
    match change.status.as_str() {
        "ABORTED" | "TIMED_OUT" => Ok(PlanInput::Recover {
            execution: change.execution_arn,
            status: change.status,
            // An input that is not JSON is no deploy request: nothing to record from it.
            input: change
                .input
                .and_then(|text| serde_json::from_str(&text).ok()),
            started_ms: change.start_date,
        }),
        "RUNNING" | "SUCCEEDED" | "FAILED" | "PENDING_REDRIVE" => Ok(PlanInput::NothingToDo {
            reason: format!(
                "execution {arn} is {}: only ABORTED and TIMED_OUT executions need recovering",
                change.status
            ),
        }),
        other => Err(StepError::invalid(
            "detail.status",
            format!("{other:?}: expected RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED"),
        )),
    }
}

fn parse_manual(input: Value) -> Result<PlanInput, StepError> {
    let manual: ManualInput = from_value(input, "")?;
    let services = match manual.services {
        None => ServiceSelection::All,
        Some(names) if names.is_empty() => {
            return Err(StepError::invalid(
                "services",
                "empty list: name at least one service, or leave `services` out to deploy every service",
            ))
        }
        Some(names) => {
            for (i, name) in names.iter().enumerate() {
                check_service_name(name, &format!("services[{i}]"))?;
                if names[..i].contains(name) {
                    return Err(StepError::invalid(
                        format!("services[{i}]"),
                        format!("{name:?} is listed twice"),
                    ));
                }
            }
            ServiceSelection::Named { names }
        }
    };
    if manual.tag.is_none() && manual.digest.is_none() {
        return Err(StepError::invalid(
            "tag",
            "missing: give the image to deploy as `tag` (e.g. the commit SHA) or `digest` (sha256:…)",
        ));
    }
    if manual.tag.is_some() && manual.digest.is_some() {
        return Err(StepError::invalid(
            "digest",
            "give `tag` or `digest`, not both: the digest a tag points to is resolved in ECR",
        ));
    }
    let image = image_ref(manual.tag, manual.digest, "tag", "digest")?;
    check_free_text(manual.reason.as_deref(), "reason", 1024)?;
    check_free_text(manual.commit.as_deref(), "commit", 128)?;
    Ok(PlanInput::Deploy {
        request: DeployRequest {
            services,
            image,
            trigger: Trigger::Manual {
                reason: manual.reason,
                commit: manual.commit,
            },
        },
    })
}

/// Deserialises with the path of the failing field in the error (`prefix` is prepended:
/// `"detail."` for the fields of an event's detail).
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
    prefix: &str,
) -> Result<T, StepError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field in the message (path "."), an unknown one too.
        let (field, problem) = match field_in_message(&inner) {
            Some(name) if path == "." => (format!("{prefix}{name}"), inner),
            _ if path == "." => (
                if prefix.is_empty() {
                    "$".to_owned()
                } else {
                    prefix.trim_end_matches('.').to_owned()
                },
                inner,
            ),
            _ => (format!("{prefix}{path}"), inner),
        };
        StepError::invalid(field, problem)
    })
}

/// The field serde names in "missing field `x`" / "unknown field `x`, expected …".
fn field_in_message(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

fn image_ref(
    tag: Option<String>,
    digest: Option<String>,
    tag_field: &str,
    digest_field: &str,
) -> Result<ImageRef, StepError> {
    if let Some(tag) = &tag {
        check_tag(tag, tag_field)?;
    }
    if let Some(digest) = &digest {
        check_digest(digest, digest_field)?;
    }
    Ok(ImageRef { tag, digest })
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str, field: &str) -> Result<(), StepError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let problem = if tag.is_empty() {
        "empty: give the image tag, e.g. the commit SHA".to_owned()
    } else if tag.len() > 128 {
        format!("{} characters long; a tag has at most 128", tag.len())
    } else if tag.starts_with(['.', '-']) {
        format!(
            "{tag:?} starts with {:?}; a tag starts with a letter, digit or _",
            &tag[..1]
        )
    } else if let Some(c) = tag.chars().find(|&c| !ok_char(c)) {
        format!("{tag:?} contains {c:?}; a tag is letters, digits, _, . and -")
    } else {
        return Ok(());
    };
    Err(StepError::invalid(field, problem))
}

/// `sha256:` (or `sha512:`) and lowercase hex. Not held to exactly 64 digits: AWS's own
/// sample events carry shortened digests.
fn check_digest(digest: &str, field: &str) -> Result<(), StepError> {
    let hex = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("sha512:"));
    let ok = hex.is_some_and(|h| {
        (32..=128).contains(&h.len())
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(StepError::invalid(
            field,
            format!(
                "{digest:?} is not an image digest; expected sha256: followed by lowercase hex"
            ),
        ))
    }
}

/// Service names as the configuration spells them: letters, digits, `-` and `_`, 1–255
/// characters (ECS's own rule for service names).
fn check_service_name(name: &str, field: &str) -> Result<(), StepError> {
    let problem = if name.is_empty() {
        "empty service name".to_owned()
    } else if name.len() > 255 {
        format!(
            "{} characters long; a service name has at most 255",
            name.len()
        )
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        format!("{name:?} contains {c:?}; a service name is letters, digits, - and _")
    } else {
        return Ok(());
    };
    Err(StepError::invalid(field, problem))
}

/// ECR's repository name rule: lowercase, digits and `._-/`, 2–256 characters.
fn check_repository(name: &str, field: &str) -> Result<(), StepError> {
    let ok = (2..=256).contains(&name.len())
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
        });
    if ok {
        Ok(())
    } else {
        Err(StepError::invalid(
            field,
            format!("{name:?} is not an ECR repository name"),
        ))
    }
}

fn check_free_text(text: Option<&str>, field: &str, max: usize) -> Result<(), StepError> {
    match text {
        Some(t) if t.len() > max => Err(StepError::invalid(
            field,
            format!("{} bytes long; at most {max}", t.len()),
        )),
        Some(t) if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            Err(StepError::invalid(field, "contains control characters"))
        }
        _ => Ok(()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn deploy(input: Value) -> DeployRequest {
        match parse(input) {
            Ok(PlanInput::Deploy { request }) => request,
            other => panic!("expected a deploy request, got {other:?}"),
        }
    }

    #[test]
    fn ecr_push_event_as_delivered() {
        let r = deploy(fixture("ecr-push.json"));
        assert_eq!(
            r.services,
            ServiceSelection::Repository {
                name: "my-repository-name".into()
            }
        );
        assert_eq!(r.image.tag.as_deref(), Some("latest"));
        assert_eq!(
            r.image.digest.as_deref(),
            Some("sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234")
        );
        assert_eq!(
            r.trigger,
            Trigger::EcrPush {
                event_id: "13cde686-328b-6117-af20-0e5566167482".into(),
                account: "123456789012".into(),
                region: "us-west-2".into(),
                time: "2019-11-16T01:54:34Z".into(),
            }
        );
    }

    #[test]
    fn untagged_push_still_deploys_by_digest() {
        let mut event = fixture("ecr-push.json");
        event["detail"]
            .as_object_mut()
            .map(|d| d.remove("image-tag"));
        let r = deploy(event);
        assert_eq!(r.image.tag, None);
        assert!(r.image.digest.is_some());
    }

    #[test]
    fn delete_and_failed_push_are_nothing_to_do() {
        let reason = |v| match parse(v) {
            Ok(PlanInput::NothingToDo { reason }) => reason,
            other => panic!("expected nothing to do, got {other:?}"),
        };
        assert!(reason(fixture("ecr-delete.json")).contains("\"DELETE\""));
        let mut failed = fixture("ecr-push.json");
        failed["detail"]["result"] = json!("FAILURE");
        assert!(reason(failed).contains("did not succeed"));
    }

    #[test]
    fn stopped_and_timed_out_executions_are_recovered_others_not() {
        let event = fixture("execution-aborted.json");
        let arn = "arn:aws:states:us-east-1:123456789012:execution:slipway-staging:ecr-push-2f1c";
        assert_eq!(
            parse(event.clone()).expect("valid"),
            PlanInput::Recover {
                execution: arn.into(),
                status: "ABORTED".into(),
                input: Some(json!({})),
                started_ms: Some(1_795_674_000_000),
            }
        );
        // The ended execution's input is carried over, parsed; one that is not JSON (or left
        // out for its size) is none.
        let mut with_input = event.clone();
        with_input["detail"]["input"] = json!(fixture("manual.json").to_string());
        match parse(with_input).expect("valid") {
            PlanInput::Recover { input, .. } => assert_eq!(input, Some(fixture("manual.json"))),
            other => panic!("{other:?}"),
        }
        let mut unreadable = event.clone();
        unreadable["detail"]["input"] = json!("not json {");
        match parse(unreadable).expect("valid") {
            PlanInput::Recover { input, .. } => assert_eq!(input, None),
            other => panic!("{other:?}"),
        }
        let with_status = |status: &str| {
            let mut e = event.clone();
            e["detail"]["status"] = json!(status);
            parse(e)
        };
        assert!(matches!(
            with_status("TIMED_OUT"),
            Ok(PlanInput::Recover { status, .. }) if status == "TIMED_OUT"
        ));
        for done in ["SUCCEEDED", "FAILED", "RUNNING"] {
            match with_status(done) {
                Ok(PlanInput::NothingToDo { reason }) => assert!(reason.contains(done), "{reason}"),
                other => panic!("{done}: {other:?}"),
            }
        }
        let e = with_status("EXPLODED").unwrap_err();
        assert!(e.to_string().starts_with("detail.status: "), "{e}");
        let mut bad = event.clone();
        bad["detail"]["executionArn"] = json!("not-an-arn");
        let e = parse(bad).unwrap_err();
        assert!(e.to_string().starts_with("detail.executionArn: "), "{e}");
        let mut other = event;
        other["detail-type"] = json!("Step Functions State Machine Status Change");
        let e = parse(other).unwrap_err();
        assert!(e.to_string().starts_with("detail-type: "), "{e}");
    }

    #[test]
    fn manual_forms() {
        let r = deploy(fixture("manual.json"));
        assert_eq!(
            r.services,
            ServiceSelection::Named {
                names: vec!["api".into(), "web".into()]
            }
        );
        assert_eq!(
            r.image,
            ImageRef {
                tag: Some("3f2a1bc".into()),
                digest: None
            }
        );
        assert_eq!(
            r.trigger,
            Trigger::Manual {
                reason: Some("hotfix for login".into()),
                commit: Some("3f2a1bc9d0e4".into())
            }
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = deploy(json!({ "digest": digest }));
        assert_eq!(r.services, ServiceSelection::All);
        assert_eq!(r.image.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(
            r.trigger,
            Trigger::Manual {
                reason: None,
                commit: None
            }
        );
    }

    #[test]
    fn normalised_form_round_trips_through_json() {
        let planned = parse(fixture("ecr-push.json")).expect("valid");
        let json = serde_json::to_value(&planned).expect("serialises");
        assert_eq!(json["action"], "deploy");
        let back: PlanInput = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, planned);
    }

    /// Every bad input gets `Slipway.InvalidInput`, naming the field at fault.
    #[test]
    fn bad_inputs_name_the_field() {
        let push = fixture("ecr-push.json");
        let with = |path: &[&str], value: Value| {
            let mut v = push.clone();
            let mut cur = &mut v;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[path[path.len() - 1]] = value;
            v
        };
        let without = |path: &[&str]| {
            let mut v = push.clone();
            let mut cur = &mut v;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur.as_object_mut().map(|o| o.remove(path[path.len() - 1]));
            v
        };
        let big = "x".repeat(MAX_INPUT_BYTES + 1);
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([1, 2]), "$", "expected a JSON object"),
            (json!("api"), "$", "found a string"),
            (json!(null), "$", "found null"),
            (json!({}), "tag", "missing"),
            (json!({"tag": 42}), "tag", "invalid type"),
            (json!({"tag": ""}), "tag", "empty"),
            (json!({"tag": "has space"}), "tag", "contains ' '"),
            (json!({"tag": ".hidden"}), "tag", "starts with"),
            (json!({"tag": "x".repeat(129)}), "tag", "129 characters"),
            (
                json!({"digest": "sha256:xyz"}),
                "digest",
                "not an image digest",
            ),
            (
                json!({"digest": "md5:abcdef"}),
                "digest",
                "not an image digest",
            ),
            (
                json!({"tag": "a", "digest": format!("sha256:{}", "a".repeat(64))}),
                "digest",
                "not both",
            ),
            (
                json!({"services": "api", "tag": "a"}),
                "services",
                "invalid type",
            ),
            (
                json!({"services": [], "tag": "a"}),
                "services",
                "empty list",
            ),
            (
                json!({"services": ["api", 3], "tag": "a"}),
                "services[1]",
                "invalid type",
            ),
            (
                json!({"services": ["api", "api"], "tag": "a"}),
                "services[1]",
                "listed twice",
            ),
            (
                json!({"services": ["a/b"], "tag": "a"}),
                "services[0]",
                "contains '/'",
            ),
            (
                json!({"services": [""], "tag": "a"}),
                "services[0]",
                "empty service name",
            ),
            (
                json!({"tag": "a", "colour": "red"}),
                "colour",
                "unknown field",
            ),
            (
                json!({"tag": "a", "reason": "x".repeat(2000)}),
                "reason",
                "at most 1024",
            ),
            (
                json!({"tag": "a", "commit": "abc\u{7}"}),
                "commit",
                "control characters",
            ),
            (
                json!({"tag": "a", "reason": big}),
                "$",
                "Step Functions accepts at most",
            ),
            (
                with(
                    &["detail-type"],
                    json!("EC2 Instance State-change Notification"),
                ),
                "detail-type",
                "ECR Image Action",
            ),
            (
                with(&["source"], json!("aws.ec2")),
                "detail-type",
                "aws.ec2",
            ),
            (
                fixture("ecr-pull-through-cache.json"),
                "detail-type",
                "Pull Through Cache",
            ),
            (without(&["id"]), "id", "missing field"),
            (without(&["detail"]), "detail", "missing field"),
            (with(&["detail"], json!("PUSH")), "detail", "invalid type"),
            (
                without(&["detail", "repository-name"]),
                "detail.repository-name",
                "missing field",
            ),
            (
                with(&["detail", "repository-name"], json!("Bad Repo")),
                "detail.repository-name",
                "not an ECR repository",
            ),
            (
                with(&["detail", "image-tag"], json!("")),
                "detail.image-tag",
                "empty",
            ),
            (
                with(&["detail", "image-digest"], json!("latest")),
                "detail.image-digest",
                "not an image digest",
            ),
            (
                without(&["detail", "image-digest"]),
                "detail.image-digest",
                "always carries",
            ),
            (
                with(&["detail", "action-type"], json!(7)),
                "detail.action-type",
                "invalid type",
            ),
        ];
        for (input, field, words) in cases {
            let shown = input.to_string();
            let shown = &shown[..shown.len().min(120)];
            match parse(input) {
                Err(e @ StepError::InvalidInput { .. }) => {
                    let StepError::InvalidInput {
                        field: got,
                        problem,
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!(got, field, "{shown}: {e}");
                    assert!(
                        problem.contains(words),
                        "{shown}: {problem:?} should say {words:?}"
                    );
                    assert_eq!(e.name(), "Slipway.InvalidInput");
                }
                other => panic!("{shown}: expected InvalidInput on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn bytes_that_are_not_json_say_where() {
        let e = parse_bytes(b"{\"tag\": }").expect_err("not JSON");
        assert_eq!(e.name(), "Slipway.InvalidInput");
        assert!(e.to_string().contains("line 1, column 9"), "{e}");
        let e = parse_bytes(&vec![b' '; MAX_INPUT_BYTES + 1]).expect_err("too big");
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
