//! Property tests across every scheme: no input makes verification panic, and whatever
//! a sender signs with [`sign`] verifies (or is refused only for its content, never for
//! its signature).

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;
use crate::config::{HmacConfig, Locator, SchemaRule, SignatureEncoding};

const NOW: i64 = 1_700_000_000;

/// One source per scheme (two for hmac-sha256), each with a schema so the schema path
/// runs too, and the secret its sender signs with.
fn sources() -> Vec<(SourceConfig, Secret)> {
    let schema = SchemaRule {
        types: Some("*.*".into()),
        path: "inline".into(),
        schema: serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    };
    let mut out = Vec::new();
    for scheme in Scheme::ALL {
        let secret = match scheme {
            Scheme::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            _ => "s3cret",
        };
        let mut source = SourceConfig::new(scheme.as_str(), scheme, vec![Secret::new(secret)]);
        source.schemas.push(schema.clone());
        if scheme == Scheme::HmacSha256 {
            let mut timestamped = source.clone();
            timestamped.hmac = Some(HmacConfig {
                signature_header: "x-sig".into(),
                signature_prefix: "v1=".into(),
                signature_encoding: SignatureEncoding::Base64,
                timestamp_header: Some("x-ts".into()),
                signed_payload: "{timestamp}.{id}.{body}".into(),
                id: Some(Locator::Header("x-id".into())),
                event_type: Some(Locator::Pointer("/type".into())),
            });
            out.push((timestamped, Secret::new(secret)));
        }
        out.push((source, Secret::new(secret)));
    }
    // A Standard Webhooks source that verifies Ed25519 (v1a), with its sender's key.
    let mut ed = SourceConfig::new(
        "ed",
        Scheme::StandardWebhooks,
        vec![Secret::new(
            "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
        )],
    );
    ed.schemas.clear();
    out.push((
        ed,
        Secret::new("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="),
    ));
    out
}

/// Every header name any scheme reads, so random requests hit the parsers.
const NAMES: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "x-github-event",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-shopify-webhook-id",
    "x-shopify-topic",
    "x-signature",
    "x-sig",
    "x-ts",
    "x-id",
    "content-type",
];

fn header_map(pairs: &[(usize, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (i, value) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(HeaderName::from_static(NAMES[i % NAMES.len()]), v);
        }
    }
    h
}

/// Header values shaped like the real ones often enough to get past the first checks.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        "(t=[0-9]{1,12},)?(v1=[0-9a-f]{0,64},?){0,3}".prop_map(String::into_bytes),
        "(v1a?,[A-Za-z0-9+/=]{0,88} ?){0,3}".prop_map(String::into_bytes),
        "(sha256=|v0=)[0-9a-f]{0,64}".prop_map(String::into_bytes),
        "[0-9]{0,13}".prop_map(String::into_bytes),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        "\\{\"(type|id|event_id|action|challenge)\": ?(\"[ -~]{0,20}\"|[0-9]{1,5}|null|\\{\\})\\}"
            .prop_map(String::into_bytes),
        "(payload|command|type)=[%0-9A-Za-z]{0,40}(&[a-z]{1,5}=[ -~]{0,10}){0,3}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_request_panics(
        headers in proptest::collection::vec((any::<usize>(), value()), 0..8),
        body in body(),
        now in prop_oneof![Just(NOW), any::<i64>()],
    ) {
        let h = header_map(&headers);
        for (source, _) in sources() {
            let v = Verifier::new(&source).unwrap();
            if let Err(r) = v.verify(&h, &body, now) {
                prop_assert!(r.status.is_client_error(), "{r:?}");
            }
        }
    }

    #[test]
    fn what_a_sender_signs_verifies(
        body in body(),
        id in proptest::option::of("[A-Za-z0-9_-]{1,40}"),
        ty in proptest::option::of("[a-z_]{1,10}(\\.[a-z_]{1,10})?"),
        skew in -300i64..=300,
    ) {
        for (source, secret) in sources() {
            let out = Outgoing {
                event_id: id.as_deref(),
                event_type: ty.as_deref(),
                timestamp: NOW + skew,
                body: &body,
            };
            let Ok(signed) = sign(&source, &secret, &out) else { continue };
            let mut h = HeaderMap::new();
            for (k, v) in &signed.headers {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            match Verifier::new(&source).unwrap().verify(&h, &signed.body, NOW) {
                Ok(Accepted::Event(v)) => {
                    if let Some(id) = &id {
                        prop_assert_eq!(&v.event_id, id, "{}", source.name);
                    }
                    if let Some(ty) = &ty {
                        prop_assert!(v.event_type.starts_with(ty.as_str()), "{}: {}", source.name, v.event_type);
                    }
                }
                Ok(Accepted::Challenge(_)) => {}
                Err(r) => prop_assert!(
                    matches!(r.reason, "malformed_body" | "schema_violation"),
                    "{}: a signed request was refused: {r:?}", source.name
                ),
            }
        }
    }
}
