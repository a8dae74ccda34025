//! Scenario 9, `ordering`: a plugin with `[ordering] key` drains the same backlog with
//! its events spread over 20 keys vs all on one key (the baseline, in the same run).
//! The handler (`test-ordered`) waits 20 ms per event, as an agent waiting on an API
//! or a model would; `limits.max_concurrency = 8`. One key runs strictly one event at
//! a time; 20 keys may run 8 at once.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use serde_json::json;
use sha2::Sha256;

use crate::load;
use crate::report::{Section, f, ratio};
use crate::server::HostSpec;
use crate::suite::Suite;

const DELAY_MS: u64 = 20;
const CONCURRENCY: u32 = 8;

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let wasm = std::fs::read(crate::overhead::build_test_plugin("test-ordered")?)
        .context("cannot read the test-ordered component")?;
    let events: u64 = if suite.opts.quick { 200 } else { 1000 };
    let manifest = format!(
        "[[subscribe]]\nsource = \"bench\"\n\n[ordering]\nkey = \"/data/customer\"\n\n[limits]\nmax_concurrency = {CONCURRENCY}\ntimeout_ms = 10000\n\n[grants]\nkv = true\n"
    );
    let spec = HostSpec {
        plugins: vec![("ordered".into(), wasm, manifest)],
        ..HostSpec::default()
    };
    let mut results = Vec::new();
    for keys in [1u64, 20] {
        results.push((keys, drain(suite, &spec, events, keys).await?));
    }
    let (one, many) = (results[0].1, results[1].1);
    let rows = results
        .iter()
        .map(|(keys, rate)| {
            vec![
                format!("{events} events over {keys} key(s)"),
                f(*rate, 1),
                ratio(*rate, one),
            ]
        })
        .collect();
    suite.report.add(Section {
        key: "ordering",
        title: "9. Ordering keys: 20 keys vs one key".into(),
        notes: vec![format!(
            "`test-ordered` with `[ordering] key = \"/data/customer\"`, `limits.max_concurrency = {CONCURRENCY}`, each event handled in ~{DELAY_MS} ms (a sleep: an agent waiting on I/O). The events are posted first (20 senders), then the time from the first post to the last done is measured; baseline: the same events all on one key, in the same run. One key also runs each event's commits (its kv write, its outcome) one after another, where 20 keys share them through group commit, so the ratio can pass the concurrency ({CONCURRENCY}x)."
        )],
        header: vec!["backlog", "events/s (first post → last done)", "vs one key"],
        rows,
        json: json!({"events": events, "one_key_per_s": one, "twenty_keys_per_s": many, "ratio": many / one}),
    });
    suite.report.target(
        "ordering: 20 keys drain well above one key's rate",
        format!("{:.1}x", many / one),
        many / one >= 3.0,
    );
    Ok(())
}

/// Post `events` spread over `keys` keys, wait until the plugin finished them all, and
/// return events per second from the first post to the last done.
async fn drain(suite: &Suite, spec: &HostSpec, events: u64, keys: u64) -> anyhow::Result<f64> {
    let server = suite.host(spec).await?;
    let key = load::key();
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..20u64 {
        let (addr, key) = (server.ingress, key.clone());
        senders.spawn(async move {
            let mut conn = load::connect(addr).await.context("cannot connect")?;
            for n in (s..events).step_by(20) {
                let id = format!("ord-{keys}-{n}");
                let body = json!({
                    "type": "bench.ordered",
                    "data": {"customer": format!("cus_{}", n % keys)},
                    "seq": n,
                    "delay_ms": DELAY_MS,
                })
                .to_string();
                let req = signed(&key, &id, body, addr)?;
                conn.ready().await.context("connection")?;
                let resp = conn.send_request(req).await.context("post")?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "ingest answered {}",
                    resp.status()
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = senders.join_next().await {
        r??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let view = server.admin_get("/admin/v1/plugins/ordered").await?;
        if view["stats"]["done"].as_u64().unwrap_or(0) >= events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the backlog did not drain in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    server.stop().await?;
    Ok(events as f64 / took.as_secs_f64())
}

fn signed(
    key: &[u8],
    id: &str,
    body: String,
    addr: std::net::SocketAddr,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let ts = agenthook::clock::now_ms() / 1000;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).context("key")?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    Ok(http::Request::post(format!("http://{addr}/hooks/bench"))
        .header("host", addr.to_string())
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", format!("v1,{sig}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?)
}
