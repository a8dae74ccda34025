//! The host's log and trace pipeline: `tracing` with an env filter (`AGENTHOOK_LOG`),
//! written to stderr as text or JSON, and — in a build with the `otlp` feature and a
//! `[telemetry] otlp_endpoint` — every span exported over OTLP/HTTP to a collector
//! (Jaeger, Tempo, the OpenTelemetry Collector).
//!
//! The spans worth following: `webhook{source, event}` around one ingress request, and
//! `delivery{event, plugin}` around one attempt, its plugin's log lines and tool calls.

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::TelemetryConfig;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, span fields as a prefix.
    Pretty,
    /// One JSON object per line with the current span and the span list, so every
    /// line of an attempt carries its event id.
    Json,
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Flush and stop the exporter. Blocks (up to the exporter's timeout): call it off
    /// the async executor.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("agenthook: could not flush traces to the OTLP collector: {e}");
        }
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber for `format` and `config`, logging to stderr, filtered by `filter`.
pub fn subscriber(
    format: LogFormat,
    filter: EnvFilter,
    config: &TelemetryConfig,
) -> Result<(impl Subscriber + Send + Sync + use<>, Telemetry), String> {
    // Colour only for a person at a terminal: escape codes cost CPU per line and end up
    // in files and log collectors otherwise.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt: BoxedLayer = match format {
        LogFormat::Pretty => Box::new(fmt),
        LogFormat::Json => Box::new(fmt.json().with_current_span(true).with_span_list(true)),
    };
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers: Vec<BoxedLayer> = vec![fmt.with_filter(filter).boxed()];
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut telemetry = Telemetry::default();
    if let Some(endpoint) = &config.otlp_endpoint {
        #[cfg(feature = "otlp")]
        {
            let (layer, provider) = otlp::layer(config, endpoint)?;
            layers.push(layer);
            telemetry.provider = Some(provider);
        }
        #[cfg(not(feature = "otlp"))]
        return Err(format!(
            "telemetry.otlp_endpoint = {endpoint}: this agenthook was built without OTLP export (--features otlp)"
        ));
    }
    Ok((Registry::default().with(layers), telemetry))
}

/// Install the subscriber for the whole process. The env filter comes from
/// `AGENTHOOK_LOG` (default `info`); it applies to the log lines, while exported spans
/// are filtered at `info` for `agenthook` alone.
pub fn init(format: LogFormat, config: &TelemetryConfig) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_env("AGENTHOOK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (subscriber, telemetry) = subscriber(format, filter, config)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())?;
    Ok(telemetry)
}

/// Put `span` into the trace of one event, named by its source and the sender's event
/// id: its ingress request and every attempt — across restarts and replays — share one
/// trace id (the first 16 bytes of SHA-256 of `source NUL event_id`), so a tracing UI
/// shows the event's whole story under one trace. Call it before `span` has children.
/// Without the `otlp` feature there are no trace ids and this does nothing.
pub fn join_event_trace(span: &tracing::Span, source: &str, event_id: &str) {
    #[cfg(feature = "otlp")]
    otlp::join_event_trace(span, source, event_id);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, source, event_id);
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;

    use super::BoxedLayer;
    use crate::config::{OtlpProtocol, TelemetryConfig};

    /// A layer exporting the host's spans to `{endpoint}/v1/traces`, batched on the
    /// exporter's own thread so a slow collector never holds up a request.
    pub fn layer(
        config: &TelemetryConfig,
        endpoint: &str,
    ) -> Result<(BoxedLayer, SdkTracerProvider), String> {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(match config.otlp_protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
                OtlpProtocol::HttpJson => Protocol::HttpJson,
            })
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: cannot set up the exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("agenthook");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Spans start when they close, not when first entered, so that
            // `join_event_trace` can still give them their event's trace once the
            // event id is known (after verification, after loading the event).
            .with_context_activation(false)
            .with_filter(Targets::new().with_target("agenthook", tracing::Level::INFO))
            .boxed();
        Ok((layer, provider))
    }

    pub fn join_event_trace(span: &tracing::Span, source: &str, event_id: &str) {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use sha2::{Digest, Sha256};
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let digest = Sha256::digest(format!("{source}\0{event_id}").as_bytes());
        let mut trace = [0u8; 16];
        let mut parent = [0u8; 8];
        trace.copy_from_slice(&digest[..16]);
        parent.copy_from_slice(&digest[16..24]);
        // A remote parent that is never exported itself: the trace's root.
        let root = SpanContext::new(
            TraceId::from_bytes(trace),
            SpanId::from_bytes(parent),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(root);
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!(error = %e, "cannot put a span into its event's trace");
        }
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::mpsc;

    use serde_json::Value;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::config::OtlpProtocol;

    /// A loopback OTLP/HTTP collector: answers 200 to every request and hands over
    /// (path, content type, body).
    fn collector() -> (String, mpsc::Receiver<(String, String, Vec<u8>)>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = request_line
                            .split(' ')
                            .nth(1)
                            .unwrap_or_default()
                            .to_string();
                        let (mut len, mut ctype) = (0usize, String::new());
                        loop {
                            let mut line = String::new();
                            reader.read_line(&mut line).unwrap();
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            let (k, v) = line.split_once(':').unwrap_or((line, ""));
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => len = v.trim().parse().unwrap(),
                                "content-type" => ctype = v.trim().to_string(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).unwrap();
                        let _ = tx.send((path, ctype, body));
                        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                    }
                });
            }
        });
        (url, rx)
    }

    #[test]
    fn spans_reach_an_otlp_collector_with_their_event_id() {
        let (url, received) = collector();
        let config = TelemetryConfig {
            otlp_endpoint: Some(url),
            otlp_protocol: OtlpProtocol::HttpJson,
            service_name: "agenthook-test".into(),
        };
        let (subscriber, telemetry) =
            subscriber(LogFormat::Json, EnvFilter::new("off"), &config).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let webhook = tracing::info_span!("webhook", source = "stripe");
            let _entered = webhook.enter();
            join_event_trace(&tracing::Span::current(), "stripe", "evt_1");
            drop(_entered);
            drop(webhook);
            let span = tracing::info_span!("delivery", event = 42u64, plugin = "tally");
            let _entered = span.enter();
            join_event_trace(&span, "stripe", "evt_1");
            tracing::info!(outcome = "done", "delivery attempt finished");
        });
        telemetry.shutdown();

        let (path, ctype, body) = received
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the collector received an export");
        assert_eq!(path, "/v1/traces");
        assert_eq!(ctype, "application/json");
        let export: Value = serde_json::from_slice(&body).unwrap();
        let resource = &export["resourceSpans"][0];
        let service = resource["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .unwrap();
        assert_eq!(service["value"]["stringValue"], "agenthook-test");
        let spans = resource["scopeSpans"][0]["spans"].as_array().unwrap();
        let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["webhook", "delivery"]);
        // Both in the event's trace, whose id derives from (source, event id).
        let trace = &hex::encode(Sha256::digest(b"stripe\0evt_1"))[..32];
        assert_eq!(spans[0]["traceId"], trace);
        assert_eq!(spans[1]["traceId"], trace);
        let span = &spans[1];
        let attr = |key: &str| {
            span["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == key)
                .map(|a| a["value"].clone())
                .unwrap_or_else(|| panic!("no {key} in {span}"))
        };
        // tracing-opentelemetry exports u64 fields as strings (they may not fit i64).
        assert_eq!(attr("event")["stringValue"], "42", "{span}");
        assert_eq!(attr("plugin")["stringValue"], "tally");
        assert_eq!(span["events"][0]["name"], "delivery attempt finished");
    }
}
