//! Shared test harness: a temp environment with a config and a plugins dir, the host
//! started through `agenthook::run` on `127.0.0.1:0` (or as the real binary), HTTP
//! helpers that sign like a sender, and waiting on conditions with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::Sha256;
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

/// Paths of the plugin components built from `plugins/` (the examples) and
/// `tests/plugins/` (the test fixtures) by the build script.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// The `demo` source's secret in every test config.
pub const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWFnZW50aG9vay1lMmU=";
pub const TOKEN: &str = "test-admin-token";

/// A temp dir with `data/`, `plugins.d/` and a config; hosts started from it share the
/// data across restarts.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    /// Extra TOML appended to the config (more sources, etc.).
    pub extra_config: String,
    /// Extra keys for the config's `[server]` table (limits, etc.).
    pub server_config: String,
    /// When set, the store is on this NATS cluster under this prefix and host name
    /// (`AGENTHOOK_TEST_STORE=nats` sets it for every env, on the shared cluster).
    pub nats: Option<NatsStore>,
}

/// Where an env's store lives on NATS.
#[derive(Clone)]
pub struct NatsStore {
    pub urls: Vec<String>,
    pub prefix: String,
    pub host: String,
    pub replicas: usize,
}

/// Whether this run's stores are on NATS (`AGENTHOOK_TEST_STORE=nats`).
pub fn on_nats() -> bool {
    crate::nats::enabled()
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("plugins.d")).expect("plugins dir");
        let nats = crate::nats::enabled().then(|| {
            let prefix = crate::nats::fresh_prefix();
            NatsStore {
                urls: crate::nats::shared().urls(),
                host: format!("{prefix}-h"),
                prefix,
                replicas: 3,
            }
        });
        TestEnv {
            dir,
            extra_config: String::new(),
            server_config: String::new(),
            nats,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins.d")
    }

    /// Install a plugin component under `name` with the given manifest text.
    pub fn install_plugin(&self, name: &str, wasm: &str, manifest: &str) {
        std::fs::copy(wasm, self.plugins_dir().join(format!("{name}.wasm"))).expect("copy wasm");
        std::fs::write(self.plugins_dir().join(format!("{name}.toml")), manifest)
            .expect("write manifest");
    }

    pub fn config_text(&self) -> String {
        let mut extra = self.extra_config.clone();
        if let Some(n) = &self.nats {
            let servers = n
                .urls
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let tables = format!(
                "\n[store.nats]\nservers = [{servers}]\nprefix = \"{}\"\nhost = \"{}\"\nreplicas = {}\n",
                n.prefix, n.host, n.replicas
            );
            if extra.contains("[store]\n") {
                extra = extra.replacen("[store]\n", "[store]\nbackend = \"nats\"\n", 1);
            } else {
                extra = format!("[store]\nbackend = \"nats\"\n{extra}");
            }
            extra += &tables;
        }
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{data}"
plugins_dir = "{plugins}"
admin_token = "{TOKEN}"
{server}

[sources.demo]
scheme = "standard-webhooks"
secrets = ["{SECRET}"]

{extra}"#,
            data = self.data_dir().display(),
            plugins = self.plugins_dir().display(),
            server = self.server_config,
        )
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("agenthook.toml");
        std::fs::write(&path, self.config_text()).expect("write config");
        path
    }

    /// Start the host in this process via `agenthook::run`.
    pub async fn start(&self) -> TestHost {
        self.start_with_clock(agenthook::clock::Clock::system())
            .await
    }

    /// Start the host in this process with a clock the test can move forward.
    pub async fn start_with_clock(&self, clock: agenthook::clock::Clock) -> TestHost {
        self.start_with_store(clock, |store| store).await
    }

    /// Start the host in this process on its store as `wrap` returns it (tests wrap the
    /// real store to inject faults).
    pub async fn start_with_store(
        &self,
        clock: agenthook::clock::Clock,
        wrap: impl FnOnce(agenthook::store::Store) -> agenthook::store::Store,
    ) -> TestHost {
        let config =
            agenthook::config::Config::parse(&self.config_text(), Path::new("test"), false)
                .expect("test config is valid");
        std::fs::create_dir_all(self.data_dir()).expect("data dir");
        let store = wrap(
            agenthook::store::Store::open(&self.data_dir(), &config.store)
                .await
                .expect("open the store"),
        );
        let ingress = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addrs = (
            ingress.local_addr().expect("addr"),
            admin.local_addr().expect("addr"),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            agenthook::Host::prepare_with_store(config, clock, store)
                .await?
                .serve(agenthook::Listeners { ingress, admin }, async move {
                    let _ = rx.await;
                })
                .await
        });
        let host = TestHost {
            ingress: addrs.0,
            admin: addrs.1,
            client: client(),
            stop: Some(tx),
            task: Some(task),
            process: None,
        };
        host.wait_ready().await;
        host
    }

    /// Start the real `agenthook` binary on this env's config.
    pub async fn start_binary(&self) -> TestHost {
        let mut cmd = tokio::process::Command::new(agenthook_bin());
        cmd.arg("serve")
            .env("AGENTHOOK_LOG", "warn")
            .stderr(Stdio::inherit());
        self.spawn_binary(cmd).await
    }

    /// Start the real binary with these environment variables set (e.g. the secrets
    /// that `env:` references name).
    pub async fn start_binary_with_env(&self, vars: &[(&str, &str)]) -> TestHost {
        let mut cmd = tokio::process::Command::new(agenthook_bin());
        cmd.arg("serve")
            .env("AGENTHOOK_LOG", "warn")
            .envs(vars.iter().copied())
            .stderr(Stdio::inherit());
        self.spawn_binary(cmd).await
    }

    /// Start the real binary with `--log-format json` and `AGENTHOOK_LOG=filter`, its
    /// log (stderr) written to `log`.
    pub async fn start_binary_logging(&self, filter: &str, log: &Path) -> TestHost {
        let file = std::fs::File::create(log).expect("create log file");
        let mut cmd = tokio::process::Command::new(agenthook_bin());
        cmd.arg("serve")
            .env("AGENTHOOK_LOG", filter)
            .stderr(Stdio::from(file))
            .args(["--log-format", "json"]);
        self.spawn_binary(cmd).await
    }

    async fn spawn_binary(&self, mut cmd: tokio::process::Command) -> TestHost {
        let mut child = cmd
            .arg("--config")
            .arg(self.config_path())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agenthook");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("agenthook ready ") {
                    return Some(rest.to_string());
                }
            }
            None
        })
        .await
        .expect("agenthook did not print its ready line within 120 s")
        .expect("agenthook exited before it was ready");
        let addr = |key: &str| -> SocketAddr {
            ready
                .split(' ')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|u| u.strip_prefix("http://"))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in ready line {ready:?}"))
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestHost {
            ingress: addr("ingress="),
            admin: addr("admin="),
            client: client(),
            stop: None,
            task: None,
            process: Some(child),
        }
    }
}

