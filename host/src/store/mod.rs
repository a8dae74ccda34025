//! The durable store: events, their deliveries to plugins, dedup keys and plugin kv,
//! in one redb file. This is the only module that touches redb.
//!
//! All writes go through one writer thread (`writer`) that takes whatever has queued up
//! while the previous commit was running and applies it in a single
//! `Durability::Immediate`, two-phase commit (group commit): a caller's write is
//! acknowledged only after the commit that carries it has returned, so throughput grows
//! with concurrency instead of being capped at one fsync per event. Reads are MVCC
//! snapshots and never block it. `retention` removes what has outlived its keep time.

mod retention;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::now_ms;
use crate::config::StoreConfig;
pub use retention::{Janitor, PassReport};
use writer::{Op, Tables};

/// The host's own id of a stored event; assigned in arrival order, never reused.
pub type EventId = u64;

/// id → the event record: metadata (JSON) and the body exactly as received and
/// verified, in one value (see [`encode_event`]) so storing an event is one insert.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// (source, sender's event id) → id: a sender's retry is recognised and not stored again.
const DEDUP: TableDefinition<(&str, &str), u64> = TableDefinition::new("dedup");
/// (received at ms, id) → (source, sender's event id): dedup keys by age, for expiry.
const DEDUP_AGE: TableDefinition<(u64, u64), (&str, &str)> = TableDefinition::new("dedup_age");
/// (id, plugin) → delivery record (JSON).
const DELIVERIES: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("deliveries");
/// (plugin, due at ms, id): the dispatcher's queue, ordered by due time per plugin.
/// A delivery is in it until its outcome is done or dead, leased or not.
const DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("due");
/// (plugin, id) → lease expiry ms: deliveries being attempted right now.
const LEASES: TableDefinition<(&str, u64), u64> = TableDefinition::new("leases");
/// (plugin, key) → value: each plugin's private key-value space.
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// (plugin, state) → how many deliveries of that plugin are in that state (every state
/// but `done`); kept in the same commits as the deliveries, so it is exact after a crash
/// and the host need not scan every delivery at start.
const COUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("counts");

/// Writes queued beyond this make callers wait (backpressure instead of unbounded memory).
const QUEUE_DEPTH: usize = 8192;

/// A store operation that failed. The variants name what the operator can look at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the write was not committed (the commit failed; see the host log)")]
    NotCommitted,
    #[error("the store is shut down")]
    Closed,
}

fn db(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into())
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// What is known about an event besides its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventMeta {
    pub source: String,
    /// The sender's id (dedup key within the source).
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: u64,
    /// Request headers, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
}

/// A stored event with its body.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: EventId,
    pub meta: EventMeta,
    pub body: Vec<u8>,
}

/// An event to store, with the plugins it must be delivered to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub meta: EventMeta,
    pub body: bytes::Bytes,
    pub plugins: Vec<String>,
}

/// The result of storing an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    Stored(EventId),
    /// The (source, event id) pair was already stored, as this id.
    Duplicate(EventId),
}

/// Where a delivery stands: pending → leased → done | retrying | dead.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not attempted yet (or replayed).
    Pending,
    /// An attempt is running; the lease says until when at most.
    Leased,
    /// Failed at least once and scheduled again.
    Retrying,
    Done,
    /// Failed permanently or ran out of attempts; kept for inspection and replay.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Leased => "leased",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "leased" => DeliveryStatus::Leased,
            "retrying" => DeliveryStatus::Retrying,
            "done" => DeliveryStatus::Done,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }

    /// Still in the dispatcher's queue.
    pub fn is_queued(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Pending | DeliveryStatus::Leased | DeliveryStatus::Retrying
        )
    }
}

/// One event's delivery to one plugin, with its full attempt history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    pub plugin: String,
    pub status: DeliveryStatus,
    /// When the next attempt is due (queued deliveries only).
    pub next_attempt_at_ms: Option<u64>,
    /// While leased: when the lease runs out.
    #[serde(default)]
    pub lease_expires_at_ms: Option<u64>,
    pub attempts: Vec<Attempt>,
    /// How many attempts came before the last replay: the retry budget counts from here.
    #[serde(default)]
    pub budget_start: u32,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl Delivery {
    /// Attempts made since the delivery was created or last replayed.
    pub fn attempts_in_budget(&self) -> u32 {
        (self.attempts.len() as u32).saturating_sub(self.budget_start)
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Done,
    Retry,
    Dead,
}

/// One run of a plugin's handler for one event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based, counted over the delivery's whole life (replays included).
    pub number: u32,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    /// Why it failed, e.g. `handler: upstream 503`, `trap: ...`, `cpu_deadline: ...`.
    pub error: Option<String>,
    /// Content hash of the plugin component that ran.
    pub plugin_version: String,
    /// What the plugin logged (and printed) during the attempt, size-capped.
    pub logs: Vec<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryAt(u64),
    Dead,
}

