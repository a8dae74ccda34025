//! Scenario 8, `python`: what a Python plugin (componentize-py, CPython inside the
//! component) costs next to a Rust one, in the same run: per delivery in process
//! (`Runtime::call` with the pooling allocator, as scenario 3), end to end through the
//! real host (as scenario 2, closed loop c=64), and 10 distinct plugins loaded: time to
//! ready on a cold compile cache and the host's RSS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agenthook::runtime::Allocator;
use anyhow::{Context, bail};
use serde_json::json;

use crate::overhead::{per_delivery_with, variant};
use crate::report::{Section, f};
use crate::server::{HostSpec, repo_root};
use crate::suite::Suite;

const PLUGINS: usize = 10;
/// A Python handler needs more than the manifest default (64 MiB): see the README.
const PY_LIMITS: &str = "[limits]\nmemory_mb = 128\n";
const SETTLE: Duration = Duration::from_secs(2);

/// Build `tests/plugins-python/test-py-noop` with `agenthook plugin build`.
fn build_python_noop(bin: &Path) -> anyhow::Result<PathBuf> {
    let repo = repo_root()?;
    let out = repo.join("target/bench/test-py-noop.wasm");
    let status = std::process::Command::new(bin)
        .args(["plugin", "build"])
        .arg(repo.join("tests/plugins-python/test-py-noop"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run agenthook plugin build")?;
    if !status.success() {
        bail!("agenthook plugin build failed ({status}); is componentize-py installed?");
    }
    Ok(out)
}

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let rust = suite.noop()?;
    let py_path = build_python_noop(&suite.bin)?;
    let python = std::fs::read(&py_path)?;
    let iterations = suite.opts.iterations.min(2_000);
    let mut rows: Vec<Vec<String>> = Vec::new();
    // Each row is printed as soon as it is measured (the table follows at the end).
    let show = |row: &Vec<String>| println!("python: {}", row.join(" | "));

    // 1. Per delivery, in process.
    let manifest = format!("[[subscribe]]\nsource = \"demo\"\n\n{PY_LIMITS}");
    let r = per_delivery_with(Allocator::Pooling, &rust, &manifest, iterations).await?;
    let p = per_delivery_with(Allocator::Pooling, &python, &manifest, iterations).await?;
    rows.push(vec![
        format!("per delivery, in process ({iterations} calls, median / p99 µs)"),
        format!("{:.1} / {:.1}", r.median, r.p99),
        format!("{:.1} / {:.1}", p.median, p.p99),
        format!("{:.0}x / {:.0}x", p.median / r.median, p.p99 / r.p99),
    ]);
    rows.push(vec![
        "per delivery: minor page faults of the process per call".into(),
        f(r.faults, 0),
        f(p.faults, 0),
        format!("{:.0}x", p.faults / r.faults.max(1.0)),
    ]);
    rows.iter().for_each(show);

    // 2. End to end through the real host.
    let spec = |wasm: &[u8]| HostSpec {
        plugins: vec![(
            "noop".into(),
            wasm.to_vec(),
            format!(
                "[[subscribe]]\nsource = \"bench\"\n\n{PY_LIMITS}max_concurrency = {}\n",
                suite.opts.plugin_concurrency
            ),
        )],
        ..HostSpec::default()
    };
    let duration = suite.opts.duration();
    let er = crate::e2e::measure(suite, &spec(&rust), None, duration, suite.opts.size).await?;
    let ep = crate::e2e::measure(suite, &spec(&python), None, duration, suite.opts.size).await?;
    let (rs, ps) = (er.done.sustained(), ep.done.sustained());
    rows.push(vec![
        "end to end, closed loop c=64: done/s during load".into(),
        f(rs, 0),
        f(ps, 0),
        format!("{:.2}x", ps / rs.max(1e-9)),
    ]);
    rows.push(vec![
        "end to end: received→done p50 / p99 ms".into(),
        format!("{} / {}", er.done.q(0.5), er.done.q(0.99)),
        format!("{} / {}", ep.done.q(0.5), ep.done.q(0.99)),
        format!(
            "{:.1}x / {:.1}x",
            ep.done.q(0.5).max(1) as f64 / er.done.q(0.5).max(1) as f64,
            ep.done.q(0.99).max(1) as f64 / er.done.q(0.99).max(1) as f64
        ),
    ]);
    rows[2..].iter().for_each(show);

    // 3. Ten distinct plugins loaded (cold compile cache), idle.
    let mut loaded = Vec::new();
    for wasm in [&rust, &python] {
        let manifest =
            format!("[[subscribe]]\nsource = \"bench\"\ntypes = [\"never.*\"]\n\n{PY_LIMITS}");
        let plugins = (0..PLUGINS)
            .map(|i| (format!("p{i}"), variant(wasm, i), manifest.clone()))
            .collect();
        let host = suite
            .host(&HostSpec {
                plugins,
                ..HostSpec::default()
            })
            .await?;
        let startup = host.startup;
        tokio::time::sleep(SETTLE).await;
        let memory = host.memory()?;
        host.stop().await?;
        loaded.push((startup, memory));
    }
    let (rl, pl) = (&loaded[0], &loaded[1]);
    rows.push(vec![
        format!("{PLUGINS} distinct plugins: start → ready, cold compile cache (s)"),
        format!("{:.1}", rl.0.as_secs_f64()),
        format!("{:.1}", pl.0.as_secs_f64()),
        format!("{:.0}x", pl.0.as_secs_f64() / rl.0.as_secs_f64().max(1e-9)),
    ]);
    rows.push(vec![
        format!("{PLUGINS} distinct plugins loaded, idle: host RSS MiB"),
        f(rl.1.rss_mib(), 0),
        f(pl.1.rss_mib(), 0),
        format!("{:.1}x", pl.1.rss_mib() / rl.1.rss_mib().max(1e-9)),
    ]);

    rows[4..].iter().for_each(show);
    suite.report.add(Section {
        key: "python",
        title: "10. Python plugins: a Python no-op beside the Rust no-op".into(),
        notes: vec![format!(
            "`tests/plugins-python/test-py-noop` ({:.1} MB, built by `agenthook plugin build` with componentize-py) against `tests/plugins/test-noop` ({:.0} KB), both with `limits.memory_mb = 128`, in the same run. Per delivery: `Runtime::call` in process with the host's pooling allocator (as scenario 3). End to end: the real host, one plugin named `noop`, `max_concurrency = {}`, {} s closed loop at c=64 (as scenario 2). Loaded: {PLUGINS} copies made distinct by a custom section, so each is compiled and kept separately.",
            python.len() as f64 / 1e6,
            rust.len() as f64 / 1e3,
            suite.opts.plugin_concurrency,
            duration.as_secs_f64()
        )],
        header: vec!["measure", "Rust no-op", "Python no-op", "Python / Rust"],
        rows: rows.clone(),
        json: json!({
            "per_delivery_us": {"rust": {"median": r.median, "p99": r.p99}, "python": {"median": p.median, "p99": p.p99}},
            "per_delivery_minor_faults": {"rust": r.faults, "python": p.faults},
            "end_to_end_done_per_s": {"rust": rs, "python": ps},
            "end_to_end_received_to_done_ms": {
                "rust": {"p50": er.done.q(0.5), "p99": er.done.q(0.99)},
                "python": {"p50": ep.done.q(0.5), "p99": ep.done.q(0.99)},
            },
            "ten_plugins": {
                "rust": {"ready_s": rl.0.as_secs_f64(), "rss_mib": rl.1.rss_mib()},
                "python": {"ready_s": pl.0.as_secs_f64(), "rss_mib": pl.1.rss_mib()},
            },
            "python_component_bytes": python.len(),
        }),
    });
    Ok(())
}
