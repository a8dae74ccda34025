//! The host tools a plugin may call, one file per tool, and the per-call context they
//! share.
//!
//! Deny by default: each tool checks the plugin's grants first and answers a call the
//! manifest does not grant with `tool-error.denied` naming the missing grant — never a
//! trap. Tools see only this plugin's grants, config values and kv space.

mod compat;
mod config;
mod email;
mod emit;
mod http;
mod journal;
mod kv;
mod llm;
mod log;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::clock::Clock;
use crate::config::manifest::{Grants, JournalPolicy, Manifest};
use crate::config::{Config, ConfigError, Secret};
use crate::store::{EventId, EventMeta, Store};
use crate::wit::agenthook::plugin::types::{self, ToolError};

pub use emit::CHAIN_HEADER;
pub use journal::{Journal, JournalNote};
pub use llm::TokenLabels;

/// Tool calls one attempt may make; a plugin looping on a tool is cut off with
/// `tool-error.limited` instead of flooding the store.
const MAX_TOOL_CALLS: u32 = 10_000;
/// Log lines and bytes kept per attempt.
const MAX_LOG_LINES: usize = 200;
const MAX_LOG_BYTES: usize = 64 * 1024;
const MAX_LOG_LINE: usize = 4096;

/// Tool calls by plugin, tool and outcome, counted here and registered by `metrics`.
#[derive(Debug, Clone, Default)]
pub struct ToolMetrics {
    pub calls: Family<ToolLabels, Counter>,
    /// `llm.chat` tokens by plugin, model and direction (input, output).
    pub llm_tokens: Family<TokenLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub plugin: String,
    /// `kv.get`, `http.fetch`, `email.send`, `events.emit`, …
    pub tool: &'static str,
    /// `ok`, `denied`, `limited`, `invalid` or `error`.
    pub outcome: &'static str,
}

/// Where an emitted event goes: the plugins subscribed to its source and type. The
/// plugin registry answers it; the tools only ask.
pub trait Routes: Send + Sync {
    fn subscribers(&self, source: &str, event_type: &str) -> Vec<String>;
}

/// What the tools of a plugin may use, from its manifest: built once per loaded
/// version and shared by all of its attempts.
#[derive(Debug, Clone)]
pub struct Access {
    pub plugin: Arc<str>,
    pub grants: Grants,
    /// The `[config]` values, resolved secrets included.
    pub config: Arc<BTreeMap<String, Secret>>,
    /// `limits.tool_calls_per_second`, shared by all of this version's attempts.
    pub rate: Arc<CallRate>,
    /// `limits.timeout_ms`: no network call waits past an attempt's deadline.
    pub timeout: Duration,
    /// `[journal]`: which tools' effects are journaled.
    pub journal: JournalPolicy,
}

impl Access {
    pub fn new(plugin: &str, manifest: &Manifest) -> Access {
        Access {
            plugin: Arc::from(plugin),
            grants: manifest.grants.clone(),
            config: Arc::new(manifest.config.clone()),
            rate: Arc::new(CallRate::new(manifest.limits.tool_calls_per_second)),
            timeout: Duration::from_millis(manifest.limits.timeout_ms),
            journal: manifest.journal,
        }
    }
}

/// What the tools share across attempts and plugins: the HTTP clients, the SMTP
/// transport, the routes of emitted events and the host's limits. Built once when the
/// host starts.
pub struct Services {
    http: http::HttpClients,
    /// `None` when the host config has no `[email]` section.
    mailer: Option<Arc<email::Mailer>>,
    routes: Arc<dyn Routes>,
    max_chain_depth: u32,
    /// An emitted event's body is held to the same cap as a webhook's.
    max_event_bytes: usize,
    /// Stamps emitted events, like ingress stamps webhooks.
    clock: Clock,
    /// Tool calls by plugin, tool and outcome, for `/metrics`.
    metrics: ToolMetrics,
    /// The model providers of `[llm]` and each plugin's token use.
    llm: llm::Providers,
}

