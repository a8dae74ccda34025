//! `agenthook plugin build [DIR]`: build a plugin project to a component.
//!
//! A Rust project (a `Cargo.toml`) is built with `cargo build --release --target
//! wasm32-wasip2`; a Python project (an `app.py`) with `componentize-py` against the
//! `agenthook:plugin` WIT and the Python SDK, both embedded in this binary so they match
//! the host that runs the component; a JavaScript project (a `package.json` and an
//! `app.js`) with `@bytecodealliance/componentize-js` from its own `node_modules`
//! against the same WIT. The component is written to `DIR/dist/NAME.wasm`
//! (or `--out`), and its path printed.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The WIT of the `agenthook:plugin` version this host runs, for componentize-py.
const WIT: &str = include_str!("../../../../wit/plugin.wit");

/// The Python SDK (`sdk-python/agenthook`), file by file.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../../sdk-python/agenthook/__init__.py"),
    ),
    (
        "_errors.py",
        include_str!("../../../../sdk-python/agenthook/_errors.py"),
    ),
    (
        "_event.py",
        include_str!("../../../../sdk-python/agenthook/_event.py"),
    ),
    (
        "_handler.py",
        include_str!("../../../../sdk-python/agenthook/_handler.py"),
    ),
    (
        "config.py",
        include_str!("../../../../sdk-python/agenthook/config.py"),
    ),
    (
        "email.py",
        include_str!("../../../../sdk-python/agenthook/email.py"),
    ),
    (
        "events.py",
        include_str!("../../../../sdk-python/agenthook/events.py"),
    ),
    (
        "http.py",
        include_str!("../../../../sdk-python/agenthook/http.py"),
    ),
    (
        "kv.py",
        include_str!("../../../../sdk-python/agenthook/kv.py"),
    ),
    (
        "llm.py",
        include_str!("../../../../sdk-python/agenthook/llm.py"),
    ),
    (
        "log.py",
        include_str!("../../../../sdk-python/agenthook/log.py"),
    ),
];

/// The module componentize-py builds: the world's export calls the SDK, which calls the
/// handler `app.py` registered with `@agenthook.handler`.
const PYTHON_MAIN: &str = "\
import wit_world
from agenthook._handler import run
import app  # noqa: F401 - registers the handler

class WitWorld(wit_world.WitWorld):
    def handle(self, event):
        return run(event)
";

/// The componentize-py release the Python SDK is written and tested against.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The language of a plugin project, from the files in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    JavaScript,
}

/// The script that runs componentize-js (from the project's `node_modules`): no WASI
/// features the host does not grant (clocks, random and stdio stay WASI's defaults).
const JS_BUILD: &str = "\
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';
const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize(await readFile(source, 'utf8'), {
  witPath: wit,
  worldName: 'handler',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
";

pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else if dir.join("package.json").is_file() && dir.join("app.js").is_file() {
        Ok(Lang::JavaScript)
    } else {
        bail!(
            "{} is not a plugin project: expected a Cargo.toml (Rust), an app.py (Python) or a \
             package.json with an app.js (JavaScript); \
             `agenthook plugin new NAME` creates one",
            dir.display()
        )
    }
}

/// Build the project in `dir`; returns the component's path.
pub fn build(dir: &Path, out: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project directory has no usable name")?
        .to_string();
    let out = match out {
        Some(out) => std::path::absolute(out)?,
        None => dir.join("dist").join(format!("{name}.wasm")),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match detect(&dir)? {
        Lang::Rust => build_rust(&dir, &out)?,
        Lang::Python => build_python(&dir, &out)?,
        Lang::JavaScript => build_js(&dir, &out)?,
    }
    Ok(out)
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let mut child = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo (is Rust installed? `rustup target add wasm32-wasip2`)")?;
    let mut components = Vec::new();
    let stdout = child.stdout.take().context("cargo's stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_cdylib = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if msg["reason"] == "compiler-artifact" && is_cdylib {
            for f in msg["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                    components.push(PathBuf::from(f));
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let [component] = components.as_slice() else {
        bail!(
            "expected one cdylib component from {}, cargo built {}: build a single plugin crate",
            dir.display(),
            components.len()
        );
    };
    std::fs::copy(component, out)
        .with_context(|| format!("cannot copy {} to {}", component.display(), out.display()))?;
    Ok(())
}

fn build_python(dir: &Path, out: &Path) -> anyhow::Result<()> {
    // A scratch directory beside the output: the WIT, the SDK and the entry module.
    let work = tempfile_dir(out)?;
    let wit = work.join("wit");
    std::fs::create_dir_all(&wit)?;
    std::fs::write(wit.join("plugin.wit"), WIT)?;
    let sdk = work.join("agenthook");
    std::fs::create_dir_all(&sdk)?;
    for (file, text) in PYTHON_SDK {
        std::fs::write(sdk.join(file), text)?;
    }
    std::fs::write(work.join("agenthook_main.py"), PYTHON_MAIN)?;

    let tool =
        std::env::var_os("AGENTHOOK_COMPONENTIZE_PY").unwrap_or_else(|| "componentize-py".into());
    let result = Command::new(&tool)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "handler", "componentize", "agenthook_main", "-p"])
        .arg(&work)
        .arg("-p")
        .arg(dir)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&work);
    let status = match result {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "componentize-py is not installed (looked for `{}`): install it with \
             `python3 -m pip install {COMPONENTIZE_PY}`",
            tool.to_string_lossy()
        ),
        Err(e) => return Err(e).context("cannot run componentize-py"),
    };
    if !status.success() {
        bail!("componentize-py failed ({status}); its messages are above");
    }
    Ok(())
}

fn build_js(dir: &Path, out: &Path) -> anyhow::Result<()> {
    if !dir
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir()
    {
        bail!(
            "{}/node_modules has no @bytecodealliance/componentize-js: run `npm install` there first",
            dir.display()
        );
    }
    // The script sits in the project so that node resolves componentize-js from the
    // project's node_modules.
    let script = dir.join(".agenthook-build.mjs");
    let work = tempfile_dir(out)?;
    std::fs::write(work.join("plugin.wit"), WIT)?;
    std::fs::write(&script, JS_BUILD)?;
    let result = Command::new("node")
        .arg(&script)
        .arg(dir.join("app.js"))
        .arg(&work)
        .arg(out)
        .current_dir(dir)
        .status();
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_dir_all(&work);
    let status = result.context("cannot run node (is Node.js 18 or later installed?)")?;
    if !status.success() {
        bail!("componentize-js failed ({status}); its messages are above");
    }
    Ok(())
}

/// A fresh directory next to `out` for the build's scratch files.
fn tempfile_dir(out: &Path) -> anyhow::Result<PathBuf> {
    let parent = out.parent().unwrap_or(Path::new("."));
    let work = parent.join(format!(".agenthook-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    Ok(work)
}
