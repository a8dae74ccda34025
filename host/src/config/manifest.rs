//! A plugin's manifest (`plugins.d/NAME.toml`): what it subscribes to, its limits, its
//! retry policy, the capabilities it is granted, and its config values.
//!
//! Deny by default: a grant that is absent is off, and a grant this host does not know
//! is an error naming the field, so an operator never believes they granted (or
//! withheld) something the host ignores. The host secrets a manifest names (`env:`,
//! `file:`) resolve only where the host config's `[plugins]` allows.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use super::{ConfigError, PluginsConfig, Secret};

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
    /// `[journal]`: which tools' effects are journaled (all by default).
    pub journal: JournalPolicy,
    /// `[ordering] key`: deliveries with the same key run one at a time, in order.
    pub ordering: Option<OrderingKey>,
}

/// `[journal] exclude = ["http", …]`: the tools whose effectful calls are journaled.
/// A tool left out is made again on every attempt, as without a journal (and its http
/// requests carry no host `Idempotency-Key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPolicy {
    pub http: bool,
    pub email: bool,
    pub emit: bool,
    pub llm: bool,
}

impl Default for JournalPolicy {
    fn default() -> Self {
        JournalPolicy {
            http: true,
            email: true,
            emit: true,
            llm: true,
        }
    }
}

/// Where a delivery's ordering key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderingKey {
    /// A JSON pointer into the body (`/data/customer`); a string value is the key as is,
    /// any other value its JSON text.
    Pointer(String),
    /// `header:NAME`: a request header (name lower-cased).
    Header(String),
}

impl OrderingKey {
    fn parse(spec: &str) -> Result<OrderingKey, String> {
        if let Some(name) = spec.strip_prefix("header:") {
            let name = name.to_ascii_lowercase();
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{spec}`: `{name}` is not a valid header name"))?;
            return Ok(OrderingKey::Header(name));
        }
        if !spec.starts_with('/') {
            return Err(format!(
                "`{spec}` is neither a JSON pointer like /data/customer nor header:NAME"
            ));
        }
        Ok(OrderingKey::Pointer(spec.to_string()))
    }

    /// The key of an event with these headers and body; None when it has none (the
    /// pointer finds nothing, the body is not JSON, the header is missing): such
    /// deliveries are not ordered.
    pub fn of(&self, headers: &[(String, String)], body: &[u8]) -> Option<String> {
        match self {
            OrderingKey::Header(name) => headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone()),
            OrderingKey::Pointer(pointer) => {
                let value: serde_json::Value = serde_json::from_slice(body).ok()?;
                match value.pointer(pointer)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
        }
    }
}

impl std::fmt::Display for OrderingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderingKey::Pointer(p) => f.write_str(p),
            OrderingKey::Header(h) => write!(f, "header:{h}"),
        }
    }
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
    /// Tool calls per second across all of the plugin's attempts (a one-second burst is
    /// allowed); beyond it a call returns `tool-error.limited`.
    pub tool_calls_per_second: u32,
}

/// `[retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

/// `[grants]`: each capability the plugin may use. Empty lists grant nothing.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub kv: bool,
    /// `http = ["https://api.example.com", "https://*.example.com"]`: origins the
    /// plugin may fetch, each with the headers `[grants.http_headers]` attaches.
    pub http: Vec<HttpGrant>,
    /// `email = ["ops@example.com", "*@example.org"]`: recipients the plugin may mail.
    pub email: Vec<EmailGrant>,
    /// `emit = ["lead.*"]`: globs on the event types the plugin may emit.
    pub emit: Vec<(String, GlobMatcher)>,
    /// `llm = { provider, models, max_tokens_per_hour }`: the model provider (a host
    /// `[llm.providers.NAME]`) and models the plugin may call, and its token budget.
    pub llm: Option<LlmGrant>,
}

/// `grants.llm`.
#[derive(Debug, Clone)]
pub struct LlmGrant {
    pub provider: String,
    /// Globs on model names (`gpt-4o-mini`, `claude-*`).
    pub models: Vec<(String, GlobMatcher)>,
    /// Tokens (input + output, as the provider counts them) the plugin may use in any
    /// hour; a call beyond it is `limited`.
    pub max_tokens_per_hour: u64,
}

impl LlmGrant {
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|(_, g)| g.is_match(model))
    }
}

/// `grants.llm.max_tokens_per_hour` when not given.
pub const DEFAULT_LLM_TOKENS_PER_HOUR: u64 = 100_000;

impl Grants {
    /// The grant covering `scheme://host:port`, preferring an exact host over a
    /// wildcard (so the exact grant's headers apply).
    pub fn http_grant(&self, scheme: &str, host: &GrantHost, port: u16) -> Option<&HttpGrant> {
        let candidates = || {
            self.http
                .iter()
                .filter(move |g| g.scheme == scheme && g.port == port)
        };
        candidates()
            .find(|g| g.host == *host)
            .or_else(|| candidates().find(|g| g.host.covers(host)))
    }

