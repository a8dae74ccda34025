//! Admission and the state read on every request: per-plugin queue depths by state
//! (mirrored in memory from the `counts` table after each commit) and free disk space
//! (one statvfs, reused for a short while).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::RedbStore;
use crate::clock::now_ms;
use crate::store::model::{Counts, Refusal};

/// How long a free-space reading is reused.
const DISK_CHECK_MS: u64 = 100;

/// The last free-space reading (`u64::MAX`: unreadable) and when it was taken.
#[derive(Debug, Default)]
pub(super) struct DiskCheck {
    free_bytes: AtomicU64,
    checked_at_ms: AtomicU64,
}

/// Deliveries per plugin by state, mirrored from the `counts` table after each commit.
pub(super) type StateCounts = Arc<Mutex<HashMap<String, Counts>>>;

impl DiskCheck {
    /// Free space for unprivileged users on the data dir's file system, if it can be
    /// read; at most `DISK_CHECK_MS` old, since ingress asks on every request.
    pub(super) fn free_bytes(&self, path: &Path) -> Option<u64> {
        let now = now_ms();
        let checked = self.checked_at_ms.load(Ordering::Relaxed);
        if now.saturating_sub(checked) < DISK_CHECK_MS {
            let free = self.free_bytes.load(Ordering::Relaxed);
            return (free != u64::MAX).then_some(free);
        }
        let free = rustix::fs::statvfs(path)
            .ok()
            .map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize));
        self.free_bytes
            .store(free.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.checked_at_ms.store(now, Ordering::Relaxed);
        free
    }
}

impl RedbStore {
    /// Whether an event for these plugins can be taken now: no subscriber's queue is
    /// full (a full queue refuses only events routed to that plugin), and the disk has
    /// room. Checked before every ingest; cheap (a map lookup and one statvfs).
    pub(super) fn admit_now(&self, plugins: &[String]) -> Result<(), Refusal> {
        {
            let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(full) = plugins
                .iter()
                .find(|p| counts.get(*p).map_or(0, Counts::queued) >= self.max_queue_per_plugin)
            {
                return Err(Refusal::QueueFull(full.clone()));
            }
        }
        if let Some(free_bytes) = self.disk.free_bytes(&self.path)
            && free_bytes < self.min_free_disk_bytes
        {
            return Err(Refusal::DiskFull { free_bytes });
        }
        Ok(())
    }

    /// Deliveries per plugin and state (every state but `done`), sorted by plugin.
    pub(super) fn counts_by_plugin(&self) -> Vec<(String, Counts)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = counts.iter().map(|(p, c)| (p.clone(), *c)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Deliveries waiting for `plugin` (pending, leased or retrying).
    pub(super) fn queued(&self, plugin: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .map_or(0, Counts::queued)
    }
}
