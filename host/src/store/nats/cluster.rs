//! The deployment-wide parts of the NATS backend: plugins in the object store
//! `P_plugins` (one object per plugin: the manifest's length, the manifest, the
//! component), and each host's report in the KV bucket `P_hosts`, whose max age drops
//! the hosts that stopped reporting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use super::*;
use crate::store::{Cluster, HostReport};

/// A host that has not reported for this long is no longer listed.
pub(super) const HOST_REPORT_MAX_AGE: Duration = Duration::from_secs(60);

/// The object store, the hosts bucket, and the notifier the object watch drives.
pub(super) struct Deployment {
    pub plugins: ObjectStore,
    pub hosts: kv::Store,
    pub changed: Arc<Notify>,
}

impl Deployment {
    /// Follow the object store: every put or delete notifies `changed`.
    pub(super) fn watch(&self) -> tokio::task::JoinHandle<()> {
        let (plugins, changed) = (self.plugins.clone(), self.changed.clone());
        tokio::spawn(async move {
            loop {
                match plugins.watch().await {
                    Ok(mut w) => {
                        while let Some(info) = w.next().await {
                            if info.is_err() {
                                break;
                            }
                            changed.notify_one();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "plugins watch failed; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }
}

fn encode_plugin(manifest: &str, wasm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + manifest.len() + wasm.len());
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(manifest.as_bytes());
    out.extend_from_slice(wasm);
    out
}

fn decode_plugin(data: &[u8]) -> Result<(String, Vec<u8>), StoreError> {
    let short = || StoreError::Corrupt("a published plugin is truncated".into());
    let len: [u8; 4] = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(short)?;
    let len = u32::from_le_bytes(len) as usize;
    let manifest = data.get(4..4 + len).ok_or_else(short)?;
    let manifest = String::from_utf8(manifest.to_vec()).map_err(corrupt)?;
    Ok((manifest, data[4 + len..].to_vec()))
}

#[async_trait::async_trait]
impl Cluster for NatsStore {
    fn host(&self) -> &str {
        &self.host
    }

    async fn publish_plugin(
        &self,
        name: &str,
        manifest: &str,
        wasm: &[u8],
    ) -> Result<String, StoreError> {
        let data = encode_plugin(manifest, wasm);
        let info = self
            .deployment
            .plugins
            .put(name, &mut data.as_slice())
            .await
            .map_err(engine)?;
        Ok(info.digest.unwrap_or_default())
    }

    async fn withdraw_plugin(&self, name: &str) -> Result<(), StoreError> {
        match self.deployment.plugins.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn published_plugins(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        let mut list = match self.deployment.plugins.list().await {
            Ok(l) => l,
            Err(e) => return Err(engine(e)),
        };
        while let Some(info) = list.next().await {
            let info = info.map_err(engine)?;
            if !info.deleted {
                out.insert(info.name, info.digest.unwrap_or_default());
            }
        }
        Ok(out)
    }

    async fn fetch_plugin(&self, name: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let mut object = match self.deployment.plugins.get(name).await {
            Ok(o) => o,
            Err(e) if e.to_string().contains("not found") => return Ok(None),
            Err(e) => return Err(engine(e)),
        };
        let mut data = Vec::with_capacity(object.info.size);
        object.read_to_end(&mut data).await.map_err(engine)?;
        decode_plugin(&data).map(Some)
    }

    fn plugins_changed(&self) -> Arc<Notify> {
        self.deployment.changed.clone()
    }

    async fn report(&self, report: HostReport) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&report).map_err(corrupt)?;
        self.deployment
            .hosts
            .put(&self.host, value.into())
            .await
            .map_err(engine)?;
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<HostReport>, StoreError> {
        let mut keys = self.deployment.hosts.keys().await.map_err(engine)?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(engine)?);
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(v) = self.deployment.hosts.get(&name).await.map_err(engine)?
                && let Ok(r) = serde_json::from_slice::<HostReport>(&v)
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(out)
    }
}
