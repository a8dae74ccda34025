//! Scenario 1, `ingest`: agenthook's durable ingest (verify + group commit + ack, no
//! plugins) against the HTTP upper bound — a plain hyper server that reads the body and
//! answers 200 — at the same concurrencies, with the same load generator, each server in
//! its own process on loopback. An extra column keeps the earlier comparison: the same
//! host committing once per event (`store.max_batch = 1`), i.e. what group commit buys.

use std::time::Duration;

use serde_json::json;

use crate::load::{self, LoadResult};
use crate::report::{Section, f, ratio};
use crate::server::{HostSpec, Memory, Server};
use crate::suite::{MaxIngest, Suite};

/// Closed-loop load before each measured point, so that connection setup and the first
/// growth of the database file don't skew it.
const WARM_UP: Duration = Duration::from_millis(300);

/// What one measured point of one server gave.
#[derive(Debug, Clone)]
pub struct Point {
    pub load: LoadResult,
    /// The server process's memory right after the load (VmRSS) and its peak (VmHWM).
    pub memory: Memory,
}

/// Start `server`, warm it up, measure `concurrency` closed loop for `duration`, stop it.
pub async fn point(
    server: Server,
    concurrency: usize,
    duration: Duration,
    body_size: usize,
) -> anyhow::Result<Point> {
    let addr = server.ingress;
    load::closed_loop(
        addr,
        "/hooks/bench",
        concurrency,
        WARM_UP,
        body_size,
        "bench.event",
        "warm",
    )
    .await;
    let result = load::closed_loop(
        addr,
        "/hooks/bench",
        concurrency,
        duration,
        body_size,
        "bench.event",
        "run",
    )
    .await;
    let memory = server.memory()?;
    server.stop().await?;
    Ok(Point {
        load: result,
        memory,
    })
}

/// The scenario's three servers at each concurrency.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let duration = suite.opts.duration();
    let size = suite.opts.size;
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    let mut repeated = Vec::new();
    for &c in &suite.opts.concurrencies.clone() {
        // The point the target is about is measured `repeats` times, agenthook and plain
        // alternating, and the run with the median rate of each is kept: one noisy
        // neighbour on this shared machine then cannot decide the ratio alone.
        let repeats = if c == 64 { suite.opts.repeats } else { 1 };
        let (mut hosts, mut plains) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            hosts.push(point(suite.host(&HostSpec::default()).await?, c, duration, size).await?);
            plains.push(point(Server::plain().await?, c, duration, size).await?);
        }
        let (host, host_rates) = median(hosts);
        let (plain, plain_rates) = median(plains);
        if repeats > 1 {
            repeated.push(format!(
                "c={c} was measured {repeats} times, alternating; the table shows the median run of each (agenthook {} ev/s; plain hyper {} req/s).",
                rates(&host_rates),
                rates(&plain_rates)
            ));
        }
        let single = point(
            suite
                .host(&HostSpec {
                    extra_config: "[store]\nmax_batch = 1\n".into(),
                    ..HostSpec::default()
                })
                .await?,
            c,
            duration,
            size,
        )
        .await?;
        let (h, p, s) = (&host.load, &plain.load, &single.load);
        rows.push(vec![
            c.to_string(),
            f(h.rate(), 0),
            f(h.ms(0.5), 2),
            f(h.ms(0.99), 2),
            f(p.rate(), 0),
            f(p.ms(0.5), 2),
            f(p.ms(0.99), 2),
            ratio(h.rate(), p.rate()),
            f(s.rate(), 0),
            f(s.ms(0.99), 2),
            ratio(h.rate(), s.rate()),
        ]);
        let errors = h.errors + p.errors + s.errors;
        if errors > 0 {
            eprintln!(
                "ingest c={c}: failed requests: agenthook {}, plain {}, one commit per event {}",
                h.errors, p.errors, s.errors
            );
        }
        figures.push(json!({
            "concurrency": c,
            "agenthook": h.json(),
            "plain_hyper": p.json(),
            "agenthook_one_commit_per_event": s.json(),
            "ratio_to_plain": h.rate() / p.rate().max(1e-9),
            "agenthook_rates_of_repeats": host_rates,
            "plain_rates_of_repeats": plain_rates,
            "group_commit_gain": h.rate() / s.rate().max(1e-9),
            "memory_mib": {
                "agenthook_rss_after_load": host.memory.rss_mib(),
                "agenthook_peak": host.memory.hwm_mib(),
                "plain_rss_after_load": plain.memory.rss_mib(),
                "plain_peak": plain.memory.hwm_mib(),
            },
        }));
        if c == 64 {
            suite.max = Some(MaxIngest {
                agenthook: host.clone(),
                plain: plain.clone(),
            });
        }
    }
    let mut notes = vec![format!(
        "Signed {size}-byte Standard Webhooks events, keep-alive connections, {} s per point after a {} ms warm-up, a fresh server process per point. agenthook: verify + fsync'd two-phase redb group commit + ack, no plugins, default config (info logging to a file). Plain hyper: reads the body, answers 200. Last two columns: the same host with `store.max_batch = 1` (one commit per event).",
        duration.as_secs_f64(),
        WARM_UP.as_millis()
    )];
    notes.extend(repeated);
    suite.report.add(Section {
        key: "ingest",
        title: "1. Ingest: durable ack vs plain hyper (closed loop)".into(),
        notes,
        header: vec![
            "concurrency",
            "agenthook ev/s",
            "p50 ms",
            "p99 ms",
            "plain hyper req/s",
            "p50 ms",
            "p99 ms",
            "agenthook / plain",
            "one commit per event ev/s",
            "p99 ms",
            "group / one commit",
        ],
        rows,
        json: json!(figures),
    });
    if let Some(max) = &suite.max {
        let r = max.agenthook.load.rate() / max.plain.load.rate().max(1e-9);
        suite.report.target(
            "ingest ≥ 0.5× plain hyper at c=64",
            format!(
                "{:.2}× ({:.0} vs {:.0}/s)",
                r,
                max.agenthook.load.rate(),
                max.plain.load.rate()
            ),
            r >= 0.5,
        );
    }
    Ok(())
}

/// The point with the median rate, and every point's rate in measurement order.
pub fn median(points: Vec<Point>) -> (Point, Vec<f64>) {
    let rates: Vec<f64> = points.iter().map(|p| p.load.rate()).collect();
    let mut sorted = points;
    sorted.sort_by(|a, b| a.load.rate().total_cmp(&b.load.rate()));
    let mid = sorted.len() / 2;
    (sorted.swap_remove(mid), rates)
}

/// Rates like `12000, 13500, 12900`.
pub fn rates(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Make sure the c=64 point of both servers exists (scenarios 2 and 4 need its rates);
/// measure just that point when scenario 1 did not run.
pub async fn ensure_max(suite: &mut Suite) -> anyhow::Result<()> {
    if suite.max.is_some() {
        return Ok(());
    }
    let (duration, size) = (suite.opts.duration(), suite.opts.size);
    let agenthook = point(suite.host(&HostSpec::default()).await?, 64, duration, size).await?;
    let plain = point(Server::plain().await?, 64, duration, size).await?;
    println!(
        "max ingest at c=64 (for the rates of the other scenarios): agenthook {:.0} ev/s, plain hyper {:.0} req/s",
        agenthook.load.rate(),
        plain.load.rate()
    );
    suite.max = Some(MaxIngest { agenthook, plain });
    Ok(())
}
