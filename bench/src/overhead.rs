//! `overhead`: what one delivery costs the host besides the handler's own work, and
//! what loaded, idle plugins cost in memory.
//!
//! 1. Host RSS with 100 distinct plugins loaded and idle: a real host (`Host::prepare`
//!    + `serve` on loopback) measured before anything else runs in this process.
//! 2. Per-delivery overhead: `Runtime::call` — a fresh store with the manifest's limits,
//!    instantiate from the pre-linked component, call `handle`, collect the output — on
//!    the trivial `test-noop` handler, with the host's pooling configuration and with
//!    wasmtime's default on-demand allocator, in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthook::config::Config;
use agenthook::plugins::{Registry, build_plugin};
use agenthook::runtime::{Allocator, Runtime, RuntimeOptions, WitEvent};
use agenthook::store::{EventMeta, Store};
use agenthook::tools::{Services, Tools};
use anyhow::{Context, bail};

const IDLE_PLUGINS: usize = 100;
const MANIFEST: &str = "[[subscribe]]\nsource = \"demo\"\n";

/// Options: `--wasm PATH` (default: build `tests/plugins/test-noop`), `--iterations N`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut wasm_path = None;
    let mut iterations = 20_000usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--wasm" => wasm_path = it.next().map(PathBuf::from),
            "--iterations" => {
                iterations = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .context("--iterations takes a number")?
            }
            other => bail!("unknown option `{other}` (expected --wasm PATH, --iterations N)"),
        }
    }
    let wasm_path = match wasm_path {
        Some(p) => p,
        None => build_noop()?,
    };
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    println!("component: {} ({} bytes)", wasm_path.display(), wasm.len());
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        println!(
            "note: RUST_BACKTRACE is set: wasmtime then captures a backtrace for each error it \
             creates internally, which adds ~5 µs per delivery; unset it for the figures the \
             host has in production"
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        idle_rss(&wasm).await?;
        let pooled = per_delivery(Allocator::Pooling, &wasm, iterations).await?;
        let on_demand = per_delivery(Allocator::OnDemand, &wasm, iterations).await?;
        println!(
            "on-demand / pooling: median {:.1}x, p99 {:.1}x",
            on_demand.median / pooled.median,
            on_demand.p99 / pooled.p99
        );
        anyhow::Ok(())
    })
}

/// `delivery --wasm PATH [--iterations N]`: only the per-delivery loop, pooling, with
/// `memory_mb = 128`, so a profiler sees nothing else.
pub fn delivery_only(args: &[String]) -> anyhow::Result<()> {
    let mut wasm = None;
    let mut iterations = 2_000usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--wasm" => wasm = it.next().map(PathBuf::from),
            "--iterations" => {
                iterations = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .context("--iterations takes a number")?
            }
            other => bail!("unknown option `{other}` (expected --wasm PATH, --iterations N)"),
        }
    }
    let wasm = std::fs::read(wasm.context("--wasm PATH is required")?)?;
    let manifest = "[[subscribe]]\nsource = \"demo\"\n\n[limits]\nmemory_mb = 128\n";
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(per_delivery_with(
            Allocator::Pooling,
            &wasm,
            manifest,
            iterations,
        ))?;
    Ok(())
}

/// Build the `test-noop` plugin (a no-op when it is up to date) and return its path.
pub fn build_noop() -> anyhow::Result<PathBuf> {
    build_test_plugin("test-noop")
}

