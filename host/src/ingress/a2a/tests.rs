use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::config::{Scheme, Secret};
use crate::ingress::testdata::{Vector, headers, vector};

const AUD: &str = "https://hooks.example.com/hooks/a2a";

fn the_vector() -> Vector {
    vector("a2a", "PyJWT")
}

/// The vector's `iat`: tests pin the clock to it.
const NOW: i64 = 1_764_867_600;

fn source(v: &Vector, jwt: bool) -> SourceConfig {
    let mut s = SourceConfig::new("a2a", Scheme::A2a, vec![Secret::new(&v.secret)]);
    if jwt {
        s.standard.jwt = Some(JwtSettings {
            jwks: serde_json::from_str(v.public_key.as_deref().unwrap()).unwrap(),
            algorithms: vec!["ES256".into()],
            audience: Some(AUD.into()),
        });
    }
    s
}

fn verifier(v: &Vector) -> Verifier {
    Verifier::new(&source(v, true)).unwrap()
}

/// A JWT signed with the vector's private key, with `claims` and `kid`, `alg`.
fn token(v: &Vector, alg: Algorithm, kid: &str, claims: Value) -> String {
    let key = EncodingKey::from_ec_pem(v.private_key.as_deref().unwrap().as_bytes()).unwrap();
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, &claims, &key).unwrap()
}

fn request(v: &Vector, jwt: &str) -> HeaderMap {
    headers([
        ("X-A2A-Notification-Token", v.secret.as_str()),
        ("Authorization", format!("Bearer {jwt}").as_str()),
    ])
}

fn claims(v: &Vector) -> Value {
    json!({
        "iat": NOW, "exp": NOW + 300, "aud": AUD,
        "request_body_sha256": hex::encode(Sha256::digest(v.body.as_bytes())),
    })
}

#[test]
fn pyjwt_vector_verifies() {
    let v = the_vector();
    let got = verifier(&v)
        .verify(&v.headers(), v.body.as_bytes(), NOW)
        .unwrap();
    assert_eq!(got.event_type, "a2a.task.status-update");
    assert_eq!(
        got.event_id,
        "task-7f3a/status/TASK_STATE_COMPLETED@2026-12-04T17:00:00Z"
    );
}

