//! `test-noop` — TEST-ONLY plugin: the trivial handler. It returns `Ok` without calling
//! a tool, so running it measures the host's per-delivery overhead and nothing else.

use agenthook_sdk::{Event, HandlerError};

fn handle(_event: Event) -> Result<(), HandlerError> {
    Ok(())
}

agenthook_sdk::plugin!(handle);
