//! A2A push notifications (A2A 1.0; 0.3 bodies too): an agent POSTs a task's status
//! and artifact updates to the webhook a client registered with the task's push
//! notification config. The sender proves itself with the config's `token`, sent as
//! `X-A2A-Notification-Token` and compared in constant time with the source's
//! secrets; where `jwks` is configured it must also send `Authorization: Bearer <JWT>`
//! signed by a key of that set: the `kid` must name a key, `alg` must be on
//! `jwt_algorithms` (and the key's own `alg`, if it has one), `aud` must be
//! `jwt_audience` when set, `exp` must be in the future and `iat` within
//! `tolerance_secs` of now (the replay window); a `request_body_sha256` claim, as the
//! A2A samples send, must match the body.
//!
//! The 1.0 body is a `StreamResponse`: `{"statusUpdate": …}` → `a2a.task.status-update`,
//! `{"artifactUpdate": …}` → `a2a.task.artifact-update`, `{"task": …}` → `a2a.task`,
//! `{"message": …}` → `a2a.message` (0.3's bare objects with `kind` map the same way).
//! The event id names the task and the update: `TASK/status/STATE@TIMESTAMP`,
//! `TASK/artifact/ARTIFACT@HASH`, `TASK/task/STATE@TIMESTAMP`, `message/ID`.
//! <https://a2a-protocol.org/latest/specification/#push-notifications>

use std::collections::HashMap;

use http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::credentials::{self, Credentials};
use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, JwtSettings, SourceConfig};

pub const TOKEN: &str = "x-a2a-notification-token";
pub const SIGNATURE_HEADERS: &[&str] = &[TOKEN, "authorization"];

struct Key {
    key: DecodingKey,
    /// The key's own `alg`, if the JWKS names one.
    alg: Option<String>,
}

struct Jwt {
    keys: HashMap<String, Key>,
    algorithms: Vec<Algorithm>,
    audience: Option<String>,
}

pub struct Verifier {
    tokens: Credentials,
    jwt: Option<Jwt>,
    tolerance_secs: u64,
}

impl Jwt {
    fn new(field: &str, settings: &JwtSettings) -> Result<Jwt, ConfigError> {
        let key_field = format!("{field}.jwks");
        let set: JwkSet = serde_json::from_value(settings.jwks.clone()).map_err(|e| {
            ConfigError::invalid(&key_field, format!("not a JSON Web Key Set: {e}"))
        })?;
        if set.keys.is_empty() {
            return Err(ConfigError::invalid(&key_field, "the key set has no keys"));
        }
        let mut keys = HashMap::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let at =
                |m: &str| ConfigError::invalid(format!("{key_field} keys[{i}]"), m.to_string());
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| at("a key needs a `kid`"))?;
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return Err(at(
                    "a symmetric (`oct`) key cannot verify another party's signature; give public keys",
                ));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| at(&format!("unusable key: {e}")))?;
            let alg = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
            if keys.insert(kid.clone(), Key { key, alg }).is_some() {
                return Err(at(&format!("`kid` {kid} appears twice")));
            }
        }
        let algorithms = settings
            .algorithms
            .iter()
            .map(|a| a.parse::<Algorithm>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                ConfigError::invalid(format!("{field}.jwt_algorithms"), "unknown algorithm")
            })?;
        Ok(Jwt {
            keys,
            algorithms,
            audience: settings.audience.clone(),
        })
    }

    fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
        tolerance_secs: u64,
    ) -> Result<(), Rejection> {
        let token = credentials::authorization(headers, "Bearer")?;
        let bad = |reason: &'static str, message: &str| {
            Rejection::unauthorized(reason, message.to_string())
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Rejection::bad_request("malformed_header", "the bearer token is not a JWT")
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(bad(
                "algorithm_not_allowed",
                "the JWT's alg is not in jwt_algorithms",
            ));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| bad("unknown_key", "the JWT names no kid"))?;
        let key = self.keys.get(kid).ok_or_else(|| {
            bad(
                "unknown_key",
                "the JWT's kid names no key of the configured jwks",
            )
        })?;
        if key
            .alg
            .as_deref()
            .is_some_and(|a| a != format!("{:?}", header.alg))
        {
            return Err(bad(
                "algorithm_not_allowed",
                "the JWT's alg is not its key's alg",
            ));
        }
        let mut validation = Validation::new(header.alg);
        // Time is checked below against the host's clock (so it can be pinned).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "iat", "aud"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iat"]);
            }
        }
        let claims = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidAudience => {
                        bad("audience_mismatch", "the JWT's aud is not jwt_audience")
                    }
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                        bad("audience_mismatch", "the JWT has no aud")
                    }
                    ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                        bad("malformed_token", "the JWT lacks a numeric exp or iat")
                    }
                    ErrorKind::InvalidSignature => {
                        Rejection::signature_mismatch("Authorization JWT")
                    }
                    _ => bad("malformed_token", "the JWT cannot be verified with its key"),
                }
            })?
            .claims;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let (Some(exp), Some(iat)) = (number("exp"), number("iat")) else {
            return Err(bad("malformed_token", "the JWT lacks a numeric exp or iat"));
        };
        if exp <= now_secs {
            return Err(bad("token_expired", "the JWT's exp has passed"));
        }
        if number("nbf").is_some_and(|nbf| nbf > now_secs) {
            return Err(bad("token_expired", "the JWT's nbf is in the future"));
        }
        super::check_tolerance(iat, now_secs, tolerance_secs, "the JWT's iat")?;
        if let Some(claimed) = claims.get("request_body_sha256") {
            let actual = hex::encode(Sha256::digest(body));
            if claimed.as_str() != Some(actual.as_str()) {
                return Err(Rejection::signature_mismatch(
                    "the JWT's request_body_sha256",
                ));
            }
        }
        Ok(())
    }
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        credentials::check_secrets(source, "a notification token")?;
        let field = format!("sources.{}", source.name);
        Ok(Verifier {
            tokens: Credentials::new(source.secrets.iter().map(|s| s.expose().as_bytes())),
            jwt: source
                .standard
                .jwt
                .as_ref()
                .map(|j| Jwt::new(&field, j))
                .transpose()?,
            tolerance_secs: source.tolerance_secs,
        })
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Verified, Rejection> {
        let token = super::required_header(headers, TOKEN, true)?;
        if !self.tokens.matches(token.as_bytes()) {
            return Err(Rejection::unauthorized(
                "signature_mismatch",
                "X-A2A-Notification-Token matches no configured secret",
            ));
        }
        if let Some(jwt) = &self.jwt {
            jwt.check(headers, body, now_secs, self.tolerance_secs)?;
        }
        identify(body)
    }
}

