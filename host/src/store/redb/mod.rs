//! The redb backend: events, their deliveries to plugins, dedup keys and plugin kv in
//! one redb file. The only module that touches redb.
//!
//! All writes go through one writer thread (`writer`) that takes whatever has queued up
//! while the previous commit was running and applies it in a single
//! `Durability::Immediate`, two-phase commit (group commit): a caller's write is
//! acknowledged only after the commit that carries it has returned, so throughput grows
//! with concurrency instead of being capped at one fsync per event. Reads (`reads`) are
//! MVCC snapshots and never block it; `admission` answers from memory; `retention`
//! removes what has outlived its keep time.

mod admission;
mod file;
mod reads;
mod retention;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{Notify, mpsc, oneshot};

use super::model::*;
use super::{Backend, PassReport, Retention, StoreError};
use crate::config::StoreConfig;
use admission::{DiskCheck, StateCounts};
use file::DbFile;
use writer::{Op, Tables};

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
/// (id, plugin, seq) → journal entry (JSON): the effectful tool calls a delivery's
/// attempts completed, removed with the delivery.
const JOURNAL: TableDefinition<(u64, &str, u32), &[u8]> = TableDefinition::new("journal");
/// (plugin, key) → value: each plugin's private key-value space.
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// (plugin, key) → the key's version, set by every write of the key in the same
/// transaction as its value; removed with it. A key without one is at version 0.
const KV_VERSIONS: TableDefinition<(&str, &str), u64> = TableDefinition::new("kv_versions");
/// "kv" → the last kv version handed out: versions come from this one store-wide
/// sequence, so a key deleted and written again never gets an old version back.
const KV_CLOCK: TableDefinition<&str, u64> = TableDefinition::new("kv_clock");
/// (plugin, state) → how many deliveries of that plugin are in that state (every state
/// but `done`); kept in the same commits as the deliveries, so it is exact after a crash
/// and the host need not scan every delivery at start.
const COUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("counts");

/// Writes queued beyond this make callers wait (backpressure instead of unbounded memory).
const QUEUE_DEPTH: usize = 8192;

