//! Twilio: `X-Twilio-Signature: <base64>`, the base64 HMAC-SHA1 keyed with the
//! account's auth token (primary and secondary: several secrets) of the full URL Twilio
//! called followed by each form field's name and value, sorted by name (then value).
//! A JSON body is signed instead through a `bodySHA256` query parameter (the hex
//! SHA-256 of the body) and the URL alone. The form body is stored as received;
//! plugins read its fields through the SDK's form accessor.
//!
//! Twilio signs the public URL, which the host cannot see behind a proxy: the source's
//! `public_url` (scheme and authority) is joined with the request's path and query. As
//! Twilio's own validator does, the URL is tried with and without the default port.
//! The id is `I-Twilio-Idempotency-Token` (the same on Twilio's retries), else a hash
//! of the body; the type is `message.<MessageStatus|SmsStatus>`,
//! `call.<CallStatus>`, or `twilio`.
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, Uri};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "x-twilio-signature";
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE];
const IDEMPOTENCY: &str = "i-twilio-idempotency-token";
const SHA1_LEN: usize = 20;

type HmacSha1 = Hmac<Sha1>;

pub struct Verifier {
    tokens: Vec<Vec<u8>>,
    /// `public_url` with and without its scheme's default port.
    bases: Vec<String>,
}

/// `base` as configured, and its twin with the scheme's default port added or
/// removed (a base with another port has no twin).
fn bases(base: &str) -> Vec<String> {
    let default = if base.starts_with("https://") {
        443
    } else {
        80
    };
    let port = base.parse::<Uri>().ok().and_then(|u| u.port_u16());
    match port {
        None => vec![base.to_string(), format!("{base}:{default}")],
        Some(p) if p == default => vec![
            base.to_string(),
            base.trim_end_matches(&format!(":{default}")).to_string(),
        ],
        Some(_) => vec![base.to_string()],
    }
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let base = source.standard.public_url.as_deref().ok_or_else(|| {
            ConfigError::invalid(
                format!("sources.{}.public_url", source.name),
                "scheme = \"twilio\" needs the URL Twilio calls (like https://hooks.example.com)",
            )
        })?;
        Ok(Verifier {
            tokens: super::raw_keys(source),
            bases: bases(base),
        })
    }

    pub fn verify(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Verified, Rejection> {
        let value = super::required_header(headers, SIGNATURE, true)?;
        let sig = STANDARD
            .decode(value.trim())
            .ok()
            .filter(|s| s.len() == SHA1_LEN)
            .ok_or_else(|| {
                Rejection::bad_request(
                    "malformed_header",
                    "X-Twilio-Signature is not a base64 HMAC-SHA1",
                )
            })?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let body_hash = uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "bodySHA256")
                .map(|(_, v)| v.into_owned())
        });
        let params = match &body_hash {
            // A JSON body: the URL carries its hash, and only the URL is signed.
            Some(_) => Vec::new(),
            None => sorted_params(body),
        };
        let matched = self.bases.iter().any(|base| {
            let url = format!("{base}{target}");
            self.tokens
                .iter()
                .any(|token| mac(token, &url, &params).verify_slice(&sig).is_ok())
        });
        if !matched {
            return Err(super::Rejection::signature_mismatch("X-Twilio-Signature"));
        }
        if let Some(expected) = body_hash {
            let actual = hex::encode(Sha256::digest(body));
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                actual.as_bytes(),
                expected.to_ascii_lowercase().as_bytes(),
            )) {
                return Err(Rejection::unauthorized(
                    "signature_mismatch",
                    "the body's SHA-256 is not the signed bodySHA256",
                ));
            }
        }
        let field = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let event_type = if let Some(s) = field("MessageStatus").or(field("SmsStatus")) {
            format!("message.{s}")
        } else if let Some(s) = field("CallStatus") {
            format!("call.{s}")
        } else {
            "twilio".to_string()
        };
        Ok(Verified {
            event_id: match super::optional_header(headers, IDEMPOTENCY)? {
                Some(token) => {
                    super::label(token, "I-Twilio-Idempotency-Token", "malformed_header")?
                }
                None => super::body_hash_id(body),
            },
            event_type: super::label(&event_type, "the status field", "malformed_body")?,
        })
    }
}

/// The form fields, sorted by name and then value, a repeated (name, value) once —
/// the order Twilio's validators sign them in.
fn sorted_params(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params.dedup();
    params
}

