//! The set of loaded plugins: read from `plugins_dir` (`NAME.toml` + `NAME.wasm`),
//! validated and compiled before they can receive events.
//!
//! The set is swapped as a whole (readers take a snapshot), so a delivery always sees
//! one consistent version of a plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};

use crate::clock::now_ms;
use crate::config::manifest::Manifest;
use crate::config::{ConfigError, PluginsConfig, validate_name};
use crate::runtime::{CompiledPlugin, LoadError, Runtime};
use crate::tools::{Access, Routes};

use super::ordering::Lanes;

/// A plugin that could not be loaded; the message names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{name}`: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin `{name}`: manifest {path}: {source}")]
    Manifest {
        name: String,
        path: PathBuf,
        source: ConfigError,
    },
    #[error("plugin `{name}`: {source}")]
    Load { name: String, source: LoadError },
    #[error("plugin `{name}`: {message}")]
    Invalid { name: String, message: String },
}

/// One loaded plugin.
pub struct Plugin {
    pub name: Arc<str>,
    pub manifest: Manifest,
    pub compiled: CompiledPlugin,
    /// What its tools may use: grants, config (resolved secrets included), call rate.
    pub access: Access,
    /// One permit per concurrent delivery (`limits.max_concurrency`). A new version
    /// with the same limit shares its predecessor's, so a swap never lets more than
    /// the limit run at once.
    pub permits: Arc<Semaphore>,
    pub loaded_at_ms: u64,
    /// Hex SHA-256 of the manifest text: with the component's version, tells whether a
    /// deploy changes anything.
    pub manifest_digest: String,
    /// The manifest's `[grants]` as written, for the admin API (header values, which
    /// may be credentials, redacted).
    pub grants_view: serde_json::Value,
}

/// The loaded plugins by name.
#[derive(Default)]
pub struct Registry {
    plugins: RwLock<Arc<BTreeMap<String, Arc<Plugin>>>>,
    /// Notified whenever the set changes (the dispatcher waits on it).
    changed: Option<Arc<Notify>>,
    /// The ordering lanes of plugins with `[ordering]`.
    lanes: Lanes,
}

impl Registry {
    /// An empty registry that notifies `changed` whenever a plugin is added, replaced
    /// or removed.
    pub fn new(changed: Arc<Notify>) -> Self {
        Registry {
            plugins: RwLock::default(),
            changed: Some(changed),
            lanes: Lanes::default(),
        }
    }

    /// The ordering lanes of the plugins that declare `[ordering]`.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// A consistent view of the loaded plugins.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, Arc<Plugin>>> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.snapshot().get(name).cloned()
    }

    /// Names of the plugins subscribed to this source and event type.
    pub fn subscribers(&self, source: &str, event_type: &str) -> Vec<String> {
        self.snapshot()
            .values()
            .filter(|p| p.manifest.subscribes_to(source, event_type))
            .map(|p| p.name.to_string())
            .collect()
    }

    /// Add or replace a plugin; returns it and the version it replaced. Deliveries
    /// already running keep the old version (they hold its `Arc`); the next ones get
    /// the new.
    pub fn insert(&self, mut plugin: Plugin) -> (Arc<Plugin>, Option<Arc<Plugin>>) {
        let plugin_name = plugin.name.clone();
        let (new, old) = {
            let mut guard = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            let mut next = BTreeMap::clone(&guard);
            if let Some(old) = next.get(&*plugin.name)
                && old.manifest.limits.max_concurrency == plugin.manifest.limits.max_concurrency
            {
                plugin.permits = old.permits.clone();
            }
            if plugin.manifest.ordering.is_none() {
                self.lanes.forget(&plugin_name);
            }
            let new = Arc::new(plugin);
            let old = next.insert(plugin_name.to_string(), new.clone());
            *guard = Arc::new(next);
            (new, old)
        };
        self.notify();
        (new, old)
    }

    /// Unload a plugin: no new deliveries start; running ones finish; its stored
    /// deliveries stay as they are until it is loaded again.
    pub fn remove(&self, name: &str) -> Option<Arc<Plugin>> {
        let old = {
            let mut guard = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            if !guard.contains_key(name) {
                return None;
            }
            let mut next = BTreeMap::clone(&guard);
            let old = next.remove(name);
            *guard = Arc::new(next);
            self.lanes.forget(name);
            old
        };
        self.notify();
        old
    }

    fn notify(&self) {
        if let Some(n) = &self.changed {
            n.notify_one();
        }
    }
}

