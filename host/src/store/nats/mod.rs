//! The NATS JetStream backend: several hosts share one deployment's events, deliveries,
//! dedup keys and plugin kv in a JetStream cluster. The only module that touches NATS.
//!
//! The mapping (names start with `[store.nats] prefix`, `P` below):
//! - stream `P_events` (subject `P.events`): one message per stored event — metadata,
//!   the plugins it is for, the body. Its stream sequence is the event id. Published
//!   with `Nats-Msg-Id` = the dedup key, so copies sent to several hosts at once are
//!   stored once; an ingest answers after JetStream acknowledged it at `replicas`.
//! - KV `P_dedup`: dedup key → event id, created only if absent, the bucket's max age
//!   the dedup window: the long window `Nats-Msg-Id` (held in server memory) can't keep.
//! - KV `P_deliveries`: `{event id}.{plugin}` → the delivery with its attempts and the
//!   host holding its lease. A delivery never written is pending (its event says so).
//!   Every change is a compare-and-set on the revision read, so two hosts never both
//!   lease one delivery; a dead host's lease runs out and another host takes it over.
//! - KV `P_gone`: ids of events removed by retention, so other hosts forget them too.
//! - KV `P_kv`: `{plugin}.k{hex key}` → value: plugin kv, shared by all hosts.
//! - KV `P_journal`: `{event id}.{plugin}` → the delivery's journal of effects (JSON
//!   list by position), changed by compare-and-set.
//! - object store `P_plugins` and KV `P_hosts`: the deployment's plugins and what each
//!   host runs (`cluster`).
//!
//! Each host keeps an [`index::Index`] fed by watching the stream and the buckets: the
//! dispatcher's due queue, counts and the operator's reads come from it.

mod cluster;
mod index;
#[cfg(test)]
pub(super) mod test_server;
mod transitions;
mod watch;
mod writes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::Notify;

use super::model::*;
use super::{Backend, PassReport, Retention, StoreError};
use crate::config::{NatsConfig, StoreConfig};
use index::Index;

/// How long removal markers are kept: other hosts' watches apply them well within it,
/// and a host that starts later never sees the removed event at all.
const GONE_MAX_AGE: Duration = Duration::from_secs(86_400);

fn engine(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Engine(Box::new(e))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The names of one deployment's stream and buckets.
#[derive(Debug, Clone)]
struct Names {
    events_stream: String,
    events_subject: String,
    deliveries: String,
    dedup: String,
    gone: String,
    kv: String,
    plugins: String,
    hosts: String,
    journal: String,
}

impl Names {
    fn new(prefix: &str) -> Names {
        Names {
            events_stream: format!("{prefix}_events"),
            events_subject: format!("{prefix}.events"),
            deliveries: format!("{prefix}_deliveries"),
            dedup: format!("{prefix}_dedup"),
            gone: format!("{prefix}_gone"),
            kv: format!("{prefix}_kv"),
            plugins: format!("{prefix}_plugins"),
            hosts: format!("{prefix}_hosts"),
            journal: format!("{prefix}_journal"),
        }
    }
}

/// What an event message carries before its body.
#[derive(Debug, Serialize, Deserialize)]
struct EventHeader {
    meta: EventMeta,
    plugins: Vec<String>,
}

/// A delivery as the bucket keeps it: the delivery and the host holding its lease.
#[derive(Debug, Serialize, Deserialize)]
struct DeliveryRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    delivery: Delivery,
}

/// The dedup key of (source, sender's event id): a hash, so any id fits a subject.
fn dedup_key(source: &str, event_id: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(event_id.as_bytes());
    hex::encode(h.finalize())
}

fn delivery_key(id: EventId, plugin: &str) -> Result<String, StoreError> {
    if plugin.is_empty()
        || !plugin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StoreError::Corrupt(format!(
            "plugin name `{plugin}` cannot name a NATS key"
        )));
    }
    Ok(format!("{id}.{plugin}"))
}

fn parse_delivery_key(key: &str) -> Option<(EventId, &str)> {
    let (id, plugin) = key.split_once('.')?;
    Some((id.parse().ok()?, plugin))
}

