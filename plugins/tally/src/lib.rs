//! `tally` — the example agent plugin.
//!
//! For every `payment.succeeded` event it adds the amount to a running total per customer,
//! kept in kv under `tally/{customer}`, and decides whether the customer just crossed the
//! VIP threshold (config `vip_threshold`, in minor units). Retries and replays of the same
//! delivery are counted once: the delivery's idempotency key is recorded under
//! `seen/{key}` after the total is written. The total is updated with a
//! compare-and-swap loop (`kv::update_json`), so concurrent payments of one customer
//! never lose an update.

use agenthook_sdk::{Event, HandlerError, config, kv, log};
use serde::{Deserialize, Serialize};

/// Used when the manifest does not set `vip_threshold`: 1000.00 in minor units.
const DEFAULT_VIP_THRESHOLD: u64 = 100_000;

/// The part of the webhook body this plugin reads.
#[derive(Deserialize)]
struct Payment {
    data: PaymentData,
}

#[derive(Deserialize)]
struct PaymentData {
    customer: String,
    /// In the currency's minor unit (cents for `usd`).
    amount: u64,
    currency: String,
}

/// The value stored under `tally/{customer}`.
#[derive(Serialize, Deserialize)]
struct Tally {
    total: u64,
    count: u64,
    currency: String,
}

fn handle(event: Event) -> Result<(), HandlerError> {
    if event.event_type != "payment.succeeded" {
        log::info(format!(
            "ignoring {} event {}",
            event.event_type, event.event_id
        ));
        return Ok(());
    }

    let seen_key = format!("seen/{}", event.idempotency_key);
    if kv::get(&seen_key)?.is_some() {
        log::info(format!("event {} already counted", event.event_id));
        return Ok(());
    }

    let payment: Payment = event.json()?;
    let PaymentData {
        customer,
        amount,
        currency,
    } = payment.data;
    let threshold = config::get_parsed::<u64>("vip_threshold")?.unwrap_or(DEFAULT_VIP_THRESHOLD);

    let tally_key = format!("tally/{customer}");
    // Deliveries run concurrently (max_concurrency = 4): two payments of one customer
    // may be handled at once. `update_json` is a compare-and-swap loop, so neither
    // overwrites the other's total.
    let mut before_total = 0;
    let after = kv::update_json::<Tally, _>(&tally_key, |stored| {
        let before = stored.unwrap_or(Tally {
            total: 0,
            count: 0,
            currency: currency.clone(),
        });
        if before.currency != currency {
            return Err(HandlerError::permanent(format!(
                "customer {customer} is tallied in {}, payment {} is in {currency}",
                before.currency, event.event_id
            )));
        }
        before_total = before.total;
        Ok(Tally {
            total: before.total.saturating_add(amount),
            count: before.count + 1,
            currency: currency.clone(),
        })
    })?;

    // kv has no multi-key transaction: if the host fails between these two writes, the
    // retry counts this payment again. Writing `seen` first would lose it instead.
    kv::set(&seen_key, &event.event_id)?;

    let decision = if before_total >= threshold {
        "already above vip threshold"
    } else if after.total >= threshold {
        "crossed vip threshold: flag for account manager"
    } else {
        "below vip threshold"
    };
    log::info(format!(
        "customer {customer} total {} {}: {decision}",
        after.total, after.currency
    ));
    Ok(())
}

agenthook_sdk::plugin!(handle);

#[cfg(test)]
mod tests {
    use agenthook_sdk::testing::{self, TestHost, Tool};
    use serde_json::{Value, json};

    use super::*;

    fn payment(event_id: &str, customer: &str, amount: u64) -> Event {
        testing::event("payment.succeeded")
            .event_id(event_id)
            .idempotency_key(format!("idem-{event_id}"))
            .json(&json!({"data": {"customer": customer, "amount": amount, "currency": "usd"}}))
            .build()
    }

    #[test]
    fn adds_payments_per_customer_and_flags_the_vip_crossing() {
        let host = TestHost::new().config("vip_threshold", "1000");
        handle(payment("evt_1", "cus_1", 600)).unwrap();
        assert!(host.logged("customer cus_1 total 600 usd: below vip threshold"));
        handle(payment("evt_2", "cus_1", 500)).unwrap();
        assert!(host.logged("total 1100 usd: crossed vip threshold"));
        handle(payment("evt_3", "cus_2", 5)).unwrap();
        let t: Value = host.kv_json("tally/cus_1").unwrap();
        assert_eq!(t, json!({"total": 1100, "count": 2, "currency": "usd"}));
        assert_eq!(host.kv_json::<Value>("tally/cus_2").unwrap()["total"], 5);
    }

    #[test]
    fn a_retried_delivery_is_counted_once() {
        let host = TestHost::new();
        let event = payment("evt_1", "cus_1", 600);
        handle(event.clone()).unwrap();
        handle(event).unwrap();
        assert_eq!(host.kv_json::<Value>("tally/cus_1").unwrap()["count"], 1);
        assert!(host.logged("already counted"));
    }

    #[test]
    fn a_total_changed_by_a_concurrent_delivery_is_not_overwritten() {
        let host = TestHost::new();
        // Another delivery already stored a total; this one must add to it, not
        // replace it (the CAS loop reads the version it swaps against).
        host.kv_set_json(
            "tally/cus_1",
            &json!({"total": 100, "count": 1, "currency": "usd"}),
        );
        handle(payment("evt_2", "cus_1", 50)).unwrap();
        assert_eq!(
            host.kv_json::<Value>("tally/cus_1").unwrap(),
            json!({"total": 150, "count": 2, "currency": "usd"})
        );
    }

    #[test]
    fn bad_input_fails_permanently_and_writes_nothing() {
        let host = TestHost::new();
        host.kv_set_json(
            "tally/cus_1",
            &json!({"total": 100, "count": 1, "currency": "eur"}),
        );
        let err = handle(payment("evt_1", "cus_1", 50)).unwrap_err();
        assert!(!err.is_retry());
        assert!(err.reason().contains("tallied in eur"), "{err}");
        let malformed = testing::event("payment.succeeded").body("not json").build();
        assert!(!handle(malformed).unwrap_err().is_retry());
        assert_eq!(host.kv_keys(), ["tally/cus_1"]);
    }

    #[test]
    fn without_the_kv_grant_the_delivery_fails_permanently_naming_it() {
        let _host = TestHost::new().deny(Tool::Kv);
        let err = handle(payment("evt_1", "cus_1", 50)).unwrap_err();
        assert!(!err.is_retry());
        assert!(err.reason().contains("grants.kv = true"), "{err}");
    }
}
