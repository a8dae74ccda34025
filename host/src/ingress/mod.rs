//! Ingress: `POST /hooks/{source}`. Applies the source's rate limit, reads the body
//! within its bounds (size, deadline, the shared budget of buffered bytes), verifies the
//! sender's signature and timestamp on the raw bytes, extracts the event id and type,
//! checks the optional JSON Schema, drops the headers that must not be kept
//! (credentials, signatures), and acknowledges only after the event and its deliveries
//! are durably stored.
//!
//! One file per signature scheme, each with the sender's signing function beside its
//! verifier (for `agenthook send`). Nothing here decides what a plugin does with the
//! event, nothing refused here is stored, and no secret or computed signature is ever
//! logged or sent back.

pub mod a2a;
pub mod basic;
pub mod bearer;
mod body;
pub mod cloudevents;
pub mod credentials;
pub mod discord;
pub mod github;
pub mod headers;
pub mod hmac;
pub mod linear;
pub mod mcp_events;
pub mod pagerduty;
#[cfg(test)]
mod proptests;
mod rate;
pub mod schema;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
#[cfg(test)]
mod testdata;
pub mod twilio;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Response, StatusCode, header};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::clock::Clock;
use crate::clock::now_ms;
use crate::config::{Config, ConfigError, Scheme, Secret, SourceConfig};
use crate::health::Health;
use crate::http::{self as web, Body, BodyBudget, Request};
use crate::metrics::ingress::{CHALLENGE, DUPLICATE, IngressMetrics, STORED};
use crate::plugins::Registry;
use crate::store::{EventMeta, Ingested, NewEvent, Refusal, Store};

/// What a verified request told us about the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's id for the event: the dedup key within the source.
    pub event_id: String,
    pub event_type: String,
}

/// What a verified request asks of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// An event to store and dispatch.
    Event(Verified),
    /// Several events in one request (a CloudEvents batch), each stored on its own
    /// with its own body and deduplicated on its own id.
    Batch(Vec<Entry>),
    /// A handshake the sender expects answered, not stored: Slack's `url_verification`
    /// (the challenge to echo back).
    Challenge(String),
    /// A handshake answered with this JSON, not stored (Discord's `PING` → `PONG`).
    Reply(Value),
}

/// One event of a batch: what it is and the bytes stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub verified: Verified,
    pub body: Vec<u8>,
}

/// Why a request was refused: the status, a stable machine-readable reason, and a
/// message that tells an operator what to fix without helping an attacker (it never
/// contains a secret or a computed signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
    /// When to try again (`Retry-After`, in seconds), for refusals that pass.
    pub retry_after_secs: Option<u64>,
}

impl Rejection {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            reason,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection::new(StatusCode::UNAUTHORIZED, reason, message)
    }

    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection::new(StatusCode::BAD_REQUEST, reason, message)
    }

    /// A refusal the sender should retry after `secs`.
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    fn signature_mismatch(header: &str) -> Self {
        Rejection::unauthorized(
            "signature_mismatch",
            format!("no {header} signature matches any configured secret"),
        )
    }

    fn malformed_body(message: impl Into<String>) -> Self {
        Rejection::bad_request("malformed_body", message)
    }
}

/// A source's verifier, built once from its config: the scheme's check, the source's
/// JSON Schemas, and which headers it keeps.
pub struct Verifier {
    scheme: SchemeVerifier,
    schemas: schema::Schemas,
    headers: headers::HeaderFilter,
}

enum SchemeVerifier {
    StandardWebhooks(standard_webhooks::Verifier),
    Stripe(stripe::Verifier),
    Github(github::Verifier),
    Slack(slack::Verifier),
    Shopify(shopify::Verifier),
    Hmac(hmac::Verifier),
    Bearer(bearer::Verifier),
    Basic(basic::Verifier),
    CloudEvents(cloudevents::Verifier),
    Twilio(twilio::Verifier),
    Discord(discord::Verifier),
    PagerDuty(pagerduty::Verifier),
    Linear(linear::Verifier),
    A2a(a2a::Verifier),
    McpEvents(mcp_events::Verifier),
}

