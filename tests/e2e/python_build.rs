//! Python plugins for the tests: built with the real `agenthook plugin build` (which
//! runs componentize-py), once per content. A component is cached in
//! `target/python-plugins/NAME-HASH.wasm`, the hash covering the plugin's files, the
//! Python SDK, the WIT and the componentize-py version, so a CI run builds each Python
//! plugin at most once and a later run only what changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::harness::agenthook_bin;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// The component of the Python plugin in `dir` (relative to the repository), built if
/// the cache does not hold this content yet. Tests that ask for the same plugin at once
/// wait for one build.
pub fn python_plugin(dir: &str) -> String {
    static BUILDS: OnceLock<Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>> = OnceLock::new();
    let slot = BUILDS
        .get_or_init(Default::default)
        .lock()
        .expect("lock")
        .entry(dir.to_string())
        .or_default()
        .clone();
    let path = slot.get_or_init(|| build_cached(&repo().join(dir)));
    path.to_str().expect("utf-8 path").to_string()
}

/// The component of the Python project at `dir` (any path; its directory name names
/// the cache entry), built with `agenthook plugin build` unless cached.
pub fn build_cached(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("plugin dir name");
    let out = repo()
        .join("target/python-plugins")
        .join(format!("{name}-{}.wasm", &content_hash(dir)[..16]));
    if out.is_file() {
        return out;
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let output = Command::new(agenthook_bin())
        .args(["plugin", "build"])
        .arg(dir)
        .arg("--out")
        .arg(&tmp)
        .output()
        .expect("run agenthook plugin build");
    assert!(
        output.status.success(),
        "agenthook plugin build {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the built component into the cache");
    out
}

/// Hex SHA-256 over everything the component is built from.
fn content_hash(dir: &Path) -> String {
    let mut h = Sha256::new();
    let version = Command::new("componentize-py")
        .arg("--version")
        .output()
        .expect("componentize-py is installed (python3 -m pip install componentize-py==0.25.1)");
    h.update(&version.stdout);
    let root = repo();
    for (label, base) in [
        ("plugin", dir.to_path_buf()),
        ("sdk", root.join("sdk-python/agenthook")),
    ] {
        for file in py_files(&base) {
            h.update(label.as_bytes());
            h.update(
                file.strip_prefix(&base)
                    .expect("under base")
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update(std::fs::read(&file).expect("read source"));
        }
    }
    h.update(std::fs::read(root.join("wit/plugin.wit")).expect("read wit"));
    hex(&h.finalize())
}

/// The source files of a Python project, sorted (build output and caches skipped).
fn py_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(name, "dist" | "__pycache__") && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".py") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
