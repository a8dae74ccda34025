//! The plugin lifecycle: hot-load through the admin API and `plugins_dir`, validation
//! before swap, zero-downtime replacement under load, removal that keeps pending
//! deliveries, per-plugin limits that contain misbehaving plugins, and the compile
//! cache that makes a restart fast.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::harness::{self, TOKEN, TestEnv, TestHost, attempts, manifest, plugins, post_id};

const WAIT: Duration = Duration::from_secs(60);

fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("read plugin component")
}

/// The component with a custom section appended: same behaviour, different content
/// hash, so each call gives a distinct plugin version.
fn variant(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"agenthook-test";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

async fn deploy(
    host: &TestHost,
    name: &str,
    manifest_text: &str,
    component: &[u8],
) -> harness::Resp {
    let body = json!({ "manifest": manifest_text, "wasm_base64": B64.encode(component) });
    admin(
        host,
        http::Method::PUT,
        &format!("/admin/v1/plugins/{name}"),
        body.to_string(),
    )
    .await
}

async fn remove(host: &TestHost, name: &str) -> harness::Resp {
    admin(
        host,
        http::Method::DELETE,
        &format!("/admin/v1/plugins/{name}"),
        String::new(),
    )
    .await
}

async fn admin(host: &TestHost, method: http::Method, path: &str, body: String) -> harness::Resp {
    let headers = [
        ("authorization", format!("Bearer {TOKEN}")),
        ("content-type", "application/json".to_string()),
    ];
    host.request(method, host.admin, path, &headers, Bytes::from(body))
        .await
        .expect("admin request")
}

fn delivery_status(event: &Value, plugin: &str) -> Option<String> {
    event["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["plugin"] == plugin))
        .and_then(|d| d["status"].as_str().map(str::to_string))
}

async fn loaded_version(host: &TestHost, name: &str) -> Option<String> {
    let r = host.admin_get(&format!("/admin/v1/plugins/{name}")).await;
    (r.status == 200).then(|| r.json["version"].as_str().expect("version").to_string())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex_encode(&sha2::Sha256::digest(bytes))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const OK_MANIFEST: &str = "[config]\noutcome = \"ok\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_with_the_reason_and_the_old_version_keeps_serving() {
    let env = TestEnv::new();
    let host = env.start().await;
    let good = wasm(plugins::TEST_OUTCOME);
    let m = manifest("job.*", OK_MANIFEST);

    let r = deploy(&host, "worker", &m, &good).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    assert_eq!(r.json["action"], "added");
    let v1 = sha256_hex(&good);
    assert_eq!(r.json["version"], v1.as_str());
    let id = post_id(&host, "before", json!({"type": "job.a"})).await;
    host.wait_status(&id, "done", WAIT).await;

    // Each refused deploy: 422, a reason naming the problem, and v1 still serving.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let empty_component = b"\0asm\x0d\0\x01\0".to_vec();
    let foreign_import =
        b"(component (import \"evil:net/socket\" (instance (export \"connect\" (func)))))".to_vec();
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "garbage",
            m.clone(),
            b"definitely not wasm".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "core module",
            m.clone(),
            core_module,
            "core WebAssembly module, not a component",
        ),
        (
            "truncated",
            m.clone(),
            good[..good.len() / 2].to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "wrong world",
            m.clone(),
            empty_component,
            "does not export the agenthook:plugin `handler` world",
        ),
        (
            "foreign import",
            m.clone(),
            foreign_import,
            "imports something this host does not provide",
        ),
        (
            "zero memory",
            manifest("job.*", "[limits]\nmemory_mb = 0\n"),
            good.clone(),
            "limits.memory_mb",
        ),
        (
            "unknown key",
            manifest("job.*", "[limits]\nmemory_mib = 64\n"),
            good.clone(),
            "memory_mib",
        ),
        (
            "bad glob",
            manifest("job.[", ""),
            good.clone(),
            "subscribe[0].types",
        ),
        (
            "unknown grant",
            manifest("job.*", "[grants]\nfilesystem = true\n"),
            good.clone(),
            "filesystem",
        ),
        // 1 MiB cannot hold the component's initial memory: caught by the trial
        // instantiation, before the swap.
        (
            "memory too small",
            manifest("job.*", "[limits]\nmemory_mb = 1\n"),
            good.clone(),
            "memory_limit",
        ),
    ];
    for (case, manifest_text, component, expected) in &cases {
        let r = deploy(&host, "worker", manifest_text, component).await;
        let message = r.json["error"].as_str().unwrap_or_default();
        assert_eq!(r.status, 422, "{case}: {:?}", r.json);
        assert_eq!(r.json["reason"], "invalid_plugin", "{case}");
        assert!(
            message.contains(expected),
            "{case}: expected `{expected}` in: {message}"
        );
        assert!(message.contains("keeps serving"), "{case}: {message}");
        assert_eq!(
            loaded_version(&host, "worker").await.as_deref(),
            Some(v1.as_str()),
            "{case}"
        );
    }
    // Not even a JSON deploy: 400.
    let r = admin(
        &host,
        http::Method::PUT,
        "/admin/v1/plugins/worker",
        "{\"wasm\": 1}".into(),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.json);

    // v1 still runs events, recording its version.
    let id = post_id(&host, "after", json!({"type": "job.b"})).await;
    let e = host.wait_status(&id, "done", WAIT).await;
    assert_eq!(attempts(&e, "worker")[0]["plugin_version"], v1.as_str());
    // The refused files never reached plugins_dir.
    assert_eq!(
        std::fs::read(env.plugins_dir().join("worker.wasm")).unwrap(),
        good
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_delivery_finishes_on_the_old_version_and_removal_keeps_pending_deliveries() {
    let env = TestEnv::new();
    let host = env.start().await;
    let slow = wasm(plugins::TEST_MISBEHAVE);
    let m = manifest(
        "job.*",
        "[limits]\nmax_concurrency = 1\ntimeout_ms = 5000\n\n[config]\nmode = \"sleep\"\nsleep_ms = \"700\"\n",
    );
    let r = deploy(&host, "slow", &m, &slow).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let v1 = r.json["version"].as_str().unwrap().to_string();

    // One delivery in flight on v1, then swap to v2.
    let first = post_id(&host, "first", json!({"type": "job.x"})).await;
    harness::wait_until("the first delivery is in flight", WAIT, || async {
        let p = host.admin_get("/admin/v1/plugins/slow").await;
        (p.json["in_flight"] == 1).then_some(())
    })
    .await;
    let v2_bytes = variant(&slow, "v2");
    let r = deploy(&host, "slow", &m, &v2_bytes).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["action"], "replaced");
    assert_eq!(r.json["previous_version"], v1.as_str());
    let v2 = r.json["version"].as_str().unwrap().to_string();
    let second = post_id(&host, "second", json!({"type": "job.x"})).await;
    let e1 = host.wait_status(&first, "done", WAIT).await;
    let e2 = host.wait_status(&second, "done", WAIT).await;
    let a1 = attempts(&e1, "slow");
    let a2 = attempts(&e2, "slow");
    assert_eq!((a1.len(), a2.len()), (1, 1), "each ran once: {a1:?} {a2:?}");
    assert_eq!(
        a1[0]["plugin_version"],
        v1.as_str(),
        "in flight during the swap: old version"
    );
    assert_eq!(
        a2[0]["plugin_version"],
        v2.as_str(),
        "after the swap: new version"
    );
    // Deploying the same thing again changes nothing.
    let r = deploy(&host, "slow", &m, &v2_bytes).await;
    assert_eq!(
        (r.status, r.json["action"].as_str()),
        (200, Some("unchanged"))
    );

    // Queue four deliveries behind max_concurrency = 1, then remove the plugin.
    let queued: Vec<String> = futures_join(
        (0..4).map(|i| post_id_owned(&host, format!("queued-{i}"), json!({"type": "job.q"}))),
    )
    .await;
    harness::wait_until("a queued delivery is in flight", WAIT, || async {
        let p = host.admin_get("/admin/v1/plugins/slow").await;
        (p.json["in_flight"] == 1).then_some(())
    })
    .await;
    let r = remove(&host, "slow").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["removed_version"], v2.as_str());
    assert!(!env.plugins_dir().join("slow.wasm").exists());
    assert_eq!(remove(&host, "slow").await.status, 404);
    assert_eq!(host.admin_get("/admin/v1/plugins/slow").await.status, 404);

    // The one in flight finishes; the rest stay stored and pending, none is lost.
    tokio::time::sleep(Duration::from_millis(1500)).await; // let any wrongly started run finish
    let mut statuses = BTreeMap::new();
    for id in &queued {
        let e = host.event(id).await;
        *statuses
            .entry(delivery_status(&e, "slow").expect("delivery kept"))
            .or_insert(0) += 1;
    }
    assert_eq!(
        statuses.get("done"),
        Some(&1),
        "only the in-flight one ran: {statuses:?}"
    );
    assert_eq!(statuses.get("pending"), Some(&3), "{statuses:?}");
    // A new event after the removal is stored with no delivery to the removed plugin.
    let later = post_id(&host, "after-removal", json!({"type": "job.q"})).await;
    assert_eq!(delivery_status(&host.event(&later).await, "slow"), None);

    // Deploying it again (through the CLI) runs the kept deliveries.
    let manifest_path = env.dir.path().join("slow.toml");
    let wasm_path = env.dir.path().join("slow.wasm");
    std::fs::write(&manifest_path, &m).unwrap();
    std::fs::write(&wasm_path, &v2_bytes).unwrap();
    let out = host.cli(&[
        "plugin",
        "deploy",
        "slow",
        "--wasm",
        wasm_path.to_str().unwrap(),
        "--manifest",
        manifest_path.to_str().unwrap(),
    ]);
    assert!(out.contains("plugin slow: added"), "{out}");
    for id in &queued {
        host.wait_status(id, "done", WAIT).await;
    }
    let list = host.cli(&["plugin", "list"]);
    assert!(list.contains("slow"), "{list}");
    let out = host.cli(&["plugin", "remove", "slow"]);
    assert!(out.contains("removed"), "{out}");
    host.stop().await;
}

