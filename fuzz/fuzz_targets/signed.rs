//! Requests signed correctly by each scheme's sender, with fuzzed bodies, ids and
//! types: they get past the signature, so id and type extraction, form and JSON
//! parsing and the schema check are fuzzed. A correctly signed request must never be
//! refused for its signature or headers.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use agenthook::ingress::{Accepted, Outgoing, sign};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

static SOURCES: OnceLock<Vec<common::Source>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let sources = SOURCES.get_or_init(common::sources);
    let [selector, skew, id_len, type_len, rest @ ..] = data else {
        return;
    };
    let source = &sources[*selector as usize % sources.len()];
    if source.config.standard.jwt.is_some() {
        // The simulator holds no agent key: a JWT source refuses all it sends.
        return;
    }
    let take = |len: u8, from: &[u8]| -> Option<String> {
        let n = len as usize % 48;
        (n > 0 && n <= from.len()).then(|| String::from_utf8_lossy(&from[..n]).into_owned())
    };
    let id = take(*id_len, rest);
    let rest = &rest[id.as_ref().map_or(0, |_| *id_len as usize % 48)..];
    let event_type = take(*type_len, rest);
    let body = &rest[event_type.as_ref().map_or(0, |_| *type_len as usize % 48)..];
    let timestamp = common::NOW + (*skew as i8 as i64) * 2;
    let out = Outgoing {
        event_id: id.as_deref(),
        event_type: event_type.as_deref(),
        timestamp,
        body,
    };
    let Ok(signed) = sign(&source.config, &source.sender_secret, &out) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &signed.headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            // An id or type that cannot be a header value: no sender could send it.
            return;
        };
        headers.append(n, v);
    }
    // Twilio signs the URL it posts to: the source's path.
    let uri: http::Uri = format!("/hooks/{}", source.config.name)
        .parse()
        .expect("a source name is a path segment");
    let label_ok = |v: &agenthook::ingress::Verified| {
        !v.event_id.is_empty()
            && v.event_id.len() <= 256
            && !v.event_type.is_empty()
            && v.event_type.len() <= 256
    };
    match source.verifier.verify_at(&uri, &headers, &signed.body, common::NOW) {
        Ok(Accepted::Event(v)) => assert!(label_ok(&v)),
        Ok(Accepted::Batch(entries)) => {
            assert!(entries.iter().all(|e| label_ok(&e.verified)));
        }
        Ok(Accepted::Challenge(_) | Accepted::Reply(_)) => {}
        Err(r) => assert!(
            matches!(
                r.reason,
                "malformed_body" | "schema_violation" | "malformed_header"
            ),
            "{}: a correctly signed request was refused: {r:?}",
            source.config.name
        ),
    }
});
