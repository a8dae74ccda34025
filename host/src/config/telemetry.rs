//! `[telemetry]`: where traces are exported, if anywhere. Only validated here; the
//! exporter itself is `telemetry`, and needs a build with the `otlp` feature.

use serde::Deserialize;

use super::ConfigError;

/// `[telemetry]`: OTLP trace export (needs a build with the `otlp` feature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans are POSTed
    /// to `{endpoint}/v1/traces`. `None`: no export.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// The OTLP/HTTP encoding (`[telemetry] otlp_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// The `[telemetry]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<OtlpProtocol>,
    service_name: Option<String>,
}

impl RawTelemetry {
    pub(super) fn resolve(&self) -> Result<TelemetryConfig, ConfigError> {
        let service_name = self
            .service_name
            .clone()
            .unwrap_or_else(|| "agenthook".to_string());
        if service_name.is_empty() || service_name.len() > 256 {
            return Err(ConfigError::invalid(
                "telemetry.service_name",
                "must be 1 to 256 characters",
            ));
        }
        let otlp_endpoint = match &self.otlp_endpoint {
            None => None,
            Some(url) => {
                let parsed: Option<http::Uri> = url.parse().ok();
                let ok = parsed.as_ref().is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https"))
                        && u.host().is_some()
                        && u.query().is_none()
                });
                if !ok {
                    return Err(ConfigError::invalid(
                        "telemetry.otlp_endpoint",
                        format!(
                            "`{url}` is not an http:// or https:// base URL (e.g. http://127.0.0.1:4318)"
                        ),
                    ));
                }
                if !cfg!(feature = "otlp") {
                    return Err(ConfigError::invalid(
                        "telemetry.otlp_endpoint",
                        "this agenthook was built without OTLP export; rebuild it with `cargo build --release -p agenthook --features otlp`",
                    ));
                }
                Some(url.trim_end_matches('/').to_string())
            }
        };
        Ok(TelemetryConfig {
            otlp_endpoint,
            otlp_protocol: self.otlp_protocol.unwrap_or_default(),
            service_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn telemetry_errors_name_the_field() {
        for (text, field) in [
            (
                "[telemetry]\notlp_endpoint = \"ftp://collector:4318\"\n",
                "telemetry.otlp_endpoint",
            ),
            ("[telemetry]\notlp_protocol = \"grpc\"\n", "otlp_protocol"),
            (
                "[telemetry]\nservice_name = \"\"\n",
                "telemetry.service_name",
            ),
            ("[telemetry]\nsampler = 1\n", "sampler"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn otlp_export_is_off_by_default_and_needs_the_feature() {
        let c = parse("").unwrap();
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert_eq!(c.telemetry.service_name, "agenthook");
        let with = parse(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/\"\notlp_protocol = \"http/json\"\n",
        );
        if cfg!(feature = "otlp") {
            let c = with.unwrap();
            assert_eq!(
                c.telemetry.otlp_endpoint.as_deref(),
                Some("http://127.0.0.1:4318")
            );
            assert_eq!(c.telemetry.otlp_protocol, OtlpProtocol::HttpJson);
        } else {
            let e = with.unwrap_err().to_string();
            assert!(e.contains("--features otlp"), "{e}");
        }
    }
}
