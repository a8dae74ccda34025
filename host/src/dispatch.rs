//! The dispatcher: takes due deliveries from the store, runs each in its plugin under
//! the plugin's concurrency limit, and commits the outcome: done, retry at
//! now + backoff, or dead letter.
//!
//! A delivery stays in the store's due queue until its outcome is committed, so a crash
//! at any point means the attempt runs again after restart (at-least-once); the
//! idempotency key lets a handler make that harmless. Plugins are served
//! independently: a plugin at its concurrency limit never delays another.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use tracing::Instrument;

use crate::clock::Clock;
use crate::config::manifest::{OrderingKey, RetryPolicy};
use crate::health::Health;
use crate::metrics::{AttemptRecord, DeliveryMetrics};
use crate::plugins::{Plugin, Registry};
use crate::runtime::{CallOutcome, CallReport, MAX_INSTANCES, Runtime, WitEvent};
use crate::store::{Attempt, AttemptOutcome, DueBatch, EventId, Next, Store};
use crate::tools::{Journal, Services as ToolServices, Tools};

/// How long in-flight deliveries get to finish at shutdown before they are abandoned
/// (they stay due and run again after restart).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A lease outlives the plugin's timeout by this much: the time to commit the outcome.
const LEASE_GRACE_MS: u64 = 30_000;
/// After a store failure, the dispatcher waits this long before it reads or leases
/// again, doubling with each consecutive failure up to `STORE_BACKOFF_MAX_MS`.
const STORE_BACKOFF_MIN_MS: u64 = 100;
const STORE_BACKOFF_MAX_MS: u64 = 30_000;
/// How far past the deliveries its lanes know an ordered plugin's due queue is read.
const ORDER_SLACK: usize = 64;
/// When an ordered plugin's due queue held more than was read, it is read again after
/// this long.
const ORDER_RESCAN_MS: u64 = 10;
/// At most one log line per this long about a failing store (with a count of the rest).
const STORE_LOG_EVERY_MS: u64 = 10_000;

/// The dispatcher's shared state.
#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    /// Woken by the store when deliveries become due, and when an attempt finishes.
    wake: Arc<Notify>,
    /// Instances running at once across all plugins.
    global: Arc<Semaphore>,
    /// (event, plugin) pairs being attempted now; they are still in the due queue.
    inflight: Arc<Mutex<InFlight>>,
    clock: Clock,
    /// What every attempt's tools share (HTTP clients, SMTP, emit routing).
    tools: Arc<ToolServices>,
    metrics: DeliveryMetrics,
    health: Arc<Health>,
    /// Backs off reads and leases while the store fails, instead of spinning.
    trouble: Arc<Mutex<StoreTrouble>>,
}

/// Consecutive store failures seen by the dispatcher, and what was logged of them.
#[derive(Debug, Default)]
struct StoreTrouble {
    failures: u32,
    /// No read or lease before this (clock ms).
    until_ms: u64,
    last_log_ms: u64,
    unlogged: u64,
}

/// (event, plugin) pairs being attempted.
type InFlight = HashSet<(EventId, Arc<str>)>;
/// A plugin's concurrency slot and a global one, held while a handler runs.
type Permits = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

impl Dispatcher {
    pub fn new(
        store: Store,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        clock: Clock,
        tools: Arc<ToolServices>,
        metrics: DeliveryMetrics,
        health: Arc<Health>,
    ) -> Self {
        Dispatcher {
            clock,
            tools,
            metrics,
            health,
            trouble: Arc::default(),
            wake: store.due_changed(),
            store,
            runtime,
            registry,
            global: Arc::new(Semaphore::new(MAX_INSTANCES as usize)),
            inflight: Arc::default(),
        }
    }

