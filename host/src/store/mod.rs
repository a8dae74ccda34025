//! The durable store: events, their deliveries to plugins, dedup keys and plugin kv,
//! in one redb file. This is the only module that touches redb.
//!
//! All writes go through one writer thread that takes whatever has queued up while the
//! previous commit was running and applies it in a single `Durability::Immediate`,
//! two-phase commit (group commit): a caller's write is acknowledged only after the
//! commit that carries it has returned, and throughput grows with concurrency instead
//! of being capped at one fsync per event. Reads are MVCC snapshots and never block it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

/// The host's own id of a stored event; assigned in arrival order, never reused.
pub type EventId = u64;

/// id → event metadata (JSON).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// id → the body, exactly as received and verified.
const PAYLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("payloads");
/// (source, sender's event id) → id: a sender's retry is recognised and not stored again.
const DEDUP: TableDefinition<(&str, &str), u64> = TableDefinition::new("dedup");
/// (id, plugin) → delivery record (JSON).
const DELIVERIES: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("deliveries");
/// (plugin, due at ms, id): the dispatcher's queue, ordered by due time per plugin.
/// A delivery is in it until its outcome is done or dead.
const DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("due");
/// (plugin, key) → value: each plugin's private key-value space.
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");

/// Most operations one commit carries; beyond this the rest wait for the next commit.
const MAX_BATCH: usize = 1024;
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

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Never attempted yet.
    Pending,
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
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "retrying" => DeliveryStatus::Retrying,
            "done" => DeliveryStatus::Done,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }
}

/// One event's delivery to one plugin, with its full attempt history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    pub plugin: String,
    pub status: DeliveryStatus,
    /// When the next attempt is due (pending and retrying deliveries only).
    pub next_attempt_at_ms: Option<u64>,
    pub attempts: Vec<Attempt>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
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
    /// 1-based.
    pub number: u32,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    /// Why it failed, e.g. `handler: retry: upstream 503`, `trap: ...`, `cpu_deadline`.
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

