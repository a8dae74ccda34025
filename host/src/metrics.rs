//! What the host counts, and its Prometheus text at the admin port's `GET /metrics`.
//!
//! Each part of the host owns the instruments it updates on its hot path (lock-free
//! counters and histograms): ingress its request counters, the store its commit
//! histograms and per-state delivery counts, the dispatcher its attempt counters and
//! latency histograms, the tools their call counters. [`Metrics`] registers them all in
//! one registry and adds what is read at scrape time (queue depths, plugin versions,
//! store size, health). Label values are bounded: configured source names (unknown
//! ones share `_unknown`), loaded plugin names, fixed outcome and reason sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as PromRegistry;
use serde::Serialize;

use crate::clock::now_ms;
use crate::ingress::counters::{self, IngressCounters};
use crate::runtime::registry::Registry;
use crate::store::Store;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Rejection reasons that are verification failures (the request is not provably from
/// the sender), as opposed to refusals of a verified request.
pub const VERIFICATION_REASONS: &[&str] = &[
    "signature_mismatch",
    "timestamp_out_of_tolerance",
    "missing_header",
    "malformed_header",
    "duplicate_header",
];

/// Recent received → done latencies kept per plugin for `agenthook status`.
const RECENT_LATENCIES: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStatus {
    pub source: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub plugin: String,
    /// What happened to the delivery: `done`, `retry` or `dead`.
    pub outcome: &'static str,
    /// Why: `ok`, `handler`, `trap`, `cpu_deadline`, `memory_limit`, `timeout`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub plugin: String,
    /// `kv.get`, `http.fetch`, `email.send`, `events.emit`, …
    pub tool: &'static str,
    /// `ok`, `denied`, `limited`, `invalid` or `error`.
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn handler_histogram() -> Histogram {
    // 50 µs … ~1.6 s, then +Inf.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Ingress's request counter by source and HTTP status.
#[derive(Debug, Clone, Default)]
pub struct IngressMetrics {
    pub requests: Family<SourceStatus, Counter>,
}

impl IngressMetrics {
    /// Count one request to `/hooks/{source}` answered with `status`. `source` must be
    /// a configured name or `_unknown`.
    pub fn request(&self, source: &str, status: u16) {
        self.requests
            .get_or_create(&SourceStatus {
                source: source.to_string(),
                status,
            })
            .inc();
    }
}

/// What the dispatcher records per attempt.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    pub attempts: Family<AttemptLabels, Counter>,
    /// Event received → delivery done, per plugin.
    pub latency: HistogramFamily<PluginLabel>,
    /// Handler call duration (instantiate + call + teardown), per plugin.
    pub handler: HistogramFamily<PluginLabel>,
    /// Largest linear memory any attempt asked for, per plugin.
    pub memory_peak: Family<PluginLabel, Gauge>,
    recent: Arc<Mutex<HashMap<String, Recent>>>,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        DeliveryMetrics {
            attempts: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            handler: Family::new_with_constructor(handler_histogram),
            memory_peak: Family::default(),
            recent: Arc::default(),
        }
    }
}

/// Per plugin: attempts by outcome since start, and the last received → done latencies.
#[derive(Debug, Default)]
struct Recent {
    done: u64,
    retry: u64,
    dead: u64,
    latencies_ms: Vec<u64>,
    next: usize,
}

/// One finished attempt, as the dispatcher reports it.
#[derive(Debug)]
pub struct AttemptRecord<'a> {
    pub plugin: &'a str,
    pub outcome: &'static str,
    pub kind: &'static str,
    pub handler: Duration,
    /// Received → done, when the delivery is done.
    pub latency: Option<Duration>,
    pub memory_peak_bytes: u64,
}

impl DeliveryMetrics {
    pub fn record(&self, a: &AttemptRecord<'_>) {
        let plugin = PluginLabel {
            plugin: a.plugin.to_string(),
        };
        self.attempts
            .get_or_create(&AttemptLabels {
                plugin: a.plugin.to_string(),
                outcome: a.outcome,
                kind: a.kind,
            })
            .inc();
        self.handler
            .get_or_create(&plugin)
            .observe(a.handler.as_secs_f64());
        if let Some(latency) = a.latency {
            self.latency
                .get_or_create(&plugin)
                .observe(latency.as_secs_f64());
        }
        let peak = i64::try_from(a.memory_peak_bytes).unwrap_or(i64::MAX);
        let gauge = self.memory_peak.get_or_create(&plugin);
        if peak > gauge.get() {
            gauge.set(peak);
        }
        drop(gauge);

        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let r = recent.entry(a.plugin.to_string()).or_default();
        match a.outcome {
            "done" => r.done += 1,
            "dead" => r.dead += 1,
            _ => r.retry += 1,
        }
        if let Some(latency) = a.latency {
            let ms = latency.as_millis() as u64;
            if r.latencies_ms.len() < RECENT_LATENCIES {
                r.latencies_ms.push(ms);
            } else {
                r.latencies_ms[r.next] = ms;
            }
            r.next = (r.next + 1) % RECENT_LATENCIES;
        }
    }