/// Due deliveries of one plugin, from [`Store::due`].
#[derive(Debug, Clone, Default)]
pub struct DueBatch {
    /// (due at ms, event id), oldest first.
    pub due: Vec<(u64, EventId)>,
    /// When the first delivery after these is due.
    pub later: Option<u64>,
}

/// A page of events from [`Store::list_events`].
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<(EventId, EventMeta, Vec<Delivery>)>,
    /// Pass as `before` to get the next (older) page.
    pub next_cursor: Option<EventId>,
}

/// Filters for [`Store::list_events`]; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// Matches events with at least one delivery in this status (to `plugin`, if given).
    pub status: Option<DeliveryStatus>,
    /// Matches events delivered to this plugin.
    pub plugin: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl EventFilter {
    fn matches_meta(&self, meta: &EventMeta) -> bool {
        self.source.as_ref().is_none_or(|s| *s == meta.source)
            && self.event_id.as_ref().is_none_or(|e| *e == meta.event_id)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| *t == meta.event_type)
            && self.until_ms.is_none_or(|u| meta.received_at_ms <= u)
    }

    /// Whether this delivery is one the filter asks for.
    pub fn matches_delivery(&self, d: &Delivery) -> bool {
        self.plugin.as_ref().is_none_or(|p| *p == d.plugin)
            && self.status.is_none_or(|s| s == d.status)
    }
}

/// A kv key and, when asked for, its value.
pub type KvEntry = (String, Option<Vec<u8>>);

/// Deliveries waiting (queued) per plugin, kept in memory and updated by the writer
/// after each commit, so ingress can push back without reading the store.
/// How long a free-space reading is reused.
const DISK_CHECK_MS: u64 = 100;

/// The last free-space reading (`u64::MAX`: unreadable) and when it was taken.
#[derive(Debug, Default)]
struct DiskCheck {
    free_bytes: AtomicU64,
    checked_at_ms: AtomicU64,
}

/// Deliveries per plugin by state, mirrored from the `counts` table after each commit.
type StateCounts = Arc<Mutex<HashMap<String, Counts>>>;

/// How many deliveries of one plugin are in each state but `done`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub leased: u64,
    pub retrying: u64,
    pub dead: u64,
}

impl Counts {
    /// Waiting in the dispatcher's queue: pending, leased or retrying.
    pub fn queued(&self) -> u64 {
        self.pending + self.leased + self.retrying
    }

    fn slot(&mut self, state: DeliveryStatus) -> Option<&mut u64> {
        match state {
            DeliveryStatus::Pending => Some(&mut self.pending),
            DeliveryStatus::Leased => Some(&mut self.leased),
            DeliveryStatus::Retrying => Some(&mut self.retrying),
            DeliveryStatus::Dead => Some(&mut self.dead),
            DeliveryStatus::Done => None,
        }
    }

    fn add(&mut self, state: DeliveryStatus, delta: i64) {
        if let Some(v) = self.slot(state) {
            *v = v.saturating_add_signed(delta);
        }
    }
}

/// Histograms of the writer's group commits: how many writes each carried and how long
/// the commit took (including the fsyncs). Shared with `/metrics`.
#[derive(Debug, Clone)]
pub struct CommitStats {
    pub batch_size: Histogram,
    pub seconds: Histogram,
}

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
        }
    }
}

