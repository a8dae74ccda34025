//! Secret values: given literally, as `env:VAR` or as `file:PATH`, and resolved while the
//! config loads. This is the one place the host reads the environment or a secret file
//! on the operator's behalf; a resolved [`Secret`] never prints its value.

use std::path::Path;

use super::ConfigError;

/// A resolved secret value. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Resolve `env:VAR`, `file:PATH` or a literal value. `field` names the setting in
    /// the error message. For the operator's own config; a plugin manifest's values go
    /// through `PluginsConfig::resolve`, which allows only what `[plugins]` lists.
    pub fn resolve(spec: &str, field: &str) -> Result<Secret, ConfigError> {
        if let Some(var) = spec.strip_prefix("env:") {
            Secret::from_env(var, field)
        } else if let Some(path) = spec.strip_prefix("file:") {
            Secret::from_file(Path::new(path), field)
        } else if spec.is_empty() {
            Err(ConfigError::invalid(field, "secret is empty"))
        } else {
            Ok(Secret(spec.to_string()))
        }
    }

    /// The value of an environment variable, which must be set and not empty.
    pub(super) fn from_env(var: &str, field: &str) -> Result<Secret, ConfigError> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            Ok(_) => Err(ConfigError::invalid(
                field,
                format!("environment variable {var} is empty"),
            )),
            Err(_) => Err(ConfigError::invalid(
                field,
                format!("environment variable {var} is not set"),
            )),
        }
    }

    /// A file's content without its trailing line break; it must not be empty.
    pub(super) fn from_file(path: &Path, field: &str) -> Result<Secret, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(field, format!("cannot read secret file {shown}: {e}"))
        })?;
        let value = text.trim_end_matches(['\r', '\n']).to_string();
        if value.is_empty() {
            return Err(ConfigError::invalid(
                field,
                format!("secret file {shown} is empty"),
            ));
        }
        Ok(Secret(value))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn secrets_resolve_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "whsec_ZmlsZS1zZWNyZXQ=\n").unwrap();
        let text = format!(
            "[sources.a]\nscheme = \"standard-webhooks\"\nsecrets = [\"file:{}\", \"env:AGENTHOOK_TEST_UNSET_VAR_9\"]\n",
            file.display()
        );
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains("sources.a.secrets[1]"), "{e}");
        assert!(e.to_string().contains("AGENTHOOK_TEST_UNSET_VAR_9"), "{e}");
        let text = format!(
            "[sources.a]\nscheme = \"standard-webhooks\"\nsecrets = [\"file:{}\"]\n",
            file.display()
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.sources["a"].secrets[0].expose(), "whsec_ZmlsZS1zZWNyZXQ=");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
