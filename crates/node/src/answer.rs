//! Finishing a call: the reply (or the service-error headers) to the caller and the
//! `function_exec_succeeded` / `function_exec_failed` event.
//!
//! A call is a small record ([`Call`]) kept in the agent connection's pending table; the task that
//! reads the agent's frames answers it as soon as its reply frame arrives. No task, future or
//! channel is made per call, and the per-call event is encoded from a template fixed at deploy.
//! The node's `call_events` setting decides which calls publish an event; every call is counted
//! (`succeeded_calls`, `failed_calls` in node info) either way.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{HeaderMap, HeaderName, HeaderValue, Subject};
use bytes::Bytes;
use nex_proto::agent_wire::FailureCode;
use nex_proto::events::{self, ExecSucceededEncoder, FunctionExecFailed};
use nex_proto::{HEADER_RUNTIME_NS, HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE, subjects};
use tokio::sync::OwnedSemaphorePermit;

use crate::config::CallEvents;
use crate::emitter::Emitter;

/// Outcome of one invocation.
#[derive(Debug)]
pub enum Outcome {
    Reply { elapsed_nanos: u64, reply: Vec<u8> },
    Failed { code: FailureCode, message: String },
}

impl Outcome {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Outcome::Failed {
            code: FailureCode::Unavailable,
            message: message.into(),
        }
    }
}

/// One trigger message being handled.
pub struct Call {
    /// The subject the message arrived on (the function's `argv[1]`).
    pub trigger: Subject,
    /// Where the caller waits, if it does.
    pub reply_to: Option<Subject>,
    /// The workload's concurrency slot, given back when the call is answered.
    pub permit: OwnedSemaphorePermit,
    /// When the node took the message: the call's latency, as the node sees it, ends at its
    /// answer.
    pub started: std::time::Instant,
    /// Its `call` span ([`crate::spans`]; disabled unless spans are exported), ended here.
    pub span: tracing::Span,
}

/// Answers the calls of one workload.
pub struct Answerer {
    client: async_nats::Client,
    emitter: Arc<Emitter>,
    namespace: String,
    name: String,
    id: String,
    succeeded: ExecSucceededEncoder,
    succeeded_subject: Subject,
    events: CallEvents,
    succeeded_calls: AtomicU64,
    failed_calls: AtomicU64,
    /// Failed calls by code, and the latency of answered calls (the Prometheus endpoint).
    stats: crate::metrics::CallStats,
}

impl Answerer {
    pub fn new(
        client: async_nats::Client,
        emitter: Arc<Emitter>,
        namespace: &str,
        name: &str,
        id: &str,
        events: CallEvents,
    ) -> Self {
        Self {
            events,
            succeeded_calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            stats: crate::metrics::CallStats::default(),
            succeeded: ExecSucceededEncoder::new(
                emitter.id_prefix(),
                emitter.node_id(),
                namespace,
                name,
                id,
            ),
            succeeded_subject: subjects::event(namespace, events::FUNCTION_EXEC_SUCCEEDED).into(),
            client,
            emitter,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            id: id.to_owned(),
        }
    }

    /// Calls answered with a reply, and calls that failed (including refused ones), so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.succeeded_calls.load(Ordering::Relaxed),
            self.failed_calls.load(Ordering::Relaxed),
        )
    }

    /// Failed calls by code and the latency of answered calls.
    pub fn stats(&self) -> &crate::metrics::CallStats {
        &self.stats
    }

    /// Sends the caller its answer, counts the call and emits its event if `call_events` says so.
    pub async fn answer(&self, call: Call, outcome: Outcome) {
        let Call {
            trigger,
            reply_to,
            permit,
            started,
            span,
        } = call;
        crate::spans::record_outcome(
            &span,
            match &outcome {
                Outcome::Reply { .. } => None,
                Outcome::Failed { code, .. } => Some(*code as u16),
            },
        );
        match outcome {
            Outcome::Reply {
                elapsed_nanos,
                reply,
            } => {
                if let Some(to) = reply_to
                    && !reply.is_empty()
                {
                    let mut headers = HeaderMap::new();
                    headers.insert(RUNTIME_NS.clone(), runtime_ns_value(elapsed_nanos));
                    let _ = self
                        .client
                        .publish_with_headers(to, headers, Bytes::from(reply))
                        .await;
                }
                self.succeeded_calls.fetch_add(1, Ordering::Relaxed);
                if self.events.on_success() {
                    let mut body = Vec::new();
                    self.succeeded.encode(
                        self.emitter.next_id(),
                        std::time::SystemTime::now(),
                        &trigger,
                        elapsed_nanos,
                        &mut body,
                    );
                    self.emitter
                        .publish_encoded(self.succeeded_subject.clone(), Bytes::from(body))
                        .await;
                }
            }
            Outcome::Failed { code, message } => {
                if let Some(to) = reply_to {
                    let mut headers = HeaderMap::new();
                    headers.insert(HEADER_SERVICE_ERROR, one_line(&message).as_str());
                    headers.insert(
                        HEADER_SERVICE_ERROR_CODE,
                        (code as u16).to_string().as_str(),
                    );
                    let _ = self
                        .client
                        .publish_with_headers(to, headers, Bytes::new())
                        .await;
                }
                self.stats.failed(code);
                self.failed_event(&trigger, code, message).await;
            }
        }
        self.stats.observe(started.elapsed());
        drop(permit);
    }

    /// Reports a call the node refused before it reached the agent. Nobody is answered (the
    /// reply subject is what was refused); only `function_exec_failed` says why.
    pub async fn refused(&self, trigger: &str, code: FailureCode, message: String) {
        self.stats.failed(code);
        self.failed_event(trigger, code, message).await;
    }

    async fn failed_event(&self, trigger: &str, code: FailureCode, message: String) {
        self.failed_calls.fetch_add(1, Ordering::Relaxed);
        if !self.events.on_failure() {
            return;
        }
        self.emitter
            .event(
                &self.namespace,
                events::FUNCTION_EXEC_FAILED,
                FunctionExecFailed {
                    workload_name: Cow::Borrowed(&self.name),
                    workload_id: Cow::Borrowed(&self.id),
                    trigger_subject: Cow::Borrowed(trigger),
                    namespace: Cow::Borrowed(&self.namespace),
                    error: message,
                    code: code as u16,
                },
            )
            .await;
    }
}

/// The name of the timing header, made once: a name built from a `&str` is validated and
/// copied on every reply.
static RUNTIME_NS: HeaderName = HeaderName::from_static(HEADER_RUNTIME_NS);

/// The timing header's value in one allocation (`to_string` and then a copy took two).
fn runtime_ns_value(nanos: u64) -> HeaderValue {
    let mut digits = Vec::with_capacity(20);
    events::push_decimal(&mut digits, nanos);
    HeaderValue::from(String::from_utf8(digits).unwrap_or_default())
}

/// Header values cannot hold line breaks.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    flat.chars().take(1024).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_ns_values_are_plain_decimals() {
        for n in [0, 7, 10, 18_250, u64::MAX] {
            assert_eq!(super::runtime_ns_value(n).as_str(), n.to_string());
        }
    }
}
