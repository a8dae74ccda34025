//! `[store]`: which backend holds the events (`redb` on this machine, or `nats`: a NATS
//! JetStream cluster shared by several hosts), how long events, dedup keys and dead
//! letters are kept, when ingress pushes back, and how the store batches its commits.
//! Only validated here; the store itself is `store`.

use serde::Deserialize;

use super::{ConfigError, Secret};

const DAY_MS: u64 = 86_400_000;

/// `[store]`: how long things are kept, and when ingress pushes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// A sender's retry of the same (source, event id) within this window is
    /// acknowledged and not stored again.
    pub dedup_window_ms: u64,
    /// Events whose every delivery is done are removed after this long.
    pub done_retention_ms: u64,
    /// Dead letters are kept this long for inspection and replay.
    pub dead_retention_ms: u64,
    /// Ingress answers 503 for an event whose subscriber already has this many
    /// deliveries waiting.
    pub max_queue_per_plugin: u64,
    /// Ingress answers 503 when the data dir's file system has less free space.
    pub min_free_disk_bytes: u64,
    /// Most writes one commit carries; 1 turns group commit off (for comparison only).
    pub max_batch: usize,
    /// redb's page cache, in bytes: most of the host's memory under load.
    pub cache_bytes: usize,
    /// Where events are kept: `[store] backend`.
    pub backend: StoreBackend,
}

/// `[store] backend`: the storage engine behind the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreBackend {
    /// One redb file in the data dir (the default).
    #[default]
    Redb,
    /// A NATS JetStream cluster, shared by every host configured with the same servers
    /// and prefix (`[store.nats]`).
    Nats(NatsConfig),
}

/// `[store.nats]`: the JetStream cluster and the names this deployment uses in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:port`); the client fails over between them.
    pub servers: Vec<String>,
    /// `token`: a server auth token.
    pub token: Option<Secret>,
    /// `user` + `password`.
    pub user: Option<(String, Secret)>,
    /// `credentials`: the content of a `.creds` file (JWT + nkey seed).
    pub credentials: Option<Secret>,
    /// Replicas of every stream and bucket (1, 3 or 5); writes are acknowledged only
    /// once this many servers hold them.
    pub replicas: usize,
    /// Prefix of every stream, bucket and subject, so several deployments can share
    /// one NATS.
    pub prefix: String,
    /// This host's name among the hosts of the deployment (leases, status, `host`
    /// label); defaults to the machine's host name.
    pub host: Option<String>,
    /// JetStream's `Nats-Msg-Id` window on the events stream: concurrent copies of one
    /// event sent to several hosts are stored once within it.
    pub duplicate_window_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            token: None,
            user: None,
            credentials: None,
            replicas: 1,
            prefix: "agenthook".into(),
            host: None,
            duplicate_window_ms: 120_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dedup_window_ms: 7 * DAY_MS,
            done_retention_ms: 7 * DAY_MS,
            dead_retention_ms: 30 * DAY_MS,
            max_queue_per_plugin: 100_000,
            min_free_disk_bytes: 256 << 20,
            max_batch: 1024,
            // redb's own default is 1 GiB, which a busy host fills: its RSS then
            // approaches 1 GiB. Hot pages (tree tops, the tail of the events table)
            // fit in far less, and the OS page cache holds the rest.
            cache_bytes: 128 << 20,
            backend: StoreBackend::Redb,
        }
    }
}

/// A duration like `90s`, `15m`, `12h` or `7d`, in milliseconds.
pub fn parse_duration_ms(text: &str, field: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError::invalid(
            field,
            format!("`{text}` is not a duration like 90s, 15m, 12h or 7d"),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).filter(|ms| *ms > 0).ok_or_else(bad)
}

/// The `[store]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    dedup_window: Option<String>,
    done_retention: Option<String>,
    dead_retention: Option<String>,
    max_queue_per_plugin: Option<u64>,
    min_free_disk_mb: Option<u64>,
    max_batch: Option<usize>,
    cache_mb: Option<usize>,
    backend: Option<String>,
    nats: Option<RawNats>,
}

