//! The two error types a plugin meets: [`HandlerError`], what a handler returns to the
//! host, and [`ToolError`], what a host tool returns to the handler. Both mirror the WIT
//! variants one to one; the conversions here are the only place that maps between them.

use std::fmt;
use std::time::Duration;

use crate::bindings::agenthook::plugin::types as wit;

/// Why a handler did not complete, and whether the host should try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// A transient failure: the host retries with backoff, up to the plugin's
    /// `retry.max_attempts`, then dead-letters the delivery.
    Retry {
        /// What went wrong, recorded with the attempt.
        reason: String,
        /// The delay asked for before the next attempt; the host keeps it within the
        /// plugin's backoff bounds. `None` lets the host choose.
        delay: Option<Duration>,
    },
    /// The event can never be handled: the host dead-letters it at once.
    Permanent(String),
}

impl HandlerError {
    /// A transient failure; the host picks the delay from the plugin's backoff policy.
    pub fn retry(reason: impl Into<String>) -> Self {
        HandlerError::Retry {
            reason: reason.into(),
            delay: None,
        }
    }

    /// A transient failure that should be retried after `delay` (kept by the host within
    /// the plugin's `initial_backoff_ms..=max_backoff_ms`).
    pub fn retry_after(reason: impl Into<String>, delay: Duration) -> Self {
        HandlerError::Retry {
            reason: reason.into(),
            delay: Some(delay),
        }
    }

    /// A failure that retrying cannot fix: the delivery is dead-lettered at once.
    pub fn permanent(reason: impl Into<String>) -> Self {
        HandlerError::Permanent(reason.into())
    }

    /// The reason given when the error was made.
    pub fn reason(&self) -> &str {
        match self {
            HandlerError::Retry { reason, .. } | HandlerError::Permanent(reason) => reason,
        }
    }

