//! Hot (re)load and removal of plugins in a running host, shared by the `plugins_dir`
//! watcher and the admin API.
//!
//! Validation comes before the swap: a new version is compiled, linked against the
//! host's imports, checked for the `handler` export and instantiated once under its
//! manifest's limits before it replaces anything, so a refused deploy leaves the running
//! version serving. `plugins_dir` stays the truth: an admin deploy writes `NAME.wasm` +
//! `NAME.toml` there (atomically) so it survives a restart, and a removal deletes them.
//! On a store several hosts share, an admin deploy or removal is also published to the
//! store, and every host's `cluster` task applies it through the same validation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use super::registry::{Plugin, PluginError, Registry, build_plugin, manifest_digest};
use crate::config::PluginsConfig;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::tools::{Services, Tools};

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Added,
    /// Swapped in for the version given.
    Replaced {
        previous: String,
    },
    /// The same component and manifest were already loaded; nothing changed.
    Unchanged,
}

/// A plugin now serving, what happened, and what the operator should know.
pub struct Deployed {
    pub plugin: Arc<Plugin>,
    pub action: Action,
    /// Not errors, but probably mistakes (e.g. subscribing to an unconfigured source).
    pub warnings: Vec<String>,
}

/// Validates and swaps plugins; one change at a time.
pub struct Deployer {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    services: Arc<Services>,
    dir: PathBuf,
    /// The configured sources, to warn about subscriptions nothing can match.
    sources: BTreeSet<String>,
    /// The host config's `[plugins]`: which host secrets a manifest may name.
    allowed: Arc<PluginsConfig>,
    /// Held across validate → write files → swap, so the watcher and the admin API
    /// never interleave changes to one plugin.
    lock: Mutex<()>,
    /// Why the files now in `plugins_dir` were refused, by plugin (shown by the admin
    /// API until a version loads or the plugin is removed).
    refusals: std::sync::Mutex<BTreeMap<String, String>>,
    /// The store, when several hosts share it: admin deploys and removals are
    /// published there for every host.
    cluster: Option<Store>,
}

