//! Emit events to other plugins: how one agent hands work to the next.
//!
//! An emitted event is stored durably like a webhook, with source `plugin:NAME` (this
//! plugin's name), and delivered to every plugin whose manifest subscribes to that
//! source. The event type must match `emit` under the manifest's `[grants]`.
//!
//! Emits are idempotent per delivery: a retried attempt that emits the same key (or,
//! without keys, the same sequence of emits) gets the id of the event emitted before
//! instead of a duplicate. Chains of emits are cut at the host's `max_chain_depth`; the
//! refusal is [`ToolError::Invalid`], permanent, so a loop ends in a dead letter.
//!
//! ```no_run
//! use agenthook_sdk::{HandlerError, events};
//! # fn run() -> Result<(), HandlerError> {
//! let id = events::emit("lead.scored", &serde_json::json!({"email": "a@example.com", "score": 87}))?;
//! # Ok(()) }
//! ```

use serde::Serialize;

use crate::abi::events as wit;
use crate::{HandlerError, ToolError};

/// Emit an event of `event_type` with `body` as JSON; returns the new event's host id.
/// The emit is keyed by its position among this attempt's emits of that type.
pub fn emit<T: Serialize + ?Sized>(event_type: &str, body: &T) -> Result<String, HandlerError> {
    let json = serde_json::to_string(body)?;
    Ok(emit_json(event_type, &json, None)?)
}

/// Emit like [`emit`], keyed by `key`: within one delivery, an event already emitted
/// under `key` is not emitted again. Use it when the emits of an attempt depend on
/// data that can change between attempts.
pub fn emit_keyed<T: Serialize + ?Sized>(
    event_type: &str,
    key: &str,
    body: &T,
) -> Result<String, HandlerError> {
    let json = serde_json::to_string(body)?;
    Ok(emit_json(event_type, &json, Some(key))?)
}

/// Emit an event whose body is the JSON text `json` (checked by the host).
pub fn emit_json(event_type: &str, json: &str, key: Option<&str>) -> Result<String, ToolError> {
    wit::emit(event_type, json, key).map_err(ToolError::from)
}
