//! The plugin's private key-value store, kept by the host in its database.
//!
//! Every call needs `kv = true` under `[grants]` in the plugin's manifest; without it each
//! call returns [`ToolError::Denied`]. Keys are only ever this plugin's own: two plugins
//! writing the same key do not see each other's values.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi::kv as wit;
use crate::{HandlerError, ToolError};

/// How many keys [`list`] asks the host for per call.
const LIST_PAGE: u32 = 1000;

/// The value stored under `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, ToolError> {
    wit::get(key).map_err(ToolError::from)
}

/// Store `value` under `key`, replacing any previous value.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), ToolError> {
    wit::set(key, value.as_ref()).map_err(ToolError::from)
}

/// Remove `key`; `true` when it existed.
pub fn delete(key: &str) -> Result<bool, ToolError> {
    wit::delete(key).map_err(ToolError::from)
}

/// The value under `key` parsed as JSON. A stored value that does not parse as `T` is a
/// permanent error; tool errors convert as described on [`HandlerError`].
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, HandlerError> {
    match get(key)? {
        Some(bytes) => parse_json(key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Store `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), HandlerError> {
    let bytes = serde_json::to_vec(value)?;
    set(key, bytes)?;
    Ok(())
}

/// A value and its version: a number that changes on every write of the key and never
/// repeats for it, even after the key is deleted and written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The version to pass to [`compare_and_swap`].
    pub version: u64,
}

/// What [`compare_and_swap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The value was written; its new version.
    Swapped(u64),
    /// The key was not at the expected version and nothing was written: what it holds
    /// now (`None` when it does not exist).
    Conflict(Option<Versioned>),
}

/// How many times [`update_json`] recomputes before it gives up with a retry.
const UPDATE_ATTEMPTS: u32 = 64;

/// The value under `key` with its version, if any.
pub fn get_versioned(key: &str) -> Result<Option<Versioned>, ToolError> {
    wit::get_versioned(key)
        .map(|found| found.map(versioned))
        .map_err(ToolError::from)
}

/// Write `value` under `key` only if the key is at `expected` — or, with `None`, only if
/// it does not exist. Atomic: no other write of the key comes between the check and the
/// write.
pub fn compare_and_swap(
    key: &str,
    expected: Option<u64>,
    value: impl AsRef<[u8]>,
) -> Result<Swap, ToolError> {
    match wit::compare_and_swap(key, expected, value.as_ref()).map_err(ToolError::from)? {
        wit::SwapOutcome::Swapped(version) => Ok(Swap::Swapped(version)),
        wit::SwapOutcome::Conflict(current) => Ok(Swap::Conflict(current.map(versioned))),
    }
}

/// Atomically add `delta` to the integer under `key` (a missing key counts as 0) and
/// return the new value. The value is stored as decimal text, so [`get_json`] reads it
/// as a number. A value that is not an integer, or an overflow, is
/// [`ToolError::Invalid`] and changes nothing.
pub fn increment(key: &str, delta: i64) -> Result<i64, ToolError> {
    wit::increment(key, delta).map_err(ToolError::from)
}

/// Read the JSON value under `key`, compute its replacement with `f` (given `None` when
/// the key does not exist), and write it only if no one else wrote the key in between
/// — otherwise read again and recompute. Returns the value written. Concurrent
/// deliveries updating one key never lose each other's update.
///
/// `f` may run more than once, so it must not have effects of its own. After 64
/// conflicts in a row the delivery is retried later.
pub fn update_json<T, F>(key: &str, mut f: F) -> Result<T, HandlerError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Result<T, HandlerError>,
{
    let mut current = get_versioned(key)?;
    for _ in 0..UPDATE_ATTEMPTS {
        let (old, expected) = match current {
            Some(v) => (Some(parse_json::<T>(key, &v.value)?), Some(v.version)),
            None => (None, None),
        };
        let new = f(old)?;
        match compare_and_swap(key, expected, serde_json::to_vec(&new)?)? {
            Swap::Swapped(_) => return Ok(new),
            Swap::Conflict(now) => current = now,
        }
    }
    Err(HandlerError::retry(format!(
        "kv key `{key}` kept changing under {UPDATE_ATTEMPTS} updates in a row"
    )))
}

fn versioned(v: wit::Versioned) -> Versioned {
    Versioned {
        value: v.value,
        version: v.version,
    }
}

fn parse_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, HandlerError> {
    serde_json::from_slice(bytes).map_err(|err| {
        HandlerError::permanent(format!(
            "kv value under `{key}` is not the expected JSON: {err}"
        ))
    })
}

/// One page of keys that start with `prefix`, in order: up to `limit` keys, strictly
/// after `start_after` when given. Pass the last key of one page to get the next.
pub fn list_page(
    prefix: &str,
    start_after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, ToolError> {
    wit::list_keys(prefix, start_after, limit).map_err(ToolError::from)
}

/// Every key that starts with `prefix`, in order, fetched a page at a time.
///
/// It stops at the first empty page rather than the first short one, so it stays
/// correct if the host caps the page size below what was asked for.
pub fn list(prefix: &str) -> Result<Vec<String>, ToolError> {
    all_pages(|start_after| list_page(prefix, start_after, LIST_PAGE))
}

/// Keys from `page(start_after)` calls, each starting after the last key so far, until a
/// page comes back empty.
fn all_pages(
    mut page: impl FnMut(Option<&str>) -> Result<Vec<String>, ToolError>,
) -> Result<Vec<String>, ToolError> {
    let mut keys: Vec<String> = Vec::new();
    loop {
        let next = page(keys.last().map(String::as_str))?;
        if next.is_empty() {
            return Ok(keys);
        }
        keys.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that caps pages at `cap` keys, over `stored` sorted keys.
    fn host(
        stored: &[&str],
        cap: usize,
    ) -> impl FnMut(Option<&str>) -> Result<Vec<String>, ToolError> {
        let stored: Vec<String> = stored.iter().map(|k| k.to_string()).collect();
        move |start_after| {
            Ok(stored
                .iter()
                .filter(|k| start_after.is_none_or(|s| k.as_str() > s))
                .take(cap)
                .cloned()
                .collect())
        }
    }

    #[test]
    fn list_follows_pages_even_when_the_host_caps_them() {
        let keys = all_pages(host(&["a", "b", "c", "d", "e"], 2)).unwrap();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        assert!(all_pages(host(&[], 2)).unwrap().is_empty());
    }

    #[test]
    fn list_stops_at_the_first_error() {
        let mut calls = 0;
        let err = all_pages(|_| {
            calls += 1;
            if calls == 1 {
                Ok(vec!["a".to_owned()])
            } else {
                Err(ToolError::Limited("too many calls".into()))
            }
        })
        .unwrap_err();
        assert_eq!(err, ToolError::Limited("too many calls".into()));
    }
}
