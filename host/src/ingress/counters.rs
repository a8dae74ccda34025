//! Requests counted per source and outcome, ready for `/metrics`: lock-free atomic
//! counters for every configured source and every outcome ingress can produce.
//!
//! Only configured sources get counters; requests for unknown names share one counter,
//! so a sender cannot grow the label set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The event was stored.
pub const STORED: &str = "stored";
/// A duplicate of a stored event was acknowledged.
pub const DUPLICATE: &str = "duplicate";
/// A handshake (Slack's `url_verification`) was answered.
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
    "store_unavailable",
    "queue_full",
    "disk_full",
];

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
    /// accepted outcomes).
    pub fn count(&self, source: &str, outcome: &str) {
        let counter = match self.by_source.get(source) {
            None => &self.unknown_source,
            Some(counters) => match OUTCOMES.iter().position(|o| *o == outcome) {
                Some(i) => &counters[i],
                None => &self.other,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
