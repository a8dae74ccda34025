//! Watches `plugins_dir` and hot-loads what changes there: a new or replaced
//! `NAME.toml` + `NAME.wasm` pair is validated and swapped in, a removed one unloaded.
//!
//! It polls (every [`POLL_INTERVAL`]) instead of using inotify/kqueue: polling needs no
//! extra dependency, works the same on every filesystem (bind mounts, NFS and container
//! volumes where change events are lost), and makes the debounce trivial. A plugin is
//! acted on only when the size and mtime of both files are the same in two consecutive
//! scans, so a copy in progress is never loaded; if a stalled copy is caught anyway, the
//! truncated component fails validation and the running version keeps serving until
//! the finished file (new mtime) is picked up. Refusals are logged once per change.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::deploy::{Action, Deployer, short};

/// How often `plugins_dir` is scanned.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Size and modification time of one file.
type Stamp = (u64, Option<SystemTime>);

/// What one scan saw of one plugin name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    toml: Option<Stamp>,
    wasm: Option<Stamp>,
}

impl Seen {
    fn complete(&self) -> bool {
        self.toml.is_some() && self.wasm.is_some()
    }
}

/// Watch until `shutdown` resolves. The first scan reconciles the directory with what
/// is loaded (normally a no-op: the host loaded the same files at start).
pub async fn run(deployer: Arc<Deployer>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut previous: Option<BTreeMap<String, Seen>> = None;
    let mut acted: BTreeMap<String, Option<Seen>> = BTreeMap::new();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        let dir = deployer.dir().to_path_buf();
        let now = match tokio::task::spawn_blocking(move || scan(&dir)).await {
            Ok(Ok(now)) => now,
            Ok(Err(e)) => {
                tracing::warn!(dir = %deployer.dir().display(), error = %e, "cannot scan plugins_dir");
                continue;
            }
            Err(_) => continue,
        };
        let Some(before) = previous.replace(now.clone()) else {
            continue;
        };
        let loaded: BTreeSet<String> = deployer.registry().snapshot().keys().cloned().collect();
        let names: BTreeSet<&String> = now.keys().chain(loaded.iter()).collect();
        for name in names {
            let current = now.get(name);
            if current != before.get(name) {
                continue; // still changing: wait until it is the same in two scans
            }
            if acted.get(name).map(Option::as_ref) == Some(current) {
                continue; // already handled this state
            }
            acted.insert(name.clone(), current.cloned());
            match current {
                Some(seen) if seen.complete() => reload(&deployer, name).await,
                Some(seen) if loaded.contains(name) => {
                    let missing = if seen.toml.is_none() { "toml" } else { "wasm" };
                    tracing::warn!(plugin = %name, "{name}.{missing} is gone from plugins_dir");
                    deployer.unload_from_dir(name).await;
                }
                Some(seen) => {
                    let missing = if seen.toml.is_none() { "toml" } else { "wasm" };
                    tracing::warn!(plugin = %name, "plugins_dir has no {name}.{missing}: a plugin is NAME.toml + NAME.wasm; not loaded");
                }
                None => {
                    deployer.unload_from_dir(name).await;
                }
            }
        }
    }
}

async fn reload(deployer: &Deployer, name: &str) {
    match deployer.reload_from_dir(name).await {
        Ok(d) => {
            if d.action != Action::Unchanged {
                tracing::info!(plugin = name, version = %short(&d.plugin.compiled.version), "hot-loaded from plugins_dir");
            }
        }
        Err(e) => {
            let serving = deployer
                .registry()
                .get(name)
                .map(|p| format!("; version {} keeps serving", short(&p.compiled.version)))
                .unwrap_or_default();
            tracing::error!(
                plugin = name,
                "refused the plugin in plugins_dir: {e}{serving}"
            );
            deployer.record_refusal(name, e.to_string());
        }
    }
}

/// Every `NAME.toml` / `NAME.wasm` in `dir`, by name. Hidden and temp files are skipped.
fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, Seen>> {
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) else {
            continue;
        };
        if stem.starts_with('.') || !matches!(ext, "toml" | "wasm") {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue; // removed between listing and stat: the next scan sees it
        };
        let stamp = Some((meta.len(), meta.modified().ok()));
        let seen = out.entry(stem.to_string()).or_insert(Seen {
            toml: None,
            wasm: None,
        });
        if ext == "toml" {
            seen.toml = stamp;
        } else {
            seen.wasm = stamp;
        }
    }
    Ok(out)
}
