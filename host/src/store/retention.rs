//! Retention: dedup keys, events whose deliveries are all done, and dead letters are
//! removed once older than their keep time (`[store]` `dedup_window`, `done_retention`,
//! `dead_retention`). The [`Janitor`] decides when and with which cut-offs; the backend
//! removes, in steps small enough that ingress never stalls behind a clean-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Store, StoreError};
use crate::config::StoreConfig;

/// The cut-offs of one pass, in Unix ms: what was received (dedup keys) or finished
/// (events) before them has outlived its keep time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub dedup_before_ms: u64,
    pub done_before_ms: u64,
    pub dead_before_ms: u64,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub events_removed: usize,
    pub dedup_keys_removed: usize,
}

/// The background task that applies `[store]` retention.
pub struct Janitor {
    store: Store,
    config: StoreConfig,
    /// Removed so far (for logs and tests).
    pub removed_events: Arc<AtomicU64>,
}

impl Janitor {
    pub fn new(store: Store, config: StoreConfig) -> Self {
        Janitor {
            store,
            config,
            removed_events: Arc::default(),
        }
    }

    /// How often a pass runs: a quarter of the shortest retention, between 100 ms and 10 s.
    pub fn interval(&self) -> Duration {
        let c = &self.config;
        let shortest = c
            .dedup_window_ms
            .min(c.done_retention_ms)
            .min(c.dead_retention_ms);
        Duration::from_millis((shortest / 4).clamp(100, 10_000))
    }

    /// Run passes until `shutdown` resolves.
    pub async fn run(self, now: impl Fn() -> u64, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.pass(now()).await {
                Ok(r) if r != PassReport::default() => {
                    tracing::debug!(
                        events = r.events_removed,
                        dedup_keys = r.dedup_keys_removed,
                        "retention pass"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed; will try again"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval()) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// One pass at time `now_ms`.
    pub async fn pass(&self, now_ms: u64) -> Result<PassReport, StoreError> {
        let c = &self.config;
        let report = self
            .store
            .expire(Retention {
                dedup_before_ms: now_ms.saturating_sub(c.dedup_window_ms),
                done_before_ms: now_ms.saturating_sub(c.done_retention_ms),
                dead_before_ms: now_ms.saturating_sub(c.dead_retention_ms),
            })
            .await?;
        self.removed_events
            .fetch_add(report.events_removed as u64, Ordering::Relaxed);
        Ok(report)
    }
}
