//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, the hex HMAC-SHA256 of the body keyed
//! with the webhook's secret. The id is `X-GitHub-Delivery`, the type `X-GitHub-Event`
//! plus `.action` when the payload has one (`issues.opened`). GitHub signs no timestamp
//! and not the delivery id: replays are absorbed by dedup on the delivery id only.
//! The body is JSON, or `payload=<json>` when the hook's content type is form-encoded.
//! <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>

use http::HeaderMap;
use serde_json::Value;

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "x-hub-signature-256";

/// The headers carrying the signature (dropped once verified): GitHub sends the legacy
/// SHA-1 `X-Hub-Signature` beside the SHA-256 one.
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE, "x-hub-signature"];
const DELIVERY: &str = "x-github-delivery";
const EVENT: &str = "x-github-event";

pub struct Verifier {
    keys: Vec<Vec<u8>>,
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        Ok(Verifier {
            keys: super::raw_keys(source),
        })
    }

    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let Some(value) = super::optional_header(headers, SIGNATURE)? else {
            let hint = if headers.contains_key("x-hub-signature") {
                " (only the SHA-1 X-Hub-Signature was sent; GitHub sends X-Hub-Signature-256 whenever the hook has a secret)"
            } else {
                ""
            };
            return Err(Rejection::unauthorized(
                "missing_header",
                format!("X-Hub-Signature-256 header is missing{hint}"),
            ));
        };
        let sig = value
            .strip_prefix("sha256=")
            .and_then(super::hex_mac)
            .ok_or_else(|| {
                Rejection::bad_request(
                    "malformed_header",
                    "X-Hub-Signature-256 is not sha256=<64 hex digits>",
                )
            })?;
        if !self
            .keys
            .iter()
            .any(|key| super::mac_matches(&super::mac(key, &[body]), &sig))
        {
            return Err(Rejection::signature_mismatch("X-Hub-Signature-256"));
        }
        let event_id = super::header_label(headers, DELIVERY)?;
        let event = super::header_label(headers, EVENT)?;
        let action = match super::json(body).or_else(|| super::form_payload(body)) {
            Some(Value::Object(doc)) => doc
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => {
                return Err(Rejection::malformed_body(
                    "the body is not a JSON object (nor payload=<json>)",
                ));
            }
        };
        let event_type = match action {
            Some(action) => super::label(
                &format!("{event}.{action}"),
                "X-GitHub-Event with the payload's action",
                "malformed_body",
            )?,
            None => event,
        };
        Ok(Verified {
            event_id,
            event_type,
        })
    }
}

/// Sign as GitHub does. `--type` is the `X-GitHub-Event` name (`issues`; the action
/// comes from the body); the delivery id is a fresh GUID unless `--id` is given.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let event = out.event_type.ok_or_else(|| {
        SignError::Payload(
            "github carries the event in X-GitHub-Event: pass --type (e.g. --type issues)".into(),
        )
    })?;
    let delivery = out.event_id.map_or_else(guid, str::to_string);
    let sig = super::mac_hex(secret.as_bytes(), &[out.body]);
    Ok(Signed {
        headers: vec![
            ("User-Agent".into(), "GitHub-Hookshot/agenthook-send".into()),
            ("X-GitHub-Event".into(), event.to_string()),
            ("X-GitHub-Delivery".into(), delivery),
            ("X-Hub-Signature-256".into(), format!("sha256={sig}")),
        ],
        body: out.body.to_vec(),
    })
}

