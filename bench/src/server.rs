//! The servers under test, each in its own process so that the load generator's CPU and
//! memory are never counted as theirs: the real `agenthook` binary on a generated config,
//! and the plain hyper baseline (this binary's hidden `plain-server` mode, see `plain`).
//!
//! Owns starting them on loopback, waiting for their ready line, reading their memory
//! from `/proc`, and stopping them with SIGTERM (the host's graceful path).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncBufReadExt;

use crate::load;

/// The admin token every bench host is configured with.
pub(crate) const ADMIN_TOKEN: &str = "bench";
/// How long a server may take to print its ready line (100 plugins, or 10 Python
/// plugins of 18 MB each, compile cold; on a loaded 2-core machine that takes minutes).
const READY_TIMEOUT: Duration = Duration::from_secs(900);

/// Where the `agenthook` binary is, building it first unless the caller named one.
pub fn agenthook_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let repo = repo_root()?;
    let status = cargo()
        .args([
            "build",
            "--release",
            "-p",
            "agenthook",
            "--bin",
            "agenthook",
        ])
        .arg("--manifest-path")
        .arg(repo.join("Cargo.toml"))
        .status()
        .context("cannot run cargo to build the agenthook binary")?;
    if !status.success() {
        bail!("building the agenthook binary failed ({status})");
    }
    // Cargo puts it beside this binary when both are built with --release.
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    if dir.file_name().is_none_or(|n| n != "release") {
        eprintln!("warning: agenthook-bench is not a --release build; its load generator is slow");
    }
    let bin = dir
        .parent()
        .context("target dir")?
        .join("release")
        .join("agenthook");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// A `cargo` command without the variables `cargo run` set for this process
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …): build scripts such as ring's watch them
/// (`rerun-if-env-changed`), so passing them on would make this build and every
/// ordinary build of the workspace recompile those crates back and forth.
pub fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_by_cargo_run {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The workspace root (bench/'s parent).
pub fn repo_root() -> anyhow::Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has a parent")?
        .to_path_buf())
}

/// How to run one agenthook host.
#[derive(Debug, Clone, Default)]
pub struct HostSpec {
    /// Appended to the config (e.g. a `[store]` table).
    pub extra_config: String,
    /// Appended to the config's `[server]` table (e.g. `max_inflight_body_mb = 32`).
    pub server_config: String,
    /// (name, component, manifest) written into the plugins dir before start.
    pub plugins: Vec<(String, Vec<u8>, String)>,
    /// Use this data dir (kept) instead of a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// `AGENTHOOK_LOG` for the host (None: the host's default, `info`).
    pub log: Option<String>,
}

/// A running server process.
pub struct Server {
    pub ingress: SocketAddr,
    /// The admin listener (agenthook only).
    pub admin: Option<SocketAddr>,
    /// From spawn to the ready line.
    pub startup: Duration,
    pub data_dir: PathBuf,
    child: tokio::process::Child,
    pid: u32,
    /// Keeps the config, plugins and (unless given) the data dir alive.
    dir: tempfile::TempDir,
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the peak resident size so far.
    pub hwm_kib: u64,
}

impl Memory {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// The scratch directory for bench files: on the same disk as the repo (fsync is real).
pub fn scratch() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("agenthook-bench-")
        .tempdir()
        .context("cannot create a temporary directory")
}

