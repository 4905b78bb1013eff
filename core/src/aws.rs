//! The AWS clients the steps use, built once per Lambda, and how their errors map to
//! [`StepError`]s.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use crate::StepError;

/// Every client a step may need, and the state table's name.
#[derive(Debug, Clone)]
pub struct Clients {
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// ECR.
    pub ecr: aws_sdk_ecr::Client,
    /// CloudFormation.
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// ELBv2.
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// DynamoDB (the state table).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// EventBridge.
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// CloudWatch (the alarms a release watches).
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch Logs (the containers' last lines, for why a release failed).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Step Functions (answering a `.waitForTaskToken` task).
    pub sfn: aws_sdk_sfn::Client,
    /// The state table's name.
    pub table: String,
}

/// The environment variable naming the state table.
pub const TABLE_ENV: &str = "SLIPWAY_TABLE";

/// The environment variables naming the function ECS invokes as a service's lifecycle hook
/// (health-check) and the role ECS assumes to invoke it: the template sets them on
/// update-services, which registers the hook for services with a check through the test
/// listener.
pub const HOOK_FUNCTION_ENV: &str = "SLIPWAY_HOOK_FUNCTION_ARN";
/// See [`HOOK_FUNCTION_ENV`].
pub const HOOK_ROLE_ENV: &str = "SLIPWAY_HOOK_ROLE_ARN";

/// The environment variable naming the SNS topic `slipway bootstrap --create-topic` made
/// (its template sets it on the functions); used when slipway.toml names no topic.
pub const TOPIC_ENV: &str = "SLIPWAY_TOPIC_ARN";

impl Clients {
    /// Clients from the environment's configuration (region, credentials, and the
    /// `AWS_ENDPOINT_URL*` overrides), the table from `SLIPWAY_TABLE` (default `slipway`).
    pub async fn from_env() -> Self {
        let conf = aws_config::load_defaults(BehaviorVersion::latest()).await;
        let table = std::env::var(TABLE_ENV).unwrap_or_else(|_| "slipway".to_owned());
        Self::new(&conf, table)
    }

    /// Clients from a configuration.
    pub fn new(conf: &SdkConfig, table: impl Into<String>) -> Self {
        Self {
            ecs: aws_sdk_ecs::Client::new(conf),
            ecr: aws_sdk_ecr::Client::new(conf),
            cloudformation: aws_sdk_cloudformation::Client::new(conf),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(conf),
            dynamodb: aws_sdk_dynamodb::Client::new(conf),
            sns: aws_sdk_sns::Client::new(conf),
            eventbridge: aws_sdk_eventbridge::Client::new(conf),
            cloudwatch: aws_sdk_cloudwatch::Client::new(conf),
            logs: aws_sdk_cloudwatchlogs::Client::new(conf),
            sfn: aws_sdk_sfn::Client::new(conf),
            table: table.into(),
        }
    }
}

/// An SDK error as `Code: message` (or its full context when the service said nothing), for
/// any service's SDK (they share smithy's error types).
pub fn sdk_error<E, R>(e: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        ),
        None => format!("{}", aws_sdk_ecs::error::DisplayErrorContext(e)),
    }
}

/// An AWS call that failed, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The operation, e.g. `ecs:DescribeServices`.
    pub op: &'static str,
    /// The error code (`ClusterNotFoundException`, `ValidationError`, …), empty if none.
    pub code: String,
    /// The message.
    pub message: String,
    /// Throttling, a 5xx answer, a timeout or a connection failure: worth retrying.
    pub transient: bool,
}

const THROTTLING: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
];

impl AwsError {
    /// Classifies an SDK error of operation `op`: by its code, and by its HTTP status — any
    /// 5xx or 429 is worth retrying whatever its code says (DynamoDB's `InternalServerError`,
    /// a proxy's 502), any other 4xx is not.
    pub fn of<E>(op: &'static str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &error {
            SdkError::ServiceError(e) => {
                let code = e.err().code().unwrap_or_default().to_owned();
                let message = e.err().message().unwrap_or_default().to_owned();
                let status = e.raw().status().as_u16();
                let transient = status >= 500
                    || status == 429
                    || THROTTLING.contains(&code.as_str())
                    || code.ends_with("InternalError")
                    || code == "InternalServerError"
                    || code == "ServiceUnavailable"
                    || code == "ServerException"
                    || code == "InternalFailure";
                Self {
                    op,
                    code,
                    message,
                    transient,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Self {
                op,
                code: String::new(),
                message: format!("{}", aws_sdk_ecs::error::DisplayErrorContext(&error)),
                transient: true,
            },
            _ => Self {
                op,
                code: String::new(),
                message: format!("{}", aws_sdk_ecs::error::DisplayErrorContext(&error)),
                transient: false,
            },
        }
    }

    /// `Slipway.Transient` when worth retrying, else what `otherwise` makes of the text.
    pub fn step(self, otherwise: impl FnOnce(String) -> StepError) -> StepError {
        if self.transient {
            StepError::Transient(self.to_string())
        } else {
            otherwise(self.to_string())
        }
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, _) => write!(f, "{}: {}", self.op, self.message),
            (false, true) => write!(f, "{}: {}", self.op, self.code),
            (false, false) => write!(f, "{}: {}: {}", self.op, self.code, self.message),
        }
    }
}

/// Shorthand: `.map_err(aws("ecs:DescribeServices"))`.
pub fn aws<E>(op: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| AwsError::of(op, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(status: u16, code: &str) -> AwsError {
        let err = GetItemError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::from("{}"));
        AwsError::of("dynamodb:GetItem", SdkError::service_error(err, raw))
    }

    #[test]
    fn five_hundreds_and_429_are_transient_whatever_the_code() {
        assert!(service_error(500, "InternalServerError").transient);
        assert!(service_error(502, "SomethingNew").transient);
        assert!(service_error(429, "").transient);
        assert!(service_error(400, "ThrottlingException").transient);
        assert!(!service_error(400, "ResourceNotFoundException").transient);
        assert!(!service_error(403, "AccessDeniedException").transient);
    }
}
