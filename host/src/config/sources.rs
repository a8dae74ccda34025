//! `[sources.NAME]`: the webhook senders the host accepts, each served at
//! `POST /hooks/NAME` — its signature scheme, secrets, timestamp tolerance, the generic
//! `hmac-sha256` settings, its JSON Schemas, its rate limit and which headers it keeps.
//! Only validated and read here; the verifiers, compiled schemas, header filters and
//! rate limiters are built from it once, by `ingress`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::standards::{RawStandard, StandardSettings};
use super::{ConfigError, Secret, validate_name};

pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

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
    /// Requests per second accepted from this source (a burst of one second's worth);
    /// `None`: unlimited.
    pub max_per_second: Option<u32>,
    /// Header names (lower-case) stored and shown to plugins although ingress drops
    /// them by default (credentials, the scheme's signature headers).
    pub keep_headers: Vec<String>,
    /// Header names (lower-case) dropped besides the default ones.
    pub drop_headers: Vec<String>,
    /// The settings only some of the newer schemes use (token auth's id and type,
    /// CloudEvents' handshake, Twilio's URL, A2A's JWT checks).
    pub standard: StandardSettings,
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
            max_per_second: None,
            keep_headers: Vec::new(),
            drop_headers: Vec::new(),
            standard: StandardSettings::default(),
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
    /// A sender that cannot sign: `Authorization: Bearer <token>`.
    Bearer,
    /// A sender that cannot sign: `Authorization: Basic <user:password>`.
    Basic,
    /// CloudEvents over HTTP (binary, structured and batch mode), with token or
    /// Standard Webhooks authentication.
    Cloudevents,
    /// Twilio: `X-Twilio-Signature`, HMAC-SHA1 over the URL and sorted form fields.
    Twilio,
    /// Discord interactions: Ed25519 over timestamp + body; `PING` answered `PONG`.
    Discord,
    /// PagerDuty v3 webhooks: `X-PagerDuty-Signature: v1=..`.
    Pagerduty,
    /// Linear: `Linear-Signature` (hex HMAC-SHA256) and a signed `webhookTimestamp`.
    Linear,
    /// A2A push notifications: the notification token, and a JWT where configured.
    A2a,
    /// MCP event webhooks (draft): Standard Webhooks signed, with the subscription id.
    McpEvents,
}

impl Scheme {
    /// Every scheme, in the order the docs list them.
    pub const ALL: [Scheme; 15] = [
        Scheme::StandardWebhooks,
        Scheme::Stripe,
        Scheme::Github,
        Scheme::Slack,
        Scheme::Shopify,
        Scheme::HmacSha256,
        Scheme::Bearer,
        Scheme::Basic,
        Scheme::Cloudevents,
        Scheme::Twilio,
        Scheme::Discord,
        Scheme::Pagerduty,
        Scheme::Linear,
        Scheme::A2a,
        Scheme::McpEvents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe => "stripe",
            Scheme::Github => "github",
            Scheme::Slack => "slack",
            Scheme::Shopify => "shopify",
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Bearer => "bearer",
            Scheme::Basic => "basic",
            Scheme::Cloudevents => "cloudevents",
            Scheme::Twilio => "twilio",
            Scheme::Discord => "discord",
            Scheme::Pagerduty => "pagerduty",
            Scheme::Linear => "linear",
            Scheme::A2a => "a2a",
            Scheme::McpEvents => "mcp-events",
        }
    }

    /// Whether the sender signs a timestamp, so that `tolerance_secs` means something.
    /// (`hmac-sha256` does when it has a `timestamp_header`, `cloudevents` with
    /// `auth = "standard-webhooks"`; for `a2a` it is the JWT's `iat` replay window.)
    pub fn signs_timestamp(self) -> bool {
        matches!(
            self,
            Scheme::StandardWebhooks
                | Scheme::Stripe
                | Scheme::Slack
                | Scheme::HmacSha256
                | Scheme::Cloudevents
                | Scheme::Discord
                | Scheme::Linear
                | Scheme::A2a
                | Scheme::McpEvents
        )
    }

    /// Whether the scheme reads the event id and type from `id_*`/`type_*` settings.
    pub fn locates_id_and_type(self) -> bool {
        matches!(self, Scheme::HmacSha256 | Scheme::Bearer | Scheme::Basic)
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

/// A `[sources.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    scheme: String,
    secrets: Vec<String>,
    tolerance_secs: Option<u64>,
    schema: Option<String>,
    schemas: Option<BTreeMap<String, String>>,
    max_per_second: Option<u32>,
    #[serde(default)]
    keep_headers: Vec<String>,
    #[serde(default)]
    drop_headers: Vec<String>,
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
    // the newer schemes' own settings (see `standards`):
    auth: Option<super::CloudEventsAuth>,
    allowed_origins: Option<Vec<String>>,
    allowed_rate: Option<u32>,
    public_url: Option<String>,
    jwks: Option<String>,
    jwt_algorithms: Option<Vec<String>>,
    jwt_audience: Option<String>,
}

