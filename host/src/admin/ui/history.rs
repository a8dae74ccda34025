//! The last minutes of the overview's numbers, for its small charts: a sample of the
//! status report every [`INTERVAL`], [`KEEP`] of them, in memory. The host runs
//! [`sample`] beside the admin listener and awaits its end before closing the store.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::admin::status::{self, StatusReport};
use crate::metrics;

pub const INTERVAL: Duration = Duration::from_secs(2);
/// Five minutes of samples.
pub const KEEP: usize = 150;

/// One sample: cumulative counters and queue depths at `at_ms`.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    /// Events stored, per source.
    stored: BTreeMap<String, u64>,
    /// Per plugin: (attempts done, attempts dead, deliveries queued).
    plugins: BTreeMap<String, (u64, u64, u64)>,
}

/// What one chart draws: a value per sample, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub values: Vec<f64>,
}

#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("History")
    }
}

impl History {
    pub fn record(&self, report: &StatusReport) {
        let sample = Sample {
            at_ms: report.now_ms,
            stored: report
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.stored))
                .collect(),
            plugins: report
                .plugins
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        (
                            p.summary.attempts_done,
                            p.summary.attempts_dead,
                            p.queue.queued(),
                        ),
                    )
                })
                .collect(),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back(sample);
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// Events stored per second by `source`, between consecutive samples.
    pub fn stored_rate(&self, source: &str) -> Series {
        self.rate(|s| s.stored.get(source).copied())
    }

    /// Attempts done (`dead = false`) or dead-lettered per second by `plugin`.
    pub fn outcome_rate(&self, plugin: &str, dead: bool) -> Series {
        self.rate(|s| {
            s.plugins
                .get(plugin)
                .map(|(done, d, _)| if dead { *d } else { *done })
        })
    }

    /// Deliveries waiting for `plugin` at each sample.
    pub fn queued(&self, plugin: &str) -> Series {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        Series {
            values: samples
                .iter()
                .map(|s| s.plugins.get(plugin).map_or(0.0, |p| p.2 as f64))
                .collect(),
        }
    }

    fn rate(&self, value: impl Fn(&Sample) -> Option<u64>) -> Series {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let values = samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| {
                let dt = b.at_ms.saturating_sub(a.at_ms).max(1) as f64 / 1000.0;
                let (va, vb) = (value(a).unwrap_or(0), value(b).unwrap_or(0));
                vb.saturating_sub(va) as f64 / dt
            })
            .collect();
        Series { values }
    }
}

/// Record a sample of `from` into `history` every [`INTERVAL`] until `stop` resolves.
pub async fn sample(history: &History, from: &metrics::Sources, stop: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let from = from.clone();
        match tokio::task::spawn_blocking(move || status::report(&from)).await {
            Ok(report) => history.record(&report),
            Err(_) => return,
        }
    }
}
