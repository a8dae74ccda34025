//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, the base64 HMAC-SHA256 of the body keyed
//! with the app's client secret. The id is `X-Shopify-Webhook-Id`, the type
//! `X-Shopify-Topic` (`orders/create`). Shopify signs no timestamp and not the webhook
//! id: replays are absorbed by dedup on the webhook id only.
//! <https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::{MAC_LEN, Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "x-shopify-hmac-sha256";

/// The headers carrying the signature (dropped once verified).
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE];
const WEBHOOK_ID: &str = "x-shopify-webhook-id";
const TOPIC: &str = "x-shopify-topic";

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
        let sig = STANDARD
            .decode(value.trim())
            .ok()
            .filter(|s| s.len() == MAC_LEN)
            .ok_or_else(|| {
                Rejection::bad_request(
                    "malformed_header",
                    "X-Shopify-Hmac-Sha256 is not a base64 HMAC-SHA256",
                )
            })?;
        if !self
            .keys
            .iter()
            .any(|key| super::mac_matches(&super::mac(key, &[body]), &sig))
        {
            return Err(Rejection::signature_mismatch("X-Shopify-Hmac-Sha256"));
        }
        Ok(Verified {
            event_id: super::header_label(headers, WEBHOOK_ID)?,
            event_type: super::header_label(headers, TOPIC)?,
        })
    }
}

/// Sign as Shopify does. `--type` is the topic (`orders/create`), required; the
/// webhook id is fresh unless `--id` is given.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let topic = out.event_type.ok_or_else(|| {
        SignError::Payload(
            "shopify carries the topic in X-Shopify-Topic: pass --type (e.g. --type orders/create)"
                .into(),
        )
    })?;
    let id = out
        .event_id
        .map_or_else(|| super::fresh_id(""), str::to_string);
    Ok(Signed {
        headers: vec![
            ("User-Agent".into(), "Shopify-Captain-Hook".into()),
            ("X-Shopify-Topic".into(), topic.to_string()),
            ("X-Shopify-Webhook-Id".into(), id),
            ("X-Shopify-Triggered-At".into(), out.timestamp.to_string()),
            (
                "X-Shopify-Hmac-Sha256".into(),
                super::mac_base64(secret.as_bytes(), &[out.body]),
            ),
        ],
        body: out.body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{base64_positions, flip_base64, headers};

    // Constructed from Shopify's documented algorithm (no published vector gives the
    // secret), and cross-checked independently:
    //   printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
    const SECRET: &str = "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";
    const BODY: &str =
        r#"{"id":820982911946154508,"email":"jon@example.com","total_price":"10.00"}"#;
    const SIG: &str = "wcTT+nkpJPGsBS/VpPM1Ah8B/ZObcIhZCAqfxe0R0aI=";
    const ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig::new(
            "sh",
            Scheme::Shopify,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    fn request(sig: &str) -> HeaderMap {
        headers([
            ("X-Shopify-Hmac-Sha256", sig),
            ("X-Shopify-Webhook-Id", ID),
            ("X-Shopify-Topic", "orders/create"),
        ])
    }

    #[test]
    fn constructed_vector_verifies_and_matches_openssl() {
        let got = verifier(&[SECRET])
            .verify(&request(SIG), BODY.as_bytes())
            .unwrap();
        assert_eq!(got.event_id, ID);
        assert_eq!(got.event_type, "orders/create");
        assert_eq!(
            super::super::mac_base64(SECRET.as_bytes(), &[BODY.as_bytes()]),
            SIG
        );
    }

    #[test]
    fn every_single_byte_change_fails() {
        let v = verifier(&[SECRET]);
        for i in 0..BODY.len() {
            let mut body = BODY.as_bytes().to_vec();
            body[i] ^= 1;
            assert_eq!(
                v.verify(&request(SIG), &body).unwrap_err().reason,
                "signature_mismatch"
            );
        }
        for i in base64_positions(SIG) {
            let e = v
                .verify(&request(&flip_base64(SIG, i)), BODY.as_bytes())
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "signature char {i}");
        }
    }

    #[test]
    fn rotation() {
        let v = verifier(&["shpss_previous", SECRET]);
        assert!(v.verify(&request(SIG), BODY.as_bytes()).is_ok());
        let v = verifier(&["shpss_previous"]);
        assert_eq!(
            v.verify(&request(SIG), BODY.as_bytes()).unwrap_err().reason,
            "signature_mismatch"
        );
    }

    #[test]
    fn missing_duplicate_and_malformed_headers() {
        let v = verifier(&[SECRET]);
        let body = BODY.as_bytes();
        for (name, status) in [
            ("X-Shopify-Hmac-Sha256", 401),
            ("X-Shopify-Webhook-Id", 400),
            ("X-Shopify-Topic", 400),
        ] {
            let mut h = request(SIG);
            h.remove(name);
            let e = v.verify(&h, body).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (status, "missing_header"),
                "{name}"
            );
            let mut h = request(SIG);
            let again = h[name].clone();
            h.append(name, again);
            let e = v.verify(&h, body).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "duplicate_header"),
                "{name}"
            );
        }
        for bad in ["not base64!", "sha256=wcTT"] {
            let e = v.verify(&request(bad), body).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{bad}"
            );
        }
        let mut h = request(SIG);
        h.insert("X-Shopify-Topic", "".parse().unwrap());
        assert_eq!(v.verify(&h, body).unwrap_err().reason, "malformed_header");
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let out = Outgoing {
            event_id: Some("wh-1"),
            event_type: Some("products/update"),
            timestamp: 1,
            body: BODY.as_bytes(),
        };
        let signed = sign(SECRET, &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = verifier(&[SECRET]).verify(&h, &signed.body).unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("wh-1", "products/update")
        );
        assert!(
            sign(
                SECRET,
                &Outgoing {
                    event_type: None,
                    ..out
                }
            )
            .is_err()
        );
    }
}
