//! How a delivery moves between states — lease, release, record an attempt, replay —
//! as pure functions on its record, the same rules the redb writer applies. The NATS
//! backend applies one to the state it last read and writes the result with a
//! compare-and-set on the revision it read; a conflict re-reads and applies it again.

use super::super::model::*;

/// Why an attempt whose lease ran out counts as failed (the same words as redb's).
pub(super) const LEASE_EXPIRED: &str = "lease_expired: the attempt did not record an outcome before its lease ran out (the host hung, died or could not write); it counts as failed";

/// The leased delivery, or None when it is not leasable now (done, dead, or a lease
/// that still holds).
pub(super) fn lease(mut d: Delivery, now_ms: u64, expires_at_ms: u64) -> Option<Delivery> {
    match d.status {
        DeliveryStatus::Pending | DeliveryStatus::Retrying => {}
        DeliveryStatus::Leased if d.lease_expires_at_ms.is_none_or(|at| at <= now_ms) => {
            let expired_at = d.lease_expires_at_ms.unwrap_or(now_ms);
            let started = d.leased_at_ms.unwrap_or(expired_at);
            d.attempts.push(Attempt {
                number: d.attempts.len() as u32 + 1,
                started_at_ms: started,
                duration_ms: expired_at.saturating_sub(started),
                outcome: AttemptOutcome::Retry,
                error: Some(LEASE_EXPIRED.to_string()),
                plugin_version: "unknown".into(),
                logs: Vec::new(),
                journal: None,
            });
        }
        _ => return None,
    }
    d.status = DeliveryStatus::Leased;
    d.leased_at_ms = Some(now_ms);
    d.lease_expires_at_ms = Some(expires_at_ms);
    Some(d)
}

/// A leased delivery back to pending (never attempted) or retrying; None if not leased.
pub(super) fn release(mut d: Delivery) -> Option<Delivery> {
    if d.status != DeliveryStatus::Leased {
        return None;
    }
    d.status = if d.attempts.is_empty() {
        DeliveryStatus::Pending
    } else {
        DeliveryStatus::Retrying
    };
    d.lease_expires_at_ms = None;
    d.leased_at_ms = None;
    Some(d)
}

/// The delivery after an attempt and its outcome.
pub(super) fn record(mut d: Delivery, attempt: Attempt, next: Next) -> Delivery {
    d.updated_at_ms = attempt.started_at_ms + attempt.duration_ms;
    d.lease_expires_at_ms = None;
    d.leased_at_ms = None;
    d.attempts.push(attempt);
    match next {
        Next::Done => {
            d.status = DeliveryStatus::Done;
            d.next_attempt_at_ms = None;
        }
        Next::Dead => {
            d.status = DeliveryStatus::Dead;
            d.next_attempt_at_ms = None;
        }
        Next::RetryAt(at) => {
            d.status = DeliveryStatus::Retrying;
            d.next_attempt_at_ms = Some(at);
        }
    }
    d
}

/// The delivery replayed at `now_ms` with a fresh retry budget, or None when the
/// replay leaves it alone (leased, or not dead when only dead ones are replayed).
pub(super) fn replay(mut d: Delivery, only_dead: bool, now_ms: u64) -> Option<Delivery> {
    if d.status == DeliveryStatus::Leased || (only_dead && d.status != DeliveryStatus::Dead) {
        return None;
    }
    d.status = DeliveryStatus::Pending;
    d.next_attempt_at_ms = Some(now_ms);
    d.budget_start = d.attempts.len() as u32;
    d.updated_at_ms = now_ms;
    Some(d)
}

/// A new pending delivery created at `at`.
pub(super) fn pending(plugin: &str, at: u64) -> Delivery {
    Delivery {
        plugin: plugin.to_string(),
        status: DeliveryStatus::Pending,
        next_attempt_at_ms: Some(at),
        lease_expires_at_ms: None,
        leased_at_ms: None,
        attempts: Vec::new(),
        budget_start: 0,
        created_at_ms: at,
        updated_at_ms: at,
    }
}