impl Services {
    pub fn new(
        config: &Config,
        routes: Arc<dyn Routes>,
        clock: Clock,
    ) -> Result<Services, ConfigError> {
        let http = http::HttpClients::new()
            .map_err(|e| ConfigError::invalid("http", format!("cannot set up TLS: {e}")))?;
        let mailer = config
            .email
            .as_ref()
            .map(email::Mailer::new)
            .transpose()?
            .map(Arc::new);
        let metrics = ToolMetrics::default();
        let llm = llm::Providers::new(
            &config.llm,
            http.operator_client(),
            metrics.llm_tokens.clone(),
        );
        Ok(Services {
            http,
            mailer,
            llm,
            routes,
            max_chain_depth: config.emit.max_chain_depth,
            max_event_bytes: config.server.max_body_bytes,
            clock,
            metrics,
        })
    }

    /// The tool-call counters, for `/metrics`.
    pub fn metrics(&self) -> ToolMetrics {
        self.metrics.clone()
    }
}

/// The delivery being handled, as the tools that act on its behalf need it.
struct Origin {
    /// The delivery's idempotency key: emits and Message-IDs derive from it.
    idempotency_key: String,
    /// The event's chain of hops (see `emit`).
    chain: Vec<String>,
}

/// What the tools of one handler call can reach.
pub struct Tools {
    plugin: Arc<str>,
    event: EventId,
    grants: Grants,
    config: Arc<BTreeMap<String, Secret>>,
    /// `None` while the plugin loads (see [`Tools::inert`]).
    store: Option<Store>,
    services: Arc<Services>,
    origin: Origin,
    /// When the attempt's wall deadline (`limits.timeout_ms`) passes; network calls
    /// never wait past it.
    deadline: Instant,
    logs: LogSink,
    calls: u32,
    /// The plugin's `limits.tool_calls_per_second` bucket.
    rate: Arc<CallRate>,
    emits: u32,
    emits_by_type: HashMap<String, u32>,
    emails_sent: u32,
    /// The delivery's journal of effects (empty until [`Tools::with_journal`]).
    journal: Journal,
}

impl Tools {
    /// The tools for one attempt of a plugin on event `event` (stored as `meta`).
    pub fn new(
        access: &Access,
        event: EventId,
        meta: &EventMeta,
        idempotency_key: String,
        store: Store,
        services: Arc<Services>,
    ) -> Self {
        let mut tools = Tools::inert(access, services);
        tools.event = event;
        tools.store = Some(store);
        tools.origin = Origin {
            idempotency_key,
            chain: emit::chain_of(meta),
        };
        tools
    }

    /// Tools that act on nothing, for a trial instantiation while a plugin loads: the
    /// grants are the plugin's, but any call that would reach the store (kv, emit) is
    /// refused, since no delivery is being handled.
    pub fn inert(access: &Access, services: Arc<Services>) -> Self {
        Tools {
            plugin: access.plugin.clone(),
            event: 0,
            grants: access.grants.clone(),
            config: access.config.clone(),
            store: None,
            services,
            origin: Origin {
                idempotency_key: String::new(),
                chain: Vec::new(),
            },
            deadline: Instant::now() + access.timeout,
            logs: LogSink::default(),
            calls: 0,
            rate: access.rate.clone(),
            emits: 0,
            emits_by_type: HashMap::new(),
            emails_sent: 0,
            journal: Journal::new(Vec::new(), 1, access.journal),
        }
    }

    /// These tools with the delivery's journal as loaded for this attempt.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }

    /// The store, for a call made while handling a delivery.
    fn store(&self) -> Result<&Store, ToolError> {
        self.store.as_ref().ok_or_else(|| {
            ToolError::Failed("no delivery is being handled: the plugin is still loading".into())
        })
    }

    /// A handle to the attempt's log lines, readable after the call.
    pub fn logs(&self) -> LogSink {
        self.logs.clone()
    }

