//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>][,v0=<hex>]`, the hex
//! HMAC-SHA256 of `{t}.{body}` keyed with the endpoint's whole signing secret
//! (`whsec_...` used as raw bytes, not decoded). Several `v1` appear while Stripe rolls a
//! secret; `v0` (a test-mode signature) is ignored. The event id and type are the body's
//! `id` and `type`.
//! <https://docs.stripe.com/webhooks#verify-manually>

use http::HeaderMap;

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const HEADER: &str = "stripe-signature";

/// The headers carrying the signature (dropped once verified).
pub const SIGNATURE_HEADERS: &[&str] = &[HEADER];
/// More `v1` entries than this is not a secret roll.
const MAX_SIGNATURES: usize = 16;

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
        let value = super::required_header(headers, HEADER, true)?;
        let malformed = |message: &str| {
            Rejection::bad_request("malformed_header", format!("Stripe-Signature {message}"))
        };
        let mut t = None;
        let mut v1 = Vec::new();
        for item in value.split(',') {
            let Some((key, val)) = item.trim().split_once('=') else {
                return Err(malformed("is not a list of key=value pairs"));
            };
            match key {
                "t" if t.is_some() => return Err(malformed("has more than one t=")),
                "t" => t = Some(val),
                // Not hex, or not 32 bytes: cannot match, but may sit beside one that does.
                "v1" => {
                    if let Ok(sig) = hex::decode(val) {
                        v1.push(sig);
                    }
                }
                _ => {} // v0 and future schemes
            }
        }
        let t = t.ok_or_else(|| malformed("has no t= timestamp"))?;
        if v1.is_empty() {
            return Err(malformed("has no v1= signature"));
        }
        if v1.len() > MAX_SIGNATURES {
            return Err(malformed(&format!(
                "has more than {MAX_SIGNATURES} signatures"
            )));
        }
        let ts = super::parse_timestamp(t, "Stripe-Signature t=")?;
        super::check_tolerance(ts, now_secs, self.tolerance_secs, "Stripe-Signature t=")?;

        let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
        let matched = self.keys.iter().any(|key| {
            let mac = super::mac(key, &parts);
            v1.iter().any(|sig| super::mac_matches(&mac, sig))
        });
        if !matched {
            return Err(Rejection::signature_mismatch("Stripe-Signature"));
        }
        let doc = super::json(body);
        Ok(Verified {
            event_id: super::json_label(doc.as_ref(), "/id", "`id`")?,
            event_type: super::json_label(doc.as_ref(), "/type", "`type`")?,
        })
    }
}

