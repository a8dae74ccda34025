//! The event a handler receives: an owned copy of the WIT `event` record, with helpers
//! for the questions every handler asks (what is in the body, what did a header say).

use serde::de::DeserializeOwned;

use crate::HandlerError;
use crate::bindings::agenthook::plugin::types as wit;

/// One webhook (or plugin-emitted) event, as delivered to this plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The host's own id for this event: stable across attempts and replays.
    pub id: String,
    /// The sender's id for the event (`webhook-id`, Stripe's `evt_…`, …).
    pub event_id: String,
    /// The configured source the event arrived on (`/hooks/{source}`).
    pub source: String,
    /// The event type, e.g. `payment_intent.succeeded`.
    pub event_type: String,
    /// When the host accepted the event, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// 1 for the first delivery to this plugin, 2 for the first retry, and so on.
    pub attempt: u32,
    /// The same on every attempt and replay of this event to this plugin: key side
    /// effects on it to make them idempotent.
    pub idempotency_key: String,
    /// The request headers the source keeps, in the order received (names
    /// lower-cased): credentials and signature headers are dropped at ingress unless
    /// the source's `keep_headers` names them.
    pub headers: Vec<(String, String)>,
    /// The request body, exactly the bytes that were verified.
    pub body: Vec<u8>,
}

impl Event {
    /// The body parsed as JSON into `T`.
    ///
    /// A body that is not valid JSON for `T` will never become valid, so the error is
    /// permanent and names serde's reason (line, column, missing field).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            HandlerError::permanent(format!("event body is not the expected JSON: {err}"))
        })
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text, when it is valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body's fields, for a form-encoded body (`application/x-www-form-urlencoded`:
    /// Twilio, Slack slash commands): each `(name, value)` decoded (`+` and `%XX`), in
    /// the order sent, repeated names kept. The body itself stays as received.
    ///
    /// A body that is not UTF-8 text is no form, and never will be: a permanent error.
    pub fn form(&self) -> Result<Vec<(String, String)>, HandlerError> {
        if self.body_str().is_none() {
            return Err(HandlerError::permanent(
                "event body is not a form: it is not UTF-8 text",
            ));
        }
        Ok(form_urlencoded::parse(&self.body).into_owned().collect())
    }

    /// The first value of form field `name` (case-sensitive, as forms are), if the
    /// body is a form that has it.
    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form()
            .ok()?
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

impl From<wit::Event> for Event {
    fn from(event: wit::Event) -> Self {
        Event {
            id: event.id,
            event_id: event.event_id,
            source: event.source,
            event_type: event.event_type,
            received_at_ms: event.received_at_ms,
            attempt: event.attempt,
            idempotency_key: event.idempotency_key,
            headers: event.headers,
            body: event.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn event(body: &[u8]) -> Event {
        Event {
            id: "ev_1".into(),
            event_id: "evt_sender_1".into(),
            source: "demo".into(),
            event_type: "payment.succeeded".into(),
            received_at_ms: 1_700_000_000_000,
            attempt: 1,
            idempotency_key: "ev_1/tally".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-trace".into(), "first".into()),
                ("x-trace".into(), "second".into()),
            ],
            body: body.to_vec(),
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Payment {
        customer: String,
        amount: u64,
    }

    #[test]
    fn json_parses_the_body() {
        let ev = event(br#"{"customer":"cus_1","amount":1200}"#);
        let payment: Payment = ev.json().unwrap();
        assert_eq!(
            payment,
            Payment {
                customer: "cus_1".into(),
                amount: 1200
            }
        );
    }

    #[test]
    fn malformed_json_is_permanent_and_names_the_serde_error() {
        let err = event(b"{not json").json::<Payment>().unwrap_err();
        assert!(!err.is_retry());
        assert!(
            err.reason()
                .contains("key must be a string at line 1 column 2"),
            "{err}"
        );

        let err = event(br#"{"customer":"cus_1"}"#)
            .json::<Payment>()
            .unwrap_err();
        assert!(!err.is_retry());
        assert!(err.reason().contains("missing field `amount`"), "{err}");
    }

    #[test]
    fn header_lookup_ignores_case_and_takes_the_first() {
        let ev = event(b"");
        assert_eq!(ev.header("Content-Type"), Some("application/json"));
        assert_eq!(ev.header("X-TRACE"), Some("first"));
        assert_eq!(ev.header("x-missing"), None);
    }

    #[test]
    fn body_str_is_none_for_binary() {
        assert_eq!(event(b"hello").body_str(), Some("hello"));
        assert_eq!(event(&[0xff, 0xfe]).body_str(), None);
    }

    #[test]
    fn form_fields_are_decoded_in_order() {
        // Twilio's documented incoming-call fields, as Twilio encodes them.
        let ev = event(
            b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Body=hello+there&Body=again&Empty=",
        );
        let form = ev.form().unwrap();
        assert_eq!(form.len(), 5);
        assert_eq!(form[1], ("Caller".into(), "+12349013030".into()));
        assert_eq!(ev.form_field("Body").as_deref(), Some("hello there"));
        assert_eq!(ev.form_field("Empty").as_deref(), Some(""));
        assert_eq!(ev.form_field("body"), None);
        assert_eq!(
            ev.body,
            b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Body=hello+there&Body=again&Empty="
        );
        let err = event(&[0xff, b'=', b'1']).form().unwrap_err();
        assert!(!err.is_retry());
        assert_eq!(event(&[0xff]).form_field("a"), None);
    }

    #[test]
    fn converts_from_the_abi_record() {
        let wit_event = wit::Event {
            id: "ev_2".into(),
            event_id: "evt_2".into(),
            source: "demo".into(),
            event_type: "payment.failed".into(),
            received_at_ms: 7,
            attempt: 3,
            idempotency_key: "key".into(),
            headers: vec![("a".into(), "b".into())],
            body: b"{}".to_vec(),
        };
        let ev = Event::from(wit_event);
        assert_eq!(ev.attempt, 3);
        assert_eq!(ev.event_type, "payment.failed");
        assert_eq!(ev.header("A"), Some("b"));
    }
}
