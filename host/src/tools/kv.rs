//! `kv`: a private key-value space per plugin, in the host's store. Requires
//! `grants.kv = true`. Keys are scoped by plugin name in the store, so one plugin can
//! never name another's keys.

use super::Tools;
use crate::store::{Increment, StoreError, Swap};
use crate::wit::agenthook::plugin::kv::{Host, SwapOutcome, Versioned};
use crate::wit::agenthook::plugin::types::ToolError;

pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
pub const MAX_LIST: u32 = 1000;

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        ToolError::Failed(format!("kv store: {e}"))
    }
}

impl Tools {
    fn kv_allowed(&mut self, key: &str) -> Result<(), ToolError> {
        self.count_call()?;
        if !self.grants.kv {
            return Err(ToolError::Denied(
                "kv is not granted to this plugin (grants.kv = true)".into(),
            ));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(ToolError::Invalid(format!(
                "key is {} bytes; the limit is {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        Ok(())
    }

    fn kv_value_allowed(&mut self, key: &str, value: &[u8]) -> Result<(), ToolError> {
        self.kv_allowed(key)?;
        if key.is_empty() {
            return Err(ToolError::Invalid("key is empty".into()));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(ToolError::Invalid(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        Ok(())
    }
}

fn versioned(v: crate::store::Versioned) -> Versioned {
    Versioned {
        value: v.value,
        version: v.version,
    }
}

impl Host for Tools {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_allowed(&key)?;
            Ok(self.store()?.kv_get(&self.plugin, &key).await?)
        }
        .await;
        self.tally("kv.get", result)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_value_allowed(&key, &value)?;
            Ok(self.store()?.kv_set(&self.plugin, &key, value).await?)
        }
        .await;
        self.tally("kv.set", result)
    }

    async fn delete(&mut self, key: String) -> Result<bool, ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_allowed(&key)?;
            Ok(self.store()?.kv_delete(&self.plugin, &key).await?)
        }
        .await;
        self.tally("kv.delete", result)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_allowed(&prefix)?;
            let limit = limit.clamp(1, MAX_LIST) as usize;
            let entries = self
                .store()?
                .kv_list(&self.plugin, &prefix, start_after.as_deref(), limit, false)
                .await?;
            Ok(entries.into_iter().map(|(k, _)| k).collect())
        }
        .await;
        self.tally("kv.list-keys", result)
    }

    async fn get_versioned(&mut self, key: String) -> Result<Option<Versioned>, ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_allowed(&key)?;
            let found = self.store()?.kv_get_versioned(&self.plugin, &key).await?;
            Ok(found.map(versioned))
        }
        .await;
        self.tally("kv.get-versioned", result)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected_version: Option<u64>,
        value: Vec<u8>,
    ) -> Result<SwapOutcome, ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_value_allowed(&key, &value)?;
            let swap = self
                .store()?
                .kv_compare_and_swap(&self.plugin, &key, expected_version, value)
                .await?;
            Ok(match swap {
                Swap::Swapped(version) => SwapOutcome::Swapped(version),
                Swap::Conflict(current) => SwapOutcome::Conflict(current.map(versioned)),
            })
        }
        .await;
        self.tally("kv.compare-and-swap", result)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, ToolError> {
        let result: Result<_, ToolError> = async {
            self.kv_value_allowed(&key, b"")?;
            match self
                .store()?
                .kv_increment(&self.plugin, &key, delta)
                .await?
            {
                Increment::Done(n) => Ok(n),
                Increment::NotAnInteger => Err(ToolError::Invalid(format!(
                    "the value of `{key}` is not a decimal integer; increment leaves it unchanged"
                ))),
                Increment::Overflow => Err(ToolError::Invalid(format!(
                    "adding {delta} to `{key}` overflows a signed 64-bit integer; the value is unchanged"
                ))),
            }
        }
        .await;
        self.tally("kv.increment", result)
    }
}
