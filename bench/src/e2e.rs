//! Scenario 2, `e2e`: ingest + dispatch to a trivial plugin (`test-noop`) until every
//! delivery is `done`.
//!
//! - Sustained rate: a closed-loop burst at c=64, then the host drains its queue; the
//!   rate is events done / (last done − first received), read from the store, so a
//!   dispatcher slower than ingress is charged for its backlog.
//! - received→done per event, from what the host itself records: the event's
//!   `received_at_ms` (stamped by ingress once the body is read) and the `done`
//!   attempt's `started_at_ms + duration_ms` (when the handler returned). Millisecond
//!   resolution; the commit that records the outcome comes after and is not included.
//!   Measured at 50% and 90% of the sustained rate, open loop.
//!
//! The store is read after the host stopped (SIGTERM drains in-flight attempts), through
//! the host library's own `Store` API.

use std::path::Path;
use std::time::{Duration, Instant};

use agenthook::store::{DeliveryStatus, EventFilter, Store};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::ingest;
use crate::latency::CONNECTIONS;
use crate::load::{self, LoadResult};
use crate::report::{Section, f, ratio};
use crate::server::{HostSpec, Server};
use crate::suite::Suite;

/// How long the queue may take to drain after the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// What the store says about one run.
#[derive(Debug)]
pub(crate) struct Completion {
    events: u64,
    /// Events whose delivery is not `done` (should be 0).
    not_done: u64,
    /// First received → last done, ms.
    span_ms: u64,
    /// First → last received, ms: while the load was on.
    load_ms: u64,
    /// Events done by the time the last one was received.
    done_during_load: u64,
    /// received→done, ms.
    latency: Histogram<u64>,
    /// received→start of the `done` attempt (queueing, wake-up and lease), ms.
    to_start: Histogram<u64>,
}

