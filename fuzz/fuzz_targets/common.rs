//! The sources the targets verify against: one per scheme, two generic `hmac-sha256`
//! shapes, and a Standard Webhooks source with an Ed25519 public key. Each has a JSON
//! Schema on some event types so the schema check is fuzzed too.

// Each target uses a part of it.
#![allow(dead_code)]

use agenthook::config::{
    HmacConfig, Locator, SchemaRule, Scheme, Secret, SignatureEncoding, SourceConfig,
};
use agenthook::ingress::Verifier;

pub const NOW: i64 = 1_700_000_000;

pub struct Source {
    pub config: SourceConfig,
    /// What the sender signs with.
    pub sender_secret: Secret,
    pub verifier: Verifier,
}

pub fn sources() -> Vec<Source> {
    let schema = SchemaRule {
        types: Some("*.*".into()),
        path: "inline".into(),
        schema: serde_json::json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 0}, "s": {"pattern": "^a+$"}}
        }),
    };
    let mut configs = Vec::new();
    for scheme in Scheme::ALL {
        let secret = match scheme {
            Scheme::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            _ => "s3cret",
        };
        let mut c = SourceConfig::new(scheme.as_str(), scheme, vec![Secret::new(secret)]);
        c.schemas.push(schema.clone());
        configs.push((c, secret));
    }
    let mut generic = SourceConfig::new("hmac2", Scheme::HmacSha256, vec![Secret::new("k")]);
    generic.hmac = Some(HmacConfig {
        signature_header: "x-sig".into(),
        signature_prefix: "v1=".into(),
        signature_encoding: SignatureEncoding::Base64,
        timestamp_header: Some("x-ts".into()),
        signed_payload: "{timestamp}.{id}.{body}".into(),
        id: Some(Locator::Header("x-id".into())),
        event_type: Some(Locator::Pointer("/type".into())),
    });
    configs.push((generic, "k"));
    let ed = SourceConfig::new(
        "ed",
        Scheme::StandardWebhooks,
        vec![Secret::new(
            "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
        )],
    );
    configs.push((ed, "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="));
    configs
        .into_iter()
        .map(|(config, secret)| Source {
            verifier: Verifier::new(&config).expect("valid fuzz source"),
            sender_secret: Secret::new(secret),
            config,
        })
        .collect()
}
