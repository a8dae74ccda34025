//! Builds the two plugin workspaces — the examples in `plugins/` and the test fixtures in
//! `tests/plugins/` — to wasm32-wasip2 components once per test build, into one target
//! dir, and writes `$OUT_DIR/plugins.rs` with the path of every plugin's `.wasm` and
//! manifest, so the tests load real components built from the current sources.
//!
//! The nested cargo gets a clean environment: the variables cargo sets for this build
//! script (flags, target, jobserver, clippy's wrapper) describe the host build and would
//! break or slow down a wasm build of another workspace.

use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const WASM_TARGET: &str = "wasm32-wasip2";

/// The plugin workspaces, relative to the repository: the examples, then the fixtures.
const WORKSPACES: &[&str] = &["plugins", "tests/plugins"];

/// Variables the outer build sets that must not reach the nested one.
const LEAKING_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// Prefixes of per-package and per-target variables the outer build sets.
const LEAKING_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_TARGET_",
    "DEP_",
];

/// One member of a plugin workspace.
struct Plugin {
    /// The package name, which is also the plugin's name.
    name: String,
    wasm: PathBuf,
    manifest: PathBuf,
}

fn main() {
    let tests_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let repo = tests_dir
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf();
    // One target dir for both workspaces, so what they share is built once.
    let target_dir = repo.join("target").join("plugins");
    let release_dir = target_dir.join(WASM_TARGET).join("release");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    emit_rerun_if_changed(&repo);
    check_wasm_target_installed();
    let mut plugins = Vec::new();
    for workspace in WORKSPACES {
        let workspace_dir = repo.join(workspace);
        let members = workspace_members(&workspace_dir);
        emit_rerun_if_changed_members(&workspace_dir, &members);
        build_plugins(&workspace_dir, &target_dir);
        plugins.extend(
            members
                .iter()
                .map(|member| plugin(&workspace_dir, member, &release_dir)),
        );
    }
    // Both workspaces build into one target dir, where a second plugin of the same name
    // would overwrite the first's component.
    let mut names = std::collections::HashSet::new();
    for p in &plugins {
        assert!(
            names.insert(&p.name),
            "two plugins are named `{}`: names must be unique across {WORKSPACES:?}",
            p.name
        );
    }
    fs::write(out_dir.join("plugins.rs"), plugins_rs(&plugins)).expect("write $OUT_DIR/plugins.rs");
}

/// The `workspace.members` of a plugin workspace's Cargo.toml (plain directory names,
/// no globs).
fn workspace_members(workspace_dir: &Path) -> Vec<String> {
    let cargo_toml = workspace_dir.join("Cargo.toml");
    let manifest = read_toml(&cargo_toml);
    let members = manifest
        .get("workspace")
        .and_then(|ws| ws.get("members"))
        .and_then(|m| m.as_array())
        .unwrap_or_else(|| {
            panic!(
                "{} has no [workspace] with a `members` list",
                cargo_toml.display()
            )
        });
    members
        .iter()
        .map(|m| {
            let m = m.as_str().expect("plugin workspace members are strings");
            assert!(
                !m.contains(['*', '?', '[']),
                "{}: list members by name, not by glob (`{m}`)",
                cargo_toml.display()
            );
            m.to_owned()
        })
        .collect()
}

/// Rebuild when the SDK or the WIT changes.
fn emit_rerun_if_changed(repo: &Path) {
    for path in [repo.join("sdk"), repo.join("wit")] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Rebuild when a workspace or one of its plugins changes; never look inside a target dir.
fn emit_rerun_if_changed_members(workspace_dir: &Path, members: &[String]) {
    let mut watched = vec![
        workspace_dir.join("Cargo.toml"),
        workspace_dir.join("Cargo.lock"),
        workspace_dir.join(".cargo"),
    ];
    watched.extend(members.iter().map(|m| workspace_dir.join(m)));
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Fail early, with the fix, when the toolchain cannot build for wasm32-wasip2.
fn check_wasm_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = libdir.is_some_and(|dir| {
        fs::read_dir(dir)
            .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| is_rlib(&e.path()))))
    });
    if !installed {
        panic!(
            "the {WASM_TARGET} target is not installed for this toolchain, so the test plugins \
             cannot be built.\n\nInstall it with:\n\n    rustup target add {WASM_TARGET}\n"
        );
    }
}

fn is_rlib(path: &Path) -> bool {
    path.extension() == Some(OsStr::new("rlib"))
}

fn build_plugins(workspace_dir: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_dir)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(workspace_dir.join("Cargo.toml"))
        .args(["--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        // Anything on stdout would be read as build-script directives.
        .stdout(Stdio::null());
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if LEAKING_VARS.contains(&key) || LEAKING_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }

    let output = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|err| panic!("could not run cargo to build the plugins: {err}"));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building the plugin workspace {} failed ({}): cargo build --release --manifest-path {} \
             --target {WASM_TARGET} --target-dir {}",
            workspace_dir.display(),
            output.status,
            workspace_dir.join("Cargo.toml").display(),
            target_dir.display()
        );
    }
}

/// Where a member's component and manifest are; both must exist.
fn plugin(workspace_dir: &Path, member: &str, release_dir: &Path) -> Plugin {
    let member_dir = workspace_dir.join(member);
    let crate_manifest = read_toml(&member_dir.join("Cargo.toml"));
    let name = crate_manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or_else(|| panic!("{}/Cargo.toml has no package.name", member_dir.display()))
        .to_owned();
    let lib_name = crate_manifest
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| name.replace('-', "_"), str::to_owned);

    let wasm = release_dir.join(format!("{lib_name}.wasm"));
    let manifest = member_dir.join(format!("{name}.toml"));
    assert!(
        wasm.is_file(),
        "plugin `{name}` built without producing {} (is it a cdylib?)",
        wasm.display()
    );
    assert!(
        manifest.is_file(),
        "plugin `{name}` has no manifest: expected {}",
        manifest.display()
    );
    Plugin {
        name,
        wasm,
        manifest,
    }
}

fn plugins_rs(plugins: &[Plugin]) -> String {
    let mut src = String::from(
        "// @generated by tests/build.rs: the plugins of plugins/ and tests/plugins/, built for wasm32-wasip2.\n",
    );
    let mut all = String::new();
    for p in plugins {
        let konst = p.name.to_uppercase().replace('-', "_");
        let name = &p.name;
        writeln!(
            src,
            "/// The `{name}` plugin's component.\npub const {konst}: &str = {:?};",
            path_str(&p.wasm)
        )
        .unwrap();
        writeln!(
            src,
            "/// The `{name}` plugin's sample manifest.\npub const {konst}_MANIFEST: &str = {:?};",
            path_str(&p.manifest)
        )
        .unwrap();
        write!(all, "({name:?}, {konst}), ").unwrap();
    }
    writeln!(
        src,
        "/// Every plugin as (name, component path).\npub const ALL: &[(&str, &str)] = &[{}];",
        all.trim_end_matches(", ")
    )
    .unwrap();
    src
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("plugin path is not UTF-8: {}", path.display()))
}

fn read_toml(path: &Path) -> toml::Table {
    let text =
        fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    text.parse()
        .unwrap_or_else(|err| panic!("parse {}: {err}", path.display()))
}
