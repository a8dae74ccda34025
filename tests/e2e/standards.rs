//! The second wave of senders, end to end against the real host: bearer and basic
//! tokens, CloudEvents (binary, structured, batch, the OPTIONS handshake), Twilio,
//! Discord, PagerDuty, Linear, A2A push notifications and MCP event webhooks. Requests
//! come from `agenthook send` (the real binary) and, where the sender publishes one,
//! from the sender's own Python library (`standard_senders.py`: twilio's
//! RequestValidator, the CloudEvents SDK, the A2A SDK's push sender with a PyJWT
//! token). Every refusal answers with its reason, is counted in /metrics, and stores
//! nothing.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{Resp, TestEnv, TestHost};
use crate::senders::{expect_stored, send, stored};

const BEARER: &str = "e2e-alertmanager-token";
const CE_TOKEN: &str = "e2e-cloudevents-token";
const TWILIO_TOKEN: &str = "e2e-twilio-auth-token";
/// The public URL Twilio is configured with: a proxy in front of the host.
const TWILIO_PUBLIC: &str = "https://hooks.example.com";
/// RFC 8032 test 1: the Discord application's key (seed, and its public key).
const DISCORD_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const DISCORD_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const A2A_TOKEN: &str = "e2e-a2a-notification-token";
const A2A_AUDIENCE: &str = "https://hooks.example.com/hooks/agents";
const MCP_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/standard_senders.py")
}

