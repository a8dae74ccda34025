//! Python plugins through the real host: the example (`plugins/tally-py`) and a probe
//! (`tests/plugins-python/test-py-probe`) built with `agenthook plugin build`
//! (componentize-py), loaded into a host with the default pool, calling every tool with
//! and without its grant, failing with retry and permanent errors, and contained when
//! they loop, hoard memory or recurse without end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestEnv, TestHost, attempts, manifest, post_id, wait_until};
use crate::python_build::python_plugin;
use crate::servers::{ApiServer, Reply, SmtpSink};

/// Loading an 18 MB component compiles it first (~10 s on 2 cores, cold).
const WAIT: Duration = Duration::from_secs(120);

fn probe() -> String {
    python_plugin("tests/plugins-python/test-py-probe")
}

async fn results(host: &TestHost, plugin: &str, event_id: &str, attempt: u32) -> Vec<String> {
    let text = wait_until(&format!("{plugin} records {event_id}"), WAIT, || async {
        host.kv(plugin, &format!("result/{event_id}/{attempt}"))
            .await
    })
    .await;
    serde_json::from_str(&text).expect("a JSON array")
}

fn delivery<'a>(event: &'a Value, plugin: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["plugin"] == plugin))
        .unwrap_or_else(|| panic!("no delivery to {plugin}: {event}"))
}

