//! The generic `hmac-sha256` scheme, for senders without a scheme of their own: the
//! operator says which header carries the signature (with an optional prefix, hex or
//! base64), what is signed (a template of `{body}`, `{timestamp}` and `{id}`), and where
//! the event id and type are (a header, a JSON pointer, or neither: a body hash and
//! `webhook`). Secrets are used as raw bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName};

use super::{Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, HmacConfig, Locator, SignatureEncoding, SourceConfig};

/// The event type when the source configures no `type_header` or `type_pointer`.
pub const DEFAULT_TYPE: &str = "webhook";

/// One piece of the `signed_payload` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Body,
    Timestamp,
    Id,
}

/// Parse `signed_payload`: `{body}` exactly once, `{timestamp}` and `{id}` at most
/// once, anything else literal; an unknown `{name}` is an error (a typo would
/// otherwise be signed literally and never match).
fn parse_template(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| format!("`{}` has no closing `}}`", &rest[start..]))?;
        pieces.push(match &rest[start + 1..end] {
            "body" => Piece::Body,
            "timestamp" => Piece::Timestamp,
            "id" => Piece::Id,
            other => {
                return Err(format!(
                    "unknown placeholder `{{{other}}}` (use {{body}}, {{timestamp}}, {{id}})"
                ));
            }
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    for (piece, name, min) in [
        (Piece::Body, "{body}", 1),
        (Piece::Timestamp, "{timestamp}", 0),
        (Piece::Id, "{id}", 0),
    ] {
        let n = pieces.iter().filter(|p| **p == piece).count();
        if n < min || n > 1 {
            let need = if min == 1 { "exactly" } else { "at most" };
            return Err(format!("must contain {name} {need} once"));
        }
    }
    Ok(pieces)
}

#[derive(Debug)]
enum Place {
    Header(HeaderName),
    Pointer(String),
}

pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
    signature_header: HeaderName,
    prefix: String,
    encoding: SignatureEncoding,
    timestamp_header: Option<HeaderName>,
    template: Vec<Piece>,
    id: Option<Place>,
    event_type: Option<Place>,
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::invalid(field, format!("`{name}` is not a header name")))
}

fn place(locator: &Option<Locator>, field: &str, what: &str) -> Result<Option<Place>, ConfigError> {
    Ok(match locator {
        None => None,
        Some(Locator::Header(h)) => Some(Place::Header(header_name(
            h,
            &format!("{field}.{what}_header"),
        )?)),
        Some(Locator::Pointer(p)) if p.starts_with('/') => Some(Place::Pointer(p.clone())),
        Some(Locator::Pointer(p)) => {
            return Err(ConfigError::invalid(
                format!("{field}.{what}_pointer"),
                format!("`{p}` is not a JSON pointer (like /data/id)"),
            ));
        }
    })
}