/// Run `standard_senders.py` with `args`; its stdout.
fn python(args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 (scripts/test.sh installs twilio, cloudevents, a2a-sdk and pyjwt)");
    assert!(
        out.status.success(),
        "standard_senders.py {args:?}: {}\n(scripts/test.sh installs the senders' libraries)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn standards_env() -> TestEnv {
    let mut env = TestEnv::new();
    let dir = env.dir.path().display().to_string();
    python(&["a2a-keys", &dir]);
    env.extra_config = format!(
        r#"
[sources.alerts]
scheme = "bearer"
secrets = ["e2e-previous-token", "{BEARER}"]
id_pointer = "/groupKey"
type_pointer = "/status"

[sources.grafana]
scheme = "basic"
secrets = ["grafana:e2e pass word"]

[sources.events]
scheme = "cloudevents"
secrets = ["{CE_TOKEN}"]
allowed_origins = ["eventemitter.example.com"]
allowed_rate = 120

[sources.signed-events]
scheme = "cloudevents"
auth = "standard-webhooks"
secrets = ["{MCP_SECRET}"]

[sources.sms]
scheme = "twilio"
secrets = ["{TWILIO_TOKEN}"]
public_url = "{TWILIO_PUBLIC}"

[sources.discord]
scheme = "discord"
secrets = ["{DISCORD_PUBLIC}"]

[sources.pagerduty]
scheme = "pagerduty"
secrets = ["e2e-pagerduty-secret"]

[sources.linear]
scheme = "linear"
secrets = ["e2e-linear-secret"]
tolerance_secs = 60

[sources.agents]
scheme = "a2a"
secrets = ["{A2A_TOKEN}"]
jwks = "file:{dir}/jwks.json"
jwt_algorithms = ["ES256"]
jwt_audience = "{A2A_AUDIENCE}"

[sources.tasks]
scheme = "a2a"
secrets = ["{A2A_TOKEN}"]

[sources.mcp]
scheme = "mcp-events"
secrets = ["{MCP_SECRET}"]
"#
    );
    env
}

/// How many events are stored, per source.
async fn count(host: &TestHost, source: &str) -> usize {
    host.all_events()
        .await
        .iter()
        .filter(|e| e["source"] == source)
        .count()
}

/// The `/metrics` sample of ingress requests of `source` with `outcome`.
async fn outcome_count(host: &TestHost, source: &str, outcome: &str) -> u64 {
    let (_, _, text) = host.get_text(host.admin, "/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.contains(&format!("source=\"{source}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// POST `body` to `path` (with its query) on the ingress port.
async fn post_at(host: &TestHost, path: &str, headers: &[(&str, String)], body: &str) -> Resp {
    host.request(
        http::Method::POST,
        host.ingress,
        path,
        headers,
        bytes::Bytes::from(body.to_string()),
    )
    .await
    .expect("POST to ingress")
}

/// POST one request the CloudEvents SDK built to the `events` source, with its token.
async fn post_event(host: &TestHost, req: &Value) -> Resp {
    let mut headers: Vec<(&str, String)> = req["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().expect("text").to_string()))
        .collect();
    headers.push(("authorization", format!("Bearer {CE_TOKEN}")));
    let body = req["body"].as_str().expect("body");
    host.post("events", &headers, body.as_bytes()).await
}

/// The CloudEvents abuse-protection handshake from `origin`.
async fn options(host: &TestHost, origin: &str) -> Resp {
    let headers = [
        ("webhook-request-origin", origin.to_string()),
        ("webhook-request-rate", "600".to_string()),
    ];
    host.request(
        http::Method::OPTIONS,
        host.ingress,
        "/hooks/events",
        &headers,
        bytes::Bytes::new(),
    )
    .await
    .expect("OPTIONS to ingress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_sender_round_trips_through_send_into_the_store() {
    let env = standards_env();
    let host = env.start().await;
    let alert = br#"{"version":"4","groupKey":"{}:{alertname=\"HighLatency\"}","status":"firing","alerts":[]}"#;

    let sent = send(
        &host,
        &env,
        "alerts",
        alert,
        &[
            "--scheme",
            "bearer",
            "--secret",
            BEARER,
            "--id-pointer",
            "/groupKey",
            "--type-pointer",
            "/status",
        ],
    )
    .await;
    expect_stored(
        &host,
        &sent,
        "alerts",
        "{}:{alertname=\"HighLatency\"}",
        "firing",
    )
    .await;

    let sent = send(
        &host,
        &env,
        "grafana",
        br#"{"status":"resolved"}"#,
        &["--scheme", "basic", "--secret", "grafana:e2e pass word"],
    )
    .await;
    assert!(sent.ok, "{}{}", sent.stdout, sent.stderr);
    let hash = sent.answer()["id"].as_str().unwrap().to_string();
    let event = host.event(&hash).await;
    assert_eq!(event["type"], "webhook");
    assert!(
        event["event_id"].as_str().unwrap().starts_with("sha256:"),
        "{event}"
    );
    assert!(
        !event["headers"]
            .to_string()
            .to_ascii_lowercase()
            .contains("authorization"),
        "the credential is not stored: {event}"
    );

    let sent = send(
        &host,
        &env,
        "events",
        br#"{"order":1}"#,
        &[
            "--scheme",
            "cloudevents",
            "--secret",
            CE_TOKEN,
            "--type",
            "com.example.order.paid",
            "--id",
            "o-1",
        ],
    )
    .await;
    expect_stored(
        &host,
        &sent,
        "events",
        "/agenthook/send o-1",
        "com.example.order.paid",
    )
    .await;
    let sent = send(
        &host,
        &env,
        "signed-events",
        br#"{"specversion":"1.0","source":"/billing","id":"b-1","type":"com.example.invoice"}"#,
        &[
            "--scheme",
            "cloudevents",
            "--auth",
            "standard-webhooks",
            "--secret",
            MCP_SECRET,
        ],
    )
    .await;
    expect_stored(
        &host,
        &sent,
        "signed-events",
        "/billing b-1",
        "com.example.invoice",
    )
    .await;

    let sent = send(
        &host,
        &env,
        "sms",
        b"MessageSid=SM1&SmsStatus=received&From=%2B15005550006&Body=deploy+now",
        &[
            "--scheme",
            "twilio",
            "--secret",
            TWILIO_TOKEN,
            "--public-url",
            TWILIO_PUBLIC,
            "--id",
            "idem-sms-1",
        ],
    )
    .await;
    expect_stored(&host, &sent, "sms", "idem-sms-1", "message.received").await;
    let event = host.event(sent.answer()["id"].as_str().unwrap()).await;
    assert_eq!(
        event["body"], "MessageSid=SM1&SmsStatus=received&From=%2B15005550006&Body=deploy+now",
        "stored as received"
    );

    let sent = send(
        &host,
        &env,
        "pagerduty",
        br#"{"event":{"resource_type":"incident","data":{"id":"PT4KHLK"}}}"#,
        &[
            "--scheme",
            "pagerduty",
            "--secret",
            "e2e-pagerduty-secret",
            "--id",
            "01DEN4HPBQAJFU",
            "--type",
            "incident.triggered",
        ],
    )
    .await;
    expect_stored(
        &host,
        &sent,
        "pagerduty",
        "01DEN4HPBQAJFU",
        "incident.triggered",
    )
    .await;

    let sent = send(
        &host,
        &env,
        "linear",
        br#"{"data":{"id":"i-1","title":"triage"}}"#,
        &[
            "--scheme",
            "linear",
            "--secret",
            "e2e-linear-secret",
            "--id",
            "delivery-1",
            "--type",
            "Issue.create",
        ],
    )
    .await;
    expect_stored(&host, &sent, "linear", "delivery-1", "Issue.create").await;

    let sent = send(&host, &env, "tasks", br#"{"statusUpdate":{"taskId":"t-9","status":{"state":"TASK_STATE_WORKING","timestamp":"2026-12-04T17:00:00Z"}}}"#, &["--scheme", "a2a", "--secret", A2A_TOKEN]).await;
    expect_stored(
        &host,
        &sent,
        "tasks",
        "t-9/status/TASK_STATE_WORKING@2026-12-04T17:00:00Z",
        "a2a.task.status-update",
    )
    .await;

    let sent = send(&host, &env, "mcp", br#"{"eventId":"evt_1","name":"email.received","timestamp":"2026-12-04T17:00:00Z","data":{"from":"a@example.com"}}"#, &["--scheme", "mcp-events", "--secret", MCP_SECRET]).await;
    expect_stored(&host, &sent, "mcp", "evt_1", "email.received").await;
    let event = host.event(sent.answer()["id"].as_str().unwrap()).await;
    assert!(
        event["headers"].to_string().contains("sub_agenthook_send"),
        "the subscription id is kept: {event}"
    );
    let sent = send(
        &host,
        &env,
        "mcp",
        br#"{"type":"verification","challenge":"ch-42"}"#,
        &["--scheme", "mcp-events", "--secret", MCP_SECRET],
    )
    .await;
    assert_eq!(
        sent.answer(),
        json!({"challenge": "ch-42"}),
        "{}",
        sent.stdout
    );

    // Discord: a PING is answered PONG and not stored; a command is stored and
    // answered with a deferred response, twice (the duplicate too).
    let before = count(&host, "discord").await;
    let sent = send(
        &host,
        &env,
        "discord",
        br#"{"type":1,"id":"p1","application_id":"a"}"#,
        &["--scheme", "discord", "--secret", DISCORD_SEED],
    )
    .await;
    assert_eq!(
        sent.answer(),
        json!({"type": 1}),
        "{}{}",
        sent.stdout,
        sent.stderr
    );
    assert_eq!(count(&host, "discord").await, before);
    for _ in 0..2 {
        let sent = send(
            &host,
            &env,
            "discord",
            br#"{"type":2,"data":{"name":"deploy"}}"#,
            &[
                "--scheme",
                "discord",
                "--secret",
                DISCORD_SEED,
                "--id",
                "1180000000000000001",
            ],
        )
        .await;
        assert_eq!(
            sent.answer(),
            json!({"type": 5}),
            "{}{}",
            sent.stdout,
            sent.stderr
        );
    }
    assert_eq!(count(&host, "discord").await, before + 1);
    assert_eq!(
        stored(&host, "discord", "1180000000000000001")
            .await
            .unwrap()["type"],
        "interaction.application_command"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_answer_their_reason_count_in_metrics_and_store_nothing() {
    let env = standards_env();
    let host = env.start().await;
    let before = host.all_events().await;
    let alert = br#"{"groupKey":"g","status":"firing"}"#;
    for (source, args, status, reason) in [
        (
            "alerts",
            vec!["--scheme", "bearer", "--secret", "e2e-wrong-token"],
            401,
            "signature_mismatch",
        ),
        (
            "grafana",
            vec!["--scheme", "basic", "--secret", "grafana:wrong"],
            401,
            "signature_mismatch",
        ),
        (
            "events",
            vec![
                "--scheme",
                "cloudevents",
                "--secret",
                "wrong",
                "--type",
                "t",
            ],
            401,
            "signature_mismatch",
        ),
        (
            "sms",
            vec![
                "--scheme",
                "twilio",
                "--secret",
                "wrong",
                "--public-url",
                TWILIO_PUBLIC,
            ],
            401,
            "signature_mismatch",
        ),
        // Signed for the host's own URL, not the public one Twilio uses.
        (
            "sms",
            vec!["--scheme", "twilio", "--secret", TWILIO_TOKEN],
            401,
            "signature_mismatch",
        ),
        (
            "discord",
            vec!["--scheme", "discord", "--secret", &"11".repeat(32)],
            401,
            "signature_mismatch",
        ),
        (
            "pagerduty",
            vec![
                "--scheme",
                "pagerduty",
                "--secret",
                "wrong",
                "--id",
                "x",
                "--type",
                "incident.triggered",
            ],
            401,
            "signature_mismatch",
        ),
        (
            "linear",
            vec![
                "--scheme",
                "linear",
                "--secret",
                "e2e-linear-secret",
                "--type",
                "Issue.create",
                "--timestamp",
                "1000000000",
            ],
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            "tasks",
            vec!["--scheme", "a2a", "--secret", "wrong"],
            401,
            "signature_mismatch",
        ),
        // The JWT source: a notification token alone is not enough.
        (
            "agents",
            vec!["--scheme", "a2a", "--secret", A2A_TOKEN],
            401,
            "missing_header",
        ),
        (
            "mcp",
            vec!["--scheme", "mcp-events", "--secret", "whsec_d3Jvbmc="],
            401,
            "signature_mismatch",
        ),
    ] {
        let body: &[u8] = match source {
            "sms" => b"MessageSid=SM2&SmsStatus=received",
            "tasks" | "agents" => br#"{"statusUpdate":{"taskId":"t","status":{"state":"x"}}}"#,
            "mcp" => br#"{"eventId":"e","name":"n"}"#,
            "discord" => br#"{"type":2,"id":"9"}"#,
            _ => alert,
        };
        let sent = send(&host, &env, source, body, &args).await;
        assert!(!sent.ok, "{source} {args:?} was accepted: {}", sent.stdout);
        assert!(
            sent.stdout.starts_with(&status.to_string()),
            "{source}: {}",
            sent.stdout
        );
        assert_eq!(
            sent.answer()["reason"],
            reason,
            "{source} {args:?}: {}",
            sent.stdout
        );
        assert!(
            outcome_count(&host, source, reason).await >= 1,
            "{source}: /metrics counts {reason}"
        );
    }
    // A missing credential.
    let r = host
        .post(
            "alerts",
            &[("content-type", "application/json".to_string())],
            alert,
        )
        .await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (401, Some("missing_header"))
    );
    // Nothing was stored, and what was there is unchanged.
    let after = host.all_events().await;
    assert_eq!(before, after);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilios_own_validator_signs_what_the_host_accepts() {
    let env = standards_env();
    // A Python plugin reads the form through the SDK (`Event.form()`, `form_field()`).
    env.install_plugin(
        "py-sms",
        &crate::python_build::python_plugin("tests/plugins-python/test-py-probe"),
        "[[subscribe]]\nsource = \"sms\"\ntypes = [\"message.*\"]\n\n[limits]\nmemory_mb = 128\ntimeout_ms = 5000\n\n[grants]\nkv = true\n",
    );
    let host = env.start().await;
    let form = "AccountSid=AC1&MessageSid=SM9f&SmsStatus=received&From=%2B15005550006&To=%2B15005550001&Body=status%3F+and+more";
    let path = "/hooks/sms?tenant=eu&retry=0";
    let signature = python(&[
        "twilio",
        &format!("{TWILIO_PUBLIC}{path}"),
        TWILIO_TOKEN,
        form,
    ]);
    let headers = [
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("x-twilio-signature", signature.trim().to_string()),
        ("i-twilio-idempotency-token", "twilio-idem-1".to_string()),
    ];
    let r = post_at(&host, path, &headers, form).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let event = host.event(r.json["id"].as_str().unwrap()).await;
    assert_eq!(event["type"], "message.received");
    assert_eq!(event["event_id"], "twilio-idem-1");
    assert_eq!(event["body"], form, "the form body is stored as received");
    assert!(!event["headers"].to_string().contains("x-twilio-signature"));
    // Twilio's retry: acknowledged, not stored again.
    let r = post_at(&host, path, &headers, form).await;
    assert_eq!(r.json["status"], "duplicate");
    // The plugin got the fields decoded, in order (`+` and `%XX` undone).
    let seen = crate::harness::wait_until(
        "py-sms records the form",
        std::time::Duration::from_secs(180),
        || async { host.kv("py-sms", "form/twilio-idem-1").await },
    )
    .await;
    let seen: Value = serde_json::from_str(&seen).expect("JSON");
    let id = event["id"].as_str().expect("id").to_string();
    host.wait_status(&id, "done", std::time::Duration::from_secs(30))
        .await;
    assert_eq!(seen["body"], "status? and more");
    assert_eq!(
        seen["fields"],
        json!([
            ["AccountSid", "AC1"],
            ["MessageSid", "SM9f"],
            ["SmsStatus", "received"],
            ["From", "+15005550006"],
            ["To", "+15005550001"],
            ["Body", "status? and more"]
        ])
    );
    // Another field value, another query, another path: refused, nothing stored.
    let before = host.all_events().await;
    for (p, b) in [
        (path, form.replace("status%3F", "status%21")),
        ("/hooks/sms?tenant=us&retry=0", form.to_string()),
        ("/hooks/sms", form.to_string()),
    ] {
        let r = post_at(&host, p, &headers, &b).await;
        assert_eq!(
            (r.status, r.json["reason"].as_str()),
            (401, Some("signature_mismatch")),
            "{p}"
        );
    }
    assert_eq!(before, host.all_events().await);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_sdk_requests_in_every_mode_and_the_handshake() {
    let env = standards_env();
    let host = env.start().await;
    let requests: Vec<Value> = python(&["cloudevents"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for req in &requests {
        let r = post_event(&host, req).await;
        assert_eq!(r.status, 200, "{}: {:?}", req["mode"], r.json);
        assert_eq!(r.json["status"], "stored", "{}", req["mode"]);
        if req["mode"] == "batch" {
            let entries = r.json["events"].as_array().unwrap();
            assert_eq!(entries.len(), 3);
            assert!(
                entries.iter().all(|e| e["status"] == "stored"),
                "{:?}",
                r.json
            );
        }
    }
    let order = stored(&host, "events", "/shop/eu order-1001")
        .await
        .expect("binary");
    assert_eq!(order["type"], "com.example.order.paid");
    let order = host.event(order["id"].as_str().unwrap()).await;
    assert_eq!(
        order["body"], requests[0]["body"],
        "binary mode stores the data as sent"
    );
    let refund = stored(&host, "events", "/shop/us refund-7")
        .await
        .expect("structured");
    assert_eq!(refund["type"], "com.example.refund.created");
    // Each batch entry is its own event with its own bytes, keyed on (source, id).
    let a = stored(&host, "events", "/sensors/a 1")
        .await
        .expect("batch entry 0");
    let b = stored(&host, "events", "/sensors/b 1")
        .await
        .expect("batch entry 1");
    assert_eq!(
        stored(&host, "events", "/sensors/a 2").await.unwrap()["type"],
        "com.example.sensor.alarm"
    );
    let a = host.event(a["id"].as_str().unwrap()).await;
    let b = host.event(b["id"].as_str().unwrap()).await;
    let entry: Value = serde_json::from_str(a["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (entry["source"].as_str(), entry["data"]["celsius"].as_f64()),
        (Some("/sensors/a"), Some(21.5))
    );
    assert!(
        requests[2]["body"]
            .as_str()
            .unwrap()
            .contains(a["body"].as_str().unwrap()),
        "an entry's bytes as they appeared"
    );
    assert!(b["body"].as_str().unwrap().contains("19.0"));
    assert!(
        a["headers"]
            .to_string()
            .contains("application/cloudevents+json"),
        "{a}"
    );
    // The sender's retry of the whole batch: every entry a duplicate.
    let r = post_event(&host, &requests[2]).await;
    assert_eq!(r.json["status"], "duplicate", "{:?}", r.json);
    assert_eq!(count(&host, "events").await, 5);

    // The abuse-protection handshake.
    let r = options(&host, "eventemitter.example.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["webhook-allowed-origin"],
        "eventemitter.example.com"
    );
    assert_eq!(r.headers["webhook-allowed-rate"], "120");
    assert_eq!(r.headers["allow"], "POST");
    let r = options(&host, "attacker.example.net").await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    assert!(r.headers.get("webhook-allowed-origin").is_none());
    assert_eq!(count(&host, "events").await, 5, "handshakes store nothing");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_sdk_push_notifications_with_a_jwt_from_the_agents_key() {
    let env = standards_env();
    let host = env.start().await;
    let pem = env.dir.path().join("agent.pem").display().to_string();
    let url = format!("http://{}/hooks/agents", host.ingress);
    let delivered: Value =
        serde_json::from_str(python(&["a2a-send", &url, A2A_TOKEN, &pem, A2A_AUDIENCE]).trim())
            .unwrap();
    assert_eq!(
        delivered,
        json!({"task-good": true, "task-wrong-aud": false, "task-wrong-kid": false, "task-wrong-token": false})
    );
    let events: Vec<Value> = host
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["source"] == "agents")
        .collect();
    let mut got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["event_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "a2a.task.artifact-update");
    assert!(
        got[0].1.starts_with("task-good/artifact/report@"),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        (
            "a2a.task.status-update".to_string(),
            "task-good/status/TASK_STATE_COMPLETED@2025-12-04T17:00:00Z".to_string()
        )
    );
    for (source, reason) in [
        ("agents", "audience_mismatch"),
        ("agents", "unknown_key"),
        ("agents", "signature_mismatch"),
    ] {
        assert!(outcome_count(&host, source, reason).await >= 1, "{reason}");
    }
    let event = host.event(events[0]["id"].as_str().unwrap()).await;
    let headers = event["headers"].to_string().to_ascii_lowercase();
    assert!(
        !headers.contains("x-a2a-notification-token") && !headers.contains("authorization"),
        "{headers}"
    );
    host.stop().await;
}
