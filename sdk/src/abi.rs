//! Where the tool modules' calls go: the host's imports in a component, or — with the
//! `testing` feature on a target that is not wasm — the in-memory host of
//! [`crate::testing`]. The two offer the same functions and types, so the tool modules
//! are written once.

#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
pub(crate) use crate::bindings::agenthook::plugin::{config, email, events, http, kv, llm, log};

#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub(crate) use crate::testing::fake::{config, email, events, http, kv, llm, log};