    /// Attempts by outcome since start and the p50/p99 of the recent received → done
    /// latencies, per plugin.
    fn summary(&self) -> HashMap<String, PluginSummary> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .map(|(name, r)| {
                let mut sorted = r.latencies_ms.clone();
                sorted.sort_unstable();
                let q = |p: f64| {
                    (!sorted.is_empty()).then(|| {
                        let i = ((sorted.len() as f64 * p).ceil() as usize).max(1) - 1;
                        sorted[i.min(sorted.len() - 1)]
                    })
                };
                (
                    name.clone(),
                    PluginSummary {
                        attempts_done: r.done,
                        attempts_retry: r.retry,
                        attempts_dead: r.dead,
                        latency_samples: sorted.len(),
                        latency_p50_ms: q(0.50),
                        latency_p99_ms: q(0.99),
                    },
                )
            })
            .collect()
    }
}

/// Tool calls by plugin, tool and outcome.
#[derive(Debug, Clone, Default)]
pub struct ToolMetrics {
    pub calls: Family<ToolLabels, Counter>,
}

/// What `/readyz` checks besides the store: the dispatcher loop is running and the
/// host is not shutting down.
#[derive(Debug, Default)]
pub struct Health {
    dispatcher_running: AtomicBool,
    draining: AtomicBool,
    started_at_ms: AtomicU64,
}

impl Health {
    pub fn new() -> Arc<Health> {
        let h = Health::default();
        h.started_at_ms.store(now_ms(), Ordering::Relaxed);
        Arc::new(h)
    }

    /// Mark the dispatcher running until the returned guard drops (also on a panic).
    pub fn dispatcher_running(self: &Arc<Self>) -> DispatcherGuard {
        self.dispatcher_running.store(true, Ordering::Relaxed);
        DispatcherGuard(self.clone())
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms.load(Ordering::Relaxed)
    }
}

/// Clears `dispatcher_running` when dropped.
#[derive(Debug)]
pub struct DispatcherGuard(Arc<Health>);

impl Drop for DispatcherGuard {
    fn drop(&mut self) {
        self.0.dispatcher_running.store(false, Ordering::Relaxed);
    }
}

/// One readiness check: its name, whether it passes, and a detail for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Everything `/metrics`, `/readyz` and the status view read.
#[derive(Clone)]
pub struct Sources {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub ingress: Arc<IngressCounters>,
    pub ingress_metrics: IngressMetrics,
    pub deliveries: DeliveryMetrics,
    pub tools: ToolMetrics,
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Sources")
    }
}

impl Sources {
    /// The readiness checks, in a fixed order.
    pub fn readiness(&self) -> Vec<Check> {
        let plugins = self.registry.snapshot().len();
        let running = self.health.dispatcher_running.load(Ordering::Relaxed);
        let draining = self.health.draining.load(Ordering::Relaxed);
        let min = self.store.min_free_disk_bytes();
        let disk = match self.store.free_disk_bytes() {
            Some(free) => Check {
                name: "disk",
                ok: free >= min,
                detail: format!("{} MiB free, {} MiB needed", free >> 20, min >> 20),
            },
            None => Check {
                name: "disk",
                ok: true,
                detail: "free space unknown".into(),
            },
        };
        vec![
            Check {
                name: "store",
                ok: self.store.is_writable(),
                detail: if self.store.is_writable() {
                    format!("{} open", self.store.path().display())
                } else {
                    "the store's writer has stopped".into()
                },
            },
            Check {
                name: "plugins",
                ok: plugins > 0,
                detail: format!("{plugins} loaded"),
            },
            Check {
                name: "dispatcher",
                ok: running && !draining,
                detail: if draining {
                    "shutting down".into()
                } else if running {
                    "running".into()
                } else {
                    "not running".into()
                },
            },
            disk,
        ]
    }

