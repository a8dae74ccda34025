//! The host tools a plugin may call, one file per tool, and the per-call context they
//! share.
//!
//! Deny by default: each tool checks the plugin's grants first and answers a call the
//! manifest does not grant with `tool-error.denied` naming the missing grant — never a
//! trap. Tools see only this plugin's grants, config values and kv space.

mod config;
mod kv;
mod log;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::config::Secret;
use crate::config::manifest::Grants;
use crate::runtime::bindings::agenthook::plugin::types::{self, ToolError};
use crate::store::{EventId, Store};

/// Tool calls one attempt may make; a plugin looping on a tool is cut off with
/// `tool-error.limited` instead of flooding the store.
const MAX_TOOL_CALLS: u32 = 10_000;
/// Log lines and bytes kept per attempt.
const MAX_LOG_LINES: usize = 200;
const MAX_LOG_BYTES: usize = 64 * 1024;
const MAX_LOG_LINE: usize = 4096;

/// What the tools of one handler call can reach.
pub struct Tools {
    plugin: Arc<str>,
    event: EventId,
    grants: Grants,
    config: Arc<BTreeMap<String, Secret>>,
    store: Store,
    logs: LogSink,
    calls: u32,
}

impl Tools {
    pub fn new(
        plugin: Arc<str>,
        event: EventId,
        grants: Grants,
        config: Arc<BTreeMap<String, Secret>>,
        store: Store,
    ) -> Self {
        Tools {
            plugin,
            event,
            grants,
            config,
            store,
            logs: LogSink::default(),
            calls: 0,
        }
    }

    /// A handle to the attempt's log lines, readable after the call.
    pub fn logs(&self) -> LogSink {
        self.logs.clone()
    }

    /// Count a tool call against the per-attempt cap.
    fn count_call(&mut self) -> Result<(), ToolError> {
        self.calls += 1;
        if self.calls > MAX_TOOL_CALLS {
            return Err(ToolError::Limited(format!(
                "more than {MAX_TOOL_CALLS} tool calls in one attempt"
            )));
        }
        Ok(())
    }
}

impl types::Host for Tools {}

/// The log lines of one attempt, capped in count and size.
#[derive(Debug, Clone, Default)]
pub struct LogSink(Arc<Mutex<LogBuffer>>);

#[derive(Debug, Default)]
struct LogBuffer {
    lines: Vec<String>,
    bytes: usize,
    dropped: usize,
}

impl LogSink {
    fn push(&self, mut line: String) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if b.lines.len() >= MAX_LOG_LINES || b.bytes + line.len() > MAX_LOG_BYTES {
            b.dropped += 1;
            return;
        }
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        b.bytes += line.len();
        b.lines.push(line);
    }

    /// The lines so far, plus a note of how many were dropped.
    pub fn take(&self) -> Vec<String> {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = std::mem::take(&mut b.lines);
        if b.dropped > 0 {
            lines.push(format!(
                "… {} more log lines dropped (cap {MAX_LOG_LINES} lines / {MAX_LOG_BYTES} bytes)",
                b.dropped
            ));
        }
        lines
    }
}
