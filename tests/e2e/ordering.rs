//! Ordering keys end to end: a plugin with `[ordering] key = "/data/customer"` handles
//! the events of one customer one at a time, in the order they were stored, retries
//! included, while different customers run in parallel; a retrying delivery holds back
//! its key (visible in the admin API) until it is dead-lettered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestEnv, TestHost, manifest, plugins, post_id, wait_until};

/// One attempt as test-ordered records it: (seq, attempt, start µs, end µs, ok).
type Obs = (u64, u32, u64, u64, bool);

async fn observed(host: &TestHost, key: &str) -> Vec<Obs> {
    match host.kv("test-ordered", &format!("obs/{key}")).await {
        Some(text) => serde_json::from_str(&text).expect("obs is a JSON array"),
        None => Vec::new(),
    }
}

fn ordered_manifest(retry: &str) -> String {
    manifest(
        "order.*",
        &format!(
            "[ordering]\nkey = \"/data/customer\"\n\n[limits]\nmax_concurrency = 8\ntimeout_ms = 10000\n\n[retry]\n{retry}\n\n[grants]\nkv = true\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_events_over_twenty_keys_run_in_order_per_key_and_in_parallel_across() {
    const KEYS: u64 = 20;
    const PER_KEY: u64 = 100;
    let env = TestEnv::new();
    env.install_plugin(
        "test-ordered",
        plugins::TEST_ORDERED,
        &ordered_manifest("max_attempts = 10\ninitial_backoff_ms = 1\nmax_backoff_ms = 5"),
    );
    let host = Arc::new(env.start().await);
    // One sender per customer, each posting its events in sequence (the next after the
    // previous one's 2xx); the customers' senders run side by side.
    let mut senders = tokio::task::JoinSet::new();
    for k in 0..KEYS {
        let host = host.clone();
        senders.spawn(async move {
            for seq in 0..PER_KEY {
                let body = json!({
                    "type": "order.update",
                    "data": {"customer": format!("cus_{k}")},
                    "seq": seq,
                    // Pseudo-random delays of 0-4 ms and a retry on every seventh.
                    "delay_ms": (seq * 31 + k * 17) % 5,
                    "fail_first": (seq + k) % 7 == 3,
                });
                post_id(&host, &format!("ord_{k}_{seq}"), body).await;
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r.expect("sender");
    }
    // Every event handled, or a dead letter to show why not (a loaded machine can time
    // an attempt out; ten attempts each make that a failure with its reason); on a
    // timeout, the lanes say which key is stuck behind what.
    let deadline = Instant::now() + Duration::from_secs(240);
    'wait: loop {
        let dead = host
            .admin_get("/admin/v1/dlq?plugin=test-ordered&limit=5")
            .await
            .json;
        let dead = dead["dead_letters"].as_array().cloned().unwrap_or_default();
        assert!(dead.is_empty(), "dead letters: {dead:?}");
        let mut complete = true;
        for k in 0..KEYS {
            let obs = observed(&host, &format!("cus_{k}")).await;
            complete &= obs.iter().filter(|o| o.4).count() as u64 == PER_KEY;
        }
        if complete {
            break 'wait;
        }
        if Instant::now() > deadline {
            let lanes = host.admin_get("/admin/v1/plugins/test-ordered").await.json;
            panic!(
                "not every event was handled within 240 s; lanes: {}",
                lanes["ordering"]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all: Vec<(u64, Obs)> = Vec::new();
    for k in 0..KEYS {
        let key = format!("cus_{k}");
        let obs = observed(&host, &key).await;
        // In order: each event once, ascending; an injected retry right before its own
        // success, never with another event in between.
        let done: Vec<u64> = obs.iter().filter(|o| o.4).map(|o| o.0).collect();
        assert_eq!(done, (0..PER_KEY).collect::<Vec<_>>(), "{key}: {obs:?}");
        for pair in obs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.4 {
                assert_eq!(b.0, a.0 + 1, "{key}: {a:?} then {b:?}");
            } else {
                assert_eq!((b.0, b.1), (a.0, a.1 + 1), "{key}: a retry first");
            }
            // One at a time: each attempt started after the previous one ended.
            assert!(b.2 >= a.3, "{key}: {a:?} overlaps {b:?}");
        }
        let retries = obs.iter().filter(|o| !o.4).count() as u64;
        assert_eq!(
            retries,
            (0..PER_KEY).filter(|s| (s + k) % 7 == 3).count() as u64
        );
        all.extend(obs.into_iter().map(|o| (k, o)));
    }
    // In parallel across keys: some attempts of different customers overlapped.
    all.sort_by_key(|(_, o)| o.2);
    let overlaps = all
        .windows(2)
        .filter(|w| w[0].0 != w[1].0 && w[1].1.2 < w[0].1.3)
        .count();
    assert!(overlaps > 0, "different keys never ran at the same time");
    Arc::try_unwrap(host)
        .ok()
        .expect("no other handle")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_delivery_holds_back_its_key_until_it_is_dead_lettered() {
    let env = TestEnv::new();
    env.install_plugin(
        "test-ordered",
        plugins::TEST_ORDERED,
        &ordered_manifest("max_attempts = 2\ninitial_backoff_ms = 3000\nmax_backoff_ms = 3000"),
    );
    let host = env.start().await;
    let event = |customer: &str, seq: u64, fail: bool| json!({"type": "order.update", "data": {"customer": customer}, "seq": seq, "fail_always": fail});
    let a = post_id(&host, "hold_a", event("alice", 1, true)).await;
    let b = post_id(&host, "hold_b", event("alice", 2, false)).await;
    let c = post_id(&host, "hold_c", event("alice", 3, false)).await;
    let other = post_id(&host, "hold_other", event("bob", 1, false)).await;
    // Bob's event is not held back by Alice's.
    host.wait_status(&other, "done", Duration::from_secs(30))
        .await;
    // While A waits for its retry, B and C wait behind it, and the admin API says so.
    let shown = wait_until("A is retrying", Duration::from_secs(30), || async {
        let e = host.event(&a).await;
        (e["status"] == "retrying").then_some(e)
    })
    .await;
    assert_eq!(shown["deliveries"][0]["held_by"], Value::Null);
    let held = host.event(&b).await;
    assert_eq!(held["status"], "pending", "{held}");
    assert_eq!(
        held["deliveries"][0]["held_by"],
        json!({"ordering_key": "alice", "event": a})
    );
    let plugin = host.admin_get("/admin/v1/plugins/test-ordered").await.json;
    assert_eq!(plugin["ordering"]["key"], "/data/customer");
    assert_eq!(
        plugin["ordering"]["lanes"],
        json!([{"key": "alice", "head": a, "running": false, "waiting": 2}])
    );
    assert!(observed(&host, "alice").await.iter().all(|o| o.0 == 1));
    // A runs out of attempts and is dead-lettered: B and C follow, in order.
    host.wait_status(&a, "dead", Duration::from_secs(30)).await;
    host.wait_status(&c, "done", Duration::from_secs(30)).await;
    let seqs: Vec<(u64, bool)> = observed(&host, "alice")
        .await
        .iter()
        .map(|o| (o.0, o.4))
        .collect();
    assert_eq!(seqs, [(1, false), (1, false), (2, true), (3, true)]);
    assert_eq!(
        host.event(&b).await["deliveries"][0]["held_by"],
        Value::Null
    );
    let plugin = host.admin_get("/admin/v1/plugins/test-ordered").await.json;
    assert_eq!(plugin["ordering"]["lanes"], json!([]));
    host.stop().await;
}