/// A random GUID like GitHub's delivery ids.
fn guid() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{flip_hex, headers, vector};

    const DELIVERY_ID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig::new(
            "g",
            Scheme::Github,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    fn request(sig: &str, event: &str) -> HeaderMap {
        headers([
            ("X-Hub-Signature-256", sig),
            ("X-GitHub-Delivery", DELIVERY_ID),
            ("X-GitHub-Event", event),
        ])
    }

    /// The published vector's body is not JSON: a good signature gets past
    /// verification and the body check then refuses it (400), a bad one is 401.
    #[test]
    fn published_vector_verifies() {
        let vec = vector("github", "GitHub docs");
        let v = verifier(&[&vec.secret]);
        let sig = vec.header("X-Hub-Signature-256");
        let e = v
            .verify(&request(&sig, "ping"), vec.body.as_bytes())
            .unwrap_err();
        assert_eq!(e.reason, "malformed_body");
        assert_eq!(
            format!(
                "sha256={}",
                super::super::mac_hex(vec.secret.as_bytes(), &[vec.body.as_bytes()])
            ),
            sig
        );
    }

    #[test]
    fn every_single_byte_change_fails() {
        let vec = vector("github", "GitHub docs");
        let v = verifier(&[&vec.secret]);
        let sig = vec.header("X-Hub-Signature-256");
        for i in 0..vec.body.len() {
            let mut body = vec.body.as_bytes().to_vec();
            body[i] ^= 1;
            let e = v.verify(&request(&sig, "ping"), &body).unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "body byte {i}");
        }
        for i in "sha256=".len()..sig.len() {
            let e = v
                .verify(&request(&flip_hex(&sig, i), "ping"), vec.body.as_bytes())
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "signature char {i}");
        }
    }

    #[test]
    fn json_and_form_bodies_give_event_dot_action() {
        let secret = "It's a Secret to Everybody";
        let v = verifier(&["old", secret]);
        let body = br#"{"action":"opened","issue":{"number":1}}"#;
        let sig = format!(
            "sha256={}",
            super::super::mac_hex(secret.as_bytes(), &[body])
        );
        let got = v.verify(&request(&sig, "issues"), body).unwrap();
        assert_eq!(got.event_id, DELIVERY_ID);
        assert_eq!(got.event_type, "issues.opened");

        let body = b"payload=%7B%22action%22%3A%22created%22%7D";
        let sig = format!(
            "sha256={}",
            super::super::mac_hex(secret.as_bytes(), &[body])
        );
        let got = v.verify(&request(&sig, "star"), body).unwrap();
        assert_eq!(got.event_type, "star.created");

        let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        let sig = format!(
            "sha256={}",
            super::super::mac_hex(secret.as_bytes(), &[body])
        );
        assert_eq!(
            v.verify(&request(&sig, "ping"), body).unwrap().event_type,
            "ping"
        );
    }

    #[test]
    fn missing_duplicate_and_malformed_headers() {
        let vec = vector("github", "GitHub docs");
        let v = verifier(&[&vec.secret]);
        let body = vec.body.as_bytes();
        let sig = vec.header("X-Hub-Signature-256");
        let e = v
            .verify(&headers([("X-Hub-Signature", "sha1=abc")]), body)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
        assert!(e.message.contains("SHA-1"), "{}", e.message);
        for bad in ["757107ea", "sha256=xyz", "sha1=757107ea", "sha256="] {
            let e = v.verify(&request(bad, "ping"), body).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{bad}"
            );
        }
        let mut h = request(&sig, "ping");
        h.append("X-Hub-Signature-256", sig.parse().unwrap());
        assert_eq!(v.verify(&h, body).unwrap_err().reason, "duplicate_header");
        // The delivery id and event are checked only after the signature.
        let secret = vec.secret.as_str();
        let json = br#"{}"#;
        let sig = format!(
            "sha256={}",
            super::super::mac_hex(secret.as_bytes(), &[json])
        );
        let h = headers([
            ("X-Hub-Signature-256", sig.as_str()),
            ("X-GitHub-Event", "ping"),
        ]);
        let e = v.verify(&h, json).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (400, "missing_header"));
        assert!(e.message.contains("x-github-delivery"), "{}", e.message);
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let out = Outgoing {
            event_id: None,
            event_type: Some("pull_request"),
            timestamp: 0,
            body: br#"{"action":"closed"}"#,
        };
        let signed = sign("s3cret", &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = verifier(&["s3cret"]).verify(&h, &signed.body).unwrap();
        assert_eq!(got.event_type, "pull_request.closed");
        assert_eq!(got.event_id.len(), 36);
        assert!(
            sign(
                "s3cret",
                &Outgoing {
                    event_type: None,
                    ..out
                }
            )
            .is_err()
        );
    }
}
