//! Retention passes on redb: dedup keys by age, then finished events found in a
//! bounded scan, removed in small writes that share the writer's group commits.

use std::sync::atomic::Ordering;

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

impl RedbStore {
    /// One pass with these cut-offs.
    pub(super) async fn expire_pass(&self, cut: Retention) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        let dedup_before = cut.dedup_before_ms;
        loop {
            let n = self
                .write(move |t| t.expire_dedup(dedup_before, CHUNK))
                .await?;
            report.dedup_keys_removed += n;
            if n < CHUNK {
                break;
            }
        }

        let (done_before, dead_before) = (cut.done_before_ms, cut.dead_before_ms);
        let candidates = self.candidates(done_before, dead_before)?;
        for chunk in candidates.chunks(CHUNK) {
            let ids = chunk.to_vec();
            let n = self
                .write(move |t| t.remove_expired(&ids, done_before, dead_before))
                .await?;
            report.events_removed += n;
        }
        Ok(report)
    }

    /// Events that look removable, read from a snapshot; the write re-checks each.
    fn candidates(&self, done_before: u64, dead_before: u64) -> Result<Vec<EventId>, StoreError> {
        let cutoff = done_before.max(dead_before);
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        let deliveries = read.open_table(DELIVERIES).map_err(db)?;
        let start = self.retention_cursor.load(Ordering::Relaxed);
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
        self.retention_cursor.store(next, Ordering::Relaxed);
        Ok(out)
    }
}
