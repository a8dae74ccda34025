//! Raw requests against every scheme: the input is a source selector, a clock offset,
//! header lines (`name: value\n`, ended by an empty line) and the body. Verification
//! must answer every one of them with an acceptance or a 4xx, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

static SOURCES: OnceLock<Vec<common::Source>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let sources = SOURCES.get_or_init(common::sources);
    let [selector, skew, rest @ ..] = data else {
        return;
    };
    let source = &sources[*selector as usize % sources.len()];
    let now = common::NOW + (*skew as i8 as i64) * 5;
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    if let Err(r) = source.verifier.verify(&headers, body, now) {
        assert!(r.status.is_client_error(), "{r:?}");
        assert!(!r.message.is_empty());
    }
    // The CloudEvents OPTIONS handshake reads the same headers.
    if let Some(Err(r)) = source.verifier.handshake(&headers) {
        assert!(r.status.is_client_error(), "{r:?}");
    }
});
