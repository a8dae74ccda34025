//! Standard Webhooks (also Svix and OpenAI): the signed content is
//! `{id}.{timestamp}.{body}`, sent as `webhook-signature: v1,<base64 HMAC-SHA256>` and/or
//! `v1a,<base64 Ed25519>` (space-separated, several during a rotation), with
//! `webhook-id` and `webhook-timestamp` (Svix sends the same as `svix-*`).
//! Secrets: `whsec_<base64>` HMAC keys, `whpk_<base64>` Ed25519 public keys.
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use http::HeaderMap;

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

/// More signatures than this in one header is not a rotation but an attempt to make
/// the host do work (each `v1a` costs an Ed25519 verification).
const MAX_SIGNATURES: usize = 16;

/// The headers carrying the signature (dropped once verified), under either name.
pub const SIGNATURE_HEADERS: &[&str] = &["webhook-signature", "svix-signature"];

/// The decoded secrets of one source.
pub struct Verifier {
    /// `whsec_` keys, for `v1` signatures.
    hmac_keys: Vec<Vec<u8>>,
    /// `whpk_` keys, for `v1a` signatures.
    public_keys: Vec<VerifyingKey>,
    tolerance_secs: u64,
}

/// One secret as configured on the receiving side.
enum Key {
    Hmac(Vec<u8>),
    Public(VerifyingKey),
}

fn decode_key(raw: &str) -> Result<Key, &'static str> {
    if let Some(b64) = raw.strip_prefix("whpk_") {
        let bytes: [u8; 32] = STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a `whpk_` public key is `whpk_` followed by 32 bytes in base64")?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| "the `whpk_` public key is not a valid Ed25519 point")?;
        return Ok(Key::Public(key));
    }
    if raw.starts_with("whsk_") {
        return Err(
            "a `whsk_` key is the sender's private signing key; configure its `whpk_` public key instead",
        );
    }
    let b64 = raw.strip_prefix("whsec_").unwrap_or(raw);
    let key = STANDARD
        .decode(b64)
        .map_err(|_| "a standard-webhooks secret is `whsec_` followed by base64")?;
    if key.is_empty() {
        return Err("the decoded secret is empty");
    }
    Ok(Key::Hmac(key))
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let mut hmac_keys = Vec::new();
        let mut public_keys = Vec::new();
        for (i, secret) in source.secrets.iter().enumerate() {
            match decode_key(secret.expose()) {
                Ok(Key::Hmac(k)) => hmac_keys.push(k),
                Ok(Key::Public(k)) => public_keys.push(k),
                Err(message) => {
                    return Err(ConfigError::invalid(
                        format!("sources.{}.secrets[{i}]", source.name),
                        message,
                    ));
                }
            }
        }
        Ok(Verifier {
            hmac_keys,
            public_keys,
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
        let event_id = self.authenticate(headers, body, now_secs)?;
        let doc = super::json(body);
        Ok(Verified {
            event_id,
            event_type: super::json_label(doc.as_ref(), "/type", "`type`")?,
        })
    }

    /// Only the signature and timestamp; the `webhook-id` when they hold. CloudEvents
    /// and MCP event webhooks read the rest of the event themselves.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<String, Rejection> {
        let id = header(headers, "webhook-id", "svix-id")?;
        let ts_text = header(headers, "webhook-timestamp", "svix-timestamp")?;
        let sigs = header(headers, "webhook-signature", "svix-signature")?;
        let event_id = super::label(id, "webhook-id", "malformed_header")?;
        let ts = super::parse_timestamp(ts_text, "webhook-timestamp")?;
        super::check_tolerance(ts, now_secs, self.tolerance_secs, "webhook-timestamp")?;

        let mut v1 = Vec::new();
        let mut v1a = Vec::new();
        for part in sigs.split(' ').filter(|p| !p.is_empty()) {
            if let Some(b64) = part.strip_prefix("v1,") {
                if let Ok(sig) = STANDARD.decode(b64) {
                    v1.push(sig);
                }
            } else if let Some(b64) = part.strip_prefix("v1a,") {
                let sig = STANDARD.decode(b64).ok().and_then(|b| b.try_into().ok());
                if let Some(sig) = sig {
                    v1a.push(Signature::from_bytes(&sig));
                }
            }
        }
        if v1.is_empty() && v1a.is_empty() {
            return Err(Rejection::bad_request(
                "malformed_header",
                "webhook-signature has no `v1,<base64>` or `v1a,<base64>` signature",
            ));
        }
        if v1.len() + v1a.len() > MAX_SIGNATURES {
            return Err(Rejection::bad_request(
                "malformed_header",
                format!("webhook-signature carries more than {MAX_SIGNATURES} signatures"),
            ));
        }

        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
        let hmac_match = self.hmac_keys.iter().any(|key| {
            let mac = super::mac(key, &parts);
            v1.iter().any(|sig| super::mac_matches(&mac, sig))
        });
        let matched = hmac_match
            || (!v1a.is_empty() && !self.public_keys.is_empty() && {
                let message = parts.concat();
                self.public_keys.iter().any(|key| {
                    v1a.iter()
                        .any(|sig| key.verify_strict(&message, sig).is_ok())
                })
            });
        if !matched {
            return Err(Rejection::signature_mismatch("webhook-signature"));
        }
        Ok(event_id)
    }
}

