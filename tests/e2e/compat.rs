//! The versioned plugin ABI: components built against `agenthook:plugin@0.1.0` (kept
//! prebuilt in `tests/fixtures/wit-0.1.0`, never rebuilt) load and run unchanged in
//! today's host beside 0.2.0 ones, with every tool and its grant checks; and the 0.2.0
//! atomic kv keeps concurrent payments of one customer from losing an update in `tally`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestEnv, TestHost, manifest, plugins, post_id, wait_until};
use crate::servers::{ApiServer, Reply, SmtpSink};

const WAIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/wit-0.1.0")
        .join(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    path.to_str().expect("utf-8 path").to_string()
}

fn payment(customer: &str, amount: u64) -> Value {
    json!({"type": "payment.succeeded", "data": {"customer": customer, "amount": amount, "currency": "usd"}})
}

async fn tally(host: &TestHost, plugin: &str, customer: &str) -> Value {
    let text = host
        .kv(plugin, &format!("tally/{customer}"))
        .await
        .expect("tally stored");
    serde_json::from_str(&text).expect("tally is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_component_loads_and_runs_beside_a_0_2_0_one() {
    let env = TestEnv::new();
    let tally_manifest = std::fs::read_to_string(plugins::TALLY_MANIFEST).expect("manifest");
    env.install_plugin("tally-old", &fixture("tally-0.1.0.wasm"), &tally_manifest);
    env.install_plugin("tally", plugins::TALLY, &tally_manifest);
    let host = env.start().await;

    let id = post_id(&host, "msg_compat_1", payment("cus_c", 700)).await;
    let event = host.wait_status(&id, "done", WAIT).await;
    for d in event["deliveries"].as_array().expect("deliveries") {
        assert_eq!(d["status"], "done", "{d}");
        let logs = d["attempts"][0]["logs"].to_string();
        assert!(logs.contains("customer cus_c total 700 usd"), "{logs}");
    }
    // The old component's kv calls went through the adapters into its own space.
    for plugin in ["tally-old", "tally"] {
        let t = tally(&host, plugin, "cus_c").await;
        assert_eq!(
            (t["total"].as_u64(), t["count"].as_u64()),
            (Some(700), Some(1))
        );
    }
    // The two are different components, each recorded with its own version.
    let versions: Vec<_> = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"][0]["plugin_version"].clone())
        .collect();
    assert_ne!(versions[0], versions[1]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_component_uses_every_network_tool_and_is_denied_what_is_not_granted() {
    let api = ApiServer::start(|_, _| Reply::json(200, json!({"ok": 1}))).await;
    let smtp = SmtpSink::start().await;
    let mut env = TestEnv::new();
    env.extra_config = smtp.email_config("");
    let probe = fixture("test-tool-probe-0.1.0.wasm");
    env.install_plugin(
        "old-granted",
        &probe,
        &manifest(
            "probe.*",
            &format!(
                "[grants]\nkv = true\nhttp = [\"{}\"]\nemail = [\"ops@example.com\"]\nemit = [\"probe.done\"]\n",
                api.origin()
            ),
        ),
    );
    env.install_plugin(
        "old-bare",
        &probe,
        &manifest("probe.*", "[grants]\nkv = true\n"),
    );
    let host = env.start().await;
    let body = json!({
        "type": "probe.run",
        "fetch": [api.url("/v1/x")],
        "email": ["ops@example.com"],
        "emit": [{"type": "probe.done", "body": {"n": 1}}],
    });
    let id = post_id(&host, "msg_compat_probe", body).await;
    host.wait_status(&id, "done", WAIT).await;
    let results = |plugin: &'static str| {
        let host = &host;
        async move {
            let text = wait_until("probe results", WAIT, || async {
                host.kv(plugin, "result/msg_compat_probe/1").await
            })
            .await;
            serde_json::from_str::<Vec<String>>(&text).expect("JSON array")
        }
    };
    let granted = results("old-granted").await;
    assert_eq!(granted[0], "ok 200 {\"ok\":1}", "{granted:?}");
    assert!(granted[1].starts_with("ok <"), "a Message-ID: {granted:?}");
    assert!(granted[2].starts_with("ok "), "an event id: {granted:?}");
    assert_eq!(
        results("old-bare").await,
        [
            "denied: http is not granted to this plugin (grants.http)",
            "denied: email is not granted to this plugin (grants.email)",
            "denied: emit is not granted to this plugin (grants.emit)",
        ]
    );
    assert_eq!(
        api.requests().len(),
        1,
        "only the granted plugin's fetch left"
    );
    wait_until("the one email arrives", WAIT, || async {
        (smtp.messages().len() == 1).then_some(())
    })
    .await;
    host.stop().await;
}

/// `tally` handles up to 4 deliveries at once. 40 payments of one customer posted
/// together: with a read-modify-write on kv, two deliveries that read the same total
/// both write their own sum and one payment is lost (run against the 0.1.0 `tally`
/// fixture, which does that, this test counted 20, 29 and 31 of 40); with the
/// compare-and-swap loop every payment is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_of_one_customer_lose_no_update() {
    let env = TestEnv::new();
    let tally_manifest = std::fs::read_to_string(plugins::TALLY_MANIFEST).expect("manifest");
    env.install_plugin("tally", plugins::TALLY, &tally_manifest);
    let host = env.start().await;
    const N: u64 = 40;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            post_id(
                &host,
                &format!("msg_conc_{i}"),
                payment("cus_conc", 100 + i),
            )
            .await,
        );
    }
    for id in &ids {
        host.wait_status(id, "done", WAIT).await;
    }
    let t = tally(&host, "tally", "cus_conc").await;
    assert_eq!(t["count"].as_u64(), Some(N), "{t}");
    assert_eq!(
        t["total"].as_u64(),
        Some((0..N).map(|i| 100 + i).sum()),
        "{t}"
    );
    host.stop().await;
}
