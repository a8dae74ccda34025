//! Shared secrets presented as they are (tokens, passwords), for the senders that
//! cannot sign: compared in constant time against every configured value, and where a
//! token-authenticated request keeps its event id and type.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{Rejection, SignError, Verified};
use crate::config::{ConfigError, Locator, SourceConfig};

/// The event type of a token-authenticated request that says nowhere what it is.
pub const DEFAULT_TYPE: &str = "webhook";

/// A set of accepted secrets (several during a rotation). Only their SHA-256 digests
/// are compared, all of them every time, so neither the length nor the position of a
/// match leaks through timing.
pub struct Credentials(Vec<[u8; 32]>);

impl Credentials {
    pub fn new(values: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Credentials {
        Credentials(
            values
                .into_iter()
                .map(|v| Sha256::digest(v.as_ref()).into())
                .collect(),
        )
    }

    /// Whether `presented` is one of the secrets.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(&digest))
            .into()
    }
}

/// Every secret of a source must be usable as a token: not empty, visible ASCII.
pub fn check_secrets(source: &SourceConfig, what: &str) -> Result<(), ConfigError> {
    for (i, secret) in source.secrets.iter().enumerate() {
        let s = secret.expose();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                format!("sources.{}.secrets[{i}]", source.name),
                format!("{what} must be visible ASCII without spaces, and not empty"),
            ));
        }
    }
    Ok(())
}

/// The credential after `Authorization: <scheme> `. Missing is 401; another scheme or
/// a malformed value is 400.
pub fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Result<&'a str, Rejection> {
    let value = super::required_header(headers, "authorization", true)?;
    value
        .split_once(' ')
        .filter(|(s, rest)| s.eq_ignore_ascii_case(scheme) && !rest.trim().is_empty())
        .map(|(_, rest)| rest.trim())
        .ok_or_else(|| {
            Rejection::bad_request(
                "malformed_header",
                format!("Authorization is not `{scheme} <credentials>`"),
            )
        })
}

/// Where a token-authenticated sender puts its id and type (`id_*`/`type_*`).
pub struct Locate {
    id: Option<Locator>,
    event_type: Option<Locator>,
}

impl Locate {
    pub fn new(source: &SourceConfig) -> Result<Locate, ConfigError> {
        let field = format!("sources.{}", source.name);
        let check = |l: &Option<Locator>, what: &str| match l {
            Some(Locator::Header(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                Err(ConfigError::invalid(
                    format!("{field}.{what}_header"),
                    format!("`{h}` is not a header name"),
                ))
            }
            Some(Locator::Pointer(p)) if !p.starts_with('/') => Err(ConfigError::invalid(
                format!("{field}.{what}_pointer"),
                format!("`{p}` is not a JSON pointer (like /data/id)"),
            )),
            _ => Ok(()),
        };
        check(&source.standard.id, "id")?;
        check(&source.standard.event_type, "type")?;
        Ok(Locate {
            id: source.standard.id.clone(),
            event_type: source.standard.event_type.clone(),
        })
    }

    /// The id (default: a hash of the body) and type (default: `webhook`).
    pub fn find(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let doc = super::json(body);
        let get = |l: &Locator, what: &str| match l {
            Locator::Header(h) => super::header_label(headers, h),
            Locator::Pointer(p) => super::json_label(doc.as_ref(), p, &format!("{what} at {p}")),
        };
        Ok(Verified {
            event_id: match &self.id {
                Some(l) => get(l, "event id")?,
                None => super::body_hash_id(body),
            },
            event_type: match &self.event_type {
                Some(l) => get(l, "event type")?,
                None => DEFAULT_TYPE.to_string(),
            },
        })
    }

    /// The headers the simulator sends an id and type in, where the source reads them
    /// from headers: the id given or a fresh one; the type given, else an error.
    pub fn headers_for(
        &self,
        id: Option<&str>,
        event_type: Option<&str>,
    ) -> Result<Vec<(String, String)>, SignError> {
        let mut out = Vec::new();
        if let Some(Locator::Header(h)) = &self.id {
            out.push((
                h.clone(),
                id.map_or_else(|| super::fresh_id(""), str::to_string),
            ));
        }
        if let Some(Locator::Header(h)) = &self.event_type {
            let t = event_type.ok_or_else(|| {
                SignError::Payload(format!("this source reads the type from {h}: pass --type"))
            })?;
            out.push((h.clone(), t.to_string()));
        }
        Ok(out)
    }

    /// The JSON pointers the simulator writes an id or type into.
    pub fn body_edits<'a>(
        &'a self,
        id: Option<&'a str>,
        event_type: Option<&'a str>,
    ) -> Vec<(&'a str, Option<&'a str>)> {
        let mut out = Vec::new();
        if let Some(Locator::Pointer(p)) = &self.id {
            out.push((p.as_str(), id));
        }
        if let Some(Locator::Pointer(p)) = &self.event_type {
            out.push((p.as_str(), event_type));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_configured_value_and_nothing_else() {
        let c = Credentials::new(["old-token", "new-token"]);
        assert!(c.matches(b"old-token"));
        assert!(c.matches(b"new-token"));
        for bad in [
            &b""[..],
            b"new-toke",
            b"new-tokenx",
            b"NEW-TOKEN",
            b"old-token ",
        ] {
            assert!(!c.matches(bad), "{bad:?}");
        }
    }
}
