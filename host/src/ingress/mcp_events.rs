//! MCP event webhooks — the MCP Events (triggers) extension's webhook delivery mode.
//! **A draft**: the working group's design sketch
//! (<https://github.com/modelcontextprotocol/experimental-ext-triggers-events>) may
//! still change, and this scheme with it.
//!
//! An MCP server POSTs each event to the callback URL a client registered with
//! `events/subscribe`, signed per Standard Webhooks (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`) with the client's `whsec_` secret, and
//! names the subscription in `X-MCP-Subscription-Id` (required; kept with the event so
//! a plugin knows which subscription it came from). The body is an
//! `EventOccurrence` `{eventId, name, timestamp, data, cursor}`: the id is `eventId`,
//! the type `name`. Control bodies: `{"type":"verification","challenge":…}` is answered
//! by echoing the challenge (never stored); `gap` and `terminated` are stored as
//! `mcp.gap` / `mcp.terminated` under their `webhook-id`, so a plugin can re-sync or
//! re-subscribe.

use http::HeaderMap;
use serde_json::Value;

use super::{Accepted, Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

pub const SIGNATURE_HEADERS: &[&str] = super::standard_webhooks::SIGNATURE_HEADERS;
pub const SUBSCRIPTION: &str = "x-mcp-subscription-id";

pub struct Verifier(super::standard_webhooks::Verifier);

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        super::standard_webhooks::Verifier::new(source).map(Verifier)
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, Rejection> {
        let webhook_id = self.0.authenticate(headers, body, now_secs)?;
        super::header_label(headers, SUBSCRIPTION)?;
        let doc = super::json(body).filter(Value::is_object).ok_or_else(|| {
            Rejection::bad_request("malformed_body", "an MCP event delivery is a JSON object")
        })?;
        match doc.get("type").and_then(Value::as_str) {
            Some("verification") => {
                let challenge = super::json_label(Some(&doc), "/challenge", "`challenge`")?;
                Ok(Accepted::Challenge(challenge))
            }
            Some(control @ ("gap" | "terminated")) => Ok(Accepted::Event(Verified {
                event_id: webhook_id,
                event_type: format!("mcp.{control}"),
            })),
            Some(other) => Err(Rejection::bad_request(
                "malformed_body",
                format!(
                    "`{}` is not an MCP control body (verification, gap, terminated)",
                    other.chars().take(40).collect::<String>()
                ),
            )),
            None => Ok(Accepted::Event(Verified {
                event_id: super::json_label(Some(&doc), "/eventId", "`eventId`")?,
                event_type: super::json_label(Some(&doc), "/name", "`name`")?,
            })),
        }
    }
}

/// Send as an MCP server delivering to a webhook subscription: `--id`/`--type` go
/// into `eventId`/`name`, the subscription id is `sub_agenthook_send`.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let body = super::edit_json(
        out.body,
        &[("/eventId", out.event_id), ("/name", out.event_type)],
    )?;
    let webhook_id = super::json(&body)
        .and_then(|d| d.get("eventId").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| super::fresh_id("msg_"));
    let mut headers =
        super::standard_webhooks::signature_headers(secret, &webhook_id, out.timestamp, &body)?;
    headers.push(("X-MCP-Subscription-Id".into(), "sub_agenthook_send".into()));
    Ok(Signed { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::headers;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_700_000_000;

    fn verifier() -> Verifier {
        Verifier::new(&SourceConfig::new(
            "mcp",
            Scheme::McpEvents,
            vec![Secret::new(SECRET)],
        ))
        .unwrap()
    }

    fn signed(body: &[u8]) -> (HeaderMap, Vec<u8>) {
        let out = Outgoing {
            event_id: None,
            event_type: None,
            timestamp: NOW,
            body,
        };
        let s = sign(SECRET, &out).unwrap();
        (
            headers(s.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            s.body,
        )
    }

    #[test]
    fn occurrences_controls_and_the_challenge() {
        let (h, b) = signed(br#"{"eventId":"evt_001","name":"email.received","timestamp":"2026-02-19T15:30:00Z","data":{"from":"a@b"},"cursor":"c1"}"#);
        assert_eq!(
            verifier().verify(&h, &b, NOW).unwrap(),
            Accepted::Event(Verified {
                event_id: "evt_001".into(),
                event_type: "email.received".into()
            })
        );
        let (h, b) = signed(br#"{"type":"verification","challenge":"ch-123"}"#);
        assert_eq!(
            verifier().verify(&h, &b, NOW).unwrap(),
            Accepted::Challenge("ch-123".into())
        );
        let (h, b) = signed(br#"{"type":"gap","cursor":"c9"}"#);
        let Accepted::Event(got) = verifier().verify(&h, &b, NOW).unwrap() else {
            panic!()
        };
        assert_eq!(got.event_type, "mcp.gap");
        assert!(got.event_id.starts_with("msg_"));
        for bad in [&br#"{"type":"other"}"#[..], br#"{"name":"x"}"#, b"[1]"] {
            let (h, b) = signed(bad);
            assert_eq!(
                verifier().verify(&h, &b, NOW).unwrap_err().reason,
                "malformed_body"
            );
        }
    }

    #[test]
    fn the_signature_and_subscription_id_are_required() {
        let (h, b) = signed(br#"{"eventId":"e","name":"n"}"#);
        let mut tampered = b.clone();
        tampered[3] ^= 1;
        assert_eq!(
            verifier().verify(&h, &tampered, NOW).unwrap_err().reason,
            "signature_mismatch"
        );
        let mut no_sub = h.clone();
        no_sub.remove(SUBSCRIPTION);
        let e = verifier().verify(&no_sub, &b, NOW).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (400, "missing_header"));
        assert_eq!(
            verifier().verify(&h, &b, NOW + 301).unwrap_err().reason,
            "timestamp_out_of_tolerance"
        );
    }
}
