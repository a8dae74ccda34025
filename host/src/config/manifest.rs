//! A plugin's manifest (`plugins.d/NAME.toml`): what it subscribes to, its limits, its
//! retry policy, the capabilities it is granted, and its config values.
//!
//! Deny by default: a grant that is absent is off, and a grant this host does not know
//! is an error naming the field, so an operator never believes they granted (or
//! withheld) something the host ignores.

use std::collections::BTreeMap;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use super::{ConfigError, Secret};

/// The upper bound an operator may give `limits.memory_mb`; the instance pool reserves
/// address space for this much per instance.
pub const MAX_MEMORY_MB: u64 = 1024;
pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
pub const MAX_CONCURRENCY: u32 = 256;
pub const MAX_ATTEMPTS: u32 = 100;

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub subscribe: Vec<Subscription>,
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub grants: Grants,
    /// Resolved config values; the plugin reads them with `config.get`.
    pub config: BTreeMap<String, Secret>,
}

/// One `[[subscribe]]` entry.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub source: String,
    /// `None` subscribes to every type of the source.
    pub types: Option<Vec<(String, GlobMatcher)>>,
}

impl Subscription {
    pub fn matches(&self, source: &str, event_type: &str) -> bool {
        self.source == source
            && self
                .types
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|(_, g)| g.is_match(event_type)))
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u64,
    /// Wall-clock deadline of one attempt; CPU time in the guest is held to the same.
    pub timeout_ms: u64,
    pub max_concurrency: u32,
}

/// `[retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

/// `[grants]`: each capability the plugin may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub kv: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    subscribe: Vec<RawSubscription>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    source: String,
    types: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
    max_concurrency: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    kv: Option<bool>,
    // Tools that this host version does not provide yet. They are recognised so that
    // the error says so, instead of "unknown field".
    http: Option<toml::Value>,
    email: Option<toml::Value>,
    emit: Option<toml::Value>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 64,
            timeout_ms: 5000,
            max_concurrency: 4,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff_ms: 1000,
            max_backoff_ms: 3_600_000,
        }
    }
}

impl Manifest {
    /// Parse and validate manifest text. Errors name the field, e.g.
    /// `limits.memory_mb: must be between 1 and 1024`.
    pub fn parse(text: &str) -> Result<Manifest, ConfigError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "manifest".into(),
            message: e.to_string(),
        })?;

        let mut subscribe = Vec::with_capacity(raw.subscribe.len());
        for (i, s) in raw.subscribe.into_iter().enumerate() {
            let field = format!("subscribe[{i}]");
            super::validate_name(&s.source)
                .map_err(|m| ConfigError::invalid(format!("{field}.source"), m))?;
            let types = match s.types {
                None => None,
                Some(patterns) => {
                    if patterns.is_empty() {
                        return Err(ConfigError::invalid(
                            format!("{field}.types"),
                            "an empty list matches nothing; omit `types` to subscribe to every type",
                        ));
                    }
                    let mut globs = Vec::with_capacity(patterns.len());
                    for p in patterns {
                        let g = Glob::new(&p).map_err(|e| {
                            ConfigError::invalid(
                                format!("{field}.types"),
                                format!("bad glob `{p}`: {e}"),
                            )
                        })?;
                        globs.push((p, g.compile_matcher()));
                    }
                    Some(globs)
                }
            };
            subscribe.push(Subscription {
                source: s.source,
                types,
            });
        }

        let d = Limits::default();
        let limits = Limits {
            memory_mb: in_range(
                raw.limits.memory_mb.unwrap_or(d.memory_mb),
                1,
                MAX_MEMORY_MB,
                "limits.memory_mb",
            )?,
            timeout_ms: in_range(
                raw.limits.timeout_ms.unwrap_or(d.timeout_ms),
                1,
                MAX_TIMEOUT_MS,
                "limits.timeout_ms",
            )?,
            max_concurrency: in_range(
                raw.limits
                    .max_concurrency
                    .unwrap_or(d.max_concurrency)
                    .into(),
                1,
                MAX_CONCURRENCY.into(),
                "limits.max_concurrency",
            )? as u32,
        };

        let d = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: in_range(
                raw.retry.max_attempts.unwrap_or(d.max_attempts).into(),
                1,
                MAX_ATTEMPTS.into(),
                "retry.max_attempts",
            )? as u32,
            initial_backoff_ms: in_range(
                raw.retry.initial_backoff_ms.unwrap_or(d.initial_backoff_ms),
                1,
                24 * 3_600_000,
                "retry.initial_backoff_ms",
            )?,
            max_backoff_ms: in_range(
                raw.retry.max_backoff_ms.unwrap_or(d.max_backoff_ms),
                1,
                7 * 24 * 3_600_000,
                "retry.max_backoff_ms",
            )?,
        };
        if retry.max_backoff_ms < retry.initial_backoff_ms {
            return Err(ConfigError::invalid(
                "retry.max_backoff_ms",
                format!(
                    "must be at least retry.initial_backoff_ms ({})",
                    retry.initial_backoff_ms
                ),
            ));
        }

        for (name, present) in [
            ("http", raw.grants.http.is_some()),
            ("email", raw.grants.email.is_some()),
            ("emit", raw.grants.emit.is_some()),
        ] {
            if present {
                return Err(ConfigError::invalid(
                    format!("grants.{name}"),
                    format!("this host has no `{name}` tool yet (it provides kv, config and log)"),
                ));
            }
        }
        let grants = Grants {
            kv: raw.grants.kv.unwrap_or(false),
        };

        let mut config = BTreeMap::new();
        for (key, value) in raw.config {
            let field = format!("config.{key}");
            let resolved = if value.starts_with("env:") || value.starts_with("file:") {
                Secret::resolve(&value, &field)?
            } else {
                Secret::new(value)
            };
            config.insert(key, resolved);
        }

        Ok(Manifest {
            subscribe,
            limits,
            retry,
            grants,
            config,
        })
    }

    pub fn subscribes_to(&self, source: &str, event_type: &str) -> bool {
        self.subscribe.iter().any(|s| s.matches(source, event_type))
    }
}

