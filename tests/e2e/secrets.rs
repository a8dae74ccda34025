//! Host secrets reach a plugin only where the operator allows: a manifest's `env:` and
//! `file:` references resolve against `[plugins] allow_env` / `allow_files_under`, and
//! anything else is refused — 422 on an admin deploy, exit status 64 at start, a logged
//! refusal from the `plugins_dir` watcher — with the running version left serving.
//!
//! The probe is `test-kv-probe`: it writes its `probe_key` config value as a kv key, so
//! `kv(probe, VALUE)` being set shows the plugin received exactly that value.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{self, TestEnv, TestHost, agenthook_bin, attempts, plugins, post_id};

const WAIT: Duration = Duration::from_secs(60);

/// What the plugin's kv shows after it saw its config value: `VALUE` = this.
const PROBED: &str = "probe-was-here";

/// A temp env with `secrets/key` (the allowed secret), `host-only` beside it (a host
/// file no manifest may read) and `secrets/escape`, a symlink out to `host-only`.
struct Secrets {
    env: TestEnv,
    dir: PathBuf,
    key: PathBuf,
    host_only: PathBuf,
}

impl Secrets {
    fn new(allow: &str) -> Secrets {
        let mut env = TestEnv::new();
        let root = std::fs::canonicalize(env.dir.path()).expect("temp dir");
        let dir = root.join("secrets");
        std::fs::create_dir(&dir).expect("secrets dir");
        let key = dir.join("key");
        std::fs::write(&key, "file-secret-1\n").expect("write key");
        let host_only = root.join("host-only");
        std::fs::write(&host_only, "host-only-secret\n").expect("write host file");
        std::os::unix::fs::symlink(&host_only, dir.join("escape")).expect("symlink");
        env.extra_config = allow.replace("{secrets}", &dir.display().to_string());
        Secrets {
            env,
            dir,
            key,
            host_only,
        }
    }
}

/// A `test-kv-probe` manifest for `probe.*` events of `demo`, with `probe_key` = `value`
/// and `extra` TOML (more grants) after it.
fn probe_manifest(value: &str, extra: &str) -> String {
    format!(
        "[[subscribe]]\nsource = \"demo\"\ntypes = [\"probe.*\"]\n\n[retry]\nmax_attempts = 1\n\n{extra}\n[config]\nprobe_key = \"{value}\"\n"
    )
}

fn probe_wasm() -> Vec<u8> {
    std::fs::read(plugins::TEST_KV_PROBE).expect("read test-kv-probe")
}

/// The loaded plugin as `GET /admin/v1/plugins/{name}` shows it.
async fn loaded(host: &TestHost, name: &str) -> Value {
    let r = host.admin_get(&format!("/admin/v1/plugins/{name}")).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json
}

/// Post a `probe.run` event, wait until the probe handled it; returns the event.
async fn probe(host: &TestHost, id: &str) -> Value {
    let id = post_id(host, id, json!({"type": "probe.run"})).await;
    host.wait_status(&id, "done", WAIT).await
}

