//! Each host's in-memory view of the cluster's events and deliveries, fed by watching
//! the events stream and the deliveries bucket (and by this host's own writes as they
//! are acknowledged). It answers `due`, counts and the operator's reads without a round
//! trip; every change to a delivery is still a compare-and-set on the bucket, so a
//! view that lags behind only costs a retried write, never a double lease.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::super::model::*;

/// An event as the index keeps it: its metadata and the plugins it was stored for.
#[derive(Debug, Clone)]
pub(super) struct IndexedEvent {
    pub meta: EventMeta,
    pub plugins: Vec<String>,
}

/// One delivery's last known state and the bucket revision it was read at.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// None once the delivery was removed (purged, or its event expired).
    pub delivery: Option<Delivery>,
    /// The bucket revision this state was written at; 0 while the delivery has never
    /// been written (pending since ingest: it exists because its event does).
    pub revision: u64,
    /// The host holding its lease, if leased.
    pub holder: Option<String>,
}

/// The in-memory view of one deployment's events and deliveries.
#[derive(Debug, Default)]
pub(super) struct Index {
    events: BTreeMap<EventId, IndexedEvent>,
    slots: BTreeMap<(EventId, String), Slot>,
    /// Per plugin: (due at, event id) of every queued delivery, leased ones included.
    due: HashMap<String, BTreeSet<(u64, EventId)>>,
    counts: BTreeMap<String, Counts>,
    /// (received at, id) → dedup key, for expiring dedup keys by age.
    dedup_age: BTreeMap<(u64, EventId), String>,
    /// Events removed by retention (or as a stored duplicate): never added again.
    gone: HashSet<EventId>,
}

impl Index {
    /// Add a stored event and a pending delivery for each of its plugins that has no
    /// state yet. Returns whether anything became due.
    pub fn add_event(&mut self, id: EventId, event: IndexedEvent, dedup_key: String) -> bool {
        if self.events.contains_key(&id) || self.gone.contains(&id) {
            return false;
        }
        let at = event.meta.received_at_ms;
        self.dedup_age.insert((at, id), dedup_key);
        let mut made_due = false;
        for plugin in &event.plugins {
            let key = (id, plugin.clone());
            if self.slots.contains_key(&key) {
                continue;
            }
            let d = super::transitions::pending(plugin, at);
            self.enter(id, &d);
            self.slots.insert(
                key,
                Slot {
                    delivery: Some(d),
                    revision: 0,
                    holder: None,
                },
            );
            made_due = true;
        }
        self.events.insert(id, event);
        made_due
    }

