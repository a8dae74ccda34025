//! `[plugins]`: which of the host's secrets plugin manifests may name. A manifest's
//! `env:VAR` and `file:PATH` values resolve only against these allow-lists, so the right
//! to deploy a plugin (admin API or `plugins_dir`) is not the right to read every
//! environment variable and file of the host. Nothing is allowed by default; literal
//! values need no permission. The operator's own secrets (`[sources]`, `[email]`,
//! `server.admin_token`) are not governed here.

use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use super::{ConfigError, Secret};

/// `[plugins]`, validated. The default allows no `env:` and no `file:` reference.
#[derive(Debug, Clone, Default)]
pub struct PluginsConfig {
    /// `allow_env = ["CRM_*"]`: globs on the names of the environment variables a
    /// manifest may read, each with the pattern as written (for messages).
    pub allow_env: Vec<(String, GlobMatcher)>,
    /// `allow_files_under = ["/etc/agenthook/secrets"]`: absolute directories whose
    /// regular files a manifest may read, as written (lexically normalised). They are
    /// canonicalised at each check, so a directory that is itself a symlink keeps
    /// following its target.
    pub allow_files_under: Vec<PathBuf>,
}

impl PluginsConfig {
    /// Resolve a manifest value: `env:VAR` or `file:PATH` if this policy allows it,
    /// anything else as the literal it is. `field` names the manifest setting; a refusal
    /// also names the reference and the host config key that would allow it.
    pub fn resolve(&self, spec: &str, field: &str) -> Result<Secret, ConfigError> {
        if let Some(var) = spec.strip_prefix("env:") {
            self.check_env(var)
                .map_err(|m| ConfigError::invalid(field, format!("`{spec}` is refused: {m}")))?;
            Secret::from_env(var, field)
        } else if let Some(path) = spec.strip_prefix("file:") {
            let real = self
                .check_file(path)
                .map_err(|m| ConfigError::invalid(field, format!("`{spec}` is refused: {m}")))?;
            Secret::from_file(&real, field)
        } else {
            Ok(Secret::new(spec))
        }
    }

    /// Whether a manifest may read the environment variable `var`.
    fn check_env(&self, var: &str) -> Result<(), String> {
        if self.allow_env.iter().any(|(_, g)| g.is_match(var)) {
            return Ok(());
        }
        let patterns: Vec<&str> = self.allow_env.iter().map(|(p, _)| p.as_str()).collect();
        Err(format!(
            "a plugin manifest may read only the environment variables matched by `plugins.allow_env` in the host config, {}",
            allows(&patterns)
        ))
    }

    /// The canonical path of `path` if it is a regular file under an allowed directory.
    /// A path outside every allowed directory, even before symlinks are resolved, is
    /// refused without touching the filesystem, so a refusal tells nothing about
    /// files elsewhere on the host.
    fn check_file(&self, path: &str) -> Result<PathBuf, String> {
        let dirs: Vec<String> = self
            .allow_files_under
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let outside = |p: &Path, how: &str| {
            format!(
                "{how}{}, which is not under a directory in `plugins.allow_files_under` in the host config, {}",
                p.display(),
                allows(&dirs)
            )
        };
        if self.allow_files_under.is_empty() {
            return Err(format!(
                "a plugin manifest may read only regular files under the directories in `plugins.allow_files_under` in the host config, {}",
                allows(&dirs)
            ));
        }
        let lexical = std::path::absolute(path)
            .map(|p| normalize(&p))
            .map_err(|e| format!("not a usable path: {e}"))?;
        // Each allowed directory as written and as it resolves now.
        let roots: Vec<(&PathBuf, Option<PathBuf>)> = self
            .allow_files_under
            .iter()
            .map(|d| (d, std::fs::canonicalize(d).ok()))
            .collect();
        let lexically_inside = roots.iter().any(|(written, real)| {
            lexical.starts_with(written) || real.as_ref().is_some_and(|r| lexical.starts_with(r))
        });
        if !lexically_inside {
            return Err(outside(&lexical, "the path is "));
        }
        let real = std::fs::canonicalize(&lexical)
            .map_err(|e| format!("cannot read secret file {}: {e}", lexical.display()))?;
        let inside = roots
            .iter()
            .any(|(_, r)| r.as_ref().is_some_and(|r| real.starts_with(r)));
        if !inside {
            return Err(outside(&real, "it resolves to "));
        }
        let meta = std::fs::metadata(&real)
            .map_err(|e| format!("cannot read secret file {}: {e}", real.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "{} is not a regular file (`plugins.allow_files_under` admits regular files only)",
                real.display()
            ));
        }
        Ok(real)
    }
}

