//! `GET /admin/v1/status` (behind `agenthook status`): per source and per plugin, what
//! arrived, what waits and how it went since start, read from the metrics' instruments,
//! the store's counts and the health checks. Reads only.

use std::collections::HashMap;

use serde::Serialize;

use crate::clock::now_ms;
use crate::metrics::ingress::{self, VERIFICATION_REASONS};
use crate::metrics::{PluginSummary, Sources};
use crate::store::Counts;

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
    pub queue: Counts,
    /// How long the longest-waiting due delivery has been due.
    pub oldest_due_age_ms: Option<u64>,
    #[serde(flatten)]
    pub summary: PluginSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    pub size_bytes: u64,
    pub events: u64,
}

/// The per-source and per-plugin summary behind `agenthook status`.
pub fn report(from: &Sources) -> StatusReport {
    let mut sources: Vec<SourceSummary> = Vec::new();
    for (source, outcome, n) in from.ingress.outcomes.snapshot() {
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
            ingress::STORED => s.stored = n,
            ingress::DUPLICATE => s.duplicates = n,
            ingress::CHALLENGE => s.challenges = n,
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
    let summaries = from.deliveries.summary();
    let loaded = from.registry.snapshot();
    let counts: HashMap<String, Counts> = from.store.state_counts().into_iter().collect();
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
                oldest_due_age_ms: from
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
        started_at_ms: from.health.started_at_ms(),
        ready: from.health.ready(),
        unknown_source_requests: from.ingress.outcomes.unknown_source(),
        sources,
        plugins,
        store: StoreSummary {
            size_bytes: from.store.size_bytes(),
            events: from.store.event_count().unwrap_or(0),
        },
    }
}