impl Verifier {
    /// The configured `signature_header` (lower-case).
    pub fn signature_header(&self) -> &HeaderName {
        &self.signature_header
    }

    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let field = format!("sources.{}", source.name);
        let settings: &HmacConfig = source.hmac.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                format!("{field}.signature_header"),
                "scheme = \"hmac-sha256\" needs signature_header",
            )
        })?;
        let template = parse_template(&settings.signed_payload)
            .map_err(|m| ConfigError::invalid(format!("{field}.signed_payload"), m))?;
        let timestamp_header = settings
            .timestamp_header
            .as_deref()
            .map(|h| header_name(h, &format!("{field}.timestamp_header")))
            .transpose()?;
        let signs_timestamp = template.contains(&Piece::Timestamp);
        if signs_timestamp != timestamp_header.is_some() {
            return Err(ConfigError::invalid(
                format!("{field}.signed_payload"),
                if signs_timestamp {
                    "uses {timestamp}, so timestamp_header must name the header that carries it"
                } else {
                    "must contain {timestamp} when timestamp_header is set: an unsigned timestamp proves nothing"
                },
            ));
        }
        let id = place(&settings.id, &field, "id")?;
        if template.contains(&Piece::Id) && !matches!(id, Some(Place::Header(_))) {
            return Err(ConfigError::invalid(
                format!("{field}.signed_payload"),
                "uses {id}, so id_header must name the header that carries it",
            ));
        }
        for (i, secret) in source.secrets.iter().enumerate() {
            if secret.expose().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{field}.secrets[{i}]"),
                    "secret is empty",
                ));
            }
        }
        Ok(Verifier {
            keys: super::raw_keys(source),
            tolerance_secs: source.tolerance_secs,
            signature_header: header_name(
                &settings.signature_header,
                &format!("{field}.signature_header"),
            )?,
            prefix: settings.signature_prefix.clone(),
            encoding: settings.signature_encoding,
            timestamp_header,
            template,
            id,
            event_type: place(&settings.event_type, &field, "type")?,
        })
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Verified, Rejection> {
        let name = self.signature_header.as_str();
        let value = super::required_header(headers, name, true)?;
        let malformed = || {
            let encoding = match self.encoding {
                SignatureEncoding::Hex => "hex",
                SignatureEncoding::Base64 => "base64",
            };
            Rejection::bad_request(
                "malformed_header",
                format!(
                    "{name} is not `{}` followed by an HMAC-SHA256 in {encoding}",
                    self.prefix
                ),
            )
        };
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(malformed)?;
        let sig = match self.encoding {
            SignatureEncoding::Hex => super::hex_mac(encoded),
            SignatureEncoding::Base64 => STANDARD
                .decode(encoded)
                .ok()
                .filter(|s| s.len() == super::MAC_LEN),
        }
        .ok_or_else(malformed)?;

        let ts_text = match &self.timestamp_header {
            Some(h) => {
                let text = super::required_header(headers, h.as_str(), true)?;
                let ts = super::parse_timestamp(text, h.as_str())?;
                super::check_tolerance(ts, now_secs, self.tolerance_secs, h.as_str())?;
                text
            }
            None => "",
        };
        let id_header = match &self.id {
            Some(Place::Header(h)) => Some(super::header_label(headers, h.as_str())?),
            _ => None,
        };
        let parts: Vec<&[u8]> = self
            .template
            .iter()
            .map(|piece| match piece {
                Piece::Text(t) => t.as_bytes(),
                Piece::Body => body,
                Piece::Timestamp => ts_text.as_bytes(),
                Piece::Id => id_header.as_deref().unwrap_or_default().as_bytes(),
            })
            .collect();
        if !self
            .keys
            .iter()
            .any(|key| super::mac_matches(&super::mac(key, &parts), &sig))
        {
            return Err(Rejection::signature_mismatch(name));
        }

        let doc = match (&self.id, &self.event_type) {
            (Some(Place::Pointer(_)), _) | (_, Some(Place::Pointer(_))) => super::json(body),
            _ => None,
        };
        let event_id = match (&self.id, id_header) {
            (_, Some(id)) => id,
            (Some(Place::Pointer(p)), None) => {
                super::json_label(doc.as_ref(), p, &format!("event id at {p}"))?
            }
            _ => super::body_hash_id(body),
        };
        let event_type = match &self.event_type {
            Some(Place::Header(h)) => super::header_label(headers, h.as_str())?,
            Some(Place::Pointer(p)) => {
                super::json_label(doc.as_ref(), p, &format!("event type at {p}"))?
            }
            None => DEFAULT_TYPE.to_string(),
        };
        Ok(Verified {
            event_id,
            event_type,
        })
    }
}

