//! Whether the host can take and handle events: the checks behind `/readyz` (on both
//! ports), the `agenthook_ready` gauge and the status view. It reads the store and
//! the plugin registry and keeps two flags of its own (the dispatcher loop runs; the
//! host is draining); it counts nothing and changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::clock::now_ms;
use crate::plugins::Registry;
use crate::store::Store;

/// The host's health; shared by ingress, admin, metrics and the dispatcher.
pub struct Health {
    store: Store,
    registry: Arc<Registry>,
    dispatcher_running: AtomicBool,
    draining: AtomicBool,
    started_at_ms: u64,
}

/// One readiness check: its name, whether it passes, and a detail for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Health {
    pub fn new(store: Store, registry: Arc<Registry>) -> Arc<Health> {
        Arc::new(Health {
            store,
            registry,
            dispatcher_running: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            started_at_ms: now_ms(),
        })
    }

    /// Mark the dispatcher running until the returned guard drops (also on a panic).
    pub fn dispatcher_running(self: &Arc<Self>) -> DispatcherGuard {
        self.dispatcher_running.store(true, Ordering::Relaxed);
        DispatcherGuard(self.clone())
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    /// Whether every check passes.
    pub fn ready(&self) -> bool {
        self.checks().iter().all(|c| c.ok)
    }

    /// The readiness checks, in a fixed order.
    pub fn checks(&self) -> Vec<Check> {
        let plugins = self.registry.snapshot().len();
        let running = self.dispatcher_running.load(Ordering::Relaxed);
        let draining = self.draining.load(Ordering::Relaxed);
        let min = self.store.min_free_disk_bytes();
        let disk = match self.store.free_disk_bytes() {
            Some(free) => Check {
                name: "disk",
                ok: free >= min,
                detail: format!("{} MiB free, {} MiB needed", free >> 20, min >> 20),
            },
            None => Check {
                name: "disk",
                ok: true,
                detail: "free space unknown".into(),
            },
        };
        let writable = self.store.is_writable();
        vec![
            Check {
                name: "store",
                ok: writable,
                detail: if writable {
                    format!("{} open", self.store.describe())
                } else {
                    "the store's writer has stopped".into()
                },
            },
            Check {
                name: "plugins",
                ok: plugins > 0,
                detail: format!("{plugins} loaded"),
            },
            Check {
                name: "dispatcher",
                ok: running && !draining,
                detail: if draining {
                    "shutting down".into()
                } else if running {
                    "running".into()
                } else {
                    "not running".into()
                },
            },
            disk,
        ]
    }
}

/// Clears `dispatcher_running` when dropped.
#[derive(Debug)]
pub struct DispatcherGuard(Arc<Health>);

impl Drop for DispatcherGuard {
    fn drop(&mut self) {
        self.0.dispatcher_running.store(false, Ordering::Relaxed);
    }
}
