//! Test vectors and byte-flipping helpers for the scheme tests.
//!
//! `signatures.json` is a verbatim copy of the project's published vectors
//! (`shared/test-vectors/signatures.json`), each taken from the sender's own
//! documentation or reference-library tests; it is copied here so that the unit tests
//! do not depend on a path outside the repository.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Vector {
    pub scheme: String,
    pub from: String,
    pub secret: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub public_key: Option<String>,
    /// The URL the sender signed (Twilio).
    pub url: Option<String>,
    /// The sender's private key, for tests that sign more requests (A2A's JWT).
    pub private_key: Option<String>,
}

impl Vector {
    /// A header of the vector, by case-insensitive name.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("vector has no {name}"))
    }

    pub fn headers(&self) -> HeaderMap {
        headers(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// The published vector of `scheme` whose `from` mentions `from`.
pub fn vector(scheme: &str, from: &str) -> Vector {
    #[derive(serde::Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }
    let file: File = serde_json::from_str(include_str!("signatures.json")).unwrap();
    file.vectors
        .into_iter()
        .find(|v| v.scheme == scheme && v.from.contains(from))
        .unwrap_or_else(|| panic!("no {scheme} vector from {from}"))
}

/// A header map from (name, value) pairs.
pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// `s` with byte `i` replaced by another visible ASCII character.
pub fn flip(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'x' { b'y' } else { b'x' };
    String::from_utf8(b).unwrap()
}

/// `s` with digit `i` replaced by another digit.
pub fn flip_digit(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = b'0' + (b[i] - b'0' + 1) % 10;
    String::from_utf8(b).unwrap()
}

/// `s` with hex digit `i` replaced by another hex digit (still valid hex).
pub fn flip_hex(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

/// `s` with base64 character `i` replaced by the one whose top bit differs: the low
/// bits (which may be padding in the last character) stay, so it still decodes.
pub fn flip_base64(s: &str, i: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b = s.as_bytes().to_vec();
    let idx = ALPHABET
        .iter()
        .position(|c| *c == b[i])
        .expect("a base64 character");
    b[i] = ALPHABET[idx ^ 32];
    String::from_utf8(b).unwrap()
}

/// Every position of the data characters of a base64 string (not the `=` padding).
pub fn base64_positions(s: &str) -> std::ops::Range<usize> {
    0..s.trim_end_matches('=').len()
}