    /// The per-source and per-plugin summary behind `agenthook status`.
    pub fn status(&self) -> StatusReport {
        let mut sources: Vec<SourceSummary> = Vec::new();
        for (source, outcome, n) in self.ingress.snapshot() {
            if sources.last().is_none_or(|s| s.name != source) {
                sources.push(SourceSummary {
                    name: source.clone(),
                    ..SourceSummary::default()
                });
            }
            let Some(s) = sources.last_mut() else {
                continue;
            };
            match outcome {
                counters::STORED => s.stored = n,
                counters::DUPLICATE => s.duplicates = n,
                counters::CHALLENGE => s.challenges = n,
                reason => {
                    s.rejected += n;
                    if VERIFICATION_REASONS.contains(&reason) {
                        s.verification_failures += n;
                    }
                    if n > 0 {
                        s.rejected_by_reason.insert(reason.to_string(), n);
                    }
                }
            }
        }
        let summaries = self.deliveries.summary();
        let loaded = self.registry.snapshot();
        let counts: HashMap<String, crate::store::Counts> =
            self.store.state_counts().into_iter().collect();
        let mut names: Vec<&String> = loaded.keys().chain(counts.keys()).collect();
        names.sort();
        names.dedup();
        let now = now_ms();
        let plugins = names
            .into_iter()
            .map(|name| {
                let s = summaries.get(name);
                PluginStatus {
                    name: name.clone(),
                    loaded: loaded.contains_key(name),
                    version: loaded.get(name).map(|p| p.compiled.version.clone()),
                    queue: counts.get(name).copied().unwrap_or_default(),
                    oldest_due_age_ms: self
                        .store
                        .oldest_due_ms(name)
                        .ok()
                        .flatten()
                        .map(|at| now.saturating_sub(at)),
                    summary: s.cloned().unwrap_or_default(),
                }
            })
            .collect();
        StatusReport {
            now_ms: now,
            started_at_ms: self.health.started_at_ms(),
            ready: self.readiness().iter().all(|c| c.ok),
            unknown_source_requests: self.ingress.unknown_source(),
            sources,
            plugins,
            store: StoreSummary {
                size_bytes: self.store.size_bytes(),
                events: self.store.event_count().unwrap_or(0),
            },
        }
    }
}

/// `GET /admin/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub now_ms: u64,
    pub started_at_ms: u64,
    pub ready: bool,
    pub unknown_source_requests: u64,
    pub sources: Vec<SourceSummary>,
    pub plugins: Vec<PluginStatus>,
    pub store: StoreSummary,
}

/// Requests to one source since start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceSummary {
    pub name: String,
    pub stored: u64,
    pub duplicates: u64,
    pub challenges: u64,
    pub rejected: u64,
    pub verification_failures: u64,
    pub rejected_by_reason: std::collections::BTreeMap<String, u64>,
}

/// One plugin's queue and recent results.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    /// False for a removed plugin whose deliveries are still stored.
    pub loaded: bool,
    pub version: Option<String>,
    pub queue: crate::store::Counts,
    /// How long the longest-waiting due delivery has been due.
    pub oldest_due_age_ms: Option<u64>,
    #[serde(flatten)]
    pub summary: PluginSummary,
}

/// Attempts since start and recent latency of one plugin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginSummary {
    pub attempts_done: u64,
    pub attempts_retry: u64,
    pub attempts_dead: u64,
    /// How many of the latest received → done latencies the percentiles are over.
    pub latency_samples: usize,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    pub size_bytes: u64,
    pub events: u64,
}