    /// True when the host will try the delivery again.
    pub fn is_retry(&self) -> bool {
        matches!(self, HandlerError::Retry { .. })
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Retry {
                reason,
                delay: None,
            } => write!(f, "retryable failure: {reason}"),
            HandlerError::Retry {
                reason,
                delay: Some(delay),
            } => write!(
                f,
                "retryable failure (retry after {} ms): {reason}",
                delay.as_millis()
            ),
            HandlerError::Permanent(reason) => write!(f, "permanent failure: {reason}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// Denied and invalid calls fail the same way every time, so they are permanent; a limit
/// or a host failure may clear up, so those are retried.
impl From<ToolError> for HandlerError {
    fn from(err: ToolError) -> Self {
        match err {
            ToolError::Denied(_) | ToolError::Invalid(_) => {
                HandlerError::permanent(err.to_string())
            }
            ToolError::Limited(_) | ToolError::Failed(_) => HandlerError::retry(err.to_string()),
        }
    }
}

/// JSON that does not parse (or serialize) now never will: permanent.
impl From<serde_json::Error> for HandlerError {
    fn from(err: serde_json::Error) -> Self {
        HandlerError::permanent(format!("invalid JSON: {err}"))
    }
}

impl From<HandlerError> for wit::HandlerError {
    fn from(err: HandlerError) -> Self {
        match err {
            HandlerError::Retry { reason, delay } => wit::HandlerError::Retry(wit::RetryRequest {
                reason,
                delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
            HandlerError::Permanent(reason) => wit::HandlerError::Permanent(reason),
        }
    }
}

/// Why a host tool refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The manifest does not grant this; the text names the missing grant.
    Denied(String),
    /// The arguments are invalid (too large, malformed); the text says which.
    Invalid(String),
    /// A per-plugin limit was reached (rate, size, count).
    Limited(String),
    /// The host could not complete the call; retrying later may succeed.
    Failed(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Denied(msg) => write!(f, "denied: {msg}"),
            ToolError::Invalid(msg) => write!(f, "invalid: {msg}"),
            ToolError::Limited(msg) => write!(f, "limited: {msg}"),
            ToolError::Failed(msg) => write!(f, "failed: {msg}"),
        }
    }
}

impl std::error::Error for ToolError {}

impl From<wit::ToolError> for ToolError {
    fn from(err: wit::ToolError) -> Self {
        match err {
            wit::ToolError::Denied(msg) => ToolError::Denied(msg),
            wit::ToolError::Invalid(msg) => ToolError::Invalid(msg),
            wit::ToolError::Limited(msg) => ToolError::Limited(msg),
            wit::ToolError::Failed(msg) => ToolError::Failed(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_and_invalid_tool_errors_are_permanent() {
        let err = HandlerError::from(ToolError::Denied("kv is not granted".into()));
        assert_eq!(err, HandlerError::permanent("denied: kv is not granted"));
        let err = HandlerError::from(ToolError::Invalid("key too long".into()));
        assert_eq!(err, HandlerError::permanent("invalid: key too long"));
    }

    #[test]
    fn limited_and_failed_tool_errors_are_retried() {
        let err = HandlerError::from(ToolError::Limited("too many calls".into()));
        assert_eq!(err, HandlerError::retry("limited: too many calls"));
        let err = HandlerError::from(ToolError::Failed("store busy".into()));
        assert!(err.is_retry());
        assert_eq!(err.reason(), "failed: store busy");
    }

    #[test]
    fn question_mark_converts_tool_errors() {
        fn call() -> Result<(), HandlerError> {
            Err(ToolError::Denied("no".into()))?;
            Ok(())
        }
        assert!(!call().unwrap_err().is_retry());
    }

    #[test]
    fn serde_errors_are_permanent_and_name_the_cause() {
        let cause = serde_json::from_str::<u32>("nope").unwrap_err();
        let err = HandlerError::from(cause);
        assert!(!err.is_retry());
        assert!(
            err.reason().starts_with("invalid JSON: expected ident"),
            "{err}"
        );
    }

    #[test]
    fn retry_delay_reaches_the_abi_in_milliseconds() {
        let err = HandlerError::retry_after("busy", Duration::from_millis(1500));
        match wit::HandlerError::from(err) {
            wit::HandlerError::Retry(req) => {
                assert_eq!(req.reason, "busy");
                assert_eq!(req.delay_ms, Some(1500));
            }
            other => panic!("expected retry, got {other:?}"),
        }
        match wit::HandlerError::from(HandlerError::retry("busy")) {
            wit::HandlerError::Retry(req) => assert_eq!(req.delay_ms, None),
            other => panic!("expected retry, got {other:?}"),
        }
        match wit::HandlerError::from(HandlerError::permanent("bad")) {
            wit::HandlerError::Permanent(reason) => assert_eq!(reason, "bad"),
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn huge_delays_saturate() {
        let err = HandlerError::retry_after("later", Duration::MAX);
        match wit::HandlerError::from(err) {
            wit::HandlerError::Retry(req) => assert_eq!(req.delay_ms, Some(u64::MAX)),
            other => panic!("expected retry, got {other:?}"),
        }
    }

    #[test]
    fn display_says_what_happens_next() {
        assert_eq!(
            HandlerError::retry_after("busy", Duration::from_secs(2)).to_string(),
            "retryable failure (retry after 2000 ms): busy"
        );
        assert_eq!(
            HandlerError::permanent("bad input").to_string(),
            "permanent failure: bad input"
        );
        assert_eq!(
            ToolError::Limited("rate".into()).to_string(),
            "limited: rate"
        );
    }

    #[test]
    fn wit_tool_errors_map_variant_for_variant() {
        assert_eq!(
            ToolError::from(wit::ToolError::Denied("d".into())),
            ToolError::Denied("d".into())
        );
        assert_eq!(
            ToolError::from(wit::ToolError::Invalid("i".into())),
            ToolError::Invalid("i".into())
        );
        assert_eq!(
            ToolError::from(wit::ToolError::Limited("l".into())),
            ToolError::Limited("l".into())
        );
        assert_eq!(
            ToolError::from(wit::ToolError::Failed("f".into())),
            ToolError::Failed("f".into())
        );
    }
}
