//! `[server]`: the two listen addresses, the data and plugin directories, the body limit,
//! the bounds on what senders may hold (connections, body deadline, buffered body bytes),
//! the plugin threads and the admin token — with the defaults of DESIGN.md. Only
//! validated here; nothing in this file binds a port or creates a directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Far above what one process can hold open (file descriptors run out first).
const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 10;
const BODY_TIMEOUT_LIMIT_SECS: u64 = 3600;
pub const DEFAULT_MAX_INFLIGHT_BODY_MB: u64 = 256;
/// 64 GiB: a budget beyond this is no budget.
const MAX_INFLIGHT_BODY_MB_LIMIT: u64 = 64 * 1024;
/// A thread per core is the default; more than this is a typo.
const PLUGIN_THREADS_LIMIT: usize = 1024;
const MIB: u64 = 1024 * 1024;

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub max_body_bytes: usize,
    /// Open connections per listener; beyond it, accepting waits for one to close.
    pub max_connections: usize,
    /// How long a client may take to send a request body, from its headers on.
    pub body_timeout: Duration,
    /// Request-body bytes buffered at once across all ingress connections; a request
    /// that cannot reserve its bytes is refused (503), so memory cannot grow past it.
    pub max_inflight_body_bytes: usize,
    /// Threads that run plugin code (0: one per core but one, at least one).
    pub plugin_threads: usize,
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
    max_connections: Option<usize>,
    body_timeout_secs: Option<u64>,
    max_inflight_body_mb: Option<u64>,
    plugin_threads: Option<usize>,
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
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 || max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError::invalid(
                "server.max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}, got {max_connections}"),
            ));
        }
        let body_timeout_secs = self.body_timeout_secs.unwrap_or(DEFAULT_BODY_TIMEOUT_SECS);
        if body_timeout_secs == 0 || body_timeout_secs > BODY_TIMEOUT_LIMIT_SECS {
            return Err(ConfigError::invalid(
                "server.body_timeout_secs",
                format!("must be between 1 and {BODY_TIMEOUT_LIMIT_SECS}, got {body_timeout_secs}"),
            ));
        }
        let inflight_mb = self
            .max_inflight_body_mb
            .unwrap_or(DEFAULT_MAX_INFLIGHT_BODY_MB);
        if inflight_mb == 0 || inflight_mb > MAX_INFLIGHT_BODY_MB_LIMIT {
            return Err(ConfigError::invalid(
                "server.max_inflight_body_mb",
                format!("must be between 1 and {MAX_INFLIGHT_BODY_MB_LIMIT}, got {inflight_mb}"),
            ));
        }
        if inflight_mb * MIB < max_body_bytes {
            return Err(ConfigError::invalid(
                "server.max_inflight_body_mb",
                format!(
                    "{inflight_mb} MiB is less than server.max_body_bytes ({max_body_bytes}): a body of the allowed size could never be received"
                ),
            ));
        }
        let plugin_threads = self.plugin_threads.unwrap_or(0);
        if plugin_threads > PLUGIN_THREADS_LIMIT {
            return Err(ConfigError::invalid(
                "server.plugin_threads",
                format!(
                    "must be between 0 (one per core but one) and {PLUGIN_THREADS_LIMIT}, got {plugin_threads}"
                ),
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
            max_connections,
            body_timeout: Duration::from_secs(body_timeout_secs),
            max_inflight_body_bytes: usize::try_from(inflight_mb * MIB).unwrap_or(usize::MAX),
            plugin_threads,
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

    #[test]
    fn resource_bounds_have_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.server.body_timeout.as_secs(), 10);
        assert_eq!(c.server.max_inflight_body_bytes, 256 * 1024 * 1024);
        assert_eq!(c.server.plugin_threads, 0);
        let c = parse(
            "[server]\nmax_connections = 5\nbody_timeout_secs = 2\nmax_inflight_body_mb = 3\nplugin_threads = 4\n",
        )
        .unwrap();
        assert_eq!(c.server.max_connections, 5);
        assert_eq!(c.server.body_timeout.as_secs(), 2);
        assert_eq!(c.server.max_inflight_body_bytes, 3 * 1024 * 1024);
        assert_eq!(c.server.plugin_threads, 4);
    }

    #[test]
    fn resource_bounds_are_validated_naming_the_field() {
        for (text, field) in [
            ("max_connections = 0", "server.max_connections"),
            ("max_connections = 2000000", "server.max_connections"),
            ("body_timeout_secs = 0", "server.body_timeout_secs"),
            ("body_timeout_secs = 86400", "server.body_timeout_secs"),
            ("max_inflight_body_mb = 0", "server.max_inflight_body_mb"),
            (
                "max_inflight_body_mb = 100000",
                "server.max_inflight_body_mb",
            ),
            (
                "max_body_bytes = 4194304\nmax_inflight_body_mb = 2",
                "server.max_inflight_body_mb",
            ),
            ("plugin_threads = 5000", "server.plugin_threads"),
            ("max_connections = -1", "max_connections"),
        ] {
            let e = parse(&format!("[server]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
