//! PagerDuty v3 webhooks: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, hex
//! HMAC-SHA256 of the body keyed with the subscription's signing secret (several
//! signatures while PagerDuty rotates it). The body is `{"event": {...}}`: the id is
//! `/event/id`, the type `/event/event_type` (`incident.triggered`). PagerDuty signs no
//! timestamp: replays are absorbed by dedup on the event id.
//! <https://developer.pagerduty.com/docs/webhooks/webhook-signatures/>

use http::HeaderMap;

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "x-pagerduty-signature";
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE];
/// More than this many signatures is not a rotation.
const MAX_SIGNATURES: usize = 8;

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
        let value = super::required_header(headers, SIGNATURE, true)?;
        let sigs: Vec<Vec<u8>> = value
            .split(',')
            .filter_map(|p| p.trim().strip_prefix("v1="))
            .filter_map(super::hex_mac)
            .collect();
        if sigs.is_empty() || sigs.len() > MAX_SIGNATURES {
            return Err(Rejection::bad_request(
                "malformed_header",
                format!(
                    "X-PagerDuty-Signature is not 1 to {MAX_SIGNATURES} `v1=<hex HMAC-SHA256>`"
                ),
            ));
        }
        let matched = self.keys.iter().any(|key| {
            let mac = super::mac(key, &[body]);
            sigs.iter().any(|s| super::mac_matches(&mac, s))
        });
        if !matched {
            return Err(Rejection::signature_mismatch("X-PagerDuty-Signature"));
        }
        let doc = super::json(body);
        Ok(Verified {
            event_id: super::json_label(doc.as_ref(), "/event/id", "event.id")?,
            event_type: super::json_label(doc.as_ref(), "/event/event_type", "event.event_type")?,
        })
    }
}

/// Sign as PagerDuty; `--id`/`--type` go into `event.id`/`event.event_type`.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let body = super::edit_json(
        out.body,
        &[
            ("/event/id", out.event_id),
            ("/event/event_type", out.event_type),
        ],
    )?;
    Ok(Signed {
        headers: vec![
            ("User-Agent".into(), "PagerDuty-Webhook/V3.0".into()),
            ("X-Webhook-Id".into(), super::fresh_id("")),
            (
                "X-PagerDuty-Signature".into(),
                format!("v1={}", super::mac_hex(secret.as_bytes(), &[&body])),
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
            "pd",
            Scheme::Pagerduty,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    #[test]
    fn vector_verifies_every_byte_counts_and_rotation() {
        let v = vector("pagerduty", "PagerDuty");
        let body = v.body.as_bytes();
        let got = verifier(&[&v.secret]).verify(&v.headers(), body).unwrap();
        assert_eq!(got.event_type, "incident.triggered");
        assert_eq!(got.event_id, "5ac64822-4adc-4fda-ade0-410becf0de4f");
        for i in 0..body.len() {
            let mut b = body.to_vec();
            b[i] ^= 1;
            assert_eq!(
                verifier(&[&v.secret])
                    .verify(&v.headers(), &b)
                    .unwrap_err()
                    .reason,
                "signature_mismatch"
            );
        }
        let sig = v.header("X-PagerDuty-Signature");
        let flipped = flip_hex(&sig, 10);
        let h = headers([("X-PagerDuty-Signature", flipped.as_str())]);
        assert_eq!(
            verifier(&[&v.secret]).verify(&h, body).unwrap_err().reason,
            "signature_mismatch"
        );
        // During a rotation PagerDuty sends both signatures.
        let both = format!("{flipped},{sig}");
        let h = headers([("X-PagerDuty-Signature", both.as_str())]);
        assert!(verifier(&[&v.secret]).verify(&h, body).is_ok());
        assert!(
            verifier(&["old", &v.secret])
                .verify(&v.headers(), body)
                .is_ok()
        );
        assert_eq!(
            verifier(&["old"])
                .verify(&v.headers(), body)
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
        for bad in ["sha256=00", "v1=zz", &[sig.as_str(); 9].join(",")] {
            let e = verifier(&[&v.secret])
                .verify(&headers([("X-PagerDuty-Signature", bad)]), body)
                .unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (400, "malformed_header"));
        }
        let e = verifier(&[&v.secret])
            .verify(&HeaderMap::new(), body)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let out = Outgoing {
            event_id: Some("E1"),
            event_type: Some("incident.resolved"),
            timestamp: 1,
            body: br#"{"event":{"resource_type":"incident"}}"#,
        };
        let signed = sign("s", &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = verifier(&["s"]).verify(&h, &signed.body).unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("E1", "incident.resolved")
        );
    }
}