/// `which allows none` or `which allows ["a", "b"]`, closing a refusal.
fn allows(entries: &[impl AsRef<str>]) -> String {
    if entries.is_empty() {
        "which allows none".to_string()
    } else {
        let quoted: Vec<String> = entries
            .iter()
            .map(|e| format!("\"{}\"", e.as_ref()))
            .collect();
        format!("which allows [{}]", quoted.join(", "))
    }
}

/// `path` with `.` and `..` resolved by name alone (no symlinks followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The `[plugins]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugins {
    #[serde(default)]
    allow_env: Vec<String>,
    #[serde(default)]
    allow_files_under: Vec<String>,
}

impl RawPlugins {
    pub(super) fn resolve(&self) -> Result<PluginsConfig, ConfigError> {
        let mut allow_env = Vec::with_capacity(self.allow_env.len());
        for (i, pattern) in self.allow_env.iter().enumerate() {
            let field = format!("plugins.allow_env[{i}]");
            if pattern.is_empty() {
                return Err(ConfigError::invalid(
                    field,
                    "an empty pattern matches no variable",
                ));
            }
            let glob = Glob::new(pattern)
                .map_err(|e| ConfigError::invalid(&field, format!("bad glob `{pattern}`: {e}")))?;
            allow_env.push((pattern.clone(), glob.compile_matcher()));
        }
        let mut allow_files_under = Vec::with_capacity(self.allow_files_under.len());
        for (i, dir) in self.allow_files_under.iter().enumerate() {
            let field = format!("plugins.allow_files_under[{i}]");
            let path = Path::new(dir);
            if !path.is_absolute() {
                return Err(ConfigError::invalid(
                    field,
                    format!("`{dir}` must be an absolute path"),
                ));
            }
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(ConfigError::invalid(
                        field,
                        format!("`{dir}` is not a directory"),
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::invalid(
                        field,
                        format!("cannot use `{dir}`: {e}"),
                    ));
                }
            }
            allow_files_under.push(normalize(path));
        }
        Ok(PluginsConfig {
            allow_env,
            allow_files_under,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    fn policy(text: &str) -> PluginsConfig {
        parse(text).unwrap().plugins
    }

    fn refusal(p: &PluginsConfig, spec: &str) -> String {
        p.resolve(spec, "config.k").unwrap_err().to_string()
    }

    #[test]
    fn nothing_is_allowed_by_default_and_literals_pass() {
        let p = policy("");
        let e = refusal(&p, "env:PATH");
        assert!(
            e.contains("config.k")
                && e.contains("`env:PATH` is refused")
                && e.contains("plugins.allow_env")
                && e.contains("allows none"),
            "{e}"
        );
        let e = refusal(&p, "file:/etc/hostname");
        assert!(
            e.contains("`file:/etc/hostname` is refused")
                && e.contains("plugins.allow_files_under"),
            "{e}"
        );
        assert_eq!(p.resolve("plain", "config.k").unwrap().expose(), "plain");
        assert_eq!(p.resolve("", "config.k").unwrap().expose(), "");
    }

    #[test]
    fn env_globs_match_variable_names() {
        let p = policy("[plugins]\nallow_env = [\"CRM_*\", \"EXACT_ONE\"]\n");
        let allowed = |v: &str| p.check_env(v).is_ok();
        assert!(allowed("CRM_API_KEY"));
        assert!(allowed("CRM_"));
        assert!(allowed("EXACT_ONE"));
        assert!(!allowed("crm_api_key"), "names are case-sensitive");
        assert!(!allowed("XCRM_API_KEY"));
        assert!(!allowed("EXACT_ONE_MORE"));
        assert!(!allowed("HOME"));
        let e = refusal(&p, "env:HOME");
        assert!(e.contains(r#"which allows ["CRM_*", "EXACT_ONE"]"#), "{e}");
        // Allowed but unset: the usual message, naming the variable.
        let e = refusal(&p, "env:CRM_AGENTHOOK_TEST_UNSET_7");
        assert!(e.contains("CRM_AGENTHOOK_TEST_UNSET_7 is not set"), "{e}");
    }

    #[test]
    fn bad_config_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for (text, field) in [
            (
                "[plugins]\nallow_env = [\"CRM_[\"]\n",
                "plugins.allow_env[0]",
            ),
            (
                "[plugins]\nallow_env = [\"A\", \"\"]\n",
                "plugins.allow_env[1]",
            ),
            (
                "[plugins]\nallow_files_under = [\"relative/dir\"]\n",
                "plugins.allow_files_under[0]",
            ),
            (
                "[plugins]\nallow_files_under = [\"/nonexistent/agenthook-secrets\"]\n",
                "plugins.allow_files_under[0]",
            ),
            (
                &format!("[plugins]\nallow_files_under = [\"{}\"]\n", file.display()),
                "plugins.allow_files_under[0]",
            ),
            ("[plugins]\nallow_everything = true\n", "allow_everything"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_resolve_only_inside_allowed_directories() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let secrets = root.join("secrets");
        std::fs::create_dir_all(secrets.join("nested")).unwrap();
        std::fs::write(secrets.join("nested/key"), "s3cret\n").unwrap();
        std::fs::write(root.join("outside"), "host-only\n").unwrap();
        std::os::unix::fs::symlink(root.join("outside"), secrets.join("link-out")).unwrap();
        std::os::unix::fs::symlink(secrets.join("nested/key"), secrets.join("link-in")).unwrap();
        std::fs::create_dir(root.join("secrets-evil")).unwrap();
        std::fs::write(root.join("secrets-evil/key"), "x").unwrap();
        let p = policy(&format!(
            "[plugins]\nallow_files_under = [\"{}/\"]\n",
            secrets.display()
        ));
        let read = |spec: &str| p.resolve(spec, "config.k").map(|s| s.expose().to_string());

        assert_eq!(
            read(&format!("file:{}/nested/key", secrets.display())).unwrap(),
            "s3cret"
        );
        assert_eq!(
            read(&format!("file:{}/link-in", secrets.display())).unwrap(),
            "s3cret"
        );
        assert_eq!(
            read(&format!(
                "file:{}/nested/../nested/./key",
                secrets.display()
            ))
            .unwrap(),
            "s3cret"
        );

        let e = read(&format!("file:{}/../outside", secrets.display())).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains(&format!("the path is {}", root.join("outside").display()))
                && e.contains("plugins.allow_files_under"),
            "{e}"
        );
        let e = read(&format!("file:{}/link-out", secrets.display()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "it resolves to {}",
                root.join("outside").display()
            )),
            "{e}"
        );
        let e = read(&format!("file:{}/secrets-evil/key", root.display()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is refused"),
            "a sibling sharing the prefix: {e}"
        );
        let e = read(&format!("file:{}/nested", secrets.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read(&format!("file:{}/missing", secrets.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read secret file"), "{e}");
        // Outside the allowed directories, a missing file is refused like any other:
        // the refusal does not tell whether it exists.
        let e = read("file:/nonexistent/agenthook/key")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is refused") && !e.contains("No such file"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_allowed_directory_that_is_a_symlink_follows_its_target() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("key"), "v").unwrap();
        let alias = root.path().join("alias");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        let p = policy(&format!(
            "[plugins]\nallow_files_under = [\"{}\"]\n",
            alias.display()
        ));
        let spec = format!("file:{}/key", alias.display());
        assert_eq!(p.resolve(&spec, "config.k").unwrap().expose(), "v");
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let p = policy(&format!(
            "[plugins]\nallow_files_under = [\"{}\", \"/dev\"]\n",
            dir.path().display()
        ));
        for spec in [format!("file:{}", fifo.display()), "file:/dev/zero".into()] {
            let e = refusal(&p, &spec);
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
}
