//! The binary's contract at the edges: a bad config or plugin refuses to start with a
//! clear message and exit status 64, before any port is bound. (This test also makes
//! `cargo test` build the real binary that the end-to-end tests in `tests/` start.)

use std::process::Command;

fn agenthook() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agenthook"))
}

#[test]
fn help_names_the_commands() {
    let out = agenthook().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "events", "dlq", "plugin"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn invalid_config_exits_64_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nlisten = \"nope\"\n", "server.listen"),
        ("[server]\nunknown_key = 1\n", "unknown_key"),
        (
            "[sources.s]\nscheme = \"standard-webhooks\"\nsecrets = [\"env:AGENTHOOK_CLI_TEST_UNSET\"]\n",
            "AGENTHOOK_CLI_TEST_UNSET",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let out = agenthook()
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
    let out = agenthook()
        .args(["serve", "--config", "/nonexistent/agenthook.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agenthook.toml"));
}

#[test]
fn invalid_plugin_refuses_to_start_naming_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(
        plugins.join("broken.toml"),
        "[[subscribe]]\nsource = \"demo\"\n",
    )
    .unwrap();
    std::fs::write(plugins.join("broken.wasm"), b"definitely not wasm").unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\nadmin_token = \"t\"\n",
        dir.path().join("data").display(),
        plugins.display()
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = agenthook()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin `broken`") && err.contains("not a valid WebAssembly component"),
        "{err}"
    );

    // A manifest whose grants this host does not know is refused too, naming the field.
    std::fs::write(plugins.join("broken.toml"), "[grants]\nfilesystem = true\n").unwrap();
    let out = agenthook()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("filesystem"));
}

#[test]
fn unusable_secret_or_schema_exits_64_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins.d"));
    let schema = dir.path().join("bad.schema.json");
    std::fs::write(&schema, r#"{"type": 12}"#).unwrap();
    let server = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\nadmin_token = \"t\"\n",
        data.display(),
        plugins.display()
    );
    let cases = [
        (
            "scheme = \"standard-webhooks\"\nsecrets = [\"whsec_!!!\"]\n".to_string(),
            "sources.s.secrets[0]",
        ),
        (
            format!(
                "scheme = \"stripe\"\nsecrets = [\"s\"]\nschema = \"file:{}\"\n",
                schema.display()
            ),
            "sources.s.schema",
        ),
    ];
    for (source, needle) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{server}[sources.s]\n{source}")).unwrap();
        let out = agenthook()
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{source}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{source}: {err}");
        assert!(
            !data.exists() && !plugins.exists(),
            "nothing is created before the sources are known to be usable"
        );
    }
}