impl Routes for Registry {
    fn subscribers(&self, source: &str, event_type: &str) -> Vec<String> {
        Registry::subscribers(self, source, event_type)
    }
}

/// The `[grants]` table of a (valid) manifest as JSON; every value under
/// `http_headers` is replaced by `"<redacted>"`.
fn grants_view(manifest_text: &str) -> serde_json::Value {
    fn redact(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => m.values_mut().for_each(redact),
            serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
            other => *other = serde_json::Value::from("<redacted>"),
        }
    }
    let table: toml::Table = toml::from_str(manifest_text).unwrap_or_default();
    let mut grants = table
        .get("grants")
        .and_then(|g| serde_json::to_value(g).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(headers) = grants.get_mut("http_headers") {
        redact(headers);
    }
    grants
}

/// Hex SHA-256 of a manifest's text.
pub fn manifest_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Validate and compile one plugin from its manifest text and component bytes; the
/// manifest's `env:`/`file:` values resolve only where `allowed` (the host config's
/// `[plugins]`) lets them. CPU-heavy (compiles the component): call it off the async
/// executor.
pub fn build_plugin(
    runtime: &Runtime,
    allowed: &PluginsConfig,
    name: &str,
    manifest_text: &str,
    wasm: &[u8],
) -> Result<Plugin, PluginError> {
    validate_name(name).map_err(|message| PluginError::Invalid {
        name: name.to_string(),
        message,
    })?;
    let manifest =
        Manifest::parse(manifest_text, allowed).map_err(|source| PluginError::Manifest {
            name: name.to_string(),
            path: PathBuf::from(format!("{name}.toml")),
            source,
        })?;
    let compiled = runtime.compile(wasm).map_err(|source| PluginError::Load {
        name: name.to_string(),
        source,
    })?;
    Ok(Plugin {
        name: Arc::from(name),
        access: Access::new(name, &manifest),
        permits: Arc::new(Semaphore::new(manifest.limits.max_concurrency as usize)),
        manifest,
        compiled,
        loaded_at_ms: now_ms(),
        manifest_digest: manifest_digest(manifest_text),
        grants_view: grants_view(manifest_text),
    })
}

/// Load every `NAME.toml` + `NAME.wasm` pair in `dir`. A manifest without its component
/// (or the reverse) is an error, as is any invalid plugin: the host does not start
/// with a plugin it was told to run but cannot (nor with one whose manifest names a
/// secret `allowed` does not let it read).
pub fn load_dir(
    runtime: &Runtime,
    allowed: &PluginsConfig,
    dir: &Path,
) -> Result<Vec<Plugin>, PluginError> {
    let read_err = |path: &Path, source| PluginError::Read {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        source,
    };
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let path = entry.map_err(|e| read_err(dir, e))?.path();
        let ext = path.extension().and_then(|e| e.to_str());
        let stem = path.file_stem().and_then(|s| s.to_str());
        if let (Some("toml" | "wasm"), Some(stem)) = (ext, stem) {
            names.insert(stem.to_string());
        }
    }
    let mut plugins = Vec::with_capacity(names.len());
    for name in names {
        let manifest_path = dir.join(format!("{name}.toml"));
        let wasm_path = dir.join(format!("{name}.wasm"));
        for p in [&manifest_path, &wasm_path] {
            if !p.exists() {
                return Err(PluginError::Invalid {
                    name: name.clone(),
                    message: format!(
                        "{} is missing (a plugin is NAME.toml + NAME.wasm)",
                        p.display()
                    ),
                });
            }
        }
        let text =
            std::fs::read_to_string(&manifest_path).map_err(|e| read_err(&manifest_path, e))?;
        let wasm = std::fs::read(&wasm_path).map_err(|e| read_err(&wasm_path, e))?;
        let plugin = build_plugin(runtime, allowed, &name, &text, &wasm).map_err(|e| match e {
            PluginError::Manifest { name, source, .. } => PluginError::Manifest {
                name,
                path: manifest_path.clone(),
                source,
            },
            other => other,
        })?;
        plugins.push(plugin);
    }
    Ok(plugins)
}