impl Verifier {
    /// Decode the source's secrets and compile its schemas; a bad secret or schema is
    /// a config error naming the field.
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let scheme = match source.scheme {
            Scheme::StandardWebhooks => {
                SchemeVerifier::StandardWebhooks(standard_webhooks::Verifier::new(source)?)
            }
            Scheme::Stripe => SchemeVerifier::Stripe(stripe::Verifier::new(source)?),
            Scheme::Github => SchemeVerifier::Github(github::Verifier::new(source)?),
            Scheme::Slack => SchemeVerifier::Slack(slack::Verifier::new(source)?),
            Scheme::Shopify => SchemeVerifier::Shopify(shopify::Verifier::new(source)?),
            Scheme::HmacSha256 => SchemeVerifier::Hmac(hmac::Verifier::new(source)?),
            Scheme::Bearer => SchemeVerifier::Bearer(bearer::Verifier::new(source)?),
            Scheme::Basic => SchemeVerifier::Basic(basic::Verifier::new(source)?),
            Scheme::Cloudevents => SchemeVerifier::CloudEvents(cloudevents::Verifier::new(source)?),
            Scheme::Twilio => SchemeVerifier::Twilio(twilio::Verifier::new(source)?),
            Scheme::Discord => SchemeVerifier::Discord(discord::Verifier::new(source)?),
            Scheme::Pagerduty => SchemeVerifier::PagerDuty(pagerduty::Verifier::new(source)?),
            Scheme::Linear => SchemeVerifier::Linear(linear::Verifier::new(source)?),
            Scheme::A2a => SchemeVerifier::A2a(a2a::Verifier::new(source)?),
            Scheme::McpEvents => SchemeVerifier::McpEvents(mcp_events::Verifier::new(source)?),
        };
        let headers = headers::HeaderFilter::new(source, scheme.signature_headers())?;
        Ok(Verifier {
            scheme,
            schemas: schema::Schemas::new(source)?,
            headers,
        })
    }

    /// The headers of a verified request that are stored and shown to plugins: all
    /// but credentials and signatures (and what the source drops or keeps besides).
    pub fn kept_headers(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        self.headers.kept(headers)
    }

    /// Verify a request's raw headers and body as received. `now_secs` is the current
    /// Unix time (injected so tests can pin it). Never panics, whatever the input.
    /// (Twilio signs the request's URL too: see [`Verifier::verify_at`].)
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, Rejection> {
        self.verify_at(&http::Uri::from_static("/"), headers, body, now_secs)
    }

    /// [`Verifier::verify`] of a request sent to `uri` (its path and query).
    pub fn verify_at(
        &self,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, Rejection> {
        let verified = match &self.scheme {
            SchemeVerifier::StandardWebhooks(v) => v.verify(headers, body, now_secs)?,
            SchemeVerifier::Stripe(v) => v.verify(headers, body, now_secs)?,
            SchemeVerifier::Github(v) => v.verify(headers, body)?,
            SchemeVerifier::Slack(v) => match v.verify(headers, body, now_secs)? {
                Accepted::Event(e) => e,
                challenge => return Ok(challenge),
            },
            SchemeVerifier::Shopify(v) => v.verify(headers, body)?,
            SchemeVerifier::Hmac(v) => v.verify(headers, body, now_secs)?,
            SchemeVerifier::Bearer(v) => v.verify(headers, body)?,
            SchemeVerifier::Basic(v) => v.verify(headers, body)?,
            SchemeVerifier::CloudEvents(v) => match v.verify(headers, body, now_secs)? {
                Accepted::Event(e) => e,
                Accepted::Batch(entries) => {
                    for entry in &entries {
                        self.schemas
                            .check(&entry.verified.event_type, &entry.body, false)?;
                    }
                    return Ok(Accepted::Batch(entries));
                }
                other => return Ok(other),
            },
            SchemeVerifier::Twilio(v) => v.verify(uri, headers, body)?,
            SchemeVerifier::Discord(v) => match v.verify(headers, body, now_secs)? {
                Accepted::Event(e) => e,
                other => return Ok(other),
            },
            SchemeVerifier::PagerDuty(v) => v.verify(headers, body)?,
            SchemeVerifier::Linear(v) => v.verify(headers, body, now_secs)?,
            SchemeVerifier::A2a(v) => v.verify(headers, body, now_secs)?,
            SchemeVerifier::McpEvents(v) => match v.verify(headers, body, now_secs)? {
                Accepted::Event(e) => e,
                other => return Ok(other),
            },
        };
        let forms = matches!(
            self.scheme,
            SchemeVerifier::Github(_) | SchemeVerifier::Slack(_) | SchemeVerifier::Twilio(_)
        );
        self.schemas.check(&verified.event_type, body, forms)?;
        Ok(Accepted::Event(verified))
    }

    /// The answer to a stored (or duplicate) event when its sender expects more than
    /// ingress's own: Discord wants an interaction response.
    pub fn stored_reply(&self, event_type: &str) -> Option<Value> {
        match &self.scheme {
            SchemeVerifier::Discord(_) => discord::deferred_response(event_type),
            _ => None,
        }
    }

    /// The CloudEvents abuse-protection handshake (`OPTIONS`): the headers to answer
    /// with, or why not. `None`: the source's scheme has no such handshake.
    pub fn handshake(
        &self,
        headers: &HeaderMap,
    ) -> Option<Result<Vec<(&'static str, String)>, Rejection>> {
        match &self.scheme {
            SchemeVerifier::CloudEvents(v) => Some(v.handshake(headers)),
            _ => None,
        }
    }
}