#[test]
fn each_jwt_check_refuses_with_its_reason() {
    let v = the_vector();
    let body = v.body.as_bytes();
    let ok = claims(&v);
    let with = |patch: Value| {
        let mut c = ok.clone();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        c
    };
    assert!(
        verifier(&v)
            .verify(
                &request(&v, &token(&v, Algorithm::ES256, "agent-key-1", ok.clone())),
                body,
                NOW
            )
            .is_ok()
    );
    for (jwt, reason) in [
        (
            token(&v, Algorithm::ES256, "other-key", ok.clone()),
            "unknown_key",
        ),
        (
            token(
                &v,
                Algorithm::ES256,
                "agent-key-1",
                with(json!({"aud": "https://evil.example.com"})),
            ),
            "audience_mismatch",
        ),
        (
            token(
                &v,
                Algorithm::ES256,
                "agent-key-1",
                with(json!({"aud": null})),
            ),
            "audience_mismatch",
        ),
        (
            token(
                &v,
                Algorithm::ES256,
                "agent-key-1",
                with(json!({"exp": NOW})),
            ),
            "token_expired",
        ),
        (
            token(
                &v,
                Algorithm::ES256,
                "agent-key-1",
                with(json!({"exp": null})),
            ),
            "malformed_token",
        ),
        (
            token(
                &v,
                Algorithm::ES256,
                "agent-key-1",
                with(json!({"iat": NOW - 301})),
            ),
            "timestamp_out_of_tolerance",
        ),
        (
            token(
                &v,
                Algorithm::ES256,
                "agent-key-1",
                with(json!({"request_body_sha256": "00"})),
            ),
            "signature_mismatch",
        ),
    ] {
        let e = verifier(&v)
            .verify(&request(&v, &jwt), body, NOW)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (401, reason), "{jwt}");
    }
    // A signature made by another key, and one with the right key on altered claims.
    let good = token(&v, Algorithm::ES256, "agent-key-1", ok.clone());
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged_claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&with(json!({"exp": NOW + 99999}))).unwrap(),
    );
    let forged = format!("{head}.{forged_claims}.{sig}");
    let e = verifier(&v)
        .verify(&request(&v, &forged), body, NOW)
        .unwrap_err();
    assert_eq!(e.reason, "signature_mismatch");
    // alg "none" and an HMAC alg keyed with the public key are refused before any key is used.
    let none = format!(
        "{}.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","kid":"agent-key-1"}"#
        ),
        forged_claims
    );
    let e = verifier(&v)
        .verify(&request(&v, &none), body, NOW)
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 400, "{e:?}");
    let hs = encode(
        &Header {
            kid: Some("agent-key-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &ok,
        &EncodingKey::from_secret(v.public_key.as_deref().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        verifier(&v)
            .verify(&request(&v, &hs), body, NOW)
            .unwrap_err()
            .reason,
        "algorithm_not_allowed"
    );
    // No JWT at all, and a wrong notification token.
    let e = verifier(&v)
        .verify(
            &headers([("X-A2A-Notification-Token", v.secret.as_str())]),
            body,
            NOW,
        )
        .unwrap_err();
    assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
    let mut h = v.headers();
    h.insert(TOKEN, "wrong".parse().unwrap());
    assert_eq!(
        verifier(&v).verify(&h, body, NOW).unwrap_err().reason,
        "signature_mismatch"
    );
}

#[test]
fn without_jwks_the_token_alone_authenticates() {
    let v = the_vector();
    let plain = Verifier::new(&source(&v, false)).unwrap();
    let h = headers([("X-A2A-Notification-Token", v.secret.as_str())]);
    assert!(plain.verify(&h, v.body.as_bytes(), NOW).is_ok());
    let e = plain
        .verify(&HeaderMap::new(), v.body.as_bytes(), NOW)
        .unwrap_err();
    assert_eq!((e.status.as_u16(), e.reason), (401, "missing_header"));
}

#[test]
fn bodies_name_their_task_and_update() {
    for (body, id, kind) in [
        (
            json!({"artifactUpdate": {"taskId": "t1", "artifact": {"artifactId": "a9"}}}),
            "t1/artifact/a9@",
            "a2a.task.artifact-update",
        ),
        (
            json!({"task": {"id": "t2", "status": {"state": "TASK_STATE_WORKING", "timestamp": "x"}}}),
            "t2/task/TASK_STATE_WORKING@x",
            "a2a.task",
        ),
        (
            json!({"message": {"messageId": "m1"}}),
            "message/m1",
            "a2a.message",
        ),
        (
            json!({"kind": "status-update", "taskId": "t3", "status": {"state": "completed", "timestamp": "y"}}),
            "t3/status/completed@y",
            "a2a.task.status-update",
        ),
        (
            json!({"kind": "task", "id": "t4", "status": {"state": "working"}}),
            "t4/task/working@",
            "a2a.task",
        ),
    ] {
        let got = identify(body.to_string().as_bytes()).unwrap();
        assert!(got.event_id.starts_with(id), "{} vs {id}", got.event_id);
        assert_eq!(got.event_type, kind);
    }
    for bad in [
        json!({"statusUpdate": {"status": {}}}),
        json!({"other": 1}),
        json!([1]),
        json!({"message": {}}),
    ] {
        assert_eq!(
            identify(bad.to_string().as_bytes()).unwrap_err().reason,
            "malformed_body",
            "{bad}"
        );
    }
}

#[test]
fn bad_key_sets_are_config_errors() {
    let v = the_vector();
    for (jwks, what) in [
        (json!({"keys": []}), "no keys"),
        (
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}),
            "symmetric",
        ),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}),
            "kid",
        ),
        (json!({"nope": 1}), "Key Set"),
    ] {
        let mut s = source(&v, true);
        s.standard.jwt.as_mut().unwrap().jwks = jwks;
        let e = Verifier::new(&s).err().unwrap().to_string();
        assert!(e.contains("sources.a2a.jwks") && e.contains(what), "{e}");
    }
}