/// The registry behind `/metrics`.
pub struct Metrics {
    registry: PromRegistry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(sources: &Sources) -> Metrics {
        let mut r = PromRegistry::default();
        r.register(
            "agenthook_ingress_requests",
            "Requests to /hooks/{source} by source and HTTP status (unconfigured sources: _unknown)",
            sources.ingress_metrics.requests.clone(),
        );
        let commits = sources.store.commit_stats();
        r.register(
            "agenthook_store_commit_batch_size",
            "Writes carried by each group commit",
            commits.batch_size.clone(),
        );
        r.register(
            "agenthook_store_commit_seconds",
            "Duration of each group commit, fsyncs included",
            commits.seconds.clone(),
        );
        r.register(
            "agenthook_attempts",
            "Delivery attempts by plugin, outcome (done, retry, dead) and kind (ok, handler, trap, cpu_deadline, memory_limit, timeout)",
            sources.deliveries.attempts.clone(),
        );
        r.register(
            "agenthook_delivery_latency_seconds",
            "Event received to delivery done, per plugin",
            sources.deliveries.latency.clone(),
        );
        r.register(
            "agenthook_handler_duration_seconds",
            "Duration of each handler call (instantiate, call, teardown), per plugin",
            sources.deliveries.handler.clone(),
        );
        r.register(
            "agenthook_plugin_memory_peak_bytes",
            "Largest linear memory an attempt of the plugin asked for",
            sources.deliveries.memory_peak.clone(),
        );
        r.register(
            "agenthook_tool_calls",
            "Tool calls by plugin, tool and outcome (ok, denied, limited, invalid, error)",
            sources.tools.calls.clone(),
        );
        r.register_collector(Box::new(Snapshot(sources.clone())));
        Metrics { registry: r }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// What is read at scrape time rather than counted on the hot path.
#[derive(Debug)]
struct Snapshot(Sources);

fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One sample without labels.
fn unlabelled(v: u64) -> [([(&'static str, &'static str); 0], i64); 1] {
    [([], as_i64(v))]
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let ingress = s.ingress.snapshot();
        counter(
            &mut encoder,
            "agenthook_ingress_outcomes",
            "Requests by configured source and outcome: stored, duplicate, challenge, or the rejection reason",
            ingress
                .iter()
                .map(|(src, outcome, n)| ([("source", src.as_str()), ("outcome", outcome)], *n)),
        )?;
        counter(
            &mut encoder,
            "agenthook_verification_failures",
            "Requests refused because the signature, timestamp or signing headers did not verify, by source and reason",
            ingress
                .iter()
                .filter(|(_, o, _)| VERIFICATION_REASONS.contains(o))
                .map(|(src, reason, n)| ([("source", src.as_str()), ("reason", reason)], *n)),
        )?;
        counter(
            &mut encoder,
            "agenthook_dedup_hits",
            "Webhooks acknowledged as duplicates of a stored event, by source",
            ingress
                .iter()
                .filter(|(_, o, _)| *o == counters::DUPLICATE)
                .map(|(src, _, n)| ([("source", src.as_str())], *n)),
        )?;

        let counts = s.store.state_counts();
        gauge(
            &mut encoder,
            "agenthook_queue_depth",
            "Deliveries by plugin and state (pending, leased, retrying, dead)",
            counts.iter().flat_map(|(plugin, c)| {
                [
                    ("pending", c.pending),
                    ("leased", c.leased),
                    ("retrying", c.retrying),
                    ("dead", c.dead),
                ]
                .map(|(state, v)| {
                    (
                        [("plugin", plugin.clone()), ("state", state.into())],
                        as_i64(v),
                    )
                })
            }),
        )?;
        let now = now_ms();
        gauge(
            &mut encoder,
            "agenthook_queue_oldest_due_age_seconds",
            "How long the longest-waiting due delivery of each plugin has been due (0: none due)",
            counts.iter().map(|(plugin, _)| {
                let age = s
                    .store
                    .oldest_due_ms(plugin)
                    .ok()
                    .flatten()
                    .map_or(0, |at| now.saturating_sub(at) / 1000);
                ([("plugin", plugin.as_str())], as_i64(age))
            }),
        )?;

        let loaded = s.registry.snapshot();
        gauge(
            &mut encoder,
            "agenthook_plugins_loaded",
            "Plugins loaded now",
            unlabelled(loaded.len() as u64),
        )?;
        gauge(
            &mut encoder,
            "agenthook_plugin_info",
            "Loaded plugins: 1 per plugin with its version (SHA-256 of the component)",
            loaded.values().map(|p| {
                (
                    [
                        ("plugin", p.name.to_string()),
                        ("version", p.compiled.version.clone()),
                    ],
                    1,
                )
            }),
        )?;
        gauge(
            &mut encoder,
            "agenthook_store_size_bytes",
            "Size of the redb file on disk",
            unlabelled(s.store.size_bytes()),
        )?;
        gauge(
            &mut encoder,
            "agenthook_store_events",
            "Events stored (until retention removes them)",
            unlabelled(s.store.event_count().unwrap_or(0)),
        )?;
        if let Some(free) = s.store.free_disk_bytes() {
            gauge(
                &mut encoder,
                "agenthook_disk_free_bytes",
                "Free space on the data dir's file system",
                unlabelled(free),
            )?;
        }
        gauge(
            &mut encoder,
            "agenthook_ready",
            "1 when every readiness check passes (see /readyz)",
            unlabelled(u64::from(s.readiness().iter().all(|c| c.ok))),
        )?;
        gauge(
            &mut encoder,
            "agenthook_build_info",
            "The running agenthook version",
            [([("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;
        gauge(
            &mut encoder,
            "agenthook_start_time_seconds",
            "When the host started, in Unix seconds",
            unlabelled(s.health.started_at_ms() / 1000),
        )?;
        Ok(())
    }
}
