//! Header hygiene: which headers of a verified request are stored, shown by the admin
//! API and handed to plugins. Credentials and the scheme's own signature headers are
//! dropped by default — verification has used them, and nothing after it should hold
//! them; a source may keep some of them anyway (`keep_headers`) or drop more
//! (`drop_headers`).

use std::collections::HashSet;

use http::HeaderMap;

use crate::config::{ConfigError, SourceConfig};

/// Headers that carry a credential, dropped from every source's events by default.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
];

/// Name endings that mark a credential (`x-gitlab-token`, `x-amz-security-token`,
/// `x-acme-api-key`, `x-client-secret`), likewise dropped by default.
pub const CREDENTIAL_SUFFIXES: &[&str] = &["-token", "-api-key", "-apikey", "-secret", "-password"];

/// Whether a (lower-case) header name carries a credential by the lists above.
pub fn is_credential(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name) || CREDENTIAL_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// One source's rule for the headers it keeps, built once from its config.
#[derive(Debug, Clone)]
pub struct HeaderFilter {
    /// The scheme's signature headers and `drop_headers`.
    drop: HashSet<String>,
    /// `keep_headers`: each one is dropped by default (else it would be a no-op).
    keep: HashSet<String>,
}

impl HeaderFilter {
    /// `signature_headers`: the headers the source's scheme reads its signature from.
    /// A `keep_headers` entry that would be kept anyway is a config error (a typo
    /// would otherwise silently keep nothing).
    pub fn new(
        source: &SourceConfig,
        signature_headers: Vec<String>,
    ) -> Result<HeaderFilter, ConfigError> {
        let signatures: HashSet<String> = signature_headers
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for (i, name) in source.keep_headers.iter().enumerate() {
            if !signatures.contains(name) && !is_credential(name) {
                return Err(ConfigError::invalid(
                    format!("sources.{}.keep_headers[{i}]", source.name),
                    format!(
                        "`{name}` is kept anyway: only credentials and the scheme's signature headers ({}) are dropped by default",
                        sorted(&signatures).join(", ")
                    ),
                ));
            }
        }
        let mut drop = signatures;
        drop.extend(source.drop_headers.iter().cloned());
        Ok(HeaderFilter {
            drop,
            keep: source.keep_headers.iter().cloned().collect(),
        })
    }

    /// Whether a header (its name lower-case, as `http` gives it) is left out.
    pub fn drops(&self, name: &str) -> bool {
        !self.keep.contains(name) && (self.drop.contains(name) || is_credential(name))
    }

    /// The headers kept, in the order received, values as text.
    pub fn kept(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .filter(|(name, _)| !self.drops(name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect()
    }
}

fn sorted(names: &HashSet<String>) -> Vec<&str> {
    let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::HeaderValue;

    use super::*;
    use crate::config::Config;

    fn source(extra: &str) -> SourceConfig {
        let text = format!("[sources.a]\nscheme = \"github\"\nsecrets = [\"s\"]\n{extra}");
        let mut config = Config::parse(&text, Path::new("t.toml"), false).unwrap();
        config.sources.remove("a").unwrap()
    }

    fn request() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("authorization", "Bearer s3cret"),
            ("cookie", "session=abc"),
            ("x-api-key", "k"),
            ("x-gitlab-token", "t"),
            ("x-hub-signature-256", "sha256=00"),
            ("x-github-event", "issues"),
            ("x-trace", "1"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        h
    }

    fn names(kept: Vec<(String, String)>) -> Vec<String> {
        kept.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn credentials_and_signatures_are_dropped_by_default() {
        let f = HeaderFilter::new(&source(""), vec!["X-Hub-Signature-256".into()]).unwrap();
        assert_eq!(
            names(f.kept(&request())),
            ["content-type", "x-github-event", "x-trace"]
        );
    }

    #[test]
    fn keep_and_drop_lists_apply() {
        let f = HeaderFilter::new(
            &source("keep_headers = [\"X-Hub-Signature-256\", \"x-gitlab-token\"]\ndrop_headers = [\"X-Trace\"]\n"),
            vec!["x-hub-signature-256".into()],
        )
        .unwrap();
        assert_eq!(
            names(f.kept(&request())),
            [
                "content-type",
                "x-gitlab-token",
                "x-hub-signature-256",
                "x-github-event"
            ]
        );
    }

    #[test]
    fn keeping_a_header_that_is_never_dropped_is_a_config_error() {
        let e = HeaderFilter::new(
            &source("keep_headers = [\"cookie\", \"x-hub-signature256\"]\n"),
            vec!["x-hub-signature-256".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sources.a.keep_headers[1]"), "{e}");
        assert!(
            e.contains("x-hub-signature-256"),
            "names what is dropped: {e}"
        );
    }
}
