//! Slack: `X-Slack-Signature: v0=<hex>`, the hex HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` keyed with the app's signing secret.
//! The id is the Events API's `event_id`, else a hash of the body (slash commands and
//! interactivity carry none); the type is `event.type`, else `type`, else the slash
//! `command`. A signed `url_verification` request is answered with its challenge and
//! not stored.
//! <https://api.slack.com/authentication/verifying-requests-from-slack>

use http::HeaderMap;
use serde_json::Value;

use super::{Accepted, Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "x-slack-signature";

/// The headers carrying the signature (dropped once verified).
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE];
const TIMESTAMP: &str = "x-slack-request-timestamp";

pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        Ok(Verifier {
            keys: super::raw_keys(source),
            tolerance_secs: source.tolerance_secs,
        })
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, Rejection> {
        let value = super::required_header(headers, SIGNATURE, true)?;
        let ts_text = super::required_header(headers, TIMESTAMP, true)?;
        let sig = value
            .strip_prefix("v0=")
            .and_then(super::hex_mac)
            .ok_or_else(|| {
                Rejection::bad_request(
                    "malformed_header",
                    "X-Slack-Signature is not v0=<64 hex digits>",
                )
            })?;
        let ts = super::parse_timestamp(ts_text, "X-Slack-Request-Timestamp")?;
        super::check_tolerance(
            ts,
            now_secs,
            self.tolerance_secs,
            "X-Slack-Request-Timestamp",
        )?;
        let parts: [&[u8]; 4] = [b"v0:", ts_text.as_bytes(), b":", body];
        if !self
            .keys
            .iter()
            .any(|key| super::mac_matches(&super::mac(key, &parts), &sig))
        {
            return Err(Rejection::signature_mismatch("X-Slack-Signature"));
        }

        let Some(doc) = super::document(body, true) else {
            return Err(Rejection::malformed_body(
                "the body is neither JSON nor form-encoded fields",
            ));
        };
        if doc.get("type").and_then(Value::as_str) == Some("url_verification")
            && let Some(challenge) = doc.get("challenge").and_then(Value::as_str)
        {
            return Ok(Accepted::Challenge(challenge.to_string()));
        }
        let event_id = match doc.get("event_id") {
            Some(Value::String(id)) => super::label(id, "`event_id`", "malformed_body")?,
            _ => super::body_hash_id(body),
        };
        let event_type = ["/event/type", "/type", "/command"]
            .iter()
            .find_map(|p| doc.pointer(p).and_then(Value::as_str))
            .ok_or_else(|| {
                Rejection::malformed_body("the body has no `event.type`, `type` or `command`")
            })?;
        Ok(Accepted::Event(Verified {
            event_id,
            event_type: super::label(event_type, "the event type", "malformed_body")?,
        }))
    }
}

