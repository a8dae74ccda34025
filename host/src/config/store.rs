//! `[store]`: how long events, dedup keys and dead letters are kept, when ingress pushes
//! back, and how the store batches its commits. Only validated here; the store itself is
//! `store`.

use serde::Deserialize;

use super::ConfigError;

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
}
