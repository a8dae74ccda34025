//! Standard Webhooks (also Svix and OpenAI): HMAC-SHA256 over `{id}.{timestamp}.{body}`,
//! sent as `webhook-signature: v1,<base64> [v1,<base64> ...]` with `webhook-id` and
//! `webhook-timestamp` (Svix sends the same as `svix-*`).
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use super::{Rejection, Verified};
use crate::config::{ConfigError, SourceConfig};

type HmacSha256 = Hmac<Sha256>;

/// The decoded secrets of one source.
pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let mut keys = Vec::with_capacity(source.secrets.len());
        for (i, secret) in source.secrets.iter().enumerate() {
            let raw = secret.expose();
            let b64 = raw.strip_prefix("whsec_").unwrap_or(raw);
            let key = STANDARD.decode(b64).map_err(|_| {
                ConfigError::invalid(
                    format!("sources.{}.secrets[{i}]", source.name),
                    "a standard-webhooks secret is `whsec_` followed by base64",
                )
            })?;
            if key.is_empty() {
                return Err(ConfigError::invalid(
                    format!("sources.{}.secrets[{i}]", source.name),
                    "the decoded secret is empty",
                ));
            }
            keys.push(key);
        }
        Ok(Verifier {
            keys,
            tolerance_secs: source.tolerance_secs,
        })
    }

    /// Verify a request against every configured secret. `now_secs` is the current Unix
    /// time (injected so tests can pin it).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Verified, Rejection> {
        let id = header(headers, "webhook-id", "svix-id")?;
        let ts_text = header(headers, "webhook-timestamp", "svix-timestamp")?;
        let sigs = header(headers, "webhook-signature", "svix-signature")?;
        if id.is_empty() || id.len() > 256 {
            return Err(Rejection::bad_request(
                "malformed_header",
                "webhook-id must be 1 to 256 characters",
            ));
        }
        let ts: i64 = ts_text.parse().map_err(|_| {
            Rejection::unauthorized(
                "malformed_header",
                "webhook-timestamp is not a Unix timestamp in seconds",
            )
        })?;
        if now_secs.abs_diff(ts) > self.tolerance_secs {
            return Err(Rejection::unauthorized(
                "timestamp_out_of_tolerance",
                format!(
                    "webhook-timestamp is more than {} s from the host's clock",
                    self.tolerance_secs
                ),
            ));
        }

        let mut candidates = Vec::new();
        for part in sigs.split(' ').filter(|p| !p.is_empty()) {
            if let Some(b64) = part.strip_prefix("v1,") {
                if let Ok(sig) = STANDARD.decode(b64) {
                    candidates.push(sig);
                }
            }
        }
        if candidates.is_empty() {
            return Err(Rejection::unauthorized(
                "malformed_header",
                "webhook-signature has no `v1,<base64>` signature",
            ));
        }

        for key in &self.keys {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            for sig in &candidates {
                if mac.clone().verify_slice(sig).is_ok() {
                    return Ok(Verified {
                        event_id: id.to_string(),
                        event_type: event_type(body)?,
                    });
                }
            }
        }
        Err(Rejection::unauthorized(
            "signature_mismatch",
            "no webhook-signature matches any configured secret",
        ))
    }
}

/// The first of two header names present, as text.
fn header<'a>(headers: &'a HeaderMap, name: &str, alt: &str) -> Result<&'a str, Rejection> {
    let mut values = headers.get_all(name).iter();
    let value = match values.next() {
        Some(v) => {
            if values.next().is_some() {
                return Err(Rejection::bad_request(
                    "duplicate_header",
                    format!("{name} is sent more than once"),
                ));
            }
            v
        }
        None => headers.get(alt).ok_or_else(|| {
            Rejection::unauthorized("missing_header", format!("{name} header is missing"))
        })?,
    };
    value.to_str().map_err(|_| {
        Rejection::bad_request("malformed_header", format!("{name} is not visible ASCII"))
    })
}

