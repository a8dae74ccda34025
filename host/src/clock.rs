//! The host's notion of "now" for scheduling: Unix milliseconds from the system clock,
//! plus an offset that tests move forward to observe retry schedules and retention
//! without waiting for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A clock; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now_ms(&self) -> u64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Move this clock forward (tests). Whoever sleeps on it must be woken to notice.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch by the system clock, for what is not scheduled:
/// stamps in logs and status, the simulator's timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
