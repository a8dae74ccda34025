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
    pub store: StoreConfig,
    /// `[email]`: the SMTP server the email tool sends through; `None` when absent.
    pub email: Option<EmailConfig>,
    /// `[emit]`: limits on events that plugins emit.
    pub emit: EmitConfig,
    /// `[telemetry]`: where traces are exported, if anywhere.
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`: OTLP trace export (needs a build with the `otlp` feature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans are POSTed
    /// to `{endpoint}/v1/traces`. `None`: no export.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// The OTLP/HTTP encoding (`[telemetry] otlp_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// `[email]`: where `email.send` delivers, and the per-plugin cap.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The SMTP server's host name or address.
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The `From:` of every message (`Agents <agents@example.com>`).
    pub from: String,
    /// SMTP AUTH, both or neither.
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// Messages one plugin may send in any hour.
    pub max_per_hour: u32,
}

/// How the SMTP connection is protected (`[email] tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; only allowed to a loopback server.
    None,
    /// `smtp://`, upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (`smtps://`, usually port 465).
    Tls,
}

/// `[emit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitConfig {
    /// Plugin-to-plugin hops an event chain may take; an emit past it is refused and the
    /// emitting delivery is dead-lettered with the chain in the reason.
    pub max_chain_depth: u32,
}

impl Default for EmitConfig {
    fn default() -> Self {
        EmitConfig { max_chain_depth: 8 }
    }
}

pub const DEFAULT_EMAILS_PER_HOUR: u32 = 100;

/// `[store]`: how long things are kept, and when ingress pushes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// A sender's retry of the same (source, event id) within this window is
    /// acknowledged and not stored again.
    pub dedup_window_ms: u64,
    /// Events whose every delivery is done are removed after this long.
    pub done_retention_ms: u64,
    /// Dead letters are kept this long for inspection and replay.
    pub dead_retention_ms: u64,
    /// Ingress answers 503 for an event whose subscriber already has this many
    /// deliveries waiting.
    pub max_queue_per_plugin: u64,
    /// Ingress answers 503 when the data dir's file system has less free space.
    pub min_free_disk_bytes: u64,
    /// Most writes one commit carries; 1 turns group commit off (for comparison only).
    pub max_batch: usize,
    /// redb's page cache, in bytes: most of the host's memory under load.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dedup_window_ms: 7 * DAY_MS,
            done_retention_ms: 7 * DAY_MS,
            dead_retention_ms: 30 * DAY_MS,
            max_queue_per_plugin: 100_000,
            min_free_disk_bytes: 256 << 20,
            max_batch: 1024,
            // redb's own default is 1 GiB, which a busy host fills: its RSS then
            // approaches 1 GiB. Hot pages (tree tops, the tail of the events table)
            // fit in far less, and the OS page cache holds the rest.
            cache_bytes: 128 << 20,
        }
    }
}

const DAY_MS: u64 = 86_400_000;

/// A duration like `90s`, `15m`, `12h` or `7d`, in milliseconds.
pub fn parse_duration_ms(text: &str, field: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError::invalid(
            field,
            format!("`{text}` is not a duration like 90s, 15m, 12h or 7d"),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).filter(|ms| *ms > 0).ok_or_else(bad)
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
    /// How far a signed timestamp may be from now, in either direction. Only schemes
    /// that sign a timestamp use it.
    pub tolerance_secs: u64,
    /// `hmac-sha256` only: where the generic sender puts its signature, id and type.
    pub hmac: Option<HmacConfig>,
    /// JSON Schemas an event's body must satisfy, checked in this order.
    pub schemas: Vec<SchemaRule>,
}

impl SourceConfig {
    /// A source with the defaults: no schema, default tolerance, and for
    /// `hmac-sha256` the default settings of [`HmacConfig::new`].
    pub fn new(name: impl Into<String>, scheme: Scheme, secrets: Vec<Secret>) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            scheme,
            secrets,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            hmac: (scheme == Scheme::HmacSha256).then(|| HmacConfig::new("x-signature")),
            schemas: Vec::new(),
        }
    }
}

