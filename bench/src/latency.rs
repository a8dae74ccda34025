//! Scenario 4, `latency`: ingest latency under a steady arrival rate — 50% and 90% of
//! the maximum agenthook reached in scenario 1 at c=64 — open loop (requests on a fixed
//! timetable, latency from each request's scheduled send time, see `load::open_loop`),
//! against the plain hyper server at the same absolute rates.

use serde_json::json;

use crate::ingest;
use crate::load;
use crate::report::{Section, f, ratio};
use crate::server::{HostSpec, Server};
use crate::suite::Suite;

/// Connections the open-loop generator may use at once.
pub const CONNECTIONS: usize = 256;

/// The share of the maximum rate of each row.
const LOADS: [f64; 2] = [0.5, 0.9];

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    ingest::ensure_max(suite).await?;
    let max = suite
        .max
        .as_ref()
        .map(|m| m.agenthook.load.rate())
        .unwrap_or(0.0);
    let (duration, size) = (suite.opts.duration(), suite.opts.size);
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for share in LOADS {
        let rate = max * share;
        let mut results = Vec::new();
        for agenthook in [true, false] {
            let server = if agenthook {
                suite.host(&HostSpec::default()).await?
            } else {
                Server::plain().await?
            };
            // Warm up with a short run at the same rate.
            load::open_loop(
                server.ingress,
                "/hooks/bench",
                rate,
                std::time::Duration::from_millis(300),
                CONNECTIONS,
                size,
                "bench.event",
                "warm",
            )
            .await;
            let r = load::open_loop(
                server.ingress,
                "/hooks/bench",
                rate,
                duration,
                CONNECTIONS,
                size,
                "bench.event",
                "run",
            )
            .await;
            server.stop().await?;
            results.push(r);
        }
        let (h, p) = (&results[0], &results[1]);
        rows.push(vec![
            format!("{:.0}% ({rate:.0}/s)", share * 100.0),
            f(h.rate(), 0),
            f(h.ms(0.5), 2),
            f(h.ms(0.99), 2),
            f(h.ms(0.999), 2),
            f(p.ms(0.5), 2),
            f(p.ms(0.99), 2),
            f(p.ms(0.999), 2),
            ratio(h.ms(0.99), p.ms(0.99)),
            format!("{} / {}", h.errors, p.errors),
        ]);
        figures.push(json!({
            "share_of_max": share,
            "offered_rate_per_s": rate,
            "agenthook": h.json(),
            "plain_hyper": p.json(),
        }));
    }
    suite.report.add(Section {
        key: "latency",
        title: "4. Ingest latency at a fixed arrival rate (open loop)".into(),
        notes: vec![format!(
            "Rates are shares of agenthook's c=64 maximum in scenario 1 ({max:.0} ev/s); the plain hyper server gets the same absolute rates. Requests follow a fixed timetable over up to {CONNECTIONS} keep-alive connections; latency runs from each request's scheduled send time to the end of its response, so queueing behind a slow response is counted (no coordinated omission). {} s per row after a 300 ms warm-up, fresh server process per row.",
            duration.as_secs_f64()
        )],
        header: vec![
            "load",
            "agenthook achieved ev/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "plain hyper p50 ms",
            "p99 ms",
            "p99.9 ms",
            "p99 agenthook / plain",
            "failed (agenthook / plain)",
        ],
        rows,
        json: json!({ "max_rate_per_s": max, "connections": CONNECTIONS, "rows": figures }),
    });
    Ok(())
}
