//! The storage interface: what the event path, the tools and the admin API need of
//! durable storage — admit and store an event with its deliveries, lease due
//! deliveries, record each attempt's outcome, replay and purge, expire by retention,
//! plugin kv, and reads for the operator — named in the domain's words ([`Backend`]).
//!
//! Callers hold a [`Store`] and never learn which backend serves it. `redb` (one file,
//! group commit; the default) and `nats` (a NATS JetStream cluster shared by several
//! hosts) are the only modules that touch their storage engines. `model` holds the types every backend shares; `retention` runs
//! the expiry passes a backend performs.

mod model;
mod nats;
mod redb;
mod retention;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{StoreBackend, StoreConfig};
pub use model::*;
pub use retention::{Janitor, PassReport, Retention};

/// An error the storage engine reported, kept as its own error value.
pub type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// A store operation that failed. The variants name what the operator can look at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {what}: {source}")]
    Open { what: String, source: EngineError },
    #[error("database error: {0}")]
    Engine(EngineError),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the write was not committed (the commit failed; see the host log)")]
    NotCommitted,
    #[error("the store is shut down")]
    Closed,
}

/// What the host needs of durable storage. Writes return once durable (the one
/// exception, [`Backend::lease`], says why); reads see every write that returned.
/// The methods without `async` answer from memory or a local snapshot, never from a
/// round trip, since health checks, admission and `/metrics` call them on every request
/// or scrape.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    // ---- the event path ----

    /// Whether an event for these plugins can be taken now: no subscriber's queue is
    /// full (a full queue refuses only events routed to that plugin), and the storage
    /// has room. Checked before every ingest and emit.
    fn admit(&self, plugins: &[String]) -> Result<(), Refusal>;

    /// Store an event and one pending delivery per plugin, unless (source, event id) is
    /// already stored (within the dedup window). Returns once durable.
    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError>;

    /// Up to `limit` deliveries of `plugin` due at or before `now_ms`, oldest first; and
    /// when the first one after those is due. A delivery whose lease still holds is not
    /// due: it becomes due when the lease runs out.
    async fn due(&self, plugin: &str, now_ms: u64, limit: usize) -> Result<DueBatch, StoreError>;

    /// Notified whenever deliveries became due (new events, retries scheduled, replays).
    fn due_changed(&self) -> Arc<Notify>;

    /// Mark a delivery as being attempted from `now_ms` until `expires_at_ms`. Returns
    /// the delivery as leased, or None when it is not queued or its lease still holds.
    /// A lease that ran out by `now_ms` is taken over, and the attempt that held it is
    /// recorded as lost (`lease_expired`). May answer before the lease is durable: a
    /// lease lost in a crash changes nothing, since leases are reclaimed at start and
    /// the delivery stays queued until its outcome is recorded.
    async fn lease(
        &self,
        id: EventId,
        plugin: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Give back leases without an attempt (shutdown before they ran).
    async fn release(&self, keys: Vec<(EventId, String)>) -> Result<(), StoreError>;

    /// Record an attempt and move the delivery to its next state, durably.
    async fn record_attempt(
        &self,
        id: EventId,
        plugin: &str,
        attempt: Attempt,
        next: Next,
    ) -> Result<(), StoreError>;

    // ---- the operator's actions ----

    /// Make deliveries of event `id` due again now, with a fresh retry budget: the
    /// existing ones to the given plugins (all of them when `plugins` is None), and new
    /// ones for plugins in `add` that have none yet. In-flight deliveries are left
    /// alone; with `only_dead`, so are those that are not dead. The journal of each
    /// replayed delivery is deleted in the same write unless `keep_journal`. Returns
    /// the plugins whose delivery was replayed.
    async fn replay(
        &self,
        id: EventId,
        plugins: Option<Vec<String>>,
        add: Vec<String>,
        only_dead: bool,
        keep_journal: bool,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError>;

    // ---- each delivery's journal of effects ----

    /// The journal of delivery (`id`, `plugin`): its entries in `seq` order (empty when
    /// it has none).
    async fn journal(&self, id: EventId, plugin: &str) -> Result<Vec<JournalEntry>, StoreError>;

    /// Record `entry` in the journal of delivery (`id`, `plugin`), replacing the entry
    /// already at `entry.seq` if any; other entries are untouched. Returns once
    /// durable. A delivery that does not exist (purged, expired) gets no journal:
    /// nothing is stored.
    async fn journal_record(
        &self,
        id: EventId,
        plugin: &str,
        entry: JournalEntry,
    ) -> Result<(), StoreError>;

    /// Delete dead deliveries (and their journals); returns how many were deleted.
    async fn purge_dead(&self, keys: Vec<(EventId, String)>) -> Result<usize, StoreError>;

    /// One retention pass: forget dedup keys and remove finished events older than the
    /// cut-offs, with their deliveries' journals. Deliveries still queued are never
    /// removed.
    async fn expire(&self, cutoffs: Retention) -> Result<PassReport, StoreError>;

    // ---- each plugin's private kv space ----

    async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store a value, giving the key a new version.
    async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError>;
    /// Remove a key (and its version); true when it existed.
    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, StoreError>;
    /// A key's value and its version: a number that changes on every write of the key
    /// (`kv_set`, a swap, an increment) and never repeats for it, even after a delete.
    /// Versions need not be consecutive (a store-wide sequence, a stream revision).
    async fn kv_get_versioned(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StoreError>;
    /// Atomically: if the key is at version `expected` (or, with `None`, does not
    /// exist), store `value` under a new version and return it; otherwise write
    /// nothing and return what the key holds now. Durable when it returns `Swapped`.
    async fn kv_compare_and_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Swap, StoreError>;
    /// Atomically add `delta` to the integer stored under the key as decimal ASCII text
    /// (optionally signed; a missing key counts as 0), store the sum the same way under
    /// a new version and return it. A value that is not such an integer, or a sum
    /// outside `i64`, writes nothing.
    async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
    ) -> Result<Increment, StoreError>;
    /// Up to `limit` keys of `plugin` that start with `prefix`, strictly after
    /// `start_after` when given, with their values when `values` is set.
    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<Vec<KvEntry>, StoreError>;

    // ---- reads for the operator ----

    async fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError>;
    /// Every delivery of an event, ordered by plugin name.
    async fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, StoreError>;
    async fn delivery(&self, id: EventId, plugin: &str) -> Result<Option<Delivery>, StoreError>;
    /// Events newest first, filtered, starting strictly before `before` when given.
    /// Examines at most `scan_limit` events per call so that a rare filter cannot stall
    /// the caller; the cursor lets it continue.
    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError>;

    // ---- state for health, admission, metrics and status ----

    /// Deliveries per plugin and state (every state but `done`), sorted by plugin.
    fn state_counts(&self) -> Vec<(String, Counts)>;
    /// Deliveries waiting for `plugin` (pending, leased or retrying).
    fn queue_depth(&self, plugin: &str) -> u64;
    /// When the earliest entry in `plugin`'s due queue became (or becomes) due.
    fn oldest_due_ms(&self, plugin: &str) -> Result<Option<u64>, StoreError>;
    fn event_count(&self) -> Result<u64, StoreError>;
    fn dedup_count(&self) -> Result<u64, StoreError>;
    /// Bytes the store occupies on disk.
    fn size_bytes(&self) -> u64;
    /// Free space where the store writes, if it can be read.
    fn free_disk_bytes(&self) -> Option<u64>;
    /// The free space below which events are refused (`store.min_free_disk_mb`).
    fn min_free_disk_bytes(&self) -> u64;
    /// Whether writes can succeed (false once the writer stopped).
    fn is_writable(&self) -> bool;
    /// What the store is, for the operator (a file path, a server list).
    fn describe(&self) -> String;
    /// Histograms of the commits that carried the writes, for `/metrics`.
    fn commit_stats(&self) -> &CommitStats;

    /// Wait until every write queued before this call is durable (or failed).
    async fn flush(&self) -> Result<(), StoreError>;
    /// Finish the last writes and release the storage (up to a deadline); every later
    /// write fails with [`StoreError::Closed`].
    async fn close(&self);

    /// What several hosts sharing this store need of it (plugins deployed for all,
    /// who runs what); None on a store only this host uses.
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }
}

