//! Cluster mode: several real `agenthook` binaries on one NATS JetStream deployment
//! (real `nats-server` processes, 3 nodes, replicas 3). Hosts share the work, run each
//! delivery once at a time, take over the leases of a host killed with `kill -9`, keep
//! every acknowledged event through the loss of a NATS node, and store an event sent to
//! two hosts once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{NatsStore, TestEnv, TestHost, manifest, plugins, wait_until};
use crate::nats::{self, NatsCluster};
use crate::servers::{ApiServer, Reply};

const WAIT: Duration = Duration::from_secs(120);

/// A sink that counts the forward plugin's POSTs per event (`x-agenthook-event-id`).
async fn sink() -> ApiServer {
    ApiServer::start(|_, _| Reply::json(200, json!({"ok": true}))).await
}

fn runs_per_event(sink: &ApiServer) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for r in sink.requests() {
        let id = r
            .headers
            .get("x-agenthook-event-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        *runs.entry(id).or_default() += 1;
    }
    runs
}

/// An env for host `name` of the deployment `prefix` on `urls`, with the forward
/// plugin relaying to `sink`.
fn host_env(urls: &[String], prefix: &str, name: &str, sink: &ApiServer) -> TestEnv {
    let mut env = TestEnv::new();
    env.nats = Some(NatsStore {
        urls: urls.to_vec(),
        prefix: prefix.into(),
        host: name.into(),
        replicas: 3,
    });
    env.install_plugin(
        "forward",
        plugins::FORWARD,
        &manifest(
            "job.*",
            &format!(
                "[limits]\ntimeout_ms = 2000\n\n[retry]\nmax_attempts = 20\ninitial_backoff_ms = 50\nmax_backoff_ms = 500\n\n[grants]\nhttp = [\"{}\"]\n\n[config]\ntarget_url = \"{}\"\n",
                sink.origin(),
                sink.url("/sink")
            ),
        ),
    );
    env
}

/// `agenthook_attempts_total` of `plugin` with outcome `done` on one host.
async fn done_attempts(host: &TestHost, plugin: &str) -> u64 {
    let (status, _, text) = host.get_text(host.admin, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with("agenthook_attempts_total{"))
        .filter(|l| l.contains(&format!("plugin=\"{plugin}\"")) && l.contains("outcome=\"done\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// POST `n` events named `{tag}-{i}` round-robin over `hosts`; returns the acked ones.
async fn spread(hosts: &[Arc<TestHost>], tag: &str, n: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..n {
        let host = hosts[i % hosts.len()].clone();
        let sem = sem.clone();
        let id = format!("{tag}-{i}");
        tasks.spawn(async move {
            let _p = sem.acquire().await;
            let r = host
                .post_signed(&id, &json!({"type": "job.run", "sid": id}))
                .await;
            (r.status == 200).then_some(id)
        });
    }
    let mut acked = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(id) = r.unwrap() {
            acked.push(id);
        }
    }
    acked
}

/// The sender's ids (`sid` in the body) of every event the sink received.
fn forwarded(sink: &ApiServer) -> std::collections::HashSet<String> {
    sink.requests()
        .iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            Some(v["sid"].as_str()?.to_string())
        })
        .collect()
}

