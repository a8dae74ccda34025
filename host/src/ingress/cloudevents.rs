//! CloudEvents over HTTP (HTTP protocol binding 1.0): binary mode (the attributes in
//! `ce-*` headers, the body is the event's data), structured mode
//! (`application/cloudevents+json`, the body is the whole event) and batch mode
//! (`application/cloudevents-batch+json`, a JSON array of structured events, each
//! stored as its own event with its own bytes). The event type is `type`; the event id
//! is `source` and `id` joined by a space (`/sensors/tn-1 A234-1234`): CloudEvents
//! promises uniqueness only for the pair, so that is what dedup keys on (a `source`
//! is a URI-reference and holds no space, so the join is unambiguous).
//!
//! CloudEvents does not sign: the sender authenticates with a bearer token (default),
//! basic auth, or Standard Webhooks signatures (`auth`). The "HTTP 1.1 Web Hooks"
//! abuse-protection handshake (`OPTIONS` with `WebHook-Request-Origin`) is answered
//! for the origins in `allowed_origins`.
//! <https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md>
//! <https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/http-webhook.md>

use http::HeaderMap;
use serde_json::Value;

use super::{Accepted, Entry, Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{CloudEventsAuth, ConfigError, SourceConfig};

/// The credential headers of every `auth` (dropped once verified).
pub const SIGNATURE_HEADERS: &[&str] = &["authorization", "webhook-signature", "svix-signature"];

/// More events than this in one batch is refused: each is a commit's worth of work.
pub const MAX_BATCH: usize = 1000;

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

enum Auth {
    Bearer(super::bearer::Verifier),
    Basic(super::basic::Verifier),
    StandardWebhooks(super::standard_webhooks::Verifier),
}

pub struct Verifier {
    auth: Auth,
    /// `allowed_origins`, lower-case; `*` allows any.
    origins: Vec<String>,
    /// `WebHook-Allowed-Rate`: `allowed_rate`, else the source's rate limit a minute.
    rate: Option<u64>,
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let auth = match source.standard.auth.unwrap_or(CloudEventsAuth::Bearer) {
            CloudEventsAuth::Bearer => Auth::Bearer(super::bearer::Verifier::new(source)?),
            CloudEventsAuth::Basic => Auth::Basic(super::basic::Verifier::new(source)?),
            CloudEventsAuth::StandardWebhooks => {
                Auth::StandardWebhooks(super::standard_webhooks::Verifier::new(source)?)
            }
        };
        Ok(Verifier {
            auth,
            origins: source
                .standard
                .allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            rate: source
                .standard
                .allowed_rate
                .map(u64::from)
                .or(source.max_per_second.map(|r| u64::from(r) * 60)),
        })
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, Rejection> {
        match &self.auth {
            Auth::Bearer(v) => v.authenticate(headers)?,
            Auth::Basic(v) => v.authenticate(headers)?,
            Auth::StandardWebhooks(v) => {
                v.authenticate(headers, body, now_secs)?;
            }
        }
        let content_type = super::optional_header(headers, "content-type")?
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match content_type.as_str() {
            STRUCTURED => structured(body).map(Accepted::Event),
            BATCH => batch(body).map(Accepted::Batch),
            _ => binary(headers).map(Accepted::Event),
        }
    }

    /// The abuse-protection handshake: `WebHook-Allowed-Origin` (and
    /// `WebHook-Allowed-Rate`) for an allowed `WebHook-Request-Origin`.
    pub fn handshake(&self, headers: &HeaderMap) -> Result<Vec<(&'static str, String)>, Rejection> {
        let origin = super::required_header(headers, "webhook-request-origin", false)?;
        let allowed = self
            .origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin.trim()));
        if !allowed {
            return Err(Rejection::new(
                http::StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this source does not accept deliveries from that WebHook-Request-Origin (allowed_origins)",
            ));
        }
        let mut answer = vec![("webhook-allowed-origin", origin.trim().to_string())];
        // A sender that asks for a rate gets ours; `*` when the source has no limit.
        if super::optional_header(headers, "webhook-request-rate")?.is_some() || self.rate.is_some()
        {
            let rate = self.rate.map_or_else(|| "*".to_string(), |r| r.to_string());
            answer.push(("webhook-allowed-rate", rate));
        }
        Ok(answer)
    }
}

/// The dedup key of an event: `source` and `id`, joined by a space.
fn event_id(source: &str, id: &str) -> Result<String, Rejection> {
    if source.chars().any(|c| c.is_whitespace()) {
        return Err(Rejection::bad_request(
            "malformed_body",
            "the CloudEvents `source` is a URI-reference and cannot contain whitespace",
        ));
    }
    super::label(
        &format!("{source} {id}"),
        "`source` and `id`",
        "malformed_body",
    )
}

