//! `config.get`: the values of the manifest's `[config]` table, secrets already
//! resolved by the host. A key the manifest does not list does not exist.

use super::Tools;
use crate::wit::agenthook::plugin::config::Host;

impl Host for Tools {
    // Not counted against the tool-call limits: it is an in-memory lookup, and its
    // signature cannot say `limited` — a refusal would read as a missing key.
    async fn get(&mut self, key: String) -> Option<String> {
        let value = self.config.get(&key).map(|v| v.expose().to_string());
        self.tally("config.get", Ok(value)).ok().flatten()
    }
}