impl Deployer {
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        services: Arc<Services>,
        dir: PathBuf,
        sources: BTreeSet<String>,
        allowed: PluginsConfig,
    ) -> Self {
        Deployer {
            runtime,
            registry,
            services,
            dir,
            sources,
            allowed: Arc::new(allowed),
            lock: Mutex::new(()),
            refusals: std::sync::Mutex::default(),
            cluster: None,
        }
    }

    /// Publish admin deploys and removals to `store` when several hosts share it.
    pub fn with_cluster(mut self, store: Store) -> Self {
        if store.cluster().is_some() {
            self.cluster = Some(store);
        }
        self
    }

    /// Why the files in `plugins_dir` for a plugin were refused, by plugin name.
    pub fn refusals(&self) -> BTreeMap<String, String> {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn record_refusal(&self, name: &str, reason: String) {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), reason);
    }

    fn clear_refusal(&self, name: &str) {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validate a plugin and, if it is valid, write it to `plugins_dir` and swap it in;
    /// on a shared store, publish it for every host too.
    pub async fn deploy(
        &self,
        name: &str,
        manifest_text: String,
        wasm: Vec<u8>,
    ) -> Result<Deployed, PluginError> {
        let deployed = self
            .deploy_here(name, manifest_text.clone(), wasm.clone())
            .await?;
        if let Some(store) = &self.cluster
            && let Some(cluster) = store.cluster()
        {
            cluster
                .publish_plugin(name, &manifest_text, &wasm)
                .await
                .map_err(|e| PluginError::Invalid {
                    name: name.to_string(),
                    message: format!(
                        "loaded on this host, but not published to the other hosts: {e}; deploy again"
                    ),
                })?;
        }
        Ok(deployed)
    }

    /// Validate, write to `plugins_dir` and swap in on this host only (what another
    /// host published).
    pub(crate) async fn deploy_here(
        &self,
        name: &str,
        manifest_text: String,
        wasm: Vec<u8>,
    ) -> Result<Deployed, PluginError> {
        let _guard = self.lock.lock().await;
        let write_err = |source| PluginError::Read {
            name: name.to_string(),
            path: self.dir.clone(),
            source,
        };
        if let Some(same) = self.unchanged(name, &manifest_text, &wasm) {
            // The files may differ (e.g. a refused copy in plugins_dir): make them what
            // is loaded, so a restart loads it too.
            write_plugin_files(&self.dir, name, &manifest_text, &wasm).map_err(write_err)?;
            self.clear_refusal(name);
            return Ok(same);
        }
        let plugin = self.validate(name, &manifest_text, wasm.clone()).await?;
        write_plugin_files(&self.dir, name, &manifest_text, &wasm).map_err(write_err)?;
        Ok(self.swap(plugin))
    }

    /// Unload a plugin and delete its files (on a shared store, on every host). Its
    /// stored deliveries are kept (pending) and run if it is deployed again. `None`: no
    /// such plugin was loaded.
    pub async fn remove(&self, name: &str) -> Result<Option<Arc<Plugin>>, PluginError> {
        if let Some(store) = &self.cluster
            && let Some(cluster) = store.cluster()
        {
            cluster
                .withdraw_plugin(name)
                .await
                .map_err(|e| PluginError::Invalid {
                    name: name.to_string(),
                    message: format!("cannot withdraw it from the other hosts: {e}"),
                })?;
        }
        self.remove_here(name).await
    }

    /// Unload and delete the files on this host only.
    pub(crate) async fn remove_here(&self, name: &str) -> Result<Option<Arc<Plugin>>, PluginError> {
        let _guard = self.lock.lock().await;
        for ext in ["toml", "wasm"] {
            let path = self.dir.join(format!("{name}.{ext}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PluginError::Read {
                        name: name.to_string(),
                        path,
                        source,
                    });
                }
            }
        }
        self.clear_refusal(name);
        let old = self.registry.remove(name);
        if let Some(old) = &old {
            tracing::info!(plugin = name, version = %short(&old.compiled.version), "plugin removed; its pending deliveries are kept");
        }
        Ok(old)
    }

    /// Load what `plugins_dir` now holds for `name` (the watcher saw it change). The
    /// files are read under the lock, so a concurrent admin deploy is seen whole.
    pub(crate) async fn reload_from_dir(&self, name: &str) -> Result<Deployed, PluginError> {
        let _guard = self.lock.lock().await;
        let (text, wasm) = read_plugin_files(&self.dir, name)?;
        if let Some(same) = self.unchanged(name, &text, &wasm) {
            self.clear_refusal(name);
            return Ok(same);
        }
        let plugin = self.validate(name, &text, wasm).await?;
        Ok(self.swap(plugin))
    }

    /// Unload a plugin whose files are gone from `plugins_dir`, unless they came back.
    pub(crate) async fn unload_from_dir(&self, name: &str) -> Option<Arc<Plugin>> {
        let _guard = self.lock.lock().await;
        let present = ["toml", "wasm"]
            .iter()
            .all(|ext| self.dir.join(format!("{name}.{ext}")).exists());
        if present {
            return None;
        }
        let old = self.registry.remove(name)?;
        tracing::info!(plugin = name, version = %short(&old.compiled.version), "plugin files removed from plugins_dir: unloaded; its pending deliveries are kept");
        Some(old)
    }

    fn unchanged(&self, name: &str, manifest_text: &str, wasm: &[u8]) -> Option<Deployed> {
        let loaded = self.registry.get(name)?;
        let same = loaded.manifest_digest == manifest_digest(manifest_text)
            && loaded.compiled.version == crate::runtime::content_hash(wasm);
        same.then(|| Deployed {
            warnings: self.warnings(&loaded),
            plugin: loaded,
            action: Action::Unchanged,
        })
    }

    /// Compile and check a plugin without swapping it in.
    pub async fn validate(
        &self,
        name: &str,
        manifest_text: &str,
        wasm: Vec<u8>,
    ) -> Result<Plugin, PluginError> {
        let (runtime, allowed) = (self.runtime.clone(), self.allowed.clone());
        let (n, text) = (name.to_string(), manifest_text.to_string());
        let plugin =
            tokio::task::spawn_blocking(move || build_plugin(&runtime, &allowed, &n, &text, &wasm))
                .await
                .map_err(|e| PluginError::Invalid {
                    name: name.to_string(),
                    message: format!("validation task failed: {e}"),
                })??;
        self.trial(&plugin).await?;
        Ok(plugin)
    }

    /// Instantiate once under the manifest's limits (see `Runtime::trial_instantiate`).
    pub async fn trial(&self, plugin: &Plugin) -> Result<(), PluginError> {
        let tools = Tools::inert(&plugin.access, self.services.clone());
        self.runtime
            .trial_instantiate(&plugin.compiled, &plugin.manifest, tools)
            .await
            .map_err(|source| PluginError::Load {
                name: plugin.name.to_string(),
                source,
            })
    }

    fn swap(&self, plugin: Plugin) -> Deployed {
        let name = plugin.name.clone();
        let version = plugin.compiled.version.clone();
        let origin = plugin.compiled.origin;
        self.clear_refusal(&name);
        let (plugin, old) = self.registry.insert(plugin);
        let action = match old {
            Some(old) => {
                tracing::info!(plugin = %name, from = %short(&old.compiled.version), to = %short(&version), ?origin, "plugin replaced; deliveries in flight finish on the old version");
                Action::Replaced {
                    previous: old.compiled.version.clone(),
                }
            }
            None => {
                tracing::info!(plugin = %name, version = %short(&version), ?origin, "plugin loaded");
                Action::Added
            }
        };
        let warnings = self.warnings(&plugin);
        for w in &warnings {
            tracing::warn!(plugin = %name, "{w}");
        }
        Deployed {
            plugin,
            action,
            warnings,
        }
    }

    fn warnings(&self, plugin: &Plugin) -> Vec<String> {
        plugin
            .manifest
            .subscribe
            .iter()
            .filter(|s| !self.sources.contains(&s.source) && !s.source.starts_with("plugin:"))
            .map(|s| {
                format!(
                    "subscribes to source `{}`, which is not configured: it will receive nothing from it",
                    s.source
                )
            })
            .collect()
    }
}

/// The first 12 hex digits of a version, for logs.
pub fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

/// `NAME.toml` and `NAME.wasm` from `dir`.
pub fn read_plugin_files(dir: &Path, name: &str) -> Result<(String, Vec<u8>), PluginError> {
    let read_err = |path: PathBuf, source| PluginError::Read {
        name: name.to_string(),
        path,
        source,
    };
    let toml = dir.join(format!("{name}.toml"));
    let wasm = dir.join(format!("{name}.wasm"));
    let text = std::fs::read_to_string(&toml).map_err(|e| read_err(toml, e))?;
    let bytes = std::fs::read(&wasm).map_err(|e| read_err(wasm, e))?;
    Ok((text, bytes))
}

/// Write both files through temp files + rename (the component first), so the watcher
/// and a restart never read a half-written file.
fn write_plugin_files(dir: &Path, name: &str, manifest: &str, wasm: &[u8]) -> std::io::Result<()> {
    let write = |ext: &str, data: &[u8]| -> std::io::Result<()> {
        use std::io::Write as _;
        let tmp = dir.join(format!(".{name}.{ext}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(format!("{name}.{ext}")))
    };
    write("wasm", wasm)?;
    write("toml", manifest.as_bytes())
}