/// Wait until the sink received every one of `ids` (the sender's event ids).
async fn wait_all_forwarded(sink: &ApiServer, ids: &[String], what: &str) {
    wait_until(what, WAIT, || async {
        let seen = forwarded(sink);
        ids.iter().all(|id| seen.contains(id)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_the_work_and_run_each_delivery_once() {
    let cluster = nats::shared();
    let prefix = nats::fresh_prefix();
    let sink = sink().await;
    let envs: Vec<TestEnv> = ["a", "b", "c"]
        .iter()
        .map(|n| host_env(&cluster.urls(), &prefix, n, &sink))
        .collect();
    let mut hosts = Vec::new();
    for env in &envs {
        hosts.push(Arc::new(env.start_binary().await));
    }
    let n = 300;
    let acked = spread(&hosts, "spread", n).await;
    assert_eq!(acked.len(), n, "every host acknowledges");
    wait_all_forwarded(&sink, &acked, "every event is forwarded").await;
    // Every delivery is done, seen from any host.
    for host in &hosts {
        wait_until(
            "every delivery is done on every host's view",
            WAIT,
            || async {
                let r = host
                    .admin_get("/admin/v1/events?status=pending&limit=1")
                    .await;
                let pending = r.json["events"].as_array().map_or(1, Vec::len);
                let r = host
                    .admin_get("/admin/v1/events?status=retrying&limit=1")
                    .await;
                let retrying = r.json["events"].as_array().map_or(1, Vec::len);
                (pending + retrying == 0).then_some(())
            },
        )
        .await;
    }
    let runs = runs_per_event(&sink);
    let duplicates: usize = runs.values().map(|r| r - 1).sum();
    let mut shares = Vec::new();
    for host in &hosts {
        shares.push(done_attempts(host, "forward").await);
    }
    println!(
        "cluster spread: {n} events over 3 hosts; runs per host {shares:?}; {duplicates} duplicate runs"
    );
    assert_eq!(runs.len(), n, "every event reached the sink");
    assert_eq!(
        duplicates, 0,
        "no delivery ran twice without a failure: {runs:?}"
    );
    assert_eq!(shares.iter().sum::<u64>(), n as u64, "{shares:?}");
    assert!(
        shares.iter().all(|&s| s > 0),
        "every host did work: {shares:?}"
    );
    for host in hosts {
        Arc::try_unwrap(host).ok().unwrap().stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_sent_to_two_hosts_is_stored_once() {
    let cluster = nats::shared();
    let prefix = nats::fresh_prefix();
    let sink = sink().await;
    let a_env = host_env(&cluster.urls(), &prefix, "a", &sink);
    let b_env = host_env(&cluster.urls(), &prefix, "b", &sink);
    let a = Arc::new(a_env.start().await);
    let b = Arc::new(b_env.start().await);
    // The same ids to both hosts at the same moment, and again later.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        for host in [a.clone(), b.clone()] {
            tasks.spawn(async move {
                let sid = format!("twice-{i}");
                let r = host
                    .post_signed(&sid, &json!({"type": "job.run", "sid": sid}))
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.json);
                (i, r.json["id"].as_str().unwrap().to_string())
            });
        }
    }
    let mut ids: HashMap<i32, Vec<String>> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (i, id) = r.unwrap();
        ids.entry(i).or_default().push(id);
    }
    for (i, got) in &ids {
        assert_eq!(
            got[0], got[1],
            "event {i}: both hosts answer with one stored id"
        );
    }
    let later = b
        .post_signed("twice-0", &json!({"type": "job.run", "sid": "twice-0"}))
        .await;
    assert_eq!(later.json["status"], "duplicate", "{:?}", later.json);
    assert_eq!(later.json["id"].as_str().unwrap(), ids[&0][0]);
    wait_all_forwarded(
        &sink,
        &(0..40).map(|i| format!("twice-{i}")).collect::<Vec<_>>(),
        "every event is forwarded",
    )
    .await;
    assert_eq!(a.all_events().await.len(), 40);
    assert_eq!(b.all_events().await.len(), 40);
    let runs = runs_per_event(&sink);
    assert_eq!(runs.len(), 40);
    assert!(runs.values().all(|&r| r == 1), "{runs:?}");
    for host in [a, b] {
        Arc::try_unwrap(host).ok().unwrap().stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_host_mid_load_loses_no_acknowledged_event() {
    let cluster = nats::shared();
    let prefix = nats::fresh_prefix();
    let sink = sink().await;
    let envs: Vec<TestEnv> = ["a", "b", "c"]
        .iter()
        .map(|n| host_env(&cluster.urls(), &prefix, n, &sink))
        .collect();
    let mut hosts = Vec::new();
    for env in &envs {
        hosts.push(Arc::new(env.start_binary().await));
    }
    let first = spread(&hosts, "before", 150).await;
    assert_eq!(first.len(), 150);
    // kill -9 host c while its dispatcher is busy; then load the other two.
    let c = hosts.pop().unwrap();
    Arc::try_unwrap(c).ok().unwrap().kill9().await;
    let second = spread(&hosts, "after", 150).await;
    assert_eq!(second.len(), 150, "the surviving hosts acknowledge");
    let all: Vec<String> = first.into_iter().chain(second).collect();
    wait_all_forwarded(&sink, &all, "every acknowledged event is done").await;
    let runs = runs_per_event(&sink);
    let duplicates: usize = runs.values().map(|r| r - 1).sum();
    println!(
        "cluster kill -9 host: {} events acked, all done; {duplicates} duplicate runs (deliveries the killed host had started)",
        all.len()
    );
    assert_eq!(runs.len(), all.len());
    for host in hosts {
        Arc::try_unwrap(host).ok().unwrap().stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_nats_node_mid_load_loses_nothing_acknowledged() {
    // Its own cluster: the other tests share theirs, and this one kills a node.
    let cluster = NatsCluster::start(3);
    let prefix = nats::fresh_prefix();
    let sink = sink().await;
    let envs: Vec<TestEnv> = ["a", "b"]
        .iter()
        .map(|n| host_env(&cluster.urls(), &prefix, n, &sink))
        .collect();
    let mut hosts = Vec::new();
    for env in &envs {
        hosts.push(Arc::new(env.start_binary().await));
    }
    let killed = Arc::new(AtomicBool::new(false));
    let load = {
        let hosts = hosts.clone();
        let killed = killed.clone();
        tokio::spawn(async move {
            let mut acked_after_kill = 0;
            let mut acked = Vec::new();
            let mut refused = 0;
            for i in 0..400 {
                let host = &hosts[i % hosts.len()];
                let id = format!("node-{i}");
                let r = host
                    .post_signed(&id, &json!({"type": "job.run", "sid": id}))
                    .await;
                if r.status == 200 {
                    acked.push(id);
                    if killed.load(Ordering::Relaxed) {
                        acked_after_kill += 1;
                    }
                } else {
                    refused += 1;
                }
            }
            (acked, acked_after_kill, refused)
        })
    };
    // Kill a node once some events are in.
    wait_until("some events are stored", WAIT, || async {
        (sink.requests().len() >= 50).then_some(())
    })
    .await;
    cluster.kill9(0);
    killed.store(true, Ordering::Relaxed);
    let (acked, acked_after_kill, refused) = load.await.unwrap();
    println!(
        "cluster kill -9 NATS node: {} acked ({acked_after_kill} after the kill), {refused} refused",
        acked.len()
    );
    assert!(
        acked_after_kill >= 100,
        "ingest continues after the node is gone: {acked_after_kill} acked after the kill"
    );
    wait_all_forwarded(&sink, &acked, "every acknowledged event is forwarded").await;
    let seen = forwarded(&sink);
    for id in &acked {
        assert!(
            seen.contains(id),
            "{id} was acknowledged but never delivered"
        );
    }
    for host in hosts {
        Arc::try_unwrap(host).ok().unwrap().stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_one_host_runs_on_every_host() {
    let cluster = nats::shared();
    let prefix = nats::fresh_prefix();
    let envs: Vec<TestEnv> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let mut env = TestEnv::new();
            env.nats = Some(NatsStore {
                urls: cluster.urls(),
                prefix: prefix.clone(),
                host: (*n).into(),
                replicas: 3,
            });
            env
        })
        .collect();
    let mut hosts = Vec::new();
    for env in &envs {
        hosts.push(Arc::new(env.start_binary().await));
    }
    let wasm = std::fs::read(plugins::TEST_OUTCOME).unwrap();
    let r = hosts[0]
        .deploy(
            "job-ok",
            &manifest("job.*", "[config]\noutcome = \"ok\"\n"),
            &wasm,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let version = r.json["plugin"]["version"]
        .as_str()
        .or(r.json["version"].as_str())
        .map(str::to_string);
    // Every host loads it (same validation), and any host's list shows every host's
    // version.
    for host in &hosts {
        wait_until("every host lists what every host runs", WAIT, || async {
            let r = host.admin_get("/admin/v1/plugins").await;
            let p = r.json["plugins"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "job-ok")?
                .clone();
            let running = p["hosts"].as_object()?;
            let all = ["a", "b", "c"]
                .iter()
                .all(|h| running.get(*h).and_then(|v| v.as_str()) == p["version"].as_str());
            all.then_some(())
        })
        .await;
    }
    if let Some(v) = version {
        let r = hosts[2].admin_get("/admin/v1/plugins").await;
        assert!(r.json.to_string().contains(&v));
    }
    // `agenthook plugin list` from any host shows the version on every host.
    let listed = hosts[1].cli(&["plugin", "list"]);
    for h in ["a", "b", "c"] {
        assert!(listed.contains(&format!("{h}=")), "{listed}");
    }
    assert!(!listed.contains("(not loaded)"), "{listed}");
    // Events sent to B and C run there too.
    let ids = spread(&hosts[1..], "deployed", 60).await;
    assert_eq!(ids.len(), 60);
    let mut runs = Vec::new();
    for host in &hosts {
        runs.push(done_attempts(host, "job-ok").await);
    }
    wait_until("all 60 are done", WAIT, || async {
        let mut total = 0;
        for host in &hosts {
            total += done_attempts(host, "job-ok").await;
        }
        (total >= 60).then_some(())
    })
    .await;
    runs.clear();
    for host in &hosts {
        runs.push(done_attempts(host, "job-ok").await);
    }
    println!("cluster deploy: runs per host after a deploy through a: {runs:?}");
    assert!(runs[1] + runs[2] > 0, "{runs:?}");
    // /metrics names the host; status lists every host.
    let (_, _, text) = hosts[1].get_text(hosts[1].admin, "/metrics").await;
    assert!(
        text.contains("host=\"b\""),
        "{}",
        &text[..text.len().min(2000)]
    );
    let status = hosts[0].admin_get("/admin/v1/status").await;
    assert_eq!(status.json["cluster"]["host"], "a");
    assert_eq!(
        status.json["cluster"]["hosts"].as_array().map(Vec::len),
        Some(3),
        "{:?}",
        status.json["cluster"]
    );
    // A removal through C reaches A and B.
    let r = hosts[2]
        .request(
            http::Method::DELETE,
            hosts[2].admin,
            "/admin/v1/plugins/job-ok",
            &[("authorization", format!("Bearer {}", crate::harness::TOKEN))],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json);
    for host in &hosts[..2] {
        wait_until("the removal reaches every host", WAIT, || async {
            let r = host.admin_get("/admin/v1/plugins/job-ok").await;
            (r.status == 404).then_some(())
        })
        .await;
    }
    for host in hosts {
        Arc::try_unwrap(host).ok().unwrap().stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_chain_runs_across_hosts() {
    let cluster = nats::shared();
    let prefix = nats::fresh_prefix();
    let sink = sink().await;
    let envs: Vec<TestEnv> = ["a", "b"]
        .iter()
        .map(|n| {
            let mut env = TestEnv::new();
            env.nats = Some(NatsStore {
                urls: cluster.urls(),
                prefix: prefix.clone(),
                host: (*n).into(),
                replicas: 3,
            });
            // `emitter` turns each demo event into a `chain.next` event; `relay`
            // (subscribed to what emitter emits) forwards those to the sink.
            env.install_plugin(
                "emitter",
                plugins::TEST_TOOL_PROBE,
                &manifest("probe.*", "[grants]\nkv = true\nemit = [\"chain.*\"]\n"),
            );
            env.install_plugin(
                "relay",
                plugins::FORWARD,
                &format!(
                    "[[subscribe]]\nsource = \"plugin:emitter\"\ntypes = [\"chain.*\"]\n\n[grants]\nhttp = [\"{}\"]\n\n[config]\ntarget_url = \"{}\"\n",
                    sink.origin(),
                    sink.url("/sink")
                ),
            );
            env
        })
        .collect();
    let mut hosts = Vec::new();
    for env in &envs {
        hosts.push(Arc::new(env.start_binary().await));
    }
    let mut tasks = tokio::task::JoinSet::new();
    let ids: Vec<String> = (0..60).map(|i| format!("chain-{i}")).collect();
    for (i, sid) in ids.iter().enumerate() {
        let host = hosts[i % 2].clone();
        let sid = sid.clone();
        tasks.spawn(async move {
            let body = json!({"type": "probe.start", "emit": [{"type": "chain.next", "body": {"sid": sid}}]});
            let r = host.post_signed(&sid, &body).await;
            assert_eq!(r.status, 200, "{:?}", r.json);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    wait_all_forwarded(&sink, &ids, "every emitted event reaches the relay").await;
    let runs = runs_per_event(&sink);
    assert_eq!(runs.len(), 60);
    assert!(runs.values().all(|&r| r == 1), "{runs:?}");
    let mut relayed = Vec::new();
    for host in &hosts {
        relayed.push(done_attempts(host, "relay").await);
    }
    println!("cluster emit chain: relay runs per host {relayed:?}");
    assert_eq!(relayed.iter().sum::<u64>(), 60);
    assert!(
        relayed.iter().all(|&n| n > 0),
        "emitted events run on both hosts: {relayed:?}"
    );
    for host in hosts {
        Arc::try_unwrap(host).ok().unwrap().stop().await;
    }
}