/// A signature scheme, as named in `scheme = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Standard Webhooks (also Svix and OpenAI): `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`.
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=..,v1=..`.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=..`.
    Github,
    /// Slack: `X-Slack-Signature: v0=..` with `X-Slack-Request-Timestamp`.
    Slack,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`.
    Shopify,
    /// Any sender that signs with HMAC-SHA256, described by [`HmacConfig`].
    HmacSha256,
}

impl Scheme {
    /// Every scheme, in the order the docs list them.
    pub const ALL: [Scheme; 6] = [
        Scheme::StandardWebhooks,
        Scheme::Stripe,
        Scheme::Github,
        Scheme::Slack,
        Scheme::Shopify,
        Scheme::HmacSha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe => "stripe",
            Scheme::Github => "github",
            Scheme::Slack => "slack",
            Scheme::Shopify => "shopify",
            Scheme::HmacSha256 => "hmac-sha256",
        }
    }

    /// Whether the sender signs a timestamp, so that `tolerance_secs` means something.
    /// (`hmac-sha256` does when it has a `timestamp_header`.)
    pub fn signs_timestamp(self) -> bool {
        matches!(
            self,
            Scheme::StandardWebhooks | Scheme::Stripe | Scheme::Slack | Scheme::HmacSha256
        )
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Scheme, String> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scheme `{s}` (supported: {})", names.join(", "))
            })
    }
}

/// The generic `hmac-sha256` scheme: which headers carry what, and what is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacConfig {
    /// The header carrying the signature (`signature_header`, required).
    pub signature_header: String,
    /// Text before the signature in that header, e.g. `sha256=` (`signature_prefix`).
    pub signature_prefix: String,
    /// `signature_encoding = "hex"` (default) or `"base64"`.
    pub signature_encoding: SignatureEncoding,
    /// The header carrying a Unix timestamp in seconds (`timestamp_header`). When set,
    /// the timestamp must be signed and within `tolerance_secs`.
    pub timestamp_header: Option<String>,
    /// What is signed (`signed_payload`): a template of `{body}` (exactly once),
    /// `{timestamp}`, `{id}` and literal text. Default `{body}`.
    pub signed_payload: String,
    /// Where the event id is (`id_header` or `id_pointer`); none = a hash of the body.
    pub id: Option<Locator>,
    /// Where the event type is (`type_header` or `type_pointer`); none = `webhook`.
    pub event_type: Option<Locator>,
}

impl HmacConfig {
    /// Hex HMAC-SHA256 of the body in `signature_header`, nothing else.
    pub fn new(signature_header: impl Into<String>) -> HmacConfig {
        HmacConfig {
            signature_header: signature_header.into(),
            signature_prefix: String::new(),
            signature_encoding: SignatureEncoding::Hex,
            timestamp_header: None,
            signed_payload: "{body}".into(),
            id: None,
            event_type: None,
        }
    }
}

/// How a generic signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// Where a value is found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// A request header.
    Header(String),
    /// A JSON pointer (RFC 6901) into the body, e.g. `/data/id`.
    Pointer(String),
}

/// A JSON Schema for a source's events: `schema = "file:..."` (every event) or an
/// entry of `[sources.NAME.schemas]` (events whose type matches a glob).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRule {
    /// `None` for every event, else the glob on the event type.
    pub types: Option<String>,
    /// Where the schema was read from, for messages.
    pub path: PathBuf,
    pub schema: serde_json::Value,
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
    #[serde(default)]
    store: RawStore,
    email: Option<RawEmail>,
    #[serde(default)]
    emit: RawEmit,
    #[serde(default)]
    telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<OtlpProtocol>,
    service_name: Option<String>,
}

impl RawTelemetry {
    fn resolve(&self) -> Result<TelemetryConfig, ConfigError> {
        let service_name = self
            .service_name
            .clone()
            .unwrap_or_else(|| "agenthook".to_string());
        if service_name.is_empty() || service_name.len() > 256 {
            return Err(ConfigError::invalid(
                "telemetry.service_name",
                "must be 1 to 256 characters",
            ));
        }
        let otlp_endpoint = match &self.otlp_endpoint {
            None => None,
            Some(url) => {
                let parsed: Option<http::Uri> = url.parse().ok();
                let ok = parsed.as_ref().is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https"))
                        && u.host().is_some()
                        && u.query().is_none()
                });
                if !ok {
                    return Err(ConfigError::invalid(
                        "telemetry.otlp_endpoint",
                        format!(
                            "`{url}` is not an http:// or https:// base URL (e.g. http://127.0.0.1:4318)"
                        ),
                    ));
                }
                if !cfg!(feature = "otlp") {
                    return Err(ConfigError::invalid(
                        "telemetry.otlp_endpoint",
                        "this agenthook was built without OTLP export; rebuild it with `cargo build --release -p agenthook --features otlp`",
                    ));
                }
                Some(url.trim_end_matches('/').to_string())
            }
        };
        Ok(TelemetryConfig {
            otlp_endpoint,
            otlp_protocol: self.otlp_protocol.unwrap_or_default(),
            service_name,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_url: String,
    from: String,
    tls: Option<SmtpTls>,
    username: Option<String>,
    password: Option<String>,
    max_per_hour: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmit {
    max_chain_depth: Option<u32>,
}

impl RawEmail {
    /// Validate `[email]`: the URL, the sender address, TLS and credentials.
    fn resolve(&self) -> Result<EmailConfig, ConfigError> {
        let bad_url = || {
            ConfigError::invalid(
                "email.smtp_url",
                format!(
                    "`{}` is not smtp://host[:port] or smtps://host[:port]",
                    self.smtp_url
                ),
            )
        };
        let (scheme, rest) = self.smtp_url.split_once("://").ok_or_else(bad_url)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return Err(bad_url());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(bad_url)?,
                ),
            ),
            _ => (rest, None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let (tls, default_port) = match (scheme, self.tls) {
            ("smtps", None | Some(SmtpTls::Tls)) => (SmtpTls::Tls, 465),
            ("smtps", Some(_)) => {
                return Err(ConfigError::invalid(
                    "email.tls",
                    "smtps:// is TLS from the first byte; remove `tls` or use smtp://",
                ));
            }
            ("smtp", Some(SmtpTls::Tls)) => (SmtpTls::Tls, 465),
            ("smtp", Some(tls)) => (tls, 587),
            ("smtp", None) if loopback => (SmtpTls::None, 25),
            ("smtp", None) => (SmtpTls::Starttls, 587),
            _ => return Err(bad_url()),
        };
        if tls == SmtpTls::None && !loopback {
            return Err(ConfigError::invalid(
                "email.tls",
                format!("\"none\" (plain text) is only allowed to a loopback server, not {host}"),
            ));
        }
        if let Err(e) = self.from.parse::<lettre::message::Mailbox>() {
            return Err(ConfigError::invalid(
                "email.from",
                format!(
                    "`{}` is not an address like Agents <agents@example.com>: {e}",
                    self.from
                ),
            ));
        }
        let username = self
            .username
            .as_deref()
            .map(|s| Secret::resolve(s, "email.username"))
            .transpose()?;
        let password = self
            .password
            .as_deref()
            .map(|s| Secret::resolve(s, "email.password"))
            .transpose()?;
        if username.is_some() != password.is_some() {
            return Err(ConfigError::invalid(
                if username.is_some() {
                    "email.password"
                } else {
                    "email.username"
                },
                "SMTP AUTH needs both username and password",
            ));
        }
        let max_per_hour = self.max_per_hour.unwrap_or(DEFAULT_EMAILS_PER_HOUR);
        if max_per_hour == 0 {
            return Err(ConfigError::invalid(
                "email.max_per_hour",
                "must be at least 1 (remove the email grants to stop a plugin sending)",
            ));
        }
        Ok(EmailConfig {
            host,
            port: port.unwrap_or(default_port),
            tls,
            from: self.from.clone(),
            username,
            password,
            max_per_hour,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    dedup_window: Option<String>,
    done_retention: Option<String>,
    dead_retention: Option<String>,
    max_queue_per_plugin: Option<u64>,
    min_free_disk_mb: Option<u64>,
    max_batch: Option<usize>,
    cache_mb: Option<usize>,
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
    schema: Option<String>,
    schemas: Option<BTreeMap<String, String>>,
    // hmac-sha256 only:
    signature_header: Option<String>,
    signature_prefix: Option<String>,
    signature_encoding: Option<SignatureEncoding>,
    timestamp_header: Option<String>,
    signed_payload: Option<String>,
    id_header: Option<String>,
    id_pointer: Option<String>,
    type_header: Option<String>,
    type_pointer: Option<String>,
}

impl RawSource {
    /// Validate one `[sources.NAME]` table and resolve its secrets and schema files.
    fn resolve(&self, name: &str) -> Result<SourceConfig, ConfigError> {
        let field = format!("sources.{name}");
        validate_name(name).map_err(|m| ConfigError::invalid(&field, m))?;
        let scheme: Scheme = self
            .scheme
            .parse()
            .map_err(|m: String| ConfigError::invalid(format!("{field}.scheme"), m))?;
        if self.secrets.is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.secrets"),
                "at least one secret is required",
            ));
        }
        let secrets = self
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| Secret::resolve(s, &format!("{field}.secrets[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;

        let hmac = if scheme == Scheme::HmacSha256 {
            Some(self.hmac_config(&field)?)
        } else {
            if let Some(key) = self.hmac_keys().find(|(_, set)| *set).map(|(k, _)| k) {
                return Err(ConfigError::invalid(
                    format!("{field}.{key}"),
                    format!(
                        "only scheme = \"hmac-sha256\" uses this setting; scheme = \"{}\" knows where its sender puts the signature",
                        scheme.as_str()
                    ),
                ));
            }
            None
        };
        let timestamped = match &hmac {
            Some(h) => h.timestamp_header.is_some(),
            None => scheme.signs_timestamp(),
        };
        let tolerance_secs = match self.tolerance_secs {
            Some(_) if !timestamped => {
                return Err(ConfigError::invalid(
                    format!("{field}.tolerance_secs"),
                    match scheme {
                        Scheme::HmacSha256 => "has no effect without timestamp_header".to_string(),
                        _ => format!(
                            "scheme = \"{}\" signs no timestamp; replays are absorbed by event-id dedup",
                            scheme.as_str()
                        ),
                    },
                ));
            }
            Some(0) => {
                return Err(ConfigError::invalid(
                    format!("{field}.tolerance_secs"),
                    "must be at least 1",
                ));
            }
            Some(t) => t,
            None => DEFAULT_TOLERANCE_SECS,
        };

        let mut schemas = Vec::new();
        if let Some(spec) = &self.schema {
            schemas.push(load_schema(spec, None, &format!("{field}.schema"))?);
        }
        for (types, spec) in self.schemas.iter().flatten() {
            schemas.push(load_schema(
                spec,
                Some(types),
                &format!("{field}.schemas.\"{types}\""),
            )?);
        }

        Ok(SourceConfig {
            name: name.to_string(),
            scheme,
            secrets,
            tolerance_secs,
            hmac,
            schemas,
        })
    }

    /// The `hmac-sha256` settings, each with whether it was given.
    fn hmac_keys(&self) -> impl Iterator<Item = (&'static str, bool)> {
        [
            ("signature_header", self.signature_header.is_some()),
            ("signature_prefix", self.signature_prefix.is_some()),
            ("signature_encoding", self.signature_encoding.is_some()),
            ("timestamp_header", self.timestamp_header.is_some()),
            ("signed_payload", self.signed_payload.is_some()),
            ("id_header", self.id_header.is_some()),
            ("id_pointer", self.id_pointer.is_some()),
            ("type_header", self.type_header.is_some()),
            ("type_pointer", self.type_pointer.is_some()),
        ]
        .into_iter()
    }

    fn hmac_config(&self, field: &str) -> Result<HmacConfig, ConfigError> {
        let Some(signature_header) = &self.signature_header else {
            return Err(ConfigError::invalid(
                format!("{field}.signature_header"),
                "scheme = \"hmac-sha256\" needs the name of the header that carries the signature",
            ));
        };
        let locator =
            |header: &Option<String>, pointer: &Option<String>, what: &str| match (header, pointer)
            {
                (Some(_), Some(_)) => Err(ConfigError::invalid(
                    format!("{field}.{what}_pointer"),
                    format!("give {what}_header or {what}_pointer, not both"),
                )),
                (Some(h), None) => Ok(Some(Locator::Header(h.clone()))),
                (None, Some(p)) => Ok(Some(Locator::Pointer(p.clone()))),
                (None, None) => Ok(None),
            };
        Ok(HmacConfig {
            signature_header: signature_header.clone(),
            signature_prefix: self.signature_prefix.clone().unwrap_or_default(),
            signature_encoding: self.signature_encoding.unwrap_or(SignatureEncoding::Hex),
            timestamp_header: self.timestamp_header.clone(),
            signed_payload: self
                .signed_payload
                .clone()
                .unwrap_or_else(|| "{body}".into()),
            id: locator(&self.id_header, &self.id_pointer, "id")?,
            event_type: locator(&self.type_header, &self.type_pointer, "type")?,
        })
    }
}

/// Read a `file:PATH` JSON Schema. Whether it is a valid schema is checked when the
/// source's verifier compiles it, still at config load.
fn load_schema(spec: &str, types: Option<&str>, field: &str) -> Result<SchemaRule, ConfigError> {
    let Some(path) = spec.strip_prefix("file:") else {
        return Err(ConfigError::invalid(
            field,
            format!("`{spec}` is not `file:PATH` (a JSON Schema file)"),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(field, format!("cannot read schema {path}: {e}")))?;
    let schema = serde_json::from_str(&text)
        .map_err(|e| ConfigError::invalid(field, format!("schema {path} is not JSON: {e}")))?;
    Ok(SchemaRule {
        types: types.map(str::to_string),
        path: PathBuf::from(path),
        schema,
    })
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
            let source = src.resolve(name)?;
            crate::ingress::validate_source(&source)?;
            sources.insert(name.clone(), source);
        }

        let d = StoreConfig::default();
        let st = &raw.store;
        let duration = |v: &Option<String>, field: &str, default: u64| match v {
            Some(text) => parse_duration_ms(text, field),
            None => Ok(default),
        };
        let store = StoreConfig {
            dedup_window_ms: duration(&st.dedup_window, "store.dedup_window", d.dedup_window_ms)?,
            done_retention_ms: duration(
                &st.done_retention,
                "store.done_retention",
                d.done_retention_ms,
            )?,
            dead_retention_ms: duration(
                &st.dead_retention,
                "store.dead_retention",
                d.dead_retention_ms,
            )?,
            max_queue_per_plugin: match st.max_queue_per_plugin {
                Some(0) => {
                    return Err(ConfigError::invalid(
                        "store.max_queue_per_plugin",
                        "must be at least 1",
                    ));
                }
                Some(n) => n,
                None => d.max_queue_per_plugin,
            },
            min_free_disk_bytes: st
                .min_free_disk_mb
                .map_or(d.min_free_disk_bytes, |mb| mb << 20),
            max_batch: match st.max_batch {
                Some(n) if (1..=65_536).contains(&n) => n,
                Some(n) => {
                    return Err(ConfigError::invalid(
                        "store.max_batch",
                        format!("must be between 1 and 65536, got {n}"),
                    ));
                }
                None => d.max_batch,
            },
            cache_bytes: match st.cache_mb {
                Some(n) if (1..=1 << 20).contains(&n) => n << 20,
                Some(n) => {
                    return Err(ConfigError::invalid(
                        "store.cache_mb",
                        format!("must be between 1 and 1048576, got {n}"),
                    ));
                }
                None => d.cache_bytes,
            },
        };

        let email = raw.email.as_ref().map(RawEmail::resolve).transpose()?;
        let emit = EmitConfig {
            max_chain_depth: match raw.emit.max_chain_depth {
                Some(n) if (1..=64).contains(&n) => n,
                Some(n) => {
                    return Err(ConfigError::invalid(
                        "emit.max_chain_depth",
                        format!("must be between 1 and 64, got {n}"),
                    ));
                }
                None => EmitConfig::default().max_chain_depth,
            },
        };

        let telemetry = raw.telemetry.resolve()?;
        Ok(Config {
            email,
            emit,
            telemetry,
            store,
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
    fn store_durations_parse_and_errors_name_the_field() {
        let c = parse("[store]\ndedup_window = \"36h\"\nmax_batch = 1\ncache_mb = 64\n").unwrap();
        assert_eq!(c.store.cache_bytes, 64 << 20);
        assert_eq!(c.store.dedup_window_ms, 36 * 3_600_000);
        assert_eq!(c.store.max_batch, 1);
        assert_eq!(
            c.store.dead_retention_ms,
            StoreConfig::default().dead_retention_ms
        );
        for (text, field) in [
            ("[store]\ndedup_window = \"7 days\"\n", "store.dedup_window"),
            ("[store]\ndone_retention = \"0s\"\n", "store.done_retention"),
            ("[store]\nmax_batch = 0\n", "store.max_batch"),
            ("[store]\ncache_mb = 0\n", "store.cache_mb"),
            (
                "[store]\nmax_queue_per_plugin = 0\n",
                "store.max_queue_per_plugin",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn email_and_emit_sections_parse_and_errors_name_the_field() {
        let c = parse(
            "[email]\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"Agents <agents@example.com>\"\n[emit]\nmax_chain_depth = 3\n",
        )
        .unwrap();
        let e = c.email.unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("127.0.0.1", 2525, SmtpTls::None)
        );
        assert_eq!(e.max_per_hour, DEFAULT_EMAILS_PER_HOUR);
        assert_eq!(c.emit.max_chain_depth, 3);
        let c =
            parse("[email]\nsmtp_url = \"smtps://smtp.example.com\"\nfrom = \"a@example.com\"\n")
                .unwrap();
        let e = c.email.unwrap();
        assert_eq!((e.port, e.tls), (465, SmtpTls::Tls));
        let c =
            parse("[email]\nsmtp_url = \"smtp://smtp.example.com\"\nfrom = \"a@example.com\"\n")
                .unwrap();
        assert_eq!(c.email.unwrap().tls, SmtpTls::Starttls);
        assert!(parse("").unwrap().email.is_none());
        for (text, field) in [
            (
                "[email]\nsmtp_url = \"http://x\"\nfrom = \"a@example.com\"\n",
                "email.smtp_url",
            ),
            (
                "[email]\nsmtp_url = \"smtp://x.example.com\"\nfrom = \"a@example.com\"\ntls = \"none\"\n",
                "email.tls",
            ),
            (
                "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"nobody\"\n",
                "email.from",
            ),
            (
                "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"a@example.com\"\nusername = \"u\"\n",
                "email.password",
            ),
            (
                "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"a@example.com\"\nmax_per_hour = 0\n",
                "email.max_per_hour",
            ),
            ("[emit]\nmax_chain_depth = 0\n", "emit.max_chain_depth"),
            ("[emit]\ndepth = 1\n", "depth"),
            (
                "[telemetry]\notlp_endpoint = \"ftp://collector:4318\"\n",
                "telemetry.otlp_endpoint",
            ),
            ("[telemetry]\notlp_protocol = \"grpc\"\n", "otlp_protocol"),
            (
                "[telemetry]\nservice_name = \"\"\n",
                "telemetry.service_name",
            ),
            ("[telemetry]\nsampler = 1\n", "sampler"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn otlp_export_is_off_by_default_and_needs_the_feature() {
        let c = parse("").unwrap();
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert_eq!(c.telemetry.service_name, "agenthook");
        let with = parse(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/\"\notlp_protocol = \"http/json\"\n",
        );
        if cfg!(feature = "otlp") {
            let c = with.unwrap();
            assert_eq!(
                c.telemetry.otlp_endpoint.as_deref(),
                Some("http://127.0.0.1:4318")
            );
            assert_eq!(c.telemetry.otlp_protocol, OtlpProtocol::HttpJson);
        } else {
            let e = with.unwrap_err().to_string();
            assert!(e.contains("--features otlp"), "{e}");
        }
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

    // ---- [sources.*] ------------------------------------------------------------

    #[test]
    fn every_scheme_parses() {
        for scheme in Scheme::ALL {
            let extra = match scheme {
                Scheme::HmacSha256 => "signature_header = \"X-Sig\"\n",
                _ => "",
            };
            let secret = match scheme {
                Scheme::StandardWebhooks => "whsec_eA==",
                _ => "s",
            };
            let c = parse(&format!(
                "[sources.a]\nscheme = \"{}\"\nsecrets = [\"{secret}\"]\n{extra}",
                scheme.as_str()
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", scheme.as_str()));
            assert_eq!(c.sources["a"].scheme, scheme);
            assert_eq!(c.sources["a"].hmac.is_some(), scheme == Scheme::HmacSha256);
        }
        let e = parse("[sources.a]\nscheme = \"paypal\"\nsecrets = [\"x\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("hmac-sha256"),
            "lists the schemes: {e}"
        );
    }

    #[test]
    fn generic_hmac_settings_parse() {
        let c = parse(
            r#"[sources.acme]
scheme = "hmac-sha256"
secrets = ["k1", "k2"]
signature_header = "X-Acme-Signature"
signature_prefix = "sha256="
signature_encoding = "base64"
timestamp_header = "X-Acme-Timestamp"
signed_payload = "{timestamp}.{body}"
id_pointer = "/id"
type_header = "X-Acme-Event"
tolerance_secs = 60
"#,
        )
        .unwrap();
        let s = &c.sources["acme"];
        assert_eq!(s.tolerance_secs, 60);
        assert_eq!(s.secrets.len(), 2);
        let h = s.hmac.as_ref().unwrap();
        assert_eq!(h.signature_encoding, SignatureEncoding::Base64);
        assert_eq!(h.id, Some(Locator::Pointer("/id".into())));
        assert_eq!(h.event_type, Some(Locator::Header("X-Acme-Event".into())));
    }

    #[test]
    fn settings_a_scheme_does_not_use_are_refused_naming_the_field() {
        for (text, field) in [
            (
                "scheme = \"stripe\"\nsecrets = [\"s\"]\nsignature_header = \"X\"\n",
                "sources.a.signature_header",
            ),
            (
                "scheme = \"slack\"\nsecrets = [\"s\"]\ntype_pointer = \"/t\"\n",
                "sources.a.type_pointer",
            ),
            (
                "scheme = \"github\"\nsecrets = [\"s\"]\ntolerance_secs = 60\n",
                "sources.a.tolerance_secs",
            ),
            (
                "scheme = \"shopify\"\nsecrets = [\"s\"]\ntolerance_secs = 60\n",
                "sources.a.tolerance_secs",
            ),
            (
                "scheme = \"hmac-sha256\"\nsecrets = [\"s\"]\nsignature_header = \"X\"\ntolerance_secs = 60\n",
                "sources.a.tolerance_secs",
            ),
            (
                "scheme = \"stripe\"\nsecrets = [\"s\"]\ntolerance_secs = 0\n",
                "sources.a.tolerance_secs",
            ),
            (
                "scheme = \"hmac-sha256\"\nsecrets = [\"s\"]\n",
                "sources.a.signature_header",
            ),
            (
                "scheme = \"hmac-sha256\"\nsecrets = [\"s\"]\nsignature_header = \"X\"\nid_header = \"A\"\nid_pointer = \"/a\"\n",
                "sources.a.id_pointer",
            ),
            (
                "scheme = \"hmac-sha256\"\nsecrets = [\"s\"]\nsignature_header = \"X\"\nsigned_payload = \"{ts}.{body}\"\n",
                "sources.a.signed_payload",
            ),
            ("scheme = \"stripe\"\nsecrets = []\n", "sources.a.secrets"),
            (
                "scheme = \"stripe\"\nsecrets = [\"s\"]\nschema = \"schema.json\"\n",
                "sources.a.schema",
            ),
            (
                "scheme = \"stripe\"\nsecrets = [\"s\"]\nschema = \"file:/nonexistent/agenthook.json\"\n",
                "sources.a.schema",
            ),
        ] {
            let e = parse(&format!("[sources.a]\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = parse("[sources.a]\nscheme = \"hmac-sha256\"\nsecrets = [\"s\"]\nsignature_header = \"X\"\nsignature_encoding = \"hax\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("signature_encoding") || e.contains("hax"), "{e}");
    }

    #[test]
    fn schemas_load_from_files_and_bad_ones_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"type": "object", "required": ["id"]}"#).unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"type": 12}"#).unwrap();
        let not_json = dir.path().join("not.json");
        std::fs::write(&not_json, "{").unwrap();
        let text = |schema: &std::path::Path, typed: &std::path::Path| {
            format!(
                "[sources.a]\nscheme = \"stripe\"\nsecrets = [\"s\"]\nschema = \"file:{}\"\n[sources.a.schemas]\n\"payment.*\" = \"file:{}\"\n",
                schema.display(),
                typed.display()
            )
        };
        let c = parse(&text(&good, &good)).unwrap();
        let rules = &c.sources["a"].schemas;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].types, None);
        assert_eq!(rules[1].types.as_deref(), Some("payment.*"));
        let e = parse(&text(&good, &bad)).unwrap_err().to_string();
        assert!(e.contains("sources.a.schemas.\"payment.*\""), "{e}");
        let e = parse(&text(&not_json, &good)).unwrap_err().to_string();
        assert!(
            e.contains("sources.a.schema") && e.contains("not JSON"),
            "{e}"
        );
    }
}
