//! The plugin's private key-value store, kept by the host in its database.
//!
//! Every call needs `kv = true` under `[grants]` in the plugin's manifest; without it each
//! call returns [`ToolError::Denied`]. Keys are only ever this plugin's own: two plugins
//! writing the same key do not see each other's values.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::agenthook::plugin::kv as wit;
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
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            HandlerError::permanent(format!(
                "kv value under `{key}` is not the expected JSON: {err}"
            ))
        }),
        None => Ok(None),
    }
}

/// Store `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), HandlerError> {
    let bytes = serde_json::to_vec(value)?;
    set(key, bytes)?;
    Ok(())
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
