//! The benchmark suite: options shared by the scenarios, what one scenario hands to
//! another (the maximum ingest rate, the memory under load), and the run of a chosen set
//! of scenarios ending in the targets table and the JSON file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::ingest::Point;
use crate::report::Report;
use crate::server;

/// Options of the suite's scenarios.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// Measured time per load point.
    pub seconds: f64,
    /// Event body size in bytes.
    pub size: usize,
    /// Closed-loop concurrencies of scenario 1.
    pub concurrencies: Vec<usize>,
    /// Events stored before the "with history" point of scenario 6.
    pub history_events: u64,
    /// `limits.max_concurrency` of the trivial plugin in scenario 2.
    pub plugin_concurrency: u32,
    /// How often the points behind a ratio target are measured (the median is kept).
    pub repeats: usize,
    /// Calls per allocator in scenario 3.
    pub iterations: usize,
    pub json: PathBuf,
    /// `AGENTHOOK_LOG` for every host (None: its default, `info`).
    pub log: Option<String>,
    /// A prebuilt `agenthook` binary (default: build it).
    pub agenthook: Option<PathBuf>,
}

impl Options {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    /// Parse `[--quick] [--seconds N] [--size BYTES] [--json PATH] [--events N]
    /// [--plugin-concurrency N] [--iterations N] [--agenthook PATH]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            quick,
            seconds: if quick { 1.0 } else { 5.0 },
            size: 1024,
            concurrencies: if quick {
                vec![64]
            } else {
                vec![1, 16, 64, 256]
            },
            history_events: if quick { 100_000 } else { 1_000_000 },
            plugin_concurrency: 64,
            repeats: if quick { 1 } else { 3 },
            iterations: 20_000,
            json: server::repo_root()?.join("target/bench/agenthook-bench.json"),
            log: None,
            agenthook: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |what: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{a} takes {what}"))
            };
            match a.as_str() {
                "--quick" => {}
                "--seconds" => o.seconds = value("seconds")?.parse().context("--seconds")?,
                "--size" => o.size = value("bytes")?.parse().context("--size")?,
                "--json" => o.json = PathBuf::from(value("a path")?),
                "--events" => o.history_events = value("a count")?.parse().context("--events")?,
                "--plugin-concurrency" => {
                    o.plugin_concurrency =
                        value("a count")?.parse().context("--plugin-concurrency")?
                }
                "--repeats" => o.repeats = value("a count")?.parse().context("--repeats")?,
                "--iterations" => {
                    o.iterations = value("a count")?.parse().context("--iterations")?
                }
                "--concurrency" => {
                    o.concurrencies = value("a list like 16,64")?
                        .split(',')
                        .map(|c| c.trim().parse())
                        .collect::<Result<_, _>>()
                        .context("--concurrency")?
                }
                "--log" => o.log = Some(value("a filter like warn")?),
                "--agenthook" => o.agenthook = Some(PathBuf::from(value("a path")?)),
                other => anyhow::bail!("unknown option `{other}` (see `agenthook-bench help`)"),
            }
        }
        if o.seconds <= 0.0 || o.size < 64 || o.repeats == 0 {
            anyhow::bail!(
                "--seconds must be positive, --size at least 64 bytes, --repeats at least 1"
            );
        }
        Ok(o)
    }
}

/// Scenario 1's c=64 point, which scenarios 2, 4 and 5 build on.
#[derive(Debug, Clone)]
pub struct MaxIngest {
    pub agenthook: Point,
    pub plain: Point,
}

/// A run of the suite.
pub struct Suite {
    pub opts: Options,
    /// The `agenthook` binary under test.
    pub bin: PathBuf,
    noop: Option<Vec<u8>>,
    pub max: Option<MaxIngest>,
    /// (what, host memory) under load in scenarios other than 1, for scenario 5.
    pub loaded_memory: Vec<(String, server::Memory)>,
    /// Scenario 2's sustained end-to-end rate.
    pub e2e_rate: Option<f64>,
    pub report: Report,
}

impl Suite {
    pub fn new(opts: Options) -> anyhow::Result<Suite> {
        let bin = server::agenthook_binary(opts.agenthook.as_deref())?;
        Ok(Suite {
            opts,
            bin,
            noop: None,
            max: None,
            loaded_memory: Vec::new(),
            e2e_rate: None,
            report: Report::default(),
        })
    }

    /// Start an agenthook host with the suite's log setting.
    pub async fn host(&self, spec: &server::HostSpec) -> anyhow::Result<server::Server> {
        let mut spec = spec.clone();
        if spec.log.is_none() {
            spec.log = self.opts.log.clone();
        }
        server::Server::agenthook(&self.bin, &spec).await
    }

