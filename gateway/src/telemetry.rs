//! Logs and traces. Logs go to stderr, as text or, with `CHILDGRAPH_LOG_FORMAT=json`, as one JSON object a line;
//! `CHILDGRAPH_LOG` filters them (default `info`). Traces are exported over OpenTelemetry OTLP (HTTP, protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, under `OTEL_SERVICE_NAME` (default `childgraph`): a span per request and
//! one per source call, with its source, path template, status and latency. Neither carries child data: spans name
//! paths, never query values; logs name children by gateway id only. Traces carry spans alone, no log event: the
//! access log (who saw which child) stays in the audit log and the logs, never in the collector.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// What the traces export needs at exit: the provider, whose spans not yet sent are flushed when this is dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("traces could not be flushed: {e}");
        }
    }
}

/// The spans exported: requests, and the connectors' source calls (at debug level, so they cost nothing unless
/// traces are exported).
const TRACE_FILTER: &str = "info,childgraph_connectors=debug";

/// Sets up logging, and trace export when configured. Call once, inside the runtime.
pub fn init() -> Telemetry {
    let filter =
        EnvFilter::try_from_env("CHILDGRAPH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CHILDGRAPH_LOG_FORMAT").is_ok_and(|f| f == "json");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        // Colours for a terminal only: in a file or a log collector they are escape codes in every line.
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let provider = endpoint.and_then(|_| match tracer_provider() {
        Ok(provider) => Some(provider),
        Err(e) => {
            eprintln!("traces will not be exported: {e}");
            None
        }
    });
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("childgraph"))
            .with_filter(
                EnvFilter::new(TRACE_FILTER)
                    .and(tracing_subscriber::filter::filter_fn(|meta| meta.is_span())),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Telemetry { provider }
}

/// An OTLP exporter over HTTP, to the endpoint the standard environment variables name, batching spans.
fn tracer_provider() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "childgraph".to_owned());
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}
