//! The settings of the second wave of source schemes (`bearer`, `basic`,
//! `cloudevents`, `twilio`, `a2a`, …), each used by one or two schemes only: where a
//! token-authenticated sender puts its id and type, the CloudEvents handshake, Twilio's
//! public URL, and A2A's JWT checks. Validated here; used by `ingress`.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use super::sources::{Locator, Scheme};

/// How a CloudEvents source authenticates its sender (`auth = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloudEventsAuth {
    /// `Authorization: Bearer <one of secrets>` (the default).
    Bearer,
    /// `Authorization: Basic` with one of the `user:password` secrets.
    Basic,
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) over the body; secrets are `whsec_`/`whpk_` keys.
    StandardWebhooks,
}

/// Settings beyond the ones every scheme shares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StandardSettings {
    /// `bearer`/`basic`: where the event id is (`id_header`/`id_pointer`); none = a
    /// hash of the body.
    pub id: Option<Locator>,
    /// `bearer`/`basic`: where the event type is; none = `webhook`.
    pub event_type: Option<Locator>,
    /// `cloudevents`: how the sender authenticates.
    pub auth: Option<CloudEventsAuth>,
    /// `cloudevents`: the origins (`WebHook-Request-Origin`) whose abuse-protection
    /// handshake is answered; empty = none.
    pub allowed_origins: Vec<String>,
    /// `cloudevents`: the `WebHook-Allowed-Rate` answered (requests a minute).
    pub allowed_rate: Option<u32>,
    /// `twilio`: the scheme and authority Twilio is configured to call
    /// (`https://hooks.example.com`); the request's path and query are appended.
    pub public_url: Option<String>,
    /// `a2a`: when set, every notification must carry a JWT signed by a key of this JWKS.
    pub jwt: Option<JwtSettings>,
}

/// `a2a`: how the sending agent's JWT is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// The JSON Web Key Set (`jwks = "file:PATH"`), as read.
    pub jwks: serde_json::Value,
    /// Accepted `alg` values (`jwt_algorithms`, default `["RS256", "ES256", "EdDSA"]`).
    pub algorithms: Vec<String>,
    /// The required `aud` (`jwt_audience`), if any.
    pub audience: Option<String>,
}

/// The raw keys of these settings, as written in `[sources.NAME]`.
#[derive(Debug, Default)]
pub(super) struct RawStandard {
    pub(super) auth: Option<CloudEventsAuth>,
    pub(super) allowed_origins: Option<Vec<String>>,
    pub(super) allowed_rate: Option<u32>,
    pub(super) public_url: Option<String>,
    pub(super) jwks: Option<String>,
    pub(super) jwt_algorithms: Option<Vec<String>>,
    pub(super) jwt_audience: Option<String>,
}

