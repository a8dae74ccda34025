//! Scenario 6, `history`: ingest rate (closed loop, c=64, through HTTP like scenario 1)
//! on an empty store against the same measurement on a store that already holds N
//! events (1 million; 100,000 with `--quick`).
//!
//! The store is filled through the host library's own `Store::ingest` — the call the
//! ingress makes after verifying — from many concurrent tasks, so the writer
//! group-commits up to `store.max_batch` events per commit: the same records (1 KiB
//! signed bodies, the request headers ingress keeps, dedup keys, received now) without
//! HTTP and signature checks. Then the real host is started on that data dir.

use std::path::Path;
use std::time::{Duration, Instant};

use agenthook::clock::now_ms;
use agenthook::store::{EventMeta, Ingested, NewEvent, Store};
use anyhow::{Context, bail};
use serde_json::json;

use crate::ingest;
use crate::load;
use crate::report::{Section, f, ratio};
use crate::server::{self, HostSpec};
use crate::suite::Suite;

/// Ingests in flight while filling: enough to fill every group commit.
const IN_FLIGHT: usize = 4096;

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let n = suite.opts.history_events;
    let (duration, size) = (suite.opts.duration(), suite.opts.size);

    let dir = server::scratch()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let started = Instant::now();
    fill(&data, n, size).await?;
    let fill_time = started.elapsed();
    let file_bytes = std::fs::metadata(data.join("agenthook.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "history: stored {n} events in {:.1} s ({:.0}/s); database file {:.0} MiB",
        fill_time.as_secs_f64(),
        n as f64 / fill_time.as_secs_f64(),
        file_bytes as f64 / (1 << 20) as f64
    );
    // Empty and filled alternate, `repeats` times each, fresh processes; the median run
    // of each is compared. The filled store keeps what each run adds.
    let (mut empties, mut fulls) = (Vec::new(), Vec::new());
    let (mut empty_startup, mut full_startup) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..suite.opts.repeats {
        let server = suite.host(&HostSpec::default()).await?;
        empty_startup = empty_startup.max(server.startup);
        empties.push(ingest::point(server, 64, duration, size).await?);
        let server = suite
            .host(&HostSpec {
                data_dir: Some(data.clone()),
                ..HostSpec::default()
            })
            .await?;
        full_startup = full_startup.max(server.startup);
        fulls.push(ingest::point(server, 64, duration, size).await?);
    }
    let (empty, empty_rates) = ingest::median(empties);
    let (full, full_rates) = ingest::median(fulls);

    let (e, h) = (&empty.load, &full.load);
    let change = h.rate() / e.rate().max(1e-9) - 1.0;
    let rows = vec![
        vec![
            "0".into(),
            f(e.rate(), 0),
            f(e.ms(0.5), 2),
            f(e.ms(0.99), 2),
            format!("{:.0} ms", empty_startup.as_secs_f64() * 1000.0),
            f(empty.memory.hwm_mib(), 0),
            "1.00×".into(),
        ],
        vec![
            n.to_string(),
            f(h.rate(), 0),
            f(h.ms(0.5), 2),
            f(h.ms(0.99), 2),
            format!("{:.0} ms", full_startup.as_secs_f64() * 1000.0),
            f(full.memory.hwm_mib(), 0),
            ratio(h.rate(), e.rate()),
        ],
    ];
    suite.report.add(Section {
        key: "history",
        title: format!("6. Ingest with {n} events already stored"),
        notes: vec![format!(
            "Closed loop c=64, {} s after a 300 ms warm-up, no plugins, through HTTP like scenario 1; baseline: the same on an empty store, in the same run; {} run(s) of each, alternating, fresh host processes, the median run of each shown (empty: {} ev/s; with history: {} ev/s; startup: the slowest). Filled through `Store::ingest` (the call ingress makes after verifying) with {IN_FLIGHT} in flight, so commits carry up to `store.max_batch` events: {:.1} s ({:.0} events/s), database file {:.0} MiB.{}",
            duration.as_secs_f64(),
            suite.opts.repeats,
            ingest::rates(&empty_rates),
            ingest::rates(&full_rates),
            fill_time.as_secs_f64(),
            n as f64 / fill_time.as_secs_f64(),
            file_bytes as f64 / (1 << 20) as f64,
            if n < 1_000_000 {
                " (Fewer stored events than the target's 1M.)"
            } else {
                ""
            }
        )],
        header: vec![
            "stored events",
            "ingest ev/s",
            "p50 ms",
            "p99 ms",
            "host start to ready",
            "host peak RSS MiB",
            "vs empty store",
        ],
        rows,
        json: json!({
            "stored_events": n,
            "fill_seconds": fill_time.as_secs_f64(),
            "database_bytes": file_bytes,
            "empty": e.json(),
            "with_history": h.json(),
            "startup_ms": { "empty": empty_startup.as_secs_f64() * 1000.0, "with_history": full_startup.as_secs_f64() * 1000.0 },
            "rate_change": change,
            "empty_rates_of_repeats": empty_rates,
            "with_history_rates_of_repeats": full_rates,
        }),
    });
    suite.report.target(
        if n >= 1_000_000 {
            "ingest with 1M stored events within 10% of empty"
        } else {
            "ingest with stored events within 10% of empty (fewer than the target's 1M)"
        },
        format!(
            "{:+.1}% ({:.0} vs {:.0} ev/s, {n} events)",
            change * 100.0,
            h.rate(),
            e.rate()
        ),
        change >= -0.10,
    );
    Ok(())
}

/// Store `n` events in a new store at `data` through `Store::ingest`.
pub(crate) async fn fill(data: &Path, n: u64, size: usize) -> anyhow::Result<()> {
    let store = Store::open(data, &agenthook::config::StoreConfig::default())
        .await
        .context("cannot create the store to fill")?;
    let key = load::key();
    let mut tasks = tokio::task::JoinSet::new();
    let mut stored = 0u64;
    let mut collect = |r: Result<Result<Ingested, agenthook::store::StoreError>, _>| match r {
        Ok(Ok(Ingested::Stored(_))) => {
            stored += 1;
            if stored.is_multiple_of(200_000) {
                eprintln!("history: {stored} of {n} stored");
            }
            Ok(())
        }
        Ok(Ok(Ingested::Duplicate(_))) => bail!("a fill event was a duplicate"),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("filling the store")),
        Err(e) => Err(anyhow::anyhow!("a fill task failed: {e}")),
    };
    for i in 0..n {
        while tasks.len() >= IN_FLIGHT {
            if let Some(r) = tasks.join_next().await {
                collect(r)?;
            }
        }
        let (signed, body) = load::signed_event(&key, "fill", i, size, "bench.event");
        // The headers ingress keeps for such a request, in the order hyper delivers them.
        let mut headers = vec![("host".to_string(), "127.0.0.1:8080".to_string())];
        headers.extend(signed.into_iter().map(|(k, v)| (k.to_string(), v)));
        headers.push(("content-length".into(), body.len().to_string()));
        let event = NewEvent {
            meta: EventMeta {
                source: "bench".into(),
                event_id: format!("fill-{i}"),
                event_type: "bench.event".into(),
                received_at_ms: now_ms(),
                headers,
            },
            body,
            plugins: Vec::new(),
        };
        let store = store.clone();
        tasks.spawn(async move { store.ingest(event).await });
    }
    while let Some(r) = tasks.join_next().await {
        collect(r)?;
    }
    store.close().await;
    if stored != n {
        bail!("stored {stored} of {n} events");
    }
    Ok(())
}
