//! Scenario 8, `console`: the web console's pages on a store holding N events
//! (1 million; 100,000 with `--quick`), filled like scenario 6. Each page is requested
//! one at a time on a keep-alive connection with a signed-in session; the baseline is
//! the admin API's JSON for the same query on the same host, in the same run (the
//! console's own cost over the store read both share).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::history;
use crate::load;
use crate::report::{Section, f, ratio};
use crate::server::{self, ADMIN_TOKEN, HostSpec};
use crate::suite::Suite;

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let n = suite.opts.history_events;
    let requests = if suite.opts.quick { 50 } else { 200 };
    let dir = server::scratch()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let started = Instant::now();
    history::fill(&data, n, suite.opts.size).await?;
    println!(
        "console: stored {n} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let host = suite
        .host(&HostSpec {
            data_dir: Some(data.clone()),
            ..HostSpec::default()
        })
        .await?;
    let admin = host.admin.context("the host has no admin listener")?;
    let cookie = sign_in(admin).await?;
    let middle = (n / 2).to_string();
    let recent_id = format!("fill-{}", n.saturating_sub(10));
    // (what, console path, API path)
    let queries = [
        (
            "events, newest 50".to_string(),
            "/ui/events".to_string(),
            "/admin/v1/events".to_string(),
        ),
        (
            format!("events, 50 from the middle (cursor {middle})"),
            format!("/ui/events?cursor={middle}"),
            format!("/admin/v1/events?cursor={middle}"),
        ),
        (
            "events by sender's id (a rare filter: scans 50,000 events)".to_string(),
            format!("/ui/events?event_id={recent_id}"),
            format!("/admin/v1/events?event_id={recent_id}"),
        ),
        (
            "dead letters (none: scans 50,000 events)".to_string(),
            "/ui/dlq".to_string(),
            "/admin/v1/dlq".to_string(),
        ),
        (
            "overview".to_string(),
            "/ui".to_string(),
            "/admin/v1/status".to_string(),
        ),
    ];
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for (what, page, api) in &queries {
        let ui = measure(admin, page, ("cookie", &cookie), requests).await?;
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let base = measure(admin, api, ("authorization", &bearer), requests).await?;
        println!(
            "console: {what}: p50 {:.2} ms, p99 {:.2} ms (API p50 {:.2} ms)",
            ui.p(0.5),
            ui.p(0.99),
            base.p(0.5)
        );
        rows.push(vec![
            what.clone(),
            f(ui.p(0.5), 2),
            f(ui.p(0.99), 2),
            f(ui.bytes as f64 / 1024.0, 1),
            f(base.p(0.5), 2),
            f(base.p(0.99), 2),
            ratio(ui.p(0.5), base.p(0.5)),
        ]);
        figures.push(json!({
            "query": what, "page": page, "api": api,
            "console_ms": { "p50": ui.p(0.5), "p99": ui.p(0.99) },
            "api_ms": { "p50": base.p(0.5), "p99": base.p(0.99) },
            "page_bytes": ui.bytes,
        }));
    }
    host.stop().await?;
    suite.report.add(Section {
        key: "console",
        title: format!("8. Console pages with {n} events stored"),
        notes: vec![format!(
            "{requests} GETs per page, one at a time on a keep-alive connection, signed in; baseline: the admin API's JSON for the same query on the same host in the same run. The store filled as in scenario 6 (no deliveries, so the dead-letter page scans its 50,000-event limit and offers a cursor)."
        )],
        header: vec![
            "page",
            "console p50 ms",
            "p99 ms",
            "page KiB",
            "API p50 ms",
            "API p99 ms",
            "console / API (p50)",
        ],
        rows,
        json: json!({ "stored_events": n, "requests": requests, "pages": figures }),
    });
    Ok(())
}

struct Timings {
    ms: Vec<f64>,
    bytes: usize,
}

impl Timings {
    fn p(&self, q: f64) -> f64 {
        let i = ((self.ms.len() as f64 - 1.0) * q).round() as usize;
        self.ms.get(i).copied().unwrap_or(0.0)
    }
}

async fn measure(
    addr: SocketAddr,
    path: &str,
    auth: (&str, &str),
    requests: usize,
) -> anyhow::Result<Timings> {
    let mut sender = load::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let mut ms = Vec::with_capacity(requests);
    let mut bytes = 0;
    for i in 0..requests + 5 {
        let req = http::Request::get(path)
            .header("host", addr.to_string())
            .header(auth.0, auth.1)
            .body(Full::new(Bytes::new()))?;
        let t = Instant::now();
        sender
            .ready()
            .await
            .with_context(|| format!("GET {path}: the connection closed"))?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let took = t.elapsed();
        if status != 200 {
            bail!("GET {path}: {status}");
        }
        // The first five warm the connection and caches.
        if i >= 5 {
            ms.push(took.as_secs_f64() * 1000.0);
            bytes = body.len();
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timings { ms, bytes })
}

/// Sign in to the console; returns the `Cookie` header value.
async fn sign_in(addr: SocketAddr) -> anyhow::Result<String> {
    let mut sender = load::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let req = http::Request::post("/ui/login")
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("token={ADMIN_TOKEN}"))))?;
    sender
        .ready()
        .await
        .context("sign-in: the connection closed")?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .context("sign-in timed out")??;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .context("the console's sign-in set no cookie (is /ui in this binary?)")?;
    Ok(cookie)
}