impl SchemeVerifier {
    /// The headers that carry the sender's signature: verification reads them, and
    /// nothing after it needs them.
    fn signature_headers(&self) -> Vec<String> {
        let fixed: &[&str] = match self {
            SchemeVerifier::StandardWebhooks(_) => standard_webhooks::SIGNATURE_HEADERS,
            SchemeVerifier::Stripe(_) => stripe::SIGNATURE_HEADERS,
            SchemeVerifier::Github(_) => github::SIGNATURE_HEADERS,
            SchemeVerifier::Slack(_) => slack::SIGNATURE_HEADERS,
            SchemeVerifier::Shopify(_) => shopify::SIGNATURE_HEADERS,
            SchemeVerifier::Hmac(v) => return vec![v.signature_header().as_str().to_string()],
            SchemeVerifier::Bearer(_) => bearer::SIGNATURE_HEADERS,
            SchemeVerifier::Basic(_) => basic::SIGNATURE_HEADERS,
            SchemeVerifier::CloudEvents(_) => cloudevents::SIGNATURE_HEADERS,
            SchemeVerifier::Twilio(_) => twilio::SIGNATURE_HEADERS,
            SchemeVerifier::Discord(_) => discord::SIGNATURE_HEADERS,
            SchemeVerifier::PagerDuty(_) => pagerduty::SIGNATURE_HEADERS,
            SchemeVerifier::Linear(_) => linear::SIGNATURE_HEADERS,
            SchemeVerifier::A2a(_) => a2a::SIGNATURE_HEADERS,
            SchemeVerifier::McpEvents(_) => mcp_events::SIGNATURE_HEADERS,
        };
        fixed.iter().map(|h| h.to_string()).collect()
    }
}

/// The secrets of a source used as HMAC keys exactly as configured (every scheme but
/// Standard Webhooks, whose secrets are base64).
fn raw_keys(source: &SourceConfig) -> Vec<Vec<u8>> {
    source
        .secrets
        .iter()
        .map(|s| s.expose().as_bytes().to_vec())
        .collect()
}

/// Check a source's secrets and settings without keeping its verifier (`agenthook send`
/// checks a source built from its flags with it).
pub fn validate_source(source: &SourceConfig) -> Result<(), ConfigError> {
    Verifier::new(source).map(|_| ())
}

/// Every configured source's verifier by source name, built once at start-up (in
/// `Host::prepare`, before any port binds), so a bad secret or schema stops the host
/// with a config error rather than answering 401 to every request.
pub struct Verifiers(HashMap<String, Verifier>);

impl Verifiers {
    pub fn build(sources: &BTreeMap<String, SourceConfig>) -> Result<Verifiers, ConfigError> {
        sources
            .iter()
            .map(|(name, source)| Ok((name.clone(), Verifier::new(source)?)))
            .collect::<Result<_, ConfigError>>()
            .map(Verifiers)
    }

    /// The verifier of the source named in the URL, if it is configured.
    pub fn get(&self, source: &str) -> Option<&Verifier> {
        self.0.get(source)
    }
}

// ---- signing, for `agenthook send` ------------------------------------------------

/// What the simulator wants sent.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The event id, where the scheme carries it in a header (`None`: a fresh one).
    /// Where the scheme carries it in the body, the body's value is replaced.
    pub event_id: Option<&'a str>,
    /// The event type, likewise.
    pub event_type: Option<&'a str>,
    /// The Unix time to sign with.
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// A request signed exactly as the sender would sign it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The sender's headers, in the order it sends them.
    pub headers: Vec<(String, String)>,
    /// The body; differs from the input only where `--id`/`--type` had to be written
    /// into it.
    pub body: Vec<u8>,
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the secret cannot be used for {scheme}: {message}")]
    Secret {
        scheme: &'static str,
        message: String,
    },
    #[error("{0}")]
    Payload(String),
}

