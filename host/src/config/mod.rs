//! The operator's configuration: the host's TOML file and each plugin's manifest.
//!
//! Everything is parsed and fully validated here, before any port binds or any plugin
//! runs, so a mistake is reported once, naming the field, and nothing starts half-way.
//! Secret values (`env:VAR`, `file:PATH`, or literal) are resolved here too; no other
//! module reads the environment or secret files.

pub mod manifest;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub max_body_bytes: usize,
}

/// `[sources.NAME]`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub scheme: Scheme,
    /// Every secret is accepted, so a sender's secret can be rotated without downtime.
    pub secrets: Vec<Secret>,
    /// How far a signed timestamp may be from now, in either direction.
    pub tolerance_secs: u64,
}

/// A signature scheme, as named in `scheme = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Standard Webhooks (also Svix and OpenAI): `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`.
    StandardWebhooks,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// A resolved secret value. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Resolve `env:VAR`, `file:PATH` or a literal value. `field` names the setting in
    /// the error message.
    pub fn resolve(spec: &str, field: &str) -> Result<Secret, ConfigError> {
        if let Some(var) = spec.strip_prefix("env:") {
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(ConfigError::invalid(
                    field,
                    format!("environment variable {var} is empty"),
                )),
                Err(_) => Err(ConfigError::invalid(
                    field,
                    format!("environment variable {var} is not set"),
                )),
            }
        } else if let Some(path) = spec.strip_prefix("file:") {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(field, format!("cannot read secret file {path}: {e}"))
            })?;
            let value = text.trim_end_matches(['\r', '\n']).to_string();
            if value.is_empty() {
                return Err(ConfigError::invalid(
                    field,
                    format!("secret file {path} is empty"),
                ));
            }
            Ok(Secret(value))
        } else if spec.is_empty() {
            Err(ConfigError::invalid(field, "secret is empty"))
        } else {
            Ok(Secret(spec.to_string()))
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

// ---- the file format -------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    max_body_bytes: Option<u64>,
    admin_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    scheme: String,
    secrets: Vec<String>,
    tolerance_secs: Option<u64>,
}

/// The defaults of DESIGN.md.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "agenthook-data";
pub const DEFAULT_PLUGINS_DIR: &str = "plugins.d";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_ADMIN_TOKEN: &str = "env:AGENTHOOK_ADMIN_TOKEN";
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// The largest body an operator may allow: webhooks are small, and the body is held in
/// memory while it is verified.
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

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
        let server = &raw.server;
        let listen = parse_addr(
            server.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
            "server.listen",
        )?;
        let admin_listen = parse_addr(
            server
                .admin_listen
                .as_deref()
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
            "server.admin_listen",
        )?;
        if listen.port() != 0 && listen == admin_listen {
            return Err(ConfigError::invalid(
                "server.admin_listen",
                format!(
                    "must differ from server.listen ({listen}): the admin API never shares the ingress port"
                ),
            ));
        }
        let max_body_bytes = server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                format!("must be between 1 and {MAX_BODY_BYTES_LIMIT}, got {max_body_bytes}"),
            ));
        }
        // An explicitly configured token must resolve; the default one may be absent,
        // and the host then generates a token and keeps it in the data dir.
        let admin_token = match &server.admin_token {
            Some(spec) => Some(Secret::resolve(spec, "server.admin_token")?),
            None => Secret::resolve(DEFAULT_ADMIN_TOKEN, "server.admin_token").ok(),
        };

        let mut sources = BTreeMap::new();
        for (name, src) in &raw.sources {
            let field = format!("sources.{name}");
            validate_name(name).map_err(|m| ConfigError::invalid(&field, m))?;
            let scheme: Scheme = Scheme::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(&src.scheme))
            .map_err(|_| {
                ConfigError::invalid(
                    format!("{field}.scheme"),
                    format!(
                        "unknown scheme `{}` (supported: standard-webhooks)",
                        src.scheme
                    ),
                )
            })?;
            if src.secrets.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{field}.secrets"),
                    "at least one secret is required",
                ));
            }
            let secrets = src
                .secrets
                .iter()
                .enumerate()
                .map(|(i, s)| Secret::resolve(s, &format!("{field}.secrets[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let source = SourceConfig {
                name: name.clone(),
                scheme,
                secrets,
                tolerance_secs: src.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS),
            };
            crate::ingress::validate_source(&source)?;
            sources.insert(name.clone(), source);
        }

        Ok(Config {
            server: ServerConfig {
                listen,
                admin_listen,
                data_dir: server
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
                plugins_dir: server
                    .plugins_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS_DIR)),
                max_body_bytes: max_body_bytes as usize,
            },
            sources,
            admin_token,
            embedded_default,
        })
    }
}

fn parse_addr(s: &str, field: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::invalid(field, format!("`{s}` is not an IP:port address")))
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
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

    #[test]
    fn unknown_scheme_names_the_field() {
        let e = parse("[sources.a]\nscheme = \"paypal\"\nsecrets = [\"x\"]\n").unwrap_err();
        assert!(e.to_string().contains("sources.a.scheme"), "{e}");
        assert!(e.to_string().contains("paypal"), "{e}");
    }

    #[test]
    fn secrets_resolve_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "whsec_ZmlsZS1zZWNyZXQ=\n").unwrap();
        let text = format!(
            "[sources.a]\nscheme = \"standard-webhooks\"\nsecrets = [\"file:{}\", \"env:AGENTHOOK_TEST_UNSET_VAR_9\"]\n",
            file.display()
        );
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains("sources.a.secrets[1]"), "{e}");
        assert!(e.to_string().contains("AGENTHOOK_TEST_UNSET_VAR_9"), "{e}");
        let text = format!(
            "[sources.a]\nscheme = \"standard-webhooks\"\nsecrets = [\"file:{}\"]\n",
            file.display()
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.sources["a"].secrets[0].expose(), "whsec_ZmlsZS1zZWNyZXQ=");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn admin_must_not_share_ingress_port() {
        let e = parse("[server]\nlisten = \"127.0.0.1:8000\"\nadmin_listen = \"127.0.0.1:8000\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("server.admin_listen"), "{e}");
    }

    #[test]
    fn bad_names_and_limits_are_refused() {
        assert!(parse("[sources.\"Bad/Name\"]\nscheme = \"standard-webhooks\"\nsecrets = [\"whsec_eA==\"]\n").is_err());
        let e = parse("[server]\nmax_body_bytes = 0\n").unwrap_err();
        assert!(e.to_string().contains("max_body_bytes"), "{e}");
    }
}
