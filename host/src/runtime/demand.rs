//! How long a handler *wanted* a CPU: the time it was running or ready to run, as
//! opposed to waiting for a host call (a tool, a sleep). When the wall deadline passes,
//! this tells a CPU hog from a handler that waited, whatever else the machine is doing:
//! counting only the time the guest was actually on a CPU made a spinning plugin look
//! like a waiting one whenever the host was busy (its guest threads run at a lower
//! priority), and the operator was told "the rest waiting (tool calls, sleeps)".
//!
//! The guest future is polled through [`Demand`], which wraps the waker: a poll that
//! returns `Pending` after waking itself (wasmtime's epoch yield) stays *ready*; one that
//! returns `Pending` without a wake is *blocked* on the host until its waker is called.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// The guest's demand for a CPU so far, shared with the caller.
#[derive(Debug)]
pub(super) struct DemandClock {
    started: Instant,
    /// Microseconds spent blocked on the host, closed intervals.
    blocked_micros: AtomicU64,
    /// When the current blocked interval began (micros since `started`), or `u64::MAX`.
    blocked_since: AtomicU64,
}

impl DemandClock {
    fn micros(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn block(&self) {
        self.blocked_since.store(self.micros(), Ordering::Release);
    }

    fn unblock(&self) {
        let since = self.blocked_since.swap(u64::MAX, Ordering::AcqRel);
        if since != u64::MAX {
            self.blocked_micros
                .fetch_add(self.micros().saturating_sub(since), Ordering::AcqRel);
        }
    }

    /// Milliseconds the guest was running or ready to run, up to now.
    pub(super) fn wanted_ms(&self) -> u64 {
        let now = self.micros();
        let mut blocked = self.blocked_micros.load(Ordering::Acquire);
        let since = self.blocked_since.load(Ordering::Acquire);
        if since != u64::MAX {
            blocked += now.saturating_sub(since);
        }
        now.saturating_sub(blocked) / 1000
    }
}

/// Forwards a wake to the task's waker and notes that the guest is ready again.
struct Tracked {
    inner: Mutex<Waker>,
    woken: AtomicBool,
    clock: Arc<DemandClock>,
}

impl Wake for Tracked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.clock.unblock();
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wake_by_ref();
    }
}

/// A future whose readiness is timed by its [`DemandClock`].
pub(super) struct Demand<F> {
    inner: Pin<Box<F>>,
    clock: Arc<DemandClock>,
    waker: Option<Arc<Tracked>>,
}

impl<F: Future> Demand<F> {
    pub(super) fn new(inner: F) -> Demand<F> {
        Demand {
            inner: Box::pin(inner),
            clock: Arc::new(DemandClock {
                started: Instant::now(),
                blocked_micros: AtomicU64::new(0),
                blocked_since: AtomicU64::new(u64::MAX),
            }),
            waker: None,
        }
    }

    pub(super) fn clock(&self) -> Arc<DemandClock> {
        self.clock.clone()
    }
}

impl<F: Future> Future for Demand<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // A poll means the guest runs now, whatever woke it.
        this.clock.unblock();
        let tracked = match &this.waker {
            Some(t) => {
                let mut inner = t.inner.lock().unwrap_or_else(|p| p.into_inner());
                if !inner.will_wake(cx.waker()) {
                    *inner = cx.waker().clone();
                }
                drop(inner);
                t.clone()
            }
            None => {
                let t = Arc::new(Tracked {
                    inner: Mutex::new(cx.waker().clone()),
                    woken: AtomicBool::new(false),
                    clock: this.clock.clone(),
                });
                this.waker = Some(t.clone());
                t
            }
        };
        tracked.woken.store(false, Ordering::Release);
        let waker = Waker::from(tracked.clone());
        let poll = this.inner.as_mut().poll(&mut Context::from_waker(&waker));
        if poll.is_pending() {
            // Woken during the poll (a yield): still ready. Otherwise it waits for the
            // host until the waker is called; a wake racing this store is caught by the
            // second look at `woken`.
            if !tracked.woken.load(Ordering::Acquire) {
                this.clock.block();
                if tracked.woken.load(Ordering::Acquire) {
                    this.clock.unblock();
                }
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sleeping_is_not_demand_and_yielding_is() {
        let sleeper = Demand::new(tokio::time::sleep(Duration::from_millis(200)));
        let clock = sleeper.clock();
        sleeper.await;
        assert!(
            clock.wanted_ms() < 50,
            "a sleep wanted {} ms",
            clock.wanted_ms()
        );

        // A future that yields (wakes itself, returns Pending) for 200 ms is always ready.
        let until = Instant::now() + Duration::from_millis(200);
        let spinner = Demand::new(std::future::poll_fn(move |cx| {
            if Instant::now() >= until {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }));
        let clock = spinner.clock();
        spinner.await;
        assert!(
            clock.wanted_ms() >= 190,
            "a spinner wanted {} ms",
            clock.wanted_ms()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_ready_guest_starved_of_cpu_still_counts_as_wanting_it() {
        // The spinner shares one worker thread with a task that hogs it: it is ready the
        // whole time but runs only now and then.
        let hog = tokio::spawn(async {
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
                tokio::task::yield_now().await;
            }
        });
        let until = Instant::now() + Duration::from_millis(300);
        let spinner = Demand::new(std::future::poll_fn(move |cx| {
            if Instant::now() >= until {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }));
        let clock = spinner.clock();
        spinner.await;
        hog.await.expect("hog");
        assert!(clock.wanted_ms() >= 280, "wanted {} ms", clock.wanted_ms());
    }
}
