//! `log.write`: a plugin's log lines go to the attempt's record and to the host log,
//! tagged with the plugin and event. Always granted; capped per attempt.

use super::Tools;
use crate::wit::agenthook::plugin::log::{Host, Level};

impl Host for Tools {
    async fn write(&mut self, level: Level, message: String) {
        // Log lines have their own caps (tools/mod.rs); they do not use up the rate
        // that kv, http, email and emit calls share.
        let counted = self.count_in_attempt();
        if self.tally("log.write", counted).is_err() {
            return;
        }
        let plugin = &*self.plugin;
        let event = self.event;
        let tag = match level {
            Level::Trace => {
                tracing::trace!(plugin, event, "{message}");
                "trace"
            }
            Level::Debug => {
                tracing::debug!(plugin, event, "{message}");
                "debug"
            }
            Level::Info => {
                tracing::info!(plugin, event, "{message}");
                "info"
            }
            Level::Warn => {
                tracing::warn!(plugin, event, "{message}");
                "warn"
            }
            Level::Error => {
                tracing::error!(plugin, event, "{message}");
                "error"
            }
        };
        self.logs.push(format!("[{tag}] {message}"));
    }
}