impl RawSource {
    /// Validate one `[sources.NAME]` table and resolve its secrets and schema files.
    pub(super) fn resolve(&self, name: &str) -> Result<SourceConfig, ConfigError> {
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

        let locates = scheme.locates_id_and_type();
        let hmac = if scheme == Scheme::HmacSha256 {
            Some(self.hmac_config(&field)?)
        } else {
            let used = |key: &str| locates && (key.starts_with("id_") || key.starts_with("type_"));
            if let Some(key) = self
                .hmac_keys()
                .find(|(k, set)| *set && !used(k))
                .map(|(k, _)| k)
            {
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
        let (id, event_type) = match scheme {
            Scheme::Bearer | Scheme::Basic => self.locators(&field)?,
            _ => (None, None),
        };
        let standard = RawStandard {
            auth: self.auth,
            allowed_origins: self.allowed_origins.clone(),
            allowed_rate: self.allowed_rate,
            public_url: self.public_url.clone(),
            jwks: self.jwks.clone(),
            jwt_algorithms: self.jwt_algorithms.clone(),
            jwt_audience: self.jwt_audience.clone(),
        }
        .resolve(&field, scheme, id, event_type)?;
        let timestamped = match &hmac {
            Some(h) => h.timestamp_header.is_some(),
            None if scheme == Scheme::Cloudevents => {
                standard.auth == Some(super::CloudEventsAuth::StandardWebhooks)
            }
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

        if let Some(rate) = self.max_per_second
            && !(1..=MAX_PER_SECOND_LIMIT).contains(&rate)
        {
            return Err(ConfigError::invalid(
                format!("{field}.max_per_second"),
                format!("must be between 1 and {MAX_PER_SECOND_LIMIT}, got {rate}"),
            ));
        }
        let keep_headers = header_names(&self.keep_headers, &format!("{field}.keep_headers"))?;
        let drop_headers = header_names(&self.drop_headers, &format!("{field}.drop_headers"))?;
        if let Some((i, name)) = drop_headers
            .iter()
            .enumerate()
            .find(|(_, n)| keep_headers.contains(n))
        {
            return Err(ConfigError::invalid(
                format!("{field}.drop_headers[{i}]"),
                format!("`{name}` is in keep_headers too; keep it or drop it"),
            ));
        }

        Ok(SourceConfig {
            name: name.to_string(),
            scheme,
            secrets,
            tolerance_secs,
            hmac,
            schemas,
            max_per_second: self.max_per_second,
            keep_headers,
            drop_headers,
            standard,
        })
    }

    /// `id_header`/`id_pointer` and `type_header`/`type_pointer`: at most one of each.
    fn locators(&self, field: &str) -> Result<(Option<Locator>, Option<Locator>), ConfigError> {
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
        Ok((
            locator(&self.id_header, &self.id_pointer, "id")?,
            locator(&self.type_header, &self.type_pointer, "type")?,
        ))
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
        let (id, event_type) = self.locators(field)?;
        Ok(HmacConfig {
            signature_header: signature_header.clone(),
            signature_prefix: self.signature_prefix.clone().unwrap_or_default(),
            signature_encoding: self.signature_encoding.unwrap_or(SignatureEncoding::Hex),
            timestamp_header: self.timestamp_header.clone(),
            signed_payload: self
                .signed_payload
                .clone()
                .unwrap_or_else(|| "{body}".into()),
            id,
            event_type,
        })
    }
}

/// The largest `max_per_second`: far beyond what one host ingests.
const MAX_PER_SECOND_LIMIT: u32 = 1_000_000;

/// Header names as written in `keep_headers`/`drop_headers`, lower-cased (header names
/// are case-insensitive); each must be a valid HTTP header name.
fn header_names(names: &[String], field: &str) -> Result<Vec<String>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let lower = name.to_ascii_lowercase();
            http::HeaderName::from_bytes(lower.as_bytes())
                .map(|_| lower)
                .map_err(|_| {
                    ConfigError::invalid(
                        format!("{field}[{i}]"),
                        format!("`{name}` is not an HTTP header name"),
                    )
                })
        })
        .collect()
}