fn probe_manifest(types: &str, grants: &str) -> String {
    manifest(
        types,
        &format!(
            "[limits]\nmemory_mb = 128\ntimeout_ms = 5000\nmax_concurrency = 2\n\n[retry]\nmax_attempts = 2\ninitial_backoff_ms = 1\nmax_backoff_ms = 1\n\n[grants]\n{grants}\n\n[config]\ngreeting = \"hi from the manifest\"\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugins_use_every_tool_are_denied_what_is_not_granted_and_fail_as_told() {
    let api = ApiServer::start(|req, _| {
        Reply::json(
            200,
            json!({"path": req.path, "got": String::from_utf8_lossy(&req.body)}),
        )
    })
    .await;
    // A loopback model provider in OpenAI's wire format (the key stays in the host).
    let model = ApiServer::start(|req, _| {
        let asked = req.json()["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        crate::llm::openai_answer(&format!("you asked: {asked}"), 12, 5)
    })
    .await;
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    env.extra_config = format!(
        "{}\n{}",
        smtp.email_config(""),
        crate::llm::provider("openai", "openai", &model, "sk-python-e2e")
    );
    let probe = probe();
    env.install_plugin(
        "py-granted",
        &probe,
        &probe_manifest(
            "probe.run",
            &format!(
                "kv = true\nhttp = [\"{}\"]\nemail = [\"ops@example.com\"]\nemit = [\"probe.done\"]\nllm = {{ provider = \"openai\", models = [\"gpt-4o-mini\"], max_tokens_per_hour = 1000 }}",
                api.origin()
            ),
        ),
    );
    env.install_plugin("py-bare", &probe, &probe_manifest("probe.*", "kv = true"));
    env.install_plugin("py-nokv", &probe, &probe_manifest("nokv.run", ""));
    let tally_py = python_plugin("plugins/tally-py");
    let tally_manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/tally-py/tally-py.toml"
    ))
    .expect("tally-py manifest");
    env.install_plugin("tally-py", &tally_py, &tally_manifest);
    let host = env.start().await;

    // Every tool, granted and not.
    let body = json!({
        "type": "probe.run",
        "ops": [
            ["kv_set", "a/1", "one"], ["kv_get", "a/1"], ["kv_get", "missing"],
            ["incr", "n", 5], ["incr", "n", -2],
            ["cas", "c", null, "first"], ["cas", "c", null, "second"],
            ["update_json", "j", 7], ["update_json", "j", 3],
            ["kv_set", "a/2", "two"], ["kv_list", "a/"], ["kv_delete", "a/1"],
            ["config", "greeting"], ["config", "not_granted"],
            ["fetch", api.url("/v1/thing")],
            ["post_json", api.url("/v1/post"), {"k": 1}],
            ["fetch", "http://169.254.169.254/latest/meta-data/"],
            ["email", "ops@example.com"],
            ["email", "someone@example.net"],
            ["emit", "probe.done", {"n": 1}, "k1"],
            ["emit", "incident.opened", {"n": 1}],
            ["llm", "gpt-4o-mini", "status?"],
            ["llm", "gpt-4o", "status?"],
        ],
    });
    let id = post_id(&host, "msg_py_run", body).await;
    host.wait_status(&id, "done", WAIT).await;

    let granted = results(&host, "py-granted", "msg_py_run", 1).await;
    let expect_prefix = [
        "ok set",
        "ok one",
        "ok none",
        "ok 5",
        "ok 3",
        "ok swapped ",
        "ok conflict Versioned(value=b'first', version=",
        "ok 7",
        "ok 10",
        "ok set",
        "ok a/1,a/2",
        "ok True",
        "ok hi from the manifest",
        "ok None",
        "ok 200 {\"got\":\"\",\"path\":\"/v1/thing\"}",
        "ok 200 {'got': '{\"k\":1}', 'path': '/v1/post'}",
        "denied: ",
        "ok <",
        "denied: recipient someone@example.net is not granted to this plugin (grants.email)",
        "ok ",
        "denied: emitting `incident.opened` is not granted to this plugin (grants.emit = [\"probe.done\"])",
        "ok you asked: status? 12/5 stop",
        "denied: ",
    ];
    assert_eq!(granted.len(), expect_prefix.len(), "{granted:#?}");
    for (got, want) in granted.iter().zip(expect_prefix) {
        assert!(
            got.starts_with(want),
            "{got:?} should start with {want:?}\nall: {granted:#?}"
        );
    }
    // What the granted probe did reached the outside, and only that.
    let requests = api.requests();
    assert_eq!(
        requests.len(),
        2,
        "the metadata address was never contacted"
    );
    assert_eq!(requests[0].headers["x-probe"], "1");
    assert_eq!(requests[1].headers["content-type"], "application/json");
    wait_until("the granted email arrives", WAIT, || async {
        (smtp.messages().len() == 1).then_some(())
    })
    .await;
    assert!(smtp.messages()[0].contains("ops@example.com"));

    // The same calls without the network grants: each denied, naming the grant.
    let bare = results(&host, "py-bare", "msg_py_run", 1).await;
    assert_eq!(
        bare[14],
        "denied: http is not granted to this plugin (grants.http)"
    );
    assert_eq!(
        bare[17],
        "denied: email is not granted to this plugin (grants.email)"
    );
    assert_eq!(
        bare[19],
        "denied: emit is not granted to this plugin (grants.emit)"
    );
    assert!(bare[21].starts_with("denied: "), "{}", bare[21]);
    // The provider saw exactly the one granted call, with the key the host holds.
    let calls = model.requests();
    assert_eq!(calls.len(), 1, "only the granted model was called");
    assert_eq!(calls[0].headers["authorization"], "Bearer sk-python-e2e");
    assert_eq!(calls[0].json()["model"], "gpt-4o-mini");
    // kv spaces are per plugin: the bare probe counted from zero too.
    assert_eq!(bare[3], "ok 5");

    // Without kv: the first kv call is denied; uncaught, the delivery is dead at once.
    let id = post_id(
        &host,
        "msg_py_nokv",
        json!({"type": "nokv.run", "ops": [["incr", "n", 1]]}),
    )
    .await;
    let event = host.wait_status(&id, "dead", WAIT).await;
    let a = attempts(&event, "py-nokv");
    assert_eq!(a.len(), 1, "a denial is permanent: {a:?}");
    assert_eq!(
        a[0]["error"],
        "handler: denied: kv is not granted to this plugin (grants.kv = true)"
    );

    // Retry (then dead after max_attempts = 2), permanent (dead at once), an uncaught
    // exception (retried, with its traceback in the attempt's logs).
    let retry = post_id(
        &host,
        "msg_py_retry",
        json!({"type": "probe.retry", "then": "retry"}),
    )
    .await;
    let perm = post_id(
        &host,
        "msg_py_perm",
        json!({"type": "probe.perm", "then": "permanent"}),
    )
    .await;
    let raise = post_id(
        &host,
        "msg_py_raise",
        json!({"type": "probe.raise", "then": "raise"}),
    )
    .await;
    let event = host.wait_status(&retry, "dead", WAIT).await;
    let a = attempts(&event, "py-bare");
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["error"], "handler: asked to retry");
    let event = host.wait_status(&perm, "dead", WAIT).await;
    let a = attempts(&event, "py-bare");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["error"], "handler: asked to fail for good");
    let event = host.wait_status(&raise, "dead", WAIT).await;
    let a = attempts(&event, "py-bare");
    assert_eq!(a.len(), 2, "an exception is retried: {a:?}");
    assert_eq!(
        a[0]["error"],
        "handler: handler raised KeyError: 'no such thing'"
    );
    assert!(
        a[0]["logs"].to_string().contains("Traceback"),
        "{}",
        a[0]["logs"]
    );

    // The example: totals per customer, each payment once, none lost when concurrent.
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let body = json!({"type": "payment.succeeded", "data": {"customer": "cus_py", "amount": 1000 * (i + 1), "currency": "usd"}});
        ids.push(post_id(&host, &format!("msg_py_pay_{i}"), body).await);
    }
    for id in &ids {
        let event = host.wait_status(id, "done", WAIT).await;
        assert_eq!(delivery(&event, "tally-py")["status"], "done");
    }
    let tally: Value =
        serde_json::from_str(&host.kv("tally-py", "tally/cus_py").await.expect("tally")).unwrap();
    assert_eq!(
        tally,
        json!({"total": 78000, "count": 12, "currency": "usd"})
    );
    let last = host.event(&ids[11]).await;
    let logs = delivery(&last, "tally-py")["attempts"][0]["logs"].to_string();
    assert!(logs.contains("customer cus_py"), "{logs}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugins_that_loop_hoard_memory_or_recurse_are_contained() {
    let env = TestEnv::new();
    let probe = probe();
    let limits = |types: &str| {
        manifest(
            types,
            "[limits]\nmemory_mb = 128\ntimeout_ms = 2000\nmax_concurrency = 1\n\n[retry]\nmax_attempts = 1\n\n[grants]\nkv = true\n",
        )
    };
    env.install_plugin("py-loop", &probe, &limits("probe.loop"));
    env.install_plugin("py-memory", &probe, &limits("probe.memory"));
    env.install_plugin("py-recursion", &probe, &limits("probe.recursion"));
    env.install_plugin("py-fine", &probe, &limits("probe.ok"));
    let host = env.start().await;

    let plan = |then: &str| json!({"type": format!("probe.{then}"), "then": then, "record": false});
    let error = |event: &Value, plugin: &str| {
        attempts(event, plugin)[0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // One at a time: the guest threads are shared, and a spinning guest that waits for
    // a thread would run out of wall time before CPU time.
    let looping = post_id(&host, "msg_py_loop", plan("loop")).await;
    let event = host.wait_status(&looping, "dead", WAIT).await;
    assert!(
        error(&event, "py-loop").starts_with("cpu_deadline"),
        "{}",
        error(&event, "py-loop")
    );
    let hoard = post_id(&host, "msg_py_memory", plan("memory")).await;
    let event = host.wait_status(&hoard, "dead", WAIT).await;
    let e = error(&event, "py-memory");
    assert!(e.starts_with("memory_limit"), "{e}");
    let recurse = post_id(&host, "msg_py_recursion", plan("recursion")).await;
    let event = host.wait_status(&recurse, "dead", WAIT).await;
    let e = error(&event, "py-recursion");
    assert!(
        e.contains("RecursionError") || e.contains("call stack exhausted"),
        "{e}"
    );

    // The host and the other plugins kept working: the same component, untroubled.
    let fine = post_id(
        &host,
        "msg_py_fine",
        json!({"type": "probe.ok", "ops": [["incr", "n", 1]]}),
    )
    .await;
    let event = host.wait_status(&fine, "done", WAIT).await;
    assert_eq!(delivery(&event, "py-fine")["status"], "done");
    assert_eq!(host.readyz().await.status, 200);
    host.stop().await;
}