/// The `agenthook` binary built by this `cargo test` run (the host package's own
/// integration test makes Cargo build it next to this test binary).
pub fn agenthook_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/e2e-xxxx → target/<profile>/agenthook
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("agenthook"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (see README)",
        bin.display()
    );
    bin
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A running host (in-process or a child process).
pub struct TestHost {
    pub ingress: SocketAddr,
    pub admin: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), agenthook::RunError>>>,
    pub process: Option<tokio::process::Child>,
}

/// A response: status and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub headers: http::HeaderMap,
}

impl TestHost {
    async fn wait_ready(&self) {
        wait_until(
            "the host answers /healthz",
            // Generous: loading compiles every plugin, and the suite runs tests in parallel.
            Duration::from_secs(120),
            || async {
                let r = self
                    .request(
                        http::Method::GET,
                        self.ingress,
                        "/healthz",
                        &[],
                        Bytes::new(),
                    )
                    .await
                    .ok()?;
                (r.status == 200).then_some(())
            },
        )
        .await;
    }

    /// Graceful stop; waits until `run` returned (the store is closed).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("host task")
                .expect("host run() returned an error");
        }
        if let Some(mut child) = self.process.take() {
            #[cfg(unix)]
            {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .arg("-TERM")
                        .arg(pid.to_string())
                        .status();
                }
            }
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("agenthook did not exit within 30 s of SIGTERM")
                .expect("wait");
            assert!(status.success(), "agenthook exited with {status}");
        }
    }

    /// `kill -9` the child process (binary hosts only).
    pub async fn kill9(mut self) {
        let mut child = self.process.take().expect("kill9 needs a binary host");
        child.start_kill().expect("kill");
        let _ = child.wait().await;
    }

    pub async fn request(
        &self,
        method: http::Method,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Resp, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            json,
            headers,
        })
    }

    /// POST raw to `/hooks/{source}`.
    pub async fn post(&self, source: &str, headers: &[(&str, String)], body: &[u8]) -> Resp {
        self.request(
            http::Method::POST,
            self.ingress,
            &format!("/hooks/{source}"),
            headers,
            Bytes::copy_from_slice(body),
        )
        .await
        .expect("POST to ingress")
    }

    /// POST a Standard-Webhooks-signed event to the `demo` source, timestamped now.
    pub async fn post_signed(&self, id: &str, body: &Value) -> Resp {
        let body = body.to_string();
        let headers = standard_webhooks_headers(SECRET, id, unix_now(), body.as_bytes());
        self.post("demo", &headers, body.as_bytes()).await
    }

    /// Deploy a plugin through `PUT /admin/v1/plugins/{name}`.
    pub async fn deploy(&self, name: &str, manifest: &str, component: &[u8]) -> Resp {
        let body =
            serde_json::json!({ "manifest": manifest, "wasm_base64": B64.encode(component) });
        let headers = vec![
            ("authorization", format!("Bearer {TOKEN}")),
            ("content-type", "application/json".into()),
        ];
        self.request(
            http::Method::PUT,
            self.admin,
            &format!("/admin/v1/plugins/{name}"),
            &headers,
            Bytes::from(body.to_string()),
        )
        .await
        .expect("PUT plugin")
    }

    /// POST JSON to an admin path with the test token.
    pub async fn admin_post(&self, path: &str, body: &Value) -> Resp {
        let headers = vec![
            ("authorization", format!("Bearer {TOKEN}")),
            ("content-type", "application/json".into()),
        ];
        self.request(
            http::Method::POST,
            self.admin,
            path,
            &headers,
            Bytes::from(body.to_string()),
        )
        .await
        .expect("POST admin")
    }

    /// Run the real `agenthook` CLI against this host's admin API; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(agenthook_bin())
            .args(args)
            .args([
                "--admin-url",
                &format!("http://{}", self.admin),
                "--token",
                TOKEN,
            ])
            .output()
            .expect("run agenthook");
        assert!(
            out.status.success(),
            "agenthook {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// GET a path as text (for `/metrics`), with the test token when `addr` is the
    /// admin port. Returns the status, content type and body.
    pub async fn get_text(&self, addr: SocketAddr, path: &str) -> (u16, String, String) {
        let req = http::Request::builder()
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = self.client.request(req).await.expect("GET");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            ctype,
            String::from_utf8(body.to_vec()).expect("utf-8 body"),
        )
    }

    /// `GET /readyz` on the ingress port.
    pub async fn readyz(&self) -> Resp {
        self.request(
            http::Method::GET,
            self.ingress,
            "/readyz",
            &[],
            Bytes::new(),
        )
        .await
        .expect("GET /readyz")
    }

    /// GET an admin path with the test token.
    pub async fn admin_get(&self, path: &str) -> Resp {
        self.admin_with_token(path, Some(TOKEN)).await
    }

    pub async fn admin_with_token(&self, path: &str, token: Option<&str>) -> Resp {
        let headers: Vec<(&str, String)> = token
            .map(|t| vec![("authorization", format!("Bearer {t}"))])
            .unwrap_or_default();
        self.request(http::Method::GET, self.admin, path, &headers, Bytes::new())
            .await
            .expect("GET admin")
    }

    /// The event as the admin API shows it.
    pub async fn event(&self, id: &str) -> Value {
        let r = self.admin_get(&format!("/admin/v1/events/{id}")).await;
        assert_eq!(r.status, 200, "GET event {id}: {:?}", r.json);
        r.json
    }

    /// Wait until the event's overall status is `status`; returns the event.
    pub async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        wait_until(
            &format!("event {id} reaches status {status}"),
            within,
            || async {
                let e = self.event(id).await;
                (e["status"] == status).then_some(e)
            },
        )
        .await
    }

    /// A plugin's kv value (as text), through the admin API.
    pub async fn kv(&self, plugin: &str, key: &str) -> Option<String> {
        let r = self
            .admin_get(&format!(
                "/admin/v1/plugins/{plugin}/kv?prefix={}&limit=1",
                urlencode(key)
            ))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        r.json["entries"]
            .as_array()
            .and_then(|e| e.first())
            .filter(|e| e["key"] == key)
            .map(|e| e["value"].as_str().expect("utf-8 value").to_string())
    }

    /// Every stored event (newest first), through the admin API.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = self
                .admin_get(&format!("/admin/v1/events?limit=1000{cursor}"))
                .await;
            assert_eq!(r.status, 200, "{:?}", r.json);
            out.extend(r.json["events"].as_array().expect("events").iter().cloned());
            match r.json["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The headers a Standard Webhooks sender sends.
pub fn standard_webhooks_headers(
    secret: &str,
    id: &str,
    ts: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .expect("whsec_ secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let sig = B64.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
        ("content-type", "application/json".to_string()),
    ]
}

/// Poll `check` until it returns Some, or panic after `within` naming `what`.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// POST a signed event to `demo`, assert it was stored, return the host's id.
pub async fn post_id(host: &TestHost, id: &str, body: Value) -> String {
    let r = host.post_signed(id, &body).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["id"].as_str().expect("id").to_string()
}

/// The attempts of an event's delivery to `plugin` (empty when there is none).
pub fn attempts(event: &Value, plugin: &str) -> Vec<Value> {
    event["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["plugin"] == plugin))
        .and_then(|d| d["attempts"].as_array().cloned())
        .unwrap_or_default()
}

/// A manifest for a test plugin subscribed to `demo` events of the given type glob.
pub fn manifest(types: &str, body: &str) -> String {
    format!("[[subscribe]]\nsource = \"demo\"\ntypes = [\"{types}\"]\n\n{body}\n")
}
