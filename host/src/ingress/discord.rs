//! Discord interactions: `X-Signature-Ed25519` (hex) is the Ed25519 signature of
//! `X-Signature-Timestamp` followed by the body, checked against the application's
//! public key (the secret, 64 hex digits). Discord sends a `PING` (type 1) when the
//! endpoint is saved and now and then, and requires a `PONG` (`{"type":1}`) to it —
//! and a 401 to a bad signature, which it also tests. A stored interaction is answered
//! with a deferred response (the plugin follows up through Discord's API); the id is
//! the interaction's `id`, the type `interaction.<kind>`.
//! <https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint>

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use http::HeaderMap;
use serde_json::{Value, json};

use super::{Accepted, Outgoing, Rejection, SignError, Signed, Verified};
use crate::config::{ConfigError, SourceConfig};

const SIGNATURE: &str = "x-signature-ed25519";
const TIMESTAMP: &str = "x-signature-timestamp";
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE];

pub struct Verifier {
    keys: Vec<VerifyingKey>,
    tolerance_secs: u64,
}

fn key_bytes(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text.trim()).ok()?.try_into().ok()
}

impl Verifier {
    pub fn new(source: &SourceConfig) -> Result<Verifier, ConfigError> {
        let keys = source
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                key_bytes(s.expose())
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            format!("sources.{}.secrets[{i}]", source.name),
                            "a Discord secret is the application's public key: 64 hex digits (an Ed25519 key)",
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            keys,
            tolerance_secs: source.tolerance_secs,
        })
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, Rejection> {
        let sig_text = super::required_header(headers, SIGNATURE, true)?;
        let ts_text = super::required_header(headers, TIMESTAMP, true)?;
        let sig: [u8; 64] = hex::decode(sig_text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Rejection::bad_request(
                    "malformed_header",
                    "X-Signature-Ed25519 is not 128 hex digits",
                )
            })?;
        let ts = super::parse_timestamp(ts_text, "X-Signature-Timestamp")?;
        let message = [ts_text.as_bytes(), body].concat();
        let sig = Signature::from_bytes(&sig);
        if !self
            .keys
            .iter()
            .any(|k| k.verify_strict(&message, &sig).is_ok())
        {
            return Err(Rejection::signature_mismatch("X-Signature-Ed25519"));
        }
        super::check_tolerance(ts, now_secs, self.tolerance_secs, "X-Signature-Timestamp")?;
        let doc = super::json(body);
        let kind = doc
            .as_ref()
            .and_then(|d| d.get("type"))
            .and_then(Value::as_u64);
        let kind = match kind {
            Some(1) => return Ok(Accepted::Reply(json!({"type": 1}))),
            Some(2) => "application_command",
            Some(3) => "message_component",
            Some(4) => "application_command_autocomplete",
            Some(5) => "modal_submit",
            _ => {
                return Err(Rejection::bad_request(
                    "malformed_body",
                    "the body is not a Discord interaction (a JSON object with a known integer `type`)",
                ));
            }
        };
        Ok(Accepted::Event(Verified {
            event_id: super::json_label(doc.as_ref(), "/id", "interaction `id`")?,
            event_type: format!("interaction.{kind}"),
        }))
    }
}

/// The interaction response for a stored interaction: deferred, so a plugin can answer
/// through the follow-up webhook within Discord's 15 minutes.
pub fn deferred_response(event_type: &str) -> Option<Value> {
    Some(match event_type {
        // DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        "interaction.application_command" | "interaction.modal_submit" => json!({"type": 5}),
        // DEFERRED_UPDATE_MESSAGE
        "interaction.message_component" => json!({"type": 6}),
        // APPLICATION_COMMAND_AUTOCOMPLETE_RESULT: cannot be deferred.
        "interaction.application_command_autocomplete" => {
            json!({"type": 8, "data": {"choices": []}})
        }
        _ => return None,
    })
}

/// Sign as Discord with the application's private key (`secret`: the 64-hex-digit
/// Ed25519 seed whose public key the host has). `--id` goes into the body's `id`.
pub fn sign(secret: &str, out: &Outgoing) -> Result<Signed, SignError> {
    let seed = key_bytes(secret).ok_or_else(|| SignError::Secret {
        scheme: "discord",
        message: "sign with the Ed25519 private key seed as 64 hex digits".into(),
    })?;
    let body = super::edit_json(out.body, &[("/id", out.event_id)])?;
    let ts = out.timestamp.to_string();
    let sig = SigningKey::from_bytes(&seed).sign(&[ts.as_bytes(), &body].concat());
    Ok(Signed {
        headers: vec![
            (
                "User-Agent".into(),
                "Discord-Interactions/1.0 (+https://discord.com)".into(),
            ),
            ("X-Signature-Ed25519".into(), hex::encode(sig.to_bytes())),
            ("X-Signature-Timestamp".into(), ts),
        ],
        body,
    })
}