fn kv_key(plugin: &str, key: &str) -> String {
    format!("{plugin}.k{}", hex::encode(key.as_bytes()))
}

fn parse_kv_key(key: &str) -> Option<(String, String)> {
    let (plugin, rest) = key.split_once('.')?;
    let bytes = hex::decode(rest.strip_prefix('k')?).ok()?;
    Some((plugin.to_string(), String::from_utf8(bytes).ok()?))
}

fn encode_event(meta: &EventMeta, plugins: &[String], body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let header = EventHeader {
        meta: meta.clone(),
        plugins: plugins.to_vec(),
    };
    super::model::encode_record(&header, body)
}

fn decode_event(record: &[u8]) -> Result<(EventHeader, &[u8]), StoreError> {
    super::model::decode_record(record)
}

/// This host's name: configured, or the machine's host name.
fn host_name(config: &NatsConfig) -> String {
    if let Some(h) = &config.host {
        return h.clone();
    }
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() { "host".into() } else { name }
}

/// The NATS store; one per host, shared by every [`super::Store`] handle.
pub(super) struct NatsStore {
    host: String,
    servers: String,
    replicas: usize,
    names: Names,
    client: async_nats::Client,
    js: jetstream::Context,
    events: stream::Stream,
    deliveries: kv::Store,
    dedup: kv::Store,
    gone: kv::Store,
    kv: kv::Store,
    journal: kv::Store,
    deployment: cluster::Deployment,
    index: Arc<Mutex<Index>>,
    /// Plugin kv keys (plugin → key → revision), for listing by prefix.
    kv_keys: watch::KvKeys,
    due_changed: Arc<Notify>,
    commit_stats: CommitStats,
    closed: AtomicBool,
    watchers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    max_queue_per_plugin: u64,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("servers", &self.servers)
            .field("host", &self.host)
            .finish()
    }
}