/// The `webhook-*` header, or its `svix-*` twin when the first is absent; each at most
/// once.
fn header<'a>(headers: &'a HeaderMap, name: &str, alt: &str) -> Result<&'a str, Rejection> {
    match super::optional_header(headers, name)? {
        Some(v) => Ok(v),
        None => super::optional_header(headers, alt)?.ok_or_else(|| {
            Rejection::unauthorized("missing_header", format!("{name} header is missing"))
        }),
    }
}

/// Sign as a Standard Webhooks sender: `whsec_` secrets sign `v1` (HMAC), `whsk_`
/// private keys sign `v1a` (Ed25519). The type goes into the body's `type`.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let body = super::edit_json(out.body, &[("/type", out.event_type)])?;
    if !super::has_string(&body, "/type") {
        return Err(SignError::Payload(
            "standard-webhooks carries the event type in the body's `type`: add it or pass --type"
                .into(),
        ));
    }
    let id = out
        .event_id
        .map_or_else(|| super::fresh_id("msg_"), str::to_string);
    Ok(Signed {
        headers: signature_headers(secret, &id, out.timestamp, &body)?,
        body,
    })
}

/// The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers of `body`.
pub fn signature_headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, SignError> {
    let id = id.to_string();
    let ts = timestamp.to_string();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let bad = |message: &str| SignError::Secret {
        scheme: "standard-webhooks",
        message: message.to_string(),
    };
    let signature = if let Some(b64) = secret.strip_prefix("whsk_") {
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| bad("a `whsk_` key is base64"))?;
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("a `whsk_` key holds a 32-byte Ed25519 seed"))?;
        let sig = SigningKey::from_bytes(&seed).sign(&parts.concat());
        format!("v1a,{}", STANDARD.encode(sig.to_bytes()))
    } else {
        match decode_key(secret).map_err(bad)? {
            Key::Hmac(key) => format!("v1,{}", super::mac_base64(&key, &parts)),
            Key::Public(_) => {
                return Err(bad(
                    "a `whpk_` public key only verifies; sign with the sender's `whsk_` key",
                ));
            }
        }
    };
    Ok(vec![
        ("webhook-id".into(), id),
        ("webhook-timestamp".into(), ts),
        ("webhook-signature".into(), signature),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{Vector, vector};
    use http::HeaderValue;

    const BODY: &str = r#"{"test": 2432232314}"#;

    fn verifier(secrets: &[&str]) -> Verifier {
        let mut source = SourceConfig::new(
            "t",
            Scheme::StandardWebhooks,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        );
        source.tolerance_secs = 300;
        Verifier::new(&source).unwrap()
    }

    fn hmac_vector() -> Vector {
        vector("standard-webhooks", "HMAC v1")
    }

    fn ed_vector() -> Vector {
        vector("standard-webhooks", "Ed25519")
    }

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert("webhook-timestamp", HeaderValue::from_str(ts).unwrap());
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    /// The vector's body has no `type`; a good signature gets past verification and
    /// then fails the type extraction (400 malformed_body), a bad one is 401.
    fn reason(v: &Verifier, h: &HeaderMap, body: &[u8], now: i64) -> &'static str {
        v.verify(h, body, now).unwrap_err().reason
    }

    #[test]
    fn published_vectors_verify() {
        for (vec, key) in [
            (hmac_vector(), hmac_vector().secret),
            (ed_vector(), ed_vector().public_key.unwrap()),
        ] {
            let v = verifier(&[&key]);
            let ts: i64 = vec.header("webhook-timestamp").parse().unwrap();
            assert_eq!(
                reason(&v, &vec.headers(), vec.body.as_bytes(), ts),
                "malformed_body"
            );
            // The same headers over another body are refused.
            assert_eq!(
                reason(&v, &vec.headers(), br#"{"type":"a.b"}"#, ts),
                "signature_mismatch"
            );
        }
    }

    #[test]
    fn published_vectors_match_our_signer() {
        let vec = hmac_vector();
        let ts = vec.header("webhook-timestamp");
        let id = vec.header("webhook-id");
        let parts: [&[u8]; 5] = [
            id.as_bytes(),
            b".",
            ts.as_bytes(),
            b".",
            vec.body.as_bytes(),
        ];
        let Key::Hmac(key) = decode_key(&vec.secret).unwrap() else {
            panic!("not an hmac key")
        };
        assert_eq!(
            format!("v1,{}", super::super::mac_base64(&key, &parts)),
            vec.header("webhook-signature")
        );
        // Ed25519 is deterministic: signing the vector with its whsk_ key reproduces it.
        let ed = ed_vector();
        let seed: [u8; 32] = STANDARD
            .decode(&ed.secret[5..])
            .unwrap()
            .try_into()
            .unwrap();
        let sig = SigningKey::from_bytes(&seed).sign(&parts.concat());
        assert_eq!(
            format!("v1a,{}", STANDARD.encode(sig.to_bytes())),
            ed.header("webhook-signature")
        );
        assert_eq!(
            format!(
                "whpk_{}",
                STANDARD.encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes())
            ),
            ed.public_key.unwrap()
        );
    }

    #[test]
    fn every_single_byte_change_fails() {
        for (vec, key) in [
            (hmac_vector(), hmac_vector().secret),
            (ed_vector(), ed_vector().public_key.unwrap()),
        ] {
            let v = verifier(&[&key]);
            let id = vec.header("webhook-id");
            let ts_text = vec.header("webhook-timestamp");
            let ts: i64 = ts_text.parse().unwrap();
            let sig = vec.header("webhook-signature");
            for i in 0..vec.body.len() {
                let mut body = vec.body.as_bytes().to_vec();
                body[i] ^= 1;
                assert_eq!(
                    reason(&v, &headers(&id, &ts_text, &sig), &body, ts),
                    "signature_mismatch"
                );
            }
            for i in 0..id.len() {
                let changed = crate::ingress::testdata::flip(&id, i);
                assert_eq!(
                    reason(
                        &v,
                        &headers(&changed, &ts_text, &sig),
                        vec.body.as_bytes(),
                        ts
                    ),
                    "signature_mismatch",
                    "id byte {i}"
                );
            }
            for i in 0..ts_text.len() {
                let changed = crate::ingress::testdata::flip_digit(&ts_text, i);
                let r = reason(&v, &headers(&id, &changed, &sig), vec.body.as_bytes(), ts);
                assert!(
                    r == "signature_mismatch" || r == "timestamp_out_of_tolerance",
                    "ts byte {i}: {r}"
                );
                // With the clock at the changed time, only the signature can refuse it.
                let now: i64 = changed.parse().unwrap();
                assert_eq!(
                    reason(&v, &headers(&id, &changed, &sig), vec.body.as_bytes(), now),
                    "signature_mismatch"
                );
            }
            let (prefix, b64) = sig.split_once(',').unwrap();
            for i in crate::ingress::testdata::base64_positions(b64) {
                let changed = format!("{prefix},{}", crate::ingress::testdata::flip_base64(b64, i));
                let r = reason(
                    &v,
                    &headers(&id, &ts_text, &changed),
                    vec.body.as_bytes(),
                    ts,
                );
                assert_eq!(r, "signature_mismatch", "signature char {i}");
            }
        }
    }

    #[test]
    fn rotation_accepts_any_secret_and_any_signature() {
        let hv = hmac_vector();
        let ev = ed_vector();
        let v = verifier(&[
            "whsec_b3RoZXItc2VjcmV0",
            &ev.public_key.clone().unwrap(),
            &hv.secret,
        ]);
        let ts: i64 = hv.header("webhook-timestamp").parse().unwrap();
        let id = hv.header("webhook-id");
        let ts_text = ts.to_string();
        let sigs = format!("v1,AAAA {} v1a,ignored", hv.header("webhook-signature"));
        assert_eq!(
            reason(&v, &headers(&id, &ts_text, &sigs), BODY.as_bytes(), ts),
            "malformed_body"
        );
        let sigs = format!("v1,AAAA {}", ev.header("webhook-signature"));
        assert_eq!(
            reason(&v, &headers(&id, &ts_text, &sigs), BODY.as_bytes(), ts),
            "malformed_body"
        );
        // A v1a signature is not checked against an HMAC key, nor v1 against a public key.
        let v = verifier(&[&hv.secret]);
        assert_eq!(
            reason(
                &v,
                &headers(&id, &ts_text, &ev.header("webhook-signature")),
                BODY.as_bytes(),
                ts
            ),
            "signature_mismatch"
        );
    }

    #[test]
    fn tolerance_edges() {
        let vec = hmac_vector();
        let v = verifier(&[&vec.secret]);
        let ts: i64 = vec.header("webhook-timestamp").parse().unwrap();
        let h = vec.headers();
        for now in [ts + 300, ts - 300, ts] {
            assert_eq!(reason(&v, &h, BODY.as_bytes(), now), "malformed_body");
        }
        for now in [ts + 301, ts - 301, 0, i64::MAX, i64::MIN] {
            assert_eq!(
                reason(&v, &h, BODY.as_bytes(), now),
                "timestamp_out_of_tolerance"
            );
        }
    }

    #[test]
    fn svix_headers_are_accepted() {
        let vec = hmac_vector();
        let v = verifier(&[&vec.secret]);
        let mut h = HeaderMap::new();
        for (k, val) in vec.headers().iter() {
            let name = k.as_str().replace("webhook-", "svix-");
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                val.clone(),
            );
        }
        let ts: i64 = vec.header("webhook-timestamp").parse().unwrap();
        assert_eq!(reason(&v, &h, BODY.as_bytes(), ts), "malformed_body");
    }

    #[test]
    fn missing_duplicate_and_malformed_headers() {
        let vec = hmac_vector();
        let v = verifier(&[&vec.secret]);
        let ts: i64 = vec.header("webhook-timestamp").parse().unwrap();
        let good = vec.headers();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = good.clone();
            h.remove(name);
            let e = v.verify(&h, BODY.as_bytes(), ts).unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
            assert!(e.message.contains(name));
            let mut h = good.clone();
            h.append(name, HeaderValue::from_static("x"));
            let e = v.verify(&h, BODY.as_bytes(), ts).unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (400, "duplicate_header"));
        }
        let id = vec.header("webhook-id");
        let sig = vec.header("webhook-signature");
        for bad_ts in [
            "yesterday",
            "+1614265330",
            " 1614265330",
            "-1",
            "",
            "16142653300000000",
        ] {
            let e = v
                .verify(&headers(&id, bad_ts, &sig), BODY.as_bytes(), ts)
                .unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{bad_ts}"
            );
        }
        for bad_sig in [
            "v2,abc",
            "",
            "v1,!!!",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            let e = v
                .verify(&headers(&id, &ts.to_string(), bad_sig), BODY.as_bytes(), ts)
                .unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{bad_sig}"
            );
        }
        let many = vec!["v1,AAAA"; MAX_SIGNATURES + 1].join(" ");
        assert_eq!(
            reason(
                &v,
                &headers(&id, &ts.to_string(), &many),
                BODY.as_bytes(),
                ts
            ),
            "malformed_header"
        );
        let long_id = "m".repeat(257);
        assert_eq!(
            reason(
                &v,
                &headers(&long_id, &ts.to_string(), &sig),
                BODY.as_bytes(),
                ts
            ),
            "malformed_header"
        );
        let mut h = good.clone();
        h.insert(
            "webhook-id",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(reason(&v, &h, BODY.as_bytes(), ts), "malformed_header");
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let hv = hmac_vector();
        let ev = ed_vector();
        for (sender, receiver) in [
            (hv.secret.clone(), hv.secret.clone()),
            (ev.secret.clone(), ev.public_key.clone().unwrap()),
        ] {
            let out = Outgoing {
                event_id: None,
                event_type: Some("invoice.paid"),
                timestamp: 1_700_000_000,
                body: br#"{"data": {"n": 1}}"#,
            };
            let signed = sign(&sender, &out).unwrap();
            let mut h = HeaderMap::new();
            for (k, val) in &signed.headers {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(val).unwrap(),
                );
            }
            let got = verifier(&[&receiver])
                .verify(&h, &signed.body, 1_700_000_100)
                .unwrap();
            assert_eq!(got.event_type, "invoice.paid");
            assert!(got.event_id.starts_with("msg_"), "{}", got.event_id);
        }
        assert!(
            sign(
                &ev.public_key.unwrap(),
                &Outgoing {
                    event_id: Some("x"),
                    event_type: Some("t"),
                    timestamp: 1,
                    body: b"{}",
                }
            )
            .is_err()
        );
        let no_type = Outgoing {
            event_id: None,
            event_type: None,
            timestamp: 1,
            body: b"{}",
        };
        assert!(matches!(
            sign(&hv.secret, &no_type),
            Err(SignError::Payload(_))
        ));
    }

    #[test]
    fn bad_secrets_are_config_errors() {
        for bad in [
            "whsec_!!!",
            "whpk_AAAA",
            "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",
        ] {
            let source = SourceConfig::new("s", Scheme::StandardWebhooks, vec![Secret::new(bad)]);
            let e = Verifier::new(&source).err().unwrap();
            assert!(e.to_string().contains("sources.s.secrets[0]"), "{e}");
        }
    }
}