/// The JWT algorithms `a2a` can verify.
pub const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl RawStandard {
    /// Validate the settings for `scheme`; a setting the scheme does not use is an
    /// error naming it. `id`/`event_type` come from the shared `id_*`/`type_*` keys.
    pub(super) fn resolve(
        &self,
        field: &str,
        scheme: Scheme,
        id: Option<Locator>,
        event_type: Option<Locator>,
    ) -> Result<StandardSettings, ConfigError> {
        let only = |key: &str, set: bool, schemes: &[Scheme]| {
            if set && !schemes.contains(&scheme) {
                let names: Vec<String> = schemes
                    .iter()
                    .map(|s| format!("\"{}\"", s.as_str()))
                    .collect();
                return Err(ConfigError::invalid(
                    format!("{field}.{key}"),
                    format!(
                        "only scheme = {} uses this setting, not \"{}\"",
                        names.join(" or "),
                        scheme.as_str()
                    ),
                ));
            }
            Ok(())
        };
        only("auth", self.auth.is_some(), &[Scheme::Cloudevents])?;
        only(
            "allowed_origins",
            self.allowed_origins.is_some(),
            &[Scheme::Cloudevents],
        )?;
        only(
            "allowed_rate",
            self.allowed_rate.is_some(),
            &[Scheme::Cloudevents],
        )?;
        only("public_url", self.public_url.is_some(), &[Scheme::Twilio])?;
        only("jwks", self.jwks.is_some(), &[Scheme::A2a])?;
        only(
            "jwt_algorithms",
            self.jwt_algorithms.is_some(),
            &[Scheme::A2a],
        )?;
        only("jwt_audience", self.jwt_audience.is_some(), &[Scheme::A2a])?;

        let allowed_origins = self.allowed_origins.clone().unwrap_or_default();
        for (i, origin) in allowed_origins.iter().enumerate() {
            let ok = !origin.is_empty()
                && origin.len() <= 253
                && origin
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:*".contains(&b));
            if !ok {
                return Err(ConfigError::invalid(
                    format!("{field}.allowed_origins[{i}]"),
                    format!(
                        "`{origin}` is not a host name (like eventgrid.azure.net) or `*` for any"
                    ),
                ));
            }
        }
        if self.allowed_rate == Some(0) {
            return Err(ConfigError::invalid(
                format!("{field}.allowed_rate"),
                "must be at least 1 (requests a minute)",
            ));
        }
        if scheme == Scheme::Twilio {
            let Some(url) = &self.public_url else {
                return Err(ConfigError::invalid(
                    format!("{field}.public_url"),
                    "scheme = \"twilio\" needs the URL Twilio calls, without the path (like https://hooks.example.com): Twilio signs the full URL",
                ));
            };
            let uri: http::Uri = url.parse().map_err(|_| {
                ConfigError::invalid(
                    format!("{field}.public_url"),
                    format!("`{url}` is not a URL"),
                )
            })?;
            let bare = uri.path() == "/" && !url.ends_with('/') && uri.query().is_none();
            if !matches!(uri.scheme_str(), Some("http" | "https"))
                || uri.authority().is_none()
                || !bare
            {
                return Err(ConfigError::invalid(
                    format!("{field}.public_url"),
                    format!(
                        "`{url}` must be http(s)://HOST[:PORT] with no path: the request's path and query are appended"
                    ),
                ));
            }
        }
        let jwt = match &self.jwks {
            None => {
                if scheme == Scheme::A2a && self.jwt_audience.is_some() {
                    // Caught above only for other schemes.
                    return Err(ConfigError::invalid(
                        format!("{field}.jwt_audience"),
                        "has no effect without jwks",
                    ));
                }
                None
            }
            Some(spec) => Some(self.jwt(field, spec)?),
        };
        Ok(StandardSettings {
            id,
            event_type,
            auth: self.auth,
            allowed_origins,
            allowed_rate: self.allowed_rate,
            public_url: self.public_url.clone(),
            jwt,
        })
    }

    fn jwt(&self, field: &str, spec: &str) -> Result<JwtSettings, ConfigError> {
        let key = format!("{field}.jwks");
        let Some(path) = spec.strip_prefix("file:") else {
            return Err(ConfigError::invalid(
                &key,
                format!("`{spec}` is not `file:PATH` (a JSON Web Key Set file)"),
            ));
        };
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| ConfigError::invalid(&key, format!("cannot read {path}: {e}")))?;
        let jwks: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ConfigError::invalid(&key, format!("{path} is not JSON: {e}")))?;
        let algorithms = match &self.jwt_algorithms {
            None => vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            Some(list) if list.is_empty() => {
                return Err(ConfigError::invalid(
                    format!("{field}.jwt_algorithms"),
                    "name at least one algorithm",
                ));
            }
            Some(list) => {
                if let Some((i, alg)) = list
                    .iter()
                    .enumerate()
                    .find(|(_, a)| !JWT_ALGORITHMS.contains(&a.as_str()))
                {
                    return Err(ConfigError::invalid(
                        format!("{field}.jwt_algorithms[{i}]"),
                        format!(
                            "`{alg}` is not an asymmetric JWT algorithm this host verifies ({})",
                            JWT_ALGORITHMS.join(", ")
                        ),
                    ));
                }
                list.clone()
            }
        };
        Ok(JwtSettings {
            jwks,
            algorithms,
            audience: self.jwt_audience.clone(),
        })
    }
}
