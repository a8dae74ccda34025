//! Ordering lanes: for each plugin whose manifest declares `[ordering] key`, its queued
//! deliveries grouped by key, each lane in the order the events were stored (host event
//! id). Only the first delivery of a lane may run, and only while no other delivery of
//! its key is running; a retrying delivery stays first and holds back the rest of its
//! lane until it is done or dead-lettered. Deliveries without a key are not ordered.
//!
//! The dispatcher fills and advances the lanes; the admin API reads them. They live in
//! memory and are rebuilt from the store's queue when the host starts or the ordering
//! key of a plugin changes, so they hold nothing the store does not.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::manifest::OrderingKey;
use crate::store::EventId;

/// Every ordered plugin's lanes, by plugin name.
#[derive(Debug, Default)]
pub struct Lanes {
    plugins: Mutex<HashMap<String, PluginLanes>>,
}

#[derive(Debug)]
struct PluginLanes {
    /// The key these lanes were built for; a different one starts over.
    spec: OrderingKey,
    /// Every queued delivery the lanes know, with its key (None: not ordered).
    key_of: HashMap<EventId, Option<Arc<str>>>,
    lanes: HashMap<Arc<str>, BTreeSet<EventId>>,
    /// Keys with a delivery running now.
    running: HashSet<Arc<str>>,
}

/// One lane as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LaneView {
    pub key: String,
    /// The delivery that runs (or retries) first; the others wait behind it.
    pub head: String,
    pub running: bool,
    /// Deliveries behind the head.
    pub waiting: usize,
}

impl Lanes {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, PluginLanes>) -> T) -> T {
        f(&mut self.plugins.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether `plugin`'s lanes must be (re)built from the store's queue: they do not
    /// exist yet, or were built for another key (they are dropped then).
    pub fn needs_scan(&self, plugin: &str, spec: &OrderingKey) -> bool {
        self.with(|m| match m.get(plugin) {
            Some(l) if l.spec == *spec => false,
            _ => {
                m.insert(
                    plugin.to_string(),
                    PluginLanes {
                        spec: spec.clone(),
                        key_of: HashMap::new(),
                        lanes: HashMap::new(),
                        running: HashSet::new(),
                    },
                );
                true
            }
        })
    }

    /// Forget a plugin's lanes (it was unloaded or no longer orders).
    pub fn forget(&self, plugin: &str) {
        self.with(|m| m.remove(plugin));
    }

    /// Whether the lanes know this queued delivery.
    pub fn knows(&self, plugin: &str, id: EventId) -> bool {
        self.with(|m| m.get(plugin).is_some_and(|l| l.key_of.contains_key(&id)))
    }

    /// How many queued deliveries the lanes hold.
    pub fn len(&self, plugin: &str) -> usize {
        self.with(|m| m.get(plugin).map_or(0, |l| l.key_of.len()))
    }

    /// Add a queued delivery with its key.
    pub fn add(&self, plugin: &str, id: EventId, key: Option<String>) {
        self.with(|m| {
            let Some(l) = m.get_mut(plugin) else { return };
            let key: Option<Arc<str>> = key.map(Arc::from);
            if let Some(k) = &key {
                l.lanes.entry(k.clone()).or_default().insert(id);
            }
            l.key_of.insert(id, key);
        });
    }

    /// Whether this delivery may start now: it has no key, or it is first in its lane
    /// and nothing of its key is running.
    pub fn may_start(&self, plugin: &str, id: EventId) -> bool {
        self.with(|m| {
            let Some(l) = m.get(plugin) else { return true };
            match l.key_of.get(&id) {
                Some(Some(k)) => {
                    !l.running.contains(k) && l.lanes.get(k).and_then(|s| s.first()) == Some(&id)
                }
                _ => true,
            }
        })
    }

    /// The delivery started: its key is running.
    pub fn started(&self, plugin: &str, id: EventId) {
        self.with(|m| {
            if let Some(l) = m.get_mut(plugin)
                && let Some(Some(k)) = l.key_of.get(&id)
            {
                l.running.insert(k.clone());
            }
        });
    }

    /// The delivery's attempt ended. When it `settled` (done, dead, or gone from the
    /// store) it leaves its lane and the next one may start; otherwise (a retry) it
    /// stays first.
    pub fn finished(&self, plugin: &str, id: EventId, settled: bool) {
        self.with(|m| {
            let Some(l) = m.get_mut(plugin) else { return };
            let Some(key) = l.key_of.get(&id).cloned() else {
                return;
            };
            if let Some(k) = &key {
                l.running.remove(k);
            }
            if !settled {
                return;
            }
            l.key_of.remove(&id);
            if let Some(k) = key
                && let Some(lane) = l.lanes.get_mut(&k)
            {
                lane.remove(&id);
                if lane.is_empty() {
                    l.lanes.remove(&k);
                }
            }
        });
    }

    /// The key of a delivery and the delivery it waits behind, if it waits.
    pub fn held_by(&self, plugin: &str, id: EventId) -> Option<(String, EventId)> {
        self.with(|m| {
            let l = m.get(plugin)?;
            let k = l.key_of.get(&id)?.as_ref()?;
            let head = *l.lanes.get(k)?.first()?;
            (head != id).then(|| (k.to_string(), head))
        })
    }

    /// The lanes of `plugin` with something in them, longest first (at most `limit`).
    pub fn view(&self, plugin: &str, limit: usize) -> Vec<LaneView> {
        self.with(|m| {
            let Some(l) = m.get(plugin) else {
                return Vec::new();
            };
            let mut out: Vec<LaneView> = l
                .lanes
                .iter()
                .filter_map(|(k, ids)| {
                    Some(LaneView {
                        key: k.to_string(),
                        head: ids.first()?.to_string(),
                        running: l.running.contains(k),
                        waiting: ids.len() - 1,
                    })
                })
                .collect();
            out.sort_by(|a, b| b.waiting.cmp(&a.waiting).then(a.key.cmp(&b.key)));
            out.truncate(limit);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_runs_one_at_a_time_in_id_order_and_a_retry_holds_it() {
        let lanes = Lanes::default();
        let spec = OrderingKey::Pointer("/k".into());
        assert!(lanes.needs_scan("p", &spec));
        assert!(!lanes.needs_scan("p", &spec));
        for (id, key) in [(3, "a"), (1, "a"), (2, "b"), (5, "a")] {
            lanes.add("p", id, Some(key.into()));
        }
        lanes.add("p", 4, None);
        assert!(lanes.may_start("p", 1) && !lanes.may_start("p", 3));
        assert!(lanes.may_start("p", 2) && lanes.may_start("p", 4));
        lanes.started("p", 1);
        assert!(!lanes.may_start("p", 1), "running");
        assert_eq!(lanes.held_by("p", 3), Some(("a".into(), 1)));
        // A retry keeps its place; done moves the lane on.
        lanes.finished("p", 1, false);
        assert!(lanes.may_start("p", 1) && !lanes.may_start("p", 3));
        let view = lanes.view("p", 10);
        assert_eq!(
            view[0],
            LaneView {
                key: "a".into(),
                head: "1".into(),
                running: false,
                waiting: 2
            }
        );
        lanes.started("p", 1);
        lanes.finished("p", 1, true);
        assert!(lanes.may_start("p", 3) && !lanes.may_start("p", 5));
        assert_eq!(lanes.len("p"), 4);
        // Another key spec starts over.
        assert!(lanes.needs_scan("p", &OrderingKey::Header("x".into())));
        assert_eq!(lanes.len("p"), 0);
    }
}
