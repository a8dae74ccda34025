//! The delivery engine's promises: retries follow the backoff schedule, dead letters can
//! be listed, replayed and purged, old data is removed, ingress pushes back instead of
//! accepting what it can't keep, and a `kill -9` loses no acknowledged event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, TestEnv, attempts, manifest, plugins, post_id};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_schedule_on_an_injected_clock() {
    let env = TestEnv::new();
    env.install_plugin(
        "slow",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.slow",
            "[retry]\nmax_attempts = 3\ninitial_backoff_ms = 60000\nmax_backoff_ms = 60000\n\n[config]\noutcome = \"retry\"\n",
        ),
    );
    // A barrier: once a tick is done, the dispatcher has made a pass after the clock moved.
    env.install_plugin(
        "tick",
        plugins::TEST_OUTCOME,
        &manifest("tick", "[config]\noutcome = \"ok\"\n"),
    );
    let clock = agenthook::clock::Clock::system();
    let host = env.start_with_clock(clock.clone()).await;
    let mut ticks = 0;
    let mut tick = || {
        ticks += 1;
        format!("tick-{ticks}")
    };

    let id = post_id(&host, "job-slow", json!({"type": "job.slow"})).await;
    let first = harness::wait_until("attempt 1 recorded", WAIT, || async {
        let e = host.event(&id).await;
        (attempts(&e, "slow").len() == 1).then_some(e)
    })
    .await;
    let a1 = &attempts(&first, "slow")[0];
    let end1 = a1["started_at_ms"].as_u64().unwrap() + a1["duration_ms"].as_u64().unwrap();
    let due = first["deliveries"][0]["next_attempt_at_ms"]
        .as_u64()
        .expect("scheduled");
    assert!(
        (60_000..60_000 + 1_000).contains(&(due - end1)),
        "retry scheduled {} ms after the failure",
        due - end1
    );

    // 59 s later: not yet.
    clock.advance(Duration::from_secs(59));
    let t = post_id(&host, &tick(), json!({"type": "tick"})).await;
    host.wait_status(&t, "done", WAIT).await;
    assert_eq!(
        attempts(&host.event(&id).await, "slow").len(),
        1,
        "retried before its backoff elapsed"
    );

    // Past the due time: attempt 2 runs, at (clock) time ≥ due.
    clock.advance(Duration::from_secs(2));
    let t = post_id(&host, &tick(), json!({"type": "tick"})).await;
    host.wait_status(&t, "done", WAIT).await;
    let second = harness::wait_until("attempt 2 recorded", WAIT, || async {
        let e = host.event(&id).await;
        (attempts(&e, "slow").len() == 2).then_some(e)
    })
    .await;
    let a2 = attempts(&second, "slow")[1].clone();
    assert!(a2["started_at_ms"].as_u64().unwrap() >= due);
    assert_eq!(a2["outcome"], "retry");

    // The third attempt exhausts max_attempts: dead, with the whole history kept.
    clock.advance(Duration::from_secs(61));
    let t = post_id(&host, &tick(), json!({"type": "tick"})).await;
    host.wait_status(&t, "done", WAIT).await;
    let dead = host.wait_status(&id, "dead", WAIT).await;
    let all = attempts(&dead, "slow");
    assert_eq!(all.len(), 3);
    assert!(
        all[2]["error"]
            .as_str()
            .unwrap()
            .contains("attempt 3 of retry.max_attempts 3"),
        "{all:?}"
    );
    assert!(
        all.iter()
            .all(|a| a["plugin_version"].as_str().map(str::len) == Some(64))
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged_through_the_cli() {
    let env = TestEnv::new();
    // Fails its first attempt, which is all it gets: dead. A replay gives a fresh budget,
    // and attempt 2 succeeds.
    env.install_plugin(
        "once",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.once",
            "[retry]\nmax_attempts = 1\n\n[config]\noutcome = \"retry\"\nsucceed_on_attempt = \"2\"\n",
        ),
    );
    env.install_plugin(
        "never",
        plugins::TEST_OUTCOME,
        &manifest("job.never", "[config]\noutcome = \"permanent\"\n"),
    );
    let host = env.start_binary().await;
    let once = post_id(&host, "job-once", json!({"type": "job.once"})).await;
    let never = post_id(&host, "job-never", json!({"type": "job.never"})).await;
    host.wait_status(&once, "dead", WAIT).await;
    host.wait_status(&never, "dead", WAIT).await;

    let list = host.cli(&["dlq", "list"]);
    assert!(
        list.contains("job-once") && list.contains("job-never"),
        "{list}"
    );
    let listed: Value =
        serde_json::from_str(&host.cli(&["dlq", "list", "--plugin", "once", "--json"])).unwrap();
    assert_eq!(listed["dead_letters"].as_array().map(Vec::len), Some(1));

    // An empty selector is refused rather than replaying everything.
    let r = host.admin_post("/admin/v1/dlq/replay", &json!({})).await;
    assert_eq!(r.status, 400, "{:?}", r.json);

    let out = host.cli(&["dlq", "replay", &once]);
    assert!(out.contains("replayed 1"), "{out}");
    let e = host.wait_status(&once, "done", WAIT).await;
    let a = attempts(&e, "once");
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0]["outcome"].as_str(), a[1]["outcome"].as_str()),
        (Some("dead"), Some("done"))
    );

    // Replaying a finished event runs it again.
    let out = host.cli(&["events", "replay", &once]);
    assert!(out.contains("once"), "{out}");
    harness::wait_until("third attempt", WAIT, || async {
        let e = host.event(&once).await;
        (attempts(&e, "once").len() == 3 && e["status"] == "done").then_some(())
    })
    .await;

    let out = host.cli(&["dlq", "purge", "--plugin", "never"]);
    assert!(out.contains("purged 1"), "{out}");
    let left: Value = serde_json::from_str(&host.cli(&["dlq", "list", "--json"])).unwrap();
    assert_eq!(
        left["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{left}"
    );
    // The event itself is still there; only its dead delivery is gone.
    assert_eq!(host.event(&never).await["event_id"], "job-never");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_pushes_back_when_a_plugin_queue_is_full_and_other_plugins_go_on() {
    let mut env = TestEnv::new();
    env.extra_config = "[store]\nmax_queue_per_plugin = 2\n".into();
    env.install_plugin(
        "stuck",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.stuck",
            "[retry]\ninitial_backoff_ms = 3600000\n\n[config]\noutcome = \"retry\"\n",
        ),
    );
    env.install_plugin(
        "free",
        plugins::TEST_OUTCOME,
        &manifest("job.free", "[config]\noutcome = \"ok\"\n"),
    );
    let host = env.start().await;
    post_id(&host, "s1", json!({"type": "job.stuck"})).await;
    post_id(&host, "s2", json!({"type": "job.stuck"})).await;
    let r = host.post_signed("s3", &json!({"type": "job.stuck"})).await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (503, Some("queue_full")),
        "{:?}",
        r.json
    );
    assert!(r.headers.contains_key("retry-after"));
    // A plugin with room is not held up by the full one.
    let free = post_id(&host, "f1", json!({"type": "job.free"})).await;
    host.wait_status(&free, "done", WAIT).await;
    let ids: Vec<String> = host
        .all_events()
        .await
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["f1", "s2", "s1"], "the refused event was not stored");
    host.stop().await;

    // Disk nearly full: refuse rather than accept what may not be kept. (On NATS the
    // servers' disks are JetStream's to guard; the host has none to check.)
    if harness::on_nats() {
        return;
    }
    let mut env2 = TestEnv::new();
    env2.extra_config = "[store]\nmin_free_disk_mb = 1000000000\n".into();
    let host = env2.start().await;
    let r = host.post_signed("d1", &json!({"type": "x"})).await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (503, Some("disk_full")),
        "{:?}",
        r.json
    );
    assert!(host.all_events().await.is_empty());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_data_and_the_file_stops_growing() {
    let mut env = TestEnv::new();
    env.extra_config =
        "[store]\ndone_retention = \"2s\"\ndead_retention = \"2s\"\ndedup_window = \"2s\"\n".into();
    env.install_plugin(
        "sink",
        plugins::TEST_OUTCOME,
        &manifest("job.*", "[config]\noutcome = \"ok\"\n"),
    );
    let host = Arc::new(env.start().await);
    let db = env.data_dir().join("agenthook.redb");
    let pad = "x".repeat(2048);
    let started = Instant::now();
    let soak = Duration::from_secs(12);
    let mut sizes = Vec::new();
    let mut n = 0u64;
    let first = post_id(&host, "soak-0", json!({"type": "job.soak", "pad": pad})).await;
    // A fixed arrival rate (50 events every 250 ms, 200/s), so the live set, and with
    // it the file, depends on the retention and not on how fast this machine is today.
    let mut pace = tokio::time::interval(Duration::from_millis(250));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < soak {
        pace.tick().await;
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..50 {
            n += 1;
            let h = host.clone();
            let body = json!({"type": "job.soak", "n": n, "pad": pad});
            batch.spawn(async move { h.post_signed(&format!("soak-{n}"), &body).await });
        }
        let mut last = String::new();
        while let Some(r) = batch.join_next().await {
            let r = r.unwrap();
            assert_eq!(r.status, 200);
            last = r.json["id"].as_str().unwrap().to_string();
        }
        // Steady load: the plugin keeps up (retention never removes queued work).
        host.wait_status(&last, "done", WAIT).await;
        // The redb file's size; on NATS the servers' (not this host's) disk holds it.
        let size = if harness::on_nats() {
            0
        } else {
            std::fs::metadata(&db).unwrap().len()
        };
        sizes.push((started.elapsed().as_secs_f64(), size));
    }
    let stored = host.all_events().await.len() as u64;
    let mid = sizes[sizes.len() / 2].1;
    let end = sizes.last().unwrap().1;
    println!(
        "retention soak: {n} events in {:.1}s, {stored} stored at the end, file {:.1} MiB at half time, {:.1} MiB at the end",
        started.elapsed().as_secs_f64(),
        mid as f64 / 1048576.0,
        end as f64 / 1048576.0
    );
    assert!(
        stored < n / 2,
        "retention keeps the store bounded: {stored} of {n} events still stored"
    );
    assert!(
        harness::on_nats() || end as f64 <= mid as f64 * 1.5,
        "file grew from {mid} to {end} bytes in the second half"
    );
    // The first event is gone, and its dedup key too: the same id is a new event now.
    let r = host.admin_get(&format!("/admin/v1/events/{first}")).await;
    assert_eq!(r.status, 404);
    let again = host
        .post_signed("soak-0", &json!({"type": "job.soak"}))
        .await;
    assert_eq!(again.json["status"], "stored", "{:?}", again.json);
    Arc::try_unwrap(host).ok().expect("sole owner").stop().await;
}