/// Sign as Slack does. For a JSON body `--id` sets `event_id` and `--type` sets
/// `event.type` (or `type` when there is no `event`); a form body (slash command) is
/// sent as it is.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let type_pointer = match super::json(out.body) {
        Some(doc) if doc.get("event").is_some_and(Value::is_object) => "/event/type",
        _ => "/type",
    };
    let body = super::edit_json(
        out.body,
        &[("/event_id", out.event_id), (type_pointer, out.event_type)],
    )?;
    let ts = out.timestamp.to_string();
    let sig = super::mac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", &body]);
    Ok(Signed {
        headers: vec![
            (
                "User-Agent".into(),
                "Slackbot 1.0 (+https://api.slack.com/robots)".into(),
            ),
            ("X-Slack-Request-Timestamp".into(), ts),
            ("X-Slack-Signature".into(), format!("v0={sig}")),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{Vector, flip_digit, flip_hex, headers, vector};

    fn published() -> Vector {
        vector("slack", "Slack docs")
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig::new(
            "sl",
            Scheme::Slack,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    fn request(ts: &str, sig: &str) -> HeaderMap {
        headers([
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
        ])
    }

    fn event(accepted: Accepted) -> Verified {
        match accepted {
            Accepted::Event(v) => v,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn signed(secret: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let ts = ts.to_string();
        let sig = super::super::mac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
        request(&ts, &format!("v0={sig}"))
    }

    #[test]
    fn published_vector_verifies_as_a_slash_command() {
        let vec = published();
        let ts_text = vec.header("X-Slack-Request-Timestamp");
        let ts: i64 = ts_text.parse().unwrap();
        let got = event(
            verifier(&[&vec.secret])
                .verify(&vec.headers(), vec.body.as_bytes(), ts)
                .unwrap(),
        );
        assert_eq!(got.event_type, "/webhook-collect");
        assert!(got.event_id.starts_with("sha256:"), "{}", got.event_id);
        assert_eq!(
            got.event_id,
            super::super::body_hash_id(vec.body.as_bytes())
        );
    }

    #[test]
    fn every_single_byte_change_fails() {
        let vec = published();
        let v = verifier(&[&vec.secret]);
        let ts_text = vec.header("X-Slack-Request-Timestamp");
        let ts: i64 = ts_text.parse().unwrap();
        let sig = vec.header("X-Slack-Signature");
        for i in 0..vec.body.len() {
            let mut body = vec.body.as_bytes().to_vec();
            body[i] ^= 1;
            let e = v.verify(&request(&ts_text, &sig), &body, ts).unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "body byte {i}");
        }
        for i in 3..sig.len() {
            let e = v
                .verify(
                    &request(&ts_text, &flip_hex(&sig, i)),
                    vec.body.as_bytes(),
                    ts,
                )
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "signature char {i}");
        }
        for i in 0..ts_text.len() {
            let changed = flip_digit(&ts_text, i);
            let now: i64 = changed.parse().unwrap();
            let e = v
                .verify(&request(&changed, &sig), vec.body.as_bytes(), now)
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "timestamp digit {i}");
        }
    }

    #[test]
    fn rotation_and_tolerance_edges() {
        let vec = published();
        let v = verifier(&["new-signing-secret", &vec.secret]);
        let ts: i64 = vec.header("X-Slack-Request-Timestamp").parse().unwrap();
        for now in [ts - 300, ts + 300] {
            assert!(v.verify(&vec.headers(), vec.body.as_bytes(), now).is_ok());
        }
        for now in [ts - 301, ts + 301] {
            let e = v
                .verify(&vec.headers(), vec.body.as_bytes(), now)
                .unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (401, "timestamp_out_of_tolerance")
            );
        }
    }

    #[test]
    fn events_api_ids_and_types() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let v = verifier(&[secret]);
        let body = br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}"#;
        let got = event(v.verify(&signed(secret, 1000, body), body, 1000).unwrap());
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("Ev08MFMKH6", "app_mention")
        );

        let body = br#"{"type":"app_rate_limited","team_id":"T1"}"#;
        let got = event(v.verify(&signed(secret, 1000, body), body, 1000).unwrap());
        assert_eq!(got.event_type, "app_rate_limited");

        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let got = event(v.verify(&signed(secret, 1000, body), body, 1000).unwrap());
        assert_eq!(got.event_type, "block_actions");

        let body = br#"{"token":"x"}"#;
        let e = v
            .verify(&signed(secret, 1000, body), body, 1000)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (400, "malformed_body"));
    }

    #[test]
    fn url_verification_is_answered_only_when_signed() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let v = verifier(&[secret]);
        let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        assert_eq!(
            v.verify(&signed(secret, 1000, body), body, 1000).unwrap(),
            Accepted::Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())
        );
        let e = v
            .verify(&signed("wrong", 1000, body), body, 1000)
            .unwrap_err();
        assert_eq!(e.reason, "signature_mismatch");
    }

    #[test]
    fn missing_duplicate_and_malformed_headers() {
        let vec = published();
        let v = verifier(&[&vec.secret]);
        let ts: i64 = vec.header("X-Slack-Request-Timestamp").parse().unwrap();
        let body = vec.body.as_bytes();
        for name in ["X-Slack-Signature", "X-Slack-Request-Timestamp"] {
            let mut h = vec.headers();
            h.remove(name);
            let e = v.verify(&h, body, ts).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (401, "missing_header"),
                "{name}"
            );
            let mut h = vec.headers();
            let again = h[name].clone();
            h.append(name, again);
            let e = v.verify(&h, body, ts).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "duplicate_header"),
                "{name}"
            );
        }
        let sig = vec.header("X-Slack-Signature");
        for (t, s) in [
            ("1531420618", "a2114d57"),
            ("1531420618", "v1=a2114d57"),
            ("1531420618", "v0=nothex"),
            ("1531420618.5", sig.as_str()),
            ("", sig.as_str()),
        ] {
            let e = v.verify(&request(t, s), body, ts).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{t} {s}"
            );
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let secret = "shh";
        let v = verifier(&[secret]);
        for (body, ty, want_type) in [
            (
                &br#"{"type":"event_callback","event":{"type":"message"}}"#[..],
                Some("reaction_added"),
                "reaction_added",
            ),
            (
                &br#"{"type":"event_callback","event":{"type":"message"}}"#[..],
                None,
                "message",
            ),
            (&b"command=%2Fdeploy&text=prod"[..], None, "/deploy"),
        ] {
            let out = Outgoing {
                event_id: None,
                event_type: ty,
                timestamp: 1_700_000_000,
                body,
            };
            let signed = sign(secret, &out).unwrap();
            let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let got = event(v.verify(&h, &signed.body, 1_700_000_000).unwrap());
            assert_eq!(got.event_type, want_type);
        }
        let out = Outgoing {
            event_id: Some("Ev1"),
            event_type: None,
            timestamp: 1,
            body: b"command=%2Fdeploy",
        };
        assert!(
            sign(secret, &out).is_err(),
            "a form body has no place for an id"
        );
    }
}
