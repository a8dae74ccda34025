//! `[server]`: the two listen addresses, the data and plugin directories, the body limit
//! and the admin token — with the defaults of DESIGN.md. Only validated here; nothing in
//! this file binds a port or creates a directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// The defaults of DESIGN.md.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "agenthook-data";
pub const DEFAULT_PLUGINS_DIR: &str = "plugins.d";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_ADMIN_TOKEN: &str = "env:AGENTHOOK_ADMIN_TOKEN";
/// The largest body an operator may allow: webhooks are small, and the body is held in
/// memory while it is verified.
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub max_body_bytes: usize,
}

/// The `[server]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    max_body_bytes: Option<u64>,
    admin_token: Option<String>,
}

impl RawServer {
    pub(super) fn resolve(&self) -> Result<ServerConfig, ConfigError> {
        let listen = parse_addr(
            self.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
            "server.listen",
        )?;
        let admin_listen = parse_addr(
            self.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
            "server.admin_listen",
        )?;
        if listen.port() != 0 && listen == admin_listen {
            return Err(ConfigError::invalid(
                "server.admin_listen",
                format!(
                    "must differ from server.listen ({listen}): the admin API never shares the ingress port"
                ),
            ));
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                format!("must be between 1 and {MAX_BODY_BYTES_LIMIT}, got {max_body_bytes}"),
            ));
        }
        Ok(ServerConfig {
            listen,
            admin_listen,
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            plugins_dir: self
                .plugins_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS_DIR)),
            max_body_bytes: max_body_bytes as usize,
        })
    }

    /// `server.admin_token`. An explicitly configured token must resolve; the default
    /// one may be absent, and the host then generates a token and keeps it in the data
    /// dir.
    pub(super) fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        Ok(match &self.admin_token {
            Some(spec) => Some(Secret::resolve(spec, "server.admin_token")?),
            None => Secret::resolve(DEFAULT_ADMIN_TOKEN, "server.admin_token").ok(),
        })
    }
}

fn parse_addr(s: &str, field: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::invalid(field, format!("`{s}` is not an IP:port address")))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn admin_must_not_share_ingress_port() {
        let e = parse("[server]\nlisten = \"127.0.0.1:8000\"\nadmin_listen = \"127.0.0.1:8000\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("server.admin_listen"), "{e}");
    }

    #[test]
    fn body_limit_is_bounded() {
        let e = parse("[server]\nmax_body_bytes = 0\n").unwrap_err();
        assert!(e.to_string().contains("max_body_bytes"), "{e}");
    }
}
