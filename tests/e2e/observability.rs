//! Observability: `/metrics` counts exactly what happened (checked through the
//! Prometheus project's own text parser), one event can be followed through the JSON
//! log from ingress to done, a failing attempt's plugin log is in the admin API, and
//! `/readyz` and `agenthook status` tell an operator what state the host is in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    TestEnv, TestHost, attempts, manifest, plugins, post_id, standard_webhooks_headers, unix_now,
    wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

/// One sample of a scrape: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Scrape `/metrics` and parse it with `prometheus_client.parser` (the reference
/// Python implementation of the text format): a scrape it cannot parse fails the test.
async fn scrape(host: &TestHost) -> Vec<Sample> {
    let (status, ctype, text) = host.get_text(host.admin, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             out = [[s.name, s.labels, s.value]\n\
                    for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
             print(json.dumps(out))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the scrape is not valid Prometheus text: {}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the one sample named `name` whose labels include `labels`; 0 when
/// there is none (a labelled counter appears on its first increment).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name}{labels:?} matches several samples: {found:?}"
    );
    found.first().map_or(0.0, |s| s.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_what_a_scripted_mix_did() {
    let env = TestEnv::new();
    env.install_plugin("ok", plugins::TEST_OUTCOME, &manifest("obs.ok", ""));
    env.install_plugin(
        "flaky",
        plugins::TEST_OUTCOME,
        &manifest(
            "obs.flaky",
            "[retry]\nmax_attempts = 3\ninitial_backoff_ms = 20\nmax_backoff_ms = 40\n\n[config]\noutcome = \"retry\"\nsucceed_on_attempt = \"2\"\n",
        ),
    );
    env.install_plugin(
        "doomed",
        plugins::TEST_OUTCOME,
        &manifest("obs.doomed", "[config]\noutcome = \"permanent\"\n"),
    );
    env.install_plugin(
        "crashy",
        plugins::TEST_OUTCOME,
        &manifest(
            "obs.crashy",
            "[retry]\nmax_attempts = 1\n\n[config]\noutcome = \"trap\"\n",
        ),
    );
    env.install_plugin(
        "rogue",
        plugins::TEST_MISBEHAVE,
        &manifest(
            "obs.rogue",
            "[retry]\nmax_attempts = 1\n\n[config]\nmode = \"ungranted\"\n",
        ),
    );
    let host = env.start().await;
    let before = scrape(&host).await;

    // The mix: five stored events, one duplicate, one bad signature.
    let ok = post_id(&host, "obs-ok", json!({"type": "obs.ok"})).await;
    let dup = host.post_signed("obs-ok", &json!({"type": "obs.ok"})).await;
    assert_eq!(
        (dup.status, dup.json["status"].as_str()),
        (200, Some("duplicate"))
    );
    let body = json!({"type": "obs.ok"}).to_string();
    let headers = standard_webhooks_headers(
        "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==",
        "obs-forged",
        unix_now(),
        body.as_bytes(),
    );
    assert_eq!(
        host.post("demo", &headers, body.as_bytes()).await.status,
        401
    );
    let flaky = post_id(&host, "obs-flaky", json!({"type": "obs.flaky"})).await;
    let doomed = post_id(&host, "obs-doomed", json!({"type": "obs.doomed"})).await;
    let crashy = post_id(&host, "obs-crashy", json!({"type": "obs.crashy"})).await;
    let rogue = post_id(&host, "obs-rogue", json!({"type": "obs.rogue"})).await;
    host.wait_status(&ok, "done", WAIT).await;
    host.wait_status(&flaky, "done", WAIT).await;
    for id in [&doomed, &crashy, &rogue] {
        host.wait_status(id, "dead", WAIT).await;
    }
    let after = scrape(&host).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let expect = [
        (
            "agenthook_ingress_requests_total",
            vec![("source", "demo"), ("status", "200")],
            6.0,
        ),
        (
            "agenthook_ingress_requests_total",
            vec![("source", "demo"), ("status", "401")],
            1.0,
        ),
        (
            "agenthook_ingress_outcomes_total",
            vec![("source", "demo"), ("outcome", "stored")],
            5.0,
        ),
        (
            "agenthook_ingress_outcomes_total",
            vec![("source", "demo"), ("outcome", "duplicate")],
            1.0,
        ),
        (
            "agenthook_verification_failures_total",
            vec![("source", "demo"), ("reason", "signature_mismatch")],
            1.0,
        ),
        (
            "agenthook_verification_failures_total",
            vec![("source", "demo"), ("reason", "timestamp_out_of_tolerance")],
            0.0,
        ),
        ("agenthook_dedup_hits_total", vec![("source", "demo")], 1.0),
        (
            "agenthook_attempts_total",
            vec![("plugin", "ok"), ("outcome", "done"), ("kind", "ok")],
            1.0,
        ),
        (
            "agenthook_attempts_total",
            vec![
                ("plugin", "flaky"),
                ("outcome", "retry"),
                ("kind", "handler"),
            ],
            1.0,
        ),
        (
            "agenthook_attempts_total",
            vec![("plugin", "flaky"), ("outcome", "done"), ("kind", "ok")],
            1.0,
        ),
        (
            "agenthook_attempts_total",
            vec![
                ("plugin", "doomed"),
                ("outcome", "dead"),
                ("kind", "handler"),
            ],
            1.0,
        ),
        (
            "agenthook_attempts_total",
            vec![("plugin", "crashy"), ("outcome", "dead"), ("kind", "trap")],
            1.0,
        ),
        (
            "agenthook_attempts_total",
            vec![
                ("plugin", "rogue"),
                ("outcome", "dead"),
                ("kind", "handler"),
            ],
            1.0,
        ),
        (
            "agenthook_tool_calls_total",
            vec![
                ("plugin", "rogue"),
                ("tool", "kv.set"),
                ("outcome", "denied"),
            ],
            1.0,
        ),
        (
            "agenthook_tool_calls_total",
            vec![("plugin", "rogue"), ("tool", "kv.set"), ("outcome", "ok")],
            0.0,
        ),
        (
            "agenthook_delivery_latency_seconds_count",
            vec![("plugin", "ok")],
            1.0,
        ),
        (
            "agenthook_delivery_latency_seconds_count",
            vec![("plugin", "flaky")],
            1.0,
        ),
        (
            "agenthook_delivery_latency_seconds_count",
            vec![("plugin", "doomed")],
            0.0,
        ),
        (
            "agenthook_handler_duration_seconds_count",
            vec![("plugin", "flaky")],
            2.0,
        ),
        (
            "agenthook_queue_depth",
            vec![("plugin", "doomed"), ("state", "dead")],
            1.0,
        ),
        (
            "agenthook_queue_depth",
            vec![("plugin", "rogue"), ("state", "dead")],
            1.0,
        ),
        (
            "agenthook_queue_depth",
            vec![("plugin", "flaky"), ("state", "retrying")],
            0.0,
        ),
        ("agenthook_store_events", vec![], 5.0),
    ];
    let mut wrong = Vec::new();
    for (name, labels, want) in &expect {
        let got = delta(name, labels);
        if got != *want {
            wrong.push(format!("{name}{labels:?}: moved by {got}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Present, with values that can only come from the real parts.
    assert!(value(&after, "agenthook_store_commit_batch_size_count", &[]) >= 5.0);
    assert!(value(&after, "agenthook_store_commit_seconds_sum", &[]) > 0.0);
    assert!(value(&after, "agenthook_store_size_bytes", &[]) > 0.0);
    assert!(
        value(
            &after,
            "agenthook_plugin_memory_peak_bytes",
            &[("plugin", "ok")]
        ) >= 65536.0
    );
    assert_eq!(value(&after, "agenthook_plugins_loaded", &[]), 5.0);
    assert_eq!(value(&after, "agenthook_ready", &[]), 1.0);
    let plugins = host.admin_get("/admin/v1/plugins").await.json;
    let version = plugins["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "ok"))
        .and_then(|p| p["version"].as_str())
        .expect("ok's version")
        .to_string();
    assert_eq!(
        value(
            &after,
            "agenthook_plugin_info",
            &[("plugin", "ok"), ("version", &version)]
        ),
        1.0
    );

    // A failing attempt's plugin log is in the admin API and the CLI.
    let event = host.event(&doomed).await;
    let logs: Vec<String> = attempts(&event, "doomed")[0]["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l
                == &format!("[info] test-outcome: event {doomed} attempt 1, outcome permanent")),
        "{logs:?}"
    );
    let shown = host.cli(&["events", "show", &doomed]);
    assert!(
        shown.contains(&format!(
            "test-outcome: event {doomed} attempt 1, outcome permanent"
        )),
        "{shown}"
    );

    // The status view: the same facts, for a person.
    let status = host.admin_get("/admin/v1/status").await.json;
    let source = &status["sources"][0];
    assert_eq!(
        (source["name"].as_str(), source["stored"].as_u64()),
        (Some("demo"), Some(5))
    );
    assert_eq!(source["rejected_by_reason"]["signature_mismatch"], 1);
    let doomed_status = status["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "doomed"))
        .expect("doomed in status");
    assert_eq!(doomed_status["queue"]["dead"], 1);
    assert_eq!(doomed_status["attempts_dead"], 1);
    let text = host.cli(&["status", "--interval", "0.2"]);
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("doomed "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    // PLUGIN VERSION PENDING LEASED RETRYING DEAD OLDESTDUE DONE/s SUCCESS P50 P99
    assert_eq!(&row[2..6], ["0", "0", "0", "1"], "{text}");
    assert_eq!(row[8], "0.0%", "{text}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_followed_through_the_json_log_from_ingress_to_done() {
    let env = TestEnv::new();
    env.install_plugin(
        "flaky",
        plugins::TEST_OUTCOME,
        &manifest(
            "trace.*",
            "[grants]\nkv = true\n\n[retry]\nmax_attempts = 3\ninitial_backoff_ms = 20\nmax_backoff_ms = 40\n\n[config]\noutcome = \"retry\"\nsucceed_on_attempt = \"2\"\nrecord = \"true\"\n",
        ),
    );
    let log = env.data_dir().with_file_name("host.log");
    let host = env
        .start_binary_logging("info,agenthook::tools=debug", &log)
        .await;
    // Another event first, so that following one id has something to tell apart.
    let other = post_id(&host, "trace-other", json!({"type": "trace.x"})).await;
    let id = post_id(&host, "trace-me", json!({"type": "trace.x"})).await;
    host.wait_status(&other, "done", WAIT).await;
    host.wait_status(&id, "done", WAIT).await;
    host.stop().await;

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // A line belongs to the event when its span (or a parent span) carries its id.
    let of_event = |line: &&Value| {
        line["spans"].as_array().into_iter().flatten().any(|s| {
            s["event"].as_str() == Some(id.as_str()) || s["event"] == id.parse::<u64>().unwrap()
        })
    };
    // (span, message, tool) of every line of this event, in order.
    let story: Vec<(String, String, String)> = lines
        .iter()
        .filter(of_event)
        .map(|l| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                text(&l["span"]["name"]),
                text(&l["fields"]["message"]),
                text(&l["fields"]["tool"]),
            )
        })
        .collect();
    let position = |span: &str, message: &str, tool: &str| {
        story
            .iter()
            .position(|(s, m, t)| s == span && m.starts_with(message) && t == tool)
            .unwrap_or_else(|| panic!("no `{message}` in span `{span}` for event {id}: {story:#?}"))
    };
    let stored = position("webhook", "webhook stored", "");
    let plugin_log = position("delivery", "test-outcome: event", "");
    let tool = position("delivery", "tool call", "kv.set");
    let finished = position("delivery", "delivery attempt finished", "");
    assert!(
        stored < plugin_log && plugin_log < tool && tool < finished,
        "{story:#?}"
    );
    let attempts: Vec<&Value> = lines
        .iter()
        .filter(of_event)
        .filter(|l| l["fields"]["message"] == "delivery attempt finished")
        .collect();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|l| l["fields"]["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["retry", "done"], "{attempts:#?}");
    assert!(
        attempts.iter().all(|l| l["span"]["plugin"] == "flaky"),
        "{attempts:#?}"
    );
    // Nothing of the other event leaks into this one's story.
    assert!(
        story
            .iter()
            .all(|(_, m, _)| !m.contains(&format!("event {other} "))),
        "{story:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_what_is_not_ready() {
    let env = TestEnv::new();
    let host = env.start().await;
    let ready = host.readyz().await;
    assert_eq!(ready.status, 503, "{:?}", ready.json);
    let failing: Vec<&str> = ready.json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(failing, ["plugins"], "{:?}", ready.json);
    let healthy = host
        .request(
            http::Method::GET,
            host.ingress,
            "/healthz",
            &[],
            Default::default(),
        )
        .await
        .expect("healthz");
    assert_eq!(healthy.status, 200);

    // Deploying a plugin makes the host ready, without a restart.
    std::fs::write(env.plugins_dir().join("ok.toml"), manifest("x.*", "")).expect("manifest");
    std::fs::copy(plugins::TEST_NOOP, env.plugins_dir().join("ok.wasm")).expect("wasm");
    wait_until(
        "the watcher loads the plugin and /readyz passes",
        WAIT,
        || async {
            let r = host.readyz().await;
            (r.status == 200).then_some(r.json)
        },
    )
    .await;
    host.stop().await;
}
