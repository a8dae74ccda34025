//! Every sender, end to end: `agenthook send` (the real binary) signs as Stripe, GitHub,
//! Slack, Shopify, Standard Webhooks (HMAC and Ed25519) and a generic HMAC sender would;
//! the host verifies and stores the event. Every refusal — bad or stale signature,
//! missing, duplicated or malformed headers, schema violations, oversized bodies —
//! answers with its reason and stores nothing.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{SECRET, TestEnv, TestHost, agenthook_bin, unix_now};

/// The Standard Webhooks Ed25519 sender key and its public key (the published vector's).
const ED_SENDER: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
const ED_PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";

fn senders_env() -> TestEnv {
    let mut env = TestEnv::new();
    let schema = env.dir.path().join("order.schema.json");
    std::fs::write(
        &schema,
        json!({
            "type": "object",
            "required": ["order"],
            "properties": {"order": {"type": "object", "properties": {"total": {"type": "integer"}}}}
        })
        .to_string(),
    )
    .expect("write schema");
    env.extra_config = format!(
        r#"
[sources.stripe]
scheme = "stripe"
secrets = ["whsec_e2e_old_secret", "whsec_e2e_stripe_secret"]

[sources.github]
scheme = "github"
secrets = ["e2e-github-secret"]

[sources.slack]
scheme = "slack"
secrets = ["e2e-slack-signing-secret"]

[sources.shopify]
scheme = "shopify"
secrets = ["e2e-shopify-secret"]

[sources.ed]
scheme = "standard-webhooks"
secrets = ["{ED_PUBLIC}"]

[sources.acme]
scheme = "hmac-sha256"
secrets = ["e2e-acme-secret"]
signature_header = "X-Acme-Signature"
signature_prefix = "sha256="
timestamp_header = "X-Acme-Timestamp"
signed_payload = "{{timestamp}}.{{body}}"
id_header = "X-Acme-Delivery"
type_pointer = "/kind"

[sources.orders]
scheme = "shopify"
secrets = ["e2e-orders-secret"]

[sources.orders.schemas]
"orders/*" = "file:{schema}"
"#,
        schema = schema.display()
    );
    env
}

/// What one run of `agenthook send` did.
pub(crate) struct Sent {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Sent {
    /// The host's JSON answer (the line after the status).
    pub(crate) fn answer(&self) -> Value {
        self.stdout
            .lines()
            .nth(1)
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null)
    }
}

