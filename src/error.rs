//! The engine's one error type.
//!
//! Every layer's failure folds into [`Error`], which knows its HTTP status, whether a retry
//! on another route may help, and which side caused it. Front-ends turn it into their
//! protocol's error body in one place each (`protocol::<name>::error_body`). Messages never
//! carry a secret: back-ends scrub their keys from upstream text before building one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which side of the proxy caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong.
    Client,
    /// The provider failed or could not be reached.
    Upstream,
    /// llmux itself.
    Internal,
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::FirstByte => "waiting for the first byte",
            TimeoutPhase::Idle => "waiting for the next chunk",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        /// The offending field, as a path (`messages[0].content`).
        param: Option<String>,
    },
    #[error("{message}")]
    Unauthorized { message: String },
    /// A request llmux will not serve as sent: a Host or Origin it does not answer.
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The request holds more input tokens than its model takes (the seed's
    /// `input_limit_exceeded`); refused before any provider is called.
    #[error(
        "Input token limit exceeded: the prompt is too long for model '{model}' ({measured} \
         tokens > {limit} maximum)"
    )]
    InputLimitExceeded {
        model: String,
        limit: u64,
        measured: u64,
    },
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("back-end '{backend}' is not usable: {message}")]
    BackendNotConfigured { backend: String, message: String },
    #[error("back-end '{backend}' is unreachable: {message}")]
    BackendUnreachable { backend: String, message: String },
    /// The back-end failed too often in a row; its circuit breaker leaves it alone.
    #[error(
        "back-end '{backend}' failed too often in a row and is left alone for {retry_after:.0?} \
         (circuit breaker open)"
    )]
    CircuitOpen {
        backend: String,
        retry_after: Duration,
    },
    #[error("back-end '{backend}' timed out {phase} (after {after:?})")]
    Timeout {
        backend: String,
        phase: TimeoutPhase,
        after: Duration,
    },
    /// The provider answered with an error status.
    #[error("back-end '{backend}' answered {status}: {message}")]
    Upstream {
        backend: String,
        status: u16,
        message: String,
        /// The provider's own error type and code, when it sent them.
        error_type: Option<String>,
        code: Option<String>,
        retry_after: Option<Duration>,
    },
    /// The provider sent something that is not its protocol (garbage SSE, bad JSON).
    #[error("back-end '{backend}' sent an invalid response: {message}")]
    UpstreamProtocol { backend: String, message: String },
    /// The provider's stream broke after it started.
    #[error("back-end '{backend}' stream broke off: {message}")]
    StreamInterrupted { backend: String, message: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

/// A cheap, cloneable engine error.
#[derive(Clone)]
pub struct Error(Arc<ErrorKind>);

impl Error {
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        ErrorKind::InvalidRequest {
            message: message.into(),
            param: None,
        }
        .into()
    }

    pub fn invalid_field(param: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorKind::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
        .into()
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ErrorKind::NotFound {
            message: message.into(),
        }
        .into()
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ErrorKind::Unauthorized {
            message: message.into(),
        }
        .into()
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ErrorKind::Forbidden {
            message: message.into(),
        }
        .into()
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ErrorKind::Internal {
            message: message.into(),
        }
        .into()
    }

    pub fn status(&self) -> u16 {
        match self.kind() {
            // As the seed documents: a body that cannot be read is 400, a field that fails
            // validation 422 (its details name the field); too many input tokens is 400.
            ErrorKind::InvalidRequest { param: Some(_), .. } => 422,
            ErrorKind::InvalidRequest { param: None, .. }
            | ErrorKind::InputLimitExceeded { .. } => 400,
            ErrorKind::Unauthorized { .. } => 401,
            ErrorKind::Forbidden { .. } => 403,
            ErrorKind::NotFound { .. } => 404,
            ErrorKind::PayloadTooLarge { .. } => 413,
            ErrorKind::RateLimited { .. } => 429,
            ErrorKind::BackendNotConfigured { .. }
            | ErrorKind::BackendUnreachable { .. }
            | ErrorKind::CircuitOpen { .. } => 503,
            ErrorKind::Timeout { .. } => 504,
            ErrorKind::Upstream { status, .. } => *status,
            ErrorKind::UpstreamProtocol { .. } | ErrorKind::StreamInterrupted { .. } => 502,
            ErrorKind::Internal { .. } => 500,
        }
    }

    pub fn side(&self) -> Side {
        match self.kind() {
            ErrorKind::InvalidRequest { .. }
            | ErrorKind::InputLimitExceeded { .. }
            | ErrorKind::Unauthorized { .. }
            | ErrorKind::Forbidden { .. }
            | ErrorKind::NotFound { .. }
            | ErrorKind::PayloadTooLarge { .. }
            | ErrorKind::RateLimited { .. } => Side::Client,
            ErrorKind::BackendNotConfigured { .. }
            | ErrorKind::BackendUnreachable { .. }
            | ErrorKind::CircuitOpen { .. }
            | ErrorKind::Timeout { .. }
            | ErrorKind::Upstream { .. }
            | ErrorKind::UpstreamProtocol { .. }
            | ErrorKind::StreamInterrupted { .. } => Side::Upstream,
            ErrorKind::Internal { .. } => Side::Internal,
        }
    }

    /// Whether the same request may succeed on another route (failover, key rotation).
    pub fn is_retryable(&self) -> bool {
        match self.kind() {
            ErrorKind::BackendNotConfigured { .. }
            | ErrorKind::BackendUnreachable { .. }
            | ErrorKind::CircuitOpen { .. }
            | ErrorKind::Timeout { .. }
            | ErrorKind::UpstreamProtocol { .. }
            | ErrorKind::StreamInterrupted { .. } => true,
            ErrorKind::Upstream { status, .. } => {
                matches!(status, 401 | 403 | 408 | 409 | 429 | 500..=599)
            }
            _ => false,
        }
    }

    /// How an attempt at a back-end failed, as the attempt chain shows it: the provider's
    /// status, or `timeout`, `connect`, `unconfigured`; `502` for a broken or unreadable
    /// answer.
    pub fn failure_label(&self) -> std::borrow::Cow<'static, str> {
        match self.kind() {
            ErrorKind::Timeout { .. } => "timeout".into(),
            ErrorKind::BackendUnreachable { .. } => "connect".into(),
            ErrorKind::BackendNotConfigured { .. } => "unconfigured".into(),
            ErrorKind::CircuitOpen { .. } => "circuit-open".into(),
            _ => self.status().to_string().into(),
        }
    }

    /// The back-end involved, if any.
    pub fn backend(&self) -> Option<&str> {
        match self.kind() {
            ErrorKind::BackendNotConfigured { backend, .. }
            | ErrorKind::BackendUnreachable { backend, .. }
            | ErrorKind::CircuitOpen { backend, .. }
            | ErrorKind::Timeout { backend, .. }
            | ErrorKind::Upstream { backend, .. }
            | ErrorKind::UpstreamProtocol { backend, .. }
            | ErrorKind::StreamInterrupted { backend, .. } => Some(backend),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind() {
            ErrorKind::RateLimited { retry_after, .. }
            | ErrorKind::Upstream { retry_after, .. } => *retry_after,
            ErrorKind::CircuitOpen { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The seed's machine-readable form of an error it documents (`input_limit_exceeded`):
    /// `{"code","message","details"}`, which llmux adds to the client's error body as
    /// `detail` so scripts written for the seed keep working.
    pub fn seed_detail(&self) -> Option<serde_json::Value> {
        match self.kind() {
            ErrorKind::InputLimitExceeded {
                model,
                limit,
                measured,
            } => Some(serde_json::json!({
                "code": "input_limit_exceeded",
                "message": "Input token limit exceeded",
                "details": {"model": model, "limit": limit, "measured": measured},
            })),
            _ => None,
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self.kind() {
            ErrorKind::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
impl Error {
    /// A provider's error answer with `status` (and its Retry-After), for unit tests.
    pub(crate) fn upstream_status(status: u16, retry_after: Option<Duration>) -> Error {
        ErrorKind::Upstream {
            backend: "b".into(),
            status,
            message: format!("provider says {status}"),
            error_type: None,
            code: None,
            retry_after,
        }
        .into()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Arc::new(kind))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retryability_follow_the_kind() {
        let upstream = |status| -> Error {
            ErrorKind::Upstream {
                backend: "openai".into(),
                status,
                message: "x".into(),
                error_type: None,
                code: None,
                retry_after: None,
            }
            .into()
        };
        assert_eq!(upstream(429).status(), 429);
        assert!(upstream(429).is_retryable());
        assert!(upstream(503).is_retryable());
        assert!(!upstream(400).is_retryable());
        assert_eq!(upstream(400).side(), Side::Upstream);
        assert_eq!(Error::invalid_request("bad").status(), 400);
        assert_eq!(Error::invalid_request("bad").side(), Side::Client);
        let timeout: Error = ErrorKind::Timeout {
            backend: "zai".into(),
            phase: TimeoutPhase::Idle,
            after: Duration::from_secs(2),
        }
        .into();
        assert_eq!(timeout.status(), 504);
        assert_eq!(timeout.backend(), Some("zai"));
        assert!(timeout.to_string().contains("waiting for the next chunk"));
    }
}
