//! `agenthook plugin new` → `plugin build` → `plugin deploy` → an event, for each
//! language, with the real binary and nothing edited in between: the scaffold builds and
//! deploys as is, its handler runs, and (Rust) its unit test passes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{TestEnv, TestHost, agenthook_bin, attempts, post_id};
use crate::python_build::build_cached;

const WAIT: Duration = Duration::from_secs(120);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn new_project(parent: &Path, name: &str, lang: &str) -> std::path::PathBuf {
    let printed = run(Command::new(agenthook_bin())
        .args(["plugin", "new", name, "--lang", lang, "--dir"])
        .arg(parent));
    assert!(printed.contains("agenthook plugin build"), "{printed}");
    let dir = parent.join(name);
    assert!(dir.join(format!("{name}.toml")).is_file());
    dir
}

/// Deploy with the CLI, send one event, and check what the handler did.
async fn deploy_and_send(host: &TestHost, name: &str, wasm: &Path, dir: &Path) {
    let out = host.cli(&[
        "plugin",
        "deploy",
        name,
        "--wasm",
        wasm.to_str().unwrap(),
        "--manifest",
        dir.join(format!("{name}.toml")).to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("plugin {name}: added")), "{out}");
    let id = post_id(
        host,
        &format!("msg_{name}"),
        json!({"type": "order.created"}),
    )
    .await;
    let event = host.wait_status(&id, "done", WAIT).await;
    let a = attempts(&event, name);
    assert_eq!(a[0]["outcome"], "done", "{a:?}");
    let logs = a[0]["logs"].to_string();
    assert!(
        logs.contains(&format!(
            "hello: order.created event msg_{name} (#1 of its type)"
        )),
        "{logs}"
    );
    assert_eq!(
        host.kv(name, "count/order.created").await.as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_rust_plugin_tests_builds_deploys_and_handles_an_event() {
    let env = TestEnv::new();
    let dir = new_project(env.dir.path(), "my-agent", "rust");
    // Shared across runs, so only the scaffold's own crate compiles each time.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    run(Command::new("cargo")
        .arg("test")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target));
    let printed = run(Command::new(agenthook_bin())
        .args(["plugin", "build"])
        .arg(&dir)
        .env("CARGO_TARGET_DIR", &target));
    let wasm = dir.join("dist/my-agent.wasm");
    assert_eq!(
        printed.trim(),
        wasm.canonicalize().unwrap().to_str().unwrap()
    );
    let host = env.start_binary().await;
    deploy_and_send(&host, "my-agent", &wasm, &dir).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_python_plugin_builds_deploys_and_handles_an_event() {
    let env = TestEnv::new();
    let dir = new_project(env.dir.path(), "my-py-agent", "python");
    // `agenthook plugin build` (componentize-py), cached by the project's content.
    let wasm = build_cached(&dir);
    let host = env.start_binary().await;
    deploy_and_send(&host, "my-py-agent", &wasm, &dir).await;
    host.stop().await;
}

#[test]
fn plugin_new_refuses_a_bad_name_or_an_existing_directory_and_build_an_unknown_project() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(agenthook_bin())
        .args(["plugin", "new", "../escape", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot name a plugin"));
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = Command::new(agenthook_bin())
        .args(["plugin", "new", "taken", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
    let out = Command::new(agenthook_bin())
        .args(["plugin", "build"])
        .arg(dir.path().join("taken"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a plugin project"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
