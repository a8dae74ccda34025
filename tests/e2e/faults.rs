//! Faults in the store while the host runs: the outcome commit failing, a due delivery
//! whose event is gone, the writer thread dying. The host runs on the real redb store
//! wrapped in a backend that injects the fault, so each test also checks what the
//! dispatcher does about it: it heals (a released or expired lease makes the delivery
//! due again, the lost attempt recorded) and it backs off instead of spinning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use agenthook::store::{
    Attempt, Backend, CommitStats, Counts, Delivery, DueBatch, EventFilter, EventId, EventPage,
    Increment, Ingested, JournalEntry, KvEntry, NewEvent, Next, PassReport, Refusal, Retention,
    Store, StoreError, StoredEvent, Swap, Versioned,
};
use serde_json::json;
use tokio::sync::Notify;

use crate::harness::{self, TestEnv, attempts, manifest, plugins, post_id};

const WAIT: Duration = Duration::from_secs(30);

/// The real store, with faults switched on by the test.
#[derive(Debug)]
struct Faulty {
    inner: Store,
    /// `record_attempt` calls to fail before passing them on.
    fail_records: AtomicU32,
    /// `release` calls to fail before passing them on.
    fail_releases: AtomicU32,
    /// An event `event()` claims is gone (0: none); the admin API's list still shows it.
    hidden_event: AtomicU64,
    /// Calls seen, to tell backing off from spinning.
    leases: AtomicU32,
    dues: AtomicU32,
    writer_killed: AtomicBool,
}

impl Faulty {
    fn wrap(inner: Store) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            fail_records: AtomicU32::new(0),
            fail_releases: AtomicU32::new(0),
            hidden_event: AtomicU64::new(0),
            leases: AtomicU32::new(0),
            dues: AtomicU32::new(0),
            writer_killed: AtomicBool::new(false),
        })
    }

    /// Take one injected failure from `counter`, if any is left.
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Stop the real writer thread: every write from now on fails.
    async fn kill_writer(&self) {
        self.writer_killed.store(true, Ordering::SeqCst);
        Backend::close(&*self.inner).await;
    }
}

fn injected() -> StoreError {
    StoreError::NotCommitted
}

