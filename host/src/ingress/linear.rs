//! Linear: `Linear-Signature: <hex>`, the hex HMAC-SHA256 of the body keyed with the
//! webhook's signing secret. The body's `webhookTimestamp` (Unix milliseconds, signed
//! with the body) must be within `tolerance_secs` of now — Linear's guard against
//! replays. The id is `Linear-Delivery`, the type `<type>.<action>` from the body
//! (`Issue.create`, `Comment.update`).
//! <https://linear.app/developers/webhooks#securing-webhooks>

use http::HeaderMap;
use serde_json::Value;

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "linear-signature";
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE];
const DELIVERY: &str = "linear-delivery";

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
    ) -> Result<Verified, Rejection> {
        let value = super::required_header(headers, SIGNATURE, true)?;
        let sig = super::hex_mac(value.trim()).ok_or_else(|| {
            Rejection::bad_request(
                "malformed_header",
                "Linear-Signature is not a hex HMAC-SHA256",
            )
        })?;
        if !self
            .keys
            .iter()
            .any(|key| super::mac_matches(&super::mac(key, &[body]), &sig))
        {
            return Err(Rejection::signature_mismatch("Linear-Signature"));
        }
        let doc = super::json(body);
        let ts_ms = doc
            .as_ref()
            .and_then(|d| d.get("webhookTimestamp"))
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                Rejection::bad_request(
                    "malformed_body",
                    "the body has no integer webhookTimestamp (Unix milliseconds)",
                )
            })?;
        super::check_tolerance(
            ts_ms.div_euclid(1000),
            now_secs,
            self.tolerance_secs,
            "webhookTimestamp",
        )?;
        let entity = super::json_label(doc.as_ref(), "/type", "`type`")?;
        let action = super::json_label(doc.as_ref(), "/action", "`action`")?;
        Ok(Verified {
            event_id: super::header_label(headers, DELIVERY)?,
            event_type: super::label(
                &format!("{entity}.{action}"),
                "`type`.`action`",
                "malformed_body",
            )?,
        })
    }
}

/// Sign as Linear: `webhookTimestamp` set to the signing time, `--type Issue.create`
/// split into `type` and `action`, `--id` the delivery id.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let (entity, action) = match out.event_type {
        Some(t) => {
            let (e, a) = t.split_once('.').ok_or_else(|| {
                SignError::Payload("linear types are <type>.<action>, like Issue.create".into())
            })?;
            (Some(e), Some(a))
        }
        None => (None, None),
    };
    let mut body = super::edit_json(out.body, &[("/type", entity), ("/action", action)])?;
    let mut doc: Value = serde_json::from_slice(&body)
        .map_err(|_| SignError::Payload("a Linear body is a JSON object".into()))?;
    if let Some(o) = doc.as_object_mut() {
        o.insert("webhookTimestamp".into(), Value::from(out.timestamp * 1000));
    }
    body = serde_json::to_vec(&doc).map_err(|e| SignError::Payload(e.to_string()))?;
    let id = out
        .event_id
        .map_or_else(|| super::fresh_id(""), str::to_string);
    Ok(Signed {
        headers: vec![
            ("User-Agent".into(), "Linear-Webhook".into()),
            ("Linear-Delivery".into(), id),
            ("Linear-Event".into(), entity.unwrap_or("Issue").to_string()),
            (
                "Linear-Signature".into(),
                super::mac_hex(secret.as_bytes(), &[&body]),
            ),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{flip_hex, headers, vector};

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig::new(
            "linear",
            Scheme::Linear,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    fn now_of(v: &crate::ingress::testdata::Vector) -> i64 {
        let doc: Value = serde_json::from_str(&v.body).unwrap();
        doc["webhookTimestamp"].as_i64().unwrap() / 1000
    }

    #[test]
    fn vector_verifies_and_every_byte_counts() {
        let v = vector("linear", "Linear");
        let now = now_of(&v);
        let got = verifier(&[&v.secret])
            .verify(&v.headers(), v.body.as_bytes(), now)
            .unwrap();
        assert_eq!(got.event_type, "Issue.create");
        assert_eq!(got.event_id, "1b5e8d2f-7f7a-4c1e-9a57-3d2b1c0e9f11");
        for i in 0..v.body.len() {
            let mut b = v.body.as_bytes().to_vec();
            b[i] ^= 1;
            assert_eq!(
                verifier(&[&v.secret])
                    .verify(&v.headers(), &b, now)
                    .unwrap_err()
                    .reason,
                "signature_mismatch"
            );
        }
        let mut h = v.headers();
        h.insert(
            "linear-signature",
            flip_hex(&v.header("Linear-Signature"), 3).parse().unwrap(),
        );
        assert_eq!(
            verifier(&[&v.secret])
                .verify(&h, v.body.as_bytes(), now)
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
        assert!(
            verifier(&["old", &v.secret])
                .verify(&v.headers(), v.body.as_bytes(), now)
                .is_ok()
        );
    }

    #[test]
    fn stale_deliveries_and_missing_headers_are_refused() {
        let v = vector("linear", "Linear");
        let now = now_of(&v);
        let e = verifier(&[&v.secret])
            .verify(&v.headers(), v.body.as_bytes(), now + 301)
            .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.reason),
            (401, "timestamp_out_of_tolerance")
        );
        assert!(
            verifier(&[&v.secret])
                .verify(&v.headers(), v.body.as_bytes(), now + 300)
                .is_ok()
        );
        let mut h = v.headers();
        h.remove("linear-delivery");
        assert_eq!(
            verifier(&[&v.secret])
                .verify(&h, v.body.as_bytes(), now)
                .unwrap_err()
                .reason,
            "missing_header"
        );
        let e = verifier(&[&v.secret])
            .verify(&HeaderMap::new(), v.body.as_bytes(), now)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let out = Outgoing {
            event_id: Some("d-1"),
            event_type: Some("Comment.update"),
            timestamp: 1_700_000_000,
            body: br#"{"data":{"id":"c1"}}"#,
        };
        let signed = sign("s", &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = verifier(&["s"])
            .verify(&h, &signed.body, 1_700_000_000)
            .unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("d-1", "Comment.update")
        );
    }
}
