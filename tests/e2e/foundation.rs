//! The foundation slice: a signed webhook reaches a sandboxed plugin, the plugin acts
//! through kv, and the outcome is durably recorded and visible through the admin API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    self, SECRET, TestEnv, manifest, plugins, standard_webhooks_headers, unix_now,
};

const WAIT: Duration = Duration::from_secs(30);

fn payment(customer: &str, amount: u64) -> Value {
    json!({"type": "payment.succeeded", "data": {"customer": customer, "amount": amount, "currency": "usd"}})
}

fn tally_env() -> TestEnv {
    let env = TestEnv::new();
    let manifest = std::fs::read_to_string(plugins::TALLY_MANIFEST).expect("tally manifest");
    env.install_plugin("tally", plugins::TALLY, &manifest);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_reaches_plugin_and_duplicate_is_not_dispatched_again() {
    let env = tally_env();
    let host = env.start().await;

    let r = host.post_signed("msg_e2e_1", &payment("cus_1", 1200)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["status"], "stored");
    let id = r.json["id"].as_str().expect("id").to_string();

    let event = host.wait_status(&id, "done", WAIT).await;
    assert_eq!(event["event_id"], "msg_e2e_1");
    assert_eq!(event["source"], "demo");
    assert_eq!(event["type"], "payment.succeeded");
    let d = &event["deliveries"][0];
    assert_eq!(d["plugin"], "tally");
    assert_eq!(d["status"], "done");
    assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["attempts"][0]["outcome"], "done");
    assert_eq!(
        d["attempts"][0]["plugin_version"].as_str().map(str::len),
        Some(64)
    );
    let logs = d["attempts"][0]["logs"].to_string();
    assert!(
        logs.contains("cus_1"),
        "the plugin's decision is logged with the attempt: {logs}"
    );

    let tally: Value =
        serde_json::from_str(&host.kv("tally", "tally/cus_1").await.expect("tally kv")).unwrap();
    assert_eq!(tally["total"], 1200);
    assert_eq!(tally["count"], 1);

    // The sender retries the same event: acknowledged, same id, not stored or run again.
    let again = host.post_signed("msg_e2e_1", &payment("cus_1", 1200)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["status"], "duplicate");
    assert_eq!(again.json["id"], id.as_str());
    // A later event for the same customer is the barrier: once it is done, anything the
    // duplicate could have caused would have happened already.
    let r2 = host.post_signed("msg_e2e_2", &payment("cus_1", 300)).await;
    let id2 = r2.json["id"].as_str().expect("id").to_string();
    host.wait_status(&id2, "done", WAIT).await;
    let first = host.event(&id).await;
    assert_eq!(
        first["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    let tally: Value =
        serde_json::from_str(&host.kv("tally", "tally/cus_1").await.unwrap()).unwrap();
    assert_eq!(
        (tally["total"].as_u64(), tally["count"].as_u64()),
        (Some(1500), Some(2))
    );
    assert_eq!(host.all_events().await.len(), 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_store_nothing() {
    let env = tally_env();
    let host = env.start().await;
    let ok = host.post_signed("msg_keep", &payment("cus_r", 100)).await;
    assert_eq!(ok.status, 200);
    let kept_id = ok.json["id"].as_str().unwrap().to_string();
    host.wait_status(&kept_id, "done", WAIT).await;
    let before = host.event(&kept_id).await;

    let body = payment("cus_r", 999).to_string();
    let now = unix_now();

    // Signed with another secret.
    let wrong = standard_webhooks_headers(
        "whsec_b3RoZXItc2VjcmV0LW5vdC1jb25maWd1cmVk",
        "msg_bad",
        now,
        body.as_bytes(),
    );
    let r = host.post("demo", &wrong, body.as_bytes()).await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (401, Some("signature_mismatch")),
        "{:?}",
        r.json
    );
    // The error never echoes a signature or the secret.
    assert!(!r.json.to_string().contains("v1,"));

    // Right secret, but the body was altered after signing.
    let good = standard_webhooks_headers(SECRET, "msg_tampered", now, body.as_bytes());
    let r = host
        .post("demo", &good, payment("cus_r", 1).to_string().as_bytes())
        .await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (401, Some("signature_mismatch"))
    );

    // Stale and future timestamps.
    for ts in [now - 301, now + 301] {
        let h = standard_webhooks_headers(SECRET, "msg_stale", ts, body.as_bytes());
        let r = host.post("demo", &h, body.as_bytes()).await;
        assert_eq!(
            (r.status, r.json["reason"].as_str()),
            (401, Some("timestamp_out_of_tolerance"))
        );
    }

    // Missing signature header.
    let mut h = standard_webhooks_headers(SECRET, "msg_nosig", now, body.as_bytes());
    h.retain(|(k, _)| *k != "webhook-signature");
    let r = host.post("demo", &h, body.as_bytes()).await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (401, Some("missing_header"))
    );

    // Unknown source.
    let h = standard_webhooks_headers(SECRET, "msg_nosrc", now, body.as_bytes());
    let r = host.post("nosuchsource", &h, body.as_bytes()).await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (404, Some("unknown_source"))
    );

    // Signed but not a JSON object with a type.
    let h = standard_webhooks_headers(SECRET, "msg_notjson", now, b"not json");
    let r = host.post("demo", &h, b"not json").await;
    assert_eq!(
        (r.status, r.json["reason"].as_str()),
        (400, Some("malformed_body"))
    );

    // Oversized bodies (413 before the body is read) are tested over raw TCP in
    // `senders::oversized_bodies_are_refused_without_reading_them`: an HTTP client that
    // keeps writing after the early answer may see a reset instead of the 413.

    // Nothing refused was stored, and what was stored is untouched.
    let events = host.all_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(host.event(&kept_id).await, before);
    let tally: Value =
        serde_json::from_str(&host.kv("tally", "tally/cus_r").await.unwrap()).unwrap();
    assert_eq!(tally["total"], 100);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_errors_are_retried_with_backoff_and_permanent_errors_are_not() {
    let env = TestEnv::new();
    env.install_plugin(
        "flaky",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.flaky",
            "[retry]\nmax_attempts = 5\ninitial_backoff_ms = 100\nmax_backoff_ms = 400\n\n[config]\noutcome = \"retry\"\nsucceed_on_attempt = \"3\"\n",
        ),
    );
    env.install_plugin(
        "doomed",
        plugins::TEST_OUTCOME,
        &manifest("job.doomed", "[retry]\nmax_attempts = 5\ninitial_backoff_ms = 50\n\n[config]\noutcome = \"permanent\"\n"),
    );
    env.install_plugin(
        "crashy",
        plugins::TEST_OUTCOME,
        &manifest(
            "job.crashy",
            "[retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n\n[config]\noutcome = \"trap\"\n",
        ),
    );
    let host = env.start().await;

    let flaky = host
        .post_signed("j1", &json!({"type": "job.flaky"}))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doomed = host
        .post_signed("j2", &json!({"type": "job.doomed"}))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let crashy = host
        .post_signed("j3", &json!({"type": "job.crashy"}))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();

    let e = host.wait_status(&flaky, "done", WAIT).await;
    let attempts = e["deliveries"][0]["attempts"].as_array().unwrap().clone();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "done"]);
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("handler: "),
        "{attempts:?}"
    );
    // Backoff: each retry waits at least initial_backoff_ms after the failed attempt.
    for pair in attempts.windows(2) {
        let end =
            pair[0]["started_at_ms"].as_u64().unwrap() + pair[0]["duration_ms"].as_u64().unwrap();
        let gap = pair[1]["started_at_ms"]
            .as_u64()
            .unwrap()
            .saturating_sub(end);
        assert!(
            gap >= 99,
            "retry came {gap} ms after the failure; backoff is at least 100 ms"
        );
    }
    // The plugin saw the attempt number rise.
    assert!(
        attempts[2]["logs"].to_string().contains("attempt 3"),
        "{attempts:?}"
    );

    let e = host.wait_status(&doomed, "dead", WAIT).await;
    let d = &e["deliveries"][0];
    assert_eq!(
        d["attempts"].as_array().map(Vec::len),
        Some(1),
        "a permanent error is not retried"
    );
    assert_eq!(d["attempts"][0]["outcome"], "dead");

    let e = host.wait_status(&crashy, "dead", WAIT).await;
    let d = &e["deliveries"][0];
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "a trap is retried up to max_attempts");
    assert_eq!(attempts[0]["outcome"], "retry");
    assert!(
        attempts[0]["error"].as_str().unwrap().starts_with("trap: "),
        "{attempts:?}"
    );
    assert!(
        attempts[1]["error"]
            .as_str()
            .unwrap()
            .contains("retry.max_attempts"),
        "{attempts:?}"
    );
    // The panic message reaches the attempt's logs.
    assert!(
        attempts[0]["logs"]
            .to_string()
            .contains("trap requested on attempt 1"),
        "{attempts:?}"
    );

    // The admin API filters by status and plugin.
    let r = host.admin_get("/admin/v1/events?status=dead").await;
    let ids: Vec<&str> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [crashy.as_str(), doomed.as_str()]);
    let r = host.admin_get("/admin/v1/events?plugin=flaky").await;
    assert_eq!(r.json["events"].as_array().map(Vec::len), Some(1));
    let r = host.admin_get("/admin/v1/events?status=bogus").await;
    assert_eq!(r.status, 400);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_deliveries_and_kv_survive_a_restart() {
    let env = tally_env();
    env.install_plugin(
        "later",
        plugins::TEST_OUTCOME,
        // Retries far in the future: still scheduled when the host restarts.
        &manifest(
            "payment.*",
            "[retry]\ninitial_backoff_ms = 3600000\n\n[config]\noutcome = \"retry\"\n",
        ),
    );
    let host = env.start().await;
    let id = host
        .post_signed("msg_restart", &payment("cus_keep", 4200))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = harness::wait_until("tally done and later retrying", WAIT, || async {
        let e = host.event(&id).await;
        let statuses: Vec<String> = e["deliveries"]
            .as_array()?
            .iter()
            .map(|d| d["status"].to_string())
            .collect();
        (statuses == ["\"retrying\"", "\"done\""]).then_some(e)
    })
    .await;
    host.stop().await;

    let host = env.start().await;
    let after = host.event(&id).await;
    assert_eq!(
        after, before,
        "the event and its deliveries are as they were"
    );
    let tally: Value =
        serde_json::from_str(&host.kv("tally", "tally/cus_keep").await.unwrap()).unwrap();
    assert_eq!(tally["total"], 4200);
    // The same id is still a duplicate after the restart.
    let r = host
        .post_signed("msg_restart", &payment("cus_keep", 4200))
        .await;
    assert_eq!(
        (r.json["status"].as_str(), r.json["id"].as_str()),
        (Some("duplicate"), Some(id.as_str()))
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_read_or_touch_another_plugins_kv() {
    let env = tally_env();
    env.install_plugin(
        "probe",
        plugins::TEST_KV_PROBE,
        &manifest(
            "probe.run",
            "[grants]\nkv = true\n\n[config]\nprobe_key = \"tally/cus_iso\"\n",
        ),
    );
    env.install_plugin(
        "nokv",
        plugins::TEST_KV_PROBE,
        &manifest("probe.run", "[config]\nprobe_key = \"tally/cus_iso\"\n"),
    );
    let host = env.start().await;
    let id = host
        .post_signed("msg_iso_1", &payment("cus_iso", 700))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    host.wait_status(&id, "done", WAIT).await;

    let probe = host
        .post_signed("msg_iso_2", &json!({"type": "probe.run"}))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = harness::wait_until("both probes finished", WAIT, || async {
        let e = host.event(&probe).await;
        let finished = e["deliveries"]
            .as_array()?
            .iter()
            .all(|d| d["status"] == "done" || d["status"] == "dead");
        finished.then_some(e)
    })
    .await;
    let by_plugin = |name: &str| {
        e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["plugin"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_plugin("probe")["status"], "done");
    // Without the grant, kv is denied with the grant named, and nothing traps.
    let nokv = by_plugin("nokv");
    assert_eq!(nokv["status"], "dead");
    let err = nokv["attempts"][0]["error"].as_str().unwrap();
    assert!(err.contains("grants.kv"), "{err}");

    // The probe saw nothing under tally's key, and its write went to its own space.
    assert_eq!(
        host.kv("probe", "seen/tally/cus_iso").await.as_deref(),
        Some("<none>")
    );
    assert_eq!(
        host.kv("probe", "tally/cus_iso").await.as_deref(),
        Some("probe-was-here")
    );
    let tally: Value =
        serde_json::from_str(&host.kv("tally", "tally/cus_iso").await.unwrap()).unwrap();
    assert_eq!(tally["total"], 700);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token() {
    let env = TestEnv::new();
    let host = env.start().await;
    for path in [
        "/admin/v1/events",
        "/admin/v1/events/1",
        "/admin/v1/plugins",
    ] {
        let r = host.admin_with_token(path, None).await;
        assert_eq!(
            (r.status, r.json["reason"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
        let r = host.admin_with_token(path, Some("wrong-token")).await;
        assert_eq!(r.status, 401, "{path}");
    }
    assert_eq!(host.admin_get("/admin/v1/events").await.status, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_shows_events_from_the_real_binary() {
    let env = tally_env();
    let host = env.start_binary().await;
    let id = host
        .post_signed("msg_cli", &payment("cus_cli", 5))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    host.wait_status(&id, "done", WAIT).await;

    let list = host.cli(&["events", "list"]);
    assert!(
        list.contains("msg_cli") && list.contains("tally=done/1"),
        "{list}"
    );
    let show = host.cli(&["events", "show", &id]);
    assert!(
        show.contains("attempt 1") && show.contains("cus_cli"),
        "{show}"
    );
    let json: Value =
        serde_json::from_str(&host.cli(&["events", "show", &id, "--json"])).expect("json");
    assert_eq!(json["deliveries"][0]["status"], "done");
    // Times read as RFC 3339 UTC; --json keeps the admin API's raw Unix milliseconds.
    let received = json["received_at_ms"].as_u64().expect("received_at_ms");
    let started = json["deliveries"][0]["attempts"][0]["started_at_ms"]
        .as_u64()
        .expect("started_at_ms");
    let received_line = show
        .lines()
        .find_map(|l| l.trim().strip_prefix("received: "))
        .unwrap_or_else(|| panic!("{show}"));
    assert_rfc3339_utc(received_line, received);
    let attempt_time = show
        .lines()
        .find_map(|l| l.trim().strip_prefix("attempt 1 at "))
        .and_then(|rest| rest.split_once(": "))
        .map(|(time, _)| time)
        .unwrap_or_else(|| panic!("{show}"));
    assert_rfc3339_utc(attempt_time, started);
    let plugins = host.cli(&["plugin", "list"]);
    assert!(
        plugins.contains("tally") && plugins.contains("demo:payment.*"),
        "{plugins}"
    );

    // A wrong token is refused with a clear message and a failing exit status.
    let out = std::process::Command::new(harness::agenthook_bin())
        .args([
            "events",
            "list",
            "--admin-url",
            &format!("http://{}", host.admin),
            "--token",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    host.stop().await;
}

/// `text` is `YYYY-MM-DDTHH:MM:SS.mmmZ` with the time of day of `unix_ms` (the calendar
/// date itself is checked by the binary's unit tests against known dates).
fn assert_rfc3339_utc(text: &str, unix_ms: u64) {
    let (date, time) = text.split_once('T').unwrap_or_else(|| panic!("{text}"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ymd: Vec<&str> = date.split('-').collect();
    assert!(
        ymd.len() == 3 && ymd.iter().all(|p| digits(p)) && ymd[0].len() == 4,
        "{text}"
    );
    let secs = unix_ms / 1000 % 86_400;
    let expected = format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        unix_ms % 1000
    );
    assert_eq!(time, expected, "{text} for {unix_ms} ms");
}