impl NatsStore {
    /// Connect, create the stream and buckets if this is the deployment's first host,
    /// load the index (replaying the stream and buckets) and keep it current; then give
    /// back the leases this host held when it stopped.
    pub(super) async fn open(
        config: &StoreConfig,
        nats: &NatsConfig,
    ) -> Result<NatsStore, StoreError> {
        let host = host_name(nats);
        let open_err = |what: &str, e: EngineError| StoreError::Open {
            what: format!("{what} on NATS {}", nats.servers.join(",")),
            source: e,
        };
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("agenthook {host}"))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        if let Some(t) = &nats.token {
            options = options.token(t.expose().to_string());
        }
        if let Some((u, p)) = &nats.user {
            options = options.user_and_password(u.clone(), p.expose().to_string());
        }
        if let Some(c) = &nats.credentials {
            options = options
                .credentials(c.expose())
                .map_err(|e| open_err("the credentials", Box::new(e)))?;
        }
        let addrs: Vec<async_nats::ServerAddr> = nats
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| open_err("a server URL", Box::new(e)))?;
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| open_err("the connection", Box::new(e)))?;
        let js = jetstream::new(client.clone());
        let names = Names::new(&nats.prefix);
        let replicas = nats.replicas;

        let events = js
            .get_or_create_stream(stream::Config {
                name: names.events_stream.clone(),
                subjects: vec![names.events_subject.clone()],
                num_replicas: replicas,
                // Never longer than the dedup window: an id forgotten by retention
                // must be new again.
                duplicate_window: Duration::from_millis(
                    nats.duplicate_window_ms.min(config.dedup_window_ms),
                ),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| open_err(&format!("stream {}", names.events_stream), Box::new(e)))?;
        let mut buckets = Vec::new();
        for (name, max_age) in [
            (&names.deliveries, Duration::ZERO),
            (&names.dedup, Duration::from_millis(config.dedup_window_ms)),
            (&names.gone, GONE_MAX_AGE),
            (&names.kv, Duration::ZERO),
            (&names.hosts, cluster::HOST_REPORT_MAX_AGE),
            (&names.journal, Duration::ZERO),
        ] {
            // The bucket's stream made here, as the client's `create_key_value` would
            // (which asks for account details that nats-server 2.9 answers in a shape
            // the client does not read); reads go to the stream leader (no direct
            // gets), so a compare-and-set sees the latest revision.
            js.get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_bytes: -1,
                max_messages: -1,
                max_message_size: -1,
                max_age,
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: false,
                num_replicas: replicas,
                discard: stream::DiscardPolicy::New,
                duplicate_window: if max_age.is_zero() {
                    Duration::from_secs(120)
                } else {
                    max_age.min(Duration::from_secs(120))
                },
                ..Default::default()
            })
            .await
            .map_err(|e| open_err(&format!("bucket {name}"), Box::new(e)))?;
            let store = js
                .get_key_value(name.as_str())
                .await
                .map_err(|e| open_err(&format!("bucket {name}"), Box::new(e)))?;
            buckets.push(store);
        }
        let journal = buckets.pop().expect("six buckets");
        let hosts = buckets.pop().expect("six buckets");
        let kv_bucket = buckets.pop().expect("six buckets");
        let gone = buckets.pop().expect("six buckets");
        let dedup = buckets.pop().expect("six buckets");
        let deliveries = buckets.pop().expect("six buckets");
        let plugins = match js.get_object_store(&names.plugins).await {
            Ok(o) => o,
            Err(_) => js
                .create_object_store(async_nats::jetstream::object_store::Config {
                    bucket: names.plugins.clone(),
                    num_replicas: replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| open_err(&format!("object store {}", names.plugins), Box::new(e)))?,
        };
        let deployment = cluster::Deployment {
            plugins,
            hosts,
            changed: Arc::new(Notify::new()),
        };

        let store = NatsStore {
            servers: nats.servers.join(","),
            replicas,
            host,
            names,
            client,
            js,
            events,
            deliveries,
            dedup,
            gone,
            kv: kv_bucket,
            journal,
            deployment,
            index: Arc::default(),
            kv_keys: Arc::default(),
            due_changed: Arc::new(Notify::new()),
            commit_stats: CommitStats::default(),
            closed: AtomicBool::new(false),
            watchers: Mutex::default(),
            max_queue_per_plugin: config.max_queue_per_plugin,
        };
        store
            .start_watchers()
            .await
            .map_err(|e| open_err("the index", Box::new(e)))?;
        let plugins_watch = store.deployment.watch();
        store
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(plugins_watch);
        let mine = store.lock().leased_by(&store.host);
        if !mine.is_empty() {
            tracing::info!(
                reclaimed = mine.len(),
                "gave back the leases this host held when it stopped"
            );
            store.release_keys(mine).await?;
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Backend for NatsStore {
    fn admit(&self, plugins: &[String]) -> Result<(), Refusal> {
        let index = self.lock();
        for p in plugins {
            if index.queued(p) >= self.max_queue_per_plugin {
                return Err(Refusal::QueueFull(p.clone()));
            }
        }
        Ok(())
    }

    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.check_open()?;
        let started = std::time::Instant::now();
        let r = self.ingest_event(event).await;
        self.commit_stats.observe(1, started.elapsed());
        r
    }

    async fn due(&self, plugin: &str, now_ms: u64, limit: usize) -> Result<DueBatch, StoreError> {
        Ok(self.lock().due(plugin, now_ms, limit))
    }

    fn due_changed(&self) -> Arc<Notify> {
        self.due_changed.clone()
    }

    async fn lease(
        &self,
        id: EventId,
        plugin: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Option<Delivery>, StoreError> {
        self.check_open()?;
        let holder = Some(self.host.clone());
        self.change(id, plugin, holder, |d| {
            transitions::lease(d, now_ms, expires_at_ms)
        })
        .await
    }

    async fn release(&self, keys: Vec<(EventId, String)>) -> Result<(), StoreError> {
        self.check_open()?;
        self.release_keys(keys).await
    }

    async fn record_attempt(
        &self,
        id: EventId,
        plugin: &str,
        attempt: Attempt,
        next: Next,
    ) -> Result<(), StoreError> {
        self.check_open()?;
        self.change(id, plugin, None, |d| {
            Some(transitions::record(d, attempt.clone(), next))
        })
        .await?;
        Ok(())
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
        self.check_open()?;
        self.replay_event(id, plugins, add, only_dead, keep_journal, now_ms)
            .await
    }

    async fn journal(&self, id: EventId, plugin: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.check_open()?;
        Ok(self.journal_entries(id, plugin).await?.0)
    }

    async fn journal_record(
        &self,
        id: EventId,
        plugin: &str,
        entry: JournalEntry,
    ) -> Result<(), StoreError> {
        self.check_open()?;
        self.record_journal(id, plugin, entry).await
    }

    async fn purge_dead(&self, keys: Vec<(EventId, String)>) -> Result<usize, StoreError> {
        self.check_open()?;
        self.purge_dead_keys(keys).await
    }

    async fn expire(&self, cutoffs: Retention) -> Result<PassReport, StoreError> {
        self.check_open()?;
        self.expire_pass(cutoffs).await
    }

    async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_open()?;
        Ok(self
            .kv
            .get(kv_key(plugin, key))
            .await
            .map_err(engine)?
            .map(|b| b.to_vec()))
    }

    async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.check_open()?;
        let rev = self
            .kv
            .put(kv_key(plugin, key), value.into())
            .await
            .map_err(engine)?;
        watch::note_kv_key(&self.kv_keys, plugin, key, Some(rev), true);
        Ok(())
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        let k = kv_key(plugin, key);
        let existed = match self.kv.entry(k.clone()).await.map_err(engine)? {
            Some(e) => e.operation == kv::Operation::Put,
            None => false,
        };
        if existed {
            self.kv.purge(k).await.map_err(engine)?;
            watch::note_kv_key(&self.kv_keys, plugin, key, None, false);
        }
        Ok(existed)
    }

    async fn kv_get_versioned(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        self.check_open()?;
        Ok(self
            .kv
            .entry(kv_key(plugin, key))
            .await
            .map_err(engine)?
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| Versioned {
                value: e.value.to_vec(),
                version: e.revision,
            }))
    }

    /// The version is the bucket revision, a stream sequence: it never repeats, even
    /// after a delete (the delete is itself a revision).
    async fn kv_compare_and_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Swap, StoreError> {
        self.check_open()?;
        let k = kv_key(plugin, key);
        let last = match expected {
            Some(v) => v,
            // Absent: no message on the key's subject, or a delete marker (whose
            // revision the write must name).
            None => match self.kv.entry(k.clone()).await.map_err(engine)? {
                Some(e) if e.operation == kv::Operation::Put => {
                    return Ok(Swap::Conflict(Some(Versioned {
                        value: e.value.to_vec(),
                        version: e.revision,
                    })));
                }
                Some(e) => e.revision,
                None => 0,
            },
        };
        match self.kv.update(&k, value.into(), last).await {
            Ok(rev) => {
                watch::note_kv_key(&self.kv_keys, plugin, key, Some(rev), true);
                Ok(Swap::Swapped(rev))
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Ok(Swap::Conflict(self.kv_get_versioned(plugin, key).await?))
            }
            Err(e) => Err(engine(e)),
        }
    }

    async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
    ) -> Result<Increment, StoreError> {
        self.check_open()?;
        // Compare-and-set until no other writer came in between.
        loop {
            let current = self.kv_get_versioned(plugin, key).await?;
            let n = match &current {
                Some(v) => match std::str::from_utf8(&v.value)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
                {
                    Some(n) => n,
                    None => return Ok(Increment::NotAnInteger),
                },
                None => 0,
            };
            let Some(sum) = n.checked_add(delta) else {
                return Ok(Increment::Overflow);
            };
            let expected = current.map(|v| v.version);
            match self
                .kv_compare_and_swap(plugin, key, expected, sum.to_string().into_bytes())
                .await?
            {
                Swap::Swapped(_) => return Ok(Increment::Done(sum)),
                Swap::Conflict(_) => continue,
            }
        }
    }

    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<Vec<KvEntry>, StoreError> {
        self.check_open()?;
        let keys: Vec<String> = {
            let all = self.kv_keys.lock().unwrap_or_else(|p| p.into_inner());
            let Some(mine) = all.get(plugin) else {
                return Ok(Vec::new());
            };
            let from = match start_after {
                Some(s) if s >= prefix => std::ops::Bound::Excluded(s.to_string()),
                _ => std::ops::Bound::Included(prefix.to_string()),
            };
            mine.range((from, std::ops::Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter(|(_, (_, exists))| *exists)
                .take(limit)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let v = if values {
                match self.kv.get(kv_key(plugin, &k)).await.map_err(engine)? {
                    Some(v) => Some(v.to_vec()),
                    // Deleted by another host since the index saw it.
                    None => continue,
                }
            } else {
                None
            };
            out.push((k, v));
        }
        Ok(out)
    }

    async fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.check_open()?;
        let msg = match self.events.get_raw_message(id).await {
            Ok(m) => m,
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(engine(e)),
        };
        if msg.subject.as_str() != self.names.events_subject {
            return Ok(None);
        }
        let (header, body) = decode_event(&msg.payload)?;
        Ok(Some(StoredEvent {
            id,
            meta: header.meta,
            body: body.to_vec(),
        }))
    }

    async fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, StoreError> {
        Ok(self.lock().deliveries(id))
    }

    async fn delivery(&self, id: EventId, plugin: &str) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .lock()
            .slot(id, plugin)
            .and_then(|s| s.delivery.clone()))
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError> {
        let index = self.lock();
        let mut page = Vec::new();
        let mut scanned = 0;
        let mut last_seen = None;
        for (&id, ev) in index.events_before(before) {
            last_seen = Some(id);
            scanned += 1;
            if filter.since_ms.is_some_and(|s| ev.meta.received_at_ms < s) {
                return Ok(EventPage {
                    events: page,
                    next_cursor: None,
                });
            }
            if filter.matches_meta(&ev.meta) {
                let ds = index.deliveries(id);
                let wants_delivery = filter.plugin.is_some() || filter.status.is_some();
                if !wants_delivery || ds.iter().any(|d| filter.matches_delivery(d)) {
                    page.push((id, ev.meta.clone(), ds));
                    if page.len() >= limit {
                        break;
                    }
                }
            }
            if scanned >= scan_limit {
                break;
            }
        }
        let more = last_seen.is_some_and(|id| index.events_before(Some(id)).next().is_some());
        Ok(EventPage {
            events: page,
            next_cursor: if more { last_seen } else { None },
        })
    }

    fn state_counts(&self) -> Vec<(String, Counts)> {
        self.lock().counts()
    }

    fn queue_depth(&self, plugin: &str) -> u64 {
        self.lock().queued(plugin)
    }

    fn oldest_due_ms(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().oldest_due(plugin))
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock().event_count())
    }

    fn dedup_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock().dedup_count())
    }

    fn size_bytes(&self) -> u64 {
        // The stream's bytes as last reported; a round trip is not allowed here.
        self.events.cached_info().state.bytes
    }

    fn free_disk_bytes(&self) -> Option<u64> {
        // The servers' disks are theirs to watch; JetStream refuses writes when full.
        None
    }

    fn min_free_disk_bytes(&self) -> u64 {
        0
    }

    fn is_writable(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn describe(&self) -> String {
        format!(
            "nats {} (prefix {}, replicas {}, host {})",
            self.servers,
            self.names.events_stream.trim_end_matches("_events"),
            self.replicas,
            self.host
        )
    }

    fn commit_stats(&self) -> &CommitStats {
        &self.commit_stats
    }

    fn cluster(&self) -> Option<&dyn super::Cluster> {
        Some(self)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every write returned only once JetStream acknowledged it.
        self.check_open()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for w in self
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            w.abort();
        }
        let _ = self.client.flush().await;
    }
}

type EngineError = super::EngineError;
