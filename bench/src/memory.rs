//! Scenario 5, `memory`: resident memory of the real `agenthook` process (VmRSS and
//! its peak VmHWM from `/proc/PID/status`; the load generator is another process) idle,
//! with 100 distinct plugins loaded, and at the maximum loads of scenarios 1 and 2;
//! against the plain hyper server's process in the same states.

use std::time::Duration;

use serde_json::json;

use crate::ingest;
use crate::overhead::variant;
use crate::report::{Section, f, ratio};
use crate::server::{HostSpec, Memory, Server};
use crate::suite::Suite;

const IDLE_PLUGINS: usize = 100;
/// How long a freshly started server sits before it is measured idle.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    ingest::ensure_max(suite).await?;

    let host = suite.host(&HostSpec::default()).await?;
    tokio::time::sleep(SETTLE).await;
    let idle = host.memory()?;
    host.stop().await?;
    let plain = Server::plain().await?;
    tokio::time::sleep(SETTLE).await;
    let plain_idle = plain.memory()?;
    plain.stop().await?;

    let wasm = suite.noop()?;
    let manifest = "[[subscribe]]\nsource = \"bench\"\ntypes = [\"never.*\"]\n";
    let plugins = (0..IDLE_PLUGINS)
        .map(|i| (format!("p{i}"), variant(&wasm, i), manifest.to_string()))
        .collect();
    let host = suite
        .host(&HostSpec {
            plugins,
            ..HostSpec::default()
        })
        .await?;
    let load_time = host.startup;
    tokio::time::sleep(SETTLE).await;
    let with_plugins = host.memory()?;
    host.stop().await?;

    let mut rows: Vec<(String, Memory, Option<Memory>)> = vec![
        ("idle, no plugins".into(), idle, Some(plain_idle)),
        (
            format!("idle, {IDLE_PLUGINS} plugins loaded (cold compile, {load_time:.1?} to ready)"),
            with_plugins,
            Some(plain_idle),
        ),
    ];
    if let Some(max) = &suite.max {
        rows.push((
            "ingest at max load (scenario 1, c=64)".into(),
            max.agenthook.memory,
            Some(max.plain.memory),
        ));
    }
    for (what, m) in &suite.loaded_memory {
        rows.push((what.clone(), *m, None));
    }

    let mut table = Vec::new();
    let mut figures = Vec::new();
    for (what, m, base) in &rows {
        table.push(vec![
            what.clone(),
            f(m.rss_mib(), 1),
            f(m.hwm_mib(), 1),
            base.map(|b| f(b.rss_mib(), 1)).unwrap_or("–".into()),
            base.map(|b| ratio(m.rss_mib(), b.rss_mib()))
                .unwrap_or("–".into()),
        ]);
        figures.push(json!({
            "state": what,
            "rss_mib": m.rss_mib(),
            "peak_mib": m.hwm_mib(),
            "plain_hyper_rss_mib": base.map(|b| b.rss_mib()),
        }));
    }
    suite.report.add(Section {
        key: "memory",
        title: "5. Memory of the agenthook process".into(),
        notes: vec![format!(
            "VmRSS (resident now) and VmHWM (peak) of the `agenthook` process from /proc; idle rows after {} s of rest; load rows read right after the load (RSS) with the peak over the whole run. The {IDLE_PLUGINS} plugins are distinct copies of `test-noop` (a custom section makes each hash differ, so each is compiled and kept separately). Baseline: the plain hyper process in the same state.",
            SETTLE.as_secs()
        )],
        header: vec![
            "state",
            "RSS MiB",
            "peak MiB",
            "plain hyper RSS MiB",
            "agenthook / plain",
        ],
        rows: table,
        json: json!(figures),
    });
    let mb = with_plugins.rss_kib as f64 * 1024.0 / 1e6;
    suite.report.target(
        "100 idle plugins < 300 MB RSS",
        format!("{mb:.0} MB ({:.1} MiB)", with_plugins.rss_mib()),
        mb < 300.0,
    );
    Ok(())
}
