//! The store's conformance tests: what every backend must do, run through the
//! [`Store`] handle callers hold — each test once on redb (a temp dir) and once on NATS
//! (a real `nats-server` with JetStream, started once per test process; each test
//! under its own prefix). "Reopen" on NATS is a new connection and a new index.

use super::*;
use crate::clock::now_ms;
use crate::config::StoreConfig;

/// Where a test's store lives: a temp dir for redb, a fresh prefix on the test server
/// for NATS.
pub(super) struct Fixture {
    dir: tempfile::TempDir,
    backend: StoreBackend,
}

impl Fixture {
    fn redb() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            backend: StoreBackend::Redb,
        }
    }

    fn nats() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            backend: StoreBackend::Nats(nats::test_server::config()),
        }
    }

    async fn open(&self, config: &StoreConfig) -> Store {
        let config = StoreConfig {
            backend: self.backend.clone(),
            ..config.clone()
        };
        Store::open(self.dir.path(), &config).await.unwrap()
    }
}

fn meta(source: &str, event_id: &str) -> EventMeta {
    EventMeta {
        source: source.into(),
        event_id: event_id.into(),
        event_type: "t.x".into(),
        received_at_ms: now_ms(),
        headers: vec![("webhook-id".into(), event_id.into())],
    }
}

async fn ingest_dedups_and_survives_reopen(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
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

    let store = fx.open(&StoreConfig::default()).await;
    let got = store.event(id).await.unwrap().unwrap();
    assert_eq!(got.body, b"{\"a\":1}");
    assert_eq!(got.meta, ev.meta);
    let ds = store.deliveries(id).await.unwrap();
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

async fn attempts_move_deliveries_through_the_due_queue(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
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
    assert_eq!(store.due("p", now + 1, 10).await.unwrap().due.len(), 1);
    let attempt = |n, outcome| Attempt {
        number: n,
        started_at_ms: now,
        duration_ms: 1,
        outcome,
        error: Some("boom".into()),
        plugin_version: "v".into(),
        logs: vec![],
        journal: None,
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
    let batch = store.due("p", now + 1, 10).await.unwrap();
    assert!(batch.due.is_empty());
    assert_eq!(batch.later, Some(now + 60_000));
    assert_eq!(
        store.delivery(id, "p").await.unwrap().unwrap().status,
        DeliveryStatus::Retrying
    );
    store
        .record_attempt(id, "p", attempt(2, AttemptOutcome::Dead), Next::Dead)
        .await
        .unwrap();
    let batch = store.due("p", u64::MAX - 1, 10).await.unwrap();
    assert!(batch.due.is_empty() && batch.later.is_none());
    let d = store.delivery(id, "p").await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert_eq!(d.attempts.len(), 2);
}

async fn state_counts_follow_every_transition_and_survive_reopen(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
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
        journal: None,
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
        store
            .lease(ids[i], "p", now, now + 1000)
            .await
            .unwrap()
            .unwrap();
        store
            .record_attempt(ids[i], "p", attempt(outcome), next)
            .await
            .unwrap();
    }
    store
        .lease(ids[0], "q", now, now + 1000)
        .await
        .unwrap()
        .unwrap();
    // A lease answers before its commit; counts move when it commits.
    store.flush().await.unwrap();
    assert_eq!(
        counts(&store),
        [("p".into(), [0, 0, 1, 1]), ("q".into(), [2, 1, 0, 0])]
    );
    assert_eq!(store.queue_depth("p"), 1);
    assert_eq!(store.queue_depth("q"), 3);

    // A replay of the dead letter makes it pending; a purge finds no dead one then.
    store
        .replay(ids[1], None, vec![], true, false, now)
        .await
        .unwrap();
    assert_eq!(counts(&store)[0], ("p".into(), [1, 0, 1, 0]));
    assert_eq!(
        store.purge_dead(vec![(ids[1], "p".into())]).await.unwrap(),
        0
    );
    store
        .lease(ids[1], "p", now, now + 1000)
        .await
        .unwrap()
        .unwrap();
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
    let store = fx.open(&StoreConfig::default()).await;
    assert_eq!(
        counts(&store),
        [("p".into(), [0, 0, 1, 0]), ("q".into(), [3, 0, 0, 0])]
    );
    store.close().await;
}

async fn kv_is_per_plugin_and_lists_by_prefix(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
    for k in ["a/1", "a/2", "a/3", "b/1"] {
        store.kv_set("p", k, k.as_bytes().to_vec()).await.unwrap();
    }
    store.kv_set("q", "a/1", b"q".to_vec()).await.unwrap();
    assert_eq!(store.kv_get("p", "a/1").await.unwrap().unwrap(), b"a/1");
    assert_eq!(store.kv_get("q", "a/1").await.unwrap().unwrap(), b"q");
    assert_eq!(store.kv_get("q", "a/2").await.unwrap(), None);
    let keys =
        |v: Vec<(String, Option<Vec<u8>>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.kv_list("p", "a/", None, 10, false).await.unwrap()),
        ["a/1", "a/2", "a/3"]
    );
    assert_eq!(
        keys(
            store
                .kv_list("p", "a/", Some("a/1"), 1, false)
                .await
                .unwrap()
        ),
        ["a/2"]
    );
    assert_eq!(
        keys(store.kv_list("q", "", None, 10, false).await.unwrap()),
        ["a/1"]
    );
    assert!(store.kv_delete("p", "a/1").await.unwrap());
    assert!(!store.kv_delete("p", "a/1").await.unwrap());
}

