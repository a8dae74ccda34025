//! The optional JSON Schema check of a source's events (`schema = "file:..."` and
//! `[sources.NAME.schemas]` per event type). Schemas are compiled once at start-up
//! (`Verifiers::build`), so a bad schema stops the host before it serves; a body that fails one is answered 422
//! naming the first violation's path, and is not stored.
//!
//! Schemas never fetch anything: a `$ref` to another file or URL is a config error.

use globset::{Glob, GlobMatcher};
use http::StatusCode;
use jsonschema::Validator;

use super::Rejection;
use crate::config::{ConfigError, SourceConfig};

/// The longest violation message sent back; a message quotes the offending value,
/// which can be large.
const MAX_MESSAGE_LEN: usize = 300;

/// A source's compiled schemas, in the order they are checked.
#[derive(Default)]
pub struct Schemas {
    rules: Vec<Rule>,
}

struct Rule {
    /// `None` applies to every event.
    types: Option<(String, GlobMatcher)>,
    validator: Validator,
}

impl Schemas {
    pub fn new(source: &SourceConfig) -> Result<Schemas, ConfigError> {
        let mut rules = Vec::with_capacity(source.schemas.len());
        for rule in &source.schemas {
            let field = match &rule.types {
                None => format!("sources.{}.schema", source.name),
                Some(t) => format!("sources.{}.schemas.\"{t}\"", source.name),
            };
            let types = match &rule.types {
                None => None,
                Some(pattern) => {
                    let glob = Glob::new(pattern).map_err(|e| {
                        ConfigError::invalid(&field, format!("bad glob `{pattern}`: {e}"))
                    })?;
                    Some((pattern.clone(), glob.compile_matcher()))
                }
            };
            let validator = jsonschema::validator_for(&rule.schema).map_err(|e| {
                ConfigError::invalid(
                    &field,
                    format!("{} is not a usable JSON Schema: {e}", rule.path.display()),
                )
            })?;
            rules.push(Rule { types, validator });
        }
        Ok(Schemas { rules })
    }

    /// Check the body of an event of `event_type` against every schema that applies.
    /// `forms`: the scheme's sender may send form-encoded bodies (see
    /// [`super::document`]).
    pub fn check(&self, event_type: &str, body: &[u8], forms: bool) -> Result<(), Rejection> {
        let mut applicable = self
            .rules
            .iter()
            .filter(|r| r.types.as_ref().is_none_or(|(_, g)| g.is_match(event_type)))
            .peekable();
        if applicable.peek().is_none() {
            return Ok(());
        }
        let Some(doc) = super::document(body, forms) else {
            return Err(Rejection::malformed_body(
                "the body is not JSON, so it cannot be checked against the source's schema",
            ));
        };
        for rule in applicable {
            if let Some(error) = rule.validator.iter_errors(&doc).next() {
                let path = error.instance_path().to_string();
                let which = match &rule.types {
                    None => "the source's schema".to_string(),
                    Some((pattern, _)) => format!("the schema for `{pattern}`"),
                };
                let mut message = format!(
                    "the body violates {which} at {}: {error}",
                    if path.is_empty() { "/" } else { &path }
                );
                if message.len() > MAX_MESSAGE_LEN {
                    let mut end = MAX_MESSAGE_LEN;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    message.truncate(end);
                    message.push('…');
                }
                return Err(Rejection::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "schema_violation",
                    message,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SchemaRule, Scheme, Secret};
    use serde_json::json;

    fn schemas(rules: Vec<(Option<&str>, serde_json::Value)>) -> Result<Schemas, ConfigError> {
        let mut source = SourceConfig::new("s", Scheme::Github, vec![Secret::new("x")]);
        source.schemas = rules
            .into_iter()
            .map(|(types, schema)| SchemaRule {
                types: types.map(str::to_string),
                path: "schema.json".into(),
                schema,
            })
            .collect();
        Schemas::new(&source)
    }

    fn amount_schema() -> serde_json::Value {
        json!({
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "object", "properties": {"amount": {"type": "integer"}}}}
        })
    }

    #[test]
    fn violations_are_422_with_the_path() {
        let s = schemas(vec![(None, amount_schema())]).unwrap();
        assert!(s.check("x", br#"{"data": {"amount": 5}}"#, false).is_ok());
        let e = s
            .check("x", br#"{"data": {"amount": "5"}}"#, false)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.reason, "schema_violation");
        assert!(e.message.contains("/data/amount"), "{}", e.message);
        let e = s.check("x", br#"{}"#, false).unwrap_err();
        assert!(e.message.contains(" at /:"), "{}", e.message);
        let e = s.check("x", b"not json", false).unwrap_err();
        assert_eq!(e.reason, "malformed_body");
    }

    #[test]
    fn per_type_schemas_apply_by_glob() {
        let s = schemas(vec![(Some("payment.*"), amount_schema())]).unwrap();
        assert!(s.check("refund.created", b"not even json", false).is_ok());
        let e = s
            .check("payment.created", br#"{"data": 1}"#, false)
            .unwrap_err();
        assert!(e.message.contains("`payment.*`"), "{}", e.message);
        assert!(e.message.contains("/data"), "{}", e.message);
    }

    #[test]
    fn form_bodies_are_checked_as_their_fields() {
        let s = schemas(vec![(None, json!({"required": ["command"]}))]).unwrap();
        assert!(s.check("t", b"command=%2Fdeploy&text=", true).is_ok());
        assert_eq!(
            s.check("t", b"text=hi", true).unwrap_err().reason,
            "schema_violation"
        );
        let s = schemas(vec![(None, json!({"required": ["type"]}))]).unwrap();
        let payload = "payload=%7B%22type%22%3A%22block_actions%22%7D";
        assert!(s.check("t", payload.as_bytes(), true).is_ok());
    }

    #[test]
    fn long_messages_are_cut() {
        let s = schemas(vec![(None, json!({"type": "integer"}))]).unwrap();
        let body = format!("\"{}\"", "x".repeat(5000));
        let e = s.check("t", body.as_bytes(), false).unwrap_err();
        assert!(
            e.message.len() <= MAX_MESSAGE_LEN + 3,
            "{}",
            e.message.len()
        );
    }

    #[test]
    fn bad_schemas_and_remote_refs_are_config_errors() {
        let e = schemas(vec![(None, json!({"type": "no-such-type"}))])
            .err()
            .unwrap();
        assert!(e.to_string().contains("sources.s.schema"), "{e}");
        let e = schemas(vec![(
            Some("a.*"),
            json!({"$ref": "https://example.com/schema.json"}),
        )])
        .err()
        .unwrap();
        assert!(e.to_string().contains("sources.s.schemas.\"a.*\""), "{e}");
        let e = schemas(vec![(Some("a[b"), json!({}))]).err().unwrap();
        assert!(e.to_string().contains("bad glob"), "{e}");
    }
}