/// Thousands of events, `kill -9` mid-load, restart: every acknowledged event is stored
/// and reaches `done` for every subscribed plugin. Repeated at several kill points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_event() {
    let env = TestEnv::new();
    for name in ["count-a", "count-b"] {
        env.install_plugin(
            name,
            plugins::TEST_OUTCOME,
            &manifest(
                "job.crash",
                "[grants]\nkv = true\n\n[config]\noutcome = \"ok\"\ncount_runs = \"true\"\n",
            ),
        );
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    println!("crash test seed {seed}");
    let mut acked_total: Vec<String> = Vec::new();
    for round in 0..3u64 {
        let host = env.start_binary().await;
        let host = Arc::new(host);
        let total = 1500u64;
        // Kill after a pseudo-random number of acks, between 10% and 80% of the load.
        let kill_after = total / 10
            + (seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(round * 1442695040888963407)
                >> 33)
                % (total * 7 / 10);
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sem = Arc::new(tokio::sync::Semaphore::new(32));
        let killed = Arc::new(tokio::sync::Notify::new());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            let (host, acked, sem, killed) =
                (host.clone(), acked.clone(), sem.clone(), killed.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                let id = format!("crash-{round}-{i}");
                let body = json!({"type": "job.crash", "i": i}).to_string();
                let headers = harness::standard_webhooks_headers(
                    harness::SECRET,
                    &id,
                    harness::unix_now(),
                    body.as_bytes(),
                );
                let r = host
                    .request(
                        http::Method::POST,
                        host.ingress,
                        "/hooks/demo",
                        &headers,
                        bytes::Bytes::from(body),
                    )
                    .await;
                if let Ok(r) = r
                    && r.status == 200
                {
                    let mut a = acked.lock().unwrap();
                    a.push(id);
                    if a.len() as u64 == kill_after {
                        killed.notify_one();
                    }
                }
            });
        }
        killed.notified().await;
        let pid = host.process.as_ref().and_then(|c| c.id()).expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
        while tasks.join_next().await.is_some() {}
        let acked_now = acked.lock().unwrap().clone();
        println!(
            "round {round}: killed after {kill_after} acks; {} acked in all",
            acked_now.len()
        );
        // Reap the killed process before the next round opens the store: until the
        // kernel has torn it down, its lock on the redb file is still held.
        Arc::try_unwrap(host)
            .ok()
            .expect("sole owner")
            .kill9()
            .await;
        acked_total.extend(acked_now);

        // Restart on the same data dir: every acked event gets done for both plugins.
        let host = env.start_binary().await;
        let statuses = harness::wait_until(
            "every acknowledged event done",
            Duration::from_secs(120),
            || async {
                let events = host.all_events().await;
                let by_id: HashMap<String, String> = events
                    .iter()
                    .map(|e| {
                        (
                            e["event_id"].as_str().unwrap().to_string(),
                            e["status"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                acked_total
                    .iter()
                    .all(|id| by_id.get(id).map(String::as_str) == Some("done"))
                    .then_some(by_id)
            },
        )
        .await;
        assert!(
            acked_total.iter().all(|id| statuses.contains_key(id)),
            "an acknowledged event was lost"
        );

        // At-least-once: every delivery ran at least once; count the extra runs.
        let mut duplicates = 0;
        for plugin in ["count-a", "count-b"] {
            let mut runs: HashMap<String, u64> = HashMap::new();
            let mut after = String::new();
            loop {
                let r = host
                    .admin_get(&format!(
                        "/admin/v1/plugins/{plugin}/kv?prefix=runs/&limit=1000{after}"
                    ))
                    .await;
                for e in r.json["entries"].as_array().unwrap() {
                    runs.insert(
                        e["key"].as_str().unwrap().to_string(),
                        e["value"].as_str().unwrap().parse().unwrap(),
                    );
                }
                match r.json["next_start_after"].as_str() {
                    Some(k) => after = format!("&start_after={}", harness::urlencode(k)),
                    None => break,
                }
            }
            duplicates += runs.values().map(|n| n - 1).sum::<u64>();
            assert!(
                runs.len() >= acked_total.len(),
                "{plugin}: {} runs recorded for {} acked events",
                runs.len(),
                acked_total.len()
            );
        }
        println!(
            "round {round}: {} acknowledged events all done; {duplicates} duplicate deliveries (same idempotency key)",
            acked_total.len()
        );
        host.stop().await;
    }
}