fn db(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Engine(Box::new(e.into()))
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The redb store; one per open file, shared by every [`super::Store`] handle.
pub(super) struct RedbStore {
    db: Arc<DbFile>,
    writer: mpsc::Sender<Op>,
    /// Set by `close`: the writer stops after the batch it is committing.
    stopping: Arc<AtomicBool>,
    /// Notified after every commit that made deliveries due, so the dispatcher wakes.
    due_changed: Arc<Notify>,
    counts: StateCounts,
    commit_stats: CommitStats,
    disk: Arc<DiskCheck>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
    /// Where the last retention pass stopped, so events pinned by queued deliveries at
    /// the old end are not rescanned forever.
    retention_cursor: AtomicU64,
    /// Ingress limits: queue depth per plugin, free disk space.
    max_queue_per_plugin: u64,
    min_free_disk_bytes: u64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Open (or create) the database in `data_dir`, reclaim the leases of a process that
    /// stopped mid-attempt, and start the writer thread. The writer stops when the last
    /// handle is dropped or `close` is called.
    pub(super) fn open(data_dir: &Path, config: &StoreConfig) -> Result<RedbStore, StoreError> {
        let path = data_dir.join("agenthook.redb");
        let database =
            DbFile::open(path.clone(), config.cache_bytes).map_err(|source| StoreError::Open {
                what: path.display().to_string(),
                source: Box::new(source),
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
        let stopping = Arc::new(AtomicBool::new(false));
        let disk = DiskCheck::new(&path);
        let handle = writer::spawn(
            database.clone(),
            rx,
            next_id,
            config.max_batch,
            writer::Shared {
                due_changed: due_changed.clone(),
                counts: counts.clone(),
                stats: commit_stats.clone(),
                stopping: stopping.clone(),
                disk: disk.clone(),
            },
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            db: database,
            writer: tx,
            due_changed,
            counts,
            commit_stats,
            disk,
            writer_thread: Mutex::new(Some(handle)),
            retention_cursor: AtomicU64::new(0),
            stopping,
            path,
            max_queue_per_plugin: config.max_queue_per_plugin,
            min_free_disk_bytes: config.min_free_disk_bytes,
        })
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

    /// Stop the writer after its current batch and wait (up to a deadline) for it.
    async fn stop_writer(&self) {
        let handle = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(handle) = handle else { return };
        self.stopping.store(true, Ordering::Relaxed);
        // Wake a writer waiting for work; it commits what is queued, then stops.
        let _ = self.writer.try_send(Box::new(|_| Ok(Box::new(|| {}))));
        let joined = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::task::spawn_blocking(move || handle.join()),
        )
        .await;
        if joined.is_err() {
            tracing::warn!("the store writer did not stop within 10 s of shutdown");
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedbStore {
    fn admit(&self, plugins: &[String]) -> Result<(), Refusal> {
        self.admit_now(plugins)
    }

    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.write(move |t| t.ingest(event)).await
    }

    async fn due(&self, plugin: &str, now_ms: u64, limit: usize) -> Result<DueBatch, StoreError> {
        self.read_due(plugin, now_ms, limit)
    }

    fn due_changed(&self) -> Arc<Notify> {
        self.due_changed.clone()
    }

    /// Answers once the lease is applied, not once it is durable (see `write_applied`):
    /// an attempt then waits for one commit, its outcome's, not two.
    async fn lease(
        &self,
        id: EventId,
        plugin: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Option<Delivery>, StoreError> {
        let plugin = plugin.to_string();
        self.write_applied(move |t| t.lease(id, &plugin, now_ms, expires_at_ms))
            .await?
    }

    async fn release(&self, keys: Vec<(EventId, String)>) -> Result<(), StoreError> {
        self.write(move |t| t.release(&keys)).await?
    }

    async fn record_attempt(
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

    async fn replay(
        &self,
        id: EventId,
        plugins: Option<Vec<String>>,
        add: Vec<String>,
        only_dead: bool,
        keep_journal: bool,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.write(move |t| {
            t.replay(
                id,
                plugins.as_deref(),
                &add,
                only_dead,
                keep_journal,
                now_ms,
            )
        })
        .await?
    }

    async fn journal(&self, id: EventId, plugin: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.read_journal(id, plugin)
    }

    async fn journal_record(
        &self,
        id: EventId,
        plugin: &str,
        entry: JournalEntry,
    ) -> Result<(), StoreError> {
        let plugin = plugin.to_string();
        self.write(move |t| t.journal_record(id, &plugin, &entry))
            .await?
    }

    async fn purge_dead(&self, keys: Vec<(EventId, String)>) -> Result<usize, StoreError> {
        self.write(move |t| t.purge_dead(&keys)).await?
    }

    async fn expire(&self, cutoffs: Retention) -> Result<PassReport, StoreError> {
        self.expire_pass(cutoffs).await
    }

    async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_kv(plugin, key)
    }

    async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |t| t.kv_set(&plugin, &key, &value)).await?
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, StoreError> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |t| t.kv_delete(&plugin, &key)).await?
    }

    async fn kv_get_versioned(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        self.read_kv_versioned(plugin, key)
    }

    async fn kv_compare_and_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Swap, StoreError> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |t| t.kv_compare_and_swap(&plugin, &key, expected, value))
            .await?
    }

    async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
    ) -> Result<Increment, StoreError> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.write(move |t| t.kv_increment(&plugin, &key, delta))
            .await?
    }

    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<Vec<KvEntry>, StoreError> {
        self.read_kv_list(plugin, prefix, start_after, limit, values)
    }

    async fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.read_event(id)
    }

    async fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, StoreError> {
        self.read_event_deliveries(id)
    }

    async fn delivery(&self, id: EventId, plugin: &str) -> Result<Option<Delivery>, StoreError> {
        self.read_delivery(id, plugin)
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError> {
        // A filter that matches little may scan many events: off the async threads.
        let (db, filter) = (self.db.clone(), filter.clone());
        tokio::task::spawn_blocking(move || {
            reads::read_events(&db, &filter, before, limit, scan_limit)
        })
        .await
        .map_err(|e| StoreError::Engine(Box::new(e)))?
    }

    fn state_counts(&self) -> Vec<(String, Counts)> {
        self.counts_by_plugin()
    }

    fn queue_depth(&self, plugin: &str) -> u64 {
        self.queued(plugin)
    }

    fn oldest_due_ms(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        self.read_oldest_due(plugin)
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        self.read_event_count()
    }

    fn dedup_count(&self) -> Result<u64, StoreError> {
        self.read_dedup_count()
    }

    fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn free_disk_bytes(&self) -> Option<u64> {
        self.disk.free_bytes()
    }

    fn min_free_disk_bytes(&self) -> u64 {
        self.min_free_disk_bytes
    }

    fn is_writable(&self) -> bool {
        !self.writer.is_closed() && self.db.is_open()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn commit_stats(&self) -> &CommitStats {
        &self.commit_stats
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    async fn close(&self) {
        self.stop_writer().await;
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
    encode_record(meta, body)
}

/// The metadata and body of an event record.
fn decode_event(record: &[u8]) -> Result<(EventMeta, &[u8]), StoreError> {
    decode_record(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn a_store_written_without_the_counts_table_is_counted_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default())
            .await
            .unwrap();
        let meta = EventMeta {
            source: "s".into(),
            event_id: "e".into(),
            event_type: "t".into(),
            received_at_ms: 1,
            headers: vec![],
        };
        store
            .ingest(NewEvent {
                meta,
                body: bytes::Bytes::new(),
                plugins: vec!["p".into(), "q".into()],
            })
            .await
            .unwrap();
        store.close().await;
        let counts = |store: &Store| -> Vec<(String, [u64; 4])> {
            store
                .state_counts()
                .into_iter()
                .map(|(p, c)| (p, [c.pending, c.leased, c.retrying, c.dead]))
                .collect()
        };
        // A store without the counts table (written by an older host) is counted once.
        {
            let db = redb::Database::create(dir.path().join("agenthook.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(COUNTS).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path(), &StoreConfig::default())
            .await
            .unwrap();
        assert_eq!(
            counts(&store),
            [("p".into(), [1, 0, 0, 0]), ("q".into(), [1, 0, 0, 0])]
        );
    }

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