    /// Wake the dispatch loop (e.g. after the plugin set changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Run until `shutdown` resolves, then let in-flight attempts finish (up to a
    /// deadline).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tasks = JoinSet::new();
        loop {
            let next_due = self.dispatch_due(&mut tasks).await;
            while tasks.try_join_next().is_some() {}
            let sleep = match next_due {
                Some(at) => Duration::from_millis(at.saturating_sub(self.clock.now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = &mut shutdown => break,
            }
        }
        self.health.set_draining();
        if tokio::time::timeout(DRAIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                abandoned = tasks.len(),
                "in-flight deliveries did not finish in time; they will run again after restart"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let abandoned: Vec<(EventId, String)> = self
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .map(|(id, p)| (id, p.to_string()))
                .collect();
            if let Err(e) = self.store.release(abandoned).await {
                tracing::warn!(error = %e, "could not release leases; they are reclaimed at the next start");
            }
        }
    }

    /// Start every due delivery that has a free permit. Returns when the next
    /// delivery that could not start now is due (None: nothing is waiting on time).
    async fn dispatch_due(&self, tasks: &mut JoinSet<()>) -> Option<u64> {
        let now = self.clock.now_ms();
        if let Some(until) = self.backing_off(now) {
            return Some(until);
        }
        let mut next_due: Option<u64> = None;
        for plugin in self.registry.snapshot().values() {
            let free = plugin.permits.available_permits();
            if free == 0 {
                continue; // a finishing attempt wakes us
            }
            let inflight_here = {
                let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                inflight.iter().filter(|(_, p)| *p == plugin.name).count()
            };
            let lanes = self.registry.lanes();
            let ordering = plugin.manifest.ordering.as_ref();
            if let Some(spec) = ordering
                && lanes.needs_scan(&plugin.name, spec)
                && let Err(e) = self.fill_lanes(plugin, spec).await
            {
                lanes.forget(&plugin.name);
                return Some(self.store_failed("cannot read the queue of an ordered plugin", &e));
            }
            // An ordered plugin's due deliveries may wait behind others of their key:
            // look past those to the ones that may start.
            let window = free
                + inflight_here
                + ordering.map_or(0, |_| lanes.len(&plugin.name) + ORDER_SLACK);
            let DueBatch { due, later } = match self.store.due(&plugin.name, now, window).await {
                Ok(d) => d,
                Err(e) => {
                    let until = self.store_failed("cannot read the due queue", &e);
                    return Some(until);
                }
            };
            let truncated = due.len() >= window;
            let mut saturated = false;
            for (_, id) in due {
                let key = (id, plugin.name.clone());
                if self
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&key)
                {
                    continue;
                }
                if let Some(spec) = ordering {
                    if !lanes.knows(&plugin.name, id) {
                        match self.ordering_key(id, spec).await {
                            Ok(k) => lanes.add(&plugin.name, id, k),
                            Err(e) => {
                                return Some(self.store_failed("cannot load a due event", &e));
                            }
                        }
                    }
                    if !lanes.may_start(&plugin.name, id) {
                        continue;
                    }
                }
                let Ok(permit) = plugin.permits.clone().try_acquire_owned() else {
                    saturated = true;
                    break;
                };
                let Ok(global) = self.global.clone().try_acquire_owned() else {
                    saturated = true;
                    break;
                };
                if ordering.is_some() {
                    lanes.started(&plugin.name, id);
                }
                self.inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone());
                let this = self.clone();
                let plugin = plugin.clone();
                let span = tracing::info_span!("delivery", event = id, plugin = %plugin.name);
                tasks.spawn(async move {
                    let settled = this
                        .attempt(&plugin, id, (permit, global))
                        .instrument(span)
                        .await;
                    if plugin.manifest.ordering.is_some() {
                        this.registry.lanes().finished(&plugin.name, id, settled);
                    }
                    this.inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    this.wake.notify_one();
                });
            }
            // Deliveries past the window were not seen: look again soon, with the lanes
            // now knowing more of them.
            let later = match (ordering, truncated) {
                (Some(_), true) => Some(now + ORDER_RESCAN_MS),
                (Some(_), false) => later.filter(|at| *at > now),
                (None, _) => later,
            };
            if let (false, Some(at)) = (saturated, later) {
                next_due = Some(next_due.map_or(at, |n| n.min(at)));
            }
        }
        next_due
    }

    /// Put every queued delivery of an ordered plugin in its lane: at start, and when
    /// its ordering key changed. Deliveries running now count as running.
    async fn fill_lanes(
        &self,
        plugin: &Plugin,
        spec: &OrderingKey,
    ) -> Result<(), crate::store::StoreError> {
        let queued = self.store.queue_depth(&plugin.name) as usize + ORDER_SLACK;
        let all = self.store.due(&plugin.name, u64::MAX, queued).await?;
        let lanes = self.registry.lanes();
        for (_, id) in all.due {
            let key = self.ordering_key(id, spec).await?;
            lanes.add(&plugin.name, id, key);
            let running = self
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&(id, plugin.name.clone()));
            if running {
                lanes.started(&plugin.name, id);
            }
        }
        Ok(())
    }

    /// The ordering key of a stored event (None: it has none, or it is gone).
    async fn ordering_key(
        &self,
        id: EventId,
        spec: &OrderingKey,
    ) -> Result<Option<String>, crate::store::StoreError> {
        Ok(self
            .store
            .event(id)
            .await?
            .and_then(|e| spec.of(&e.meta.headers, &e.body)))
    }

    /// One attempt of one delivery, start to committed outcome. `permits` (the plugin's
    /// and the global concurrency slot) are given back as soon as the handler returned:
    /// they bound running instances, not outcomes waiting for their commit. The
    /// delivery stays in `inflight` until the outcome is committed, so it is not started
    /// twice meanwhile. Returns whether the delivery settled: done or dead (committed),
    /// or no longer there to run.
    async fn attempt(&self, plugin: &Arc<Plugin>, id: EventId, permits: Permits) -> bool {
        let name = &*plugin.name;
        let now = self.clock.now_ms();
        let lease_until = now + plugin.manifest.limits.timeout_ms + LEASE_GRACE_MS;
        let delivery = match self.store.lease(id, name, now, lease_until).await {
            Ok(Some(d)) => d,
            // Finished, removed (e.g. a purge) or leased meanwhile: nothing to do.
            Ok(None) => return true,
            Err(e) => {
                self.store_failed("cannot lease a due delivery", &e);
                return false;
            }
        };
        let event = match self.store.event(id).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                // Nothing can ever be delivered: a dead letter an operator can see and
                // purge, rather than a delivery that stays due forever.
                tracing::error!(
                    plugin = name,
                    event = id,
                    "a due delivery has no stored event"
                );
                let attempt = Attempt {
                    number: delivery.attempts.len() as u32 + 1,
                    started_at_ms: now,
                    duration_ms: 0,
                    outcome: AttemptOutcome::Dead,
                    error: Some(
                        "event_missing: the event record is gone; there is nothing to deliver"
                            .into(),
                    ),
                    plugin_version: plugin.compiled.version.clone(),
                    logs: Vec::new(),
                    journal: None,
                };
                return self.record(id, name, attempt, Next::Dead).await;
            }
            Err(e) => {
                self.store_failed("cannot load a due event", &e);
                self.release(id, name).await;
                return false;
            }
        };
        crate::telemetry::join_event_trace(
            &tracing::Span::current(),
            &event.meta.source,
            &event.meta.event_id,
        );
        // The retry budget counts from the last replay; the number shown to the plugin
        // counts every attempt.
        let in_budget = delivery.attempts_in_budget() + 1;
        let number = delivery.attempts.len() as u32 + 1;
        let wit_event = WitEvent {
            id: id.to_string(),
            event_id: event.meta.event_id.clone(),
            source: event.meta.source.clone(),
            event_type: event.meta.event_type.clone(),
            received_at_ms: event.meta.received_at_ms,
            attempt: number,
            idempotency_key: idempotency_key(id, name),
            headers: event.meta.headers.clone(),
            body: event.body,
        };
        // What earlier attempts of this delivery recorded: their effects are replayed,
        // not made again.
        let recorded = match self.store.journal(id, name).await {
            Ok(j) => j,
            Err(e) => {
                self.store_failed("cannot load a delivery's journal", &e);
                self.release(id, name).await;
                return false;
            }
        };
        let journal = Journal::new(recorded, number, plugin.access.journal);
        let journal_note = journal.note();
        let tools = Tools::new(
            &plugin.access,
            id,
            &event.meta,
            wit_event.idempotency_key.clone(),
            self.store.clone(),
            self.tools.clone(),
        )
        .with_journal(journal);
        let started_at_ms = self.clock.now_ms();
        // On the guest threads: a handler that computes until its deadline holds one of
        // those, never a thread that serves ingress or commits to the store.
        let (runtime, guest) = (self.runtime.clone(), plugin.clone());
        let call = async move {
            runtime
                .call(&guest.compiled, &guest.manifest, tools, wit_event)
                .await
        };
        // The call's logs and tool calls belong to this delivery's span there too.
        let call = call.instrument(tracing::Span::current());
        let report = match self.runtime.guests().spawn(call).await {
            Ok(report) => report,
            Err(e) => CallReport {
                outcome: CallOutcome::Retry {
                    reason: format!("trap: the call ended abnormally in the host: {e}"),
                    delay_ms: None,
                },
                duration: Duration::from_millis(self.clock.now_ms().saturating_sub(started_at_ms)),
                logs: Vec::new(),
                memory_peak_bytes: 0,
                kind: "trap",
            },
        };
        drop(permits);
        self.wake.notify_one();
        let retry = &plugin.manifest.retry;
        let (outcome, error, next) = match report.outcome {
            CallOutcome::Done => (AttemptOutcome::Done, None, Next::Done),
            CallOutcome::Permanent(reason) => (AttemptOutcome::Dead, Some(reason), Next::Dead),
            CallOutcome::Retry { reason, .. } if in_budget >= retry.max_attempts => (
                AttemptOutcome::Dead,
                Some(format!(
                    "{reason} (attempt {in_budget} of retry.max_attempts {})",
                    retry.max_attempts
                )),
                Next::Dead,
            ),
            CallOutcome::Retry { reason, delay_ms } => {
                let delay = backoff(retry, in_budget, delay_ms, &mut rand::rng());
                (
                    AttemptOutcome::Retry,
                    Some(reason),
                    Next::RetryAt(self.clock.now_ms() + delay),
                )
            }
        };
        let label = match outcome {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        };
        let finished_at_ms = self.clock.now_ms();
        self.metrics.record(&AttemptRecord {
            plugin: name,
            outcome: label,
            kind: report.kind,
            handler: report.duration,
            latency: (outcome == AttemptOutcome::Done).then(|| {
                Duration::from_millis(finished_at_ms.saturating_sub(event.meta.received_at_ms))
            }),
            memory_peak_bytes: report.memory_peak_bytes,
        });
        tracing::info!(
            attempt = number,
            outcome = label,
            kind = report.kind,
            duration_ms = report.duration.as_millis() as u64,
            version = &plugin.compiled.version[..12],
            error = error.as_deref().unwrap_or(""),
            "delivery attempt finished"
        );
        let attempt = Attempt {
            number,
            started_at_ms,
            duration_ms: report.duration.as_millis() as u64,
            outcome,
            error,
            plugin_version: plugin.compiled.version.clone(),
            logs: report.logs,
            journal: journal_note.summary(),
        };
        self.record(id, name, attempt, next).await && !matches!(next, Next::RetryAt(_))
    }

    /// Commit an attempt's outcome; true once committed. If that fails, the delivery
    /// runs again (at-least-once): its lease is given back now, or, if even that
    /// fails, it runs out and the delivery becomes due then.
    async fn record(&self, id: EventId, plugin: &str, attempt: Attempt, next: Next) -> bool {
        match self.store.record_attempt(id, plugin, attempt, next).await {
            Ok(()) => {
                self.store_ok();
                true
            }
            Err(e) => {
                self.store_failed("cannot record an attempt", &e);
                self.release(id, plugin).await;
                false
            }
        }
    }

    /// Give back a lease without an outcome.
    async fn release(&self, id: EventId, plugin: &str) {
        if let Err(e) = self.store.release(vec![(id, plugin.to_string())]).await {
            self.store_failed("cannot give back a lease (it runs out instead)", &e);
        }
    }

    /// Until when (clock ms) the dispatcher waits because the store is failing.
    fn backing_off(&self, now: u64) -> Option<u64> {
        let t = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        (t.failures > 0 && now < t.until_ms).then_some(t.until_ms)
    }

    /// Note a store failure: back off (exponentially, bounded) and log at a bounded
    /// rate. Returns when the dispatcher may try again.
    fn store_failed(&self, what: &str, error: &crate::store::StoreError) -> u64 {
        let now = self.clock.now_ms();
        let mut t = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        t.failures = t.failures.saturating_add(1);
        let wait = STORE_BACKOFF_MIN_MS
            .saturating_mul(1 << (t.failures - 1).min(20))
            .min(STORE_BACKOFF_MAX_MS);
        t.until_ms = t.until_ms.max(now + wait);
        if t.failures == 1 || now.saturating_sub(t.last_log_ms) >= STORE_LOG_EVERY_MS {
            tracing::error!(
                error = %error,
                consecutive_failures = t.failures,
                suppressed = t.unlogged,
                retry_in_ms = wait,
                "{what}; the dispatcher backs off"
            );
            t.last_log_ms = now;
            t.unlogged = 0;
        } else {
            t.unlogged += 1;
        }
        t.until_ms
    }

    /// A store write succeeded: stop backing off.
    fn store_ok(&self) {
        let mut t = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        if t.failures > 0 {
            tracing::info!(after_failures = t.failures, "the store answers again");
            *t = StoreTrouble::default();
        }
    }
}

