//! On a store several hosts share: apply the deployment's plugins on this host and
//! report what it runs. Whenever the published set changes (and every few seconds), a
//! plugin published with a digest this host has not applied yet is fetched and
//! deployed here through the same validation as any deploy (a refused one leaves the
//! running version serving and is shown as a refusal); a withdrawn one is removed.
//! At start, plugins this host has in `plugins_dir` that the deployment lacks are
//! published, so the first host seeds the deployment.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::deploy::{Action, Deployer, short};
use crate::store::{HostReport, Store};

/// How often the published set is checked and this host's report renewed, besides
/// whenever a change is seen.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Run until `shutdown` resolves; returns at once on a store only this host uses.
pub async fn run(
    deployer: Arc<Deployer>,
    store: Store,
    started_at_ms: u64,
    now_ms: impl Fn() -> u64,
    shutdown: impl Future<Output = ()>,
) {
    let Some(cluster) = store.cluster() else {
        return;
    };
    tokio::pin!(shutdown);
    let changed = cluster.plugins_changed();
    // Digests applied (or refused) here, so each published version is tried once.
    let mut applied: BTreeMap<String, String> = BTreeMap::new();
    let mut seeded = false;
    loop {
        match cluster.published_plugins().await {
            Ok(published) => {
                if !seeded {
                    seeded = true;
                    seed(&deployer, &store, &published).await;
                }
                apply(&deployer, &store, &published, &mut applied).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the deployment's plugins"),
        }
        let plugins = deployer
            .registry()
            .snapshot()
            .iter()
            .map(|(n, p)| (n.clone(), p.compiled.version.clone()))
            .collect();
        let report = HostReport {
            host: cluster.host().to_string(),
            reported_at_ms: now_ms(),
            started_at_ms,
            plugins,
            queued: store.state_counts().iter().map(|(_, c)| c.queued()).sum(),
        };
        if let Err(e) = cluster.report(report).await {
            tracing::warn!(error = %e, "cannot report this host to the deployment");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = changed.notified() => {
                // Let a burst of changes (a deploy is several writes) settle.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            () = tokio::time::sleep(REPORT_INTERVAL) => {}
        }
    }
}

/// Publish what this host loaded from its `plugins_dir` and the deployment lacks.
async fn seed(deployer: &Deployer, store: &Store, published: &BTreeMap<String, String>) {
    let Some(cluster) = store.cluster() else {
        return;
    };
    for name in deployer.registry().snapshot().keys() {
        if published.contains_key(name) {
            continue;
        }
        match super::deploy::read_plugin_files(deployer.dir(), name) {
            Ok((manifest, wasm)) => match cluster.publish_plugin(name, &manifest, &wasm).await {
                Ok(_) => {
                    tracing::info!(plugin = %name, "published this host's plugin to the deployment")
                }
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "cannot publish this host's plugin")
                }
            },
            Err(e) => tracing::warn!(plugin = %name, error = %e, "cannot read this host's plugin"),
        }
    }
}

async fn apply(
    deployer: &Deployer,
    store: &Store,
    published: &BTreeMap<String, String>,
    applied: &mut BTreeMap<String, String>,
) {
    let Some(cluster) = store.cluster() else {
        return;
    };
    for (name, digest) in published {
        if applied.get(name) == Some(digest) {
            continue;
        }
        let (manifest, wasm) = match cluster.fetch_plugin(name).await {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "cannot fetch a published plugin");
                continue;
            }
        };
        applied.insert(name.clone(), digest.clone());
        match deployer.deploy_here(name, manifest, wasm).await {
            Ok(d) if d.action != Action::Unchanged => {
                tracing::info!(plugin = %name, version = %short(&d.plugin.compiled.version), "loaded the version another host deployed");
            }
            Ok(_) => {}
            Err(e) => {
                let serving = deployer
                    .registry()
                    .get(name)
                    .map(|p| format!("; version {} keeps serving", short(&p.compiled.version)))
                    .unwrap_or_default();
                tracing::error!(plugin = %name, "refused the plugin another host deployed: {e}{serving}");
                deployer.record_refusal(name, e.to_string());
            }
        }
    }
    let withdrawn: Vec<String> = applied
        .keys()
        .filter(|n| !published.contains_key(*n))
        .cloned()
        .collect();
    for name in withdrawn {
        applied.remove(&name);
        match deployer.remove_here(&name).await {
            Ok(Some(_)) => tracing::info!(plugin = %name, "removed: another host withdrew it"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "cannot remove a withdrawn plugin")
            }
        }
    }
}