/// The public key (hex) of a private key seed (hex), for tests and docs.
pub fn public_key(seed_hex: &str) -> Option<String> {
    key_bytes(seed_hex).map(|s| hex::encode(SigningKey::from_bytes(&s).verifying_key().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, Secret};
    use crate::ingress::testdata::{flip_hex, headers, vector};

    fn verifier(keys: &[&str]) -> Verifier {
        Verifier::new(&SourceConfig::new(
            "discord",
            Scheme::Discord,
            keys.iter().map(|s| Secret::new(*s)).collect(),
        ))
        .unwrap()
    }

    #[test]
    fn vector_verifies_and_ping_is_answered_pong() {
        let v = vector("discord", "PING");
        let key = v.public_key.clone().unwrap();
        let ts: i64 = v.header("X-Signature-Timestamp").parse().unwrap();
        let got = verifier(&[&key])
            .verify(&v.headers(), v.body.as_bytes(), ts)
            .unwrap();
        assert_eq!(got, Accepted::Reply(json!({"type": 1})));
        assert_eq!(public_key(&v.secret).unwrap(), key);
    }

    #[test]
    fn commands_are_events_with_a_deferred_answer() {
        let v = vector("discord", "application command");
        let key = v.public_key.clone().unwrap();
        let ts: i64 = v.header("X-Signature-Timestamp").parse().unwrap();
        let Accepted::Event(got) = verifier(&[&key])
            .verify(&v.headers(), v.body.as_bytes(), ts)
            .unwrap()
        else {
            panic!("not an event")
        };
        assert_eq!(got.event_type, "interaction.application_command");
        assert_eq!(got.event_id, "1180000000000000001");
        assert_eq!(deferred_response(&got.event_type), Some(json!({"type": 5})));
    }

    #[test]
    fn bad_signatures_timestamps_and_keys_are_refused() {
        let v = vector("discord", "PING");
        let key = v.public_key.clone().unwrap();
        let ts: i64 = v.header("X-Signature-Timestamp").parse().unwrap();
        let good = verifier(&[&key]);
        for i in 0..v.body.len() {
            let mut body = v.body.as_bytes().to_vec();
            body[i] ^= 1;
            let e = good.verify(&v.headers(), &body, ts).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.reason),
                (401, "signature_mismatch"),
                "byte {i}"
            );
        }
        let sig = v.header("X-Signature-Ed25519");
        for i in (0..sig.len()).step_by(7) {
            let mut h = v.headers();
            h.insert("x-signature-ed25519", flip_hex(&sig, i).parse().unwrap());
            assert_eq!(
                good.verify(&h, v.body.as_bytes(), ts).unwrap_err().reason,
                "signature_mismatch"
            );
        }
        let mut h = v.headers();
        h.insert(
            "x-signature-timestamp",
            (ts + 1).to_string().parse().unwrap(),
        );
        assert_eq!(
            good.verify(&h, v.body.as_bytes(), ts).unwrap_err().reason,
            "signature_mismatch"
        );
        let e = good
            .verify(&v.headers(), v.body.as_bytes(), ts + 301)
            .unwrap_err();
        assert_eq!(e.reason, "timestamp_out_of_tolerance");
        let other = public_key(&"11".repeat(32)).unwrap();
        assert!(
            verifier(&[&other, &key])
                .verify(&v.headers(), v.body.as_bytes(), ts)
                .is_ok()
        );
        assert_eq!(
            verifier(&[&other])
                .verify(&v.headers(), v.body.as_bytes(), ts)
                .unwrap_err()
                .reason,
            "signature_mismatch"
        );
        for name in ["X-Signature-Ed25519", "X-Signature-Timestamp"] {
            let mut h = v.headers();
            h.remove(name);
            let e = good.verify(&h, v.body.as_bytes(), ts).unwrap_err();
            assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
        }
        let e = good
            .verify(
                &headers([
                    ("X-Signature-Ed25519", "zz"),
                    ("X-Signature-Timestamp", "1"),
                ]),
                b"{}",
                1,
            )
            .unwrap_err();
        assert_eq!(e.reason, "malformed_header");
        let s = SourceConfig::new("d", Scheme::Discord, vec![Secret::new("not-hex")]);
        assert!(
            Verifier::new(&s)
                .err()
                .unwrap()
                .to_string()
                .contains("sources.d.secrets[0]")
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let seed = "22".repeat(32);
        let v = verifier(&[&public_key(&seed).unwrap()]);
        let out = Outgoing {
            event_id: Some("42"),
            event_type: None,
            timestamp: 1_700_000_000,
            body: br#"{"type":3,"data":{"custom_id":"ok"}}"#,
        };
        let signed = sign(&seed, &out).unwrap();
        let h = headers(signed.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let Accepted::Event(got) = v.verify(&h, &signed.body, 1_700_000_000).unwrap() else {
            panic!()
        };
        assert_eq!(
            (got.event_id.as_str(), got.event_type.as_str()),
            ("42", "interaction.message_component")
        );
        let e = v
            .verify(&h, br#"{"type":9,"id":"1"}"#, 1_700_000_000)
            .unwrap_err();
        assert_eq!(e.reason, "signature_mismatch");
    }
}
