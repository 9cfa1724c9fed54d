//! Logging, and with `nex node up --otel` the node's spans exported over OTLP.
//!
//! Log lines go to stderr through `tracing_subscriber::fmt`, filtered by `RUST_LOG` or
//! `--loglevel`. The node's spans are `deploy` (INFO, so log lines during a deploy carry its
//! fields) with `fetch_artifact` and `start` inside it (DEBUG), and `call` for each call (DEBUG,
//! so the log filter leaves it out and a call pays one disabled-callsite check for it); see
//! docs/architecture.md. `RUST_LOG=nex_node=debug` makes every call's span real (allocated,
//! formatted into log lines) even without an exporter. With `--otel`, a second layer
//! with its own filter takes every span of `nex_node` and the OpenTelemetry SDK's batch
//! processor exports them on a thread of its own, over OTLP/HTTP (`opentelemetry-otlp`, the
//! reqwest blocking client). The endpoint and protocol are the standard `OTEL_EXPORTER_OTLP_*`
//! variables (default `http://localhost:4318/v1/traces`, protobuf; `http/json` too), the
//! service name is `OTEL_SERVICE_NAME` or `nex-node`. W3C `traceparent` headers on calls are
//! continued as the call span's parent.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Why spans cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint or protocol variable).
    #[error("cannot export spans over OTLP: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Flushes and stops the span export when dropped (at the end of `main`).
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// The log filter: `RUST_LOG`, else `level` (with async-nats at warn).
fn log_filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},async_nats=warn")))
}

/// Logs to stderr at `level`; with `otel`, also exports the node's spans.
pub fn init(level: &str, otel: bool) -> Result<Guard, TelemetryError> {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(log_filter(level));
    if !otel {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Ok(Guard(None));
    }
    // reqwest is built without a TLS provider of its own (the HTTP host service brings its
    // configuration); an `https://` collector needs the process-wide one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "nex-node".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("nex"))
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("nex_node", tracing::Level::DEBUG),
        );
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(spans)
        .try_init();
    Ok(Guard(Some(provider)))
}

/// Logs of an agent process: warnings and errors unless `RUST_LOG` says otherwise.
pub fn init_agent() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
