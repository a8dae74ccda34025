//! The on-disk cache of compiled components, so a restart does not recompile every
//! plugin.
//!
//! An entry is keyed by the SHA-256 of the component bytes and a fingerprint of the
//! engine's compilation settings (wasmtime version, target, tunables), so a different
//! engine never sees it. The host writes entries itself, atomically (temp file + rename),
//! and each file carries the SHA-256 of its payload: a truncated, corrupt or foreign
//! entry is recompiled and overwritten, never trusted. The cache is only an
//! accelerator: any error reading or writing it falls back to compiling.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every entry; bump the digit when the layout changes.
const MAGIC: &[u8; 8] = b"AHCWASM1";
const HASH_LEN: usize = 32;
const EXT: &str = "cwasm";

/// Where a component came from, for the load report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now (no usable cache entry).
    Compiled,
    /// Loaded from a valid cache entry.
    Cached,
}

/// A directory of compiled components for one engine configuration.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    /// Hex fingerprint of the engine's compatibility settings (first 16 bytes).
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` (created if missing) for components compiled by `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<CompileCache> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..16]);
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    fn entry_path(&self, content_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{content_hash}-{}.{EXT}", self.engine_key))
    }

    /// The compiled component for `wasm` (whose hex SHA-256 is `content_hash`): from the
    /// cache when a valid entry exists, else compiled and written to the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        content_hash: &str,
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.entry_path(content_hash);
        if let Some(component) = self.read(engine, &path) {
            return Ok((component, Origin::Cached));
        }
        let component = Component::new(engine, wasm)?;
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = write_entry(&path, &bytes) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache; the next start compiles this plugin again");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled component"),
        }
        Ok((component, Origin::Compiled))
    }

    /// A valid entry, or None (missing, unreadable, corrupt, or from another engine).
    /// A bad entry is deleted so it is rewritten.
    fn read(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a compile cache entry; recompiling");
                return None;
            }
        };
        let Some(payload) = checked_payload(&data) else {
            tracing::warn!(path = %path.display(), "corrupt compile cache entry (bad header or checksum); recompiling");
            let _ = std::fs::remove_file(path);
            return None;
        };
        // SAFETY: `Component::deserialize` trusts its input to be machine code that
        // wasmtime produced. This payload is: the file lives in the host's own data dir,
        // only `write_entry` creates it (temp file + fsync + rename, so it is never seen
        // half-written), and its SHA-256 was just checked against the digest stored in
        // its header, so bit rot or truncation is caught before this point. Wasmtime
        // itself rejects an artifact from another version or configuration.
        #[allow(unsafe_code)]
        let result = unsafe { Component::deserialize(engine, payload) };
        match result {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable compile cache entry; recompiling");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Delete the entries of this engine whose content hash is not in `keep` (e.g. old
    /// versions of plugins), and every entry of other engine configurations.
    pub fn retain(&self, keep: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
            else {
                continue;
            };
            let stale = match stem.split_once('-') {
                Some((hash, engine)) => engine != self.engine_key || !keep.contains(hash),
                None => true,
            };
            if stale {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The payload of an entry whose header and checksum are intact.
fn checked_payload(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(MAGIC)?;
    if rest.len() < HASH_LEN {
        return None;
    }
    let (digest, payload) = rest.split_at(HASH_LEN);
    (Sha256::digest(payload).as_slice() == digest).then_some(payload)
}

/// Write `MAGIC || sha256(payload) || payload` to a temp file beside `path`, fsync it,
/// and rename it into place.
fn write_entry(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&Sha256::digest(payload))?;
        file.write_all(payload)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Feeds `Hash` output into SHA-256, so the engine fingerprint is stable across runs
/// (std's `DefaultHasher` is not guaranteed to be).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checks_reject_truncation_and_bit_flips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        write_entry(&path, b"compiled code").unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(checked_payload(&data), Some(&b"compiled code"[..]));
        assert_eq!(checked_payload(&data[..data.len() - 1]), None);
        let mut flipped = data.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(checked_payload(&flipped), None);
        assert_eq!(checked_payload(b"AHCWASM1short"), None);
        assert_eq!(checked_payload(b""), None);
    }
}