/// Sign as Stripe does. The id and type are the body's `id` and `type`: `--id` and
/// `--type` replace them, and a body without an `id` gets a fresh `evt_` one.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let fresh;
    let id = match out.event_id {
        Some(id) => Some(id),
        None if super::has_string(out.body, "/id") => None,
        None => {
            fresh = super::fresh_id("evt_");
            Some(fresh.as_str())
        }
    };
    let body = super::edit_json(out.body, &[("/id", id), ("/type", out.event_type)])?;
    if !super::has_string(&body, "/type") {
        return Err(SignError::Payload(
            "stripe carries the event type in the body's `type`: add it or pass --type".into(),
        ));
    }
    let t = out.timestamp.to_string();
    let sig = super::mac_hex(secret.as_bytes(), &[t.as_bytes(), b".", &body]);
    Ok(Signed {
        headers: vec![
            (
                "User-Agent".into(),
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into(),
            ),
            ("Stripe-Signature".into(), format!("t={t},v1={sig}")),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{flip, flip_digit, flip_hex, headers};

    // Constructed from Stripe's documented algorithm (no published vector gives the
    // secret), and cross-checked independently:
    //   printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac "$SECRET"
    const SECRET: &str = "whsec_5JxmLhSVNj3QxW8LZbUvZ2aSxJTEsT6r";
    const TS: i64 = 1_700_000_000;
    const BODY: &str = r#"{"id":"evt_1QxAgentHook","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":2000}}}"#;
    const SIG: &str = "0ed5d6082e9ed9eaee68fb56a94f5159d195c036881cfc7a68aaf9ea4dcedb0b";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig::new(
            "s",
            Scheme::Stripe,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    fn header(value: &str) -> HeaderMap {
        headers([("Stripe-Signature", value)])
    }

    fn reason(v: &Verifier, value: &str, body: &[u8], now: i64) -> &'static str {
        v.verify(&header(value), body, now).unwrap_err().reason
    }

    #[test]
    fn constructed_vector_verifies_and_matches_openssl() {
        let v = verifier(&[SECRET]);
        let got = v
            .verify(&header(&format!("t={TS},v1={SIG}")), BODY.as_bytes(), TS)
            .unwrap();
        assert_eq!(got.event_id, "evt_1QxAgentHook");
        assert_eq!(got.event_type, "payment_intent.succeeded");
        assert_eq!(
            super::super::mac_hex(SECRET.as_bytes(), &[b"1700000000.", BODY.as_bytes()]),
            SIG
        );
    }

    #[test]
    fn every_single_byte_change_fails() {
        let v = verifier(&[SECRET]);
        let good = format!("t={TS},v1={SIG}");
        for i in 0..BODY.len() {
            let mut body = BODY.as_bytes().to_vec();
            body[i] ^= 1;
            assert_eq!(
                reason(&v, &good, &body, TS),
                "signature_mismatch",
                "body byte {i}"
            );
        }
        for i in 0..SIG.len() {
            let value = format!("t={TS},v1={}", flip_hex(SIG, i));
            assert_eq!(
                reason(&v, &value, BODY.as_bytes(), TS),
                "signature_mismatch"
            );
        }
        let ts = TS.to_string();
        for i in 0..ts.len() {
            let changed = flip_digit(&ts, i);
            let value = format!("t={changed},v1={SIG}");
            let now: i64 = changed.parse().unwrap();
            assert_eq!(
                reason(&v, &value, BODY.as_bytes(), now),
                "signature_mismatch"
            );
        }
        // The id lives in the body; changing it is a body change.
        let body = BODY.replace("evt_1QxAgentHook", &flip("evt_1QxAgentHook", 6));
        assert_eq!(reason(&v, &good, body.as_bytes(), TS), "signature_mismatch");
    }

    #[test]
    fn rotation_and_several_signatures() {
        let v = verifier(&["whsec_old", SECRET]);
        let value = format!("t={TS},v1={},v1={SIG},v0=abc,v9=future", "ab".repeat(32));
        assert!(v.verify(&header(&value), BODY.as_bytes(), TS).is_ok());
        // A signature made with a secret that is not configured is refused.
        let v = verifier(&["whsec_old"]);
        assert_eq!(
            reason(&v, &format!("t={TS},v1={SIG}"), BODY.as_bytes(), TS),
            "signature_mismatch"
        );
        // v0 alone is not accepted.
        let v = verifier(&[SECRET]);
        assert_eq!(
            reason(&v, &format!("t={TS},v0={SIG}"), BODY.as_bytes(), TS),
            "malformed_header"
        );
    }

    #[test]
    fn tolerance_edges() {
        let v = verifier(&[SECRET]);
        let value = format!("t={TS},v1={SIG}");
        for now in [TS - 300, TS + 300] {
            assert!(v.verify(&header(&value), BODY.as_bytes(), now).is_ok());
        }
        for now in [TS - 301, TS + 301] {
            assert_eq!(
                reason(&v, &value, BODY.as_bytes(), now),
                "timestamp_out_of_tolerance"
            );
        }
    }

    #[test]
    fn missing_duplicate_and_malformed_headers() {
        let v = verifier(&[SECRET]);
        let e = v
            .verify(&HeaderMap::new(), BODY.as_bytes(), TS)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
        let good = format!("t={TS},v1={SIG}");
        let h = headers([
            ("Stripe-Signature", good.as_str()),
            ("Stripe-Signature", good.as_str()),
        ]);
        let e = v.verify(&h, BODY.as_bytes(), TS).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (400, "duplicate_header"));
        for bad in [
            String::new(),
            format!("v1={SIG}"),
            format!("t={TS}"),
            format!("t={TS},t={TS},v1={SIG}"),
            format!("t=abc,v1={SIG}"),
            format!("t={TS};v1={SIG}"),
            format!("t={TS},v1=zz"),
            format!(
                "t={TS},{}",
                vec![format!("v1={SIG}"); MAX_SIGNATURES + 1].join(",")
            ),
        ] {
            let e = v.verify(&header(&bad), BODY.as_bytes(), TS).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_signed_body_without_id_or_type_is_malformed() {
        let body = br#"{"type":"x"}"#;
        let sig = super::super::mac_hex(SECRET.as_bytes(), &[b"1700000000.", body]);
        let e = verifier(&[SECRET])
            .verify(&header(&format!("t={TS},v1={sig}")), body, TS)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (400, "malformed_body"));
        assert!(e.message.contains("`id`"), "{}", e.message);
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let out = Outgoing {
            event_id: None,
            event_type: Some("customer.created"),
            timestamp: TS,
            body: br#"{"object":"event","data":{}}"#,
        };
        let signed = sign(SECRET, &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = verifier(&[SECRET]).verify(&h, &signed.body, TS).unwrap();
        assert_eq!(got.event_type, "customer.created");
        assert!(got.event_id.starts_with("evt_"));
        // A body that already has an id and type is signed byte for byte as it is.
        let out = Outgoing {
            event_id: None,
            event_type: None,
            timestamp: TS,
            body: BODY.as_bytes(),
        };
        let signed = sign(SECRET, &out).unwrap();
        assert_eq!(signed.body, BODY.as_bytes());
        assert!(signed.headers[1].1.ends_with(SIG));
    }
}
