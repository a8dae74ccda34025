//! Scenario 7, `abuse` (issue 12): what hostile load does to a well-behaved sender. One
//! host, one run: a steady sender (200 signed events/s, open loop, see
//! `load::open_loop`) is measured idle, then while 4,000 slow senders hold connections
//! mid-body, then while 64 deliveries of a plugin that spins its CPU until its deadline
//! are in flight. Its ack p99 under each is a ratio of its own idle p99 on the same host,
//! and the host's RSS with the slow senders is compared to idle and to the configured
//! body budget.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::load::{self, LoadResult};
use crate::report::{Section, f, ratio};
use crate::server::{HostSpec, Memory, Server};
use crate::suite::Suite;

/// The well-behaved sender: its arrival rate and the connections it may use.
const RATE: f64 = 200.0;
/// Enough for the rate at seconds of latency (Little's law), so that a stalled host,
/// not the sender's pool, sets the latency.
const SENDER_CONNECTIONS: usize = 512;
/// The spinning plugin: deliveries in flight at once, and each one's deadline.
const SPINNERS: u64 = 64;
const SPIN_TIMEOUT_MS: u64 = 3000;
/// The slow senders: how many, the body each declares, the part each sends before it
/// pauses, and how many connect at once.
const SLOW_SENDERS: usize = 4000;
const DECLARED_BODY: usize = 1_000_000;
const SENT_PART: usize = 60 << 10;
const CONNECTING_AT_ONCE: usize = 64;
/// The ingress body budget the host is given (`server.max_inflight_body_mb`, MiB), when
/// it accepts that setting.
const BODY_BUDGET_MB: u64 = 32;
/// What the host's RSS may exceed idle + the body budget by: the connections' own
/// state (socket buffers are the kernel's, not in RSS).
const RSS_MARGIN_MIB: f64 = 64.0;
/// The target: p99 under abuse at most this many times the idle p99.
const TARGET_RATIO: f64 = 3.0;
/// The shortest measured row, and the warm-up before each (the first also absorbs a
/// fresh host's first writes).
const MIN_ROW: Duration = Duration::from_secs(2);
const WARM_UP: Duration = Duration::from_secs(1);
/// Bounds on waiting for the abuse to be in place.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let open_files = raise_open_files(2 * SLOW_SENDERS as u64 + 4096)?;
    let wasm_path = crate::overhead::build_test_plugin("test-misbehave")?;
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let manifest = format!(
        "[[subscribe]]\nsource = \"bench\"\ntypes = [\"spin.*\"]\n\n[limits]\ntimeout_ms = {SPIN_TIMEOUT_MS}\nmax_concurrency = {SPINNERS}\n\n[retry]\nmax_attempts = 1\n\n[config]\nmode = \"loop\"\n"
    );
    // The data dir on tmpfs where there is one: every ack waits for two fsyncs, whose
    // latency on a shared disk swings tenfold within minutes and would drown the
    // effect measured here (CPU and memory, not the disk).
    let shm = Path::new("/dev/shm");
    let data = if shm.is_dir() {
        Some(
            tempfile::Builder::new()
                .prefix("agenthook-bench-abuse-")
                .tempdir_in(shm)
                .context("cannot create a data dir in /dev/shm")?,
        )
    } else {
        None
    };
    let on_tmpfs = data.is_some();
    let mut spec = HostSpec {
        plugins: vec![("spin".into(), wasm, manifest)],
        data_dir: data.as_ref().map(|d| d.path().join("data")),
        server_config: format!("max_inflight_body_mb = {BODY_BUDGET_MB}\n"),
        ..HostSpec::default()
    };
    // A host without the setting refuses the config (unknown keys are an error): then
    // run without a budget and say so.
    let (host, budget) = match suite.host(&spec).await {
        Ok(host) => (host, Some(BODY_BUDGET_MB)),
        Err(e) => {
            eprintln!(
                "the host did not start with `max_inflight_body_mb` ({e:#}); running without a body budget"
            );
            spec.server_config.clear();
            (suite.host(&spec).await?, None)
        }
    };
    let host_open_files = open_files_limit(host.pid())?;
    // At least 400 samples per row: a p99 of fewer is one hiccup of this shared machine.
    let (duration, size) = (suite.opts.duration().max(MIN_ROW), suite.opts.size);

    let idle = sender(&host, "idle", duration, size).await?;
    let idle_memory = host.memory()?;

    let slow = SlowSenders::start(host.ingress).await;
    let with_slow = sender(&host, "slow", duration, size).await?;
    let slow_memory = host.memory()?;
    let slow_counts = slow.stop().await;

    let spin = Spinners::start(&host, size, duration).await?;
    let with_spin = sender(&host, "spin", duration, size).await?;
    let spin_memory = host.memory()?;
    let in_flight = spin.stop().await;
    host.stop().await?;
    drop(data);

    let idle_p99 = idle.ms(0.99);
    let row = |what: String, r: &LoadResult, m: &Memory| {
        vec![
            what,
            f(r.rate(), 0),
            f(r.ms(0.5), 2),
            f(r.ms(0.99), 2),
            f(r.ms(0.999), 2),
            f(idle_p99, 2),
            ratio(r.ms(0.99), idle_p99),
            f(m.rss_mib(), 1),
            f(m.hwm_mib(), 1),
            r.errors.to_string(),
        ]
    };
    let spin_what = format!(
        "{SPINNERS} spinning deliveries in flight (sampled: min {}, mean {:.0})",
        in_flight.min, in_flight.mean
    );
    let slow_what = format!(
        "{SLOW_SENDERS} slow senders ({} holding at the end; the host answered {}, closed or reset {})",
        slow_counts.holding,
        answers_text(&slow_counts.statuses),
        slow_counts.closed
    );
    let rows = vec![
        row("idle".into(), &idle, &idle_memory),
        row(slow_what, &with_slow, &slow_memory),
        row(spin_what, &with_spin, &spin_memory),
    ];
    // The host's `_mb` settings are MiB (as `store.min_free_disk_mb`).
    let allowed_mib = idle_memory.rss_mib() + BODY_BUDGET_MB as f64 + RSS_MARGIN_MIB;
    let budget_note = match budget {
        Some(mb) => format!("`server.max_inflight_body_mb = {mb}` configured"),
        None => format!(
            "this host does not accept `server.max_inflight_body_mb` (it refused the config), so it ran without a body budget; the target uses {BODY_BUDGET_MB} MiB"
        ),
    };
    suite.report.add(Section {
        key: "abuse",
        title: "7. Abuse: a well-behaved sender next to hostile load (issue 12)".into(),
        notes: vec![
            format!(
                "One host, one run. The well-behaved sender: {RATE:.0} signed {size}-byte events/s, open loop over up to {SENDER_CONNECTIONS} connections, {} s per row (at least 2, also with --quick) after a 1 s warm-up, no plugin subscribed to its events; its figures idle are the baseline of every row. The host's data dir is {}.",
                duration.as_secs_f64(),
                if on_tmpfs {
                    "on tmpfs (/dev/shm), so that the disk's sync latency, which swings tenfold on a shared disk, does not drown the effect measured"
                } else {
                    "on the disk (no /dev/shm here)"
                }
            ),
            format!(
                "Slow senders: {SLOW_SENDERS} connections each send headers declaring a {DECLARED_BODY}-byte body, then {} KiB of it, then pause until the row is measured ({} connected, {} sent their part, in {:.1} s). Host RSS and peak (VmHWM) from /proc right after the row; {budget_note}.",
                SENT_PART >> 10,
                slow_counts.connected,
                slow_counts.sent,
                slow_counts.setup.as_secs_f64()
            ),
            format!(
                "Spinning plugin: `test-misbehave` with `mode = \"loop\"`, `limits.max_concurrency = {SPINNERS}`, `timeout_ms = {SPIN_TIMEOUT_MS}`, `retry.max_attempts = 1`, a burst of {} spin events, then a steady feed at twice the rate deadlines free slots (from up to 128 connections, since ingress itself stalls), so {SPINNERS} stay in flight (the admin API's `in_flight`, sampled every 200 ms during the row). The host's peak RSS only grows: the spinning row's peak includes the slow senders'.",
                in_flight.queued
            ),
            format!(
                "Open files (RLIMIT_NOFILE soft): bench {open_files}, host {host_open_files}."
            ),
        ],
        header: vec![
            "condition",
            "well-behaved ev/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "idle p99 ms",
            "p99 / idle",
            "host RSS MiB",
            "peak MiB",
            "failed",
        ],
        rows,
        json: json!({
            "sender": { "rate_per_s": RATE, "connections": SENDER_CONNECTIONS, "body_bytes": size },
            "idle": { "sender": idle.json(), "rss_mib": idle_memory.rss_mib(), "peak_mib": idle_memory.hwm_mib() },
            "slow_senders": {
                "senders": SLOW_SENDERS,
                "declared_body_bytes": DECLARED_BODY,
                "sent_bytes_each": SENT_PART,
                "connected": slow_counts.connected,
                "sent_part": slow_counts.sent,
                "holding_at_end": slow_counts.holding,
                "answered_by_host": slow_counts.answered,
                "answers_by_status": slow_counts.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "setup_s": slow_counts.setup.as_secs_f64(),
                "closed_by_host": slow_counts.closed,
                "sender": with_slow.json(),
                "p99_vs_idle": with_slow.ms(0.99) / idle_p99,
                "rss_mib": slow_memory.rss_mib(),
                "peak_mib": slow_memory.hwm_mib(),
                "body_budget_mb": budget,
                "rss_allowed_mib": allowed_mib,
            },
            "spinning_plugin": {
                "max_concurrency": SPINNERS,
                "timeout_ms": SPIN_TIMEOUT_MS,
                "burst_events": in_flight.queued,
                "in_flight_min": in_flight.min,
                "in_flight_mean": in_flight.mean,
                "in_flight_samples": in_flight.samples,
                "sender": with_spin.json(),
                "p99_vs_idle": with_spin.ms(0.99) / idle_p99,
                "rss_mib": spin_memory.rss_mib(),
            },
            "open_files": { "bench": open_files, "host": host_open_files },
            "data_dir_on_tmpfs": on_tmpfs,
        }),
    });
    let p99_target = |r: &LoadResult| {
        let x = r.ms(0.99) / idle_p99;
        (
            format!(
                "{:.2} vs {idle_p99:.2} ms idle ({x:.2}×){}",
                r.ms(0.99),
                if r.errors > 0 {
                    format!(", {} failed", r.errors)
                } else {
                    String::new()
                }
            ),
            x <= TARGET_RATIO && r.errors == 0 && r.requests > 0,
        )
    };
    let (measured, met) = p99_target(&with_spin);
    suite.report.target(
        "abuse: ack p99 with 64 spinning deliveries in flight ≤ 3× idle",
        measured,
        met,
    );
    let (measured, met) = p99_target(&with_slow);
    suite.report.target(
        "abuse: a well-behaved sender's p99 with 4,000 slow senders ≤ 3× idle",
        measured,
        met,
    );
    suite.report.target(
        "abuse: host RSS with 4,000 slow senders ≤ idle + body budget + 64 MiB",
        format!(
            "peak {:.0} MiB, allowed {allowed_mib:.0} (idle {:.0}){}",
            slow_memory.hwm_mib(),
            idle_memory.rss_mib(),
            if budget.is_some() {
                ""
            } else {
                "; no budget setting on this host"
            }
        ),
        budget.is_some() && slow_memory.hwm_mib() <= allowed_mib,
    );
    Ok(())
}

