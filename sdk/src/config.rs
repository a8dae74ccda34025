//! The values the operator put in the plugin manifest's `[config]` table.
//!
//! Values written as `env:VAR` or `file:PATH` are resolved by the host; the plugin only
//! ever sees the result, and only for keys its manifest lists.

use std::fmt::Display;
use std::str::FromStr;

use crate::HandlerError;
use crate::abi::config as wit;

/// The value for `key`, or `None` when the manifest does not set it.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// The value for `key`; a permanent error naming the key when the manifest does not set
/// it (no retry can add it).
pub fn require(key: &str) -> Result<String, HandlerError> {
    get(key).ok_or_else(|| missing(key))
}

/// The value for `key` parsed with [`FromStr`]: `Ok(None)` when it is not set, a permanent
/// error naming the key and the value when it does not parse.
pub fn get_parsed<T>(key: &str) -> Result<Option<T>, HandlerError>
where
    T: FromStr,
    T::Err: Display,
{
    get(key).map(|value| parse(key, &value)).transpose()
}

fn missing(key: &str) -> HandlerError {
    HandlerError::permanent(format!("missing config key `{key}`"))
}

fn parse<T>(key: &str, value: &str) -> Result<T, HandlerError>
where
    T: FromStr,
    T::Err: Display,
{
    value.trim().parse().map_err(|err| {
        HandlerError::permanent(format!(
            "config key `{key}` has invalid value `{value}`: {err}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_is_permanent_and_named() {
        let err = missing("vip_threshold");
        assert_eq!(
            err,
            HandlerError::permanent("missing config key `vip_threshold`")
        );
    }

    #[test]
    fn parse_trims_and_reports_the_bad_value() {
        assert_eq!(parse::<u64>("n", " 42 ").unwrap(), 42);
        let err = parse::<u64>("vip_threshold", "lots").unwrap_err();
        assert!(!err.is_retry());
        assert_eq!(
            err.reason(),
            "config key `vip_threshold` has invalid value `lots`: invalid digit found in string"
        );
    }
}