impl CommitStats {
    fn observe(&self, writes: usize, took: std::time::Duration) {
        self.batch_size.observe(writes as f64);
        self.seconds.observe(took.as_secs_f64());
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
    /// Notified after every commit that made deliveries due, so the dispatcher wakes.
    due_changed: Arc<Notify>,
    counts: StateCounts,
    commit_stats: CommitStats,
    disk: Arc<DiskCheck>,
    writer_thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    path: PathBuf,
    /// Ingress limits: queue depth per plugin, free disk space.
    max_queue_per_plugin: u64,
    min_free_disk_bytes: u64,
}

/// Why the store will not take another event now. Ingress answers 503 + Retry-After.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This plugin already has `store.max_queue_per_plugin` deliveries waiting.
    QueueFull(String),
    /// The data dir's file system has less than `store.min_free_disk_mb` free.
    DiskFull { free_bytes: u64 },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the database in `data_dir`, reclaim the leases of a process that
    /// stopped mid-attempt, and start the writer thread. The writer stops when the last
    /// `Store` handle is dropped.
    pub fn open(data_dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        let path = data_dir.join("agenthook.redb");
        let database = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let reclaimed = writer::prepare(&database)?;
        if reclaimed > 0 {
            tracing::info!(
                reclaimed,
                "reclaimed leases of deliveries that were in flight when the host stopped"
            );
        }

        let read = database.begin_read().map_err(db)?;
        let next_id = {
            let events = read.open_table(EVENTS).map_err(db)?;
            events
                .last()
                .map_err(db)?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1)
        };
        let mut counts: HashMap<String, Counts> = HashMap::new();
        for entry in read.open_table(COUNTS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let (plugin, state) = k.value();
            if let Some(state) = DeliveryStatus::parse(state) {
                counts
                    .entry(plugin.to_string())
                    .or_default()
                    .add(state, v.value() as i64);
            }
        }
        drop(read);

