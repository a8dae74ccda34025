//! Retention: events whose deliveries are all finished, dead letters, and dedup keys are
//! removed once older than their keep time, in small transactions that share the
//! writer's group commits, so that ingress never stalls behind a clean-up. Deliveries
//! still queued are never removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redb::ReadableDatabase;

use super::*;

/// Events removed per write, and dedup keys forgotten per write.
const CHUNK: usize = 500;
/// Events examined per pass at most.
const SCAN_PER_PASS: usize = 20_000;

/// Whether a finished delivery has outlived its retention (`*_before_ms` are cut-offs).
pub(super) fn expired(
    d: &Delivery,
    _received_at_ms: u64,
    done_before_ms: u64,
    dead_before_ms: u64,
) -> bool {
    match d.status {
        DeliveryStatus::Done => d.updated_at_ms < done_before_ms,
        DeliveryStatus::Dead => d.updated_at_ms < dead_before_ms,
        _ => false,
    }
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
    /// Where the last pass stopped, so events pinned by queued deliveries at the old end
    /// are not rescanned forever.
    cursor: AtomicU64,
    /// Removed so far (for logs and tests).
    pub removed_events: Arc<AtomicU64>,
}

impl Janitor {
    pub fn new(store: Store, config: StoreConfig) -> Self {
        Janitor {
            store,
            config,
            cursor: AtomicU64::new(0),
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
        let mut report = PassReport::default();
        let dedup_before = now_ms.saturating_sub(self.config.dedup_window_ms);
        loop {
            let n = self
                .store
                .write(move |t| t.expire_dedup(dedup_before, CHUNK))
                .await?;
            report.dedup_keys_removed += n;
            if n < CHUNK {
                break;
            }
        }

        let done_before = now_ms.saturating_sub(self.config.done_retention_ms);
        let dead_before = now_ms.saturating_sub(self.config.dead_retention_ms);
        let candidates = self.candidates(done_before, dead_before)?;
        for chunk in candidates.chunks(CHUNK) {
            let ids = chunk.to_vec();
            let n = self
                .store
                .write(move |t| t.remove_expired(&ids, done_before, dead_before))
                .await?;
            report.events_removed += n;
        }
        self.removed_events
            .fetch_add(report.events_removed as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// Events that look removable, read from a snapshot; the write re-checks each.
    fn candidates(&self, done_before: u64, dead_before: u64) -> Result<Vec<EventId>, StoreError> {
        let cutoff = done_before.max(dead_before);
        let read = self.store.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        let deliveries = read.open_table(DELIVERIES).map_err(db)?;
        let start = self.cursor.load(Ordering::Relaxed);
        let mut out = Vec::new();
        let mut last = None;
        let mut reached_end = true;
        for (scanned, entry) in events.range(start..).map_err(db)?.enumerate() {
            if scanned >= SCAN_PER_PASS {
                reached_end = false;
                break;
            }
            let (k, v) = entry.map_err(db)?;
            let id = k.value();
            let Ok((meta, _)) = decode_event(v.value()) else {
                continue;
            };
            if meta.received_at_ms >= cutoff {
                // Everything from here on is newer (ids follow arrival).
                break;
            }
            last = Some(id);
            let ds = read_deliveries(&deliveries, id)?;
            let removable = if ds.is_empty() {
                meta.received_at_ms < done_before
            } else {
                ds.iter()
                    .all(|d| expired(d, meta.received_at_ms, done_before, dead_before))
            };
            if removable {
                out.push(id);
            }
        }
        let next = match (reached_end, last) {
            (false, Some(id)) => id + 1,
            _ => 0,
        };
        self.cursor.store(next, Ordering::Relaxed);
        Ok(out)
    }
}