fn mac(token: &[u8], url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(token)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(url.as_bytes());
    for (k, v) in params {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The signature Twilio sends for `url` and a form `body`.
pub fn signature(token: &str, url: &str, body: &[u8]) -> String {
    STANDARD.encode(
        mac(token.as_bytes(), url, &sorted_params(body))
            .finalize()
            .into_bytes(),
    )
}

/// Send as Twilio: to `public_url` + `/hooks/<source>`, a form body (a text message's
/// or call's fields) signed with the auth token; `--id` is the idempotency token.
pub fn sign(source: &SourceConfig, token: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let base = source.standard.public_url.as_deref().ok_or_else(|| {
        SignError::Payload("twilio signs the URL it calls: give the source a public_url".into())
    })?;
    if std::str::from_utf8(out.body).is_err() || super::json(out.body).is_some() {
        return Err(SignError::Payload(
            "twilio sends form-encoded fields (like MessageSid=SM1&Body=hi)".into(),
        ));
    }
    let url = format!("{base}/hooks/{}", source.name);
    let id = out
        .event_id
        .map_or_else(|| super::fresh_id(""), str::to_string);
    Ok(Signed {
        headers: vec![
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("User-Agent".into(), "TwilioProxy/1.1".into()),
            ("I-Twilio-Idempotency-Token".into(), id),
            (
                "X-Twilio-Signature".into(),
                signature(token, &url, out.body),
            ),
        ],
        body: out.body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{base64_positions, flip_base64, headers, vector};

    fn verifier(tokens: &[&str], base: &str) -> Verifier {
        let mut s = SourceConfig::new(
            "twilio",
            Scheme::Twilio,
            tokens.iter().map(|s| Secret::new(*s)).collect(),
        );
        s.standard.public_url = Some(base.into());
        Verifier::new(&s).unwrap()
    }

    /// Twilio's documented example (also in twilio-python's tests):
    /// https://mycompany.com/myapp.php?foo=1&bar=2 with auth token 12345.
    fn documented() -> (Verifier, Uri, crate::ingress::testdata::Vector) {
        let v = vector("twilio", "Twilio docs");
        let url: Uri = v.url.clone().unwrap().parse().unwrap();
        let base = format!(
            "{}://{}",
            url.scheme_str().unwrap(),
            url.authority().unwrap()
        );
        (verifier(&[&v.secret], &base), url, v)
    }

    #[test]
    fn documented_vector_verifies() {
        let (verifier, url, v) = documented();
        let got = verifier
            .verify(&url, &v.headers(), v.body.as_bytes())
            .unwrap();
        assert_eq!(got.event_type, "twilio");
        assert!(got.event_id.starts_with("sha256:"));
        assert_eq!(
            signature(&v.secret, &url.to_string(), v.body.as_bytes()),
            v.header("X-Twilio-Signature")
        );
    }

    #[test]
    fn field_order_does_not_matter_but_every_byte_does() {
        let (verifier, url, v) = documented();
        let mut fields: Vec<&str> = v.body.split('&').collect();
        fields.reverse();
        let reordered = fields.join("&");
        assert!(
            verifier
                .verify(&url, &v.headers(), reordered.as_bytes())
                .is_ok()
        );
        for i in 0..v.body.len() {
            let mut body = v.body.as_bytes().to_vec();
            if body[i] == b'&' || body[i] == b'=' {
                continue;
            }
            body[i] ^= 1;
            let e = verifier.verify(&url, &v.headers(), &body).unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "byte {i}");
        }
        let sig = v.header("X-Twilio-Signature");
        for i in base64_positions(&sig) {
            let h = headers([("X-Twilio-Signature", flip_base64(&sig, i).as_str())]);
            assert_eq!(
                verifier
                    .verify(&url, &h, v.body.as_bytes())
                    .unwrap_err()
                    .reason,
                "signature_mismatch"
            );
        }
        for other in [
            "/myapp.php?foo=1&bar=3",
            "/myapp.php",
            "/other.php?foo=1&bar=2",
        ] {
            let e = verifier
                .verify(&other.parse().unwrap(), &v.headers(), v.body.as_bytes())
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "{other}");
        }
    }

    #[test]
    fn default_port_rotation_and_malformed_headers() {
        let v = vector("twilio", "Twilio docs");
        let url: Uri = "/myapp.php?foo=1&bar=2".parse().unwrap();
        let with_port = verifier(&[&v.secret], "https://mycompany.com:443");
        assert!(
            with_port
                .verify(&url, &v.headers(), v.body.as_bytes())
                .is_ok()
        );
        let rotated = verifier(&["secondary", &v.secret], "https://mycompany.com");
        assert!(
            rotated
                .verify(&url, &v.headers(), v.body.as_bytes())
                .is_ok()
        );
        let wrong = verifier(&["secondary"], "https://mycompany.com");
        assert_eq!(
            wrong
                .verify(&url, &v.headers(), v.body.as_bytes())
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
        let e = rotated
            .verify(&url, &HeaderMap::new(), v.body.as_bytes())
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
        let e = rotated
            .verify(
                &url,
                &headers([("X-Twilio-Signature", "c2hvcnQ=")]),
                v.body.as_bytes(),
            )
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (400, "malformed_header"));
    }

    #[test]
    fn json_bodies_are_signed_through_body_sha256() {
        let body = br#"{"ParticipantSid":"MP1"}"#;
        let hash = hex::encode(Sha256::digest(body));
        let path = format!("/hooks/twilio?bodySHA256={hash}");
        let url = format!("https://example.com{path}");
        let sig = STANDARD.encode(mac(b"tok", &url, &[]).finalize().into_bytes());
        let v = verifier(&["tok"], "https://example.com");
        let h = headers([("X-Twilio-Signature", sig.as_str())]);
        assert!(v.verify(&path.parse().unwrap(), &h, body).is_ok());
        let e = v
            .verify(&path.parse().unwrap(), &h, br#"{"ParticipantSid":"MP2"}"#)
            .unwrap_err();
        assert_eq!(e.reason, "signature_mismatch");
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let mut s = SourceConfig::new("sms", Scheme::Twilio, vec![Secret::new("tok")]);
        s.standard.public_url = Some("https://hooks.example.com".into());
        let out = Outgoing {
            event_id: Some("idem-1"),
            event_type: None,
            timestamp: 1,
            body: b"MessageSid=SM1&SmsStatus=received&Body=hello+there&From=%2B15005550006",
        };
        let signed = sign(&s, "tok", &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = Verifier::new(&s)
            .unwrap()
            .verify(&"/hooks/sms".parse().unwrap(), &h, &signed.body)
            .unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("idem-1", "message.received")
        );
        assert!(sign(&s, "tok", &Outgoing { body: b"{}", ..out }).is_err());
    }
}
