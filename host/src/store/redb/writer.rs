//! The writer thread and every write the store makes.
//!
//! A write is a closure over the open tables; the thread applies all queued closures in
//! one transaction and sends their replies only after the commit returned. If the commit
//! fails, no reply is sent and every caller in the batch gets `NotCommitted`; if it
//! failed on I/O (a full disk), the writer reopens the database before the next batch.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadableTable, Table, WriteTransaction};
use tokio::sync::{Notify, mpsc};

use super::file::{DbFile, needs_reopen};
use super::*;

/// The error of an attempt whose lease ran out before it recorded an outcome.
pub(super) const LEASE_EXPIRED: &str = "lease_expired: the attempt did not record an outcome before its lease ran out (the host hung or could not write); it counts as failed";

/// What a write leaves to do after the commit: send its reply.
pub(super) type Reply = Box<dyn FnOnce() + Send>;
/// A write: applied inside the batch's transaction. An error aborts the whole batch, so
/// writes return storage errors only; per-write problems go into their reply.
pub(super) type Op = Box<dyn FnOnce(&mut Tables<'_>) -> Result<Reply, StoreError> + Send>;

/// The tables of one write transaction, and what the batch changed.
pub(super) struct Tables<'t> {
    events: Table<'t, u64, &'static [u8]>,
    dedup: Table<'t, (&'static str, &'static str), u64>,
    dedup_age: Table<'t, (u64, u64), (&'static str, &'static str)>,
    deliveries: Table<'t, (u64, &'static str), &'static [u8]>,
    due: Table<'t, (&'static str, u64, u64), ()>,
    leases: Table<'t, (&'static str, u64), u64>,
    kv: Table<'t, (&'static str, &'static str), &'static [u8]>,
    journal: Table<'t, (u64, &'static str, u32), &'static [u8]>,
    kv_versions: Table<'t, (&'static str, &'static str), u64>,
    kv_clock: Table<'t, &'static str, u64>,
    counts: Table<'t, (&'static str, &'static str), u64>,
    next_id: u64,
    made_due: bool,
    /// How many deliveries of each (plugin, state) this batch added or took away;
    /// written to the `counts` table before the commit and applied to the in-memory
    /// counters after it.
    shifts: HashMap<(String, DeliveryStatus), i64>,
}

fn open_tables(txn: &WriteTransaction, next_id: u64) -> Result<Tables<'_>, StoreError> {
    Ok(Tables {
        events: txn.open_table(EVENTS).map_err(db)?,
        dedup: txn.open_table(DEDUP).map_err(db)?,
        dedup_age: txn.open_table(DEDUP_AGE).map_err(db)?,
        deliveries: txn.open_table(DELIVERIES).map_err(db)?,
        due: txn.open_table(DUE).map_err(db)?,
        leases: txn.open_table(LEASES).map_err(db)?,
        kv: txn.open_table(KV).map_err(db)?,
        journal: txn.open_table(JOURNAL).map_err(db)?,
        kv_versions: txn.open_table(KV_VERSIONS).map_err(db)?,
        kv_clock: txn.open_table(KV_CLOCK).map_err(db)?,
        counts: txn.open_table(COUNTS).map_err(db)?,
        next_id,
        made_due: false,
        shifts: HashMap::new(),
    })
}

/// Create every table (so readers never meet a missing one) and reclaim the leases a
/// stopped process left: those deliveries are queued again. Returns how many.
pub(super) fn prepare(database: &DbFile) -> Result<usize, StoreError> {
    let txn = begin(database)?;
    let reclaimed;
    {
        let mut t = open_tables(&txn, 0)?;
        t.rebuild_counts_if_missing()?;
        let mut held = Vec::new();
        for entry in t.leases.iter().map_err(db)? {
            let (k, _) = entry.map_err(db)?;
            let (plugin, id) = k.value();
            held.push((id, plugin.to_string()));
        }
        reclaimed = held.len();
        t.release(&held)??;
        t.persist_counts()?;
    }
    txn.commit().map_err(db)?;
    Ok(reclaimed)
}