        let database = Arc::new(database);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let due_changed = Arc::new(Notify::new());
        let counts = Arc::new(Mutex::new(counts));
        let commit_stats = CommitStats::default();
        let handle = writer::spawn(
            database.clone(),
            rx,
            next_id,
            config.max_batch,
            due_changed.clone(),
            counts.clone(),
            commit_stats.clone(),
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            db: database,
            writer: tx,
            due_changed,
            counts,
            commit_stats,
            disk: Arc::default(),
            writer_thread: Arc::new(Mutex::new(Some(handle))),
            path,
            max_queue_per_plugin: config.max_queue_per_plugin,
            min_free_disk_bytes: config.min_free_disk_bytes,
        })
    }

    /// Whether an event for these plugins can be taken now: no subscriber's queue is
    /// full (a full queue refuses only events routed to that plugin), and the disk has
    /// room. Checked before every ingest; cheap (a map lookup and one statvfs).
    pub fn admit(&self, plugins: &[String]) -> Result<(), Refusal> {
        {
            let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(full) = plugins
                .iter()
                .find(|p| counts.get(*p).map_or(0, Counts::queued) >= self.max_queue_per_plugin)
            {
                return Err(Refusal::QueueFull(full.clone()));
            }
        }
        if let Some(free_bytes) = self.free_disk_bytes()
            && free_bytes < self.min_free_disk_bytes
        {
            return Err(Refusal::DiskFull { free_bytes });
        }
        Ok(())
    }

    /// Free space for unprivileged users on the data dir's file system, if it can be
    /// read; at most `DISK_CHECK_MS` old, since ingress asks on every request.
    pub fn free_disk_bytes(&self) -> Option<u64> {
        let now = now_ms();
        let checked = self.disk.checked_at_ms.load(Ordering::Relaxed);
        if now.saturating_sub(checked) < DISK_CHECK_MS {
            let free = self.disk.free_bytes.load(Ordering::Relaxed);
            return (free != u64::MAX).then_some(free);
        }
        let free = rustix::fs::statvfs(&self.path)
            .ok()
            .map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize));
        self.disk
            .free_bytes
            .store(free.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.disk.checked_at_ms.store(now, Ordering::Relaxed);
        free
    }

    /// The free space below which ingress refuses events (`store.min_free_disk_mb`).
    pub fn min_free_disk_bytes(&self) -> u64 {
        self.min_free_disk_bytes
    }

    /// Whether the writer thread is running (it stops only when the store closes or a
    /// panic killed it; then every write fails).
    pub fn is_writable(&self) -> bool {
        !self.writer.is_closed()
    }

    /// The database file's size on disk, in bytes.
    pub fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Deliveries per plugin and state (every state but `done`), sorted by plugin.
    pub fn state_counts(&self) -> Vec<(String, Counts)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = counts.iter().map(|(p, c)| (p.clone(), *c)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The writer's commit histograms.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.commit_stats
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drop this handle and wait (up to a deadline) for the writer to finish its last
    /// commit and the database to close. Other handles must be gone already for the
    /// writer to stop; a leftover one is reported, not waited on forever.
    pub async fn close(self) {
        let handle = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(self);
        if let Some(handle) = handle {
            let joined = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio::task::spawn_blocking(move || handle.join()),
            )
            .await;
            if joined.is_err() {
                tracing::warn!(
                    "the store is still in use at shutdown; it closes when the last user ends"
                );
            }
        }
    }

    /// Notified whenever deliveries became due (new events, retries scheduled, replays).
    pub fn due_changed(&self) -> Arc<Notify> {
        self.due_changed.clone()
    }

    /// Deliveries waiting for `plugin` (pending, leased or retrying).
    pub fn queue_depth(&self, plugin: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .map_or(0, Counts::queued)
    }

    /// Run `op` inside the next group commit; returns once that commit is durable.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Tables<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |tables| {
            let value = op(tables)?;
            Ok(Box::new(move || {
                // A caller that went away no longer needs the answer; the write is
                // committed all the same.
                let _ = tx.send(value);
            }))
        });
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        // A dropped reply means the batch carrying this write did not commit.
        rx.await.map_err(|_| StoreError::NotCommitted)
    }

    /// Run `op` inside the next group commit and answer as soon as it is applied, without
    /// waiting for the commit to be durable. Only for writes whose loss in a crash
    /// changes nothing: a lease (leases are reclaimed at start whether or not they were
    /// committed, and the delivery stays in the due queue until its outcome commits).
    /// Later writes in the writer's order see it; if its batch fails to commit, the
    /// write is simply lost.
    async fn write_applied<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Tables<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |tables| {
            let _ = tx.send(op(tables)?);
            Ok(Box::new(|| {}))
        });
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::NotCommitted)
    }

    /// Wait until every write queued before this call is durable (or failed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    /// Store an event and one pending delivery per plugin, unless (source, event id) is
    /// already stored. Returns once the commit is durable.
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.write(move |t| t.ingest(event)).await
    }

    /// Mark a delivery as being attempted until `expires_at_ms`. Returns the delivery as
    /// leased, or None when it is not queued (finished or gone meanwhile). Answers once
    /// the lease is applied, not once it is durable (see `write_applied`): an attempt
    /// then waits for one commit, its outcome's, not two.
    pub async fn lease(
        &self,
        id: EventId,
        plugin: &str,
        expires_at_ms: u64,
    ) -> Result<Option<Delivery>, StoreError> {
        let plugin = plugin.to_string();
        self.write_applied(move |t| t.lease(id, &plugin, expires_at_ms))
            .await?
    }

    /// Give back leases without an attempt (shutdown before they ran).
    pub async fn release(&self, keys: Vec<(EventId, String)>) -> Result<(), StoreError> {
        self.write(move |t| t.release(&keys)).await?
    }

    /// Record an attempt and move the delivery to its next state, durably.
    pub async fn record_attempt(
        &self,
        id: EventId,
        plugin: &str,
        attempt: Attempt,
        next: Next,
    ) -> Result<(), StoreError> {
        let plugin = plugin.to_string();
        self.write(move |t| t.record_attempt(id, &plugin, attempt, next))
            .await?
    }

    /// Make deliveries of event `id` due again now, with a fresh retry budget: the
    /// existing ones to the given plugins (all of them when `plugins` is None), and new
    /// ones for plugins in `add` that have none yet. In-flight deliveries are left
    /// alone; with `only_dead`, so are those that are not dead. Returns the plugins
    /// whose delivery was replayed.
    pub async fn replay(
        &self,
        id: EventId,
        plugins: Option<Vec<String>>,
        add: Vec<String>,
        only_dead: bool,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.write(move |t| t.replay(id, plugins.as_deref(), &add, only_dead, now_ms))
            .await?
    }

    /// Delete dead deliveries; returns how many were deleted.
    pub async fn purge_dead(&self, keys: Vec<(EventId, String)>) -> Result<usize, StoreError> {
        self.write(move |t| t.purge_dead(&keys)).await?
    }

    pub async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |t| t.kv_set(&plugin, &key, &value)).await?
    }

    /// Remove a key; true when it existed.
    pub async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, StoreError> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |t| t.kv_delete(&plugin, &key)).await?
    }

    pub fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let kv = read.open_table(KV).map_err(db)?;
        Ok(kv
            .get((plugin, key))
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    /// Up to `limit` keys of `plugin` that start with `prefix`, strictly after
    /// `start_after` when given, with their values when `values` is set.
    pub fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<Vec<KvEntry>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let kv = read.open_table(KV).map_err(db)?;
        let start = match start_after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let mut out = Vec::new();
        for entry in kv.range((plugin, start)..).map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let (p, key) = k.value();
            if p != plugin || !key.starts_with(prefix) {
                break;
            }
            if start_after == Some(key) {
                continue;
            }
            out.push((key.to_string(), values.then(|| v.value().to_vec())));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        let Some(record) = events.get(id).map_err(db)? else {
            return Ok(None);
        };
        let (meta, body) = decode_event(record.value())?;
        Ok(Some(StoredEvent {
            id,
            meta,
            body: body.to_vec(),
        }))
    }

    /// Every delivery of an event, ordered by plugin name.
    pub fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let table = read.open_table(DELIVERIES).map_err(db)?;
        read_deliveries(&table, id)
    }

    pub fn delivery(&self, id: EventId, plugin: &str) -> Result<Option<Delivery>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let table = read.open_table(DELIVERIES).map_err(db)?;
        match table.get((id, plugin)).map_err(db)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` deliveries of `plugin` due at or before `now_ms`, oldest first; and
    /// when the first one after those is due.
    pub fn due(&self, plugin: &str, now_ms: u64, limit: usize) -> Result<DueBatch, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let due = read.open_table(DUE).map_err(db)?;
        let mut out = Vec::new();
        for entry in due
            .range((plugin, 0u64, 0u64)..=(plugin, u64::MAX, u64::MAX))
            .map_err(db)?
        {
            let (k, _) = entry.map_err(db)?;
            let (_, at, id) = k.value();
            if at > now_ms || out.len() >= limit {
                return Ok(DueBatch {
                    due: out,
                    later: Some(at),
                });
            }
            out.push((at, id));
        }
        Ok(DueBatch {
            due: out,
            later: None,
        })
    }

    /// Events newest first, filtered, starting strictly before `before` when given.
    /// Examines at most `scan_limit` events per call so that a rare filter cannot stall
    /// the caller; the cursor lets it continue.
    pub fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        let deliveries = read.open_table(DELIVERIES).map_err(db)?;
        let upper = before.unwrap_or(u64::MAX);
        let mut page = Vec::new();
        let mut scanned = 0;
        let mut last_seen = None;
        for entry in events.range(..upper).map_err(db)?.rev() {
            let (k, v) = entry.map_err(db)?;
            let id = k.value();
            last_seen = Some(id);
            scanned += 1;
            let (meta, _) = decode_event(v.value())?;
            if filter.since_ms.is_some_and(|s| meta.received_at_ms < s) {
                // Ids grow with arrival time: everything further is older still.
                return Ok(EventPage {
                    events: page,
                    next_cursor: None,
                });
            }
            if filter.matches_meta(&meta) {
                let ds = read_deliveries(&deliveries, id)?;
                let wants_delivery = filter.plugin.is_some() || filter.status.is_some();
                if !wants_delivery || ds.iter().any(|d| filter.matches_delivery(d)) {
                    page.push((id, meta, ds));
                    if page.len() >= limit {
                        break;
                    }
                }
            }
            if scanned >= scan_limit {
                break;
            }
        }
        let more = match last_seen {
            Some(id) => events.range(..id).map_err(db)?.next().is_some(),
            None => false,
        };
        Ok(EventPage {
            events: page,
            next_cursor: if more { last_seen } else { None },
        })
    }

    /// Number of stored events.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        events.len().map_err(db)
    }

    /// When the earliest entry in `plugin`'s due queue became (or becomes) due: the
    /// age of its longest-waiting delivery. Leased deliveries are still in the queue.
    pub fn oldest_due_ms(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let due = read.open_table(DUE).map_err(db)?;
        let first = due
            .range((plugin, 0u64, 0u64)..=(plugin, u64::MAX, u64::MAX))
            .map_err(db)?
            .next();
        match first {
            Some(entry) => Ok(Some(entry.map_err(db)?.0.value().1)),
            None => Ok(None),
        }
    }

    /// Number of dedup keys kept.
    pub fn dedup_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let dedup = read.open_table(DEDUP).map_err(db)?;
        dedup.len().map_err(db)
    }
}

fn read_deliveries(
    table: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    id: EventId,
) -> Result<Vec<Delivery>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range((id, "")..(id + 1, "")).map_err(db)? {
        let (_, v) = entry.map_err(db)?;
        out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// An event record: the metadata's length (u32, little-endian), the metadata as JSON,
/// then the body.
fn encode_event(meta: &EventMeta, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(meta).map_err(corrupt)?;
    let len = u32::try_from(json.len())
        .map_err(|_| StoreError::Corrupt("event metadata over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(4 + json.len() + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(body);
    Ok(out)
}

/// The metadata and body of an event record.
fn decode_event(record: &[u8]) -> Result<(EventMeta, &[u8]), StoreError> {
    let short = || StoreError::Corrupt("event record is truncated".into());
    let len_bytes: [u8; 4] = record
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(short)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let json = record.get(4..4 + len).ok_or_else(short)?;
    let meta = serde_json::from_slice(json).map_err(corrupt)?;
    Ok((meta, &record[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(source: &str, event_id: &str) -> EventMeta {
        EventMeta {
            source: source.into(),
            event_id: event_id.into(),
            event_type: "t.x".into(),
            received_at_ms: now_ms(),
            headers: vec![("webhook-id".into(), event_id.into())],
        }
    }

    #[tokio::test]
    async fn ingest_dedups_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let ev = NewEvent {
            meta: meta("demo", "msg_1"),
            body: bytes::Bytes::from_static(b"{\"a\":1}"),
            plugins: vec!["p1".into(), "p2".into()],
        };
        let first = store.ingest(ev.clone()).await.unwrap();
        let Ingested::Stored(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            store.ingest(ev.clone()).await.unwrap(),
            Ingested::Duplicate(id)
        );
        // Same event id on another source is a different event.
        let mut other = ev.clone();
        other.meta.source = "other".into();
        assert!(matches!(store.ingest(other).await.unwrap(), Ingested::Stored(i) if i != id));
        store.close().await;

        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let got = store.event(id).unwrap().unwrap();
        assert_eq!(got.body, b"{\"a\":1}");
        assert_eq!(got.meta, ev.meta);
        let ds = store.deliveries(id).unwrap();
        assert_eq!(ds.len(), 2);
        assert!(ds.iter().all(|d| d.status == DeliveryStatus::Pending));
        // New ids continue after the stored ones.
        let Ingested::Stored(next) = store
            .ingest(NewEvent {
                meta: meta("demo", "msg_2"),
                body: bytes::Bytes::new(),
                plugins: vec![],
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        assert!(next > id);
    }

    #[tokio::test]
    async fn attempts_move_deliveries_through_the_due_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let Ingested::Stored(id) = store
            .ingest(NewEvent {
                meta: meta("demo", "m"),
                body: bytes::Bytes::new(),
                plugins: vec!["p".into()],
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        let now = now_ms();
        assert_eq!(store.due("p", now + 1, 10).unwrap().due.len(), 1);
        let attempt = |n, outcome| Attempt {
            number: n,
            started_at_ms: now,
            duration_ms: 1,
            outcome,
            error: Some("boom".into()),
            plugin_version: "v".into(),
            logs: vec![],
        };
        store
            .record_attempt(
                id,
                "p",
                attempt(1, AttemptOutcome::Retry),
                Next::RetryAt(now + 60_000),
            )
            .await
            .unwrap();
        let batch = store.due("p", now + 1, 10).unwrap();
        assert!(batch.due.is_empty());
        assert_eq!(batch.later, Some(now + 60_000));
        assert_eq!(
            store.delivery(id, "p").unwrap().unwrap().status,
            DeliveryStatus::Retrying
        );
        store
            .record_attempt(id, "p", attempt(2, AttemptOutcome::Dead), Next::Dead)
            .await
            .unwrap();
        let batch = store.due("p", u64::MAX - 1, 10).unwrap();
        assert!(batch.due.is_empty() && batch.later.is_none());
        let d = store.delivery(id, "p").unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Dead);
        assert_eq!(d.attempts.len(), 2);
    }

    #[tokio::test]
    async fn state_counts_follow_every_transition_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let Ingested::Stored(id) = store
                .ingest(NewEvent {
                    meta: meta("demo", &format!("c{n}")),
                    body: bytes::Bytes::new(),
                    plugins: vec!["p".into(), "q".into()],
                })
                .await
                .unwrap()
            else {
                panic!()
            };
            ids.push(id);
        }
        let counts = |store: &Store| -> Vec<(String, [u64; 4])> {
            store
                .state_counts()
                .into_iter()
                .map(|(p, c)| (p, [c.pending, c.leased, c.retrying, c.dead]))
                .collect()
        };
        assert_eq!(
            counts(&store),
            [("p".into(), [3, 0, 0, 0]), ("q".into(), [3, 0, 0, 0])]
        );
        let now = now_ms();
        let attempt = |outcome| Attempt {
            number: 1,
            started_at_ms: now,
            duration_ms: 1,
            outcome,
            error: None,
            plugin_version: "v".into(),
            logs: vec![],
        };
        // p: one done, one dead, one retrying; q: one leased.
        for (i, (outcome, next)) in [
            (AttemptOutcome::Done, Next::Done),
            (AttemptOutcome::Dead, Next::Dead),
            (AttemptOutcome::Retry, Next::RetryAt(now + 60_000)),
        ]
        .into_iter()
        .enumerate()
        {
            store.lease(ids[i], "p", now + 1000).await.unwrap().unwrap();
            store
                .record_attempt(ids[i], "p", attempt(outcome), next)
                .await
                .unwrap();
        }
        store.lease(ids[0], "q", now + 1000).await.unwrap().unwrap();
        // A lease answers before its commit; counts move when it commits.
        store.flush().await.unwrap();
        assert_eq!(
            counts(&store),
            [("p".into(), [0, 0, 1, 1]), ("q".into(), [2, 1, 0, 0])]
        );
        assert_eq!(store.queue_depth("p"), 1);
        assert_eq!(store.queue_depth("q"), 3);

        // A replay of the dead letter makes it pending; a purge finds no dead one then.
        store.replay(ids[1], None, vec![], true, now).await.unwrap();
        assert_eq!(counts(&store)[0], ("p".into(), [1, 0, 1, 0]));
        assert_eq!(
            store.purge_dead(vec![(ids[1], "p".into())]).await.unwrap(),
            0
        );
        store.lease(ids[1], "p", now + 1000).await.unwrap().unwrap();
        store
            .record_attempt(ids[1], "p", attempt(AttemptOutcome::Dead), Next::Dead)
            .await
            .unwrap();
        assert_eq!(
            store.purge_dead(vec![(ids[1], "p".into())]).await.unwrap(),
            1
        );
        let before = counts(&store);
        assert_eq!(before[0], ("p".into(), [0, 0, 1, 0]));

        // Reopening reads the persisted counts; the lease q held is reclaimed.
        store.close().await;
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert_eq!(
            counts(&store),
            [("p".into(), [0, 0, 1, 0]), ("q".into(), [3, 0, 0, 0])]
        );
        store.close().await;

        // A store without the counts table (written by an older host) is counted once.
        {
            let db = Database::create(dir.path().join("agenthook.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(COUNTS).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert_eq!(
            counts(&store),
            [("p".into(), [0, 0, 1, 0]), ("q".into(), [3, 0, 0, 0])]
        );
    }

    #[tokio::test]
    async fn kv_is_per_plugin_and_lists_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            store.kv_set("p", k, k.as_bytes().to_vec()).await.unwrap();
        }
        store.kv_set("q", "a/1", b"q".to_vec()).await.unwrap();
        assert_eq!(store.kv_get("p", "a/1").unwrap().unwrap(), b"a/1");
        assert_eq!(store.kv_get("q", "a/1").unwrap().unwrap(), b"q");
        assert_eq!(store.kv_get("q", "a/2").unwrap(), None);
        let keys =
            |v: Vec<(String, Option<Vec<u8>>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(store.kv_list("p", "a/", None, 10, false).unwrap()),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(
            keys(store.kv_list("p", "a/", Some("a/1"), 1, false).unwrap()),
            ["a/2"]
        );
        assert_eq!(
            keys(store.kv_list("q", "", None, 10, false).unwrap()),
            ["a/1"]
        );
        assert!(store.kv_delete("p", "a/1").await.unwrap());
        assert!(!store.kv_delete("p", "a/1").await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_ingests_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.ingest(NewEvent {
                    meta: meta("demo", &format!("m{i}")),
                    body: bytes::Bytes::new(),
                    plugins: vec!["p".into()],
                })
                .await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap().unwrap(), Ingested::Stored(_)));
        }
        assert_eq!(store.event_count().unwrap(), 200);
        let page = store
            .list_events(&EventFilter::default(), None, 50, 10_000)
            .unwrap();
        assert_eq!(page.events.len(), 50);
        let cursor = page.next_cursor.unwrap();
        let rest = store
            .list_events(&EventFilter::default(), Some(cursor), 1000, 10_000)
            .unwrap();
        assert_eq!(rest.events.len(), 150);
        assert!(rest.next_cursor.is_none());
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[tokio::test]
    async fn a_pass_removes_finished_events_and_old_dedup_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            done_retention_ms: 1000,
            dead_retention_ms: 5000,
            dedup_window_ms: 1000,
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), &config).unwrap();
        let t0 = now_ms();
        let mut ids = Vec::new();
        for (i, next) in [Next::Done, Next::Dead, Next::RetryAt(t0 + 3_600_000)]
            .into_iter()
            .enumerate()
        {
            let Ingested::Stored(id) = store
                .ingest(NewEvent {
                    meta: EventMeta {
                        source: "s".into(),
                        event_id: format!("e{i}"),
                        event_type: "t".into(),
                        received_at_ms: t0,
                        headers: vec![],
                    },
                    body: bytes::Bytes::from_static(b"{}"),
                    plugins: vec!["p".into()],
                })
                .await
                .unwrap()
            else {
                panic!()
            };
            let attempt = Attempt {
                number: 1,
                started_at_ms: t0,
                duration_ms: 1,
                outcome: AttemptOutcome::Done,
                error: None,
                plugin_version: "v".into(),
                logs: vec![],
            };
            store.record_attempt(id, "p", attempt, next).await.unwrap();
            ids.push(id);
        }
        let janitor = Janitor::new(store.clone(), config);
        // Nothing is old yet.
        assert_eq!(janitor.pass(t0 + 500).await.unwrap(), PassReport::default());
        // Past the done retention and the dedup window, not the dead retention.
        let r = janitor.pass(t0 + 2000).await.unwrap();
        assert_eq!(
            r,
            PassReport {
                events_removed: 1,
                dedup_keys_removed: 3
            }
        );
        assert!(store.event(ids[0]).unwrap().is_none());
        assert!(store.event(ids[1]).unwrap().is_some());
        // Past the dead retention: the dead letter goes; the queued one never does.
        let r = janitor.pass(t0 + 10_000_000).await.unwrap();
        assert_eq!(r.events_removed, 1);
        assert!(store.event(ids[1]).unwrap().is_none());
        assert!(store.event(ids[2]).unwrap().is_some());
        assert_eq!(store.dedup_count().unwrap(), 0);
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[tokio::test]
    async fn leases_left_by_a_stopped_host_are_reclaimed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::default();
        let store = Store::open(dir.path(), &config).unwrap();
        let Ingested::Stored(id) = store
            .ingest(NewEvent {
                meta: EventMeta {
                    source: "s".into(),
                    event_id: "e".into(),
                    event_type: "t".into(),
                    received_at_ms: now_ms(),
                    headers: vec![],
                },
                body: bytes::Bytes::new(),
                plugins: vec!["p".into()],
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        let leased = store
            .lease(id, "p", now_ms() + 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(leased.status, DeliveryStatus::Leased);
        // A second lease of the same delivery is refused while the first holds.
        assert!(
            store
                .lease(id, "p", now_ms() + 60_000)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.queue_depth("p"), 1);
        store.close().await;

        let store = Store::open(dir.path(), &config).unwrap();
        let d = store.delivery(id, "p").unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.lease_expires_at_ms, None);
        assert_eq!(store.due("p", u64::MAX - 1, 10).unwrap().due.len(), 1);
        assert_eq!(store.queue_depth("p"), 1);
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn event_records_round_trip_and_truncation_is_an_error_not_a_panic() {
        let meta = EventMeta {
            source: "s".into(),
            event_id: "e".into(),
            event_type: "t".into(),
            received_at_ms: 1,
            headers: vec![("a".into(), "b".into())],
        };
        let record = encode_event(&meta, b"body bytes").unwrap();
        let (back, body) = decode_event(&record).unwrap();
        assert_eq!((back, body), (meta, &b"body bytes"[..]));
        for cut in [0, 3, 4, 10] {
            assert!(matches!(
                decode_event(&record[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