/// The `[store.nats]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    servers: Option<Vec<String>>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    credentials: Option<String>,
    replicas: Option<usize>,
    prefix: Option<String>,
    host: Option<String>,
    duplicate_window: Option<String>,
}

impl RawNats {
    fn resolve(&self) -> Result<NatsConfig, ConfigError> {
        let d = NatsConfig::default();
        let servers = self.servers.clone().unwrap_or(d.servers);
        if servers.is_empty() {
            return Err(ConfigError::invalid(
                "store.nats.servers",
                "name at least one server URL",
            ));
        }
        for url in &servers {
            if url.trim().is_empty() || url.contains(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "store.nats.servers",
                    format!("`{url}` is not a server URL like nats://127.0.0.1:4222"),
                ));
            }
        }
        let replicas = self.replicas.unwrap_or(d.replicas);
        if !(1..=5).contains(&replicas) {
            return Err(ConfigError::invalid(
                "store.nats.replicas",
                format!("must be between 1 and 5, got {replicas}"),
            ));
        }
        let prefix = self.prefix.clone().unwrap_or(d.prefix);
        if prefix.is_empty()
            || prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::invalid(
                "store.nats.prefix",
                format!(
                    "`{prefix}`: use 1 to 32 letters, digits, `_` or `-` (it names streams and buckets)"
                ),
            ));
        }
        if let Some(host) = &self.host
            && (host.is_empty()
                || host.len() > 64
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(ConfigError::invalid(
                "store.nats.host",
                format!("`{host}`: use 1 to 64 letters, digits, `_` or `-`"),
            ));
        }
        let user = match (&self.user, &self.password) {
            (Some(u), Some(p)) => Some((u.clone(), Secret::resolve(p, "store.nats.password")?)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::invalid(
                    "store.nats.user",
                    "give both `user` and `password`, or neither",
                ));
            }
        };
        let secret = |v: &Option<String>, field: &str| {
            v.as_deref().map(|s| Secret::resolve(s, field)).transpose()
        };
        Ok(NatsConfig {
            servers,
            token: secret(&self.token, "store.nats.token")?,
            user,
            credentials: secret(&self.credentials, "store.nats.credentials")?,
            replicas,
            prefix,
            host: self.host.clone(),
            duplicate_window_ms: match &self.duplicate_window {
                Some(text) => parse_duration_ms(text, "store.nats.duplicate_window")?,
                None => d.duplicate_window_ms,
            },
        })
    }
}

