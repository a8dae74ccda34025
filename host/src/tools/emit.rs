//! `events.emit`: a plugin hands work to other plugins by emitting an event. The event
//! takes the webhook's durable path — one commit with its deliveries to the plugins
//! subscribed to source `plugin:NAME` — and must match `grants.emit`.
//!
//! Emits are idempotent per delivery: the new event's id is derived from the handled
//! delivery's idempotency key and the emit's key, so a retried attempt finds the event
//! it emitted before instead of storing another. Each emitted event carries its chain
//! (the origin and every plugin hop) in the `agenthook-chain` header; an emit past
//! `[emit] max_chain_depth` hops is refused with the chain in the message, which the
//! SDK turns into a permanent failure, so a loop ends in a dead letter.

use sha2::{Digest, Sha256};

use super::Tools;
use super::journal::{self, Step};
use crate::store::{EventMeta, Ingested, NewEvent};
use crate::wit::agenthook::plugin::events::Host;
use crate::wit::agenthook::plugin::types::ToolError;

/// The header that carries an emitted event's chain, as a JSON array of hops.
pub const CHAIN_HEADER: &str = "agenthook-chain";
pub const MAX_EMITS_PER_ATTEMPT: u32 = 100;
pub const MAX_TYPE_LEN: usize = 128;
pub const MAX_KEY_LEN: usize = 256;

/// Where the handled event came from: `source:type` of the webhook that started the
/// chain, then `plugin:type` for each emit since.
pub fn chain_of(meta: &EventMeta) -> Vec<String> {
    // Only emitted events (source `plugin:…`, which no webhook source can be named)
    // carry a chain the host wrote; a sender's header of that name means nothing.
    if meta.source.starts_with("plugin:")
        && let Some(chain) = meta
            .headers
            .iter()
            .find(|(k, _)| k == CHAIN_HEADER)
            .and_then(|(_, v)| serde_json::from_str::<Vec<String>>(v).ok())
    {
        return chain;
    }
    vec![format!("{}:{}", meta.source, meta.event_type)]
}

