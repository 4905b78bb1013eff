//! The error taxonomy: one enum, each variant a stable Step Functions error name.
//!
//! A step returns `Result<_, StepError>`; the Lambda runtime reports `StepError::name()` as
//! the function error's `errorType`, which Step Functions turns into the error that `Retry`
//! and `Catch` match on. The names are a contract with `statemachine/`: never rename one.

use lambda_runtime::Diagnostic;

/// A step's failure, named for the state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The execution input (or a value derived from it) is wrong; retrying cannot help.
    #[error("{field}: {problem}")]
    InvalidInput {
        /// Where the bad value is, as a path into the input (`services[1]`, `detail.image-tag`).
        field: String,
        /// What is wrong with it and, where it helps, what would be right.
        problem: String,
    },
    /// Throttling, a 5xx answer or a timeout from AWS: retried by the state machine with backoff.
    #[error("transient AWS failure: {0}")]
    Transient(String),
    /// Another execution holds the deploy lock of a service this one needs.
    #[error("locked: {0}")]
    Locked(String),
    /// A CloudFormation stack update failed (and CloudFormation rolled it back).
    #[error("stack update failed: {0}")]
    StackFailed(String),
    /// ECS failed the deployment, or its circuit breaker rolled it back.
    #[error("deployment failed: {0}")]
    DeploymentFailed(String),
    /// The services did not become stable before the release's deadline.
    #[error("not stable before the deadline: {0}")]
    NotStable(String),
    /// A service answered its health check wrongly, or its targets are unhealthy.
    #[error("health check failed: {0}")]
    HealthCheckFailed(String),
    /// Putting the previous state back failed; a person has to look.
    #[error("rollback failed: {0}")]
    RollbackFailed(String),
    /// A CloudWatch alarm the release watches was in ALARM (its name, reason and time).
    #[error("alarm triggered: {0}")]
    AlarmTriggered(String),
}

impl StepError {
    /// Every error name a step can return, as the state machine sees it.
    pub const NAMES: [&'static str; 9] = [
        "Slipway.InvalidInput",
        "Slipway.Transient",
        "Slipway.Locked",
        "Slipway.StackFailed",
        "Slipway.DeploymentFailed",
        "Slipway.NotStable",
        "Slipway.HealthCheckFailed",
        "Slipway.RollbackFailed",
        "Slipway.AlarmTriggered",
    ];

    /// Shorthand for [`StepError::InvalidInput`].
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The Step Functions error name of this error (one of [`StepError::NAMES`]).
    pub fn name(&self) -> &'static str {
        let index = match self {
            Self::InvalidInput { .. } => 0,
            Self::Transient(_) => 1,
            Self::Locked(_) => 2,
            Self::StackFailed(_) => 3,
            Self::DeploymentFailed(_) => 4,
            Self::NotStable(_) => 5,
            Self::HealthCheckFailed(_) => 6,
            Self::RollbackFailed(_) => 7,
            Self::AlarmTriggered(_) => 8,
        };
        Self::NAMES[index]
    }
}

impl From<StepError> for Diagnostic {
    fn from(error: StepError) -> Diagnostic {
        Diagnostic {
            error_type: error.name().to_owned(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_stable_name_not_a_type_path() {
        let d: Diagnostic = StepError::invalid("tag", "must not be empty").into();
        assert_eq!(d.error_type, "Slipway.InvalidInput");
        assert_eq!(d.error_message, "tag: must not be empty");
        let d: Diagnostic = StepError::RollbackFailed("x".into()).into();
        assert_eq!(d.error_type, "Slipway.RollbackFailed");
    }

    #[test]
    fn names_are_distinct_and_prefixed() {
        let mut names = StepError::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StepError::NAMES.len());
        assert!(names.iter().all(|n| n.starts_with("Slipway.")));
    }
}