/// The well-behaved sender: a warm-up, then `duration` measured; an error if the
/// host has not answered every request a minute after the last was due.
async fn sender(
    host: &Server,
    run: &str,
    duration: Duration,
    size: usize,
) -> anyhow::Result<LoadResult> {
    let bound = duration + Duration::from_secs(60);
    tokio::time::timeout(bound, open_loop_sender(host, run, duration, size))
        .await
        .with_context(|| {
            format!("the host did not answer the well-behaved sender ({run}) within {bound:?}")
        })
}

async fn open_loop_sender(host: &Server, run: &str, duration: Duration, size: usize) -> LoadResult {
    let path = "/hooks/bench";
    let warm = format!("{run}-warm");
    load::open_loop(
        host.ingress,
        path,
        RATE,
        WARM_UP,
        SENDER_CONNECTIONS,
        size,
        "bench.event",
        &warm,
    )
    .await;
    load::open_loop(
        host.ingress,
        path,
        RATE,
        duration,
        SENDER_CONNECTIONS,
        size,
        "bench.event",
        run,
    )
    .await
}

/// Answers by status, like `503 × 3967, 408 × 33`.
fn answers_text(statuses: &BTreeMap<u16, usize>) -> String {
    if statuses.is_empty() {
        return "none".into();
    }
    statuses
        .iter()
        .rev()
        .map(|(status, n)| format!("{status} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Raise this process's soft limit on open files to at least `need` (up to the hard
/// limit); the host, started after, inherits it. Returns the soft limit now.
fn raise_open_files(need: u64) -> anyhow::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= need {
        return Ok(current);
    }
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    if maximum < need {
        bail!(
            "the abuse scenario holds {SLOW_SENDERS} connections and needs {need} open files, but the hard limit is {maximum}; raise it (ulimit -Hn)"
        );
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(need),
            maximum: limit.maximum,
        },
    )
    .context("cannot raise the open files limit")?;
    Ok(need)
}

/// The soft open-files limit of a process, from /proc.
fn open_files_limit(pid: u32) -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .context("reading limits needs /proc")?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no open files limit in /proc/{pid}/limits"))
}