    /// Addresses the plugin may reach although they are loopback, private or otherwise
    /// internal: those its `http` grants name literally, with their port.
    pub fn http_exempt_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|g| match g.host {
                GrantHost::Ip(ip) => Some(SocketAddr::new(ip, g.port)),
                _ => None,
            })
            .collect()
    }

    /// Whether `address` (the bare `user@domain`) is a granted recipient.
    pub fn email_allows(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        self.email.iter().any(|g| match g {
            EmailGrant::Address(a) => *a == address,
            EmailGrant::Domain(d) => address
                .rsplit_once('@')
                .is_some_and(|(_, domain)| domain == d),
        })
    }

    /// Whether the plugin may emit events of `event_type`.
    pub fn emit_allows(&self, event_type: &str) -> bool {
        self.emit.iter().any(|(_, g)| g.is_match(event_type))
    }

    /// The `emit` globs as written, for messages.
    pub fn emit_patterns(&self) -> Vec<&str> {
        self.emit.iter().map(|(p, _)| p.as_str()).collect()
    }
}

/// One `grants.http` entry: an origin, `scheme://host[:port]`.
#[derive(Debug, Clone)]
pub struct HttpGrant {
    /// The entry as the operator wrote it, for messages.
    pub entry: String,
    /// `http` or `https`.
    pub scheme: String,
    pub host: GrantHost,
    /// The port, the scheme's default when the entry gives none.
    pub port: u16,
    /// Headers the host adds to every request to this origin, e.g. credentials from
    /// secrets, so that the plugin never sees them.
    pub headers: Vec<(http::HeaderName, Secret)>,
}

/// The host part of an origin: a name, an IP address, or `*.domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantHost {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP address (IPv4-mapped IPv6 addresses are kept as IPv4).
    Ip(IpAddr),
    /// `*.example.com`: any name ending in `.example.com` (not `example.com` itself).
    Wildcard(String),
}

impl GrantHost {
    /// The host of a URL (`[v6]` brackets allowed), normalised like a grant's.
    pub fn parse(host: &str) -> Result<GrantHost, String> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(GrantHost::Ip(ip.to_canonical()));
        }
        if bare != host {
            return Err(format!("`{host}` is not an IPv6 address"));
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if valid {
            Ok(GrantHost::Name(name))
        } else {
            Err(format!("`{host}` is not a host name or IP address"))
        }
    }

    /// Whether this grant host admits `host` (a URL's host, never a wildcard).
    pub fn covers(&self, host: &GrantHost) -> bool {
        match (self, host) {
            (GrantHost::Wildcard(suffix), GrantHost::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            _ => self == host,
        }
    }
}

