//! A source's rate limit (`sources.NAME.max_per_second`): a token bucket kept as one
//! atomic "theoretical arrival time" (GCRA), so checking it costs a compare-and-swap on
//! the source's own counter and no lock. It answers yes or how long to wait; the
//! refusal itself (429) is ingress's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Up to `per_second` requests a second, in bursts of up to one second's worth.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two requests at the limit, in nanoseconds.
    interval: u64,
    /// How far the theoretical arrival time may run ahead of now: the burst, less one
    /// interval.
    tolerance: u64,
    /// When the next request would be due if requests came exactly at the limit, in
    /// nanoseconds since `epoch`. A full bucket is any value at or before now.
    tat: AtomicU64,
    epoch: Instant,
}

impl RateLimiter {
    /// `per_second` must be at least 1 (the config guarantees it).
    pub fn new(per_second: u32) -> RateLimiter {
        let per_second = u64::from(per_second.max(1));
        let interval = NANOS_PER_SEC / per_second;
        RateLimiter {
            interval,
            tolerance: interval * (per_second - 1),
            tat: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Take one request's token, or say how long until one is free.
    pub fn check(&self) -> Result<(), Duration> {
        self.check_at(self.epoch.elapsed().as_nanos() as u64)
    }

    fn check_at(&self, now: u64) -> Result<(), Duration> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return Err(Duration::from_nanos(start - now - self.tolerance));
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_of_one_seconds_worth_then_the_rate() {
        let limiter = RateLimiter::new(4);
        let t0 = 5_000 * MS;
        for _ in 0..4 {
            assert!(limiter.check_at(t0).is_ok());
        }
        let wait = limiter.check_at(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(limiter.check_at(t0 + 249 * MS).is_err());
        assert!(limiter.check_at(t0 + 250 * MS).is_ok());
        assert!(limiter.check_at(t0 + 250 * MS).is_err());
        // Idle for a while refills the burst, no more.
        let t1 = t0 + 10_000 * MS;
        for _ in 0..4 {
            assert!(limiter.check_at(t1).is_ok());
        }
        assert!(limiter.check_at(t1).is_err());
    }

    #[test]
    fn one_per_second() {
        let limiter = RateLimiter::new(1);
        assert!(limiter.check_at(0).is_ok());
        assert_eq!(
            limiter.check_at(MS).unwrap_err(),
            Duration::from_millis(999)
        );
        assert!(limiter.check_at(1_000 * MS).is_ok());
    }

    #[test]
    fn concurrent_checks_take_exactly_the_burst() {
        let limiter = std::sync::Arc::new(RateLimiter::new(1000));
        let now = limiter.epoch.elapsed().as_nanos() as u64;
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let l = limiter.clone();
                    s.spawn(move || (0..1000).filter(|_| l.check_at(now).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 1000);
    }
}
