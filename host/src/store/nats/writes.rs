//! The NATS backend's writes: ingest with cross-host dedup, compare-and-set changes
//! to deliveries (lease, record, release, replay), purge and retention. Each returns
//! only after JetStream acknowledged it at the configured replication, then applies it
//! to this host's index at once (other hosts see it through their watches).

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::UpdateErrorKind;
use bytes::Bytes;
use futures_util::StreamExt;

use super::index::IndexedEvent;
use super::*;

/// Compare-and-set rounds before a change to one delivery gives up: each lost round
/// means another host changed it in between, and the next round sees that change.
const CAS_ROUNDS: usize = 16;
/// Publish attempts for one event: a retry carries the same `Nats-Msg-Id`, so one
/// that did land the first time is recognised, not stored twice.
const PUBLISH_ATTEMPTS: usize = 4;
/// Retention removals in flight at once (each is a few round trips to the cluster).
const REMOVALS_IN_FLIGHT: usize = 32;

impl NatsStore {
    /// Store an event unless (source, event id) is known: the dedup bucket answers for
    /// the whole dedup window, `Nats-Msg-Id` for copies that race each other.
    pub(super) async fn ingest_event(&self, ev: NewEvent) -> Result<Ingested, StoreError> {
        let key = dedup_key(&ev.meta.source, &ev.meta.event_id);
        if let Some(id) = self.dedup_lookup(&key).await? {
            return Ok(Ingested::Duplicate(id));
        }
        let payload = Bytes::from(encode_event(&ev.meta, &ev.plugins, &ev.body)?);
        let ack = self.publish_event(&key, payload).await?;
        let id = ack.sequence;
        if ack.duplicate {
            self.dedup_remember(&key, id).await?;
            return Ok(Ingested::Duplicate(id));
        }
        match self.dedup.update(&key, id.to_string().into(), 0).await {
            Ok(_) => {}
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                // Another host stored the same event after the `Nats-Msg-Id` window:
                // its copy stands, ours goes.
                if let Some(first) = self.dedup_lookup(&key).await?
                    && first != id
                {
                    self.remove_event(id, &[]).await?;
                    return Ok(Ingested::Duplicate(first));
                }
            }
            Err(e) => return Err(engine(e)),
        }
        let made_due = self.lock().add_event(
            id,
            IndexedEvent {
                meta: ev.meta,
                plugins: ev.plugins,
            },
            key,
        );
        if made_due {
            self.due_changed.notify_one();
        }
        Ok(Ingested::Stored(id))
    }

    async fn dedup_lookup(&self, key: &str) -> Result<Option<EventId>, StoreError> {
        match self.dedup.get(key).await.map_err(engine)? {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("dedup key {key} is unreadable"))),
            None => Ok(None),
        }
    }

    /// Make sure the dedup bucket knows `key` (a copy recognised by `Nats-Msg-Id`
    /// whose first ingest died before writing it).
    async fn dedup_remember(&self, key: &str, id: EventId) -> Result<(), StoreError> {
        match self.dedup.update(key, id.to_string().into(), 0).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn publish_event(
        &self,
        key: &str,
        payload: Bytes,
    ) -> Result<async_nats::jetstream::publish::PublishAck, StoreError> {
        let mut last_error = None;
        for attempt in 0..PUBLISH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(key);
            let sent = self
                .js
                .send_publish(self.names.events_subject.clone(), publish)
                .await;
            let result = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => return Ok(ack),
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::TimedOut
                            | PublishErrorKind::BrokenPipe
                            | PublishErrorKind::StreamNotFound
                            | PublishErrorKind::Other
                    ) =>
                {
                    tracing::debug!(error = %e, attempt, "publishing an event failed; retrying");
                    last_error = Some(e);
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Err(last_error.map_or(StoreError::NotCommitted, engine))
    }

    /// Read a delivery's current state from the bucket into the index (and the event
    /// from the stream, if this host has not seen it yet).
    async fn refresh(&self, id: EventId, plugin: &str) -> Result<(), StoreError> {
        let key = delivery_key(id, plugin)?;
        if self.lock().event(id).is_none()
            && let Ok(msg) = self.events.get_raw_message(id).await
            && msg.subject.as_str() == self.names.events_subject
            && let Ok((header, _)) = decode_event(&msg.payload)
        {
            let dkey = dedup_key(&header.meta.source, &header.meta.event_id);
            self.lock().add_event(
                id,
                IndexedEvent {
                    meta: header.meta,
                    plugins: header.plugins,
                },
                dkey,
            );
        }
        if let Some(entry) = self.deliveries.entry(key).await.map_err(engine)? {
            let (delivery, holder) = if entry.operation == kv::Operation::Put {
                let r: DeliveryRecord = serde_json::from_slice(&entry.value).map_err(corrupt)?;
                (Some(r.delivery), r.holder)
            } else {
                (None, None)
            };
            self.lock()
                .set_delivery(id, plugin, entry.revision, delivery, holder);
        }
        Ok(())
    }

    /// Apply `f` to a delivery's current state and write the result, if any, with a
    /// compare-and-set; `holder` is the host leasing it (None: nobody). Returns the new
    /// state, or None when `f` declined or the delivery does not exist.
    pub(super) async fn change(
        &self,
        id: EventId,
        plugin: &str,
        holder: Option<String>,
        f: impl Fn(Delivery) -> Option<Delivery> + Send + Sync,
    ) -> Result<Option<Delivery>, StoreError> {
        let key = delivery_key(id, plugin)?;
        let mut refreshed = false;
        for _ in 0..CAS_ROUNDS {
            let current = self
                .lock()
                .slot(id, plugin)
                .map(|s| (s.delivery.clone(), s.revision));
            let (current, revision) = match current {
                Some(c) => c,
                None if !refreshed => {
                    refreshed = true;
                    self.refresh(id, plugin).await?;
                    continue;
                }
                None => return Ok(None),
            };
            let Some(current) = current else {
                return Ok(None);
            };
            let Some(next) = f(current) else {
                return Ok(None);
            };
            let record = serde_json::to_vec(&DeliveryRecord {
                holder: holder.clone(),
                delivery: next.clone(),
            })
            .map_err(corrupt)?;
            match self.deliveries.update(&key, record.into(), revision).await {
                Ok(rev) => {
                    let made_due = self.lock().set_delivery(
                        id,
                        plugin,
                        rev,
                        Some(next.clone()),
                        holder.clone(),
                    );
                    if made_due {
                        self.due_changed.notify_one();
                    }
                    return Ok(Some(next));
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    refreshed = true;
                    self.refresh(id, plugin).await?;
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Err(StoreError::Engine(
            format!("delivery {id}/{plugin} kept changing under {CAS_ROUNDS} writes; try again")
                .into(),
        ))
    }

    pub(super) async fn release_keys(
        &self,
        keys: Vec<(EventId, String)>,
    ) -> Result<(), StoreError> {
        for (id, plugin) in keys {
            self.change(id, &plugin, None, transitions::release).await?;
        }
        Ok(())
    }

    pub(super) async fn replay_event(
        &self,
        id: EventId,
        plugins: Option<Vec<String>>,
        add: Vec<String>,
        only_dead: bool,
        keep_journal: bool,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        if self.lock().event(id).is_none() && self.event(id).await?.is_none() {
            return Ok(Vec::new());
        }
        let existing: Vec<String> = {
            // Make sure the index knows the event (another host may have stored it).
            if self.lock().event(id).is_none()
                && let Some(p) = plugins.as_ref().and_then(|p| p.first())
            {
                self.refresh(id, p).await?;
            }
            self.lock()
                .slots_of(id)
                .into_iter()
                .filter(|(_, s)| s.delivery.is_some())
                .map(|(p, _)| p)
                .collect()
        };
        let mut replayed = Vec::new();
        for plugin in &existing {
            if plugins.as_ref().is_some_and(|ps| !ps.contains(plugin)) {
                continue;
            }
            // The journal goes first (not in one write with the replay, as on redb): a
            // delivery that is not leased has no attempt writing to it, and once the
            // replay made it due, a new attempt may start a new journal.
            let replayable = self
                .lock()
                .slot(id, plugin)
                .and_then(|s| s.delivery.clone())
                .and_then(|d| transitions::replay(d, only_dead, now_ms))
                .is_some();
            if replayable && !keep_journal {
                self.drop_journal(id, plugin).await?;
            }
            if self
                .change(id, plugin, None, |d| {
                    transitions::replay(d, only_dead, now_ms)
                })
                .await?
                .is_some()
            {
                replayed.push(plugin.clone());
            }
        }
        if !only_dead {
            for plugin in add {
                if existing.contains(&plugin) {
                    continue;
                }
                if self.create(id, &plugin, now_ms).await? {
                    replayed.push(plugin);
                }
            }
        }
        Ok(replayed)
    }

    /// A new pending delivery for a plugin the event has none for; false if one exists.
    async fn create(&self, id: EventId, plugin: &str, now_ms: u64) -> Result<bool, StoreError> {
        let key = delivery_key(id, plugin)?;
        let d = transitions::pending(plugin, now_ms);
        let revision = self.lock().slot(id, plugin).map_or(0, |s| s.revision);
        let record = serde_json::to_vec(&DeliveryRecord {
            holder: None,
            delivery: d.clone(),
        })
        .map_err(corrupt)?;
        match self.deliveries.update(&key, record.into(), revision).await {
            Ok(rev) => {
                self.lock().set_delivery(id, plugin, rev, Some(d), None);
                self.due_changed.notify_one();
                Ok(true)
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                self.refresh(id, plugin).await?;
                Ok(false)
            }
            Err(e) => Err(engine(e)),
        }
    }

    pub(super) async fn purge_dead_keys(
        &self,
        keys: Vec<(EventId, String)>,
    ) -> Result<usize, StoreError> {
        let mut purged = 0;
        for (id, plugin) in keys {
            let key = delivery_key(id, &plugin)?;
            let Some((Some(d), revision)) = self
                .lock()
                .slot(id, &plugin)
                .map(|s| (s.delivery.clone(), s.revision))
            else {
                continue;
            };
            if d.status != DeliveryStatus::Dead || revision == 0 {
                continue;
            }
            match self
                .deliveries
                .purge_expect_revision(&key, Some(revision))
                .await
            {
                Ok(()) => {
                    self.lock().clear_delivery(id, &plugin);
                    self.drop_journal(id, &plugin).await?;
                    purged += 1;
                }
                // Changed by another host since (replayed, say): not a dead letter now.
                Err(e) if e.to_string().contains("wrong last") => {
                    self.refresh(id, &plugin).await?;
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(purged)
    }

    /// Remove an event: its deliveries' records (only at the revisions given, so a
    /// replay in between keeps it), a removal marker for the other hosts, the message.
    pub(super) async fn remove_event(
        &self,
        id: EventId,
        slots: &[(String, u64)],
    ) -> Result<bool, StoreError> {
        for (plugin, revision) in slots {
            if *revision == 0 {
                continue;
            }
            let key = delivery_key(id, plugin)?;
            if let Err(e) = self
                .deliveries
                .purge_expect_revision(&key, Some(*revision))
                .await
            {
                if e.to_string().contains("wrong last") {
                    self.refresh(id, plugin).await?;
                    return Ok(false);
                }
                return Err(engine(e));
            }
        }
        for (plugin, _) in slots {
            self.drop_journal(id, plugin).await?;
        }
        self.gone
            .put(id.to_string(), Bytes::new())
            .await
            .map_err(engine)?;
        match self.events.delete_message(id).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("no message found") => {}
            Err(e) => return Err(engine(e)),
        }
        self.lock().forget_event(id);
        Ok(true)
    }

    /// One retention pass (see [`Backend::expire`]).
    pub(super) async fn expire_pass(&self, cut: Retention) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        let old = self.lock().old_dedup_keys(cut.dedup_before_ms);
        let mut purges = futures_util::stream::iter(old.into_iter().map(|(age, key)| async move {
            self.dedup.purge(&key).await.map_err(engine)?;
            Ok::<_, StoreError>(age)
        }))
        .buffer_unordered(REMOVALS_IN_FLIGHT);
        while let Some(age) = purges.next().await {
            self.lock().forget_dedup(age?);
            report.dedup_keys_removed += 1;
        }
        let cutoff = cut.done_before_ms.max(cut.dead_before_ms);
        let candidates: Vec<(EventId, Vec<(String, u64)>)> = {
            let index = self.lock();
            let mut out = Vec::new();
            for (&id, ev) in index.events_oldest_first() {
                if ev.meta.received_at_ms >= cutoff {
                    break;
                }
                let slots = index.slots_of(id);
                let live: Vec<_> = slots
                    .iter()
                    .filter_map(|(p, s)| s.delivery.as_ref().map(|d| (p, s.revision, d)))
                    .collect();
                let removable = if live.is_empty() {
                    ev.meta.received_at_ms < cut.done_before_ms
                } else {
                    live.iter().all(|(_, _, d)| match d.status {
                        DeliveryStatus::Done => d.updated_at_ms < cut.done_before_ms,
                        DeliveryStatus::Dead => d.updated_at_ms < cut.dead_before_ms,
                        _ => false,
                    })
                };
                if removable {
                    out.push((
                        id,
                        live.iter().map(|(p, r, _)| ((*p).clone(), *r)).collect(),
                    ));
                }
            }
            out
        };
        let mut removals = futures_util::stream::iter(
            candidates
                .into_iter()
                .map(|(id, slots)| async move { self.remove_event(id, &slots).await }),
        )
        .buffer_unordered(REMOVALS_IN_FLIGHT);
        while let Some(removed) = removals.next().await {
            if removed? {
                report.events_removed += 1;
            }
        }
        Ok(report)
    }

    /// A delivery's journal and the revision it was read at (0: none written; a delete
    /// marker's revision: deleted).
    pub(super) async fn journal_entries(
        &self,
        id: EventId,
        plugin: &str,
    ) -> Result<(Vec<JournalEntry>, u64), StoreError> {
        let key = delivery_key(id, plugin)?;
        match self.journal.entry(key).await.map_err(engine)? {
            Some(e) if e.operation == kv::Operation::Put => Ok((
                serde_json::from_slice(&e.value).map_err(corrupt)?,
                e.revision,
            )),
            Some(e) => Ok((Vec::new(), e.revision)),
            None => Ok((Vec::new(), 0)),
        }
    }

    /// Record `entry` at its position (replacing one there), compare-and-set.
    pub(super) async fn record_journal(
        &self,
        id: EventId,
        plugin: &str,
        entry: JournalEntry,
    ) -> Result<(), StoreError> {
        let exists = |s: &Self| {
            s.lock()
                .slot(id, plugin)
                .is_some_and(|slot| slot.delivery.is_some())
        };
        if !exists(self) {
            self.refresh(id, plugin).await?;
            if !exists(self) {
                return Ok(());
            }
        }
        let key = delivery_key(id, plugin)?;
        for _ in 0..CAS_ROUNDS {
            let (mut entries, revision) = self.journal_entries(id, plugin).await?;
            entries.retain(|e| e.seq != entry.seq);
            entries.push(entry.clone());
            entries.sort_by_key(|e| e.seq);
            let value = serde_json::to_vec(&entries).map_err(corrupt)?;
            match self.journal.update(&key, value.into(), revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(engine(e)),
            }
        }
        Err(StoreError::Engine(
            format!("the journal of {id}/{plugin} kept changing; try again").into(),
        ))
    }

    pub(super) async fn drop_journal(&self, id: EventId, plugin: &str) -> Result<(), StoreError> {
        let key = delivery_key(id, plugin)?;
        if self
            .journal
            .entry(key.clone())
            .await
            .map_err(engine)?
            .is_some()
        {
            self.journal.purge(key).await.map_err(engine)?;
        }
        Ok(())
    }
}