/// Run the real `agenthook send` against `host` with a payload written to a file.
pub(crate) async fn send(
    host: &TestHost,
    env: &TestEnv,
    source: &str,
    payload: &[u8],
    args: &[&str],
) -> Sent {
    let file = env
        .dir
        .path()
        .join(format!("payload-{}.bin", rand_suffix()));
    std::fs::write(&file, payload).expect("write payload");
    let out = tokio::process::Command::new(agenthook_bin())
        .arg("send")
        .args(["--source", source])
        .args(["--url", &format!("http://{}/hooks/{source}", host.ingress)])
        .args(args)
        .arg(&file)
        .output()
        .await
        .expect("run agenthook send");
    Sent {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The stored event of `source` with the sender's id `event_id`.
pub(crate) async fn stored(host: &TestHost, source: &str, event_id: &str) -> Option<Value> {
    host.all_events()
        .await
        .into_iter()
        .find(|e| e["source"] == source && e["event_id"] == event_id)
}

pub(crate) async fn expect_stored(
    host: &TestHost,
    sent: &Sent,
    source: &str,
    event_id: &str,
    event_type: &str,
) {
    assert!(
        sent.ok,
        "send to {source} failed: {}{}",
        sent.stdout, sent.stderr
    );
    assert!(sent.stdout.starts_with("200"), "{}", sent.stdout);
    assert_eq!(sent.answer()["status"], "stored", "{}", sent.stdout);
    let event = stored(host, source, event_id)
        .await
        .unwrap_or_else(|| panic!("no {source} event {event_id} stored"));
    assert_eq!(event["type"], event_type, "{event}");
    assert_eq!(event["id"], sent.answer()["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sender_round_trips_through_send_into_the_store() {
    let env = senders_env();
    let host = env.start().await;

    // Standard Webhooks, HMAC (v1): the type goes into the body, the id into webhook-id.
    let sent = send(
        &host,
        &env,
        "demo",
        br#"{"data":{"n":1}}"#,
        &[
            "--scheme",
            "standard-webhooks",
            "--secret",
            SECRET,
            "--type",
            "invoice.paid",
            "--id",
            "msg_rt_1",
        ],
    )
    .await;
    expect_stored(&host, &sent, "demo", "msg_rt_1", "invoice.paid").await;

    // Standard Webhooks, Ed25519 (v1a): the sender's whsk_ key, the host's whpk_ key.
    let sent = send(
        &host,
        &env,
        "ed",
        br#"{"type":"user.created"}"#,
        &[
            "--scheme",
            "standard-webhooks",
            "--secret",
            ED_SENDER,
            "--id",
            "msg_ed_1",
        ],
    )
    .await;
    expect_stored(&host, &sent, "ed", "msg_ed_1", "user.created").await;

    // Stripe: id and type live in the body; the second secret of the rotation matches.
    let sent = send(
        &host,
        &env,
        "stripe",
        br#"{"object":"event","data":{"object":{"amount":2000}}}"#,
        &[
            "--scheme",
            "stripe",
            "--secret",
            "whsec_e2e_stripe_secret",
            "--type",
            "payment_intent.succeeded",
            "--id",
            "evt_rt_1",
        ],
    )
    .await;
    expect_stored(
        &host,
        &sent,
        "stripe",
        "evt_rt_1",
        "payment_intent.succeeded",
    )
    .await;

    // GitHub: the event header plus the payload's action.
    let sent = send(
        &host,
        &env,
        "github",
        br#"{"action":"opened","issue":{"number":7}}"#,
        &[
            "--scheme",
            "github",
            "--secret",
            "e2e-github-secret",
            "--type",
            "issues",
            "--id",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        ],
    )
    .await;
    expect_stored(
        &host,
        &sent,
        "github",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "issues.opened",
    )
    .await;

    // Slack Events API: event_id and event.type from the body.
    let sent = send(&host, &env, "slack",
        br#"{"type":"event_callback","event_id":"Ev0RT1","event":{"type":"app_mention","text":"hi"}}"#,
        &["--scheme", "slack", "--secret", "e2e-slack-signing-secret"]).await;
    expect_stored(&host, &sent, "slack", "Ev0RT1", "app_mention").await;

    // Slack slash command (form-encoded): the id is a hash of the body.
    let form = b"command=%2Fdeploy&text=prod&trigger_id=1.2.3";
    let sent = send(
        &host,
        &env,
        "slack",
        form,
        &["--scheme", "slack", "--secret", "e2e-slack-signing-secret"],
    )
    .await;
    let events = host.all_events().await;
    let slash = events
        .iter()
        .find(|e| e["source"] == "slack" && e["type"] == "/deploy")
        .unwrap_or_else(|| panic!("slash command not stored: {}", sent.stdout));
    assert!(
        slash["event_id"].as_str().unwrap().starts_with("sha256:"),
        "{slash}"
    );

    // Shopify: topic and webhook id headers.
    let sent = send(
        &host,
        &env,
        "shopify",
        br#"{"id":820982911946154508}"#,
        &[
            "--scheme",
            "shopify",
            "--secret",
            "e2e-shopify-secret",
            "--type",
            "orders/create",
            "--id",
            "wh-rt-1",
        ],
    )
    .await;
    expect_stored(&host, &sent, "shopify", "wh-rt-1", "orders/create").await;

    // Generic hmac-sha256, its settings taken from the host's own config.
    let config = env.config_path();
    let sent = send(
        &host,
        &env,
        "acme",
        br#"{"kind":"order.paid","order":{"id":1}}"#,
        &["--config", config.to_str().unwrap(), "--id", "acme-rt-1"],
    )
    .await;
    expect_stored(&host, &sent, "acme", "acme-rt-1", "order.paid").await;

    // The same generic sender described by flags alone.
    let sent = send(
        &host,
        &env,
        "acme",
        br#"{"order":{"id":2}}"#,
        &[
            "--scheme",
            "hmac-sha256",
            "--secret",
            "e2e-acme-secret",
            "--signature-header",
            "X-Acme-Signature",
            "--signature-prefix",
            "sha256=",
            "--timestamp-header",
            "X-Acme-Timestamp",
            "--signed-payload",
            "{timestamp}.{body}",
            "--id-header",
            "X-Acme-Delivery",
            "--type-pointer",
            "/kind",
            "--type",
            "order.shipped",
            "--id",
            "acme-rt-2",
        ],
    )
    .await;
    expect_stored(&host, &sent, "acme", "acme-rt-2", "order.shipped").await;

    // Sending the same event again is acknowledged as a duplicate.
    let sent = send(
        &host,
        &env,
        "shopify",
        br#"{"id":820982911946154508}"#,
        &[
            "--scheme",
            "shopify",
            "--secret",
            "e2e-shopify-secret",
            "--type",
            "orders/create",
            "--id",
            "wh-rt-1",
        ],
    )
    .await;
    assert!(sent.ok, "{}", sent.stderr);
    assert_eq!(sent.answer()["status"], "duplicate", "{}", sent.stdout);

    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_mode_gives_a_curl_command_that_works() {
    let env = senders_env();
    let host = env.start().await;
    let file = env.dir.path().join("event.json");
    std::fs::write(&file, br#"{"type":"invoice.paid"}"#).unwrap();
    let out = tokio::process::Command::new(agenthook_bin())
        .args([
            "send",
            "--source",
            "demo",
            "--scheme",
            "standard-webhooks",
            "--secret",
            SECRET,
        ])
        .args(["--id", "msg_print_1", "--print", "--url"])
        .arg(format!("http://{}/hooks/demo", host.ingress))
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("-H 'webhook-signature: v1,"), "{script}");
    assert!(
        stored(&host, "demo", "msg_print_1").await.is_none(),
        "--print must not send"
    );
    let curl = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&curl.stdout).unwrap_or(Value::Null);
    assert_eq!(answer["status"], "stored", "{script}\n{answer}");
    assert!(stored(&host, "demo", "msg_print_1").await.is_some());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_answer_their_reason_and_store_nothing() {
    let env = senders_env();
    let host = env.start().await;
    let now = unix_now();

    // Through the simulator: wrong secrets, stale and future timestamps (the exact
    // edges of the window are unit-tested with a pinned clock; here the margin leaves
    // room for the time the simulator takes to start).
    for (source, args, status, reason) in [
        (
            "stripe",
            vec![
                "--scheme",
                "stripe",
                "--secret",
                "whsec_wrong",
                "--type",
                "a.b",
            ],
            "401",
            "signature_mismatch",
        ),
        (
            "github",
            vec!["--scheme", "github", "--secret", "wrong", "--type", "push"],
            "401",
            "signature_mismatch",
        ),
        (
            "slack",
            vec!["--scheme", "slack", "--secret", "wrong"],
            "401",
            "signature_mismatch",
        ),
        (
            "shopify",
            vec![
                "--scheme",
                "shopify",
                "--secret",
                "wrong",
                "--type",
                "orders/create",
            ],
            "401",
            "signature_mismatch",
        ),
        (
            "ed",
            vec![
                "--scheme",
                "standard-webhooks",
                "--secret",
                "whsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "--type",
                "a.b",
            ],
            "401",
            "signature_mismatch",
        ),
        (
            "demo",
            vec![
                "--scheme",
                "standard-webhooks",
                "--secret",
                SECRET,
                "--type",
                "a.b",
                "--timestamp",
                &(now - 301).to_string(),
            ],
            "401",
            "timestamp_out_of_tolerance",
        ),
        (
            "stripe",
            vec![
                "--scheme",
                "stripe",
                "--secret",
                "whsec_e2e_stripe_secret",
                "--type",
                "a.b",
                "--timestamp",
                &(now + 400).to_string(),
            ],
            "401",
            "timestamp_out_of_tolerance",
        ),
        (
            "slack",
            vec![
                "--scheme",
                "slack",
                "--secret",
                "e2e-slack-signing-secret",
                "--timestamp",
                &(now - 400).to_string(),
            ],
            "401",
            "timestamp_out_of_tolerance",
        ),
        (
            "orders",
            vec![
                "--scheme",
                "shopify",
                "--secret",
                "e2e-orders-secret",
                "--type",
                "orders/paid",
            ],
            "422",
            "schema_violation",
        ),
    ] {
        let body = br#"{"type":"event_callback","event_id":"Ev-refused","event":{"type":"m"},"order":{"total":"12"}}"#;
        let sent = send(&host, &env, source, body, &args).await;
        assert!(!sent.ok, "{source} {args:?} was accepted: {}", sent.stdout);
        assert!(
            sent.stdout.starts_with(status),
            "{source} {args:?}: {}",
            sent.stdout
        );
        assert_eq!(
            sent.answer()["reason"],
            reason,
            "{source} {args:?}: {}",
            sent.stdout
        );
        let error = sent.answer()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for secret in [
            "whsec_e2e_stripe_secret",
            "e2e-slack-signing-secret",
            "e2e-orders-secret",
            SECRET,
        ] {
            assert!(!error.contains(secret), "{error}");
        }
    }
    let sent = send(
        &host,
        &env,
        "orders",
        br#"{"order":{"total":"12"}}"#,
        &[
            "--scheme",
            "shopify",
            "--secret",
            "e2e-orders-secret",
            "--type",
            "orders/paid",
        ],
    )
    .await;
    assert!(
        sent.answer()["error"]
            .as_str()
            .unwrap()
            .contains("/order/total"),
        "{}",
        sent.stdout
    );

    // Raw requests: missing, duplicated and malformed headers, unknown source.
    let ts = now.to_string();
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("stripe", vec![], 401, "missing_header"),
        (
            "stripe",
            vec![("stripe-signature", format!("t={ts}"))],
            400,
            "malformed_header",
        ),
        (
            "stripe",
            vec![
                ("stripe-signature", format!("t={ts},v1=00")),
                ("stripe-signature", format!("t={ts},v1=00")),
            ],
            400,
            "duplicate_header",
        ),
        (
            "github",
            vec![("x-hub-signature-256", "md5=1".into())],
            400,
            "malformed_header",
        ),
        (
            "slack",
            vec![("x-slack-signature", "v0=00".into())],
            401,
            "missing_header",
        ),
        (
            "slack",
            vec![
                ("x-slack-signature", "v0=00".into()),
                ("x-slack-request-timestamp", "now".into()),
            ],
            400,
            "malformed_header",
        ),
        (
            "shopify",
            vec![("x-shopify-hmac-sha256", "!!".into())],
            400,
            "malformed_header",
        ),
        (
            "demo",
            vec![
                ("webhook-id", "m".into()),
                ("webhook-timestamp", ts.clone()),
                ("webhook-signature", "v1,AAAA".into()),
            ],
            401,
            "signature_mismatch",
        ),
        (
            "acme",
            vec![("x-acme-signature", format!("sha256={}", "0".repeat(64)))],
            401,
            "missing_header",
        ),
        (
            "acme",
            vec![("x-acme-signature", "sha256=00".into())],
            400,
            "malformed_header",
        ),
        ("nope", vec![], 404, "unknown_source"),
    ];
    for (source, headers, status, reason) in cases {
        let r = host.post(source, &headers, br#"{"type":"x"}"#).await;
        assert_eq!(
            (r.status, r.json["reason"].as_str()),
            (status, Some(reason)),
            "{source} {headers:?}: {}",
            r.json
        );
    }

    assert!(
        host.all_events().await.is_empty(),
        "a refused request was stored"
    );
    host.stop().await;
}

/// The body limit holds while reading: a declared 1 GB body is refused before it is
/// sent, and an endless chunked body is refused once it passes the limit (1 MiB by
/// default), long before the sender would have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_without_reading_them() {
    let env = senders_env();
    let host = env.start().await;

    let mut conn = tokio::net::TcpStream::connect(host.ingress).await.unwrap();
    conn.write_all(b"POST /hooks/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 1073741824\r\n\r\n{")
        .await
        .unwrap();
    let answer = read_status(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let mut conn = tokio::net::TcpStream::connect(host.ingress).await.unwrap();
    conn.write_all(b"POST /hooks/demo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        // At most 64 MiB; the host answers after ~1 MiB and stops reading.
        let mut sent = 0usize;
        for _ in 0..1024 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 64 * 1024;
        }
        sent
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf))
        .await
        .expect("the host answers while the body is still being sent")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(rd);
    let sent = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sent < 64 * 1024 * 1024,
        "the host read the whole endless body ({sent} bytes)"
    );

    assert!(host.all_events().await.is_empty());
    host.stop().await;
}

async fn read_status(conn: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Slack's URL verification handshake is answered with its challenge (only when
/// signed) and not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_url_verification_is_answered_and_not_stored() {
    let env = senders_env();
    let host = env.start().await;
    let body = br#"{"token":"t","challenge":"c-123","type":"url_verification"}"#;
    let sent = send(
        &host,
        &env,
        "slack",
        body,
        &["--scheme", "slack", "--secret", "e2e-slack-signing-secret"],
    )
    .await;
    assert!(sent.ok, "{}{}", sent.stdout, sent.stderr);
    assert_eq!(sent.answer()["challenge"], "c-123", "{}", sent.stdout);
    let sent = send(
        &host,
        &env,
        "slack",
        body,
        &["--scheme", "slack", "--secret", "wrong"],
    )
    .await;
    assert_eq!(
        sent.answer()["reason"],
        "signature_mismatch",
        "{}",
        sent.stdout
    );
    assert!(host.all_events().await.is_empty());
    host.stop().await;
}