/// A store that several hosts share: the deployment's plugins, kept in the store so
/// that a deploy through any host reaches every host, and each host's report of what it
/// runs.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// This host's name in the deployment.
    fn host(&self) -> &str;
    /// Store a plugin (manifest and component) for every host; returns its digest.
    async fn publish_plugin(
        &self,
        name: &str,
        manifest: &str,
        wasm: &[u8],
    ) -> Result<String, StoreError>;
    /// Remove a plugin from the deployment.
    async fn withdraw_plugin(&self, name: &str) -> Result<(), StoreError>;
    /// The deployment's plugins: name → digest of what was published.
    async fn published_plugins(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError>;
    /// A published plugin's manifest and component.
    async fn fetch_plugin(&self, name: &str) -> Result<Option<(String, Vec<u8>)>, StoreError>;
    /// Notified when a plugin was published or withdrawn (by any host).
    fn plugins_changed(&self) -> Arc<Notify>;
    /// Tell the other hosts what this host runs (kept for a minute unless repeated).
    async fn report(&self, report: HostReport) -> Result<(), StoreError>;
    /// The reports of every host heard from within the last minute.
    async fn hosts(&self) -> Result<Vec<HostReport>, StoreError>;
}

/// What one host of a deployment reports about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub reported_at_ms: u64,
    pub started_at_ms: u64,
    /// Plugin name → content hash of the component it runs.
    pub plugins: std::collections::BTreeMap<String, String>,
    /// Deliveries waiting, over all plugins, as this host sees them.
    pub queued: u64,
}

/// Handle to the store; cheap to clone. Dereferences to the [`Backend`] that serves it.
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Open (or create) the configured backend: the redb file in `data_dir`, or the
    /// deployment's streams and buckets on NATS (`[store] backend = "nats"`).
    pub async fn open(data_dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        Ok(match &config.backend {
            StoreBackend::Redb => Store(Arc::new(redb::RedbStore::open(data_dir, config)?)),
            StoreBackend::Nats(nats) => Store(Arc::new(nats::NatsStore::open(config, nats).await?)),
        })
    }

    /// A handle on a backend the caller built (tests wrap a backend to inject faults).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Store {
        Store(backend)
    }

    /// Finish the last writes and close the storage; other handles see `Closed`.
    pub async fn close(self) {
        self.0.close().await;
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