/// Sign `out` for `source` with `secret`, exactly as its sender would: the sender's
/// headers, a fresh id where the scheme carries one in a header, `Content-Type`.
pub fn sign(source: &SourceConfig, secret: &Secret, out: &Outgoing) -> Result<Signed, SignError> {
    let signed = match source.scheme {
        Scheme::StandardWebhooks => standard_webhooks::sign(secret.expose(), out)?,
        Scheme::Stripe => stripe::sign(secret.expose(), out)?,
        Scheme::Github => github::sign(secret.expose(), out)?,
        Scheme::Slack => slack::sign(secret.expose(), out)?,
        Scheme::Shopify => shopify::sign(secret.expose(), out)?,
        Scheme::HmacSha256 => {
            let settings = source.hmac.as_ref().ok_or_else(|| {
                SignError::Payload("hmac-sha256 needs its header settings".into())
            })?;
            hmac::sign(settings, secret.expose(), out)?
        }
        Scheme::Bearer => bearer::sign(source, secret.expose(), out)?,
        Scheme::Basic => basic::sign(source, secret.expose(), out)?,
        Scheme::Cloudevents => cloudevents::sign(source, secret.expose(), out)?,
        Scheme::Twilio => twilio::sign(source, secret.expose(), out)?,
        Scheme::Discord => discord::sign(secret.expose(), out)?,
        Scheme::Pagerduty => pagerduty::sign(secret.expose(), out)?,
        Scheme::Linear => linear::sign(secret.expose(), out)?,
        Scheme::A2a => a2a::sign(secret.expose(), out)?,
        Scheme::McpEvents => mcp_events::sign(secret.expose(), out)?,
    };
    let mut headers = signed.headers;
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        return Ok(Signed {
            headers,
            body: signed.body,
        });
    }
    let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&signed.body).is_ok() {
        "application/json"
    } else if std::str::from_utf8(&signed.body).is_ok_and(|s| s.contains('=')) {
        "application/x-www-form-urlencoded"
    } else {
        "application/octet-stream"
    };
    headers.insert(0, ("Content-Type".into(), content_type.into()));
    Ok(Signed {
        headers,
        body: signed.body,
    })
}

/// A fresh random id in hex, with the sender's prefix.
fn fresh_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Write values at JSON pointers into a JSON object body (intermediate objects are
/// created), for the simulator's `--id`/`--type` where the scheme carries them in the
/// body. With nothing to write the body is returned as it is, byte for byte.
fn edit_json(body: &[u8], fields: &[(&str, Option<&str>)]) -> Result<Vec<u8>, SignError> {
    if fields.iter().all(|(_, v)| v.is_none()) {
        return Ok(body.to_vec());
    }
    let mut doc: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Err(SignError::Payload(
                "the id or type goes into the JSON body, so the body must be a JSON object".into(),
            ));
        }
    };
    for (pointer, value) in fields {
        if let Some(value) = value {
            set_pointer(&mut doc, pointer, Value::String(value.to_string()))?;
        }
    }
    serde_json::to_vec(&doc).map_err(|e| SignError::Payload(e.to_string()))
}

fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> Result<(), SignError> {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let not_object =
        || SignError::Payload(format!("cannot write {pointer}: not inside a JSON object"));
    let Some((last, parents)) = tokens.split_last().filter(|_| pointer.starts_with('/')) else {
        return Err(not_object());
    };
    let mut cur = doc;
    for token in parents {
        let Value::Object(map) = cur else {
            return Err(not_object());
        };
        cur = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    let Value::Object(map) = cur else {
        return Err(not_object());
    };
    map.insert(last.clone(), value);
    Ok(())
}

/// Whether a JSON body has a string at `pointer`.
fn has_string(body: &[u8], pointer: &str) -> bool {
    json(body).is_some_and(|d| d.pointer(pointer).is_some_and(Value::is_string))
}

// ---- shared pieces of the schemes -------------------------------------------------

type HmacSha256 = ::hmac::Hmac<Sha256>;

/// The longest event id or type accepted: they are keys and labels, not payloads.
const MAX_LABEL_LEN: usize = 256;

/// The length of an HMAC-SHA256.
const MAC_LEN: usize = 32;

/// A hex HMAC-SHA256 as presented in a header: 64 hex digits, else `None`.
fn hex_mac(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok().filter(|s| s.len() == MAC_LEN)
}

/// HMAC-SHA256 over the concatenation of `parts`.
fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    use ::hmac::Mac as _;
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as ::hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Constant-time comparison of a computed MAC with a presented signature.
fn mac_matches(mac: &HmacSha256, presented: &[u8]) -> bool {
    ::hmac::Mac::verify_slice(mac.clone(), presented).is_ok()
}

/// The hex HMAC-SHA256 of `parts`, for signing.
fn mac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(::hmac::Mac::finalize(mac(key, parts)).into_bytes())
}