impl Completion {
    /// Burst and drain: events done / (first received → last done).
    fn rate(&self) -> f64 {
        self.events.saturating_sub(self.not_done) as f64 * 1000.0 / self.span_ms.max(1) as f64
    }
    /// Completions per second while events were still arriving: what the dispatcher
    /// sustains next to ingest (after the load it drains faster, with ingress idle).
    pub(crate) fn sustained(&self) -> f64 {
        self.done_during_load as f64 * 1000.0 / self.load_ms.max(1) as f64
    }
    pub(crate) fn q(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

/// One measured run and what it completed.
pub(crate) struct Run {
    pub(crate) load: LoadResult,
    pub(crate) done: Completion,
    drain: Duration,
    memory: crate::server::Memory,
}

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    ingest::ensure_max(suite).await?;
    let (ingest_max, plain_max) = suite
        .max
        .as_ref()
        .map(|m| (m.agenthook.load.rate(), m.plain.load.rate()))
        .unwrap_or((0.0, 0.0));
    let wasm = suite.noop()?;
    let manifest = format!(
        "[[subscribe]]\nsource = \"bench\"\n\n[limits]\nmax_concurrency = {}\n",
        suite.opts.plugin_concurrency
    );
    let spec = HostSpec {
        plugins: vec![("noop".into(), wasm, manifest)],
        ..HostSpec::default()
    };
    let (duration, size) = (suite.opts.duration(), suite.opts.size);

    let max = measure(suite, &spec, None, duration, size).await?;
    let sustained = max.done.sustained();
    suite.e2e_rate = Some(sustained);
    suite
        .loaded_memory
        .push(("agenthook, end to end at max load".into(), max.memory));
    let mut runs = vec![("max: closed loop c=64".to_string(), None, max)];
    for share in [0.5, 0.9] {
        let rate = sustained * share;
        let r = measure(suite, &spec, Some(rate), duration, size).await?;
        runs.push((
            format!("{:.0}% of max: open loop {rate:.0}/s", share * 100.0),
            Some(rate),
            r,
        ));
    }
    if !suite.opts.quick {
        // The manifest default, for contrast: a 1 s burst (its drain is slow).
        let default_spec = HostSpec {
            plugins: vec![(
                "noop".into(),
                suite.noop()?,
                "[[subscribe]]\nsource = \"bench\"\n".into(),
            )],
            ..HostSpec::default()
        };
        let burst = duration.min(Duration::from_secs(1));
        let r = measure(suite, &default_spec, None, burst, size).await?;
        runs.push((
            format!(
                "max with the manifest default max_concurrency = 4: closed loop c=64, {} s burst",
                burst.as_secs_f64()
            ),
            None,
            r,
        ));
    }

    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for (label, offered, r) in &runs {
        let d = &r.done;
        rows.push(vec![
            label.clone(),
            f(d.sustained(), 0),
            ratio(d.sustained(), ingest_max),
            ratio(d.sustained(), plain_max),
            f(d.rate(), 0),
            d.q(0.5).to_string(),
            d.q(0.99).to_string(),
            d.q(0.999).to_string(),
            format!(
                "{} / {}",
                d.to_start.value_at_quantile(0.5),
                d.to_start.value_at_quantile(0.99)
            ),
            f(r.load.ms(0.99), 2),
            format!("{:.1}", r.drain.as_secs_f64()),
            format!("{} / {}", r.load.errors, d.not_done),
        ]);
        figures.push(json!({
            "run": label,
            "offered_rate_per_s": offered,
            "events": d.events,
            "not_done": d.not_done,
            "done_per_s_during_load": d.sustained(),
            "done_per_s_burst_and_drain": d.rate(),
            "first_to_last_received_ms": d.load_ms,
            "first_received_to_last_done_ms": d.span_ms,
            "received_to_done_ms": {
                "p50": d.q(0.5), "p90": d.q(0.9), "p99": d.q(0.99), "p99_9": d.q(0.999), "max": d.latency.max(),
            },
            "received_to_attempt_start_ms": {
                "p50": d.to_start.value_at_quantile(0.5), "p99": d.to_start.value_at_quantile(0.99),
            },
            "ingest": r.load.json(),
            "drain_after_load_s": r.drain.as_secs_f64(),
            "host_memory_mib": { "rss_after_load": r.memory.rss_mib(), "peak": r.memory.hwm_mib() },
        }));
    }
    suite.report.add(Section {
        key: "end_to_end",
        title: "2. End to end: ingest + dispatch to a no-op plugin until done".into(),
        notes: vec![
            format!(
                "One plugin (`test-noop`, `limits.max_concurrency = {}` unless the row says otherwise) subscribed to every event; each event is stored, leased, run in a fresh instance and its outcome committed. Done/s during load = events done while events were still arriving / (first → last received): the rate the dispatcher sustains next to ingest (the max row's rate; the open-loop rows are shares of it). Done/s incl. drain = all events / (first received → last done): after the load stops the backlog drains faster, with ingress idle. Both read from the store after the host drained. received→done = the `done` attempt's start + duration − the event's `received_at_ms` (ms resolution; the final outcome commit is not included). {} s of load per row; ratios against scenario 1 at c=64 (agenthook ingest {ingest_max:.0} ev/s, plain hyper {plain_max:.0} req/s).",
                suite.opts.plugin_concurrency,
                duration.as_secs_f64()
            ),
        ],
        header: vec![
            "run",
            "done/s during load",
            "vs agenthook ingest",
            "vs plain hyper",
            "done/s incl. drain",
            "received→done p50 ms",
            "p99 ms",
            "p99.9 ms",
            "received→attempt start p50 / p99 ms",
            "ack p99 ms",
            "drain after load s",
            "failed requests / not done",
        ],
        rows,
        json: json!({ "plugin_max_concurrency": suite.opts.plugin_concurrency, "rows": figures }),
    });
    let r = sustained / plain_max.max(1e-9);
    suite.report.target(
        "end to end ≥ 0.3× plain hyper",
        format!("{r:.2}× ({sustained:.0} vs {plain_max:.0}/s)"),
        r >= 0.3,
    );
    let half = &runs[1].2.done;
    suite.report.target(
        "received→done p99 < 50 ms at 50% load",
        format!("{} ms (p50 {} ms)", half.q(0.99), half.q(0.5)),
        half.q(0.99) < 50,
    );
    Ok(())
}

/// One run on a fresh host: closed loop at c=64 (`rate` None) or open loop at `rate`;
/// then wait until the plugin has finished every acknowledged event, stop the host and
/// read the store.
pub(crate) async fn measure(
    suite: &Suite,
    spec: &HostSpec,
    rate: Option<f64>,
    duration: Duration,
    size: usize,
) -> anyhow::Result<Run> {
    let server = suite.host(spec).await?;
    let calls_before = plugin_done(&server).await?;
    let load = match rate {
        None => {
            load::closed_loop(
                server.ingress,
                "/hooks/bench",
                64,
                duration,
                size,
                "bench.event",
                "run",
            )
            .await
        }
        Some(rate) => {
            load::open_loop(
                server.ingress,
                "/hooks/bench",
                rate,
                duration,
                CONNECTIONS,
                size,
                "bench.event",
                "run",
            )
            .await
        }
    };
    let memory = server.memory()?;
    let stopped_sending = Instant::now();
    loop {
        let done = plugin_done(&server).await?.saturating_sub(calls_before);
        if done >= load.requests {
            break;
        }
        if stopped_sending.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "the plugin finished {done} of {} events within {DRAIN_TIMEOUT:?} after the load",
                load.requests
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = stopped_sending.elapsed();
    let data_dir = server.data_dir.clone();
    let memory = {
        let now = server.memory()?;
        crate::server::Memory {
            rss_kib: memory.rss_kib,
            hwm_kib: now.hwm_kib.max(memory.hwm_kib),
        }
    };
    let dir = server.stop().await?;
    let done = completion(&data_dir).await?;
    drop(dir);
    if done.events != load.requests {
        eprintln!(
            "note: {} events stored, {} requests acknowledged",
            done.events, load.requests
        );
    }
    Ok(Run {
        load,
        done,
        drain,
        memory,
    })
}

/// The `noop` plugin's finished calls so far (admin API).
async fn plugin_done(server: &Server) -> anyhow::Result<u64> {
    let view = server.admin_get("/admin/v1/plugins/noop").await?;
    view["stats"]["done"]
        .as_u64()
        .context("no stats.done in GET /admin/v1/plugins/noop")
}

/// Read every event of a stopped host's store.
async fn completion(data_dir: &Path) -> anyhow::Result<Completion> {
    let store = Store::open(data_dir, &agenthook::config::StoreConfig::default())
        .await
        .context("cannot open the bench host's store")?;
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 86_400_000, 3).context("histogram bounds")?;
    let mut to_start = latency.clone();
    let (mut events, mut not_done) = (0u64, 0u64);
    let (mut first_received, mut last_received, mut last_done) = (u64::MAX, 0u64, 0u64);
    let mut done_times = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_events(&EventFilter::default(), cursor, 1000, usize::MAX)
            .await?;
        for (_, meta, deliveries) in &page.events {
            events += 1;
            first_received = first_received.min(meta.received_at_ms);
            last_received = last_received.max(meta.received_at_ms);
            let last_attempt = deliveries
                .iter()
                .filter(|d| d.status == DeliveryStatus::Done)
                .filter_map(|d| d.attempts.last())
                .max_by_key(|a| a.started_at_ms + a.duration_ms);
            match last_attempt {
                Some(a) if deliveries.iter().all(|d| d.status == DeliveryStatus::Done) => {
                    let at = a.started_at_ms + a.duration_ms;
                    last_done = last_done.max(at);
                    done_times.push(at);
                    latency.record(at.saturating_sub(meta.received_at_ms))?;
                    to_start.record(a.started_at_ms.saturating_sub(meta.received_at_ms))?;
                }
                _ => not_done += 1,
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    store.close().await;
    Ok(Completion {
        events,
        not_done,
        span_ms: last_done.saturating_sub(first_received),
        load_ms: last_received.saturating_sub(first_received),
        done_during_load: done_times.iter().filter(|&&t| t <= last_received).count() as u64,
        latency,
        to_start,
    })
}
