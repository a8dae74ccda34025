//! The generated bindings of the `agenthook:plugin` WIT package (`wit/`): the one place
//! `bindgen!` runs. `runtime` links and calls the `handler` world through them; `tools`
//! implements its host interfaces. Neither owns them, so neither imports the other.
//!
//! The current version (0.2.0, `wit/plugin.wit`) is the crate root's bindings; each
//! earlier version the host still loads has its own module (`v0_1`, from the frozen
//! `wit/compat/0.1.0`), since wasmtime links imports by semver and 0.1.x and 0.2.x are
//! incompatible names. The conversions between a version's types and the current ones
//! live here; `tools::compat` adapts the calls.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    imports: { default: async },
    exports: { default: async },
});

pub use self::agenthook::plugin::types::{Event as WitEvent, ToolError};

/// `agenthook:plugin@0.1.0`, frozen: components built against it keep loading.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/compat/0.1.0",
        world: "handler",
        imports: { default: async },
        exports: { default: async },
    });

    use self::agenthook::plugin::{email, http, log, types};
    use super::agenthook::plugin as current;

    /// Which version of the package a component imports, from its import names.
    pub const PACKAGE_PREFIX: &str = "agenthook:plugin/";

    impl From<current::types::Event> for types::Event {
        fn from(e: current::types::Event) -> Self {
            types::Event {
                id: e.id,
                event_id: e.event_id,
                source: e.source,
                event_type: e.event_type,
                received_at_ms: e.received_at_ms,
                attempt: e.attempt,
                idempotency_key: e.idempotency_key,
                headers: e.headers,
                body: e.body,
            }
        }
    }

    impl From<types::HandlerError> for current::types::HandlerError {
        fn from(e: types::HandlerError) -> Self {
            match e {
                types::HandlerError::Retry(r) => {
                    current::types::HandlerError::Retry(current::types::RetryRequest {
                        reason: r.reason,
                        delay_ms: r.delay_ms,
                    })
                }
                types::HandlerError::Permanent(m) => current::types::HandlerError::Permanent(m),
            }
        }
    }

    impl From<current::types::ToolError> for types::ToolError {
        fn from(e: current::types::ToolError) -> Self {
            match e {
                current::types::ToolError::Denied(m) => types::ToolError::Denied(m),
                current::types::ToolError::Invalid(m) => types::ToolError::Invalid(m),
                current::types::ToolError::Limited(m) => types::ToolError::Limited(m),
                current::types::ToolError::Failed(m) => types::ToolError::Failed(m),
            }
        }
    }

    impl From<log::Level> for current::log::Level {
        fn from(l: log::Level) -> Self {
            match l {
                log::Level::Trace => current::log::Level::Trace,
                log::Level::Debug => current::log::Level::Debug,
                log::Level::Info => current::log::Level::Info,
                log::Level::Warn => current::log::Level::Warn,
                log::Level::Error => current::log::Level::Error,
            }
        }
    }

    impl From<http::Request> for current::http::Request {
        fn from(r: http::Request) -> Self {
            current::http::Request {
                method: r.method,
                url: r.url,
                headers: r.headers,
                body: r.body,
                timeout_ms: r.timeout_ms,
            }
        }
    }

    impl From<current::http::Response> for http::Response {
        fn from(r: current::http::Response) -> Self {
            http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }
        }
    }

    impl From<email::Message> for current::email::Message {
        fn from(m: email::Message) -> Self {
            current::email::Message {
                to: m.to,
                cc: m.cc,
                subject: m.subject,
                text: m.text,
                html: m.html,
                reply_to: m.reply_to,
            }
        }
    }
}