/// The base64 HMAC-SHA256 of `parts`, for signing.
fn mac_base64(key: &[u8], parts: &[&[u8]]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(::hmac::Mac::finalize(mac(key, parts)).into_bytes())
}

/// A header sent at most once, as text. `Ok(None)` when absent.
fn optional_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::bad_request(
            "duplicate_header",
            format!("{name} is sent more than once"),
        ));
    }
    value.to_str().map(Some).map_err(|_| {
        Rejection::bad_request("malformed_header", format!("{name} is not visible ASCII"))
    })
}

/// A header that must be sent exactly once. Missing is 401 for the headers that
/// authenticate (signature, timestamp) and 400 for the others.
fn required_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
    authenticates: bool,
) -> Result<&'a str, Rejection> {
    optional_header(headers, name)?.ok_or_else(|| {
        let status = if authenticates {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Rejection::new(
            status,
            "missing_header",
            format!("{name} header is missing"),
        )
    })
}

/// A Unix timestamp in seconds: plain ASCII digits, nothing else (the text is signed
/// as sent, so `+1` or ` 1` must not pass as `1`).
fn parse_timestamp(text: &str, name: &str) -> Result<i64, Rejection> {
    let ok = !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten().ok_or_else(|| {
        Rejection::bad_request(
            "malformed_header",
            format!("{name} is not a Unix timestamp in seconds"),
        )
    })
}

/// The signed timestamp must be within `tolerance_secs` of now, both directions; the
/// edges themselves are inside.
fn check_tolerance(
    ts: i64,
    now_secs: i64,
    tolerance_secs: u64,
    name: &str,
) -> Result<(), Rejection> {
    if now_secs.abs_diff(ts) > tolerance_secs {
        return Err(Rejection::unauthorized(
            "timestamp_out_of_tolerance",
            format!("{name} is more than {tolerance_secs} s from the host's clock"),
        ));
    }
    Ok(())
}

/// Check an id or type taken from the request: 1 to 256 characters, no control
/// characters. `what` names where it came from.
fn label(value: &str, what: &str, reason: &'static str) -> Result<String, Rejection> {
    if value.is_empty() || value.len() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
        return Err(Rejection::bad_request(
            reason,
            format!("{what} must be 1 to {MAX_LABEL_LEN} characters without control characters"),
        ));
    }
    Ok(value.to_string())
}

/// An id or type from a header.
fn header_label(headers: &HeaderMap, name: &str) -> Result<String, Rejection> {
    label(
        required_header(headers, name, false)?,
        name,
        "malformed_header",
    )
}

/// The body as JSON, or `None`.
fn json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// A string at a JSON pointer, checked as an id or type.
fn json_label(doc: Option<&Value>, pointer: &str, what: &str) -> Result<String, Rejection> {
    match doc.and_then(|d| d.pointer(pointer)) {
        Some(Value::String(s)) => label(s, what, "malformed_body"),
        _ => Err(Rejection::malformed_body(format!(
            "the body has no string {what}"
        ))),
    }
}

/// The document a JSON Schema is checked against and ids/types are read from: the JSON
/// body, or for a form-encoded body (Slack slash commands and interactivity, GitHub's
/// form content type) its `payload` field's JSON, else its fields as strings.
fn document(body: &[u8], forms: bool) -> Option<Value> {
    if let Some(v) = json(body) {
        return Some(v);
    }
    if !forms || std::str::from_utf8(body).is_err() {
        return None;
    }
    if let Some(payload) = form_payload(body) {
        return Some(payload);
    }
    let fields: serde_json::Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    (!fields.is_empty()).then_some(Value::Object(fields))
}

/// The JSON in the `payload` field of a form-encoded body, if there is one.
fn form_payload(body: &[u8]) -> Option<Value> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| json(v.as_bytes()))
}

