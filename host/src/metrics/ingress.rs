//! Ingress's instruments: each request to `/hooks/{source}` is counted once, by
//! source and HTTP status and by source and outcome (lock-free atomics for every
//! configured source and every outcome ingress can produce, read by `/metrics` and
//! the status view). Only configured sources get counters; requests for unknown names
//! share one, so a sender cannot grow the label set.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::SourceStatus;

/// The label of requests to a source that is not configured.
pub const UNKNOWN_SOURCE: &str = "_unknown";

/// Rejection reasons that are verification failures (the request is not provably from
/// the sender), as opposed to refusals of a verified request.
pub const VERIFICATION_REASONS: &[&str] = &[
    "signature_mismatch",
    "timestamp_out_of_tolerance",
    "missing_header",
    "malformed_header",
    "duplicate_header",
    // a2a's JWT checks
    "unknown_key",
    "algorithm_not_allowed",
    "audience_mismatch",
    "token_expired",
    "malformed_token",
];

/// The event was stored.
pub const STORED: &str = "stored";
/// A duplicate of a stored event was acknowledged.
pub const DUPLICATE: &str = "duplicate";
/// A handshake (Slack's `url_verification`, Discord's `PING`, MCP's `verification`,
/// the CloudEvents `OPTIONS` validation) was answered.
pub const CHALLENGE: &str = "challenge";

/// Every outcome: the accepted ones, then each rejection reason.
pub const OUTCOMES: &[&str] = &[
    STORED,
    DUPLICATE,
    CHALLENGE,
    "signature_mismatch",
    "timestamp_out_of_tolerance",
    "missing_header",
    "malformed_header",
    "duplicate_header",
    "malformed_body",
    "schema_violation",
    "body_too_large",
    "body_read_error",
    "body_timeout",
    "overloaded",
    "rate_limited",
    "store_unavailable",
    "queue_full",
    "disk_full",
    "method_not_allowed",
    "unknown_key",
    "algorithm_not_allowed",
    "audience_mismatch",
    "token_expired",
    "malformed_token",
    "origin_not_allowed",
];

/// Ingress's request counters; clones share them.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    /// By source and HTTP status.
    pub requests: Family<SourceStatus, Counter>,
    /// By source and outcome.
    pub outcomes: Arc<IngressCounters>,
}

impl IngressMetrics {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a String>) -> IngressMetrics {
        IngressMetrics {
            requests: Family::default(),
            outcomes: Arc::new(IngressCounters::new(sources)),
        }
    }

    /// Count one request to `/hooks/{source}` that ended with `outcome` (an accepted
    /// outcome or a rejection reason), answered with `status`.
    pub fn record(&self, source: &str, outcome: &str, status: u16) {
        let label = if self.outcomes.count(source, outcome) {
            source
        } else {
            UNKNOWN_SOURCE
        };
        self.requests
            .get_or_create(&SourceStatus {
                source: label.to_string(),
                status,
            })
            .inc();
    }
}

/// Counters per (source, outcome).
#[derive(Debug)]
pub struct IngressCounters {
    by_source: HashMap<String, Vec<AtomicU64>>,
    /// Requests for a source that is not configured.
    unknown_source: AtomicU64,
    /// Outcomes of configured sources that are not in [`OUTCOMES`] (a reason added
    /// elsewhere without a counter); never expected, but never lost either.
    other: AtomicU64,
}

impl IngressCounters {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a String>) -> IngressCounters {
        IngressCounters {
            by_source: sources
                .into_iter()
                .map(|s| {
                    (
                        s.clone(),
                        OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
                    )
                })
                .collect(),
            unknown_source: AtomicU64::new(0),
            other: AtomicU64::new(0),
        }
    }

    /// Count one request of `source` with `outcome` (a rejection reason or one of the
    /// accepted outcomes); returns whether `source` is a configured one.
    pub fn count(&self, source: &str, outcome: &str) -> bool {
        let Some(counters) = self.by_source.get(source) else {
            self.unknown_source.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let counter = match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) => &counters[i],
            None => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The count for one (source, outcome).
    pub fn get(&self, source: &str, outcome: &str) -> u64 {
        let i = OUTCOMES.iter().position(|o| *o == outcome);
        match (self.by_source.get(source), i) {
            (Some(counters), Some(i)) => counters[i].load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Every (source, outcome, count), sources sorted, outcomes in [`OUTCOMES`] order
    /// (zeros included, so a scrape always sees every series).
    pub fn snapshot(&self) -> Vec<(String, &'static str, u64)> {
        let mut sources: Vec<_> = self.by_source.iter().collect();
        sources.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(sources.len() * OUTCOMES.len());
        for (source, counters) in sources {
            for (outcome, c) in OUTCOMES.iter().zip(counters) {
                out.push((source.clone(), *outcome, c.load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// Requests for sources that are not configured.
    pub fn unknown_source(&self) -> u64 {
        self.unknown_source.load(Ordering::Relaxed)
    }

    /// Outcomes without a counter of their own (should stay 0).
    pub fn other(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_source_and_outcome() {
        let names = ["a".to_string(), "b".to_string()];
        let c = IngressCounters::new(&names);
        c.count("a", STORED);
        c.count("a", "signature_mismatch");
        c.count("a", "signature_mismatch");
        c.count("zzz", "unknown_source");
        c.count("b", "a_reason_nobody_registered");
        assert_eq!(c.get("a", STORED), 1);
        assert_eq!(c.get("a", "signature_mismatch"), 2);
        assert_eq!(c.get("b", "signature_mismatch"), 0);
        assert_eq!(c.unknown_source(), 1);
        assert_eq!(c.other(), 1);
        let snap = c.snapshot();
        assert_eq!(snap.len(), 2 * OUTCOMES.len());
        assert_eq!(snap[0], ("a".to_string(), STORED, 1));
    }
}