    /// Apply a delivery's state as written at `revision` (None: removed). Older
    /// revisions than the one held are ignored. Returns whether it became due.
    pub fn set_delivery(
        &mut self,
        id: EventId,
        plugin: &str,
        revision: u64,
        delivery: Option<Delivery>,
        holder: Option<String>,
    ) -> bool {
        let key = (id, plugin.to_string());
        if let Some(old) = self.slots.get(&key) {
            if old.revision >= revision && old.revision != 0 {
                return false;
            }
            if let Some(d) = old.delivery.clone() {
                self.leave(id, &d);
            }
        }
        let made_due = delivery.as_ref().is_some_and(|d| {
            matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying)
        });
        if let Some(d) = &delivery {
            self.enter(id, d);
        }
        self.slots.insert(
            key,
            Slot {
                delivery,
                revision,
                holder,
            },
        );
        made_due
    }

    /// A delivery this host just removed; the watch brings the removal's revision.
    pub fn clear_delivery(&mut self, id: EventId, plugin: &str) {
        let key = (id, plugin.to_string());
        let Some(d) = self.slots.get_mut(&key).and_then(|s| s.delivery.take()) else {
            return;
        };
        self.leave(id, &d);
    }

    /// Forget an event and its deliveries (expired by retention). Its dedup key stays
    /// until the dedup window passes.
    pub fn remove_event(&mut self, id: EventId) -> bool {
        let keys: Vec<_> = self
            .slots
            .range((id, String::new())..(id + 1, String::new()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(slot) = self.slots.remove(&key)
                && let Some(d) = slot.delivery
            {
                self.leave(id, &d);
            }
        }
        self.events.remove(&id).is_some()
    }

    /// An event removed by any host: forget it, and never add it again.
    pub fn forget_event(&mut self, id: EventId) {
        self.gone.insert(id);
        self.remove_event(id);
    }

    fn enter(&mut self, id: EventId, d: &Delivery) {
        self.counts
            .entry(d.plugin.clone())
            .or_default()
            .add(d.status, 1);
        if d.status.is_queued() {
            let at = d.next_attempt_at_ms.unwrap_or(d.created_at_ms);
            self.due
                .entry(d.plugin.clone())
                .or_default()
                .insert((at, id));
        }
    }

    fn leave(&mut self, id: EventId, d: &Delivery) {
        if let Some(c) = self.counts.get_mut(&d.plugin) {
            c.add(d.status, -1);
        }
        if d.status.is_queued() {
            let at = d.next_attempt_at_ms.unwrap_or(d.created_at_ms);
            if let Some(q) = self.due.get_mut(&d.plugin) {
                q.remove(&(at, id));
            }
        }
    }

    pub fn event(&self, id: EventId) -> Option<&IndexedEvent> {
        self.events.get(&id)
    }

    pub fn slot(&self, id: EventId, plugin: &str) -> Option<&Slot> {
        self.slots.get(&(id, plugin.to_string()))
    }

    /// Every delivery of an event that still exists, ordered by plugin name.
    pub fn deliveries(&self, id: EventId) -> Vec<Delivery> {
        self.slots
            .range((id, String::new())..(id + 1, String::new()))
            .filter_map(|(_, s)| s.delivery.clone())
            .collect()
    }

    /// Every delivery slot of an event (removed ones included), by plugin name.
    pub fn slots_of(&self, id: EventId) -> Vec<(String, Slot)> {
        self.slots
            .range((id, String::new())..(id + 1, String::new()))
            .map(|((_, p), s)| (p.clone(), s.clone()))
            .collect()
    }

    /// See [`Backend::due`](super::super::Backend::due).
    pub fn due(&self, plugin: &str, now_ms: u64, limit: usize) -> DueBatch {
        let mut out = Vec::new();
        let mut lease_ends: Option<u64> = None;
        let earliest = |a: Option<u64>, b: u64| Some(a.map_or(b, |a| a.min(b)));
        let Some(queue) = self.due.get(plugin) else {
            return DueBatch::default();
        };
        for &(at, id) in queue {
            if at > now_ms || out.len() >= limit {
                return DueBatch {
                    due: out,
                    later: earliest(lease_ends, at),
                };
            }
            let lease = self
                .slots
                .get(&(id, plugin.to_string()))
                .and_then(|s| s.delivery.as_ref())
                .filter(|d| d.status == DeliveryStatus::Leased)
                .and_then(|d| d.lease_expires_at_ms);
            match lease {
                Some(until) if until > now_ms => lease_ends = earliest(lease_ends, until),
                _ => out.push((at, id)),
            }
        }
        DueBatch {
            due: out,
            later: lease_ends,
        }
    }

    pub fn oldest_due(&self, plugin: &str) -> Option<u64> {
        self.due
            .get(plugin)
            .and_then(|q| q.first())
            .map(|&(at, _)| at)
    }

    pub fn counts(&self) -> Vec<(String, Counts)> {
        self.counts
            .iter()
            .filter(|(_, c)| **c != Counts::default())
            .map(|(p, c)| (p.clone(), *c))
            .collect()
    }

    pub fn queued(&self, plugin: &str) -> u64 {
        self.counts.get(plugin).map_or(0, Counts::queued)
    }

    pub fn event_count(&self) -> u64 {
        self.events.len() as u64
    }

    pub fn dedup_count(&self) -> u64 {
        self.dedup_age.len() as u64
    }

    /// Dedup keys received before `before_ms`, oldest first.
    pub fn old_dedup_keys(&self, before_ms: u64) -> Vec<((u64, EventId), String)> {
        self.dedup_age
            .range(..(before_ms, 0))
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    pub fn forget_dedup(&mut self, key: (u64, EventId)) {
        self.dedup_age.remove(&key);
    }

    /// Events newest first, strictly before `before`.
    pub fn events_before(
        &self,
        before: Option<EventId>,
    ) -> impl Iterator<Item = (&EventId, &IndexedEvent)> {
        self.events.range(..before.unwrap_or(u64::MAX)).rev()
    }

    /// Events oldest first (for retention).
    pub fn events_oldest_first(&self) -> impl Iterator<Item = (&EventId, &IndexedEvent)> {
        self.events.iter()
    }

    /// Deliveries leased by `host` (its leases from before a restart).
    pub fn leased_by(&self, host: &str) -> Vec<(EventId, String)> {
        self.slots
            .iter()
            .filter(|(_, s)| {
                s.holder.as_deref() == Some(host)
                    && s.delivery
                        .as_ref()
                        .is_some_and(|d| d.status == DeliveryStatus::Leased)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}
