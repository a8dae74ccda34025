//! HTTP Basic authentication, for senders that cannot sign but can put a user and
//! password in the URL or their settings (Grafana, many internal tools):
//! `Authorization: Basic base64(user:password)`, where `user:password` is one of the
//! source's secrets (several during a rotation), compared in constant time. Like a
//! bearer token it proves the sender, not the body: use it over TLS. The id and type
//! are where `id_*`/`type_*` say (default: a hash of the body, `webhook`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::credentials::{self, Credentials, Locate};
use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

pub const SIGNATURE_HEADERS: &[&str] = &["authorization"];

pub struct Verifier {
    pairs: Credentials,
    locate: Locate,
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        for (i, secret) in source.secrets.iter().enumerate() {
            let ok = secret
                .expose()
                .split_once(':')
                .is_some_and(|(user, password)| !user.is_empty() && !password.is_empty());
            if !ok {
                return Err(ConfigError::invalid(
                    format!("sources.{}.secrets[{i}]", source.name),
                    "a basic-auth secret is `user:password`, neither empty",
                ));
            }
        }
        Ok(Verifier {
            pairs: Credentials::new(source.secrets.iter().map(|s| s.expose().as_bytes())),
            locate: Locate::new(source)?,
        })
    }

    /// Only the user and password: CloudEvents uses it before reading the event.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let encoded = credentials::authorization(headers, "Basic")?;
        let pair = STANDARD.decode(encoded).map_err(|_| {
            Rejection::bad_request(
                "malformed_header",
                "Authorization is not `Basic <base64 of user:password>`",
            )
        })?;
        if !self.pairs.matches(&pair) {
            return Err(Rejection::unauthorized(
                "signature_mismatch",
                "the Authorization basic credentials match no configured secret",
            ));
        }
        Ok(())
    }

    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        self.authenticate(headers)?;
        self.locate.find(headers, body)
    }
}

/// The `Authorization` header a basic-auth sender sends for `user:password`.
pub fn authorization(pair: &str) -> (String, String) {
    (
        "Authorization".into(),
        format!("Basic {}", STANDARD.encode(pair)),
    )
}

/// Send as a basic-auth sender.
pub fn sign(source: &SourceConfig, pair: &str, out: &Outgoing) -> Result<Signed, SignError> {
    if !pair.contains(':') {
        return Err(SignError::Secret {
            scheme: "basic",
            message: "give the secret as user:password".into(),
        });
    }
    super::bearer::with_credential(source, authorization(pair), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Locator, Scheme, Secret};
    use crate::ingress::testdata::{headers, vector};

    fn verifier(pairs: &[&str]) -> Verifier {
        let mut s = SourceConfig::new(
            "grafana",
            Scheme::Basic,
            pairs.iter().map(|s| Secret::new(*s)).collect(),
        );
        s.standard.id = Some(Locator::Pointer("/groupKey".into()));
        s.standard.event_type = Some(Locator::Pointer("/status".into()));
        Verifier::new(&s).unwrap()
    }

    #[test]
    fn published_vector_verifies() {
        // RFC 7617's own example: Aladdin / open sesame.
        let v = vector("basic", "RFC 7617");
        let got = verifier(&[&v.secret])
            .verify(&v.headers(), v.body.as_bytes())
            .unwrap();
        assert_eq!(got.event_type, "firing");
    }

    #[test]
    fn rotation_and_wrong_credentials() {
        let v = vector("basic", "RFC 7617");
        let body = v.body.as_bytes();
        assert!(
            verifier(&["a:b", &v.secret])
                .verify(&v.headers(), body)
                .is_ok()
        );
        let e = verifier(&["a:b"]).verify(&v.headers(), body).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "signature_mismatch"));
        let good = verifier(&[&v.secret]);
        let wrong = format!("Basic {}", STANDARD.encode("Aladdin:open sesamE"));
        for (value, status, reason) in [
            (wrong.as_str(), 401, "signature_mismatch"),
            ("Basic !!!", 400, "malformed_header"),
            (
                "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
                400,
                "malformed_header",
            ),
        ] {
            let e = good
                .verify(&headers([("Authorization", value)]), body)
                .unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (status, reason), "{value}");
        }
        let e = good.verify(&HeaderMap::new(), body).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
    }

    #[test]
    fn secrets_must_be_user_colon_password() {
        for bad in ["nocolon", ":p", "u:"] {
            let s = SourceConfig::new("g", Scheme::Basic, vec![Secret::new(bad)]);
            let e = Verifier::new(&s).err().unwrap().to_string();
            assert!(e.contains("sources.g.secrets[0]"), "{e}");
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let s = SourceConfig::new("g", Scheme::Basic, vec![Secret::new("u:p w")]);
        let out = Outgoing {
            event_id: None,
            event_type: None,
            timestamp: 1,
            body: b"{}",
        };
        let signed = sign(&s, "u:p w", &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(Verifier::new(&s).unwrap().verify(&h, &signed.body).is_ok());
        assert!(sign(&s, "nocolon", &out).is_err());
    }
}