/// Binary mode: `ce-specversion`, `ce-id`, `ce-source`, `ce-type` (percent-decoded).
fn binary(headers: &HeaderMap) -> Result<Verified, Rejection> {
    let attr = |name: &str| -> Result<String, Rejection> {
        let raw = super::required_header(headers, name, false)?;
        let text = percent_decode(raw).ok_or_else(|| {
            Rejection::bad_request(
                "malformed_header",
                format!("{name} is not percent-encoded UTF-8"),
            )
        })?;
        super::label(&text, name, "malformed_header")
    };
    let version = attr("ce-specversion")?;
    if version != "1.0" {
        return Err(Rejection::bad_request(
            "malformed_header",
            "ce-specversion must be 1.0 (or send application/cloudevents+json)",
        ));
    }
    let id = attr("ce-id")?;
    let source = attr("ce-source")?;
    Ok(Verified {
        event_id: event_id(&source, &id)?,
        event_type: attr("ce-type")?,
    })
}

/// One structured-mode event (a JSON object).
fn event(doc: &Value) -> Result<Verified, Rejection> {
    let attr = |name: &str| super::json_label(Some(doc), &format!("/{name}"), &format!("`{name}`"));
    if !doc.is_object() {
        return Err(Rejection::bad_request(
            "malformed_body",
            "a structured CloudEvent is a JSON object",
        ));
    }
    if attr("specversion")? != "1.0" {
        return Err(Rejection::bad_request(
            "malformed_body",
            "`specversion` must be \"1.0\"",
        ));
    }
    let id = attr("id")?;
    let source = attr("source")?;
    Ok(Verified {
        event_id: event_id(&source, &id)?,
        event_type: attr("type")?,
    })
}

fn structured(body: &[u8]) -> Result<Verified, Rejection> {
    let doc = super::json(body).ok_or_else(|| {
        Rejection::bad_request("malformed_body", "the structured CloudEvent is not JSON")
    })?;
    event(&doc)
}

/// Batch mode: each entry is stored with its own bytes, exactly as it appeared.
fn batch(body: &[u8]) -> Result<Vec<Entry>, Rejection> {
    let not_batch = || {
        Rejection::bad_request(
            "malformed_body",
            "a CloudEvents batch is a JSON array of structured events",
        )
    };
    let entries: Vec<Value> = serde_json::from_slice(body).map_err(|_| not_batch())?;
    if entries.len() > MAX_BATCH {
        return Err(Rejection::bad_request(
            "malformed_body",
            format!("a batch holds at most {MAX_BATCH} events"),
        ));
    }
    let spans = element_spans(body);
    if spans.len() != entries.len() {
        return Err(not_batch());
    }
    entries
        .iter()
        .zip(spans)
        .enumerate()
        .map(|(i, (doc, span))| {
            let verified = event(doc).map_err(|mut r| {
                r.message = format!("batch entry {i}: {}", r.message);
                r
            })?;
            Ok(Entry {
                verified,
                body: body[span].to_vec(),
            })
        })
        .collect()
}

/// The byte ranges of the top-level elements of a JSON array that serde has already
/// parsed (so it is well-formed), whitespace trimmed.
fn element_spans(body: &[u8]) -> Vec<std::ops::Range<usize>> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut spans = Vec::new();
    let Some(open) = body.iter().position(|b| *b == b'[') else {
        return spans;
    };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start = open + 1;
    for (i, &b) in body.iter().enumerate().skip(open + 1) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => {
                let (mut s, mut e) = (start, i);
                while s < e && is_space(body[s]) {
                    s += 1;
                }
                while e > s && is_space(body[e - 1]) {
                    e -= 1;
                }
                if s < e {
                    spans.push(s..e);
                }
                start = i + 1;
                if b == b']' {
                    break;
                }
            }
            _ => {}
        }
    }
    spans
}

/// `%XX` sequences decoded; `None` for a broken sequence or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `text` percent-encoded as the binding asks of header values.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The sender's `source` when the simulator makes one up.
const SEND_SOURCE: &str = "/agenthook/send";

