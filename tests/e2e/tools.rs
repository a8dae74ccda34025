//! The network tools end to end: `http`, `email` and `events` called by real plugin
//! components in a real host, against loopback HTTP servers standing in for Stripe, an
//! enrichment API and a chat service, and a real SMTP server process. Every tool's
//! denied path, the SSRF guard, emit loops and emit idempotency are here, as are the
//! example agent plugins.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{TestEnv, TestHost, manifest, plugins, unix_now, wait_until};
use crate::servers::{ApiServer, Reply, SmtpSink};

const WAIT: Duration = Duration::from_secs(30);
const STRIPE_SECRET: &str = "whsec_stripe_e2e_secret";
const FORMS_SECRET: &str = "form-signing-secret";

/// The test-tool-probe's results for one attempt of the event posted as `event_id`.
async fn probe_results(host: &TestHost, plugin: &str, event_id: &str, attempt: u32) -> Vec<String> {
    let text = wait_until(
        &format!("{plugin} records its results for {event_id}"),
        WAIT,
        || async {
            host.kv(plugin, &format!("result/{event_id}/{attempt}"))
                .await
        },
    )
    .await;
    serde_json::from_str(&text).expect("results are a JSON array")
}

/// Post `body` to the demo source and wait until the event's deliveries settle.
async fn post_and_settle(host: &TestHost, id: &str, body: &Value, status: &str) -> Value {
    let r = host.post_signed(id, body).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let host_id = r.json["id"].as_str().expect("id").to_string();
    host.wait_status(&host_id, status, WAIT).await
}

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(data);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Events the admin API lists from `source`, oldest first.
async fn events_from(host: &TestHost, source: &str) -> Vec<Value> {
    let mut events: Vec<Value> = host
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["source"] == source)
        .collect();
    events.reverse();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_is_denied_without_its_grant_and_names_what_is_missing() {
    let api = ApiServer::start(|_, _| Reply::json(200, json!({"ok": true}))).await;
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    env.extra_config = smtp.email_config("");
    // No network grants at all.
    env.install_plugin(
        "probe-none",
        plugins::TEST_TOOL_PROBE,
        &manifest("probe.*", "[grants]\nkv = true\n"),
    );
    // Grants that cover other origins, recipients and types than the ones called.
    env.install_plugin(
        "probe-other",
        plugins::TEST_TOOL_PROBE,
        &manifest(
            "probe.*",
            "[grants]\nkv = true\nhttp = [\"https://api.example.com\"]\nemail = [\"ops@example.com\", \"*@example.org\"]\nemit = [\"lead.*\"]\n",
        ),
    );
    let host = env.start().await;
    let body = json!({
        "type": "probe.run",
        "fetch": [api.url("/v1/customers")],
        "email": ["someone@example.net"],
        "emit": [{"type": "incident.opened", "body": {"x": 1}}],
    });
    post_and_settle(&host, "msg_denied", &body, "done").await;

    let none = probe_results(&host, "probe-none", "msg_denied", 1).await;
    assert_eq!(
        none,
        [
            "denied: http is not granted to this plugin (grants.http)",
            "denied: email is not granted to this plugin (grants.email)",
            "denied: emit is not granted to this plugin (grants.emit)",
        ]
    );
    let other = probe_results(&host, "probe-other", "msg_denied", 1).await;
    assert_eq!(
        other[0],
        format!(
            "denied: {} is not granted to this plugin (grants.http)",
            api.origin()
        )
    );
    assert_eq!(
        other[1],
        "denied: recipient someone@example.net is not granted to this plugin (grants.email)"
    );
    assert_eq!(
        other[2],
        "denied: emitting `incident.opened` is not granted to this plugin (grants.emit = [\"lead.*\"])"
    );
    // Nothing left the host.
    assert!(api.requests().is_empty());
    assert!(smtp.messages().is_empty());
    assert!(events_from(&host, "plugin:probe-other").await.is_empty());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_and_redirects_to_ungranted_origins_are_refused() {
    // The "secret" internal service: listening on loopback, never granted.
    let internal = ApiServer::start(|_, _| Reply::json(200, json!({"secret": "s3cr3t"}))).await;
    let internal_url = internal.url("/admin");
    let internal_url_h = internal_url.clone();
    // A granted API that redirects where it is told to.
    let api = ApiServer::start(move |req, _| match req.path.as_str() {
        "/to-internal" => Reply::redirect(&internal_url_h),
        "/to-metadata" => Reply::redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-same-origin" => Reply::redirect("/ok"),
        "/loop" => Reply::redirect("/loop"),
        "/huge" => Reply {
            body: vec![b'x'; 5 << 20],
            ..Reply::status(200)
        },
        "/slow" => Reply::json(200, json!({"late": true})).after(Duration::from_secs(5)),
        _ => Reply::json(200, json!({"ok": true})),
    })
    .await;
    let port = internal.addr.port();
    let api_port = api.addr.port();
    let env = TestEnv::new();
    env.install_plugin(
        "test-tool-probe",
        plugins::TEST_TOOL_PROBE,
        &manifest(
            "probe.*",
            // The API is granted by its exact address (how a plugin may reach loopback);
            // `localhost` is granted by name, which never admits an internal address.
            &format!(
                "[grants]\nkv = true\nhttp = [\"{}\", \"http://localhost:{port}\"]\n",
                api.origin()
            ),
        ),
    );
    let host = env.start().await;
    let body = json!({
        "type": "probe.ssrf",
        "fetch": [
            api.url("/ok"),
            format!("http://127.0.0.1:{port}/admin"),
            format!("http://[::1]:{port}/admin"),
            format!("http://[::ffff:127.0.0.1]:{port}/admin"),
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            format!("http://localhost:{port}/admin"),
            api.url("/to-internal"),
            api.url("/to-metadata"),
            api.url("/to-same-origin"),
            api.url("/loop"),
            api.url("/huge"),
            api.url("/slow"),
        ],
        "timeout_ms": 1000,
    });
    post_and_settle(&host, "msg_ssrf", &body, "done").await;
    let r = probe_results(&host, "test-tool-probe", "msg_ssrf", 1).await;
    assert_eq!(r[0], "ok 200 {\"ok\":true}");
    for (i, origin) in [
        format!("http://127.0.0.1:{port}"),
        format!("http://[::1]:{port}"),
        // The IPv4-mapped form is the same address as 127.0.0.1.
        format!("http://127.0.0.1:{port}"),
        "http://169.254.169.254:80".to_string(),
        "http://10.0.0.1:80".to_string(),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            r[i + 1],
            format!("denied: {origin} is not granted to this plugin (grants.http)"),
            "fetch {}",
            i + 1
        );
    }
    // Granted by name, but the name resolves to loopback: refused at connect time.
    assert!(
        r[6].starts_with(&format!("denied: localhost:{port} resolves to ")),
        "{}",
        r[6]
    );
    assert!(r[6].contains("a loopback address"), "{}", r[6]);
    assert_eq!(
        r[7],
        format!(
            "denied: {} redirected to http://127.0.0.1:{port}, which is not granted to this plugin (grants.http)",
            format_args!("http://127.0.0.1:{api_port}")
        )
    );
    assert_eq!(
        r[8],
        format!(
            "denied: http://127.0.0.1:{api_port} redirected to http://169.254.169.254:80, which is not granted to this plugin (grants.http)"
        )
    );
    assert_eq!(r[9], "ok 200 {\"ok\":true}");
    assert_eq!(
        r[10],
        format!("failed: more than 5 redirects (last to http://127.0.0.1:{api_port})")
    );
    assert_eq!(
        r[11],
        "limited: the response body is larger than 4194304 bytes"
    );
    assert_eq!(
        r[12],
        format!(
            "failed: GET {}: no response within 1000 ms",
            api.url("/slow")
        )
    );
    assert!(
        internal.requests().is_empty(),
        "the internal service was reached: {:?}",
        internal.requests()
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_to_granted_recipients_within_the_hourly_cap() {
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    env.extra_config = smtp.email_config("max_per_hour = 2");
    env.install_plugin(
        "test-tool-probe",
        plugins::TEST_TOOL_PROBE,
        &manifest(
            "probe.*",
            "[grants]\nkv = true\nemail = [\"*@example.com\", \"*@reject.example.com\"]\n",
        ),
    );
    let host = env.start().await;
    let body = json!({
        "type": "probe.email",
        "email": ["Ops <ops@example.com>", "nobody@reject.example.com", "third@example.com"],
    });
    post_and_settle(&host, "msg_email", &body, "done").await;
    let r = probe_results(&host, "test-tool-probe", "msg_email", 1).await;
    assert!(
        r[0].starts_with("ok <") && r[0].ends_with("@example.com>"),
        "{}",
        r[0]
    );
    assert!(
        r[1].starts_with("invalid: the SMTP server refused the message"),
        "{}",
        r[1]
    );
    assert_eq!(
        r[2],
        "limited: 2 emails sent in the last hour; the cap is email.max_per_hour = 2"
    );
    let messages = smtp.wait_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert!(m.contains("X-Envelope-From: agents@example.com"), "{m}");
    assert!(m.contains("X-Envelope-To: ops@example.com"), "{m}");
    assert!(
        m.lines()
            .any(|l| l.starts_with("From: ") && l.contains("agents@example.com")),
        "{m}"
    );
    assert!(m.contains("Subject: probe msg_email"), "{m}");
    let id = r[0].trim_start_matches("ok ");
    assert!(m.contains(&format!("Message-ID: {id}")), "{m}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_loop_is_cut_at_the_configured_depth_and_dead_lettered() {
    let mut env = TestEnv::new();
    env.extra_config = "[emit]\nmax_chain_depth = 3\n".into();
    // Subscribed to its own `loop.*` events and re-emitting each: a loop.
    env.install_plugin(
        "test-tool-probe",
        plugins::TEST_TOOL_PROBE,
        &format!(
            "{}[[subscribe]]\nsource = \"plugin:test-tool-probe\"\ntypes = [\"loop.*\"]\n\n[retry]\nmax_attempts = 3\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n",
            manifest("probe.*", "[grants]\nkv = true\nemit = [\"loop.*\"]\n")
        ),
    );
    let host = env.start().await;
    let body = json!({"type": "probe.loop", "emit": [{"type": "loop.ping"}], "strict": true});
    let first = post_and_settle(&host, "msg_loop", &body, "done").await;

    // Each hop's own outcome is written after the event it emitted is stored, so the
    // last hop may be dead-lettered before the one before it is recorded done (on NATS,
    // another host's write also reaches this host's index a moment later): wait for all.
    let emitted = wait_until("the chain reaches its end", WAIT, || async {
        let events = events_from(&host, "plugin:test-tool-probe").await;
        let settled = events.len() == 3
            && events[2]["status"] == "dead"
            && events[..2].iter().all(|e| e["status"] != "leased");
        settled.then_some(events)
    })
    .await;
    assert_eq!(emitted[0]["status"], "done");
    assert_eq!(emitted[1]["status"], "done");
    let last = host.event(emitted[2]["id"].as_str().expect("id")).await;
    let d = &last["deliveries"][0];
    // Refused emits are permanent: dead at once, not retried.
    assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1), "{d}");
    let error = d["attempts"][0]["error"].as_str().expect("error");
    assert!(
        error.contains("event chain too deep: this emit would be hop 4, emit.max_chain_depth is 3"),
        "{error}"
    );
    assert!(
        error.contains(
            "demo:probe.loop → test-tool-probe:loop.ping → test-tool-probe:loop.ping → test-tool-probe:loop.ping → test-tool-probe:loop.ping"
        ),
        "{error}"
    );
    // The chain travels with each emitted event.
    let headers = last["headers"].to_string();
    assert!(headers.contains("agenthook-chain"), "{headers}");
    assert!(
        headers.contains(&format!(
            "\"agenthook-parent-event\",\"{}\"",
            emitted[1]["id"].as_str().unwrap()
        )),
        "{headers}"
    );
    // Nothing past the cut was stored.
    assert_eq!(events_from(&host, "plugin:test-tool-probe").await.len(), 3);
    assert_eq!(first["status"], "done");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_emitting_attempt_does_not_emit_twice() {
    let env = TestEnv::new();
    env.install_plugin(
        "test-tool-probe",
        plugins::TEST_TOOL_PROBE,
        &manifest(
            "probe.*",
            "[grants]\nkv = true\nemit = [\"lead.*\"]\n\n[retry]\nmax_attempts = 3\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n",
        ),
    );
    let host = env.start().await;
    let body = json!({
        "type": "probe.emit",
        "emit": [
            {"type": "lead.created", "body": {"n": 1}},
            {"type": "lead.created", "body": {"n": 2}},
            {"type": "lead.created", "key": "lead-42", "body": {"n": 3}},
        ],
        "retry_first_attempt": true,
    });
    let event = post_and_settle(&host, "msg_emit_retry", &body, "done").await;
    assert_eq!(
        event["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    let first = probe_results(&host, "test-tool-probe", "msg_emit_retry", 1).await;
    let second = probe_results(&host, "test-tool-probe", "msg_emit_retry", 2).await;
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|r| r.starts_with("ok ")), "{first:?}");
    assert_eq!(
        first, second,
        "the retry got the ids of the first attempt's events"
    );
    let emitted = events_from(&host, "plugin:test-tool-probe").await;
    assert_eq!(emitted.len(), 3, "{emitted:?}");
    let ids: Vec<String> = emitted
        .iter()
        .map(|e| format!("ok {}", e["id"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, first);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_notify_fetches_the_customer_and_emails_a_receipt() {
    let stripe_api = ApiServer::start(|req, _| match req.path.as_str() {
        "/v1/customers/cus_NffrFeUfNV2Hib" => Reply::json(
            200,
            json!({
                "id": "cus_NffrFeUfNV2Hib",
                "object": "customer",
                "email": "jenny.rosen@example.com",
                "name": "Jenny Rosen",
                "livemode": false
            }),
        ),
        _ => Reply::json(404, json!({"error": {"type": "invalid_request_error"}})),
    })
    .await;
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    let key_file = env.dir.path().join("stripe_api_key");
    std::fs::write(&key_file, "sk_test_4eC39HqLyjWDarjtT1zdp7dc\n").unwrap();
    // The manifest names the key file: the host config must allow its directory.
    env.extra_config = format!(
        "[sources.stripe]\nscheme = \"stripe\"\nsecrets = [\"{STRIPE_SECRET}\"]\n\n[plugins]\nallow_files_under = [\"{}\"]\n\n{}",
        env.dir.path().display(),
        smtp.email_config("")
    );
    env.install_plugin(
        "payment-notify",
        plugins::PAYMENT_NOTIFY,
        &format!(
            r#"[[subscribe]]
source = "stripe"
types = ["payment_intent.succeeded"]

[grants]
kv = true
http = ["{origin}"]
email = ["*@example.com"]

[grants.http_headers."{origin}"]
Authorization = "Bearer file:{key}"

[config]
customers_url = "{origin}/v1/customers"
reply_to = "billing@example.com"
"#,
            origin = stripe_api.origin(),
            key = key_file.display()
        ),
    );
    let host = env.start().await;

    let body = json!({
        "id": "evt_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
            "object": "payment_intent",
            "amount": 2000,
            "currency": "usd",
            "customer": "cus_NffrFeUfNV2Hib",
            "description": "Pro plan, 1 month",
            "status": "succeeded"
        }}
    })
    .to_string();
    let t = unix_now();
    let sig = hmac_hex(STRIPE_SECRET, format!("{t}.{body}").as_bytes());
    let r = host
        .post(
            "stripe",
            &[
                ("stripe-signature", format!("t={t},v1={sig}")),
                ("content-type", "application/json".into()),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    host.wait_status(&id, "done", WAIT).await;

    let requests = stripe_api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/customers/cus_NffrFeUfNV2Hib");
    // The API key came from the host's secret, not from the plugin.
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc")
    );
    let m = &smtp.wait_messages(1).await[0];
    assert!(m.contains("X-Envelope-To: jenny.rosen@example.com"), "{m}");
    assert!(m.contains("Subject: Receipt: 20.00 USD paid"), "{m}");
    assert!(m.contains("Reply-To: billing@example.com"), "{m}");
    assert!(m.contains("Hi Jenny Rosen,"), "{m}");
    assert!(m.contains("pi_3MtwBwLkdIwHu7ix28a3tqPa"), "{m}");
    let receipt: Value = serde_json::from_str(
        &host
            .kv("payment-notify", "receipt/pi_3MtwBwLkdIwHu7ix28a3tqPa")
            .await
            .expect("receipt recorded"),
    )
    .unwrap();
    assert_eq!(receipt["email"], "jenny.rosen@example.com");
    assert_eq!(receipt["amount"], 2000);
    assert!(m.contains(&format!(
        "Message-ID: {}",
        receipt["message_id"].as_str().unwrap()
    )));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_router_scores_a_form_and_sales_notify_emails_the_hot_lead() {
    let enrich = ApiServer::start(|req, _| {
        if req.path.contains("email=cto%40bigco.example.com") {
            Reply::json(
                200,
                json!({"company": {"name": "BigCo", "employees": 5200, "industry": "logistics"}}),
            )
        } else {
            Reply::json(404, json!({"error": "not found"}))
        }
    })
    .await;
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    env.extra_config = format!(
        "[sources.forms]\nscheme = \"hmac-sha256\"\nsecrets = [\"{FORMS_SECRET}\"]\nsignature_header = \"x-form-signature\"\nid_pointer = \"/submission_id\"\ntype_pointer = \"/form\"\n\n{}",
        smtp.email_config("")
    );
    env.install_plugin(
        "lead-router",
        plugins::LEAD_ROUTER,
        &format!(
            "[[subscribe]]\nsource = \"forms\"\n\n[grants]\nhttp = [\"{origin}\"]\nemit = [\"lead.*\"]\n\n[config]\nenrich_url = \"{origin}/v1/lookup\"\n",
            origin = enrich.origin()
        ),
    );
    let sales_manifest = std::fs::read_to_string(plugins::SALES_NOTIFY_MANIFEST).unwrap();
    env.install_plugin("sales-notify", plugins::SALES_NOTIFY, &sales_manifest);
    let host = env.start().await;

    let mut ids = Vec::new();
    for (sub, email, message) in [
        (
            "sub_hot_1",
            "cto@bigco.example.com",
            "We need pricing for 300 seats and a demo.",
        ),
        ("sub_cold_1", "someone@gmail.com", "just browsing"),
    ] {
        let body = json!({
            "form": "contact",
            "submission_id": sub,
            "email": email,
            "name": "Ada Lovelace",
            "message": message
        })
        .to_string();
        let sig = hmac_hex(FORMS_SECRET, body.as_bytes());
        let r = host
            .post("forms", &[("x-form-signature", sig)], body.as_bytes())
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        ids.push(r.json["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        host.wait_status(id, "done", WAIT).await;
    }
    let scored = wait_until("both leads are scored and handled", WAIT, || async {
        let events = events_from(&host, "plugin:lead-router").await;
        (events.len() == 2 && events.iter().all(|e| e["status"] == "done")).then_some(events)
    })
    .await;
    assert!(scored.iter().all(|e| e["type"] == "lead.scored"));
    let mut leads = Vec::new();
    for e in &scored {
        let event = host.event(e["id"].as_str().unwrap()).await;
        let lead: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        leads.push((event, lead));
    }
    leads.sort_by_key(|(_, lead)| lead["submission_id"].as_str().unwrap().to_string());
    let (hot, lead) = &leads[0];
    assert_eq!(lead["submission_id"], "sub_cold_1");
    let lead = &leads[1].1;
    let hot_event = &leads[1].0;
    assert_eq!(lead["tier"], "hot", "{lead}");
    assert_eq!(lead["company"]["name"], "BigCo");
    assert_eq!(hot_event["deliveries"][0]["plugin"], "sales-notify");

    let messages = smtp.wait_messages(1).await;
    let m = &messages[0];
    assert!(m.contains("X-Envelope-To: sales@example.com"), "{m}");
    assert!(
        m.contains("Subject: Hot lead: Ada Lovelace (BigCo (5200 employees))"),
        "{m}"
    );
    assert!(m.contains("Reply-To: cto@bigco.example.com"), "{m}");
    // The cold lead was scored and logged, not mailed (its delivery is done already).
    let (cold, lead) = (&hot, &leads[0].1);
    assert_eq!(lead["tier"], "cold", "{lead}");
    assert_eq!(cold["status"], "done");
    assert_eq!(smtp.messages().len(), 1);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_triage_dedupes_alerts_and_chat_notify_posts_each_change_once() {
    // The chat service fails its first call: chat-notify retries it.
    let chat = ApiServer::start(|_, n| {
        if n == 0 {
            Reply::json(503, json!({"ok": false, "error": "service_unavailable"}))
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    })
    .await;
    let env = TestEnv::new();
    env.install_plugin(
        "incident-triage",
        plugins::INCIDENT_TRIAGE,
        &manifest(
            "alert.*",
            "[grants]\nkv = true\nemit = [\"incident.*\"]\n\n[config]\nrepeat_after_secs = \"3600\"\n",
        ),
    );
    env.install_plugin(
        "chat-notify",
        plugins::CHAT_NOTIFY,
        &format!(
            "[[subscribe]]\nsource = \"plugin:incident-triage\"\ntypes = [\"incident.*\"]\n\n[retry]\nmax_attempts = 5\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\n[grants]\nhttp = [\"{}\"]\n\n[config]\nwebhook_url = \"{}\"\n",
            chat.origin(),
            chat.url("/services/T000/B000/XXXX")
        ),
    );
    let host = env.start().await;
    let alert = |status: &str, at: i64| {
        json!({
            "type": format!("alert.{status}"),
            "fingerprint": "checkout-latency-p99",
            "status": status,
            "severity": "critical",
            "service": "checkout",
            "summary": "p99 latency above 2s for 5m",
            "starts_at": at
        })
    };
    let t = unix_now();
    // Firing three times in a few minutes (noise), then resolved.
    for (i, (status, at)) in [
        ("firing", t),
        ("firing", t + 60),
        ("firing", t + 120),
        ("resolved", t + 300),
    ]
    .into_iter()
    .enumerate()
    {
        post_and_settle(&host, &format!("alert_{i}"), &alert(status, at), "done").await;
        if i == 0 {
            // The opening post, failed once and retried, lands before anything else.
            chat.wait_requests(2).await;
        }
    }
    let emitted = wait_until("incident events are posted", WAIT, || async {
        let events = events_from(&host, "plugin:incident-triage").await;
        (events.len() == 2 && events.iter().all(|e| e["status"] == "done")).then_some(events)
    })
    .await;
    assert_eq!(emitted[0]["type"], "incident.opened");
    assert_eq!(emitted[1]["type"], "incident.resolved");
    let posts = chat.requests();
    // One failed post (503) retried, then one post per incident change.
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert_eq!(
        posts[0].body, posts[1].body,
        "the retry posts the same message"
    );
    let opened = posts[1].json();
    assert!(
        opened["text"]
            .as_str()
            .unwrap()
            .contains("[critical] checkout — p99 latency above 2s for 5m"),
        "{opened}"
    );
    assert!(
        posts[2].json()["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: resolved")
    );
    let first = host.event(emitted[0]["id"].as_str().unwrap()).await;
    assert_eq!(
        first["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_relays_events_and_retries_until_the_service_answers() {
    let service = ApiServer::start(|_, n| {
        if n < 2 {
            Reply::json(500, json!({"error": "db down"}))
        } else {
            Reply::json(202, json!({"accepted": true}))
        }
    })
    .await;
    let env = TestEnv::new();
    env.install_plugin(
        "forward",
        plugins::FORWARD,
        &manifest(
            "order.*",
            &format!(
                "[retry]\nmax_attempts = 5\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\n[grants]\nhttp = [\"{}\"]\n\n[config]\ntarget_url = \"{}\"\n",
                service.origin(),
                service.url("/internal/orders")
            ),
        ),
    );
    // Misconfigured: its target is not granted — a permanent failure naming the origin.
    env.install_plugin(
        "forward-ungranted",
        plugins::FORWARD,
        &manifest(
            "order.*",
            &format!(
                "[grants]\nhttp = [\"https://api.example.com\"]\n\n[config]\ntarget_url = \"{}\"\n",
                service.url("/internal/orders")
            ),
        ),
    );
    let host = env.start().await;
    let body = json!({"type": "order.created", "order": {"id": "ord_1001", "total": 4999}});
    let r = host.post_signed("msg_order_1", &body).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let event = wait_until(
        "forward delivers and forward-ungranted gives up",
        WAIT,
        || async {
            let event = host.event(&id).await;
            let settled = event["deliveries"].as_array()?.iter().all(|d| {
                (d["plugin"] == "forward" && d["status"] == "done")
                    || (d["plugin"] == "forward-ungranted" && d["status"] == "dead")
            });
            settled.then_some(event)
        },
    )
    .await;
    let deliveries = event["deliveries"].as_array().unwrap();
    let ok = deliveries
        .iter()
        .find(|d| d["plugin"] == "forward")
        .unwrap();
    assert_eq!(ok["status"], "done", "{ok}");
    assert_eq!(ok["attempts"].as_array().map(Vec::len), Some(3));
    assert!(
        ok["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{ok}"
    );
    let bad = deliveries
        .iter()
        .find(|d| d["plugin"] == "forward-ungranted")
        .unwrap();
    assert_eq!(bad["status"], "dead");
    assert_eq!(bad["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        bad["attempts"][0]["error"],
        format!(
            "handler: denied: {} is not granted to this plugin (grants.http)",
            service.origin()
        )
    );

    let posts = service.requests();
    assert_eq!(posts.len(), 3);
    for p in &posts {
        assert_eq!(p.method, "POST");
        assert_eq!(p.path, "/internal/orders");
        assert_eq!(p.json(), body);
        assert_eq!(
            p.header("idempotency-key"),
            posts[0].header("idempotency-key")
        );
        assert_eq!(p.header("x-agenthook-event-type"), Some("order.created"));
        assert_eq!(p.header("x-agenthook-source"), Some("demo"));
    }
    assert_eq!(posts[2].header("x-agenthook-attempt"), Some("3"));
    host.stop().await;
}
