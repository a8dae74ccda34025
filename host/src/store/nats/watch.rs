//! Keeping each host's index current: ordered consumers on the events stream and
//! watches on the deliveries, removal-marker and plugin-kv buckets. Each replays what is
//! stored when the host opens (open waits until all four caught up), then follows every
//! host's writes. A watch that breaks (a server restarts) resumes after the last
//! sequence it applied.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use tokio::sync::{Notify, oneshot};

use super::index::{Index, IndexedEvent};
use super::*;

/// Plugin → key → (revision, whether it exists): the plugin kv keys, for listing.
pub(super) type KvKeys = Arc<Mutex<BTreeMap<String, BTreeMap<String, (u64, bool)>>>>;

/// Record that a plugin kv key exists (or no longer does) as of `revision`; None: as
/// of a write this host made whose revision it was not told (a purge).
pub(super) fn note_kv_key(
    keys: &KvKeys,
    plugin: &str,
    key: &str,
    revision: Option<u64>,
    exists: bool,
) {
    let mut all = keys.lock().unwrap_or_else(|p| p.into_inner());
    let slot = all
        .entry(plugin.to_string())
        .or_default()
        .entry(key.to_string())
        .or_insert((0, false));
    match revision {
        Some(rev) if rev > slot.0 => *slot = (rev, exists),
        Some(_) => {}
        None => slot.1 = exists,
    }
}

/// What one watch applies: a bucket entry to the index.
#[derive(Clone, Copy)]
enum Bucket {
    Deliveries,
    Gone,
    Kv,
}

impl NatsStore {
    pub(super) async fn start_watchers(&self) -> Result<(), StoreError> {
        let mut ready = Vec::new();
        let mut tasks = Vec::new();
        {
            let (tx, rx) = oneshot::channel();
            ready.push(rx);
            let empty = self.events.get_info().await.map_err(engine)?.state.messages == 0;
            let tx = if empty {
                let _ = tx.send(());
                None
            } else {
                Some(tx)
            };
            tasks.push(tokio::spawn(follow_events(
                self.events.clone(),
                self.index.clone(),
                self.due_changed.clone(),
                tx,
            )));
        }
        for (store, bucket) in [
            (&self.gone, Bucket::Gone),
            (&self.deliveries, Bucket::Deliveries),
            (&self.kv, Bucket::Kv),
        ] {
            let (tx, rx) = oneshot::channel();
            ready.push(rx);
            let empty = store
                .stream
                .get_info()
                .await
                .map_err(engine)?
                .state
                .messages
                == 0;
            let tx = if empty {
                let _ = tx.send(());
                None
            } else {
                Some(tx)
            };
            tasks.push(tokio::spawn(follow_bucket(
                store.clone(),
                bucket,
                self.index.clone(),
                self.kv_keys.clone(),
                self.due_changed.clone(),
                tx,
            )));
        }
        *self.watchers.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        for rx in ready {
            if rx.await.is_err() {
                return Err(StoreError::Corrupt(
                    "a watch stopped before it caught up".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Follow the events stream from the start, forever.
async fn follow_events(
    events: stream::Stream,
    index: Arc<Mutex<Index>>,
    due_changed: Arc<Notify>,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let mut next = 1u64;
    loop {
        let consumer = events
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ..Default::default()
            })
            .await;
        let mut messages = match consumer {
            Ok(c) => match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "events watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "events watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        while let Some(msg) = messages.next().await {
            let msg: jetstream::Message = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "events watch broke; resuming");
                    break;
                }
            };
            let Ok(info) = msg.info() else { continue };
            let (id, pending) = (info.stream_sequence, info.pending);
            next = id + 1;
            match decode_event(&msg.payload) {
                Ok((header, _)) => {
                    let key = dedup_key(&header.meta.source, &header.meta.event_id);
                    let made_due = index.lock().unwrap_or_else(|p| p.into_inner()).add_event(
                        id,
                        IndexedEvent {
                            meta: header.meta,
                            plugins: header.plugins,
                        },
                        key,
                    );
                    if made_due {
                        due_changed.notify_one();
                    }
                }
                Err(e) => tracing::error!(id, error = %e, "an event message is unreadable"),
            }
            if pending == 0
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follow a bucket: its last value per key, then every change, forever.
async fn follow_bucket(
    store: kv::Store,
    bucket: Bucket,
    index: Arc<Mutex<Index>>,
    kv_keys: KvKeys,
    due_changed: Arc<Notify>,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let mut last = 0u64;
    loop {
        let watch = if last == 0 {
            store.watch_with_history(">").await
        } else {
            store.watch_all_from_revision(last + 1).await
        };
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(bucket = %store.name, error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(bucket = %store.name, error = %e, "watch broke; resuming");
                    break;
                }
            };
            last = last.max(entry.revision);
            let put = entry.operation == kv::Operation::Put;
            match bucket {
                Bucket::Deliveries => {
                    let Some((id, plugin)) = parse_delivery_key(&entry.key) else {
                        continue;
                    };
                    let (delivery, holder) = if put {
                        match serde_json::from_slice::<DeliveryRecord>(&entry.value) {
                            Ok(r) => (Some(r.delivery), r.holder),
                            Err(e) => {
                                tracing::error!(key = %entry.key, error = %e, "a delivery record is unreadable");
                                continue;
                            }
                        }
                    } else {
                        (None, None)
                    };
                    let made_due = index
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .set_delivery(id, plugin, entry.revision, delivery, holder);
                    if made_due {
                        due_changed.notify_one();
                    }
                }
                Bucket::Gone => {
                    if put && let Ok(id) = entry.key.parse::<EventId>() {
                        index
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .forget_event(id);
                    }
                }
                Bucket::Kv => {
                    if let Some((plugin, key)) = parse_kv_key(&entry.key) {
                        note_kv_key(&kv_keys, &plugin, &key, Some(entry.revision), put);
                    }
                }
            }
            if entry.delta == 0
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