impl RawStore {
    pub(super) fn resolve(&self) -> Result<StoreConfig, ConfigError> {
        let d = StoreConfig::default();
        let duration = |v: &Option<String>, field: &str, default: u64| match v {
            Some(text) => parse_duration_ms(text, field),
            None => Ok(default),
        };
        Ok(StoreConfig {
            dedup_window_ms: duration(&self.dedup_window, "store.dedup_window", d.dedup_window_ms)?,
            done_retention_ms: duration(
                &self.done_retention,
                "store.done_retention",
                d.done_retention_ms,
            )?,
            dead_retention_ms: duration(
                &self.dead_retention,
                "store.dead_retention",
                d.dead_retention_ms,
            )?,
            max_queue_per_plugin: match self.max_queue_per_plugin {
                Some(0) => {
                    return Err(ConfigError::invalid(
                        "store.max_queue_per_plugin",
                        "must be at least 1",
                    ));
                }
                Some(n) => n,
                None => d.max_queue_per_plugin,
            },
            min_free_disk_bytes: self
                .min_free_disk_mb
                .map_or(d.min_free_disk_bytes, |mb| mb << 20),
            max_batch: match self.max_batch {
                Some(n) if (1..=65_536).contains(&n) => n,
                Some(n) => {
                    return Err(ConfigError::invalid(
                        "store.max_batch",
                        format!("must be between 1 and 65536, got {n}"),
                    ));
                }
                None => d.max_batch,
            },
            cache_bytes: match self.cache_mb {
                Some(n) if (1..=1 << 20).contains(&n) => n << 20,
                Some(n) => {
                    return Err(ConfigError::invalid(
                        "store.cache_mb",
                        format!("must be between 1 and 1048576, got {n}"),
                    ));
                }
                None => d.cache_bytes,
            },
            backend: match (self.backend.as_deref(), &self.nats) {
                (None | Some("redb"), None) => StoreBackend::Redb,
                (None | Some("redb"), Some(_)) => {
                    return Err(ConfigError::invalid(
                        "store.nats",
                        "is set but store.backend is not \"nats\"",
                    ));
                }
                (Some("nats"), nats) => StoreBackend::Nats(
                    nats.as_ref()
                        .map_or(Ok(NatsConfig::default()), RawNats::resolve)?,
                ),
                (Some(other), _) => {
                    return Err(ConfigError::invalid(
                        "store.backend",
                        format!("`{other}` is not a backend: use \"redb\" or \"nats\""),
                    ));
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn store_durations_parse_and_errors_name_the_field() {
        let c = parse("[store]\ndedup_window = \"36h\"\nmax_batch = 1\ncache_mb = 64\n").unwrap();
        assert_eq!(c.store.cache_bytes, 64 << 20);
        assert_eq!(c.store.dedup_window_ms, 36 * 3_600_000);
        assert_eq!(c.store.max_batch, 1);
        assert_eq!(
            c.store.dead_retention_ms,
            StoreConfig::default().dead_retention_ms
        );
        for (text, field) in [
            ("[store]\ndedup_window = \"7 days\"\n", "store.dedup_window"),
            ("[store]\ndone_retention = \"0s\"\n", "store.done_retention"),
            ("[store]\nmax_batch = 0\n", "store.max_batch"),
            ("[store]\ncache_mb = 0\n", "store.cache_mb"),
            (
                "[store]\nmax_queue_per_plugin = 0\n",
                "store.max_queue_per_plugin",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn the_nats_backend_is_chosen_and_checked() {
        assert_eq!(parse("").unwrap().store.backend, StoreBackend::Redb);
        let c = parse(
            "[store]\nbackend = \"nats\"\n[store.nats]\nservers = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\nreplicas = 3\nprefix = \"prod-a\"\nhost = \"web-1\"\ntoken = \"s3cret\"\nduplicate_window = \"5m\"\n",
        )
        .unwrap();
        let StoreBackend::Nats(n) = c.store.backend else {
            panic!("{:?}", c.store.backend)
        };
        assert_eq!(n.servers.len(), 2);
        assert_eq!((n.replicas, n.prefix.as_str()), (3, "prod-a"));
        assert_eq!(n.host.as_deref(), Some("web-1"));
        assert_eq!(n.token.unwrap().expose(), "s3cret");
        assert_eq!(n.duplicate_window_ms, 300_000);
        for (text, field) in [
            ("[store]\nbackend = \"postgres\"\n", "store.backend"),
            ("[store.nats]\nreplicas = 3\n", "store.nats"),
            (
                "[store]\nbackend = \"nats\"\n[store.nats]\nreplicas = 7\n",
                "store.nats.replicas",
            ),
            (
                "[store]\nbackend = \"nats\"\n[store.nats]\nprefix = \"a.b\"\n",
                "store.nats.prefix",
            ),
            (
                "[store]\nbackend = \"nats\"\n[store.nats]\nservers = []\n",
                "store.nats.servers",
            ),
            (
                "[store]\nbackend = \"nats\"\n[store.nats]\nuser = \"u\"\n",
                "store.nats.user",
            ),
            (
                "[store]\nbackend = \"nats\"\n[store.nats]\ntoken = \"env:AGENTHOOK_TEST_UNSET_VAR\"\n",
                "store.nats.token",
            ),
            (
                "[store]\nbackend = \"nats\"\n[store.nats]\nbogus = 1\n",
                "bogus",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
