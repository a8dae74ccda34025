//! `[llm.providers.NAME]`: the model providers the `llm` tool may call, with the API
//! keys the host holds for them (never handed to a plugin). Only validated here; the
//! tool that calls them is `tools::llm`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, Secret, validate_name};

/// Seconds an `llm` call waits for the provider's answer at most (and never past the
/// plugin's own deadline).
pub const DEFAULT_LLM_TIMEOUT_SECS: u64 = 120;

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmKind {
    /// OpenAI chat completions (`POST {base_url}/chat/completions`), also spoken by
    /// most compatible servers.
    Openai,
    /// Anthropic messages (`POST {base_url}/messages`).
    Anthropic,
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct LlmProvider {
    pub kind: LlmKind,
    /// The API root, without a trailing slash (`https://api.openai.com/v1`).
    pub base_url: String,
    pub api_key: Secret,
    pub timeout_secs: u64,
}

/// `[llm]`.
#[derive(Debug, Clone, Default)]
pub struct LlmConfig {
    pub providers: BTreeMap<String, LlmProvider>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLlm {
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: LlmKind,
    base_url: Option<String>,
    api_key: String,
    timeout_secs: Option<u64>,
}

impl RawLlm {
    pub(super) fn resolve(&self) -> Result<LlmConfig, ConfigError> {
        let mut providers = BTreeMap::new();
        for (name, raw) in &self.providers {
            let field = |f: &str| format!("llm.providers.{name}.{f}");
            validate_name(name)
                .map_err(|m| ConfigError::invalid(format!("llm.providers.{name}"), m))?;
            let base_url = raw
                .base_url
                .clone()
                .unwrap_or_else(|| {
                    match raw.kind {
                        LlmKind::Openai => "https://api.openai.com/v1",
                        LlmKind::Anthropic => "https://api.anthropic.com/v1",
                    }
                    .to_string()
                })
                .trim_end_matches('/')
                .to_string();
            let uri: http::Uri = base_url.parse().map_err(|e| {
                ConfigError::invalid(field("base_url"), format!("`{base_url}`: {e}"))
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ConfigError::invalid(
                    field("base_url"),
                    format!("`{base_url}` is not an http:// or https:// URL"),
                ));
            }
            let api_key = Secret::resolve(&raw.api_key, &field("api_key"))?;
            if api_key.expose().is_empty() || http::HeaderValue::from_str(api_key.expose()).is_err()
            {
                return Err(ConfigError::invalid(
                    field("api_key"),
                    "the key is empty or not valid in an HTTP header",
                ));
            }
            let timeout_secs = raw.timeout_secs.unwrap_or(DEFAULT_LLM_TIMEOUT_SECS);
            if !(1..=3600).contains(&timeout_secs) {
                return Err(ConfigError::invalid(
                    field("timeout_secs"),
                    format!("must be between 1 and 3600, got {timeout_secs}"),
                ));
            }
            providers.insert(
                name.clone(),
                LlmProvider {
                    kind: raw.kind,
                    base_url,
                    api_key,
                    timeout_secs,
                },
            );
        }
        Ok(LlmConfig { providers })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;

    #[test]
    fn providers_parse_with_defaults_and_bad_ones_name_the_field() {
        let c = parse(
            "[llm.providers.openai]\nkind = \"openai\"\napi_key = \"sk-literal\"\n\n[llm.providers.local]\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:9/v1/\"\napi_key = \"k\"\ntimeout_secs = 5\n",
        )
        .unwrap();
        let p = &c.llm.providers["openai"];
        assert_eq!(
            (p.kind, p.base_url.as_str(), p.timeout_secs),
            (LlmKind::Openai, "https://api.openai.com/v1", 120)
        );
        let l = &c.llm.providers["local"];
        assert_eq!(
            (l.kind, l.base_url.as_str()),
            (LlmKind::Anthropic, "http://127.0.0.1:9/v1")
        );
        for (text, field) in [
            (
                "[llm.providers.x]\nkind = \"gemini\"\napi_key = \"k\"\n",
                "gemini",
            ),
            (
                "[llm.providers.x]\nkind = \"openai\"\nbase_url = \"ftp://h\"\napi_key = \"k\"\n",
                "llm.providers.x.base_url",
            ),
            (
                "[llm.providers.x]\nkind = \"openai\"\napi_key = \"env:AGENTHOOK_TEST_SURELY_UNSET_KEY\"\n",
                "llm.providers.x.api_key",
            ),
            (
                "[llm.providers.x]\nkind = \"openai\"\napi_key = \"k\"\ntimeout_secs = 0\n",
                "llm.providers.x.timeout_secs",
            ),
            (
                "[llm.providers.Bad]\nkind = \"openai\"\napi_key = \"k\"\n",
                "llm.providers.Bad",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