    /// The `test-noop` component (built on first use).
    pub fn noop(&mut self) -> anyhow::Result<Vec<u8>> {
        if let Some(w) = &self.noop {
            return Ok(w.clone());
        }
        let path = crate::overhead::build_noop()?;
        let wasm =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        self.noop = Some(wasm.clone());
        Ok(wasm)
    }
}

/// The scenarios, in the order `all` runs them (later ones use earlier results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Ingest,
    Latency,
    EndToEnd,
    Overhead,
    Memory,
    History,
    Abuse,
    /// Not in [`ALL`]: it needs `nats-server`.
    Cluster,
    /// Not in `all`: it fills its own store of a million events.
    Console,
    Ordering,
    Python,
}

pub const ALL: [Scenario; 9] = [
    Scenario::Ingest,
    Scenario::Latency,
    Scenario::EndToEnd,
    Scenario::Overhead,
    Scenario::Memory,
    Scenario::History,
    Scenario::Abuse,
    Scenario::Ordering,
    Scenario::Python,
];

/// Run `scenarios` in order; print the tables, the targets, and write the JSON.
pub fn run(command: &str, scenarios: &[Scenario], args: &[String]) -> anyhow::Result<()> {
    let opts = Options::parse(args)?;
    let started = Instant::now();
    let machine = machine();
    println!(
        "agenthook-bench {command}{}: {} — load generator and servers share this machine",
        if opts.quick { " --quick" } else { "" },
        machine["summary"].as_str().unwrap_or("")
    );
    let disk_before = disk_probe()?;
    println!(
        "disk (data dirs' file system): {}",
        disk_before["summary"].as_str().unwrap_or("")
    );
    let mut suite = Suite::new(opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for s in scenarios {
            match s {
                Scenario::Ingest => crate::ingest::run(&mut suite).await?,
                Scenario::Latency => crate::latency::run(&mut suite).await?,
                Scenario::EndToEnd => crate::e2e::run(&mut suite).await?,
                Scenario::Overhead => crate::overhead::suite(&mut suite).await?,
                Scenario::Memory => crate::memory::run(&mut suite).await?,
                Scenario::History => crate::history::run(&mut suite).await?,
                Scenario::Abuse => crate::abuse::run(&mut suite).await?,
                Scenario::Cluster => crate::cluster::run(&mut suite).await?,
                Scenario::Console => crate::console::run(&mut suite).await?,
                Scenario::Ordering => crate::ordering::run(&mut suite).await?,
                Scenario::Python => crate::python::run(&mut suite).await?,
            }
        }
        anyhow::Ok(())
    })?;
    suite.report.print_targets();
    let disk_after = disk_probe()?;
    println!(
        "\ndisk after the run: {}",
        disk_after["summary"].as_str().unwrap_or("")
    );
    let took = started.elapsed();
    let context = json!({
        "command": format!("cargo run --release -p agenthook-bench -- {command} {}", args.join(" ")).trim_end().to_string(),
        "quick": suite.opts.quick,
        "seconds_per_point": suite.opts.seconds,
        "body_bytes": suite.opts.size,
        "history_events": suite.opts.history_events,
        "plugin_max_concurrency": suite.opts.plugin_concurrency,
        "repeats": suite.opts.repeats,
        "machine": machine,
        "load_after": loadavg(),
        "disk_sync_before": disk_before,
        "disk_sync_after": disk_after,
        "started_unix_ms": agenthook::clock::now_ms() - took.as_millis() as u64,
        "duration_s": took.as_secs_f64(),
    });
    suite.report.write_json(&suite.opts.json, context)?;
    println!(
        "\n{} scenario(s) in {:.0} s; JSON: {}",
        scenarios.len(),
        took.as_secs_f64(),
        suite.opts.json.display()
    );
    Ok(())
}

/// How long a durable write takes on the disk the hosts' data dirs are on: 200 times
/// (write 4 KiB, fdatasync) in a scratch file. Every acknowledged ingest waits for at
/// least one such sync (two: the host commits in two phases), so this bounds what any
/// durable webhook host can do here, and shows how busy the shared disk was.
fn disk_probe() -> anyhow::Result<serde_json::Value> {
    use std::io::Write;
    let dir = server::scratch()?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let block = [7u8; 4096];
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let (p50, p99) = (samples[100], samples[198]);
    Ok(json!({
        "write_4k_fdatasync_ms": { "p50": p50, "p99": p99 },
        "summary": format!("4 KiB write + fdatasync p50 {p50:.2} ms, p99 {p99:.2} ms"),
    }))
}

/// Cores, memory, CPU model and load average, from /proc.
fn machine() -> serde_json::Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let load = loadavg();
    json!({
        "cores": cores,
        "memory_gib": mem_gib,
        "cpu": model,
        "load_before": load,
        "summary": format!("{cores} cores, {mem_gib:.0} GiB, {model}, load average {load}"),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
