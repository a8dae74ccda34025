//! A JavaScript plugin through the real host: `plugins/counter-js`, built with
//! `agenthook plugin build` (componentize-js from npm), counting events in kv, retrying
//! when asked, and denied kv without the grant (a permanent failure naming it). The component is built once per content (app.js, package.json, the WIT)
//! into `target/js-plugins/`, with `npm install` in a scratch copy of the project.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::{TestEnv, agenthook_bin, attempts, manifest, post_id};

const WAIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn counter_js() -> String {
    let src = repo().join("plugins/counter-js");
    let mut h = Sha256::new();
    for f in ["app.js", "package.json"] {
        h.update(std::fs::read(src.join(f)).expect("read counter-js"));
    }
    h.update(std::fs::read(repo().join("wit/plugin.wit")).expect("read wit"));
    let hash: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cache = repo().join("target/js-plugins");
    let out = cache.join(format!("counter-js-{hash}.wasm"));
    if out.is_file() {
        return out.to_str().unwrap().to_string();
    }
    let work = cache.join(format!("work-{hash}/counter-js"));
    std::fs::create_dir_all(&work).expect("scratch dir");
    for f in ["app.js", "package.json"] {
        std::fs::copy(src.join(f), work.join(f)).expect("copy project");
    }
    let npm = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel", "error"])
        .current_dir(&work)
        .status()
        .expect("npm is installed (Node.js 18+)");
    assert!(npm.success(), "npm install in {} failed", work.display());
    let tmp = out.with_extension("tmp");
    let built = Command::new(agenthook_bin())
        .args(["plugin", "build"])
        .arg(&work)
        .arg("--out")
        .arg(&tmp)
        .output()
        .expect("run agenthook plugin build");
    assert!(
        built.status.success(),
        "agenthook plugin build (JavaScript) failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::rename(&tmp, &out).expect("cache the component");
    out.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_counts_in_kv_fails_as_told_and_is_denied_ungranted_kv() {
    let wasm = counter_js();
    let env = TestEnv::new();
    let example = std::fs::read_to_string(repo().join("plugins/counter-js/counter-js.toml"))
        .expect("counter-js manifest");
    env.install_plugin("counter-js", &wasm, &example);
    env.install_plugin(
        "counter-js-nokv",
        &wasm,
        &manifest("nokv.*", "[retry]\nmax_attempts = 3\n"),
    );
    let host = env.start().await;

    for i in 1..=2 {
        let id = post_id(
            &host,
            &format!("msg_js_{i}"),
            json!({"type": "order.created"}),
        )
        .await;
        let event = host.wait_status(&id, "done", WAIT).await;
        let logs = attempts(&event, "counter-js")[0]["logs"].to_string();
        assert!(
            logs.contains(&format!(
                "hello from js: order.created event msg_js_{i} (#{i} of its type)"
            )),
            "{logs}"
        );
    }
    assert_eq!(
        host.kv("counter-js", "count/order.created")
            .await
            .as_deref(),
        Some("2")
    );

    let retry = post_id(
        &host,
        "msg_js_retry",
        json!({"type": "order.created", "retry": true}),
    )
    .await;
    let event = host.wait_status(&retry, "dead", WAIT).await;
    let a = attempts(&event, "counter-js");
    assert_eq!(a.len(), 3, "retried up to max_attempts: {a:?}");
    assert_eq!(a[0]["error"], "handler: asked to retry");

    let nokv = post_id(&host, "msg_js_nokv", json!({"type": "nokv.x"})).await;
    let event = host.wait_status(&nokv, "dead", WAIT).await;
    let a = attempts(&event, "counter-js-nokv");
    assert_eq!(a.len(), 1, "a denial is permanent: {a:?}");
    assert_eq!(
        a[0]["error"],
        "handler: denied: kv is not granted to this plugin (grants.kv = true)"
    );
    assert_eq!(host.kv("counter-js-nokv", "count/nokv.x").await, None);
    host.stop().await;
}