async fn post_id_owned(host: &TestHost, id: String, body: Value) -> String {
    post_id(host, &id, body).await
}

/// Run futures one after another (ordered posts), collecting their outputs.
async fn futures_join<T>(
    futs: impl Iterator<Item = impl std::future::Future<Output = T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for f in futs {
        out.push(f.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_ten_times_under_load_loses_and_repeats_nothing() {
    let env = TestEnv::new();
    let host = Arc::new(env.start().await);
    let base = wasm(plugins::TEST_OUTCOME);
    // count_runs: every call increments kv runs/{event id}; a count above 1 is a
    // delivery run twice.
    let m = manifest(
        "load.*",
        "[limits]\nmax_concurrency = 4\n\n[grants]\nkv = true\n\n[config]\noutcome = \"ok\"\ncount_runs = \"true\"\n",
    );
    let r = deploy(&host, "worker", &m, &variant(&base, "v0")).await;
    assert_eq!(r.status, 201, "{:?}", r.json);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (host, stop, sent) = (host.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                ids.push(
                    post_id(
                        &host,
                        &format!("load-{n}"),
                        json!({"type": "load.tick", "n": n}),
                    )
                    .await,
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        })
    };
    let mut versions = BTreeSet::new();
    for i in 1..=10 {
        // Let some deliveries run on the current version first.
        let before = sent.load(Ordering::Relaxed);
        harness::wait_until("events stream in", WAIT, || async {
            (sent.load(Ordering::Relaxed) >= before + 5).then_some(())
        })
        .await;
        let r = deploy(&host, "worker", &m, &variant(&base, &format!("v{i}"))).await;
        assert_eq!(r.status, 200, "swap {i}: {:?}", r.json);
        assert_eq!(r.json["action"], "replaced");
        versions.insert(r.json["version"].as_str().unwrap().to_string());
    }
    let before = sent.load(Ordering::Relaxed);
    harness::wait_until("events stream in after the last swap", WAIT, || async {
        (sent.load(Ordering::Relaxed) >= before + 5).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let ids = sender.await.expect("sender task");

    let mut seen_versions = BTreeSet::new();
    for id in &ids {
        let e = host.wait_status(id, "done", WAIT).await;
        let a = attempts(&e, "worker");
        assert_eq!(
            a.len(),
            1,
            "event {id}: exactly one attempt, none failed: {a:?}"
        );
        assert_eq!(a[0]["outcome"], "done", "event {id}");
        seen_versions.insert(a[0]["plugin_version"].as_str().unwrap().to_string());
        assert_eq!(
            host.kv("worker", &format!("runs/{id}")).await.as_deref(),
            Some("1"),
            "event {id} ran exactly once"
        );
    }
    println!(
        "swap under load: {} events, 10 swaps, attempts ran on {} distinct versions",
        ids.len(),
        seen_versions.len()
    );
    assert!(
        seen_versions.len() >= 2,
        "attempts show several versions: {seen_versions:?}"
    );
    assert!(ids.len() >= 55);
    Arc::into_inner(host).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_are_stopped_with_a_precise_reason_while_the_host_keeps_working() {
    let env = TestEnv::new();
    let retry = "[retry]\nmax_attempts = 2\ninitial_backoff_ms = 50\nmax_backoff_ms = 100\n";
    let misbehave = |mode: &str, limits: &str| {
        format!(
            "[limits]\nmax_concurrency = 1\n{limits}\n{retry}\n[config]\nmode = \"{mode}\"\nsleep_ms = \"5000\"\n"
        )
    };
    let bad: [(&str, &str, String); 8] = [
        (
            "loop",
            plugins::TEST_MISBEHAVE,
            misbehave("loop", "timeout_ms = 400"),
        ),
        (
            "membomb",
            plugins::TEST_MISBEHAVE,
            misbehave("membomb", "memory_mb = 16"),
        ),
        ("stack", plugins::TEST_MISBEHAVE, misbehave("stack", "")),
        (
            "trap",
            plugins::TEST_OUTCOME,
            format!("{retry}\n[config]\noutcome = \"trap\"\n"),
        ),
        (
            "logflood",
            plugins::TEST_MISBEHAVE,
            misbehave("logflood", ""),
        ),
        (
            "gianterror",
            plugins::TEST_MISBEHAVE,
            misbehave("giant-error", ""),
        ),
        (
            "ungranted",
            plugins::TEST_MISBEHAVE,
            misbehave("ungranted", ""),
        ),
        (
            "sleeper",
            plugins::TEST_MISBEHAVE,
            misbehave("sleep", "timeout_ms = 400"),
        ),
    ];
    for (name, component, extra) in &bad {
        env.install_plugin(name, component, &manifest(&format!("bad.{name}"), extra));
    }
    env.install_plugin(
        "good",
        plugins::TEST_OUTCOME,
        &manifest("good.*", OK_MANIFEST),
    );
    let host = env.start().await;

    let mut bad_ids = Vec::new();
    for (name, _, _) in &bad {
        bad_ids.push((
            *name,
            post_id(
                &host,
                &format!("bad-{name}"),
                json!({"type": format!("bad.{name}")}),
            )
            .await,
        ));
    }
    // While they misbehave: ingress keeps answering and the good plugin keeps working.
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut good_ids = Vec::new();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        good_ids.push(post_id(&host, &format!("good-{n}"), json!({"type": "good.tick"})).await);
        latencies.push(t.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut good_done_while_bad = 0;
    for id in &good_ids {
        if host.event(id).await["status"] == "done" {
            good_done_while_bad += 1;
        }
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!(
        "while misbehaving: {} ingress requests, p50 {p50:?}, max {max:?}; good plugin completed {good_done_while_bad} deliveries during the window",
        latencies.len()
    );
    assert!(max < Duration::from_secs(2), "ingress stalled: max {max:?}");
    assert!(
        good_done_while_bad >= latencies.len() / 2,
        "good plugin starved: {good_done_while_bad}/{}",
        latencies.len()
    );

    let mut reasons = BTreeMap::new();
    for (name, id) in &bad_ids {
        let want = if *name == "logflood" { "done" } else { "dead" };
        let e = host.wait_status(id, want, WAIT).await;
        let a = attempts(&e, name);
        reasons.insert(
            *name,
            (
                a.len(),
                a.last().unwrap()["error"].as_str().map(str::to_string),
                a.last().unwrap().clone(),
            ),
        );
    }
    let reason = |name: &str| reasons[name].1.clone().unwrap_or_default();
    for (name, (count, err, _)) in &reasons {
        println!(
            "{name}: {count} attempt(s); last error: {}",
            err.as_deref()
                .map(|e| &e[..e.len().min(160)])
                .unwrap_or("-")
        );
    }
    // Retryable failures are retried up to max_attempts = 2, then dead-lettered.
    for name in ["loop", "membomb", "stack", "trap", "sleeper"] {
        assert_eq!(reasons[name].0, 2, "{name}: retried once, then dead");
    }
    assert!(
        reason("loop").starts_with("cpu_deadline"),
        "{}",
        reason("loop")
    );
    assert!(
        reason("membomb").starts_with("memory_limit"),
        "{}",
        reason("membomb")
    );
    assert!(reason("stack").starts_with("trap: "), "{}", reason("stack"));
    assert!(reason("stack").contains("stack"), "{}", reason("stack"));
    assert!(reason("trap").starts_with("trap: "), "{}", reason("trap"));
    assert!(
        reason("sleeper").starts_with("timeout"),
        "{}",
        reason("sleeper")
    );
    // A permanent failure is dead at once; its 4 MiB error is cut to the cap.
    assert_eq!(reasons["gianterror"].0, 1);
    assert!(
        reason("gianterror").len() < 4096 + 200,
        "{}",
        reason("gianterror").len()
    );
    assert!(reason("gianterror").contains("more bytes cut"));
    // The ungranted call is refused (not a trap), naming the grant.
    assert_eq!(reasons["ungranted"].0, 1);
    assert!(
        reason("ungranted").contains("grants.kv"),
        "{}",
        reason("ungranted")
    );
    // The log flood succeeds with its logs and output capped.
    let flood = &reasons["logflood"].2;
    let logs: Vec<&str> = flood["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let bytes: usize = logs.iter().map(|l| l.len()).sum();
    assert!(bytes < 128 * 1024, "logs kept: {bytes} bytes");
    assert!(
        logs.iter().any(|l| l.contains("more log lines dropped")),
        "{:?}",
        &logs[logs.len() - 3..]
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("[stdout] … ") && l.contains("bytes dropped"))
    );

    // The counters saw it too.
    let list = host.admin_get("/admin/v1/plugins").await.json;
    let stats = |name: &str| {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["stats"]
            .clone()
    };
    assert_eq!(stats("loop")["cpu_deadlines"], 2);
    assert_eq!(stats("membomb")["memory_limits"], 2);
    assert_eq!(stats("stack")["traps"], 2);
    assert_eq!(stats("sleeper")["timeouts"], 2);
    // And every good event is done.
    for id in &good_ids {
        host.wait_status(id, "done", WAIT).await;
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_dir_is_watched_add_replace_half_written_and_remove() {
    let env = TestEnv::new();
    let host = env.start().await;
    let dir = env.plugins_dir();
    let good = wasm(plugins::TEST_OUTCOME);
    let m = manifest("job.*", OK_MANIFEST);

    // Add: both files appear.
    std::fs::write(dir.join("watched.toml"), &m).unwrap();
    std::fs::write(dir.join("watched.wasm"), &good).unwrap();
    let v1 = sha256_hex(&good);
    harness::wait_until("the watcher loads the new plugin", WAIT, || async {
        (loaded_version(&host, "watched").await.as_deref() == Some(v1.as_str())).then_some(())
    })
    .await;
    let id = post_id(&host, "w1", json!({"type": "job.a"})).await;
    host.wait_status(&id, "done", WAIT).await;

    // A half-written component that stays that way: refused, v1 keeps serving.
    let v2 = variant(&good, "v2");
    std::fs::write(dir.join("watched.wasm"), &v2[..v2.len() / 3]).unwrap();
    let refusal = harness::wait_until("the watcher refuses the truncated file", WAIT, || async {
        let list = host.admin_get("/admin/v1/plugins").await.json;
        list["refused"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "watched")
            .map(|r| r["reason"].to_string())
    })
    .await;
    assert!(
        refusal.contains("not a valid WebAssembly component"),
        "{refusal}"
    );
    assert_eq!(
        loaded_version(&host, "watched").await.as_deref(),
        Some(v1.as_str())
    );
    let id = post_id(&host, "w2", json!({"type": "job.a"})).await;
    let e = host.wait_status(&id, "done", WAIT).await;
    assert_eq!(attempts(&e, "watched")[0]["plugin_version"], v1.as_str());

    // The write completes (the usual way: temp file + rename): v2 is swapped in.
    std::fs::write(dir.join(".watched.wasm.partial"), &v2).unwrap();
    std::fs::rename(dir.join(".watched.wasm.partial"), dir.join("watched.wasm")).unwrap();
    let v2_hash = sha256_hex(&v2);
    harness::wait_until("the watcher swaps in v2", WAIT, || async {
        (loaded_version(&host, "watched").await.as_deref() == Some(v2_hash.as_str())).then_some(())
    })
    .await;
    let list = host.admin_get("/admin/v1/plugins").await.json;
    assert_eq!(
        list["refused"],
        json!([]),
        "a loaded version clears the refusal"
    );

    // A manifest-only change reloads too.
    std::fs::write(
        dir.join("watched.toml"),
        manifest(
            "job.*",
            "[limits]\nmax_concurrency = 2\n\n[config]\noutcome = \"ok\"\n",
        ),
    )
    .unwrap();
    harness::wait_until("the watcher reloads the manifest", WAIT, || async {
        let p = host.admin_get("/admin/v1/plugins/watched").await.json;
        (p["limits"]["max_concurrency"] == 2).then_some(())
    })
    .await;

    // Remove: files gone → unloaded; new events get no delivery for it.
    std::fs::remove_file(dir.join("watched.wasm")).unwrap();
    std::fs::remove_file(dir.join("watched.toml")).unwrap();
    harness::wait_until("the watcher unloads the plugin", WAIT, || async {
        loaded_version(&host, "watched")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    host.stop().await;
}

async fn timed_start(env: &TestEnv) -> (TestHost, Duration) {
    let started = Instant::now();
    let host = env.start().await;
    (host, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_warm_compile_cache_is_faster_and_a_corrupt_entry_is_recompiled() {
    const PLUGINS: usize = 10;
    let env = TestEnv::new();
    let base = wasm(plugins::TEST_OUTCOME);
    for i in 0..PLUGINS {
        // Distinct bytes: each plugin is compiled on its own, as real plugins are.
        let path = env.dir.path().join(format!("p{i}.wasm"));
        std::fs::write(&path, variant(&base, &format!("p{i}"))).unwrap();
        env.install_plugin(
            &format!("p{i}"),
            path.to_str().unwrap(),
            &manifest("job.*", OK_MANIFEST),
        );
    }
    let loads = |list: &Value| -> (usize, f64) {
        let plugins = list["plugins"].as_array().unwrap();
        let cached = plugins
            .iter()
            .filter(|p| p["load"]["from_cache"] == true)
            .count();
        let ms = plugins
            .iter()
            .map(|p| p["load"]["ms"].as_f64().unwrap())
            .sum();
        (cached, ms)
    };

    let (host, cold) = timed_start(&env).await;
    let (cold_cached, cold_ms) = loads(&host.admin_get("/admin/v1/plugins").await.json);
    host.stop().await;
    let (host, warm) = timed_start(&env).await;
    let (warm_cached, warm_ms) = loads(&host.admin_get("/admin/v1/plugins").await.json);
    let id = post_id(&host, "warm", json!({"type": "job.x"})).await;
    host.wait_status(&id, "done", WAIT).await;
    host.stop().await;
    println!(
        "{PLUGINS} plugins: cold start {cold:?} (compile {cold_ms:.0} ms, {cold_cached} cached), warm start {warm:?} (load {warm_ms:.0} ms, {warm_cached} cached)"
    );
    assert_eq!((cold_cached, warm_cached), (0, PLUGINS));
    assert!(
        warm_ms * 2.0 < cold_ms,
        "warm {warm_ms} ms vs cold {cold_ms} ms"
    );
    assert!(warm < cold, "warm {warm:?} vs cold {cold:?}");

    // Corrupt one entry (flip a byte) and truncate another: both are recompiled.
    let cache_dir = env.data_dir().join("compile-cache");
    let mut entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), PLUGINS);
    let mut data = std::fs::read(&entries[0]).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&entries[0], &data).unwrap();
    let data = std::fs::read(&entries[1]).unwrap();
    std::fs::write(&entries[1], &data[..data.len() / 2]).unwrap();
    let (host, _) = timed_start(&env).await;
    let (cached, _) = loads(&host.admin_get("/admin/v1/plugins").await.json);
    assert_eq!(cached, PLUGINS - 2);
    let id = post_id(&host, "after-corruption", json!({"type": "job.x"})).await;
    let e = host.wait_status(&id, "done", WAIT).await;
    assert_eq!(e["deliveries"].as_array().unwrap().len(), PLUGINS);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_flood_is_held_to_the_plugins_rate_limit() {
    let env = TestEnv::new();
    env.install_plugin(
        "flood",
        plugins::TEST_MISBEHAVE,
        &manifest(
            "job.flood",
            "[limits]\ntool_calls_per_second = 50\n\n[retry]\nmax_attempts = 1\n\n[grants]\nkv = true\n\n[config]\nmode = \"toolflood\"\n",
        ),
    );
    let host = env.start().await;
    let id = post_id(&host, "flood-1", json!({"type": "job.flood"})).await;
    let e = host.wait_status(&id, "dead", WAIT).await;
    let a = attempts(&e, "flood");
    let err = a[0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("limited") && err.contains("limits.tool_calls_per_second"),
        "{err}"
    );
    // The limit is visible to the operator.
    let p = host.admin_get("/admin/v1/plugins/flood").await;
    assert_eq!(
        p.json["limits"]["tool_calls_per_second"], 50,
        "{:?}",
        p.json
    );
    host.stop().await;
}