impl Server {
    /// Start the agenthook binary with one `bench` source (Standard Webhooks, the load
    /// generator's secret), a literal admin token, default logging (info, to a file in
    /// the temp dir) and the given plugins.
    pub async fn agenthook(bin: &Path, spec: &HostSpec) -> anyhow::Result<Server> {
        let dir = scratch()?;
        let data_dir = spec
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let plugins = dir.path().join("plugins.d");
        std::fs::create_dir_all(&plugins)?;
        for (name, wasm, manifest) in &spec.plugins {
            std::fs::write(plugins.join(format!("{name}.wasm")), wasm)?;
            std::fs::write(plugins.join(format!("{name}.toml")), manifest)?;
        }
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{}\n[sources.bench]\nscheme = \"standard-webhooks\"\nsecrets = [\"{}\"]\n\n{}\n",
            data_dir.display(),
            plugins.display(),
            spec.server_config,
            load::SECRET,
            spec.extra_config,
        );
        let config_path = dir.path().join("agenthook.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("agenthook.log"))?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("AGENTHOOK_LOG")
            .env_remove("RUST_BACKTRACE")
            .stderr(log);
        if let Some(filter) = &spec.log {
            cmd.env("AGENTHOOK_LOG", filter);
        }
        let (child, startup, line) = spawn_until_ready(cmd, "agenthook ready ").await?;
        // `agenthook ready ingress=http://A admin=http://B`
        let field = |name: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.strip_prefix("http://"))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} address in `{line}`"))
        };
        let (ingress, admin) = (field("ingress=")?, field("admin=")?);
        let pid = child.id().context("the host exited at once")?;
        Ok(Server {
            ingress,
            admin: Some(admin),
            startup,
            data_dir,
            child,
            pid,
            dir,
        })
    }

    /// Start the plain hyper baseline (this executable, `plain-server` mode).
    pub async fn plain() -> anyhow::Result<Server> {
        let dir = scratch()?;
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("plain-server");
        let (child, startup, line) = spawn_until_ready(cmd, "plain-server ready ").await?;
        let ingress = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no address in `{line}`"))?;
        let pid = child.id().context("the plain server exited at once")?;
        Ok(Server {
            ingress,
            admin: None,
            startup,
            data_dir: dir.path().to_path_buf(),
            child,
            pid,
            dir,
        })
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory_of(self.pid)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// GET an admin route as JSON.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        admin_get(self.admin.context("this server has no admin API")?, path).await
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 30 s). The host drains in-flight
    /// requests and deliveries and closes its store on this path. Returns the server's
    /// temporary directory (its data dir, unless one was given): dropping it deletes it.
    pub async fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        // kill(1) rather than a signal crate: one more feature of a shared dependency
        // would make the workspace's builds recompile it back and forth. The process
        // may have exited already; then there is nothing to signal.
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                // The plain server has no signal handler: SIGTERM ends it.
                const SIGTERM: i32 = 15;
                let terminated =
                    std::os::unix::process::ExitStatusExt::signal(&status) == Some(SIGTERM);
                if !status.success() && !terminated {
                    bail!("the server exited with {status}");
                }
            }
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                bail!("the server did not stop within 30 s of SIGTERM; killed");
            }
        }
        Ok(self.dir)
    }
}

/// GET an agenthook admin route at `addr` as JSON.
pub async fn admin_get(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut sender = load::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

/// GET an agenthook host's `/metrics` at `addr` as text.
pub async fn metrics_text(addr: SocketAddr) -> anyhow::Result<String> {
    let mut sender = load::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
    let req = http::Request::get("/metrics")
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Spawn `cmd` and wait for a stdout line starting with `prefix`.
async fn spawn_until_ready(
    mut cmd: tokio::process::Command,
    prefix: &str,
) -> anyhow::Result<(tokio::process::Child, Duration, String)> {
    cmd.stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start the server process")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with(prefix) {
                return anyhow::Ok(line);
            }
        }
        bail!("the server exited before it was ready")
    })
    .await
    .context("the server did not get ready in time")??;
    let startup = started.elapsed();
    // Keep reading so that the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, startup, line))
}

/// VmRSS and VmHWM of a process (Linux).
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading memory needs /proc")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let rss_kib: u64 = field("VmRSS:")?;
    // The kernel updates the peak lazily; it is never below what is resident now.
    let hwm_kib = field("VmHWM:")?.max(rss_kib);
    Ok(Memory { rss_kib, hwm_kib })
}