/// Standard Webhooks payloads are JSON objects with a string `type`.
fn event_type(body: &[u8]) -> Result<String, Rejection> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_slice::<Typed>(body)
        .map(|t| t.event_type)
        .map_err(|_| {
            Rejection::bad_request(
                "malformed_body",
                "body is not a JSON object with a string `type`",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use http::HeaderValue;

    // The published vector from the Standard Webhooks reference library
    // (../shared/test-vectors/signatures.json).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const BODY: &str = r#"{"test": 2432232314}"#;

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig {
            name: "t".into(),
            scheme: Scheme::StandardWebhooks,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance_secs: 300,
        })
        .unwrap()
    }

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert("webhook-timestamp", HeaderValue::from_str(ts).unwrap());
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    /// The vector's body has no `type`; the signature check itself is what is tested,
    /// so the type extraction failing (400) after a good signature proves the match.
    #[test]
    fn published_vector_verifies_then_needs_a_type() {
        let v = verifier(&[SECRET]);
        let err = v
            .verify(&headers(ID, &TS.to_string(), SIG), BODY.as_bytes(), TS)
            .unwrap_err();
        assert_eq!(err.reason, "malformed_body", "{err:?}");
    }

    #[test]
    fn every_single_byte_change_fails() {
        let v = verifier(&[SECRET]);
        let ts = TS.to_string();
        for i in 0..BODY.len() {
            let mut body = BODY.as_bytes().to_vec();
            body[i] ^= 1;
            let err = v.verify(&headers(ID, &ts, SIG), &body, TS).unwrap_err();
            assert_eq!(err.reason, "signature_mismatch");
        }
        let mut id = ID.to_string();
        id.replace_range(4..5, "X");
        assert_eq!(
            v.verify(&headers(&id, &ts, SIG), BODY.as_bytes(), TS)
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
        let other_ts = (TS + 1).to_string();
        assert_eq!(
            v.verify(&headers(ID, &other_ts, SIG), BODY.as_bytes(), TS)
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
        let bad_sig = SIG.replace("g0hM", "g0hN");
        assert_eq!(
            v.verify(&headers(ID, &ts, &bad_sig), BODY.as_bytes(), TS)
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
    }

    #[test]
    fn rotation_accepts_any_secret_and_any_signature() {
        let v = verifier(&["whsec_b3RoZXItc2VjcmV0", SECRET]);
        let sigs = format!("v1,AAAA {SIG} v1a,ignored");
        let err = v
            .verify(&headers(ID, &TS.to_string(), &sigs), BODY.as_bytes(), TS)
            .unwrap_err();
        assert_eq!(err.reason, "malformed_body");
    }

    #[test]
    fn tolerance_edges() {
        let v = verifier(&[SECRET]);
        let h = headers(ID, &TS.to_string(), SIG);
        for now in [TS + 300, TS - 300] {
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), now).unwrap_err().reason,
                "malformed_body"
            );
        }
        for now in [TS + 301, TS - 301] {
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), now).unwrap_err().reason,
                "timestamp_out_of_tolerance"
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers() {
        let v = verifier(&[SECRET]);
        let mut h = headers(ID, &TS.to_string(), SIG);
        h.remove("webhook-signature");
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), TS).unwrap_err().reason,
            "missing_header"
        );
        let h = headers(ID, "yesterday", SIG);
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), TS).unwrap_err().reason,
            "malformed_header"
        );
        let h = headers(ID, &TS.to_string(), "v2,abc");
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), TS).unwrap_err().reason,
            "malformed_header"
        );
        let mut h = headers(ID, &TS.to_string(), SIG);
        h.append("webhook-id", HeaderValue::from_static("msg_other"));
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), TS).unwrap_err().reason,
            "duplicate_header"
        );
    }

    #[test]
    fn bad_secret_is_a_config_error() {
        let e = Verifier::new(&SourceConfig {
            name: "s".into(),
            scheme: Scheme::StandardWebhooks,
            secrets: vec![Secret::new("whsec_!!!")],
            tolerance_secs: 300,
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("sources.s.secrets[0]"), "{e}");
    }
}
