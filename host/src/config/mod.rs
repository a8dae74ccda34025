//! The operator's configuration: the host's TOML file and each plugin's manifest.
//!
//! Everything is parsed and validated here, before any port binds or any plugin runs, so
//! a mistake is reported once, naming the field, and nothing starts half-way. One file
//! per TOML table, each resolving its own table; a source's secrets and schemas are then
//! compiled once by `ingress::Verifiers::build` in `Host::prepare`, still before any port
//! binds. Secret values (`env:VAR`, `file:PATH`, or literal) are resolved here too; no
//! other module reads the environment or secret files. Those a plugin manifest names
//! resolve only where `[plugins]` allows (`PluginsConfig::resolve`).

mod email;
mod llm;
pub mod manifest;
mod plugins;
mod secret;
mod server;
mod sources;
mod standards;
mod store;
mod telemetry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use email::{DEFAULT_EMAILS_PER_HOUR, EmailConfig, EmitConfig, SmtpTls};
pub use llm::{DEFAULT_LLM_TIMEOUT_SECS, LlmConfig, LlmKind, LlmProvider};
pub use plugins::PluginsConfig;
pub use secret::Secret;
pub use server::{
    DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_TOKEN, DEFAULT_DATA_DIR, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_PLUGINS_DIR, MAX_BODY_BYTES_LIMIT, ServerConfig,
};
pub use sources::{
    DEFAULT_TOLERANCE_SECS, HmacConfig, Locator, SchemaRule, Scheme, SignatureEncoding,
    SourceConfig,
};
pub use standards::{CloudEventsAuth, JWT_ALGORITHMS, JwtSettings, StandardSettings};
pub use store::{NatsConfig, StoreBackend, StoreConfig, parse_duration_ms};
pub use telemetry::{OtlpProtocol, TelemetryConfig};

/// A configuration that could not be loaded. Each variant says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {field}: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The host configuration, validated and with every secret resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// Webhook sources by name; each is served at `POST /hooks/{name}`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// The admin bearer token. `None` means "generate one and keep it in the data dir"
    /// (only when the operator did not configure one explicitly).
    pub admin_token: Option<Secret>,
    /// True when no config file was given and the embedded defaults are in use.
    pub embedded_default: bool,
    pub store: StoreConfig,
    /// `[email]`: the SMTP server the email tool sends through; `None` when absent.
    pub email: Option<EmailConfig>,
    /// `[emit]`: limits on events that plugins emit.
    pub emit: EmitConfig,
    /// `[telemetry]`: where traces are exported, if anywhere.
    pub telemetry: TelemetryConfig,
    /// `[plugins]`: the host secrets (`env:`, `file:`) plugin manifests may name.
    pub plugins: PluginsConfig,
    /// `[llm]`: the model providers the `llm` tool may call.
    pub llm: LlmConfig,
}

/// The whole file as written; each table resolves itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: server::RawServer,
    #[serde(default)]
    sources: BTreeMap<String, sources::RawSource>,
    #[serde(default)]
    store: store::RawStore,
    email: Option<email::RawEmail>,
    #[serde(default)]
    emit: email::RawEmit,
    #[serde(default)]
    telemetry: telemetry::RawTelemetry,
    #[serde(default)]
    plugins: plugins::RawPlugins,
    #[serde(default)]
    llm: llm::RawLlm,
}

/// The config used when `serve` is started without `--config`: loopback only, one
/// `demo` source for trying the example plugin. Its secret is public (it is in the
/// README), so the defaults must never be exposed beyond loopback.
pub const EMBEDDED_DEFAULT: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"
data_dir = "agenthook-data"
plugins_dir = "plugins.d"

[sources.demo]
scheme = "standard-webhooks"
secrets = ["whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXRyaWFscy1vbmx5"]
"#;

impl Config {
    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, false)
    }

    /// The embedded defaults (`serve` with no `--config`).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, Path::new("<embedded default>"), true)
    }

    /// Parse and validate config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path, embedded_default: bool) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        // The tables resolve in this order (fields below included), so a config with
        // several mistakes always reports the same one first.
        let server = raw.server.resolve()?;
        let admin_token = raw.server.admin_token()?;
        let sources = raw
            .sources
            .iter()
            .map(|(name, source)| Ok((name.clone(), source.resolve(name)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Config {
            server,
            sources,
            admin_token,
            embedded_default,
            store: raw.store.resolve()?,
            email: raw
                .email
                .as_ref()
                .map(email::RawEmail::resolve)
                .transpose()?,
            emit: raw.emit.resolve()?,
            telemetry: raw.telemetry.resolve()?,
            plugins: raw.plugins.resolve()?,
            llm: raw.llm.resolve()?,
        })
    }
}

/// Source and plugin names appear in URLs, file names and keys: keep them plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1-64 lower-case letters, digits, `-` or `_`, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse config text as a file would be; the tests of every table use it.
    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), false)
    }

    #[test]
    fn embedded_default_is_valid_and_loopback_only() {
        let c = Config::embedded_default().unwrap();
        assert!(c.server.listen.ip().is_loopback());
        assert!(c.server.admin_listen.ip().is_loopback());
        assert_eq!(c.server.max_body_bytes, 1024 * 1024);
        assert!(c.sources.contains_key("demo"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 1\n").unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = parse(
            "[sources.a]\nscheme = \"standard-webhooks\"\nsecrets = [\"x\"]\nsecret = \"y\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("secret"), "{e}");
    }
}
