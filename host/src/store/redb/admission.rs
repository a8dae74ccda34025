//! Admission and the state read on every request: per-plugin queue depths by state
//! (mirrored in memory from the `counts` table after each commit) and free disk space
//! (one statvfs, read again by the writer after every commit and at most `DISK_CHECK_MS`
//! after the last reading).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::RedbStore;
use crate::clock::now_ms;
use crate::store::model::{Counts, Refusal};

/// How long a free-space reading is reused when no commit has refreshed it (space taken
/// by other processes on the same file system shows up within this).
const DISK_CHECK_MS: u64 = 100;

/// The last free-space reading (`u64::MAX`: unreadable) and when it was taken. Shared by
/// ingress (which reads it on every request) and the writer (which refreshes it after
/// every commit, so the store's own growth is seen at once: a group commit can take
/// megabytes, and a reading only refreshed on a timer let a flood of events eat into
/// the reserve between two readings).
#[derive(Debug)]
pub(super) struct DiskCheck {
    path: PathBuf,
    free_bytes: AtomicU64,
    checked_at_ms: AtomicU64,
}

/// Deliveries per plugin by state, mirrored from the `counts` table after each commit.
pub(super) type StateCounts = Arc<Mutex<HashMap<String, Counts>>>;

impl DiskCheck {
    /// Readings of the file system that holds `path`.
    pub(super) fn new(path: &Path) -> Arc<DiskCheck> {
        Arc::new(DiskCheck {
            path: path.to_path_buf(),
            free_bytes: AtomicU64::new(u64::MAX),
            checked_at_ms: AtomicU64::new(0),
        })
    }

    /// Free space for unprivileged users on the data dir's file system, if it can be
    /// read: as of the last commit, and at most `DISK_CHECK_MS` old.
    pub(super) fn free_bytes(&self) -> Option<u64> {
        let checked = self.checked_at_ms.load(Ordering::Acquire);
        if now_ms().saturating_sub(checked) >= DISK_CHECK_MS {
            return self.refresh();
        }
        let free = self.free_bytes.load(Ordering::Acquire);
        (free != u64::MAX).then_some(free)
    }

    /// Read the free space now (one statvfs) and keep the reading.
    pub(super) fn refresh(&self) -> Option<u64> {
        let free = rustix::fs::statvfs(&self.path)
            .ok()
            .map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize));
        self.free_bytes
            .store(free.unwrap_or(u64::MAX), Ordering::Release);
        self.checked_at_ms.store(now_ms(), Ordering::Release);
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
        if let Some(free_bytes) = self.disk.free_bytes()
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