/// The event id and type of a notification body.
fn identify(body: &[u8]) -> Result<Verified, Rejection> {
    let doc = super::json(body).filter(Value::is_object).ok_or_else(|| {
        Rejection::bad_request("malformed_body", "an A2A notification is a JSON object")
    })?;
    let malformed = |m: &str| Rejection::bad_request("malformed_body", m.to_string());
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let hash = || hex::encode(&Sha256::digest(body)[..8]);
    // 1.0 wraps the update in one field; 0.3 sends it bare with `kind`.
    let (kind, update) = if let Some(u) = doc.get("statusUpdate") {
        ("status-update", u)
    } else if let Some(u) = doc.get("artifactUpdate") {
        ("artifact-update", u)
    } else if let Some(u) = doc.get("task") {
        ("task", u)
    } else if let Some(u) = doc.get("message") {
        ("message", u)
    } else {
        match doc.get("kind").and_then(Value::as_str) {
            Some(k @ ("status-update" | "artifact-update" | "task" | "message")) => (k, &doc),
            _ => {
                return Err(malformed(
                    "the body is no A2A StreamResponse (statusUpdate, artifactUpdate, task or message)",
                ));
            }
        }
    };
    let task = || {
        text(update, "/taskId")
            .or_else(|| {
                if kind == "task" {
                    text(update, "/id")
                } else {
                    None
                }
            })
            .ok_or_else(|| malformed("the update names no task (taskId)"))
    };
    let state_at = |status: &str| {
        let state = text(update, &format!("{status}/state")).unwrap_or_else(|| "unknown".into());
        let at = text(update, &format!("{status}/timestamp")).unwrap_or_else(hash);
        format!("{state}@{at}")
    };
    let (event_type, event_id) = match kind {
        "status-update" => (
            "a2a.task.status-update",
            format!("{}/status/{}", task()?, state_at("/status")),
        ),
        "artifact-update" => {
            let artifact = text(update, "/artifact/artifactId").unwrap_or_default();
            (
                "a2a.task.artifact-update",
                format!("{}/artifact/{artifact}@{}", task()?, hash()),
            )
        }
        "task" => (
            "a2a.task",
            format!("{}/task/{}", task()?, state_at("/status")),
        ),
        _ => {
            let id = text(update, "/messageId")
                .ok_or_else(|| malformed("the message has no messageId"))?;
            ("a2a.message", format!("message/{id}"))
        }
    };
    Ok(Verified {
        event_id: super::label(&event_id, "the task and update", "malformed_body")?,
        event_type: event_type.to_string(),
    })
}

/// Send as an A2A agent: the notification token (`secret`) in
/// `X-A2A-Notification-Token`. (A JWT needs the agent's private key: the simulator
/// sends none, so a source with `jwks` refuses what it sends.)
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    if out.event_id.is_some() || out.event_type.is_some() {
        return Err(SignError::Payload(
            "an A2A notification's id and type come from its body (statusUpdate, artifactUpdate, task or message); drop --id/--type".into(),
        ));
    }
    Ok(Signed {
        headers: vec![
            ("Content-Type".into(), "application/a2a+json".into()),
            ("X-A2A-Notification-Token".into(), secret.to_string()),
        ],
        body: out.body.to_vec(),
    })
}

#[cfg(test)]
mod tests;