/// Build one test plugin of `tests/plugins/` by package name (a no-op when it is
/// up to date) and return the path of its component.
pub fn build_test_plugin(name: &str) -> anyhow::Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has a parent")?;
    let target_dir = repo.join("target").join("plugins");
    let status = crate::server::cargo()
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
        ])
        .arg("--manifest-path")
        .arg(repo.join("tests").join("plugins").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .with_context(|| format!("cannot run cargo to build tests/plugins/{name}"))?;
    if !status.success() {
        bail!(
            "building tests/plugins/{name} failed ({status}); is the wasm32-wasip2 target installed?"
        );
    }
    Ok(target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

/// Timings of one configuration, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    /// Minor page faults of this process per call (the pages an instance touches that
    /// the pool reset returned to the kernel, faulted in again).
    pub faults: f64,
}

/// This process's minor page faults so far (`/proc/self/stat`, field 10).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name in parentheses.
            let rest = s.rsplit_once(')')?.1.to_string();
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Per-delivery time of `iterations` calls (after a 10% warm-up) with one allocator;
/// prints its line and returns the figures.
pub async fn per_delivery(
    allocator: Allocator,
    wasm: &[u8],
    iterations: usize,
) -> anyhow::Result<Timings> {
    per_delivery_with(allocator, wasm, MANIFEST, iterations).await
}

/// [`per_delivery`] with the plugin's manifest given (its limits).
pub async fn per_delivery_with(
    allocator: Allocator,
    wasm: &[u8],
    manifest: &str,
    iterations: usize,
) -> anyhow::Result<Timings> {
    let runtime = Runtime::with_options(&RuntimeOptions {
        allocator,
        ..RuntimeOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let plugin = build_plugin(&runtime, &Default::default(), "noop", manifest, wasm)?;
    let data = tempfile::tempdir()?;
    let config = Config::parse(
        &format!(
            "[server]\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\nadmin_token = \"bench\"\n",
            data.path().join("data").display(),
            data.path().join("plugins.d").display()
        ),
        Path::new("bench"),
        false,
    )?;
    let store = Store::open(data.path(), &config.store).await?;
    let services = Arc::new(Services::new(
        &config,
        Arc::new(Registry::default()),
        agenthook::clock::Clock::system(),
    )?);
    let meta = EventMeta {
        source: "demo".into(),
        event_id: "evt_bench".into(),
        event_type: "bench.tick".into(),
        received_at_ms: 0,
        headers: vec![("content-type".into(), "application/json".into())],
    };
    let body = br#"{"type":"bench.tick","data":{"n":1}}"#.to_vec();

    let mut samples = Vec::with_capacity(iterations);
    let warmup = iterations / 10;
    let mut faults = 0;
    for i in 0..warmup + iterations {
        let id = i as u64 + 1;
        let key = format!("agenthook:{id}:noop");
        let tools = Tools::new(
            &plugin.access,
            id,
            &meta,
            key.clone(),
            store.clone(),
            services.clone(),
        );
        let event = WitEvent {
            id: id.to_string(),
            event_id: meta.event_id.clone(),
            source: meta.source.clone(),
            event_type: meta.event_type.clone(),
            received_at_ms: 0,
            attempt: 1,
            idempotency_key: key,
            headers: meta.headers.clone(),
            body: body.clone(),
        };
        let faults_before = minor_faults();
        let started = Instant::now();
        let report = runtime
            .call(&plugin.compiled, &plugin.manifest, tools, event)
            .await;
        let took = started.elapsed();
        if i >= warmup {
            faults += minor_faults().saturating_sub(faults_before);
        }
        if report.outcome != agenthook::runtime::CallOutcome::Done {
            bail!("the no-op handler did not finish: {:?}", report.outcome);
        }
        if i >= warmup {
            samples.push(took);
        }
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if samples.is_empty() {
        bail!("no iterations to time");
    }
    let median = us(samples[samples.len() / 2]);
    let p99 = us(samples[samples.len() * 99 / 100]);
    let min = us(samples[0]);
    let name = match allocator {
        Allocator::Pooling => "pooling (host config)",
        Allocator::OnDemand => "on-demand (wasmtime default)",
    };
    let faults = faults as f64 / iterations as f64;
    println!(
        "per delivery, {name}: median {median:.1} µs, p99 {p99:.1} µs, min {min:.1} µs, {faults:.0} minor page faults ({iterations} calls)"
    );
    store.close().await;
    Ok(Timings {
        median,
        p99,
        min,
        faults,
    })
}

/// Start a real host with 100 distinct plugins and report its RSS once idle.
async fn idle_rss(wasm: &[u8]) -> anyhow::Result<()> {
    let before = rss_kib()?;
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins)?;
    for i in 0..IDLE_PLUGINS {
        std::fs::write(plugins.join(format!("p{i}.wasm")), variant(wasm, i))?;
        std::fs::write(plugins.join(format!("p{i}.toml")), MANIFEST)?;
    }
    let config = Config::parse(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\nadmin_token = \"bench\"\n",
            dir.path().join("data").display(),
            plugins.display()
        ),
        Path::new("bench"),
        false,
    )?;
    let started = Instant::now();
    let host = agenthook::Host::prepare(config).await?;
    let loaded = started.elapsed();
    let listeners = agenthook::Listeners {
        ingress: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(host.serve(listeners, async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib()?;
    println!(
        "host RSS with {IDLE_PLUGINS} plugins loaded and idle: {:.1} MiB ({:.1} MiB before the host; {:.0} KiB per plugin; loaded in {loaded:.2?}, cold compile cache)",
        idle as f64 / 1024.0,
        before as f64 / 1024.0,
        (idle.saturating_sub(before)) as f64 / IDLE_PLUGINS as f64
    );
    let _ = stop.send(());
    serving.await??;
    Ok(())
}

/// The component with a custom section naming `i` appended: the same code, but a
/// distinct content hash, so each copy is compiled and kept separately like a real
/// plugin.
pub fn variant(wasm: &[u8], i: usize) -> Vec<u8> {
    let name = b"agenthook-bench";
    let tag = i.to_string();
    let payload_len = 1 + name.len() + tag.len();
    assert!(payload_len < 128 && name.len() < 128);
    let mut out = wasm.to_vec();
    out.extend_from_slice(&[0, payload_len as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(tag.as_bytes());
    out
}

/// This process's resident set size, from /proc (Linux).
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("RSS needs /proc")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// Scenario 3 inside the suite: the per-delivery part of this module (the idle-plugin
/// memory is measured on the real binary by `memory`), same code and iterations.
pub async fn suite(suite: &mut crate::suite::Suite) -> anyhow::Result<()> {
    let wasm = suite.noop()?;
    let iterations = suite.opts.iterations;
    let pooled = per_delivery(Allocator::Pooling, &wasm, iterations).await?;
    let on_demand = per_delivery(Allocator::OnDemand, &wasm, iterations).await?;
    let row = |name: &str, t: &Timings| {
        vec![
            name.to_string(),
            format!("{:.1}", t.median),
            format!("{:.1}", t.p99),
            format!("{:.1}", t.min),
        ]
    };
    let mut rows = vec![
        row("pooling + copy-on-write (host config)", &pooled),
        row("on-demand (wasmtime default)", &on_demand),
    ];
    rows[0].push(crate::report::ratio(on_demand.median, pooled.median));
    rows[1].push("1.00×".into());
    let timings = |t: &Timings| serde_json::json!({ "median_us": t.median, "p99_us": t.p99, "min_us": t.min });
    suite.report.add(crate::report::Section {
        key: "per_delivery",
        title: "3. Per-delivery overhead".into(),
        notes: vec![format!(
            "A fresh instance of the no-op handler per call through the host's whole `Runtime::call` path (store, limits, WASI, tools, instantiate, call, teardown), in this process, {iterations} calls after a 10% warm-up per allocator — the same code as `agenthook-bench overhead`.{}",
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                " RUST_BACKTRACE is set: wasmtime captures a backtrace per internal error (~5 µs per delivery); unset it for production figures."
            } else {
                ""
            }
        )],
        header: vec!["allocator", "median µs", "p99 µs", "min µs", "speed-up of pooling (median)"],
        rows,
        json: serde_json::json!({
            "iterations": iterations,
            "pooling": timings(&pooled),
            "on_demand": timings(&on_demand),
        }),
    });
    suite.report.target(
        "per-delivery overhead ≤ 10 µs median",
        format!("{:.1} µs", pooled.median),
        pooled.median <= 10.0,
    );
    Ok(())
}