/// The refusal reason `GET /admin/v1/plugins` lists for `name`, once there is one.
async fn listed_refusal(host: &TestHost, name: &str) -> String {
    harness::wait_until("the watcher refuses the plugin", WAIT, || async {
        let list = host.admin_get("/admin/v1/plugins").await.json;
        list["refused"]
            .as_array()
            .expect("refused")
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["reason"].as_str().expect("reason").to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_naming_a_disallowed_secret_get_422_and_the_old_version_keeps_serving() {
    let s = Secrets::new("[plugins]\nallow_files_under = [\"{secrets}\"]\n");
    let host = s.env.start().await;
    let wasm = probe_wasm();
    let kv = "[grants]\nkv = true\n";

    // A file under the allowed directory: deployed, and the plugin sees its content.
    let good = probe_manifest(&format!("file:{}", s.key.display()), kv);
    let r = host.deploy("probe", &good, &wasm).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let before = loaded(&host, "probe").await;
    let first = probe(&host, "before").await;
    assert_eq!(
        host.kv("probe", "file-secret-1").await.as_deref(),
        Some(PROBED)
    );

    let outside = format!("file:{}", s.host_only.display());
    let dotdot = format!("file:{}/../host-only", s.dir.display());
    let symlink = format!("file:{}/escape", s.dir.display());
    let origin = "http://127.0.0.1:9";
    let header_grant = format!(
        "[grants]\nkv = true\nhttp = [\"{origin}\"]\n[grants.http_headers.\"{origin}\"]\nAuthorization = \"Bearer {outside}\"\n"
    );
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a file outside the allowed directories",
            probe_manifest(&outside, kv),
            vec!["config.probe_key", &outside, "plugins.allow_files_under"],
        ),
        (
            "`..` out of the allowed directory",
            probe_manifest(&dotdot, kv),
            vec!["config.probe_key", &dotdot, "plugins.allow_files_under"],
        ),
        (
            "a symlink out of the allowed directory",
            probe_manifest(&symlink, kv),
            vec![
                "config.probe_key",
                &symlink,
                "it resolves to",
                "plugins.allow_files_under",
            ],
        ),
        (
            "a grant header naming a file outside",
            probe_manifest("k", &header_grant),
            vec![
                "grants.http_headers.\"http://127.0.0.1:9\".Authorization",
                &outside,
                "plugins.allow_files_under",
            ],
        ),
        (
            "the secrets directory itself",
            probe_manifest(&format!("file:{}", s.dir.display()), kv),
            vec!["config.probe_key", "not a regular file"],
        ),
        (
            "an environment variable (allow_env is empty)",
            probe_manifest("env:HOME", kv),
            vec![
                "config.probe_key",
                "`env:HOME` is refused",
                "plugins.allow_env",
                "which allows none",
            ],
        ),
    ];
    for (case, manifest, expected) in &cases {
        let r = host.deploy("probe", manifest, &wasm).await;
        assert_eq!(r.status, 422, "{case}: {:?}", r.json);
        assert_eq!(r.json["reason"], "invalid_plugin", "{case}");
        let text = r.json["error"].as_str().unwrap_or_default();
        for needle in expected {
            assert!(text.contains(needle), "{case}: no `{needle}` in {text}");
        }
        assert!(text.contains("keeps serving"), "{case}: {text}");
        assert!(!text.contains("host-only-secret"), "{case}: {text}");
        let now = loaded(&host, "probe").await;
        assert_eq!(now["version"], before["version"], "{case}");
        assert_eq!(now["manifest_digest"], before["manifest_digest"], "{case}");
    }

    // Nothing stored changed, the refused manifests never reached plugins_dir, and the
    // old version still handles events with the allowed secret.
    assert_eq!(host.event(first["id"].as_str().expect("id")).await, first);
    assert_eq!(
        std::fs::read_to_string(s.env.plugins_dir().join("probe.toml")).unwrap(),
        good
    );
    let after = probe(&host, "after").await;
    assert_eq!(
        attempts(&after, "probe")[0]["plugin_version"],
        before["version"]
    );
    assert_eq!(host.all_events().await.len(), 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_references_resolve_only_for_variables_allow_env_matches() {
    let s = Secrets::new("[plugins]\nallow_env = [\"CRM_*\"]\n");
    let host = s
        .env
        .start_binary_with_env(&[
            ("CRM_PROBE_KEY", "crm-secret-42"),
            ("OTHER_PROBE_KEY", "other-secret-7"),
        ])
        .await;
    let wasm = probe_wasm();
    let kv = "[grants]\nkv = true\n";

    let r = host
        .deploy("probe", &probe_manifest("env:OTHER_PROBE_KEY", kv), &wasm)
        .await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    let text = r.json["error"].as_str().expect("error");
    for needle in [
        "config.probe_key",
        "`env:OTHER_PROBE_KEY` is refused",
        "plugins.allow_env",
        "[\"CRM_*\"]",
    ] {
        assert!(text.contains(needle), "no `{needle}` in {text}");
    }
    assert!(!text.contains("other-secret-7"), "{text}");
    // A file is refused too: allow_files_under is empty.
    let file = format!("file:{}", s.key.display());
    let r = host
        .deploy("probe", &probe_manifest(&file, kv), &wasm)
        .await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    assert!(
        r.json["error"].as_str().is_some_and(
            |e| e.contains("plugins.allow_files_under") && e.contains("which allows none")
        ),
        "{:?}",
        r.json
    );
    // Matched but not set: the usual error.
    let r = host
        .deploy(
            "probe",
            &probe_manifest("env:CRM_NOT_SET_IN_THIS_HOST", kv),
            &wasm,
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("CRM_NOT_SET_IN_THIS_HOST is not set")),
        "{:?}",
        r.json
    );
    assert_eq!(host.admin_get("/admin/v1/plugins/probe").await.status, 404);

    // Matched: deployed, and the plugin reads the value.
    let r = host
        .deploy("probe", &probe_manifest("env:CRM_PROBE_KEY", kv), &wasm)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    probe(&host, "env-1").await;
    assert_eq!(
        host.kv("probe", "crm-secret-42").await.as_deref(),
        Some(PROBED)
    );
    host.stop().await;
}

/// Run `agenthook serve` on the env's config until it exits; its status and stderr.
async fn serve_until_exit(env: &TestEnv) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(agenthook_bin())
            .arg("serve")
            .arg("--config")
            .arg(env.config_path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("agenthook did not exit within 120 s")
    .expect("run agenthook");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_dir_manifest_naming_a_disallowed_secret_stops_the_start_with_64() {
    let s =
        Secrets::new("[plugins]\nallow_env = [\"CRM_*\"]\nallow_files_under = [\"{secrets}\"]\n");
    let kv = "[grants]\nkv = true\n";
    let symlink = format!("file:{}/escape", s.dir.display());
    for (reference, key) in [
        (
            format!("file:{}", s.host_only.display()),
            "plugins.allow_files_under",
        ),
        (symlink, "plugins.allow_files_under"),
        ("env:HOME".to_string(), "plugins.allow_env"),
    ] {
        s.env.install_plugin(
            "probe",
            plugins::TEST_KV_PROBE,
            &probe_manifest(&reference, kv),
        );
        let (code, stderr) = serve_until_exit(&s.env).await;
        assert_eq!(code, Some(64), "{reference}: {stderr}");
        for needle in [
            "plugin `probe`",
            "config.probe_key",
            &format!("`{reference}` is refused"),
            key,
        ] {
            assert!(
                stderr.contains(needle),
                "{reference}: no `{needle}` in {stderr}"
            );
        }
        assert!(!stderr.contains("host-only-secret"), "{stderr}");
    }

    // The same plugin naming the allowed file starts, and sees it.
    s.env.install_plugin(
        "probe",
        plugins::TEST_KV_PROBE,
        &probe_manifest(&format!("file:{}", s.key.display()), kv),
    );
    let host = s.env.start_binary().await;
    probe(&host, "start-1").await;
    assert_eq!(
        host.kv("probe", "file-secret-1").await.as_deref(),
        Some(PROBED)
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_refuses_a_hot_reloaded_disallowed_secret_and_keeps_the_running_version() {
    let s = Secrets::new("[plugins]\nallow_files_under = [\"{secrets}\"]\n");
    let kv = "[grants]\nkv = true\n";
    s.env.install_plugin(
        "probe",
        plugins::TEST_KV_PROBE,
        &probe_manifest("literal-key", kv),
    );
    let log = s.env.dir.path().join("host.log");
    let host = s.env.start_binary_logging("warn", &log).await;
    let v1 = loaded(&host, "probe").await;
    let toml = s.env.plugins_dir().join("probe.toml");

    let outside = format!("file:{}", s.host_only.display());
    std::fs::write(&toml, probe_manifest(&outside, kv)).unwrap();
    let reason = listed_refusal(&host, "probe").await;
    for needle in [
        "config.probe_key",
        &format!("`{outside}` is refused"),
        "plugins.allow_files_under",
    ] {
        assert!(reason.contains(needle), "no `{needle}` in {reason}");
    }
    let logged = harness::wait_until("the refusal is logged", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("refused the plugin in plugins_dir"))
            .map(str::to_string)
    })
    .await;
    for needle in [
        "config.probe_key",
        "plugins.allow_files_under",
        "keeps serving",
    ] {
        assert!(logged.contains(needle), "no `{needle}` in {logged}");
    }
    assert!(!logged.contains("host-only-secret"), "{logged}");
    let now = loaded(&host, "probe").await;
    assert_eq!(now["manifest_digest"], v1["manifest_digest"]);
    probe(&host, "watch-1").await;
    assert_eq!(
        host.kv("probe", "literal-key").await.as_deref(),
        Some(PROBED)
    );

    // A manifest naming the allowed file is hot-loaded, and the plugin sees it.
    std::fs::write(
        &toml,
        probe_manifest(&format!("file:{}", s.key.display()), kv),
    )
    .unwrap();
    harness::wait_until("the watcher loads the allowed manifest", WAIT, || async {
        let p = loaded(&host, "probe").await;
        (p["manifest_digest"] != v1["manifest_digest"]).then_some(())
    })
    .await;
    probe(&host, "watch-2").await;
    assert_eq!(
        host.kv("probe", "file-secret-1").await.as_deref(),
        Some(PROBED)
    );
    host.stop().await;
}
