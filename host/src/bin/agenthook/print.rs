//! How the admin API's JSON is shown to a person, shared by the client commands: a
//! field as it appears in a table or line, and `--json` output (the API's answer passed
//! through unchanged, pretty-printed).

use serde_json::Value;

/// A field as shown: a string without quotes, a missing value as `-`, anything else as
/// its JSON text.
pub fn field(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The admin API's answer, as `--json` prints it.
pub fn json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
