//! `payment-notify` — Stripe `payment_intent.succeeded` → fetch the customer from the
//! API for authoritative data → email a receipt → record it in kv.
//!
//! The webhook is a thin notification; the customer's email and name come from the
//! API (`customers_url`, with the API key attached by the host from a secret — the
//! plugin never sees it). A receipt is recorded under `receipt/{payment_intent}`, and a
//! payment whose receipt is recorded is not mailed again (a sender's re-send under a
//! new event id, or a replay). The Message-ID is stable per delivery, so a retried
//! attempt that had already mailed re-sends the same message id.

use agenthook_sdk::email::{self, Email};
use agenthook_sdk::{Event, HandlerError, config, http, kv, log};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct StripeEvent {
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: PaymentIntent,
}

#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    amount: u64,
    currency: String,
    customer: Option<String>,
    description: Option<String>,
}

/// The fields of Stripe's customer object this plugin uses.
#[derive(Deserialize)]
struct Customer {
    email: Option<String>,
    name: Option<String>,
}

/// What `receipt/{payment_intent}` holds.
#[derive(Serialize)]
struct Receipt<'a> {
    message_id: &'a str,
    email: &'a str,
    amount: u64,
    currency: &'a str,
    event_id: &'a str,
}

fn handle(event: Event) -> Result<(), HandlerError> {
    if event.event_type != "payment_intent.succeeded" {
        log::info(format!("ignoring {}", event.event_type));
        return Ok(());
    }
    let intent = event.json::<StripeEvent>()?.data.object;
    let receipt_key = format!("receipt/{}", intent.id);
    if kv::get(&receipt_key)?.is_some() {
        log::info(format!("receipt for {} already sent", intent.id));
        return Ok(());
    }
    let Some(customer_id) = intent.customer.as_deref() else {
        log::warn(format!("{} has no customer; no receipt", intent.id));
        return Ok(());
    };

    let base = config::require("customers_url")?;
    let customer: Customer = http::get(format!("{}/{customer_id}", base.trim_end_matches('/')))
        .header("accept", "application/json")
        .send()?
        .error_for_status()?
        .json()?;
    let Some(to) = customer.email else {
        log::warn(format!("customer {customer_id} has no email; no receipt"));
        return Ok(());
    };

    let amount = format_amount(intent.amount, &intent.currency);
    let greeting = customer.name.as_deref().unwrap_or("there");
    let what = intent.description.as_deref().unwrap_or("your order");
    let mut message = Email::to(to.clone())
        .subject(format!("Receipt: {amount} paid"))
        .text(format!(
            "Hi {greeting},\n\nWe received your payment of {amount} for {what}.\nReference: {}\n\nThank you!\n",
            intent.id
        ));
    if let Some(reply_to) = config::get("reply_to") {
        message = message.reply_to(reply_to);
    }
    let message_id = email::send(message)?;

    kv::set_json(
        &receipt_key,
        &Receipt {
            message_id: &message_id,
            email: &to,
            amount: intent.amount,
            currency: &intent.currency,
            event_id: &event.event_id,
        },
    )?;
    log::info(format!(
        "receipt {message_id} for {} sent to {to}",
        intent.id
    ));
    Ok(())
}

/// `2000, "usd"` → `20.00 USD` (two-decimal currencies; good enough for a receipt line).
fn format_amount(minor: u64, currency: &str) -> String {
    format!(
        "{}.{:02} {}",
        minor / 100,
        minor % 100,
        currency.to_ascii_uppercase()
    )
}

agenthook_sdk::plugin!(handle);

#[cfg(test)]
mod tests {
    use agenthook_sdk::testing::{self, Reply, TestHost, Tool};
    use serde_json::{Value, json};

    use super::*;

    const CUSTOMERS: &str = "https://api.stripe.test/v1/customers";

    fn succeeded(intent: &str, customer: Option<&str>) -> Event {
        testing::event("payment_intent.succeeded")
            .json(&json!({"data": {"object": {
                "id": intent, "amount": 2599, "currency": "usd",
                "customer": customer, "description": "2 seats"
            }}}))
            .build()
    }

    fn host() -> TestHost {
        TestHost::new()
            .config("customers_url", CUSTOMERS)
            .config("reply_to", "billing@example.com")
    }

    #[test]
    fn fetches_the_customer_mails_a_receipt_and_records_it() {
        let host = host();
        host.respond(
            "GET",
            &format!("{CUSTOMERS}/cus_1"),
            Reply::json(200, &json!({"email": "ada@example.com", "name": "Ada"})),
        );
        handle(succeeded("pi_1", Some("cus_1"))).unwrap();

        assert_eq!(
            host.requests()[0].headers,
            [("accept".into(), "application/json".into())]
        );
        let mail = &host.emails()[0];
        assert_eq!(mail.to, ["ada@example.com"]);
        assert_eq!(mail.subject, "Receipt: 25.99 USD paid");
        assert!(mail.text.contains("Hi Ada") && mail.text.contains("2 seats"));
        assert_eq!(mail.reply_to.as_deref(), Some("billing@example.com"));
        let receipt: Value = host.kv_json("receipt/pi_1").unwrap();
        assert_eq!(receipt["message_id"], mail.message_id.as_str());

        // Sent again (a replay): the recorded receipt stops a second email.
        handle(succeeded("pi_1", Some("cus_1"))).unwrap();
        assert_eq!(host.emails().len(), 1);
        assert_eq!(host.requests().len(), 1);
    }

    #[test]
    fn an_api_outage_is_retried_and_sends_nothing() {
        let host = host();
        host.respond("GET", &format!("{CUSTOMERS}/cus_1"), Reply::status(503));
        let err = handle(succeeded("pi_1", Some("cus_1"))).unwrap_err();
        assert!(err.is_retry(), "{err}");
        assert!(host.emails().is_empty());
        assert_eq!(host.kv("receipt/pi_1"), None);
    }

    #[test]
    fn no_customer_or_no_email_means_no_receipt() {
        let host = host();
        handle(succeeded("pi_1", None)).unwrap();
        host.respond(
            "GET",
            &format!("{CUSTOMERS}/cus_2"),
            Reply::json(200, &json!({"name": "No Mail"})),
        );
        handle(succeeded("pi_2", Some("cus_2"))).unwrap();
        assert!(host.emails().is_empty());
        assert!(host.logged("has no email"));
    }

    #[test]
    fn a_withheld_email_grant_is_a_permanent_failure() {
        let host = host().deny(Tool::Email);
        host.respond(
            "GET",
            &format!("{CUSTOMERS}/cus_1"),
            Reply::json(200, &json!({"email": "ada@example.com"})),
        );
        let err = handle(succeeded("pi_1", Some("cus_1"))).unwrap_err();
        assert!(!err.is_retry());
        assert!(err.reason().contains("grants.email"), "{err}");
        assert_eq!(host.kv("receipt/pi_1"), None);
    }
}