async fn concurrent_ingests_share_commits_and_all_land(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
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
        .await
        .unwrap();
    assert_eq!(page.events.len(), 50);
    let cursor = page.next_cursor.unwrap();
    let rest = store
        .list_events(&EventFilter::default(), Some(cursor), 1000, 10_000)
        .await
        .unwrap();
    assert_eq!(rest.events.len(), 150);
    assert!(rest.next_cursor.is_none());
}

async fn a_pass_removes_finished_events_and_old_dedup_keys_only(fx: Fixture) {
    let config = StoreConfig {
        done_retention_ms: 1000,
        dead_retention_ms: 5000,
        dedup_window_ms: 1000,
        ..StoreConfig::default()
    };
    let store = fx.open(&config).await;
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
            journal: None,
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
    assert!(store.event(ids[0]).await.unwrap().is_none());
    assert!(store.event(ids[1]).await.unwrap().is_some());
    // Past the dead retention: the dead letter goes; the queued one never does.
    let r = janitor.pass(t0 + 10_000_000).await.unwrap();
    assert_eq!(r.events_removed, 1);
    assert!(store.event(ids[1]).await.unwrap().is_none());
    assert!(store.event(ids[2]).await.unwrap().is_some());
    assert_eq!(store.dedup_count().unwrap(), 0);
}

async fn leases_left_by_a_stopped_host_are_reclaimed_at_open(fx: Fixture) {
    let config = StoreConfig::default();
    let store = fx.open(&config).await;
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
        .lease(id, "p", now_ms(), now_ms() + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.status, DeliveryStatus::Leased);
    // A second lease of the same delivery is refused while the first holds.
    assert!(
        store
            .lease(id, "p", now_ms(), now_ms() + 60_000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.queue_depth("p"), 1);
    store.close().await;

    let store = fx.open(&config).await;
    let d = store.delivery(id, "p").await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.lease_expires_at_ms, None);
    assert_eq!(store.due("p", u64::MAX - 1, 10).await.unwrap().due.len(), 1);
    assert_eq!(store.queue_depth("p"), 1);
}

