//! `test-kv-probe` — TEST-ONLY plugin: shows what this plugin's kv space contains.
//!
//! It reads `probe_key` from config, looks the key up in its own kv and records what it
//! found under `seen/{probe_key}` (the value, or `<none>`), then writes
//! `probe_key` = `probe-was-here`. Installed beside a plugin that wrote the same key, it
//! shows that kv spaces are separate; installed without `grants.kv` its `?` on the
//! `denied` tool error becomes a permanent failure carrying the host's message.

use agenthook_sdk::{Event, HandlerError, config, kv, log};

fn handle(event: Event) -> Result<(), HandlerError> {
    let probe_key = config::require("probe_key")?;

    let found = kv::get(&probe_key)?;
    let seen = found.unwrap_or_else(|| b"<none>".to_vec());
    log::info(format!(
        "test-kv-probe: event {} found {probe_key} = {}",
        event.id,
        String::from_utf8_lossy(&seen)
    ));
    kv::set(&format!("seen/{probe_key}"), &seen)?;
    kv::set(&probe_key, "probe-was-here")?;
    Ok(())
}

agenthook_sdk::plugin!(handle);