/// The id of an event whose sender gives none: a hash of the exact body, so a
/// sender's retry of the same bytes is absorbed by dedup.
fn body_hash_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

// ---- the service ------------------------------------------------------------------

/// `Retry-After` when the store refuses or fails: a full queue or disk drains in
/// seconds, not milliseconds.
const STORE_RETRY_AFTER_SECS: u64 = 5;

/// A wait as whole seconds for `Retry-After`, rounded up (at least 1).
fn whole_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The ingress service.
pub struct Ingress {
    sources: Verifiers,
    store: Store,
    registry: Arc<Registry>,
    /// Stamps each stored event (tests move it forward).
    clock: Clock,
    /// How much of a body is read, for how long, and from which shared budget.
    body: body::BodyLimits,
    /// The rate limit of each source that has one.
    rates: HashMap<String, rate::RateLimiter>,
    metrics: IngressMetrics,
    /// What `/readyz` answers.
    health: Arc<Health>,
}

impl Ingress {
    /// `sources`: the verifiers built from `config.sources` at start-up.
    pub fn new(
        config: &Config,
        sources: Verifiers,
        store: Store,
        registry: Arc<Registry>,
        clock: Clock,
        health: Arc<Health>,
    ) -> Ingress {
        Ingress {
            sources,
            store,
            registry,
            clock,
            body: body::BodyLimits {
                max_bytes: config.server.max_body_bytes,
                timeout: config.server.body_timeout,
                budget: BodyBudget::new(config.server.max_inflight_body_bytes),
            },
            rates: config
                .sources
                .iter()
                .filter_map(|(name, s)| {
                    s.max_per_second
                        .map(|rate| (name.clone(), rate::RateLimiter::new(rate)))
                })
                .collect(),
            metrics: IngressMetrics::new(config.sources.keys()),
            health,
        }
    }

    /// Requests counted per source, outcome and HTTP status, for `/metrics`.
    pub fn metrics(&self) -> IngressMetrics {
        self.metrics.clone()
    }

    /// The budget of request-body bytes buffered at once, for `/metrics`.
    pub fn body_budget(&self) -> BodyBudget {
        self.body.budget.clone()
    }