fn begin(database: &DbFile) -> Result<WriteTransaction, StoreError> {
    let mut txn = database.begin_write().map_err(db)?;
    // Bodies are attacker-controlled: redb recommends two-phase commit for such input,
    // since one-phase recovery trusts a non-cryptographic checksum.
    txn.set_two_phase_commit(true);
    Ok(txn)
}

/// What the writer shares with the store's handle.
pub(super) struct Shared {
    /// Notified after every commit that made deliveries due.
    pub due_changed: Arc<Notify>,
    /// Updated after every commit that moved deliveries between states.
    pub counts: StateCounts,
    pub stats: CommitStats,
    /// Set by `close`: stop after the current batch.
    pub stopping: Arc<AtomicBool>,
    /// Free space, read again after every commit (ingress admits against it).
    pub disk: Arc<DiskCheck>,
}

pub(super) fn spawn(
    database: Arc<DbFile>,
    rx: mpsc::Receiver<Op>,
    next_id: u64,
    max_batch: usize,
    shared: Shared,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("agenthook-store-writer".into())
        .spawn(move || run(database, rx, next_id, max_batch, shared))
}

fn run(
    database: Arc<DbFile>,
    mut rx: mpsc::Receiver<Op>,
    mut next_id: u64,
    max_batch: usize,
    shared: Shared,
) {
    let Shared {
        due_changed,
        counts,
        stats,
        stopping,
        disk,
    } = shared;
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        // Whatever queued up while the last commit ran shares this one.
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (size, started) = (batch.len(), std::time::Instant::now());
        let result = commit(&database, &mut batch, next_id);
        stats.observe(size, started.elapsed());
        // Before anyone is answered: the next admission sees what this commit took.
        disk.refresh();
        match result {
            Ok((replies, after)) => {
                next_id = after.next_id;
                if !after.shifts.is_empty() {
                    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                    for ((plugin, state), delta) in after.shifts {
                        c.entry(plugin).or_default().add(state, delta);
                    }
                }
                for reply in replies {
                    reply();
                }
                if after.made_due {
                    due_changed.notify_one();
                }
            }
            Err(e) => {
                // Dropping the ops and replies tells every caller `NotCommitted`.
                tracing::error!(error = %e, writes = size, "store commit failed; the batch was not stored");
                batch.clear();
                if needs_reopen(&e) {
                    match database.reopen() {
                        Ok(()) => tracing::warn!("reopened the store after an I/O error"),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reopen the store after an I/O error; trying again at the next write")
                        }
                    }
                }
            }
        }
        if stopping.load(Ordering::Relaxed) {
            break;
        }
    }
}

struct After {
    next_id: u64,
    made_due: bool,
    shifts: HashMap<(String, DeliveryStatus), i64>,
}

fn commit(
    database: &DbFile,
    batch: &mut Vec<Op>,
    next_id: u64,
) -> Result<(Vec<Reply>, After), StoreError> {
    let txn = begin(database)?;
    let mut replies = Vec::with_capacity(batch.len());
    let after = {
        let mut tables = open_tables(&txn, next_id)?;
        for op in batch.drain(..) {
            replies.push(op(&mut tables)?);
        }
        tables.persist_counts()?;
        After {
            next_id: tables.next_id,
            made_due: tables.made_due,
            shifts: std::mem::take(&mut tables.shifts),
        }
    };
    txn.commit().map_err(db)?;
    Ok((replies, after))
}