/// Read a `file:PATH` JSON Schema. Whether it is a valid schema is checked when the
/// source's verifier compiles it, in `Host::prepare`, before anything listens.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn unknown_scheme_names_the_field() {
        let e = parse("[sources.a]\nscheme = \"paypal\"\nsecrets = [\"x\"]\n").unwrap_err();
        assert!(e.to_string().contains("sources.a.scheme"), "{e}");
        assert!(e.to_string().contains("paypal"), "{e}");
    }

    #[test]
    fn every_scheme_parses() {
        for scheme in Scheme::ALL {
            let extra = match scheme {
                Scheme::HmacSha256 => "signature_header = \"X-Sig\"\n",
                Scheme::Twilio => "public_url = \"https://hooks.example.com\"\n",
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

    /// (A file that is JSON but not a usable schema is refused when ingress compiles
    /// it: `ingress::Verifiers::build`.)
    #[test]
    fn schemas_load_from_files_and_unreadable_ones_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"type": "object", "required": ["id"]}"#).unwrap();
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
        let e = parse(&text(&good, &not_json)).unwrap_err().to_string();
        assert!(e.contains("sources.a.schemas.\"payment.*\""), "{e}");
        let e = parse(&text(&not_json, &good)).unwrap_err().to_string();
        assert!(
            e.contains("sources.a.schema") && e.contains("not JSON"),
            "{e}"
        );
    }

    #[test]
    fn rate_and_header_lists_parse_lower_cased() {
        let c = parse(
            "[sources.a]\nscheme = \"github\"\nsecrets = [\"s\"]\nmax_per_second = 500\nkeep_headers = [\"X-Hub-Signature-256\"]\ndrop_headers = [\"X-Internal-Trace\", \"user-agent\"]\n",
        )
        .unwrap();
        let s = &c.sources["a"];
        assert_eq!(s.max_per_second, Some(500));
        assert_eq!(s.keep_headers, ["x-hub-signature-256"]);
        assert_eq!(s.drop_headers, ["x-internal-trace", "user-agent"]);
        let c = parse("[sources.a]\nscheme = \"github\"\nsecrets = [\"s\"]\n").unwrap();
        assert_eq!(c.sources["a"].max_per_second, None);
        assert!(c.sources["a"].keep_headers.is_empty());
    }

    #[test]
    fn bad_rates_and_header_names_are_refused_naming_the_field() {
        for (text, field) in [
            ("max_per_second = 0", "sources.a.max_per_second"),
            ("max_per_second = 2000000", "sources.a.max_per_second"),
            (
                "keep_headers = [\"ok\", \"bad name\"]",
                "sources.a.keep_headers[1]",
            ),
            ("drop_headers = [\"x:y\"]", "sources.a.drop_headers[0]"),
            ("drop_headers = [\"\"]", "sources.a.drop_headers[0]"),
            (
                "keep_headers = [\"Cookie\"]\ndrop_headers = [\"x-a\", \"cookie\"]",
                "sources.a.drop_headers[1]",
            ),
        ] {
            let e = parse(&format!(
                "[sources.a]\nscheme = \"github\"\nsecrets = [\"s\"]\n{text}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn the_newer_schemes_settings_parse() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
        let c = parse(&format!(
            r#"[sources.alerts]
scheme = "bearer"
secrets = ["t1", "t2"]
id_pointer = "/groupKey"
type_header = "X-Kind"

[sources.ce]
scheme = "cloudevents"
auth = "standard-webhooks"
secrets = ["whsec_eA=="]
allowed_origins = ["eventgrid.azure.net", "*"]
allowed_rate = 60
tolerance_secs = 30

[sources.sms]
scheme = "twilio"
secrets = ["tok"]
public_url = "https://hooks.example.com:8443"

[sources.agents]
scheme = "a2a"
secrets = ["tok"]
jwks = "file:{}"
jwt_algorithms = ["ES256"]
jwt_audience = "https://hooks.example.com/hooks/agents"
"#,
            jwks.display()
        ))
        .unwrap();
        let alerts = &c.sources["alerts"].standard;
        assert_eq!(alerts.id, Some(Locator::Pointer("/groupKey".into())));
        assert_eq!(alerts.event_type, Some(Locator::Header("X-Kind".into())));
        let ce = &c.sources["ce"];
        assert_eq!(
            ce.standard.auth,
            Some(super::super::CloudEventsAuth::StandardWebhooks)
        );
        assert_eq!(ce.standard.allowed_origins.len(), 2);
        assert_eq!(ce.tolerance_secs, 30);
        assert_eq!(
            c.sources["sms"].standard.public_url.as_deref(),
            Some("https://hooks.example.com:8443")
        );
        let jwt = c.sources["agents"].standard.jwt.as_ref().unwrap();
        assert_eq!(jwt.algorithms, ["ES256"]);
    }

    #[test]
    fn the_newer_schemes_bad_settings_name_the_field() {
        for (text, field) in [
            (
                "scheme = \"stripe\"\nsecrets = [\"s\"]\nallowed_origins = [\"a.example\"]",
                "sources.a.allowed_origins",
            ),
            (
                "scheme = \"github\"\nsecrets = [\"s\"]\npublic_url = \"https://x.example\"",
                "sources.a.public_url",
            ),
            (
                "scheme = \"bearer\"\nsecrets = [\"s\"]\nauth = \"basic\"",
                "sources.a.auth",
            ),
            (
                "scheme = \"bearer\"\nsecrets = [\"s\"]\nsignature_header = \"X\"",
                "sources.a.signature_header",
            ),
            (
                "scheme = \"bearer\"\nsecrets = [\"s\"]\ntolerance_secs = 5",
                "sources.a.tolerance_secs",
            ),
            (
                "scheme = \"cloudevents\"\nsecrets = [\"s\"]\ntolerance_secs = 5",
                "sources.a.tolerance_secs",
            ),
            (
                "scheme = \"cloudevents\"\nsecrets = [\"s\"]\nallowed_origins = [\"a b\"]",
                "sources.a.allowed_origins[0]",
            ),
            (
                "scheme = \"cloudevents\"\nsecrets = [\"s\"]\nallowed_rate = 0",
                "sources.a.allowed_rate",
            ),
            (
                "scheme = \"twilio\"\nsecrets = [\"s\"]",
                "sources.a.public_url",
            ),
            (
                "scheme = \"twilio\"\nsecrets = [\"s\"]\npublic_url = \"https://x.example/hooks\"",
                "sources.a.public_url",
            ),
            (
                "scheme = \"twilio\"\nsecrets = [\"s\"]\npublic_url = \"ftp://x.example\"",
                "sources.a.public_url",
            ),
            (
                "scheme = \"a2a\"\nsecrets = [\"s\"]\njwks = \"jwks.json\"",
                "sources.a.jwks",
            ),
            (
                "scheme = \"a2a\"\nsecrets = [\"s\"]\njwks = \"file:/nonexistent/jwks.json\"",
                "sources.a.jwks",
            ),
            (
                "scheme = \"a2a\"\nsecrets = [\"s\"]\njwt_audience = \"x\"",
                "sources.a.jwt_audience",
            ),
            (
                "scheme = \"stripe\"\nsecrets = [\"s\"]\njwt_algorithms = [\"ES256\"]",
                "sources.a.jwt_algorithms",
            ),
        ] {
            let e = parse(&format!("[sources.a]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
        let e = parse(&format!(
            "[sources.a]\nscheme = \"a2a\"\nsecrets = [\"s\"]\njwks = \"file:{}\"\njwt_algorithms = [\"HS256\"]\n",
            jwks.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("sources.a.jwt_algorithms[0]"), "{e}");
    }

    #[test]
    fn bad_names_are_refused() {
        let e = parse(
            "[sources.\"Bad/Name\"]\nscheme = \"standard-webhooks\"\nsecrets = [\"whsec_eA==\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a valid name"), "{e}");
    }
}
