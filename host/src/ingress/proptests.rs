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
        // (what the host configures, what the sender signs with)
        let (secret, sender) = match scheme {
            Scheme::StandardWebhooks | Scheme::McpEvents => (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            Scheme::Basic => ("user:pass", "user:pass"),
            // RFC 8032 test 1's key pair.
            Scheme::Discord => (
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            ),
            _ => ("s3cret", "s3cret"),
        };
        let mut source = SourceConfig::new(scheme.as_str(), scheme, vec![Secret::new(secret)]);
        source.schemas.push(schema.clone());
        match scheme {
            Scheme::Twilio => source.standard.public_url = Some("https://hooks.example.com".into()),
            Scheme::Cloudevents => source.standard.allowed_origins = vec!["*".into()],
            Scheme::Bearer | Scheme::Basic => {
                source.standard.id = Some(Locator::Header("x-id".into()));
                source.standard.event_type = Some(Locator::Header("x-kind".into()));
            }
            _ => {}
        }
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
        out.push((source, Secret::new(sender)));
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
            // Twilio signs the URL it posts to; CloudEvents' id is (source, id), Twilio's
            // and Discord's types come from the body.
            let uri: http::Uri = format!("/hooks/{}", source.name).parse().unwrap();
            let literal = !matches!(source.scheme, Scheme::Cloudevents | Scheme::Twilio | Scheme::Discord);
            match Verifier::new(&source).unwrap().verify_at(&uri, &h, &signed.body, NOW) {
                Ok(Accepted::Event(v)) if literal => {
                    if let Some(id) = &id {
                        prop_assert_eq!(&v.event_id, id, "{}", source.name);
                    }
                    if let Some(ty) = &ty {
                        prop_assert!(v.event_type.starts_with(ty.as_str()), "{}: {}", source.name, v.event_type);
                    }
                }
                Ok(_) => {}
                Err(r) => prop_assert!(
                    matches!(r.reason, "malformed_body" | "schema_violation"),
                    "{}: a signed request was refused: {r:?}", source.name
                ),
            }
        }
    }
}
