//! `config.get`: the values of the manifest's `[config]` table, secrets already
//! resolved by the host. A key the manifest does not list does not exist.

use super::Tools;
use crate::runtime::bindings::agenthook::plugin::config::Host;

impl Host for Tools {
    async fn get(&mut self, key: String) -> Option<String> {
        self.count_call().ok()?;
        self.config.get(&key).map(|v| v.expose().to_string())
    }
}