async fn a_held_lease_hides_its_delivery_until_it_runs_out_then_the_lost_attempt_is_recorded(
    fx: Fixture,
) {
    let store = fx.open(&StoreConfig::default()).await;
    let t0 = now_ms();
    let Ingested::Stored(id) = store
        .ingest(NewEvent {
            meta: EventMeta {
                source: "s".into(),
                event_id: "e".into(),
                event_type: "t".into(),
                received_at_ms: t0,
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
    assert_eq!(store.due("p", t0, 10).await.unwrap().due, [(t0, id)]);
    store.lease(id, "p", t0, t0 + 1000).await.unwrap().unwrap();
    // A lease answers once applied; reads see it once committed.
    store.flush().await.unwrap();

    // While the lease holds: not due, and due again when it runs out.
    let batch = store.due("p", t0 + 500, 10).await.unwrap();
    assert!(batch.due.is_empty());
    assert_eq!(batch.later, Some(t0 + 1000));
    assert!(
        store
            .lease(id, "p", t0 + 500, t0 + 2000)
            .await
            .unwrap()
            .is_none()
    );

    // Run out: due, and a new lease records the lost attempt and takes over.
    assert_eq!(store.due("p", t0 + 1000, 10).await.unwrap().due, [(t0, id)]);
    let taken = store
        .lease(id, "p", t0 + 1500, t0 + 3000)
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!(taken.status, DeliveryStatus::Leased);
    assert_eq!(taken.attempts.len(), 1);
    let lost = &taken.attempts[0];
    assert_eq!(lost.outcome, AttemptOutcome::Retry);
    assert!(lost.error.as_deref().unwrap().starts_with("lease_expired:"));
    assert_eq!((lost.started_at_ms, lost.duration_ms), (t0, 1000));
    store.flush().await.unwrap();
    assert_eq!(store.queue_depth("p"), 1);
    assert_eq!(store.state_counts()[0].1.leased, 1);
    assert_eq!(
        store
            .delivery(id, "p")
            .await
            .unwrap()
            .unwrap()
            .lease_expires_at_ms,
        Some(t0 + 3000)
    );
}

fn entry(seq: u32, hash: &str) -> JournalEntry {
    JournalEntry {
        seq,
        tool: "http.fetch".into(),
        request_hash: hash.into(),
        summary: format!("POST /{seq}"),
        attempt: 1,
        recorded_at_ms: 1,
        result: serde_json::json!({ "seq": seq }),
    }
}

async fn journals_record_by_position_and_go_with_replay_purge_and_retention(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
    let old = now_ms() - 10_000;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut m = meta("demo", &format!("j{n}"));
        m.received_at_ms = old;
        let Ingested::Stored(id) = store
            .ingest(NewEvent {
                meta: m,
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
    let id = ids[0];
    assert!(store.journal(id, "p").await.unwrap().is_empty());
    for seq in 1..=3 {
        store
            .journal_record(id, "p", entry(seq, &format!("h{seq}")))
            .await
            .unwrap();
    }
    store.journal_record(id, "q", entry(1, "q1")).await.unwrap();
    let hashes = |j: Vec<JournalEntry>| -> Vec<String> {
        j.into_iter()
            .map(|e| format!("{}:{}", e.seq, e.request_hash))
            .collect()
    };
    assert_eq!(
        hashes(store.journal(id, "p").await.unwrap()),
        ["1:h1", "2:h2", "3:h3"]
    );
    // A different call at 2 replaces 2 only; the other plugin's is untouched.
    store.journal_record(id, "p", entry(2, "x2")).await.unwrap();
    assert_eq!(
        hashes(store.journal(id, "p").await.unwrap()),
        ["1:h1", "2:x2", "3:h3"]
    );
    assert_eq!(hashes(store.journal(id, "q").await.unwrap()), ["1:q1"]);
    // No delivery, no journal.
    store
        .journal_record(id, "nobody", entry(1, "n"))
        .await
        .unwrap();
    assert!(store.journal(id, "nobody").await.unwrap().is_empty());
    // Survives a reopen, with the whole entry.
    store.close().await;
    let store = fx.open(&StoreConfig::default()).await;
    let j = store.journal(id, "p").await.unwrap();
    assert_eq!(j[1], entry(2, "x2"));

    let now = now_ms();
    let attempt = |outcome| Attempt {
        number: 1,
        started_at_ms: old,
        duration_ms: 1,
        outcome,
        error: None,
        plugin_version: "v".into(),
        logs: vec![],
        journal: None,
    };
    for id in &ids {
        for plugin in ["p", "q"] {
            store.lease(*id, plugin, now, now + 1000).await.unwrap();
            store
                .record_attempt(*id, plugin, attempt(AttemptOutcome::Dead), Next::Dead)
                .await
                .unwrap();
        }
    }
    // Replay keeping the journal keeps it; a plain replay deletes the replayed ones'.
    store
        .replay(id, Some(vec!["p".into()]), vec![], true, true, now)
        .await
        .unwrap();
    assert_eq!(store.journal(id, "p").await.unwrap().len(), 3);
    store.lease(id, "p", now, now + 1000).await.unwrap();
    store
        .record_attempt(id, "p", attempt(AttemptOutcome::Dead), Next::Dead)
        .await
        .unwrap();
    store
        .replay(id, Some(vec!["p".into()]), vec![], true, false, now)
        .await
        .unwrap();
    assert!(store.journal(id, "p").await.unwrap().is_empty());
    assert_eq!(store.journal(id, "q").await.unwrap().len(), 1);

    // A purge of a dead letter takes its journal.
    store
        .journal_record(ids[1], "p", entry(1, "a"))
        .await
        .unwrap();
    assert_eq!(
        store.purge_dead(vec![(ids[1], "p".into())]).await.unwrap(),
        1
    );
    assert!(store.journal(ids[1], "p").await.unwrap().is_empty());

    // Retention removes the finished event with its journals.
    store
        .journal_record(ids[2], "q", entry(1, "b"))
        .await
        .unwrap();
    let report = store
        .expire(Retention {
            dedup_before_ms: 0,
            done_before_ms: now + 1,
            dead_before_ms: now + 1,
        })
        .await
        .unwrap();
    assert!(report.events_removed >= 1, "{report:?}");
    assert!(store.event(ids[2]).await.unwrap().is_none());
    assert!(store.journal(ids[2], "q").await.unwrap().is_empty());
    // The replayed (pending) delivery keeps its event and its other journal.
    assert!(store.event(id).await.unwrap().is_some());
    assert_eq!(store.journal(id, "q").await.unwrap().len(), 1);
}

async fn kv_versions_change_on_every_write_and_never_repeat(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;

    assert_eq!(store.kv_get_versioned("p", "k").await.unwrap(), None);
    store.kv_set("p", "k", b"a".to_vec()).await.unwrap();
    let v1 = store.kv_get_versioned("p", "k").await.unwrap().unwrap();
    assert_eq!(v1.value, b"a");
    store.kv_set("p", "k", b"a".to_vec()).await.unwrap();
    let v2 = store.kv_get_versioned("p", "k").await.unwrap().unwrap();
    assert_ne!(
        v1.version, v2.version,
        "a rewrite of the same value is a new version"
    );
    // Delete and write again: the old versions never come back (no ABA).
    assert!(store.kv_delete("p", "k").await.unwrap());
    assert_eq!(store.kv_get_versioned("p", "k").await.unwrap(), None);
    store.kv_set("p", "k", b"a".to_vec()).await.unwrap();
    let v3 = store.kv_get_versioned("p", "k").await.unwrap().unwrap();
    assert!(![v1.version, v2.version].contains(&v3.version));
    assert_eq!(
        store
            .kv_compare_and_swap("p", "k", Some(v1.version), b"stale".to_vec())
            .await
            .unwrap(),
        Swap::Conflict(Some(v3.clone()))
    );
    // Versions survive a reopen.
    store.close().await;
    let store = fx.open(&StoreConfig::default()).await;
    assert_eq!(store.kv_get_versioned("p", "k").await.unwrap(), Some(v3));
    store.close().await;
}

async fn kv_compare_and_swap_writes_only_at_the_expected_version(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
    // Expecting absence: the first create wins, the second sees the first's value.
    let Swap::Swapped(v1) = store
        .kv_compare_and_swap("p", "k", None, b"one".to_vec())
        .await
        .unwrap()
    else {
        panic!("create on an absent key must swap")
    };
    assert_eq!(
        store
            .kv_compare_and_swap("p", "k", None, b"again".to_vec())
            .await
            .unwrap(),
        Swap::Conflict(Some(Versioned {
            value: b"one".to_vec(),
            version: v1
        }))
    );
    let Swap::Swapped(v2) = store
        .kv_compare_and_swap("p", "k", Some(v1), b"two".to_vec())
        .await
        .unwrap()
    else {
        panic!("swap at the current version must succeed")
    };
    assert_ne!(v1, v2);
    assert_eq!(store.kv_get("p", "k").await.unwrap().unwrap(), b"two");
    // A stale version writes nothing.
    assert!(matches!(
        store
            .kv_compare_and_swap("p", "k", Some(v1), b"lost".to_vec())
            .await
            .unwrap(),
        Swap::Conflict(Some(Versioned { version, .. })) if version == v2
    ));
    assert_eq!(store.kv_get("p", "k").await.unwrap().unwrap(), b"two");
    // Expecting a version of a key that does not exist is a conflict with nothing.
    assert_eq!(
        store
            .kv_compare_and_swap("p", "absent", Some(v2), b"x".to_vec())
            .await
            .unwrap(),
        Swap::Conflict(None)
    );
    assert_eq!(store.kv_get("p", "absent").await.unwrap(), None);
    // Plugins' spaces stay apart: the same key elsewhere is absent.
    assert_eq!(store.kv_get_versioned("q", "k").await.unwrap(), None);
    store.close().await;
}

async fn kv_increment_adds_atomically_and_refuses_what_is_not_a_counter(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
    assert_eq!(
        store.kv_increment("p", "n", 5).await.unwrap(),
        Increment::Done(5)
    );
    assert_eq!(
        store.kv_increment("p", "n", -7).await.unwrap(),
        Increment::Done(-2)
    );
    assert_eq!(store.kv_get("p", "n").await.unwrap().unwrap(), b"-2");
    // Many concurrent increments of one key: none is lost.
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.kv_increment("p", "c", 3).await
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        let Increment::Done(n) = t.await.unwrap().unwrap() else {
            panic!("increment refused")
        };
        seen.push(n);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).map(|i| i * 3).collect::<Vec<i64>>());
    assert_eq!(store.kv_get("p", "c").await.unwrap().unwrap(), b"600");
    // Not a counter, or overflow: refused, the value untouched.
    store.kv_set("p", "s", b"{\"a\":1}".to_vec()).await.unwrap();
    assert_eq!(
        store.kv_increment("p", "s", 1).await.unwrap(),
        Increment::NotAnInteger
    );
    assert_eq!(store.kv_get("p", "s").await.unwrap().unwrap(), b"{\"a\":1}");
    store
        .kv_set("p", "m", i64::MAX.to_string().into_bytes())
        .await
        .unwrap();
    let before = store.kv_get_versioned("p", "m").await.unwrap();
    assert_eq!(
        store.kv_increment("p", "m", 1).await.unwrap(),
        Increment::Overflow
    );
    assert_eq!(store.kv_get_versioned("p", "m").await.unwrap(), before);
    store.close().await;
}

async fn kv_concurrent_compare_and_swap_loses_no_update(fx: Fixture) {
    let store = fx.open(&StoreConfig::default()).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let current = store.kv_get_versioned("p", "total").await.unwrap();
                let (n, expected) = match current {
                    Some(v) => (
                        String::from_utf8(v.value).unwrap().parse::<u64>().unwrap(),
                        Some(v.version),
                    ),
                    None => (0, None),
                };
                let next = (n + 1).to_string().into_bytes();
                if let Swap::Swapped(_) = store
                    .kv_compare_and_swap("p", "total", expected, next)
                    .await
                    .unwrap()
                {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.kv_get("p", "total").await.unwrap().unwrap(), b"50");
    store.close().await;
}

/// Each conformance test, once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fixture::redb()).await
            })*
        }
        mod on_nats {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fixture::nats()).await
            })*
        }
    };
}

conformance!(
    journals_record_by_position_and_go_with_replay_purge_and_retention,
    ingest_dedups_and_survives_reopen,
    attempts_move_deliveries_through_the_due_queue,
    state_counts_follow_every_transition_and_survive_reopen,
    kv_is_per_plugin_and_lists_by_prefix,
    concurrent_ingests_share_commits_and_all_land,
    a_pass_removes_finished_events_and_old_dedup_keys_only,
    leases_left_by_a_stopped_host_are_reclaimed_at_open,
    a_held_lease_hides_its_delivery_until_it_runs_out_then_the_lost_attempt_is_recorded,
    kv_versions_change_on_every_write_and_never_repeat,
    kv_compare_and_swap_writes_only_at_the_expected_version,
    kv_increment_adds_atomically_and_refuses_what_is_not_a_counter,
    kv_concurrent_compare_and_swap_loses_no_update
);