impl std::fmt::Display for GrantHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantHost::Name(n) => f.write_str(n),
            GrantHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            GrantHost::Ip(ip) => write!(f, "{ip}"),
            GrantHost::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The default port of `http` and `https`.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HttpGrant {
    fn parse(entry: &str) -> Result<HttpGrant, String> {
        let shape = || {
            format!(
                "`{entry}` is not an origin like https://api.example.com, http://127.0.0.1:8000 or https://*.example.com"
            )
        };
        let (scheme, rest) = entry.split_once("://").ok_or_else(shape)?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme)
            .ok_or_else(|| format!("`{entry}`: the scheme must be http or https"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("{}: no path, query or user part", shape()));
        }
        // `host`, `host:port`, `[v6]` or `[v6]:port`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(inner) => {
                let (v6, after) = inner.split_once(']').ok_or_else(shape)?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(shape)?),
                };
                (&authority[..v6.len() + 2], port)
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => default,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{entry}`: bad port `{p}`"))?,
        };
        let host = match host.strip_prefix("*.") {
            Some(suffix) => match GrantHost::parse(suffix)? {
                GrantHost::Name(n) if n.contains('.') => GrantHost::Wildcard(n),
                _ => {
                    return Err(format!(
                        "`{entry}`: a wildcard covers the sub-domains of a domain with at least two labels, like *.example.com"
                    ));
                }
            },
            None if host.contains('*') => {
                return Err(format!(
                    "`{entry}`: `*` is allowed only as the first label, like https://*.example.com"
                ));
            }
            None => GrantHost::parse(host)?,
        };
        Ok(HttpGrant {
            entry: entry.to_string(),
            scheme,
            host,
            port,
            headers: Vec::new(),
        })
    }

    /// `scheme://host:port`, as messages name an origin.
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// One `grants.email` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailGrant {
    /// `ops@example.com` (compared case-insensitively).
    Address(String),
    /// `*@example.org`: every address at that domain.
    Domain(String),
}

impl EmailGrant {
    fn parse(entry: &str) -> Result<EmailGrant, String> {
        let bad = || format!("`{entry}` is not an address like ops@example.com or *@example.org");
        let lower = entry.trim().to_ascii_lowercase();
        let (local, domain) = lower.rsplit_once('@').ok_or_else(bad)?;
        let domain_ok = matches!(GrantHost::parse(domain), Ok(GrantHost::Name(ref n)) if n == domain && n.contains('.'));
        if !domain_ok || local.is_empty() {
            return Err(bad());
        }
        if local == "*" {
            return Ok(EmailGrant::Domain(domain.to_string()));
        }
        if local.contains(['*', ' ', '<', '>', '"', ',']) {
            return Err(bad());
        }
        Ok(EmailGrant::Address(lower))
    }
}

