//! The node's tracing spans, for OpenTelemetry export (`nex node up --otel`; see the CLI's
//! `telemetry` module): `deploy` (with `fetch_artifact` and `start` inside it) and `call`.
//!
//! `call` is at level DEBUG under `nex_node`, so the log output (INFO by default) leaves it out
//! and, with no exporter, creating one is a disabled-callsite check: nothing is allocated on
//! the call path. `deploy` is at INFO, so the node's log lines during a deploy carry its
//! fields. A call's span is made when the call has a concurrency slot (a call waiting for one
//! is not in it) and ends when the caller is answered (it travels in the call's record), so it
//! covers the agent's queue, the call and the answer. A `traceparent` header (W3C Trace
//! Context) on the trigger message makes the call's span a child of the caller's.

use async_nats::HeaderMap;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Reads W3C Trace Context from NATS headers.
struct Headers<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// The span of one call of workload `name` in `namespace`, on `subject`; its `result` and, on
/// failure, `code` are recorded when it is answered ([`record_outcome`]).
pub(crate) fn call(
    namespace: &str,
    name: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
) -> Span {
    let span = tracing::debug_span!(
        "call",
        otel.kind = "server",
        messaging.system = "nats",
        messaging.destination.name = subject,
        nex.namespace = namespace,
        nex.workload = name,
        nex.result = tracing::field::Empty,
        nex.code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(h) = headers
        && h.get("traceparent").is_some()
    {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(h)));
        let _ = span.set_parent(parent);
    }
    span
}

/// Records how a call ended on its span: `succeeded`, or `failed` with the failure code.
pub(crate) fn record_outcome(span: &Span, failed: Option<u16>) {
    if span.is_disabled() {
        return;
    }
    match failed {
        None => {
            span.record("nex.result", "succeeded");
        }
        Some(code) => {
            span.record("nex.result", "failed");
            span.record("nex.code", code);
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The span of one deploy of workload `name` in `namespace`; [`record_deploy`] ends its story.
/// At INFO: deploys are rare, and the node's log lines during one carry its fields.
pub(crate) fn deploy(namespace: &str, name: &str, workload_type: &str) -> Span {
    tracing::info_span!(
        "deploy",
        otel.kind = "server",
        nex.namespace = namespace,
        nex.workload = name,
        nex.workload_type = workload_type,
        nex.workload_id = tracing::field::Empty,
        nex.error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records a deploy's workload id, or its error.
pub(crate) fn record_deploy(span: &Span, result: Result<&str, &dyn std::fmt::Display>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(id) => {
            span.record("nex.workload_id", id);
        }
        Err(e) => {
            span.record("nex.error", tracing::field::display(e));
            span.record("otel.status_code", "ERROR");
        }
    }
}