fn in_range(v: u64, min: u64, max: u64, field: &str) -> Result<u64, ConfigError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::invalid(
            field,
            format!("must be between {min} and {max}, got {v}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_without_future_tools_parses() {
        let m = Manifest::parse(
            r#"
[[subscribe]]
source = "stripe"
types = ["payment_intent.*"]

[limits]
memory_mb = 64
timeout_ms = 5000
max_concurrency = 4

[retry]
max_attempts = 8
initial_backoff_ms = 1000
max_backoff_ms = 3600000

[grants]
kv = true

[config]
target_url = "http://127.0.0.1:8000/sink"
"#,
        )
        .unwrap();
        assert!(m.subscribes_to("stripe", "payment_intent.succeeded"));
        assert!(!m.subscribes_to("stripe", "charge.refunded"));
        assert!(!m.subscribes_to("github", "payment_intent.succeeded"));
        assert!(m.grants.kv);
        assert_eq!(
            m.config["target_url"].expose(),
            "http://127.0.0.1:8000/sink"
        );
    }

    #[test]
    fn defaults_deny_everything_and_subscribe_to_nothing() {
        let m = Manifest::parse("").unwrap();
        assert!(!m.grants.kv);
        assert!(!m.subscribes_to("demo", "x"));
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.retry, RetryPolicy::default());
    }

    #[test]
    fn omitted_types_match_every_type() {
        let m = Manifest::parse("[[subscribe]]\nsource = \"demo\"\n").unwrap();
        assert!(m.subscribes_to("demo", "anything.at_all"));
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("[limits]\nmemory_mb = 0\n", "limits.memory_mb"),
            ("[limits]\nmemory_mb = 999999\n", "limits.memory_mb"),
            ("[limits]\nmax_concurrency = 0\n", "limits.max_concurrency"),
            (
                "[retry]\ninitial_backoff_ms = 500\nmax_backoff_ms = 10\n",
                "retry.max_backoff_ms",
            ),
            ("[grants]\nfilesystem = true\n", "filesystem"),
            ("[grants]\nhttp = [\"https://x\"]\n", "grants.http"),
            (
                "[[subscribe]]\nsource = \"demo\"\ntypes = [\"a[\"]\n",
                "subscribe[0].types",
            ),
            (
                "[[subscribe]]\nsource = \"demo\"\ntypes = []\n",
                "subscribe[0].types",
            ),
            ("[config]\nk = \"env:AGENTHOOK_TEST_NOPE_1\"\n", "config.k"),
            ("[limitz]\n", "limitz"),
        ] {
            let e = Manifest::parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?} gave {e}");
        }
    }
}