impl Tables<'_> {
    fn get_delivery(
        &self,
        id: EventId,
        plugin: &str,
    ) -> Result<Option<Result<Delivery, StoreError>>, StoreError> {
        Ok(self
            .deliveries
            .get((id, plugin))
            .map_err(db)?
            .map(|v| serde_json::from_slice(v.value()).map_err(corrupt)))
    }

    fn put_delivery(&mut self, id: EventId, d: &Delivery) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(d).map_err(corrupt)?;
        self.deliveries
            .insert((id, d.plugin.as_str()), bytes.as_slice())
            .map_err(db)?;
        Ok(())
    }

    fn enqueue(&mut self, plugin: &str, at: u64, id: EventId) -> Result<(), StoreError> {
        self.due.insert((plugin, at, id), ()).map_err(db)?;
        self.made_due = true;
        Ok(())
    }

    /// A delivery of `plugin` moved from one state to another (`None`: it did not
    /// exist before / no longer exists). `done` is not counted: it only grows.
    fn shift(&mut self, plugin: &str, from: Option<DeliveryStatus>, to: Option<DeliveryStatus>) {
        if from == to {
            return;
        }
        for (state, delta) in [(from, -1), (to, 1)] {
            if let Some(state) = state.filter(|s| *s != DeliveryStatus::Done) {
                *self.shifts.entry((plugin.to_string(), state)).or_insert(0) += delta;
            }
        }
    }

    /// Write this batch's shifts into the `counts` table (part of the same commit).
    fn persist_counts(&mut self) -> Result<(), StoreError> {
        for ((plugin, state), delta) in &self.shifts {
            let key = (plugin.as_str(), state.as_str());
            let old = self.counts.get(key).map_err(db)?.map_or(0, |v| v.value());
            self.counts
                .insert(key, old.saturating_add_signed(*delta))
                .map_err(db)?;
        }
        Ok(())
    }

    /// A store written before the `counts` table existed: count every delivery once.
    fn rebuild_counts_if_missing(&mut self) -> Result<(), StoreError> {
        if !self.counts.is_empty().map_err(db)? || self.deliveries.is_empty().map_err(db)? {
            return Ok(());
        }
        let mut found: HashMap<(String, DeliveryStatus), u64> = HashMap::new();
        for entry in self.deliveries.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let Ok(d) = serde_json::from_slice::<Delivery>(v.value()) else {
                continue;
            };
            if d.status != DeliveryStatus::Done {
                *found
                    .entry((k.value().1.to_string(), d.status))
                    .or_insert(0) += 1;
            }
        }
        for ((plugin, state), n) in found {
            self.counts
                .insert((plugin.as_str(), state.as_str()), n)
                .map_err(db)?;
        }
        Ok(())
    }

    pub(super) fn ingest(&mut self, ev: NewEvent) -> Result<Ingested, StoreError> {
        let key = (ev.meta.source.as_str(), ev.meta.event_id.as_str());
        if let Some(id) = self.dedup.get(key).map_err(db)? {
            return Ok(Ingested::Duplicate(id.value()));
        }
        let id = self.next_id;
        self.next_id += 1;
        let record = encode_event(&ev.meta, &ev.body)?;
        self.events.insert(id, record.as_slice()).map_err(db)?;
        self.dedup.insert(key, id).map_err(db)?;
        let at = ev.meta.received_at_ms;
        self.dedup_age.insert((at, id), key).map_err(db)?;
        for plugin in &ev.plugins {
            let d = Delivery {
                plugin: plugin.clone(),
                status: DeliveryStatus::Pending,
                next_attempt_at_ms: Some(at),
                lease_expires_at_ms: None,
                leased_at_ms: None,
                attempts: Vec::new(),
                budget_start: 0,
                created_at_ms: at,
                updated_at_ms: at,
            };
            self.put_delivery(id, &d)?;
            self.enqueue(plugin, at, id)?;
            self.shift(plugin, None, Some(DeliveryStatus::Pending));
        }
        Ok(Ingested::Stored(id))
    }

    pub(super) fn lease(
        &mut self,
        id: EventId,
        plugin: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Result<Option<Delivery>, StoreError>, StoreError> {
        let mut d = match self.get_delivery(id, plugin)? {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Ok(Err(e)),
            None => return Ok(Ok(None)),
        };
        match d.status {
            DeliveryStatus::Pending | DeliveryStatus::Retrying => {}
            // A lease that ran out without an outcome: the attempt that held it is lost
            // (its process hung, or it could not record its outcome); record it as such
            // and take the delivery over.
            DeliveryStatus::Leased if d.lease_expires_at_ms.is_none_or(|at| at <= now_ms) => {
                let expired_at = d.lease_expires_at_ms.unwrap_or(now_ms);
                let started = d.leased_at_ms.unwrap_or(expired_at);
                d.attempts.push(Attempt {
                    number: d.attempts.len() as u32 + 1,
                    started_at_ms: started,
                    duration_ms: expired_at.saturating_sub(started),
                    outcome: AttemptOutcome::Retry,
                    error: Some(LEASE_EXPIRED.to_string()),
                    plugin_version: "unknown".into(),
                    logs: Vec::new(),
                    journal: None,
                });
            }
            _ => return Ok(Ok(None)),
        }
        self.shift(plugin, Some(d.status), Some(DeliveryStatus::Leased));
        d.status = DeliveryStatus::Leased;
        d.leased_at_ms = Some(now_ms);
        d.lease_expires_at_ms = Some(expires_at_ms);
        self.leases
            .insert((plugin, id), expires_at_ms)
            .map_err(db)?;
        self.put_delivery(id, &d)?;
        Ok(Ok(Some(d)))
    }

    /// Leased deliveries go back to pending (never attempted) or retrying.
    pub(super) fn release(
        &mut self,
        keys: &[(EventId, String)],
    ) -> Result<Result<(), StoreError>, StoreError> {
        for (id, plugin) in keys {
            self.leases.remove((plugin.as_str(), *id)).map_err(db)?;
            let Some(Ok(mut d)) = self.get_delivery(*id, plugin)? else {
                continue;
            };
            if d.status == DeliveryStatus::Leased {
                d.status = if d.attempts.is_empty() {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Retrying
                };
                d.lease_expires_at_ms = None;
                d.leased_at_ms = None;
                self.shift(plugin, Some(DeliveryStatus::Leased), Some(d.status));
                self.put_delivery(*id, &d)?;
                self.made_due = true;
            }
        }
        Ok(Ok(()))
    }

    pub(super) fn record_attempt(
        &mut self,
        id: EventId,
        plugin: &str,
        attempt: Attempt,
        next: Next,
    ) -> Result<Result<(), StoreError>, StoreError> {
        self.leases.remove((plugin, id)).map_err(db)?;
        let mut d = match self.get_delivery(id, plugin)? {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Ok(Err(e)),
            // The delivery is gone (purged): nothing to record.
            None => return Ok(Ok(())),
        };
        if let Some(at) = d.next_attempt_at_ms {
            self.due.remove((plugin, at, id)).map_err(db)?;
        }
        d.updated_at_ms = attempt.started_at_ms + attempt.duration_ms;
        d.lease_expires_at_ms = None;
        d.leased_at_ms = None;
        d.attempts.push(attempt);
        let before = d.status;
        match next {
            Next::Done | Next::Dead => {
                d.status = if next == Next::Done {
                    DeliveryStatus::Done
                } else {
                    DeliveryStatus::Dead
                };
                d.next_attempt_at_ms = None;
            }
            Next::RetryAt(at) => {
                d.status = DeliveryStatus::Retrying;
                d.next_attempt_at_ms = Some(at);
                self.enqueue(plugin, at, id)?;
            }
        }
        self.shift(plugin, Some(before), Some(d.status));
        self.put_delivery(id, &d)?;
        Ok(Ok(()))
    }

    pub(super) fn replay(
        &mut self,
        id: EventId,
        plugins: Option<&[String]>,
        add: &[String],
        only_dead: bool,
        keep_journal: bool,
        now_ms: u64,
    ) -> Result<Result<Vec<String>, StoreError>, StoreError> {
        if self.events.get(id).map_err(db)?.is_none() {
            return Ok(Ok(Vec::new()));
        }
        let mut existing = Vec::new();
        for entry in self.deliveries.range((id, "")..(id + 1, "")).map_err(db)? {
            let (_, v) = entry.map_err(db)?;
            match serde_json::from_slice::<Delivery>(v.value()) {
                Ok(d) => existing.push(d),
                Err(e) => return Ok(Err(corrupt(e))),
            }
        }
        let mut replayed = Vec::new();
        for mut d in existing {
            if plugins.is_some_and(|ps| !ps.contains(&d.plugin))
                || d.status == DeliveryStatus::Leased
                || (only_dead && d.status != DeliveryStatus::Dead)
            {
                continue;
            }
            if let Some(at) = d.next_attempt_at_ms {
                self.due.remove((d.plugin.as_str(), at, id)).map_err(db)?;
            }
            self.shift(&d.plugin, Some(d.status), Some(DeliveryStatus::Pending));
            d.status = DeliveryStatus::Pending;
            d.next_attempt_at_ms = Some(now_ms);
            d.budget_start = d.attempts.len() as u32;
            d.updated_at_ms = now_ms;
            if !keep_journal {
                self.drop_journal(id, &d.plugin)?;
            }
            self.put_delivery(id, &d)?;
            self.enqueue(&d.plugin, now_ms, id)?;
            replayed.push(d.plugin);
        }
        if !only_dead {
            for plugin in add {
                if self
                    .deliveries
                    .get((id, plugin.as_str()))
                    .map_err(db)?
                    .is_some()
                {
                    continue;
                }
                let d = Delivery {
                    plugin: plugin.clone(),
                    status: DeliveryStatus::Pending,
                    next_attempt_at_ms: Some(now_ms),
                    lease_expires_at_ms: None,
                    leased_at_ms: None,
                    attempts: Vec::new(),
                    budget_start: 0,
                    created_at_ms: now_ms,
                    updated_at_ms: now_ms,
                };
                self.put_delivery(id, &d)?;
                self.enqueue(plugin, now_ms, id)?;
                self.shift(plugin, None, Some(DeliveryStatus::Pending));
                replayed.push(plugin.clone());
            }
        }
        Ok(Ok(replayed))
    }

    pub(super) fn purge_dead(
        &mut self,
        keys: &[(EventId, String)],
    ) -> Result<Result<usize, StoreError>, StoreError> {
        let mut purged = 0;
        for (id, plugin) in keys {
            if let Some(Ok(d)) = self.get_delivery(*id, plugin)?
                && d.status == DeliveryStatus::Dead
            {
                self.deliveries.remove((*id, plugin.as_str())).map_err(db)?;
                self.drop_journal(*id, plugin)?;
                self.shift(plugin, Some(DeliveryStatus::Dead), None);
                purged += 1;
            }
        }
        Ok(Ok(purged))
    }

    /// Store one journal entry, replacing the one at its seq.
    pub(super) fn journal_record(
        &mut self,
        id: EventId,
        plugin: &str,
        entry: &JournalEntry,
    ) -> Result<Result<(), StoreError>, StoreError> {
        if self.deliveries.get((id, plugin)).map_err(db)?.is_none() {
            return Ok(Ok(()));
        }
        let bytes = match serde_json::to_vec(entry) {
            Ok(b) => b,
            Err(e) => return Ok(Err(corrupt(e))),
        };
        self.journal
            .insert((id, plugin, entry.seq), bytes.as_slice())
            .map_err(db)?;
        Ok(Ok(()))
    }

    /// Remove the journal of (`id`, `plugin`).
    fn drop_journal(&mut self, id: EventId, plugin: &str) -> Result<(), StoreError> {
        let mut seqs = Vec::new();
        for entry in self
            .journal
            .range((id, plugin, 0)..=(id, plugin, u32::MAX))
            .map_err(db)?
        {
            seqs.push(entry.map_err(db)?.0.value().2);
        }
        for seq in seqs {
            self.journal.remove((id, plugin, seq)).map_err(db)?;
        }
        Ok(())
    }

    pub(super) fn kv_set(
        &mut self,
        plugin: &str,
        key: &str,
        value: &[u8],
    ) -> Result<Result<(), StoreError>, StoreError> {
        self.kv_write(plugin, key, value)?;
        Ok(Ok(()))
    }

    pub(super) fn kv_delete(
        &mut self,
        plugin: &str,
        key: &str,
    ) -> Result<Result<bool, StoreError>, StoreError> {
        self.kv_versions.remove((plugin, key)).map_err(db)?;
        Ok(Ok(self.kv.remove((plugin, key)).map_err(db)?.is_some()))
    }

    /// The check and the write happen inside this one write transaction, and the
    /// writer thread applies writes one after another, so nothing can come between.
    pub(super) fn kv_compare_and_swap(
        &mut self,
        plugin: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Result<Swap, StoreError>, StoreError> {
        let current = self.kv_current(plugin, key)?;
        if current.as_ref().map(|c| c.version) != expected {
            return Ok(Ok(Swap::Conflict(current)));
        }
        Ok(Ok(Swap::Swapped(self.kv_write(plugin, key, &value)?)))
    }

    pub(super) fn kv_increment(
        &mut self,
        plugin: &str,
        key: &str,
        delta: i64,
    ) -> Result<Result<Increment, StoreError>, StoreError> {
        let current = match self.kv_current(plugin, key)? {
            None => 0,
            Some(c) => match std::str::from_utf8(&c.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(n) => n,
                None => return Ok(Ok(Increment::NotAnInteger)),
            },
        };
        let Some(sum) = current.checked_add(delta) else {
            return Ok(Ok(Increment::Overflow));
        };
        self.kv_write(plugin, key, sum.to_string().as_bytes())?;
        Ok(Ok(Increment::Done(sum)))
    }

    fn kv_current(&self, plugin: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        let Some(value) = self.kv.get((plugin, key)).map_err(db)? else {
            return Ok(None);
        };
        let value = value.value().to_vec();
        let version = self
            .kv_versions
            .get((plugin, key))
            .map_err(db)?
            .map_or(0, |v| v.value());
        Ok(Some(Versioned { value, version }))
    }

    /// Store a value under the next version of the store-wide kv sequence.
    fn kv_write(&mut self, plugin: &str, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        let version = self
            .kv_clock
            .get("kv")
            .map_err(db)?
            .map_or(0, |v| v.value())
            + 1;
        self.kv_clock.insert("kv", version).map_err(db)?;
        self.kv_versions
            .insert((plugin, key), version)
            .map_err(db)?;
        self.kv.insert((plugin, key), value).map_err(db)?;
        Ok(version)
    }

    /// Delete events whose every delivery is finished and older than its retention.
    /// Re-checked here, inside the write, since a replay may have come in between.
    pub(super) fn remove_expired(
        &mut self,
        ids: &[EventId],
        done_before_ms: u64,
        dead_before_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for &id in ids {
            let meta = match self.events.get(id).map_err(db)? {
                Some(v) => decode_event(v.value()).map(|(meta, _)| meta),
                None => continue,
            };
            let Ok(meta) = meta else {
                continue;
            };
            let mut plugins = Vec::new();
            let mut removable = true;
            for entry in self.deliveries.range((id, "")..(id + 1, "")).map_err(db)? {
                let (k, v) = entry.map_err(db)?;
                let ok = match serde_json::from_slice::<Delivery>(v.value()) {
                    Ok(d) => {
                        let ok = retention::expired(
                            &d,
                            meta.received_at_ms,
                            done_before_ms,
                            dead_before_ms,
                        );
                        plugins.push((k.value().1.to_string(), d.status));
                        ok
                    }
                    Err(_) => false,
                };
                removable &= ok;
            }
            if !removable || (plugins.is_empty() && meta.received_at_ms >= done_before_ms) {
                continue;
            }
            for (p, status) in &plugins {
                self.deliveries.remove((id, p.as_str())).map_err(db)?;
                self.drop_journal(id, p)?;
                self.shift(p, Some(*status), None);
            }
            self.events.remove(id).map_err(db)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Forget dedup keys received before `before_ms`, oldest first, at most `limit`.
    pub(super) fn expire_dedup(
        &mut self,
        before_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for entry in self
            .dedup_age
            .range((0u64, 0u64)..(before_ms, 0u64))
            .map_err(db)?
        {
            let (k, v) = entry.map_err(db)?;
            let (source, event_id) = v.value();
            old.push((k.value(), source.to_string(), event_id.to_string()));
            if old.len() >= limit {
                break;
            }
        }
        for (age_key, source, event_id) in &old {
            self.dedup_age.remove(*age_key).map_err(db)?;
            self.dedup
                .remove((source.as_str(), event_id.as_str()))
                .map_err(db)?;
        }
        Ok(old.len())
    }
}