/// Stable per (event, plugin): the same on every attempt and replay.
pub fn idempotency_key(id: EventId, plugin: &str) -> String {
    format!("agenthook:{id}:{plugin}")
}

/// The delay before the next attempt after attempt `number` (1-based) failed.
///
/// Exponential with full jitter: uniformly random between `initial_backoff_ms` and
/// `initial_backoff_ms * 2^(number-1)` capped at `max_backoff_ms`, so that deliveries
/// that failed together do not retry together. A delay the handler asked for is
/// honoured, kept within the same bounds.
pub fn backoff(
    policy: &RetryPolicy,
    number: u32,
    requested_ms: Option<u64>,
    rng: &mut impl Rng,
) -> u64 {
    let (lo, hi) = (policy.initial_backoff_ms, policy.max_backoff_ms);
    if let Some(ms) = requested_ms {
        return ms.clamp(lo, hi);
    }
    let exp = number.saturating_sub(1).min(63);
    let ceiling = lo.saturating_mul(1u64 << exp).min(hi);
    rng.random_range(lo..=ceiling.max(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_within_bounds_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 1..=10 {
            let ceiling = (100u64 << (n - 1)).min(1000);
            let samples: Vec<u64> = (0..200).map(|_| backoff(&p, n, None, &mut rng)).collect();
            assert!(
                samples.iter().all(|d| (100..=ceiling).contains(d)),
                "attempt {n}: {samples:?}"
            );
            if ceiling > 100 {
                // Jitter: not all the same.
                assert!(samples.iter().any(|d| *d != samples[0]));
            }
        }
        assert_eq!(backoff(&p, 1, None, &mut rng), 100);
    }

    #[test]
    fn requested_delay_is_honoured_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(backoff(&p, 1, Some(500), &mut rng), 500);
        assert_eq!(backoff(&p, 1, Some(5), &mut rng), 100);
        assert_eq!(backoff(&p, 1, Some(50_000), &mut rng), 1000);
    }
}
