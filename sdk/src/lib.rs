//! Write agenthook plugins: one handler function, typed access to the host's tools.
//!
//! A plugin is a WebAssembly component that the agenthook host calls once per event
//! delivery. This crate owns the plugin ABI (the `agenthook:plugin` WIT package) so that a
//! plugin author writes plain Rust: one function from [`Event`] to
//! `Result<(), HandlerError>`, registered with [`plugin!`], calling the host's tools
//! through [`kv`], [`config`], [`log`], [`http`], [`email`] and [`events`].
//!
//! # Quick start
//!
//! ```toml
//! # Cargo.toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! agenthook-sdk = { path = "../sdk" }   # as the plugins in this repository do
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! ```no_run
//! use agenthook_sdk::{Event, HandlerError, config, kv, log};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Payment {
//!     data: Data,
//! }
//!
//! #[derive(Deserialize)]
//! struct Data {
//!     customer: String,
//!     amount: u64,
//! }
//!
//! fn handle(event: Event) -> Result<(), HandlerError> {
//!     // Retries and replays carry the same idempotency key: do the work once.
//!     let seen = format!("seen/{}", event.idempotency_key);
//!     if kv::get(&seen)?.is_some() {
//!         return Ok(());
//!     }
//!     let payment: Payment = event.json()?;
//!     let threshold: u64 = config::get_parsed("vip_threshold")?.unwrap_or(100_000);
//!
//!     let key = format!("tally/{}", payment.data.customer);
//!     let total = kv::get_json::<u64>(&key)?.unwrap_or(0) + payment.data.amount;
//!     kv::set_json(&key, &total)?;
//!     kv::set(&seen, b"1")?;
//!
//!     if total >= threshold {
//!         log::info(format!("customer {} crossed vip threshold", payment.data.customer));
//!     }
//!     Ok(())
//! }
//!
//! agenthook_sdk::plugin!(handle);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component to deploy as `plugins.d/NAME.wasm`
//! beside its manifest `plugins.d/NAME.toml`, which must grant `kv = true` for the calls
//! above. The complete version of this handler is the `tally` example in `plugins/tally`.
//!
//! # Errors and retries
//!
//! [`HandlerError::retry`] asks the host to try the delivery again later (with backoff,
//! up to the manifest's `retry.max_attempts`); [`HandlerError::permanent`] dead-letters it
//! at once. Tool calls return [`ToolError`], which converts with `?`: a denied or invalid
//! call is permanent, a limited or failed one is retried. A panic traps the instance,
//! which the host treats as a retryable failure.
//!
//! # Testing a handler without a host
//!
//! With the `testing` feature (as a dev-dependency), [`testing`] runs the same handler
//! under `cargo test` on the machine's own target: in-memory kv, scripted HTTP
//! responses, recorded emails, emits and logs, config values and an event builder.

#![deny(missing_docs)]

mod abi;
pub mod config;
pub mod email;
mod error;
mod event;
pub mod events;
pub mod http;
pub mod kv;
pub mod llm;
pub mod log;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{HandlerError, ToolError};
pub use event::Event;

/// The generated WIT bindings. Not part of the public API: use [`plugin!`] and the tool
/// modules instead. Public only because [`plugin!`] expands in the plugin's crate.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../wit",
        // The export macro expands in the plugin author's crate, which never names
        // wit-bindgen: `plugin!` always passes `with_types_in $crate::bindings`.
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::agenthook_sdk::bindings",
    });
}

/// The glue [`plugin!`] expands to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    use crate::bindings::agenthook::plugin::types as wit;
    use crate::{Event, HandlerError};

    /// Run the author's handler on one event delivered through the ABI.
    pub fn run(
        event: wit::Event,
        handler: impl FnOnce(Event) -> Result<(), HandlerError>,
    ) -> Result<(), wit::HandlerError> {
        // A panic traps the instance; send its message where the host records this
        // attempt's logs, since the plugin's stderr goes nowhere by default.
        std::panic::set_hook(Box::new(|info| crate::log::error(format!("plugin {info}"))));
        handler(Event::from(event)).map_err(wit::HandlerError::from)
    }
}

/// Export a handler function as this component's `handle`.
///
/// The function takes an [`Event`] and returns `Result<(), HandlerError>`. Use the macro
/// exactly once per plugin crate, at module level:
///
/// ```no_run
/// fn handle(event: agenthook_sdk::Event) -> Result<(), agenthook_sdk::HandlerError> {
///     agenthook_sdk::log::info(format!("got {}", event.event_type));
///     Ok(())
/// }
///
/// agenthook_sdk::plugin!(handle);
/// ```
#[macro_export]
macro_rules! plugin {
    ($handler:expr $(,)?) => {
        const _: () = {
            struct AgenthookPlugin;

            impl $crate::bindings::Guest for AgenthookPlugin {
                fn handle(
                    event: $crate::bindings::Event,
                ) -> ::core::result::Result<(), $crate::bindings::HandlerError> {
                    $crate::__private::run(event, $handler)
                }
            }

    $crate::bindings::export!(AgenthookPlugin with_types_in $crate::bindings);
        };
    };
}