/// Resolve a header value that may name a secret: `env:VAR`, `file:PATH`, or text whose
/// last word is one (`Bearer env:CRM_KEY`), if `allowed` lets manifests read it;
/// anything else is literal.
fn resolve_header_value(
    value: &str,
    field: &str,
    allowed: &PluginsConfig,
) -> Result<Secret, ConfigError> {
    let (prefix, last) = match value.rsplit_once(' ') {
        Some((p, l)) => (format!("{p} "), l),
        None => (String::new(), value),
    };
    let resolved = format!("{prefix}{}", allowed.resolve(last, field)?.expose());
    if http::HeaderValue::from_str(&resolved).is_err() {
        return Err(ConfigError::invalid(
            field,
            "the value is not a valid HTTP header value",
        ));
    }
    Ok(Secret::new(resolved))
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
    #[serde(default)]
    journal: RawJournal,
    ordering: Option<RawOrdering>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrdering {
    key: String,
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
    tool_calls_per_second: Option<u32>,
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
    http: Option<Vec<String>>,
    /// Origin (exactly as listed in `http`) → header name → value (may name a secret).
    http_headers: Option<BTreeMap<String, BTreeMap<String, String>>>,
    email: Option<Vec<String>>,
    emit: Option<Vec<String>>,
    llm: Option<RawLlmGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlmGrant {
    provider: String,
    models: Vec<String>,
    max_tokens_per_hour: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 64,
            timeout_ms: 5000,
            max_concurrency: 4,
            tool_calls_per_second: 10_000,
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
    /// Parse and validate manifest text; `env:` and `file:` values resolve only where
    /// `allowed` (the host config's `[plugins]`) lets them. Errors name the field, e.g.
    /// `limits.memory_mb: must be between 1 and 1024`.
    pub fn parse(text: &str, allowed: &PluginsConfig) -> Result<Manifest, ConfigError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "manifest".into(),
            message: e.to_string(),
        })?;

        let mut subscribe = Vec::with_capacity(raw.subscribe.len());
        for (i, s) in raw.subscribe.into_iter().enumerate() {
            let field = format!("subscribe[{i}]");
            // `plugin:NAME` subscribes to the events that plugin emits.
            super::validate_name(s.source.strip_prefix("plugin:").unwrap_or(&s.source))
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
            tool_calls_per_second: in_range(
                raw.limits
                    .tool_calls_per_second
                    .unwrap_or(d.tool_calls_per_second)
                    .into(),
                1,
                1_000_000,
                "limits.tool_calls_per_second",
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

        let grants = parse_grants(raw.grants, allowed)?;

        let mut config = BTreeMap::new();
        for (key, value) in raw.config {
            let resolved = allowed.resolve(&value, &format!("config.{key}"))?;
            config.insert(key, resolved);
        }

        let mut journal = JournalPolicy::default();
        for (i, tool) in raw.journal.exclude.iter().enumerate() {
            let slot = match tool.as_str() {
                "http" => &mut journal.http,
                "email" => &mut journal.email,
                "emit" => &mut journal.emit,
                "llm" => &mut journal.llm,
                other => {
                    return Err(ConfigError::invalid(
                        format!("journal.exclude[{i}]"),
                        format!("`{other}` is not a journaled tool (http, email, emit, llm)"),
                    ));
                }
            };
            *slot = false;
        }
        let ordering = raw
            .ordering
            .map(|o| OrderingKey::parse(&o.key))
            .transpose()
            .map_err(|m| ConfigError::invalid("ordering.key", m))?;

        Ok(Manifest {
            subscribe,
            limits,
            retry,
            grants,
            config,
            journal,
            ordering,
        })
    }

    pub fn subscribes_to(&self, source: &str, event_type: &str) -> bool {
        self.subscribe.iter().any(|s| s.matches(source, event_type))
    }
}

/// Validate `[grants]`: every entry must parse, and `http_headers` may only name
/// origins that `http` lists.
fn parse_grants(raw: RawGrants, allowed: &PluginsConfig) -> Result<Grants, ConfigError> {
    let mut http = Vec::new();
    for (i, entry) in raw.http.unwrap_or_default().iter().enumerate() {
        let grant = HttpGrant::parse(entry)
            .map_err(|m| ConfigError::invalid(format!("grants.http[{i}]"), m))?;
        http.push(grant);
    }
    for (origin, headers) in raw.http_headers.unwrap_or_default() {
        let field = format!("grants.http_headers.\"{origin}\"");
        let Some(grant) = http.iter_mut().find(|g| g.entry == origin) else {
            return Err(ConfigError::invalid(
                field,
                "names no origin listed in grants.http (write it exactly as listed there)",
            ));
        };
        for (name, value) in headers {
            let field = format!("{field}.{name}");
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid(&field, "not a valid HTTP header name"))?;
            grant
                .headers
                .push((header, resolve_header_value(&value, &field, allowed)?));
        }
    }

    let mut email = Vec::new();
    for (i, entry) in raw.email.unwrap_or_default().iter().enumerate() {
        email.push(
            EmailGrant::parse(entry)
                .map_err(|m| ConfigError::invalid(format!("grants.email[{i}]"), m))?,
        );
    }

    let mut emit = Vec::new();
    for (i, pattern) in raw.emit.unwrap_or_default().into_iter().enumerate() {
        let field = format!("grants.emit[{i}]");
        if pattern.is_empty() {
            return Err(ConfigError::invalid(
                field,
                "an empty pattern matches nothing",
            ));
        }
        let glob = Glob::new(&pattern)
            .map_err(|e| ConfigError::invalid(&field, format!("bad glob `{pattern}`: {e}")))?;
        emit.push((pattern, glob.compile_matcher()));
    }

    let llm = match raw.llm {
        None => None,
        Some(g) => {
            super::validate_name(&g.provider)
                .map_err(|m| ConfigError::invalid("grants.llm.provider", m))?;
            if g.models.is_empty() {
                return Err(ConfigError::invalid(
                    "grants.llm.models",
                    "an empty list allows no model; list the models (globs) the plugin may call",
                ));
            }
            let mut models = Vec::with_capacity(g.models.len());
            for (i, pattern) in g.models.into_iter().enumerate() {
                let glob = Glob::new(&pattern).map_err(|e| {
                    ConfigError::invalid(
                        format!("grants.llm.models[{i}]"),
                        format!("bad glob `{pattern}`: {e}"),
                    )
                })?;
                models.push((pattern, glob.compile_matcher()));
            }
            Some(LlmGrant {
                provider: g.provider,
                models,
                max_tokens_per_hour: in_range(
                    g.max_tokens_per_hour.unwrap_or(DEFAULT_LLM_TOKENS_PER_HOUR),
                    1,
                    u64::from(u32::MAX),
                    "grants.llm.max_tokens_per_hour",
                )?,
            })
        }
    };

    Ok(Grants {
        kv: raw.kv.unwrap_or(false),
        http,
        email,
        emit,
        llm,
    })
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

    /// Parse under the default `[plugins]`, which allows no `env:` or `file:` value.
    fn parse(text: &str) -> Result<Manifest, ConfigError> {
        Manifest::parse(text, &PluginsConfig::default())
    }

    #[test]
    fn llm_grants_parse_and_bad_ones_name_the_field() {
        let m = parse(
            "[grants]\nllm = { provider = \"openai\", models = [\"gpt-4o*\"], max_tokens_per_hour = 500 }\n",
        )
        .unwrap();
        let g = m.grants.llm.unwrap();
        assert_eq!(
            (g.provider.as_str(), g.max_tokens_per_hour),
            ("openai", 500)
        );
        assert!(g.allows_model("gpt-4o-mini") && !g.allows_model("o3"));
        assert!(parse("").unwrap().grants.llm.is_none());
        for (text, field) in [
            (
                "llm = { provider = \"openai\", models = [] }",
                "grants.llm.models",
            ),
            (
                "llm = { provider = \"Open AI\", models = [\"m\"] }",
                "grants.llm.provider",
            ),
            (
                "llm = { provider = \"openai\", models = [\"m\"], max_tokens_per_hour = 0 }",
                "grants.llm.max_tokens_per_hour",
            ),
            (
                "llm = { provider = \"openai\", models = [\"[\"] }",
                "grants.llm.models[0]",
            ),
        ] {
            let err = parse(&format!("[grants]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }

    #[test]
    fn journal_exclusions_and_ordering_keys_parse_and_bad_ones_name_the_field() {
        let m = parse(
            "[journal]\nexclude = [\"http\", \"llm\"]\n[ordering]\nkey = \"/data/customer\"\n",
        )
        .unwrap();
        assert_eq!(
            m.journal,
            JournalPolicy {
                http: false,
                email: true,
                emit: true,
                llm: false
            }
        );
        let key = m.ordering.unwrap();
        assert_eq!(
            key.of(&[], br#"{"data":{"customer":"cus_1"}}"#).as_deref(),
            Some("cus_1")
        );
        assert_eq!(
            key.of(&[], br#"{"data":{"customer":7}}"#).as_deref(),
            Some("7")
        );
        assert_eq!(key.of(&[], br#"{"data":{}}"#), None);
        assert_eq!(key.of(&[], b"not json"), None);
        let m = parse("[ordering]\nkey = \"header:X-Conversation\"\n").unwrap();
        let headers = [("x-conversation".to_string(), "c-9".to_string())];
        assert_eq!(
            m.ordering.unwrap().of(&headers, b"{}").as_deref(),
            Some("c-9")
        );
        assert!(parse("").unwrap().ordering.is_none());
        assert_eq!(parse("").unwrap().journal, JournalPolicy::default());
        for (text, field) in [
            ("[journal]\nexclude = [\"kv\"]\n", "journal.exclude[0]"),
            ("[ordering]\nkey = \"data.customer\"\n", "ordering.key"),
            ("[ordering]\nkey = \"header:bad name\"\n", "ordering.key"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        assert!(parse("[ordering]\nkeys = \"/a\"\n").is_err());
    }

    #[test]
    fn design_example_parses() {
        let m = parse(
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
http = ["https://api.stripe.com", "http://127.0.0.1:8000"]
email = ["ops@example.com", "*@example.org"]
kv = true
emit = ["lead.*"]

[config]
target_url = "http://127.0.0.1:8000/sink"
"#,
        )
        .unwrap();
        assert!(m.subscribes_to("stripe", "payment_intent.succeeded"));
        assert!(!m.subscribes_to("stripe", "charge.refunded"));
        assert!(!m.subscribes_to("github", "payment_intent.succeeded"));
        assert!(m.grants.kv);
        assert_eq!(m.grants.http.len(), 2);
        assert!(m.grants.email_allows("ops@example.com"));
        assert!(m.grants.emit_allows("lead.scored"));
        assert_eq!(
            m.config["target_url"].expose(),
            "http://127.0.0.1:8000/sink"
        );
    }

    #[test]
    fn tool_grants_parse_and_match() {
        let m = parse(
            r#"
[[subscribe]]
source = "plugin:lead-router"
types = ["lead.*"]

[grants]
http = ["https://api.example.com", "http://127.0.0.1:8000", "https://*.example.com", "http://[::1]:9000/"]
email = ["Ops@Example.com", "*@example.org"]
emit = ["lead.*"]

[grants.http_headers."https://api.example.com"]
Authorization = "Bearer sk_literal"
"#,
        )
        .unwrap();
        assert!(m.subscribes_to("plugin:lead-router", "lead.scored"));
        let g = &m.grants;
        let host = |h: &str| GrantHost::parse(h).unwrap();
        let exact = g
            .http_grant("https", &host("API.example.com."), 443)
            .unwrap();
        assert_eq!(exact.entry, "https://api.example.com");
        assert_eq!(exact.headers[0].0.as_str(), "authorization");
        assert_eq!(exact.headers[0].1.expose(), "Bearer sk_literal");
        let wild = g
            .http_grant("https", &host("eu.api.example.com"), 443)
            .unwrap();
        assert_eq!(wild.entry, "https://*.example.com");
        assert!(g.http_grant("https", &host("example.com"), 443).is_none());
        assert!(
            g.http_grant("https", &host("evil-example.com"), 443)
                .is_none()
        );
        assert!(g.http_grant("http", &host("api.example.com"), 80).is_none());
        assert!(
            g.http_grant("https", &host("api.example.com"), 8443)
                .is_none()
        );
        assert!(g.http_grant("http", &host("127.0.0.1"), 8000).is_some());
        assert!(
            g.http_grant("http", &host("[::ffff:127.0.0.1]"), 8000)
                .is_some()
        );
        assert!(g.http_grant("http", &host("127.0.0.1"), 8001).is_none());
        assert!(g.http_grant("http", &host("[::1]"), 9000).is_some());
        let exempt = g.http_exempt_addrs();
        assert_eq!(
            exempt,
            vec![
                "127.0.0.1:8000".parse::<SocketAddr>().unwrap(),
                "[::1]:9000".parse().unwrap()
            ]
        );
        assert!(g.email_allows("ops@example.com"));
        assert!(g.email_allows("OPS@example.com"));
        assert!(g.email_allows("anyone@example.org"));
        assert!(!g.email_allows("anyone@sub.example.org"));
        assert!(!g.email_allows("other@example.com"));
        assert!(g.emit_allows("lead.scored"));
        assert!(!g.emit_allows("incident.opened"));
    }

    #[test]
    fn secrets_resolve_only_where_the_host_allows() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("api_key");
        std::fs::write(&key, "sk_from_file\n").unwrap();
        let text = format!(
            "[grants]\nhttp = [\"https://api.example.com\"]\n[grants.http_headers.\"https://api.example.com\"]\nAuthorization = \"Bearer file:{}\"\n[config]\nk = \"file:{}\"\n",
            key.display(),
            key.display()
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("grants.http_headers.\"https://api.example.com\".Authorization")
                && e.contains(&format!("`file:{}` is refused", key.display()))
                && e.contains("plugins.allow_files_under"),
            "{e}"
        );
        let allowed = crate::config::tests::parse(&format!(
            "[plugins]\nallow_files_under = [\"{}\"]\nallow_env = [\"AGENTHOOK_TEST_*\"]\n",
            dir.path().display()
        ))
        .unwrap()
        .plugins;
        let m = Manifest::parse(&text, &allowed).unwrap();
        assert_eq!(
            m.grants.http[0].headers[0].1.expose(),
            "Bearer sk_from_file"
        );
        assert_eq!(m.config["k"].expose(), "sk_from_file");

        // Allowed but unset: named like any unset variable; not allowed: refused.
        let e = Manifest::parse("[config]\nk = \"env:AGENTHOOK_TEST_NOPE_2\"\n", &allowed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.k") && e.contains("AGENTHOOK_TEST_NOPE_2 is not set"),
            "{e}"
        );
        let e = Manifest::parse("[config]\nk = \"env:HOME\"\n", &allowed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.k")
                && e.contains("`env:HOME` is refused")
                && e.contains("plugins.allow_env"),
            "{e}"
        );
    }

    #[test]
    fn defaults_deny_everything_and_subscribe_to_nothing() {
        let m = parse("").unwrap();
        assert!(!m.grants.kv);
        assert!(m.grants.http.is_empty() && m.grants.email.is_empty());
        assert!(!m.grants.emit_allows("anything"));
        assert!(!m.subscribes_to("demo", "x"));
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.retry, RetryPolicy::default());
    }

    #[test]
    fn omitted_types_match_every_type() {
        let m = parse("[[subscribe]]\nsource = \"demo\"\n").unwrap();
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
            (
                "[grants]\nhttp = [\"ftp://x.example.com\"]\n",
                "grants.http[0]",
            ),
            (
                "[grants]\nhttp = [\"https://a.example.com/path\"]\n",
                "grants.http[0]",
            ),
            ("[grants]\nhttp = [\"https://*.com\"]\n", "grants.http[0]"),
            ("[grants]\nhttp = [\"https://a.*.com\"]\n", "grants.http[0]"),
            (
                "[grants]\nhttp = [\"http://127.0.0.1:0\"]\n",
                "grants.http[0]",
            ),
            (
                "[grants]\nhttp = [\"https://a.example.com\"]\n[grants.http_headers.\"https://b.example.com\"]\nx = \"1\"\n",
                "grants.http_headers.\"https://b.example.com\"",
            ),
            (
                "[grants]\nemail = [\"not-an-address\"]\n",
                "grants.email[0]",
            ),
            (
                "[grants]\nemail = [\"a*@example.com\"]\n",
                "grants.email[0]",
            ),
            ("[grants]\nemit = [\"lead.[\"]\n", "grants.emit[0]"),
            (
                "[[subscribe]]\nsource = \"plugin:Bad\"\n",
                "subscribe[0].source",
            ),
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
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?} gave {e}");
        }
    }
}