    /// `/readyz`: 200 when every check passes, else 503 naming the failing ones.
    fn readyz(&self) -> Response<Body> {
        let checks = self.health.checks();
        let ready = checks.iter().all(|c| c.ok);
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        web::json(
            status,
            &serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "checks": checks,
            }),
        )
    }

    pub async fn handle(self: Arc<Self>, req: Request) -> Response<Body> {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => {
                web::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/readyz") => self.readyz(),
            (_, p) if p.starts_with("/hooks/") => {
                let source = &p["/hooks/".len()..];
                let label = if self.sources.get(source).is_some() {
                    source
                } else {
                    "_unknown"
                };
                let span =
                    tracing::info_span!("webhook", source = label, event = tracing::field::Empty);
                let (resp, outcome) = self.clone().hook(source, req).instrument(span).await;
                self.metrics.record(source, outcome, resp.status().as_u16());
                resp
            }
            _ => web::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; webhooks go to POST /hooks/{source}",
            ),
        }
    }

    /// A request to `/hooks/{source}`: the answer, and the outcome it is counted as.
    async fn hook(self: Arc<Self>, source: &str, req: Request) -> (Response<Body>, &'static str) {
        let handshake = (req.method() == Method::OPTIONS)
            .then(|| self.sources.get(source))
            .flatten()
            .and_then(|v| v.handshake(req.headers()));
        if let Some(answer) = handshake {
            return match answer {
                Ok(headers) => {
                    tracing::info!(source, "answered a webhook validation request");
                    let mut resp = web::json(StatusCode::OK, &serde_json::json!({"status": "ok"}));
                    resp.headers_mut()
                        .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
                    for (name, value) in headers {
                        if let Ok(v) = http::HeaderValue::from_str(&value) {
                            resp.headers_mut().insert(name, v);
                        }
                    }
                    (resp, CHALLENGE)
                }
                Err(r) => (web::error(r.status, r.reason, &r.message), r.reason),
            };
        }
        if req.method() != Method::POST {
            let mut resp = web::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhooks are delivered with POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return (resp, "method_not_allowed");
        }
        match self.receive(source, req).await {
            Ok(accepted) => accepted,
            Err(r) => {
                tracing::info!(
                    reason = r.reason,
                    status = r.status.as_u16(),
                    "webhook refused"
                );
                let mut resp = web::error(r.status, r.reason, &r.message);
                if let Some(secs) = r.retry_after_secs {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
                }
                if r.status == StatusCode::REQUEST_TIMEOUT {
                    // The rest of the body may still trickle in; the connection cannot
                    // carry another request.
                    resp.headers_mut()
                        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                (resp, r.reason)
            }
        }
    }

    async fn receive(
        &self,
        source: &str,
        req: Request,
    ) -> Result<(Response<Body>, &'static str), Rejection> {
        let Some(verifier) = self.sources.get(source) else {
            return Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "unknown_source",
                "no source with this name is configured",
            ));
        };
        if let Some(Err(wait)) = self.rates.get(source).map(rate::RateLimiter::check) {
            return Err(Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this source is limited to sources.{source}.max_per_second requests a second"
                ),
            )
            .retry_after(whole_secs(wait)));
        }
        let (parts, body) = req.into_parts();
        // Held until the answer is ready: the body's bytes count against the budget for
        // as long as they are buffered (verified, then handed to the store).
        let (body, _reservation) = body::read(&parts.headers, body, &self.body).await?;

        // Signature timestamps are checked against real time (the sender signed with
        // it); the stored event is stamped with the host's clock, which schedules it.
        let now_secs = (now_ms() / 1000) as i64;
        let verified = match verifier.verify_at(&parts.uri, &parts.headers, &body, now_secs)? {
            Accepted::Event(v) => {
                crate::telemetry::join_event_trace(&tracing::Span::current(), source, &v.event_id);
                v
            }
            Accepted::Batch(entries) => {
                let headers = verifier.kept_headers(&parts.headers);
                return self.ingest_batch(source, headers, entries).await;
            }
            Accepted::Reply(answer) => {
                tracing::info!(source, "answered a handshake");
                return Ok((web::json(StatusCode::OK, &answer), CHALLENGE));
            }
            Accepted::Challenge(challenge) => {
                tracing::info!(source, "answered a url_verification challenge");
                let resp = web::json(
                    StatusCode::OK,
                    &serde_json::json!({ "challenge": challenge }),
                );
                return Ok((resp, CHALLENGE));
            }
        };
        // Verification is done with the signature headers; from here on only the
        // headers worth keeping exist.
        let headers = verifier.kept_headers(&parts.headers);
        let plugins = self.registry.subscribers(source, &verified.event_type);
        self.store.admit(&plugins).map_err(|refusal| {
            let reason = match refusal {
                Refusal::QueueFull(_) => "queue_full",
                Refusal::DiskFull { .. } => "disk_full",
            };
            Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason, refusal.to_string())
                .retry_after(STORE_RETRY_AFTER_SECS)
        })?;
        let event = NewEvent {
            meta: EventMeta {
                source: source.to_string(),
                event_id: verified.event_id.clone(),
                event_type: verified.event_type.clone(),
                received_at_ms: self.clock.now_ms(),
                headers,
            },
            body,
            plugins,
        };
        match self.store.ingest(event).await {
            Ok(Ingested::Stored(id)) => {
                tracing::Span::current().record("event", id);
                tracing::info!(event = id, event_id = %verified.event_id, event_type = %verified.event_type, "webhook stored");
                let answer = verifier.stored_reply(&verified.event_type).unwrap_or_else(
                    || serde_json::json!({"status": "stored", "id": id.to_string()}),
                );
                Ok((web::json(StatusCode::OK, &answer), STORED))
            }
            Ok(Ingested::Duplicate(id)) => {
                tracing::Span::current().record("event", id);
                tracing::info!(event = id, event_id = %verified.event_id, "duplicate webhook acknowledged");
                let answer = verifier.stored_reply(&verified.event_type).unwrap_or_else(
                    || serde_json::json!({"status": "duplicate", "id": id.to_string()}),
                );
                Ok((web::json(StatusCode::OK, &answer), DUPLICATE))
            }
            Err(e) => {
                tracing::error!(source, error = %e, "could not store a webhook");
                let mut resp = web::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the event could not be stored; retry later",
                );
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    http::HeaderValue::from(STORE_RETRY_AFTER_SECS),
                );
                Ok((resp, "store_unavailable"))
            }
        }
    }
}

