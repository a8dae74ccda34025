//! The generated bindings of the `agenthook:plugin` WIT package (`wit/`): the one place
//! `bindgen!` runs. `runtime` links and calls the `handler` world through them; `tools`
//! implements its host interfaces. Neither owns them, so neither imports the other.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    imports: { default: async },
    exports: { default: async },
});

pub use self::agenthook::plugin::types::{Event as WitEvent, ToolError};