/// Send as a CloudEvents producer. A JSON array is sent in batch mode, a JSON object
/// with `specversion` in structured mode (`--id`/`--type` written into it), anything
/// else in binary mode as the event's data (`--type` required, `--id` or a fresh one).
/// Authenticated as the source's `auth` says, with `secret`.
pub fn sign(source: &SourceConfig, secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let doc = super::json(out.body);
    let (mut headers, body) = match &doc {
        Some(Value::Array(_)) => (
            vec![("Content-Type".into(), BATCH.into())],
            out.body.to_vec(),
        ),
        Some(Value::Object(o)) if o.contains_key("specversion") => {
            let body = super::edit_json(
                out.body,
                &[("/id", out.event_id), ("/type", out.event_type)],
            )?;
            (vec![("Content-Type".into(), STRUCTURED.into())], body)
        }
        _ => {
            let event_type = out.event_type.ok_or_else(|| {
                SignError::Payload(
                    "a binary-mode CloudEvent needs its type: pass --type (e.g. com.example.object.deleted.v2)"
                        .into(),
                )
            })?;
            let id = out
                .event_id
                .map_or_else(|| super::fresh_id(""), str::to_string);
            let content_type = if doc.is_some() {
                "application/json"
            } else {
                "application/octet-stream"
            };
            (
                vec![
                    ("Content-Type".into(), content_type.into()),
                    ("ce-specversion".into(), "1.0".into()),
                    ("ce-id".into(), percent_encode(&id)),
                    ("ce-source".into(), SEND_SOURCE.into()),
                    ("ce-type".into(), percent_encode(event_type)),
                ],
                out.body.to_vec(),
            )
        }
    };
    match source.standard.auth.unwrap_or(CloudEventsAuth::Bearer) {
        CloudEventsAuth::Bearer => headers.push(super::bearer::authorization(secret)),
        CloudEventsAuth::Basic => headers.push(super::basic::authorization(secret)),
        CloudEventsAuth::StandardWebhooks => {
            headers.extend(super::standard_webhooks::signature_headers(
                secret,
                &super::fresh_id("msg_"),
                out.timestamp,
                &body,
            )?)
        }
    }
    Ok(Signed { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{headers, vector};

    const TOKEN: &str = "ce-token";

    fn source(auth: Option<CloudEventsAuth>, secrets: &[&str]) -> SourceConfig {
        let mut s = SourceConfig::new(
            "ce",
            Scheme::Cloudevents,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        );
        s.standard.auth = auth;
        s.standard.allowed_origins = vec!["eventemitter.example.com".into()];
        s
    }

    fn verifier() -> Verifier {
        Verifier::new(&source(None, &[TOKEN])).unwrap()
    }

    fn with_token(mut h: HeaderMap) -> HeaderMap {
        h.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        h
    }

    fn event_of(a: Accepted) -> Verified {
        match a {
            Accepted::Event(v) => v,
            other => panic!("not one event: {other:?}"),
        }
    }

    /// The binding spec's own binary-mode example.
    #[test]
    fn spec_binary_example_verifies() {
        let v = vector("cloudevents", "binary");
        let got = event_of(
            verifier()
                .verify(&with_token(v.headers()), v.body.as_bytes(), 0)
                .unwrap(),
        );
        assert_eq!(got.event_type, "com.example.someevent");
        assert_eq!(got.event_id, "/mycontext/subcontext 1234-1234-1234");
    }

    /// The binding spec's own structured-mode example.
    #[test]
    fn spec_structured_example_verifies() {
        let v = vector("cloudevents", "structured");
        let got = event_of(
            verifier()
                .verify(&with_token(v.headers()), v.body.as_bytes(), 0)
                .unwrap(),
        );
        assert_eq!(got.event_type, "com.example.someevent");
        assert_eq!(got.event_id, "/mycontext 1234-1234-1234");
    }

    #[test]
    fn batch_entries_keep_their_own_bytes() {
        let body = br#"[ {"specversion":"1.0","id":"1","source":"/a","type":"t.one"} ,{"specversion":"1.0","id":"1","source":"/b","type":"t.two","data":{"x":1}}]"#;
        let h = with_token(headers([("content-type", BATCH)]));
        let Accepted::Batch(entries) = verifier().verify(&h, body, 0).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].verified.event_id, "/a 1");
        assert_eq!(entries[1].verified.event_id, "/b 1");
        assert_eq!(
            entries[1].body,
            br#"{"specversion":"1.0","id":"1","source":"/b","type":"t.two","data":{"x":1}}"#
        );
        for (bad, what) in [
            (&br#"{"specversion":"1.0"}"#[..], "not an array"),
            (
                br#"[{"specversion":"1.0","id":"1","source":"/a"}]"#,
                "no type",
            ),
            (
                br#"[{"specversion":"0.3","id":"1","source":"/a","type":"t"}]"#,
                "0.3",
            ),
            (
                br#"[{"specversion":"1.0","id":"1","source":"/a b","type":"t"}]"#,
                "space",
            ),
            (br#"[1]"#, "number"),
        ] {
            let e = verifier().verify(&h, bad, 0).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_body"),
                "{what}"
            );
        }
        let many = format!(
            "[{}]",
            vec![r#"{"specversion":"1.0","id":"1","source":"/a","type":"t"}"#; MAX_BATCH + 1]
                .join(",")
        );
        assert!(verifier().verify(&h, many.as_bytes(), 0).is_err());
    }

    #[test]
    fn element_spans_follow_strings_and_nesting() {
        let body = br#" [ {"a":"],\"[{"} , [1,[2]] ,"x" ,3 ] "#;
        let spans: Vec<&[u8]> = element_spans(body).into_iter().map(|r| &body[r]).collect();
        assert_eq!(
            spans,
            [&br#"{"a":"],\"[{"}"#[..], b"[1,[2]]", br#""x""#, b"3"]
        );
        assert!(element_spans(b"[]").is_empty());
        assert!(element_spans(b"[ ]").is_empty());
    }

    #[test]
    fn authentication_comes_first() {
        let v = vector("cloudevents", "binary");
        let e = verifier()
            .verify(&v.headers(), v.body.as_bytes(), 0)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
        let mut h = v.headers();
        h.insert("authorization", "Bearer wrong".parse().unwrap());
        let e = verifier().verify(&h, v.body.as_bytes(), 0).unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, "signature_mismatch"));
    }

    #[test]
    fn binary_mode_needs_its_attributes() {
        let v = vector("cloudevents", "binary");
        for name in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
            let mut h = with_token(v.headers());
            h.remove(name);
            let e = verifier().verify(&h, b"", 0).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "missing_header"),
                "{name}"
            );
        }
        let mut h = with_token(v.headers());
        h.insert("ce-type", "a%2".parse().unwrap());
        assert_eq!(
            verifier().verify(&h, b"", 0).unwrap_err().reason,
            "malformed_header"
        );
        h.insert("ce-type", "com.example%20it".parse().unwrap());
        let got = event_of(verifier().verify(&h, b"", 0).unwrap());
        assert_eq!(got.event_type, "com.example it");
    }

    #[test]
    fn handshake_answers_allowed_origins_only() {
        let v = verifier();
        let h = headers([
            ("WebHook-Request-Origin", "eventemitter.example.com"),
            ("WebHook-Request-Rate", "120"),
        ]);
        assert_eq!(
            v.handshake(&h).unwrap(),
            [
                (
                    "webhook-allowed-origin",
                    "eventemitter.example.com".to_string()
                ),
                ("webhook-allowed-rate", "*".to_string())
            ]
        );
        let e = v
            .handshake(&headers([("WebHook-Request-Origin", "evil.example.com")]))
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (403, "origin_not_allowed"));
        let e = v.handshake(&HeaderMap::new()).unwrap_err();
        assert_eq!(e.reason, "missing_header");
        let mut s = source(None, &[TOKEN]);
        s.max_per_second = Some(2);
        let answer = Verifier::new(&s)
            .unwrap()
            .handshake(&headers([(
                "WebHook-Request-Origin",
                "EventEmitter.example.com",
            )]))
            .unwrap();
        assert_eq!(answer[1], ("webhook-allowed-rate", "120".to_string()));
    }

    #[test]
    fn sign_then_verify_round_trips_in_every_mode_and_auth() {
        for (auth, secret, sender) in [
            (None, TOKEN, TOKEN),
            (Some(CloudEventsAuth::Basic), "u:p", "u:p"),
            (
                Some(CloudEventsAuth::StandardWebhooks),
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ] {
            let v = Verifier::new(&source(auth, &[secret])).unwrap();
            for (body, id, expect) in [
                (&br#"{"n":1}"#[..], Some("b-1"), "/agenthook/send b-1"),
                (
                    br#"{"specversion":"1.0","source":"/s","id":"x"}"#,
                    Some("s-1"),
                    "/s s-1",
                ),
            ] {
                let out = Outgoing {
                    event_id: id,
                    event_type: Some("com.example.t"),
                    timestamp: 1_700_000_000,
                    body,
                };
                let signed = sign(&source(auth, &[secret]), sender, &out).unwrap();
                let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let got = event_of(v.verify(&h, &signed.body, 1_700_000_000).unwrap());
                assert_eq!(got.event_id, expect, "{auth:?}");
                assert_eq!(got.event_type, "com.example.t");
            }
        }
        let out = Outgoing {
            event_id: None,
            event_type: None,
            timestamp: 1,
            body: b"{}",
        };
        assert!(
            sign(&source(None, &[TOKEN]), TOKEN, &out).is_err(),
            "binary needs a type"
        );
    }
}