impl Ingress {
    /// A verified batch: every entry admitted, then stored concurrently (so they share
    /// commits), each deduplicated on its own id. The answer lists each entry's
    /// outcome in order; it is 2xx only once every entry is durable.
    async fn ingest_batch(
        &self,
        source: &str,
        headers: Vec<(String, String)>,
        entries: Vec<Entry>,
    ) -> Result<(Response<Body>, &'static str), Rejection> {
        // Each entry is stored as one structured event, whatever the batch was sent as.
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(name, value)| {
                if name.eq_ignore_ascii_case("content-type") {
                    (name, "application/cloudevents+json".to_string())
                } else {
                    (name, value)
                }
            })
            .collect();
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let plugins = self
                .registry
                .subscribers(source, &entry.verified.event_type);
            self.store.admit(&plugins).map_err(|refusal| {
                let reason = match refusal {
                    Refusal::QueueFull(_) => "queue_full",
                    Refusal::DiskFull { .. } => "disk_full",
                };
                Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason, refusal.to_string())
                    .retry_after(STORE_RETRY_AFTER_SECS)
            })?;
            events.push(NewEvent {
                meta: EventMeta {
                    source: source.to_string(),
                    event_id: entry.verified.event_id,
                    event_type: entry.verified.event_type,
                    received_at_ms: self.clock.now_ms(),
                    headers: headers.clone(),
                },
                body: entry.body.into(),
                plugins,
            });
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, event) in events.into_iter().enumerate() {
            let store = self.store.clone();
            tasks.spawn(async move { (i, store.ingest(event).await) });
        }
        let mut results = vec![Value::Null; tasks.len()];
        let mut any_stored = false;
        let mut failed = false;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, Ok(Ingested::Stored(id)))) => {
                    any_stored = true;
                    results[i] = serde_json::json!({"status": "stored", "id": id.to_string()});
                }
                Ok((i, Ok(Ingested::Duplicate(id)))) => {
                    results[i] = serde_json::json!({"status": "duplicate", "id": id.to_string()});
                }
                Ok((_, Err(e))) => {
                    tracing::error!(source, error = %e, "could not store an event of a batch");
                    failed = true;
                }
                Err(e) => {
                    tracing::error!(source, error = %e, "a batch entry's store task failed");
                    failed = true;
                }
            }
        }
        if failed {
            // The sender retries the whole batch; what was stored is deduplicated.
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "not every event of the batch could be stored; retry later",
            )
            .retry_after(STORE_RETRY_AFTER_SECS));
        }
        tracing::info!(source, events = results.len(), "webhook batch stored");
        let (status, outcome) = if any_stored {
            ("stored", STORED)
        } else {
            ("duplicate", DUPLICATE)
        };
        let resp = web::json(
            StatusCode::OK,
            &serde_json::json!({"status": status, "events": results}),
        );
        Ok((resp, outcome))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn build(text: &str) -> Result<Verifiers, ConfigError> {
        let config = Config::parse(text, Path::new("test.toml"), false).unwrap();
        Verifiers::build(&config.sources)
    }

    #[test]
    fn verifiers_are_built_per_source() {
        let v = build(
            "[sources.a]\nscheme = \"standard-webhooks\"\nsecrets = [\"whsec_eA==\"]\n[sources.b]\nscheme = \"github\"\nsecrets = [\"s\"]\n",
        )
        .unwrap();
        assert!(v.get("a").is_some() && v.get("b").is_some());
        assert!(v.get("c").is_none());
    }

    /// What the config file can express but no verifier can use is refused here, at
    /// start-up, with an error naming the field.
    #[test]
    fn bad_secrets_settings_and_schemas_are_config_errors_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let bad_schema = dir.path().join("bad.json");
        std::fs::write(&bad_schema, r#"{"type": 12}"#).unwrap();
        for (text, field) in [
            (
                "scheme = \"standard-webhooks\"\nsecrets = [\"whsec_!!!\"]\n".to_string(),
                "sources.a.secrets[0]",
            ),
            (
                "scheme = \"hmac-sha256\"\nsecrets = [\"s\"]\nsignature_header = \"X\"\nsigned_payload = \"{ts}.{body}\"\n".to_string(),
                "sources.a.signed_payload",
            ),
            (
                format!(
                    "scheme = \"stripe\"\nsecrets = [\"s\"]\n[sources.a.schemas]\n\"payment.*\" = \"file:{}\"\n",
                    bad_schema.display()
                ),
                "sources.a.schemas.\"payment.*\"",
            ),
        ] {
            let e = build(&format!("[sources.a]\n{text}")).err().unwrap();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }
}
