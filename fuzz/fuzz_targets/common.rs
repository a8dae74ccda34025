//! The sources the targets verify against: one per scheme, two generic `hmac-sha256`
//! shapes, a Standard Webhooks source with an Ed25519 public key, CloudEvents with basic
//! and Standard Webhooks auth, and A2A with a JWKS. Each has a JSON Schema on some
//! event types so the schema check is fuzzed too.

// Each target uses a part of it.
#![allow(dead_code)]

use agenthook::config::{
    CloudEventsAuth, HmacConfig, JwtSettings, Locator, SchemaRule, Scheme, Secret,
    SignatureEncoding, SourceConfig,
};
use agenthook::ingress::Verifier;

pub const NOW: i64 = 1_700_000_000;

/// The Discord sender's Ed25519 seed (RFC 8032 test 1) and its public key.
const DISCORD_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const DISCORD_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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
        // (what the host configures, what the sender signs with)
        let (secret, sender) = match scheme {
            Scheme::StandardWebhooks | Scheme::McpEvents => (WHSEC, WHSEC),
            Scheme::Basic => ("user:pass", "user:pass"),
            Scheme::Discord => (DISCORD_PUBLIC, DISCORD_SEED),
            _ => ("s3cret", "s3cret"),
        };
        let mut c = SourceConfig::new(scheme.as_str(), scheme, vec![Secret::new(secret)]);
        c.schemas.push(schema.clone());
        match scheme {
            Scheme::Twilio => c.standard.public_url = Some("https://hooks.example.com".into()),
            Scheme::Cloudevents => c.standard.allowed_origins = vec!["example.com".into()],
            Scheme::Bearer => {
                c.standard.id = Some(Locator::Pointer("/id".into()));
                c.standard.event_type = Some(Locator::Header("x-kind".into()));
            }
            _ => {}
        }
        configs.push((c, sender));
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
    let mut ce_basic = SourceConfig::new("ce-basic", Scheme::Cloudevents, vec![Secret::new("u:p")]);
    ce_basic.standard.auth = Some(CloudEventsAuth::Basic);
    configs.push((ce_basic, "u:p"));
    let mut ce_sw = SourceConfig::new("ce-sw", Scheme::Cloudevents, vec![Secret::new(WHSEC)]);
    ce_sw.standard.auth = Some(CloudEventsAuth::StandardWebhooks);
    configs.push((ce_sw, WHSEC));
    let mut a2a_jwt = SourceConfig::new("a2a-jwt", Scheme::A2a, vec![Secret::new("tok")]);
    a2a_jwt.standard.jwt = Some(JwtSettings {
        jwks: serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "agent-key-1", "alg": "ES256",
            "x": "F0DoiKd6MsqJum5rJiTa7fQyBMWeIAEksNbEsb6Jy7Y",
            "y": "giP3MHm5z7JSTAr_MpLHVYKo8UtVr3vDy0udPYLaKCY"
        }]}),
        algorithms: vec!["ES256".into(), "RS256".into()],
        audience: Some("https://hooks.example.com/hooks/a2a".into()),
    });
    configs.push((a2a_jwt, "tok"));
    configs
        .into_iter()
        .map(|(config, secret)| Source {
            verifier: Verifier::new(&config).expect("valid fuzz source"),
            sender_secret: Secret::new(secret),
            config,
        })
        .collect()
}
