//! Bearer tokens, for senders that cannot sign (Prometheus Alertmanager, Grafana, many
//! internal tools): `Authorization: Bearer <token>`, where the token is one of the
//! source's secrets (several during a rotation), compared in constant time. The token
//! proves who sent the request, not that the body is unchanged: use it over TLS. The id
//! and type are where `id_*`/`type_*` say (default: a hash of the body, `webhook`).

use http::HeaderMap;

use super::credentials::{self, Credentials, Locate};
use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

/// `Authorization` is dropped with every credential header anyway.
pub const SIGNATURE_HEADERS: &[&str] = &["authorization"];

pub struct Verifier {
    tokens: Credentials,
    locate: Locate,
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        credentials::check_secrets(source, "a bearer token")?;
        Ok(Verifier {
            tokens: Credentials::new(source.secrets.iter().map(|s| s.expose().as_bytes())),
            locate: Locate::new(source)?,
        })
    }

    /// Only the token: CloudEvents uses it before reading the event itself.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let token = credentials::authorization(headers, "Bearer")?;
        if !self.tokens.matches(token.as_bytes()) {
            return Err(Rejection::unauthorized(
                "signature_mismatch",
                "the Authorization bearer token matches no configured secret",
            ));
        }
        Ok(())
    }

    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        self.authenticate(headers)?;
        self.locate.find(headers, body)
    }

    pub fn locate(&self) -> &Locate {
        &self.locate
    }
}

/// The `Authorization` header a bearer sender sends.
pub fn authorization(token: &str) -> (String, String) {
    ("Authorization".into(), format!("Bearer {token}"))
}

/// Send as a bearer-token sender: the token, and `--id`/`--type` where the source
/// reads them.
pub fn sign(source: &SourceConfig, token: &str, out: &Outgoing) -> Result<Signed, SignError> {
    with_credential(source, authorization(token), out)
}

/// A request carrying `credential` (an `Authorization` header), with the event's id and
/// type where the source reads them (shared with `basic`).
pub(super) fn with_credential(
    source: &SourceConfig,
    credential: (String, String),
    out: &Outgoing,
) -> Result<Signed, SignError> {
    let locate = Locate::new(source).map_err(|e| SignError::Payload(e.to_string()))?;
    let mut headers = vec![credential];
    headers.extend(locate.headers_for(out.event_id, out.event_type)?);
    Ok(Signed {
        headers,
        body: super::edit_json(out.body, &locate.body_edits(out.event_id, out.event_type))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Locator, Scheme, Secret};
    use crate::ingress::testdata::{headers, vector};

    fn verifier(tokens: &[&str]) -> Verifier {
        let mut s = SourceConfig::new(
            "alerts",
            Scheme::Bearer,
            tokens.iter().map(|s| Secret::new(*s)).collect(),
        );
        s.standard.id = Some(Locator::Pointer("/groupKey".into()));
        s.standard.event_type = Some(Locator::Pointer("/status".into()));
        Verifier::new(&s).unwrap()
    }

    #[test]
    fn published_vector_verifies() {
        let v = vector("bearer", "Alertmanager");
        let got = verifier(&[&v.secret])
            .verify(&v.headers(), v.body.as_bytes())
            .unwrap();
        assert_eq!(got.event_type, "firing");
        assert_eq!(got.event_id, "{}:{alertname=\"HighLatency\"}");
    }

    #[test]
    fn rotation_and_wrong_tokens() {
        let v = vector("bearer", "Alertmanager");
        let body = v.body.as_bytes();
        assert!(
            verifier(&["older", &v.secret])
                .verify(&v.headers(), body)
                .is_ok()
        );
        let e = verifier(&["older"]).verify(&v.headers(), body).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "signature_mismatch"));
        assert!(!e.message.contains("older"));
        let good = verifier(&[&v.secret]);
        for (value, status, reason) in [
            (format!("Bearer {}x", v.secret), 401, "signature_mismatch"),
            (format!("Basic {}", v.secret), 400, "malformed_header"),
            ("Bearer".to_string(), 400, "malformed_header"),
            ("Bearer ".to_string(), 400, "malformed_header"),
        ] {
            let e = good
                .verify(&headers([("Authorization", value.as_str())]), body)
                .unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (status, reason), "{value}");
        }
        let e = good.verify(&HeaderMap::new(), body).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
        let mut twice = v.headers();
        twice.append("authorization", "Bearer x".parse().unwrap());
        assert_eq!(
            good.verify(&twice, body).unwrap_err().reason,
            "duplicate_header"
        );
    }

    #[test]
    fn defaults_are_a_body_hash_and_webhook() {
        let s = SourceConfig::new("t", Scheme::Bearer, vec![Secret::new("tok")]);
        let v = Verifier::new(&s).unwrap();
        let got = v
            .verify(&headers([("Authorization", "bearer tok")]), b"{}")
            .unwrap();
        assert_eq!(got.event_type, "webhook");
        assert!(got.event_id.starts_with("sha256:"));
    }

    #[test]
    fn bad_tokens_are_config_errors() {
        for bad in ["", "has space"] {
            let s = SourceConfig::new("t", Scheme::Bearer, vec![Secret::new(bad)]);
            let e = Verifier::new(&s).err().unwrap().to_string();
            assert!(e.contains("sources.t.secrets[0]"), "{e}");
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let out = Outgoing {
            event_id: Some("g-1"),
            event_type: Some("resolved"),
            timestamp: 1,
            body: br#"{"status":"firing"}"#,
        };
        let mut s = SourceConfig::new("alerts", Scheme::Bearer, vec![Secret::new("tok")]);
        s.standard.id = Some(Locator::Pointer("/groupKey".into()));
        s.standard.event_type = Some(Locator::Pointer("/status".into()));
        let signed = sign(&s, "tok", &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let got = verifier(&["tok"]).verify(&h, &signed.body).unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("g-1", "resolved")
        );
    }
}
