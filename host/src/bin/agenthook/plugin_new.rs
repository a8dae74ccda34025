//! `agenthook plugin new NAME [--lang rust|python]`: scaffold a plugin project that
//! builds (`agenthook plugin build NAME`) and deploys (`agenthook plugin deploy NAME
//! --wasm NAME/dist/NAME.wasm --manifest NAME/NAME.toml`) as is: a manifest, a handler
//! that counts events per type in kv and logs, and a unit test (Rust).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::plugin_build::{COMPONENTIZE_PY, Lang};

/// The SDK crate of the tree this binary was built from, the default `--sdk`.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

pub fn create(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    agenthook::config::validate_name(name)
        .map_err(|e| anyhow::anyhow!("`{name}` cannot name a plugin: {e}"))?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or directory",
            dir.display()
        );
    }
    let files: Vec<(PathBuf, String)> = match lang {
        Lang::Rust => {
            let sdk = sdk.unwrap_or_else(|| PathBuf::from(BUILT_SDK));
            let sdk = sdk.canonicalize().with_context(|| {
                format!(
                    "the agenthook-sdk crate is not at {}: pass --sdk PATH (the sdk/ directory of the agenthook repository)",
                    sdk.display()
                )
            })?;
            vec![
                ("Cargo.toml".into(), rust_cargo_toml(name, &sdk)),
                ("src/lib.rs".into(), RUST_LIB.replace("{name}", name)),
                (format!("{name}.toml").into(), manifest(name, 32)),
                (".gitignore".into(), "/target\n/dist\n".into()),
            ]
        }
        Lang::Python => vec![
            ("app.py".into(), PYTHON_APP.replace("{name}", name)),
            (format!("{name}.toml").into(), manifest(name, 128)),
            (".gitignore".into(), "/dist\n__pycache__/\n".into()),
        ],
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// What to tell the author after `new`.
pub fn next_steps(name: &str, lang: Lang) -> String {
    let test = match lang {
        Lang::Rust => {
            format!("  (cd {name} && cargo test)              # unit tests, no wasm needed\n")
        }
        Lang::Python => format!("  python3 -m pip install {COMPONENTIZE_PY}   # once\n"),
    };
    format!(
        "created {name}/\n\nnext:\n{test}  agenthook plugin build {name}\n  agenthook plugin deploy {name} --wasm {name}/dist/{name}.wasm --manifest {name}/{name}.toml\n"
    )
}

fn manifest(name: &str, memory_mb: u32) -> String {
    format!(
        r#"# The manifest of `{name}`: deploy it beside the component as plugins.d/{name}.toml, or
# with `agenthook plugin deploy {name} --wasm dist/{name}.wasm --manifest {name}.toml`.

[[subscribe]]
source = "demo"          # the source whose events it handles (POST /hooks/demo)
# types = ["payment.*"]  # globs on the event type; omitted = every type

[limits]
memory_mb = {memory_mb}
timeout_ms = 5000
max_concurrency = 4

[retry]
max_attempts = 5
initial_backoff_ms = 1000
max_backoff_ms = 600000

[grants]
kv = true
# http = ["https://api.example.com"]
# email = ["ops@example.com"]
# emit = ["{name}.*"]

[config]
greeting = "hello"
"#
    )
}

fn rust_cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
agenthook-sdk = {{ path = "{sdk}" }}

[dev-dependencies]
# `cargo test` runs the handler on this machine against an in-memory host.
agenthook-sdk = {{ path = "{sdk}", features = ["testing"] }}

[profile.release]
opt-level = "s"
strip = true

# A project of its own, even when created inside another Cargo workspace.
[workspace]
"#,
        sdk = sdk.display()
    )
}

const RUST_LIB: &str = r#"//! `{name}`: counts the events it receives per type in kv and logs each one.

use agenthook_sdk::{Event, HandlerError, config, kv, log};

fn handle(event: Event) -> Result<(), HandlerError> {
    let greeting = config::get("greeting").unwrap_or_else(|| "hello".into());
    // Atomic: concurrent deliveries never lose a count.
    let count = kv::increment(&format!("count/{}", event.event_type), 1)?;
    log::info(format!(
        "{greeting}: {} event {} (#{count} of its type)",
        event.event_type, event.event_id
    ));
    Ok(())
}

agenthook_sdk::plugin!(handle);

#[cfg(test)]
mod tests {
    use agenthook_sdk::testing::{self, TestHost};

    use super::*;

    #[test]
    fn counts_events_per_type() {
        let host = TestHost::new().config("greeting", "hi");
        handle(testing::event("order.created").build()).unwrap();
        handle(testing::event("order.created").build()).unwrap();
        assert_eq!(host.kv("count/order.created").as_deref(), Some(&b"2"[..]));
        assert!(host.logged("hi: order.created event evt_test (#2 of its type)"));
    }
}
"#;

const PYTHON_APP: &str = r#""""`{name}`: counts the events it receives per type in kv and logs each one."""

import agenthook
from agenthook import config, kv, log


@agenthook.handler
def handle(event: agenthook.Event) -> None:
    greeting = config.get("greeting", "hello")
    # Atomic: concurrent deliveries never lose a count.
    count = kv.increment(f"count/{event.event_type}", 1)
    log.info(f"{greeting}: {event.event_type} event {event.event_id} (#{count} of its type)")
"#;