/// Connections that send part of a large body and pause, held until `stop`.
struct SlowSenders {
    setup: Duration,
    tasks: tokio::task::JoinSet<()>,
    release: tokio::sync::watch::Sender<bool>,
    counts: Arc<SlowCounts>,
}

#[derive(Debug, Default)]
struct SlowCounts {
    connected: AtomicUsize,
    /// Sent their part of the body.
    sent: AtomicUsize,
    /// Failed to connect or to send (each counted once).
    failed: AtomicUsize,
    /// The host answered (e.g. 408 or 503) while the sender paused.
    answered: AtomicUsize,
    /// Those answers by status code (0: not an HTTP status line).
    statuses: Mutex<BTreeMap<u16, usize>>,
    /// The connection was closed or reset, unanswered, while the sender paused (by the
    /// host, or by the kernel when the host's accept queue overflowed).
    closed: AtomicUsize,
}

/// What the slow senders did.
#[derive(Debug, Clone)]
struct SlowSummary {
    connected: usize,
    sent: usize,
    /// Still open, paused mid-body, when released.
    holding: usize,
    answered: usize,
    statuses: BTreeMap<u16, usize>,
    closed: usize,
    /// From the first connect until every sender had sent its part (or failed).
    setup: Duration,
}

impl SlowSenders {
    /// Open the connections (at most `CONNECTING_AT_ONCE` connecting at a time) and
    /// return once every one has sent its part or failed, or after `SETUP_TIMEOUT`.
    async fn start(addr: SocketAddr) -> SlowSenders {
        let started = Instant::now();
        let counts = Arc::new(SlowCounts::default());
        let (release, released) = tokio::sync::watch::channel(false);
        let connecting = Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
        let head = Arc::new(format!(
            "POST /hooks/bench HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {DECLARED_BODY}\r\n\r\n"
        ));
        let part = Arc::new(vec![b'x'; SENT_PART]);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..SLOW_SENDERS {
            let (counts, connecting, head, part) = (
                counts.clone(),
                connecting.clone(),
                head.clone(),
                part.clone(),
            );
            let mut released = released.clone();
            tasks.spawn(async move {
                let Ok(permit) = connecting.acquire_owned().await else {
                    return;
                };
                let opened = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    counts.connected.fetch_add(1, Ordering::Relaxed);
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&part).await?;
                    std::io::Result::Ok(stream)
                })
                .await;
                drop(permit);
                let Ok(Ok(mut stream)) = opened else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                counts.sent.fetch_add(1, Ordering::Relaxed);
                // Pause: send nothing more. The host may answer (408, 503) or close.
                let mut buf = [0u8; 512];
                tokio::select! {
                    _ = released.wait_for(|r| *r) => {}
                    read = stream.read(&mut buf) => {
                        match read {
                            Ok(n) if n > 0 => {
                                counts.answered.fetch_add(1, Ordering::Relaxed);
                                // `HTTP/1.1 503 …`
                                let status = std::str::from_utf8(&buf[..n])
                                    .ok()
                                    .and_then(|line| line.get(9..12))
                                    .and_then(|code| code.parse().ok())
                                    .unwrap_or(0);
                                *counts
                                    .statuses
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .entry(status)
                                    .or_default() += 1;
                            }
                            _ => {
                                counts.closed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while counts.sent.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed)
            < SLOW_SENDERS
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SlowSenders {
            setup: started.elapsed(),
            tasks,
            release,
            counts,
        }
    }

    /// Close every connection; what they did.
    async fn stop(mut self) -> SlowSummary {
        let answered = self.counts.answered.load(Ordering::Relaxed);
        let closed = self.counts.closed.load(Ordering::Relaxed);
        let sent = self.counts.sent.load(Ordering::Relaxed);
        let _ = self.release.send(true);
        // Tasks still connecting (past the setup deadline) are cut short.
        let stop_by = Instant::now() + Duration::from_secs(10);
        while Instant::now() < stop_by {
            match tokio::time::timeout_at(stop_by.into(), self.tasks.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.tasks.abort_all();
        SlowSummary {
            connected: self.counts.connected.load(Ordering::Relaxed),
            sent,
            holding: sent.saturating_sub(answered + closed),
            answered,
            statuses: self
                .counts
                .statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            setup: self.setup,
            closed,
        }
    }
}

/// Spin events fed to the spinning plugin, and the sampled count of its deliveries in
/// flight.
struct Spinners {
    /// Spin events sent in the first burst.
    queued: u64,
    feeder: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<Vec<u64>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Deliveries of the spinning plugin in flight during the measured row.
#[derive(Debug, Clone, Default)]
struct InFlight {
    queued: u64,
    min: u64,
    mean: f64,
    samples: usize,
}

impl Spinners {
    /// Send spin events from the background — a burst of enough to keep `SPINNERS` in
    /// flight for a row of `row`, then a steady feed at twice the rate deadlines free
    /// slots, over many connections since ingress itself may stall once they spin —
    /// and return once `SPINNERS` are in flight.
    async fn start(host: &Server, size: usize, row: Duration) -> anyhow::Result<Spinners> {
        let (addr, path) = (host.ingress, "/hooks/bench");
        let rounds = 2 + (row + WARM_UP).as_millis().div_ceil(SPIN_TIMEOUT_MS.into()) as u64;
        let backlog = SPINNERS * rounds;
        let burst = SPINNERS as f64 * 4.0;
        let feed_rate = SPINNERS as f64 * 1000.0 / SPIN_TIMEOUT_MS as f64 * 2.0;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut feeder_stopped = stopped.clone();
        let feeder = tokio::spawn(async move {
            let feed = async {
                let connections = 2 * SPINNERS as usize;
                let send = |rate: f64, duration: Duration, run: &'static str| {
                    load::open_loop(
                        addr,
                        path,
                        rate,
                        duration,
                        connections,
                        size,
                        "spin.event",
                        run,
                    )
                };
                send(
                    burst,
                    Duration::from_secs_f64(backlog as f64 / burst),
                    "spin-burst",
                )
                .await;
                // Bounded: ends after 10 minutes even if never stopped.
                send(feed_rate, Duration::from_secs(600), "spin-feed").await;
            };
            tokio::select! {
                _ = feed => {}
                _ = feeder_stopped.wait_for(|s| *s) => {}
            }
        });
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            let n = in_flight(host).await.unwrap_or(0);
            if n >= SPINNERS {
                break;
            }
            if Instant::now() >= deadline {
                let _ = stop.send(true);
                bail!(
                    "only {n} of {SPINNERS} spinning deliveries in flight after {SETUP_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let admin = host.admin.context("the host has an admin API")?;
        let mut stopped = stopped;
        let sampler = tokio::spawn(async move {
            let mut samples = Vec::new();
            // Bounded like the feeder.
            for _ in 0..3000 {
                if let Some(n) = in_flight_at(admin).await {
                    samples.push(n);
                }
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            samples
        });
        Ok(Spinners {
            queued: backlog,
            feeder,
            sampler,
            stop,
        })
    }

    async fn stop(self) -> InFlight {
        let _ = self.stop.send(true);
        let _ = self.feeder.await;
        let samples = self.sampler.await.unwrap_or_default();
        InFlight {
            queued: self.queued,
            min: samples.iter().copied().min().unwrap_or(0),
            mean: samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64,
            samples: samples.len(),
        }
    }
}

async fn in_flight(host: &Server) -> Option<u64> {
    in_flight_at(host.admin?).await
}

/// The spinning plugin's deliveries in flight, from the admin API.
async fn in_flight_at(admin: SocketAddr) -> Option<u64> {
    let v = crate::server::admin_get(admin, "/admin/v1/plugins/spin")
        .await
        .ok()?;
    v["in_flight"].as_u64()
}