/// Sign as the configured generic sender would. `--id`/`--type` go where the source
/// looks for them (a header, or the JSON body at the pointer).
pub fn sign(settings: &HmacConfig, secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let bad = |m: String| SignError::Payload(m);
    let template = parse_template(&settings.signed_payload).map_err(bad)?;
    let mut headers = Vec::new();
    let mut edits: Vec<(&str, Option<&str>)> = Vec::new();
    let fresh = super::fresh_id("");

    let mut id_header = None;
    match (&settings.id, out.event_id) {
        (Some(Locator::Header(h)), id) => {
            let id = id.unwrap_or(&fresh).to_string();
            headers.push((h.clone(), id.clone()));
            id_header = Some(id);
        }
        (Some(Locator::Pointer(p)), Some(id)) => edits.push((p, Some(id))),
        (Some(Locator::Pointer(p)), None) if !super::has_string(out.body, p) => {
            edits.push((p, Some(&fresh)));
        }
        (Some(Locator::Pointer(_)), None) | (None, None) => {}
        (None, Some(_)) => {
            return Err(bad(
                "this source takes no id (no id_header or id_pointer): its id is a hash of the body"
                    .into(),
            ));
        }
    }
    match (&settings.event_type, out.event_type) {
        (Some(Locator::Header(h)), Some(t)) => headers.push((h.clone(), t.to_string())),
        (Some(Locator::Header(h)), None) => {
            return Err(bad(format!(
                "this source reads the type from {h}: pass --type"
            )));
        }
        (Some(Locator::Pointer(p)), t) => edits.push((p, t)),
        (None, None) => {}
        (None, Some(_)) => {
            return Err(bad(format!(
                "this source takes no type (no type_header or type_pointer): every event is `{DEFAULT_TYPE}`"
            )));
        }
    }
    let body = super::edit_json(out.body, &edits)?;
    if let Some(Locator::Pointer(p)) = &settings.event_type
        && !super::has_string(&body, p)
    {
        return Err(bad(format!(
            "the body has no string at {p}: add it or pass --type"
        )));
    }
    let ts = out.timestamp.to_string();
    if let Some(h) = &settings.timestamp_header {
        headers.push((h.clone(), ts.clone()));
    }
    let parts: Vec<&[u8]> = template
        .iter()
        .map(|piece| match piece {
            Piece::Text(t) => t.as_bytes(),
            Piece::Body => &body[..],
            Piece::Timestamp => ts.as_bytes(),
            Piece::Id => id_header.as_deref().unwrap_or_default().as_bytes(),
        })
        .collect();
    let sig = match settings.signature_encoding {
        SignatureEncoding::Hex => super::mac_hex(secret.as_bytes(), &parts),
        SignatureEncoding::Base64 => super::mac_base64(secret.as_bytes(), &parts),
    };
    headers.push((
        settings.signature_header.clone(),
        format!("{}{sig}", settings.signature_prefix),
    ));
    Ok(Signed { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{
        base64_positions, flip, flip_base64, flip_digit, flip_hex, headers,
    };

    // Constructed vectors, cross-checked independently:
    //   printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
    //   printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"
    const SECRET: &str = "generic-secret-42";
    const BODY: &str = r#"{"event":{"id":"ev_77","kind":"order.paid"}}"#;
    const TS: i64 = 1_700_000_000;
    const SIG_TS_B64: &str = "Gbqi1o5JJMwjVe1yeDxUixdyrYY+L3x1CoFSmwtSfPc=";
    const SIG_BODY_HEX: &str = "c99bae410bc451f50046c7290393d6ff850b594592be5fed9121538084f45e24";

    fn timestamped() -> HmacConfig {
        HmacConfig {
            signature_header: "X-Signature".into(),
            signature_prefix: "v1=".into(),
            signature_encoding: SignatureEncoding::Base64,
            timestamp_header: Some("X-Timestamp".into()),
            signed_payload: "{timestamp}.{body}".into(),
            id: Some(Locator::Pointer("/event/id".into())),
            event_type: Some(Locator::Pointer("/event/kind".into())),
        }
    }

    fn plain() -> HmacConfig {
        HmacConfig {
            signature_prefix: "sha256=".into(),
            id: Some(Locator::Header("X-Delivery".into())),
            event_type: Some(Locator::Header("X-Event".into())),
            ..HmacConfig::new("X-Hub")
        }
    }

    fn source(settings: HmacConfig, secrets: &[&str]) -> SourceConfig {
        let mut s = SourceConfig::new(
            "h",
            Scheme::HmacSha256,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        );
        s.hmac = Some(settings);
        s
    }

    fn verifier(settings: HmacConfig, secrets: &[&str]) -> Verifier {
        Verifier::new(&source(settings, secrets)).unwrap()
    }

    fn ts_request(sig: &str, ts: &str) -> HeaderMap {
        headers([("X-Signature", sig), ("X-Timestamp", ts)])
    }

    fn plain_request(sig: &str) -> HeaderMap {
        headers([
            ("X-Hub", sig),
            ("X-Delivery", "d-1"),
            ("X-Event", "thing.done"),
        ])
    }

    #[test]
    fn constructed_vectors_verify_and_match_openssl() {
        let v = verifier(timestamped(), &[SECRET]);
        let got = v
            .verify(
                &ts_request(&format!("v1={SIG_TS_B64}"), &TS.to_string()),
                BODY.as_bytes(),
                TS,
            )
            .unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("ev_77", "order.paid")
        );

        let v = verifier(plain(), &[SECRET]);
        let got = v
            .verify(
                &plain_request(&format!("sha256={SIG_BODY_HEX}")),
                BODY.as_bytes(),
                0,
            )
            .unwrap();
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("d-1", "thing.done")
        );

        let v = verifier(HmacConfig::new("x-sig"), &[SECRET]);
        let got = v
            .verify(&headers([("x-sig", SIG_BODY_HEX)]), BODY.as_bytes(), 0)
            .unwrap();
        assert_eq!(got.event_type, DEFAULT_TYPE);
        assert_eq!(got.event_id, super::super::body_hash_id(BODY.as_bytes()));
    }

    #[test]
    fn every_single_byte_change_fails() {
        let v = verifier(timestamped(), &[SECRET]);
        let ts = TS.to_string();
        let sig = format!("v1={SIG_TS_B64}");
        for i in 0..BODY.len() {
            let mut body = BODY.as_bytes().to_vec();
            body[i] ^= 1;
            let e = v.verify(&ts_request(&sig, &ts), &body, TS).unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "body byte {i}");
        }
        for i in base64_positions(SIG_TS_B64) {
            let changed = format!("v1={}", flip_base64(SIG_TS_B64, i));
            let e = v
                .verify(&ts_request(&changed, &ts), BODY.as_bytes(), TS)
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "signature char {i}");
        }
        for i in 0..ts.len() {
            let changed = flip_digit(&ts, i);
            let now = changed.parse().unwrap();
            let e = v
                .verify(&ts_request(&sig, &changed), BODY.as_bytes(), now)
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "timestamp digit {i}");
        }
        let v = verifier(plain(), &[SECRET]);
        for i in 0..SIG_BODY_HEX.len() {
            let changed = format!("sha256={}", flip_hex(SIG_BODY_HEX, i));
            let e = v
                .verify(&plain_request(&changed), BODY.as_bytes(), 0)
                .unwrap_err();
            assert_eq!(e.reason, "signature_mismatch", "signature char {i}");
        }
    }

    #[test]
    fn a_signed_id_header_cannot_change() {
        let settings = HmacConfig {
            signed_payload: "{id}:{body}".into(),
            ..plain()
        };
        let sig = super::super::mac_hex(SECRET.as_bytes(), &[b"d-1:", BODY.as_bytes()]);
        let v = verifier(settings, &[SECRET]);
        let sig = format!("sha256={sig}");
        assert!(v.verify(&plain_request(&sig), BODY.as_bytes(), 0).is_ok());
        for i in 0.."d-1".len() {
            let id = flip("d-1", i);
            let h = headers([
                ("X-Hub", sig.as_str()),
                ("X-Delivery", &id),
                ("X-Event", "t"),
            ]);
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), 0).unwrap_err().reason,
                "signature_mismatch"
            );
        }
    }

    #[test]
    fn rotation_and_tolerance_edges() {
        let v = verifier(timestamped(), &["older", SECRET]);
        let sig = format!("v1={SIG_TS_B64}");
        let h = ts_request(&sig, &TS.to_string());
        for now in [TS - 300, TS + 300] {
            assert!(v.verify(&h, BODY.as_bytes(), now).is_ok());
        }
        for now in [TS - 301, TS + 301] {
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), now).unwrap_err().reason,
                "timestamp_out_of_tolerance"
            );
        }
    }

    #[test]
    fn missing_duplicate_and_malformed_headers() {
        let v = verifier(timestamped(), &[SECRET]);
        let sig = format!("v1={SIG_TS_B64}");
        let ts = TS.to_string();
        for name in ["X-Signature", "X-Timestamp"] {
            let mut h = ts_request(&sig, &ts);
            h.remove(name);
            let e = v.verify(&h, BODY.as_bytes(), TS).unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
            let mut h = ts_request(&sig, &ts);
            let again = h[name].clone();
            h.append(name, again);
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), TS).unwrap_err().reason,
                "duplicate_header"
            );
        }
        for (s, t) in [
            (SIG_TS_B64, ts.as_str()),
            ("v1=***", ts.as_str()),
            (sig.as_str(), "soon"),
        ] {
            let e = v
                .verify(&ts_request(s, t), BODY.as_bytes(), TS)
                .unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (400, "malformed_header"),
                "{s} {t}"
            );
        }
        // Pointers that find nothing, after a good signature: 400 naming the pointer.
        let body = br#"{"event":{"id":"e"}}"#;
        let sig = super::super::mac_base64(SECRET.as_bytes(), &[ts.as_bytes(), b".", body]);
        let e = v
            .verify(&ts_request(&format!("v1={sig}"), &ts), body, TS)
            .unwrap_err();
        assert_eq!(e.reason, "malformed_body");
        assert!(e.message.contains("/event/kind"), "{}", e.message);
    }

    #[test]
    fn bad_settings_are_config_errors_naming_the_field() {
        for (settings, field) in [
            (
                HmacConfig {
                    signed_payload: "{timestamp}".into(),
                    ..timestamped()
                },
                "signed_payload",
            ),
            (
                HmacConfig {
                    signed_payload: "{body}{body}".into(),
                    ..timestamped()
                },
                "signed_payload",
            ),
            (
                HmacConfig {
                    signed_payload: "{ts}.{body}".into(),
                    ..timestamped()
                },
                "signed_payload",
            ),
            (
                HmacConfig {
                    signed_payload: "{body".into(),
                    ..timestamped()
                },
                "signed_payload",
            ),
            (
                HmacConfig {
                    signed_payload: "{body}".into(),
                    ..timestamped()
                },
                "signed_payload",
            ),
            (
                HmacConfig {
                    timestamp_header: None,
                    ..timestamped()
                },
                "signed_payload",
            ),
            (
                HmacConfig {
                    signed_payload: "{id}.{body}".into(),
                    ..HmacConfig::new("x")
                },
                "signed_payload",
            ),
            (HmacConfig::new("bad header"), "signature_header"),
            (
                HmacConfig {
                    id: Some(Locator::Pointer("id".into())),
                    ..plain()
                },
                "id_pointer",
            ),
            (
                HmacConfig {
                    event_type: Some(Locator::Header("a b".into())),
                    ..plain()
                },
                "type_header",
            ),
        ] {
            let e = Verifier::new(&source(settings, &[SECRET])).err().unwrap();
            assert!(
                e.to_string().contains(&format!("sources.h.{field}")),
                "{field}: {e}"
            );
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        for settings in [timestamped(), plain(), HmacConfig::new("x-sig")] {
            let v = verifier(settings.clone(), &[SECRET]);
            let with_type = settings.event_type.is_some().then_some("a.b");
            let with_id = settings.id.is_some().then_some("id-9");
            let out = Outgoing {
                event_id: with_id,
                event_type: with_type,
                timestamp: TS,
                body: br#"{"event":{"n":1}}"#,
            };
            let signed = sign(&settings, SECRET, &out).unwrap();
            let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let got = v.verify(&h, &signed.body, TS).unwrap();
            assert_eq!(got.event_type, with_type.unwrap_or(DEFAULT_TYPE));
            if with_id.is_some() {
                assert_eq!(got.event_id, "id-9");
            }
        }
        let refused = Outgoing {
            event_id: Some("x"),
            event_type: None,
            timestamp: TS,
            body: b"{}",
        };
        assert!(sign(&HmacConfig::new("x-sig"), SECRET, &refused).is_err());
    }
}