#[async_trait::async_trait]
impl Backend for Faulty {
    fn admit(&self, plugins: &[String]) -> Result<(), Refusal> {
        self.inner.admit(plugins)
    }
    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.inner.ingest(event).await
    }
    async fn due(&self, plugin: &str, now_ms: u64, limit: usize) -> Result<DueBatch, StoreError> {
        self.dues.fetch_add(1, Ordering::SeqCst);
        self.inner.due(plugin, now_ms, limit).await
    }
    fn due_changed(&self) -> Arc<Notify> {
        self.inner.due_changed()
    }
    async fn lease(
        &self,
        id: EventId,
        plugin: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Option<Delivery>, StoreError> {
        self.leases.fetch_add(1, Ordering::SeqCst);
        self.inner.lease(id, plugin, now_ms, expires_at_ms).await
    }
    async fn release(&self, keys: Vec<(EventId, String)>) -> Result<(), StoreError> {
        if Self::take(&self.fail_releases) {
            return Err(injected());
        }
        self.inner.release(keys).await
    }
    async fn record_attempt(
        &self,
        id: EventId,
        plugin: &str,
        attempt: Attempt,
        next: Next,
    ) -> Result<(), StoreError> {
        if Self::take(&self.fail_records) {
            return Err(injected());
        }
        self.inner.record_attempt(id, plugin, attempt, next).await
    }
    async fn replay(
        &self,
        id: EventId,
        plugins: Option<Vec<String>>,
        add: Vec<String>,
        only_dead: bool,
        keep_journal: bool,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.inner
            .replay(id, plugins, add, only_dead, keep_journal, now_ms)
            .await
    }
    async fn journal(&self, id: EventId, plugin: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.journal(id, plugin).await
    }
    async fn journal_record(
        &self,
        id: EventId,
        plugin: &str,
        entry: JournalEntry,
    ) -> Result<(), StoreError> {
        self.inner.journal_record(id, plugin, entry).await
    }
    async fn purge_dead(&self, keys: Vec<(EventId, String)>) -> Result<usize, StoreError> {
        self.inner.purge_dead(keys).await
    }
    async fn expire(&self, cutoffs: Retention) -> Result<PassReport, StoreError> {
        self.inner.expire(cutoffs).await
    }
    async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.kv_get(plugin, key).await
    }
    async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.inner.kv_set(plugin, key, value).await
    }
    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, StoreError> {
        self.inner.kv_delete(plugin, key).await
    }
    async fn kv_get_versioned(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        self.inner.kv_get_versioned(plugin, key).await
    }
    async fn kv_compare_and_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Swap, StoreError> {
        self.inner
            .kv_compare_and_swap(plugin, key, expected, value)
            .await
    }
    async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
    ) -> Result<Increment, StoreError> {
        self.inner.kv_increment(plugin, key, delta).await
    }
    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<Vec<KvEntry>, StoreError> {
        self.inner
            .kv_list(plugin, prefix, start_after, limit, values)
            .await
    }
    async fn event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        if id == self.hidden_event.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.event(id).await
    }
    async fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, StoreError> {
        self.inner.deliveries(id).await
    }
    async fn delivery(&self, id: EventId, plugin: &str) -> Result<Option<Delivery>, StoreError> {
        self.inner.delivery(id, plugin).await
    }
    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.inner
            .list_events(filter, before, limit, scan_limit)
            .await
    }
    fn state_counts(&self) -> Vec<(String, Counts)> {
        self.inner.state_counts()
    }
    fn queue_depth(&self, plugin: &str) -> u64 {
        self.inner.queue_depth(plugin)
    }
    fn oldest_due_ms(&self, plugin: &str) -> Result<Option<u64>, StoreError> {
        self.inner.oldest_due_ms(plugin)
    }
    fn event_count(&self) -> Result<u64, StoreError> {
        self.inner.event_count()
    }
    fn dedup_count(&self) -> Result<u64, StoreError> {
        self.inner.dedup_count()
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn free_disk_bytes(&self) -> Option<u64> {
        self.inner.free_disk_bytes()
    }
    fn min_free_disk_bytes(&self) -> u64 {
        self.inner.min_free_disk_bytes()
    }
    fn is_writable(&self) -> bool {
        self.inner.is_writable()
    }
    fn describe(&self) -> String {
        format!("{} (fault injection)", self.inner.describe())
    }
    fn commit_stats(&self) -> &CommitStats {
        self.inner.commit_stats()
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn close(&self) {
        Backend::close(&*self.inner).await;
    }
}

/// A plugin that succeeds, and the environment around it.
fn env_with_ok_plugin() -> TestEnv {
    let env = TestEnv::new();
    env.install_plugin(
        "ok",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.*",
            "[limits]\ntimeout_ms = 2000\n\n[config]\noutcome = \"ok\"\n",
        ),
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_cannot_be_committed_gives_its_lease_back_and_runs_again() {
    let env = env_with_ok_plugin();
    let faulty = Faulty::wrap_later();
    let host = env
        .start_with_store(agenthook::clock::Clock::system(), faulty.installer())
        .await;
    let faulty = faulty.get();
    faulty.fail_records.store(2, Ordering::SeqCst);

    let id = post_id(&host, "job-1", json!({"type": "job.run"})).await;
    let done = host.wait_status(&id, "done", WAIT).await;
    // The two runs whose outcome was lost are not in the history; the delivery ran
    // again each time (released, not stuck until a restart) and the third one stuck.
    assert_eq!(attempts(&done, "ok").len(), 1, "{done}");
    assert_eq!(faulty.fail_records.load(Ordering::SeqCst), 0);
    let leases = faulty.leases.load(Ordering::SeqCst);
    assert!(
        (3..=6).contains(&leases),
        "3 runs need 3 leases; {leases} means the dispatcher spun"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_even_be_released_runs_out_and_the_lost_attempt_is_recorded() {
    let env = env_with_ok_plugin();
    let clock = agenthook::clock::Clock::system();
    let faulty = Faulty::wrap_later();
    let host = env
        .start_with_store(clock.clone(), faulty.installer())
        .await;
    let faulty = faulty.get();
    faulty.fail_records.store(1, Ordering::SeqCst);
    faulty.fail_releases.store(1, Ordering::SeqCst);

    let id = post_id(&host, "job-1", json!({"type": "job.run"})).await;
    // The run happened, its outcome and the release were lost: the delivery is leased
    // and nothing runs it until the lease runs out.
    harness::wait_until("the release was tried", WAIT, || async {
        (faulty.fail_releases.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    // (A lease answers before its commit: wait for the commit to show it.)
    harness::wait_until("the delivery shows leased", WAIT, || async {
        let e = host.event(&id).await;
        (e["deliveries"][0]["status"] == "leased").then_some(())
    })
    .await;
    let leases_before = faulty.leases.load(Ordering::SeqCst);

    // timeout_ms (2 s) + the 30 s grace later, the lease has run out: a new event wakes
    // the dispatcher, which takes the delivery over and records the lost attempt.
    clock.advance(Duration::from_secs(40));
    let tick = post_id(&host, "job-tick", json!({"type": "job.tick"})).await;
    host.wait_status(&tick, "done", WAIT).await;
    let done = host.wait_status(&id, "done", WAIT).await;
    let history = attempts(&done, "ok");
    assert_eq!(history.len(), 2, "{done}");
    assert_eq!(history[0]["outcome"], "retry");
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("lease_expired:"),
        "{history:?}"
    );
    assert_eq!(history[1]["outcome"], "done");
    // While the lease held, the dispatcher left the delivery alone.
    assert!(faulty.leases.load(Ordering::SeqCst) - leases_before <= 3);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_delivery_whose_event_is_gone_becomes_a_dead_letter_once() {
    let env = env_with_ok_plugin();
    let faulty = Faulty::wrap_later();
    let host = env
        .start_with_store(agenthook::clock::Clock::system(), faulty.installer())
        .await;
    let faulty = faulty.get();
    // Ids are assigned in order from 1 in a fresh store: the event reads of the first
    // event find nothing (the dispatcher's, and `GET /admin/v1/events/1`); the list
    // reads it from its own scan.
    faulty.hidden_event.store(1, Ordering::SeqCst);

    let id = post_id(&host, "job-1", json!({"type": "job.run"})).await;
    assert_eq!(id, "1");
    let dead = harness::wait_until("the delivery is dead", WAIT, || async {
        host.all_events()
            .await
            .into_iter()
            .find(|e| e["id"] == "1" && e["status"] == "dead")
    })
    .await;
    let summary = &dead["delivery_summary"][0];
    assert_eq!(summary["attempts"], 1, "{dead}");
    assert!(
        summary["last_error"]
            .as_str()
            .unwrap()
            .starts_with("event_missing:"),
        "{dead}"
    );
    // Other events still flow, and the missing one was leased exactly once.
    let other = post_id(&host, "job-2", json!({"type": "job.run"})).await;
    host.wait_status(&other, "done", WAIT).await;
    assert_eq!(faulty.leases.load(Ordering::SeqCst), 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_writer_dies_the_host_reports_it_refuses_events_and_backs_off() {
    let env = TestEnv::new();
    env.install_plugin(
        "later",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.*",
            "[retry]\nmax_attempts = 5\ninitial_backoff_ms = 60000\nmax_backoff_ms = 60000\n\n[config]\noutcome = \"retry\"\n",
        ),
    );
    let clock = agenthook::clock::Clock::system();
    let faulty = Faulty::wrap_later();
    let host = env
        .start_with_store(clock.clone(), faulty.installer())
        .await;
    let faulty = faulty.get();

    // One delivery waiting for its retry, then the writer thread dies.
    let id = post_id(&host, "job-1", json!({"type": "job.run"})).await;
    harness::wait_until("attempt 1 recorded", WAIT, || async {
        (attempts(&host.event(&id).await, "later").len() == 1).then_some(())
    })
    .await;
    faulty.kill_writer().await;

    // Ingress refuses what it can no longer keep, and says why.
    let r = host.post_signed("job-2", &json!({"type": "job.run"})).await;
    assert_eq!(r.status, 503, "{:?}", r.json);
    assert_eq!(r.json["reason"], "store_unavailable");
    let (status, _, body) = host.get_text(host.ingress, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the store's writer has stopped"), "{body}");

    // The retry comes due; every lease fails. The dispatcher backs off (100 ms,
    // doubling) instead of trying again at once, for as long as the store fails.
    let leases_before = faulty.leases.load(Ordering::SeqCst);
    clock.advance(Duration::from_secs(61));
    faulty.due_changed().notify_one();
    harness::wait_until("the due retry was tried", WAIT, || async {
        (faulty.leases.load(Ordering::SeqCst) > leases_before).then_some(())
    })
    .await;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        // Wake it as often as anything could: it must still wait out its backoff.
        faulty.due_changed().notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tries = faulty.leases.load(Ordering::SeqCst) - leases_before;
    let reads = faulty.dues.load(Ordering::SeqCst);
    assert!(
        (2..=8).contains(&tries),
        "{tries} lease tries in 3 s: expected a handful with backoff"
    );
    assert!(
        reads < 50,
        "{reads} due-queue reads in 3 s: the dispatcher spun"
    );
    assert!(faulty.writer_killed.load(Ordering::SeqCst));
    host.stop().await;
}

/// The tests build the `Faulty` backend around the store the host opens; this holds it
/// until the host has started.
struct Slot(Arc<std::sync::Mutex<Option<Arc<Faulty>>>>);

impl Faulty {
    fn wrap_later() -> Slot {
        Slot(Arc::default())
    }
}

impl Slot {
    fn installer(&self) -> impl FnOnce(Store) -> Store + use<> {
        let slot = self.0.clone();
        move |inner| {
            let faulty = Faulty::wrap(inner);
            *slot.lock().unwrap() = Some(faulty.clone());
            Store::from_backend(faulty)
        }
    }

    fn get(&self) -> Arc<Faulty> {
        self.0
            .lock()
            .unwrap()
            .clone()
            .expect("the host opened its store")
    }
}
