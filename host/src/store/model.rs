//! What the store keeps, in the domain's words: events, their deliveries to plugins
//! with every attempt, the filters and pages the admin API reads, per-state counts,
//! and why an event is refused. Shared by every backend; nothing here touches storage.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The host's own id of a stored event; assigned in arrival order, never reused.
pub type EventId = u64;

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
    /// While leased: when the lease was taken (the attempt's start, should it be lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_at_ms: Option<u64>,
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
    /// What the attempt did with the delivery's journal of effects, when it had one:
    /// `replayed 2 calls`, `diverged at call 3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

/// One effectful tool call of a delivery that completed, as recorded in its journal:
/// a later attempt making the same call at the same position gets `result` back
/// instead of repeating the effect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    /// 1-based position among the attempt's effectful calls.
    pub seq: u32,
    /// The tool (`http.fetch`, `email.send`, `events.emit`, `llm.chat`).
    pub tool: String,
    /// Hex SHA-256 of the call's request: a later call matches only if equal.
    pub request_hash: String,
    /// One line for the operator, e.g. `POST http://127.0.0.1:8000/sink → 201`.
    pub summary: String,
    /// The attempt that made the effect.
    pub attempt: u32,
    pub recorded_at_ms: u64,
    /// The call's result as the tool returns it on replay.
    pub result: serde_json::Value,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryAt(u64),
    Dead,
}

/// Due deliveries of one plugin, from [`Backend::due`](super::Backend::due).
#[derive(Debug, Clone, Default)]
pub struct DueBatch {
    /// (due at ms, event id), oldest first.
    pub due: Vec<(u64, EventId)>,
    /// When the first delivery after these is due.
    pub later: Option<u64>,
}

/// A page of events from [`Backend::list_events`](super::Backend::list_events).
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<(EventId, EventMeta, Vec<Delivery>)>,
    /// Pass as `before` to get the next (older) page.
    pub next_cursor: Option<EventId>,
}

/// Filters for [`Backend::list_events`](super::Backend::list_events); `None` means any.
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
    pub(super) fn matches_meta(&self, meta: &EventMeta) -> bool {
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

/// A kv value and its version: a number that changes on every write of the key and
/// never repeats for it, even after a delete (0 only for a value written before the
/// store kept versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// What [`super::Backend::kv_compare_and_swap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The value was written; its new version.
    Swapped(u64),
    /// The key was not at the expected version and nothing was written; what it holds.
    Conflict(Option<Versioned>),
}

/// What [`super::Backend::kv_increment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Increment {
    /// The sum was stored (as decimal ASCII text); the new value.
    Done(i64),
    /// The stored value is not a decimal integer; nothing was written.
    NotAnInteger,
    /// The sum overflows `i64`; nothing was written.
    Overflow,
}

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

    pub(super) fn add(&mut self, state: DeliveryStatus, delta: i64) {
        if let Some(v) = self.slot(state) {
            *v = v.saturating_add_signed(delta);
        }
    }
}

/// Why the store will not take another event now. Ingress answers 503 + Retry-After;
/// an emitting plugin gets `tool-error.limited`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// This plugin already has `store.max_queue_per_plugin` deliveries waiting.
    #[error(
        "plugin `{0}` has too many deliveries waiting (store.max_queue_per_plugin); retry later"
    )]
    QueueFull(String),
    /// The data dir's file system has less than `store.min_free_disk_mb` free.
    #[error("the host is low on disk space (store.min_free_disk_mb); retry later")]
    DiskFull { free_bytes: u64 },
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
    pub(super) fn observe(&self, writes: usize, took: std::time::Duration) {
        self.batch_size.observe(writes as f64);
        self.seconds.observe(took.as_secs_f64());
    }
}

/// An event as both backends store it, in one value: the header's length (u32,
/// little-endian), the header as JSON, then the body exactly as received and verified.
pub(crate) fn encode_record<H: Serialize>(header: &H, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(header).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let len = u32::try_from(json.len())
        .map_err(|_| StoreError::Corrupt("event metadata over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(4 + json.len() + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(body);
    Ok(out)
}

/// The header and body of a record [`encode_record`] made.
pub(crate) fn decode_record<H: serde::de::DeserializeOwned>(
    record: &[u8],
) -> Result<(H, &[u8]), StoreError> {
    let short = || StoreError::Corrupt("event record is truncated".into());
    let len_bytes: [u8; 4] = record
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(short)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let json = record.get(4..4 + len).ok_or_else(short)?;
    let header = serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((header, &record[4 + len..]))
}
