//! What `/metrics` reads at scrape time rather than counting on the hot path: queue
//! depths and ages from the store, loaded plugins and their versions, store size, free
//! disk, readiness, build info.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Sources;
use super::ingress::{DUPLICATE, VERIFICATION_REASONS};
use crate::clock::now_ms;

/// What is read at scrape time rather than counted on the hot path.
#[derive(Debug)]
pub(super) struct Snapshot(pub(super) Sources);

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
        let ingress = s.ingress.outcomes.snapshot();
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
                .filter(|(_, o, _)| *o == DUPLICATE)
                .map(|(src, _, n)| ([("source", src.as_str())], *n)),
        )?;

        gauge(
            &mut encoder,
            "agenthook_connections",
            "Connections open now, by listener (ingress, admin)",
            s.connections
                .iter()
                .map(|(l, c)| ([("listener", *l)], as_i64(c.open()))),
        )?;
        counter(
            &mut encoder,
            "agenthook_connection_limit_waits",
            "Times a listener had server.max_connections open and waited for one to close before accepting more",
            s.connections
                .iter()
                .map(|(l, c)| ([("listener", *l)], c.limit_waits())),
        )?;
        counter(
            &mut encoder,
            "agenthook_header_timeouts",
            "Connections closed because no complete request head arrived in time (slow headers or an idle keep-alive connection), by listener",
            s.connections
                .iter()
                .map(|(l, c)| ([("listener", *l)], c.header_timeouts())),
        )?;
        gauge(
            &mut encoder,
            "agenthook_ingress_inflight_body_bytes",
            "Request-body bytes reserved now (declared lengths and chunks received), out of server.max_inflight_body_mb",
            unlabelled(s.body_budget.in_use() as u64),
        )?;
        gauge(
            &mut encoder,
            "agenthook_ingress_inflight_body_limit_bytes",
            "server.max_inflight_body_mb in bytes",
            unlabelled(s.body_budget.limit() as u64),
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
            unlabelled(u64::from(s.health.ready())),
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