enum Op {
    Ingest(NewEvent, oneshot::Sender<Result<Ingested, StoreError>>),
    Attempt {
        id: EventId,
        plugin: String,
        attempt: Attempt,
        next: Next,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    KvSet {
        plugin: String,
        key: String,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    KvDelete {
        plugin: String,
        key: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// Replies held until the commit that carries their writes has returned.
enum Reply {
    Ingest(oneshot::Sender<Result<Ingested, StoreError>>, Ingested),
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Bool(oneshot::Sender<Result<bool, StoreError>>, bool),
}

impl Reply {
    fn send(self) {
        // A caller that went away (e.g. a client that disconnected) no longer needs the
        // answer; its write is committed all the same.
        match self {
            Reply::Ingest(tx, v) => drop(tx.send(Ok(v))),
            Reply::Unit(tx) => drop(tx.send(Ok(()))),
            Reply::Bool(tx, v) => drop(tx.send(Ok(v))),
        }
    }

    fn fail(self, e: &str) {
        let err = || StoreError::Corrupt(format!("commit failed: {e}"));
        match self {
            Reply::Ingest(tx, _) => drop(tx.send(Err(err()))),
            Reply::Unit(tx) => drop(tx.send(Err(err()))),
            Reply::Bool(tx, _) => drop(tx.send(Err(err()))),
        }
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
    /// Notified after every commit that made deliveries due, so the dispatcher wakes.
    due_changed: Arc<Notify>,
    writer_thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (or create) the database in `data_dir` and start its writer thread.
    /// The writer stops when the last `Store` handle is dropped.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("agenthook.redb");
        let database = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        // Create every table up front, so readers never meet a missing table.
        let txn = database.begin_write().map_err(db)?;
        {
            txn.open_table(EVENTS).map_err(db)?;
            txn.open_table(PAYLOADS).map_err(db)?;
            txn.open_table(DEDUP).map_err(db)?;
            txn.open_table(DELIVERIES).map_err(db)?;
            txn.open_table(DUE).map_err(db)?;
            txn.open_table(KV).map_err(db)?;
        }
        txn.commit().map_err(db)?;

        let next_id = {
            let read = database.begin_read().map_err(db)?;
            let events = read.open_table(EVENTS).map_err(db)?;
            let last = events.last().map_err(db)?;
            last.map(|(k, _)| k.value() + 1).unwrap_or(1)
        };

        let db_arc = Arc::new(database);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let due_changed = Arc::new(Notify::new());
        let writer_db = db_arc.clone();
        let notify = due_changed.clone();
        let handle = std::thread::Builder::new()
            .name("agenthook-store-writer".into())
            .spawn(move || writer_loop(writer_db, rx, next_id, notify))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            db: db_arc,
            writer: tx,
            due_changed,
            writer_thread: Arc::new(std::sync::Mutex::new(Some(handle))),
        })
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

    /// Notified whenever deliveries became due (new events, retries scheduled).
    pub fn due_changed(&self) -> Arc<Notify> {
        self.due_changed.clone()
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Store an event and one pending delivery per plugin, unless (source, event id) is
    /// already stored. Returns once the commit is durable.
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.submit(|tx| Op::Ingest(event, tx)).await
    }

    /// Record an attempt and move the delivery to its next state, durably.
    pub async fn record_attempt(
        &self,
        id: EventId,
        plugin: &str,
        attempt: Attempt,
        next: Next,
    ) -> Result<(), StoreError> {
        self.submit(|reply| Op::Attempt {
            id,
            plugin: plugin.to_string(),
            attempt,
            next,
            reply,
        })
        .await
    }

    pub async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.submit(|reply| Op::KvSet {
            plugin: plugin.to_string(),
            key: key.to_string(),
            value,
            reply,
        })
        .await
    }

    /// Remove a key; true when it existed.
    pub async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, StoreError> {
        self.submit(|reply| Op::KvDelete {
            plugin: plugin.to_string(),
            key: key.to_string(),
            reply,
        })
        .await
    }

    pub fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let kv = read.open_table(KV).map_err(db)?;
        Ok(kv
            .get((plugin, key))
            .map_err(db)?
            .map(|v| v.value().to_vec()))
    }

    /// Up to `limit` (key, value) pairs of `plugin` whose key starts with `prefix`,
    /// strictly after `start_after` when given.
    pub fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
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
            out.push((key.to_string(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let read = self.db.begin_read().map_err(db)?;
        let events = read.open_table(EVENTS).map_err(db)?;
        let Some(meta) = events.get(id).map_err(db)? else {
            return Ok(None);
        };
        let meta: EventMeta = serde_json::from_slice(meta.value()).map_err(corrupt)?;
        let payloads = read.open_table(PAYLOADS).map_err(db)?;
        let body = payloads
            .get(id)
            .map_err(db)?
            .map(|b| b.value().to_vec())
            .unwrap_or_default();
        Ok(Some(StoredEvent { id, meta, body }))
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

    /// Up to `limit` deliveries of `plugin` due at or before `now_ms`, oldest first, as
    /// (due at, id); and when the first one after those is due.
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
    /// Scans at most `scan_limit` events per call so that a rare filter cannot stall
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
            let meta: EventMeta = serde_json::from_slice(v.value()).map_err(corrupt)?;
            if filter.until_ms.is_some_and(|u| meta.received_at_ms > u) {
                continue;
            }
            if filter.since_ms.is_some_and(|s| meta.received_at_ms < s) {
                // Ids grow with arrival time: everything older is older still.
                return Ok(EventPage {
                    events: page,
                    next_cursor: None,
                });
            }
            let keep = filter.source.as_ref().is_none_or(|s| *s == meta.source)
                && filter.event_id.as_ref().is_none_or(|e| *e == meta.event_id)
                && filter
                    .event_type
                    .as_ref()
                    .is_none_or(|t| *t == meta.event_type);
            if keep {
                let ds = read_deliveries(&deliveries, id)?;
                let matches_delivery = |d: &Delivery| {
                    filter.plugin.as_ref().is_none_or(|p| *p == d.plugin)
                        && filter.status.is_none_or(|s| s == d.status)
                };
                let delivery_ok = (filter.plugin.is_none() && filter.status.is_none())
                    || ds.iter().any(matches_delivery);
                if delivery_ok {
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn writer_loop(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Op>,
    mut next_id: u64,
    due_changed: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let id_before = next_id;
        let mut replies = Vec::with_capacity(batch.len());
        let mut made_due = false;
        match commit_batch(&db, &mut batch, &mut next_id, &mut replies, &mut made_due) {
            Ok(()) => {
                for r in replies {
                    r.send();
                }
                if made_due {
                    due_changed.notify_one();
                }
            }
            Err(e) => {
                next_id = id_before;
                let msg = e.to_string();
                tracing::error!(error = %msg, "store commit failed; the batch was not stored");
                for r in replies {
                    r.fail(&msg);
                }
                // Ops not yet turned into replies (the failure happened part-way).
                for op in batch.drain(..) {
                    fail_op(op, &msg);
                }
            }
        }
        batch.clear();
    }
}

fn fail_op(op: Op, msg: &str) {
    match op {
        Op::Ingest(_, tx) => Reply::Ingest(tx, Ingested::Stored(0)).fail(msg),
        Op::Attempt { reply, .. } | Op::KvSet { reply, .. } => Reply::Unit(reply).fail(msg),
        Op::KvDelete { reply, .. } => Reply::Bool(reply, false).fail(msg),
    }
}

fn commit_batch(
    db: &Database,
    batch: &mut Vec<Op>,
    next_id: &mut u64,
    replies: &mut Vec<Reply>,
    made_due: &mut bool,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    // Bodies are attacker-controlled: redb recommends two-phase commit for such input,
    // since one-phase recovery trusts a non-cryptographic checksum.
    txn.set_two_phase_commit(true);
    {
        let mut events = txn.open_table(EVENTS).map_err(db_err)?;
        let mut payloads = txn.open_table(PAYLOADS).map_err(db_err)?;
        let mut dedup = txn.open_table(DEDUP).map_err(db_err)?;
        let mut deliveries = txn.open_table(DELIVERIES).map_err(db_err)?;
        let mut due = txn.open_table(DUE).map_err(db_err)?;
        let mut kv = txn.open_table(KV).map_err(db_err)?;
        for op in batch.drain(..) {
            match op {
                Op::Ingest(ev, tx) => {
                    let existing = dedup
                        .get((ev.meta.source.as_str(), ev.meta.event_id.as_str()))
                        .map_err(db_err)?
                        .map(|v| v.value());
                    if let Some(id) = existing {
                        replies.push(Reply::Ingest(tx, Ingested::Duplicate(id)));
                        continue;
                    }
                    let id = *next_id;
                    *next_id += 1;
                    let meta = serde_json::to_vec(&ev.meta).map_err(corrupt)?;
                    events.insert(id, meta.as_slice()).map_err(db_err)?;
                    payloads.insert(id, ev.body.as_ref()).map_err(db_err)?;
                    dedup
                        .insert((ev.meta.source.as_str(), ev.meta.event_id.as_str()), id)
                        .map_err(db_err)?;
                    let at = ev.meta.received_at_ms;
                    for plugin in &ev.plugins {
                        let d = Delivery {
                            plugin: plugin.clone(),
                            status: DeliveryStatus::Pending,
                            next_attempt_at_ms: Some(at),
                            attempts: Vec::new(),
                            created_at_ms: at,
                            updated_at_ms: at,
                        };
                        let bytes = serde_json::to_vec(&d).map_err(corrupt)?;
                        deliveries
                            .insert((id, plugin.as_str()), bytes.as_slice())
                            .map_err(db_err)?;
                        due.insert((plugin.as_str(), at, id), ()).map_err(db_err)?;
                        *made_due = true;
                    }
                    replies.push(Reply::Ingest(tx, Ingested::Stored(id)));
                }
                Op::Attempt {
                    id,
                    plugin,
                    attempt,
                    next,
                    reply,
                } => {
                    let current = deliveries
                        .get((id, plugin.as_str()))
                        .map_err(db_err)?
                        .map(|v| v.value().to_vec());
                    let Some(current) = current else {
                        // The delivery is gone (purged): nothing to record.
                        replies.push(Reply::Unit(reply));
                        continue;
                    };
                    let mut d: Delivery = serde_json::from_slice(&current).map_err(corrupt)?;
                    if let Some(at) = d.next_attempt_at_ms {
                        due.remove((plugin.as_str(), at, id)).map_err(db_err)?;
                    }
                    d.updated_at_ms = attempt.started_at_ms + attempt.duration_ms;
                    d.attempts.push(attempt);
                    match next {
                        Next::Done => {
                            d.status = DeliveryStatus::Done;
                            d.next_attempt_at_ms = None;
                        }
                        Next::Dead => {
                            d.status = DeliveryStatus::Dead;
                            d.next_attempt_at_ms = None;
                        }
                        Next::RetryAt(at) => {
                            d.status = DeliveryStatus::Retrying;
                            d.next_attempt_at_ms = Some(at);
                            due.insert((plugin.as_str(), at, id), ()).map_err(db_err)?;
                            *made_due = true;
                        }
                    }
                    let bytes = serde_json::to_vec(&d).map_err(corrupt)?;
                    deliveries
                        .insert((id, plugin.as_str()), bytes.as_slice())
                        .map_err(db_err)?;
                    replies.push(Reply::Unit(reply));
                }
                Op::KvSet {
                    plugin,
                    key,
                    value,
                    reply,
                } => {
                    kv.insert((plugin.as_str(), key.as_str()), value.as_slice())
                        .map_err(db_err)?;
                    replies.push(Reply::Unit(reply));
                }
                Op::KvDelete { plugin, key, reply } => {
                    let existed = kv
                        .remove((plugin.as_str(), key.as_str()))
                        .map_err(db_err)?
                        .is_some();
                    replies.push(Reply::Bool(reply, existed));
                }
            }
        }
    }
    txn.commit().map_err(db_err)?;
    Ok(())
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    db(e)
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
        let store = Store::open(dir.path()).unwrap();
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

        let store = Store::open(dir.path()).unwrap();
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
        let store = Store::open(dir.path()).unwrap();
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
    async fn kv_is_per_plugin_and_lists_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            store.kv_set("p", k, k.as_bytes().to_vec()).await.unwrap();
        }
        store.kv_set("q", "a/1", b"q".to_vec()).await.unwrap();
        assert_eq!(store.kv_get("p", "a/1").unwrap().unwrap(), b"a/1");
        assert_eq!(store.kv_get("q", "a/1").unwrap().unwrap(), b"q");
        assert_eq!(store.kv_get("q", "a/2").unwrap(), None);
        let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(store.kv_list("p", "a/", None, 10).unwrap()),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(
            keys(store.kv_list("p", "a/", Some("a/1"), 1).unwrap()),
            ["a/2"]
        );
        assert_eq!(keys(store.kv_list("q", "", None, 10).unwrap()), ["a/1"]);
        assert!(store.kv_delete("p", "a/1").await.unwrap());
        assert!(!store.kv_delete("p", "a/1").await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_ingests_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
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