    /// Count a call against the per-attempt cap.
    fn count_in_attempt(&mut self) -> Result<(), ToolError> {
        self.calls += 1;
        if self.calls > MAX_TOOL_CALLS {
            return Err(ToolError::Limited(format!(
                "more than {MAX_TOOL_CALLS} tool calls in one attempt"
            )));
        }
        Ok(())
    }

    /// Count a call of a tool that costs the host something (kv, http, email, emit)
    /// against the per-attempt cap and the plugin's rate.
    fn count_call(&mut self) -> Result<(), ToolError> {
        self.count_in_attempt()?;
        if !self.rate.try_take(Instant::now()) {
            return Err(ToolError::Limited(format!(
                "more than {} tool calls per second (limits.tool_calls_per_second)",
                self.rate.per_second
            )));
        }
        Ok(())
    }

    /// Count a finished call of `tool` by outcome, trace it, and pass its result on.
    fn tally<T>(&self, tool: &'static str, result: Result<T, ToolError>) -> Result<T, ToolError> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ToolError::Denied(_)) => "denied",
            Err(ToolError::Invalid(_)) => "invalid",
            Err(ToolError::Limited(_)) => "limited",
            Err(ToolError::Failed(_)) => "error",
        };
        self.services
            .metrics
            .calls
            .get_or_create(&ToolLabels {
                plugin: self.plugin.to_string(),
                tool,
                outcome,
            })
            .inc();
        match &result {
            Ok(_) => tracing::debug!(tool, outcome, "tool call"),
            Err(e) => tracing::debug!(tool, outcome, error = ?e, "tool call"),
        }
        result
    }

    /// Time left before the attempt's deadline.
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl types::Host for Tools {}

/// A token bucket: `per_second` calls a second, with a burst of one second's worth.
/// Shared by every attempt of one plugin version, so a flood from many concurrent
/// deliveries is held to the same rate as one.
#[derive(Debug)]
pub struct CallRate {
    per_second: u32,
    /// (tokens left, when they were counted).
    bucket: Mutex<(f64, Instant)>,
}

impl CallRate {
    pub fn new(per_second: u32) -> Self {
        CallRate {
            per_second,
            bucket: Mutex::new((f64::from(per_second), Instant::now())),
        }
    }

    /// Take one call's token at `now`; false when the bucket is empty.
    pub fn try_take(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * f64::from(self.per_second);
        b.0 = (b.0 + refill).min(f64::from(self.per_second));
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The log lines of one attempt, capped in count and size.
#[derive(Debug, Clone, Default)]
pub struct LogSink(Arc<Mutex<LogBuffer>>);

#[derive(Debug, Default)]
struct LogBuffer {
    lines: Vec<String>,
    bytes: usize,
    dropped: usize,
}

impl LogSink {
    fn push(&self, mut line: String) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if b.lines.len() >= MAX_LOG_LINES || b.bytes + line.len() > MAX_LOG_BYTES {
            b.dropped += 1;
            return;
        }
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        b.bytes += line.len();
        b.lines.push(line);
    }

    /// The lines so far, plus a note of how many were dropped.
    pub fn take(&self) -> Vec<String> {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = std::mem::take(&mut b.lines);
        if b.dropped > 0 {
            lines.push(format!(
                "… {} more log lines dropped (cap {MAX_LOG_LINES} lines / {MAX_LOG_BYTES} bytes)",
                b.dropped
            ));
        }
        lines
    }
}

#[cfg(test)]
mod rate_tests {
    use super::CallRate;
    use std::time::{Duration, Instant};

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let rate = CallRate::new(10);
        let t0 = Instant::now();
        assert!((0..10).all(|_| rate.try_take(t0)), "a one-second burst");
        assert!(!rate.try_take(t0), "then empty");
        // 100 ms later: one more token.
        assert!(rate.try_take(t0 + Duration::from_millis(100)));
        assert!(!rate.try_take(t0 + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| rate.try_take(later)).count(), 10);
    }
}