impl Host for Tools {
    async fn emit(
        &mut self,
        event_type: String,
        json: String,
        key: Option<String>,
    ) -> Result<String, ToolError> {
        let result: Result<_, ToolError> = async {
            self.count_call()?;
            if self.grants.emit.is_empty() {
                return Err(ToolError::Denied(
                    "emit is not granted to this plugin (grants.emit)".into(),
                ));
            }
            let type_ok = !event_type.is_empty()
                && event_type.len() <= MAX_TYPE_LEN
                && event_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
            if !type_ok {
                return Err(ToolError::Invalid(format!(
                    "event type `{event_type}`: use 1-{MAX_TYPE_LEN} letters, digits, `.`, `_`, `-` or `:`"
                )));
            }
            if !self.grants.emit_allows(&event_type) {
                return Err(ToolError::Denied(format!(
                    "emitting `{event_type}` is not granted to this plugin (grants.emit = {:?})",
                    self.grants.emit_patterns()
                )));
            }
            let services = self.services.clone();
            let max_body = services.max_event_bytes;
            if json.len() > max_body {
                return Err(ToolError::Invalid(format!(
                    "the body is {} bytes; the limit is {max_body} (server.max_body_bytes)",
                    json.len()
                )));
            }
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&json) {
                return Err(ToolError::Invalid(format!("the body is not JSON: {e}")));
            }
            if key.as_ref().is_some_and(|k| k.len() > MAX_KEY_LEN) {
                return Err(ToolError::Invalid(format!(
                    "the key is longer than {MAX_KEY_LEN} bytes"
                )));
            }
            self.emits += 1;
            if self.emits > MAX_EMITS_PER_ATTEMPT {
                return Err(ToolError::Limited(format!(
                    "more than {MAX_EMITS_PER_ATTEMPT} emits in one attempt"
                )));
            }

            let mut chain = self.origin.chain.clone();
            chain.push(format!("{}:{event_type}", self.plugin));
            let hops = chain.len() - 1;
            let max = services.max_chain_depth;
            if hops > max as usize {
                let chain = chain.join(" → ");
                tracing::warn!(plugin = &*self.plugin, event = self.event, %chain, "emit refused: event chain too deep");
                return Err(ToolError::Invalid(format!(
                    "event chain too deep: this emit would be hop {hops}, emit.max_chain_depth is {max}; chain: {chain}"
                )));
            }

            // The key names this emit within the delivery; without one, its position among
            // this attempt's emits of the type does.
            let position = self.emits_by_type.entry(event_type.clone()).or_insert(0);
            *position += 1;
            let key = key.unwrap_or_else(|| format!("#{position}"));
            let journaled = self.journal.policy().emit.then(|| {
                journal::request_hash(
                    "events.emit",
                    &[event_type.as_bytes(), json.as_bytes(), key.as_bytes()],
                )
            });
            let seq = match &journaled {
                Some(hash) => match self.journal.step("events.emit", hash)? {
                    Step::Replay(recorded) => {
                        return recorded.as_str().map(str::to_string).ok_or_else(|| {
                            ToolError::Failed("the journal's record of this call is unreadable".into())
                        });
                    }
                    Step::Run { seq } => Some(seq),
                },
                None => None,
            };
            let event_id = emit_id(&self.origin.idempotency_key, &event_type, &key);
            let source = format!("plugin:{}", self.plugin);
            let plugins = services.routes.subscribers(&source, &event_type);
            let store = self.store()?;
            // The same admission as a webhook's: a full subscriber queue or a full disk
            // pushes back on the emitting plugin.
            store
                .admit(&plugins)
                .map_err(|refusal| ToolError::Limited(refusal.to_string()))?;
            let chain_json = serde_json::to_string(&chain)
                .map_err(|e| ToolError::Failed(format!("cannot encode the chain: {e}")))?;
            let event = NewEvent {
                meta: EventMeta {
                    source,
                    event_id: event_id.clone(),
                    event_type: event_type.clone(),
                    received_at_ms: services.clock.now_ms(),
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        ("agenthook-emitted-by".into(), self.plugin.to_string()),
                        ("agenthook-parent-event".into(), self.event.to_string()),
                        (CHAIN_HEADER.into(), chain_json),
                    ],
                },
                body: json.into(),
                plugins,
            };
            let id = match store.ingest(event).await? {
                Ingested::Stored(id) => {
                    tracing::info!(plugin = &*self.plugin, parent = self.event, id, %event_type, "event emitted");
                    id
                }
                // Emitted by an earlier attempt of this delivery: not stored again.
                Ingested::Duplicate(id) => id,
            };
            if let (Some(seq), Some(hash)) = (seq, journaled) {
                let summary = format!("{event_type} (key {key}) → event {id}");
                let result = serde_json::Value::String(id.to_string());
                self.journal_record(seq, "events.emit", hash, summary, result).await;
            }
            Ok(id.to_string())
        }
        .await;
        self.tally("events.emit", result)
    }
}

/// The emitted event's id: stable for (delivery, type, key).
fn emit_id(idempotency_key: &str, event_type: &str, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [idempotency_key, event_type, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("emit_{}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(source: &str, headers: Vec<(String, String)>) -> EventMeta {
        EventMeta {
            source: source.into(),
            event_id: "e1".into(),
            event_type: "form.submitted".into(),
            received_at_ms: 0,
            headers,
        }
    }

    #[test]
    fn chains_start_at_the_webhook_and_are_trusted_only_on_emitted_events() {
        let forged = vec![(CHAIN_HEADER.to_string(), r#"["a","b","c"]"#.to_string())];
        assert_eq!(
            chain_of(&meta("forms", forged.clone())),
            ["forms:form.submitted"]
        );
        assert_eq!(
            chain_of(&meta("plugin:lead-router", forged)),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn emit_ids_depend_on_delivery_type_and_key() {
        let a = emit_id("agenthook:1:p", "lead.scored", "#1");
        assert_eq!(a, emit_id("agenthook:1:p", "lead.scored", "#1"));
        assert_ne!(a, emit_id("agenthook:2:p", "lead.scored", "#1"));
        assert_ne!(a, emit_id("agenthook:1:p", "lead.other", "#1"));
        assert_ne!(a, emit_id("agenthook:1:p", "lead.scored", "#2"));
        // Length-prefixed: moving text between parts changes the id.
        assert_ne!(emit_id("ab", "c", "d"), emit_id("a", "bc", "d"));
    }
}
