//! Logs and traces. Logs go to stderr, as text or, with `CHILDGRAPH_LOG_FORMAT=json`, as one JSON object a line;
//! `CHILDGRAPH_LOG` filters them (default `info`). A line is written by a thread of its own, so that a request never
//! waits on stderr: a file whose disk is syncing, or a pipe to a log collector that has fallen behind, would hold the
//! runtime's thread, and every request on it, for as long. Up to [`LOG_LINES_QUEUED`] lines wait for that thread;
//! beyond, the thread logging waits rather than drop a line.
//!
//! Traces are exported over OpenTelemetry OTLP (HTTP, protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, under
//! `OTEL_SERVICE_NAME` (default `childgraph`): a span per request and one per source call, with its source, path
//! template, status and latency. Neither carries child data: spans name paths, never query values; logs name children
//! by gateway id only. Traces carry spans alone, no log event: the access log (who saw which child) stays in the audit
//! log and the logs, never in the collector.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Log lines waiting for the thread that writes them to stderr, at most.
pub const LOG_LINES_QUEUED: usize = 128_000;

/// What logging and the traces export need at exit: the log lines still queued, and the provider's spans not yet
/// sent, are flushed when this is dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Dropped after the provider (fields drop after `drop`): its drop waits for the queued lines to be written.
    _logs: tracing_appender::non_blocking::WorkerGuard,
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
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_QUEUED)
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(stderr)
            .with_filter(filter)
            .boxed()
    } else {
        // Colours for a terminal only: in a file or a log collector they are escape codes in every line.
        tracing_subscriber::fmt::layer()
            .with_writer(stderr)
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
    Telemetry {
        provider,
        _logs: guard,
    }
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
