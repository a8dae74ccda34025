//! What the host counts, and its Prometheus text at the admin port's `GET /metrics`.
//!
//! Each part of the host owns the instruments it updates on its hot path (lock-free
//! counters and histograms): ingress its request counters, the store its commit
//! histograms and per-state delivery counts, the dispatcher its attempt counters and
//! latency histograms, the tools their call counters. [`Metrics`] registers them all in
//! one registry and adds what is read at scrape time (queue depths, plugin versions,
//! store size, health). Label values are bounded: configured source names (unknown
//! ones share `_unknown`), loaded plugin names, fixed outcome and reason sets.

mod collector;
pub mod ingress;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as PromRegistry;
use serde::Serialize;

use crate::health::Health;
use crate::http::{BodyBudget, ConnectionStats};
use crate::plugins::Registry;
use crate::store::Store;
use crate::tools::ToolMetrics;
pub use ingress::IngressMetrics;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn handler_histogram() -> Histogram {
    // 50 µs … ~1.6 s, then +Inf.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
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
    pub fn summary(&self) -> HashMap<String, PluginSummary> {
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

/// Everything `/metrics`, `/readyz` and the status view read.
#[derive(Clone)]
pub struct Sources {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub ingress: IngressMetrics,
    /// Ingress's budget of request-body bytes buffered at once.
    pub body_budget: BodyBudget,
    /// Each listener's connection counters, by listener (`ingress`, `admin`).
    pub connections: Vec<(&'static str, Arc<ConnectionStats>)>,
    pub deliveries: DeliveryMetrics,
    pub tools: ToolMetrics,
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Sources")
    }
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
        // On a store several hosts share, every series carries `host`, so one scrape
        // config over all hosts keeps them apart.
        let mut r = match sources.store.cluster() {
            Some(c) => PromRegistry::with_labels(
                [(
                    std::borrow::Cow::Borrowed("host"),
                    std::borrow::Cow::Owned(c.host().to_string()),
                )]
                .into_iter(),
            ),
            None => PromRegistry::default(),
        };
        r.register(
            "agenthook_ingress_requests",
            "Requests to /hooks/{source} by source and HTTP status (unconfigured sources: _unknown)",
            sources.ingress.requests.clone(),
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
        r.register(
            "agenthook_llm_tokens",
            "Tokens the llm tool used, by plugin, model and direction (input, output)",
            sources.tools.llm_tokens.clone(),
        );
        r.register_collector(Box::new(collector::Snapshot(sources.clone())));
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
