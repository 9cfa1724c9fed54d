//! Publishes CloudEvents and log lines on their subjects. Publishing is fire-and-forget: a lost
//! event never fails the work that caused it.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nex_proto::events::{CloudEvent, LogLine};
use nex_proto::subjects;
use serde::Serialize;

/// Emits events and logs for one node.
pub struct Emitter {
    client: async_nats::Client,
    node_id: String,
    /// Event ids are `<start-nanos>-<counter>`: unique per source, cheap to make.
    prefix: String,
    counter: AtomicU64,
}

impl Emitter {
    pub fn new(client: async_nats::Client, node_id: String) -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            client,
            node_id,
            prefix: format!("{start:x}"),
            counter: AtomicU64::new(0),
        }
    }

    /// The id of the node the events come from.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What every event id of this node starts with.
    pub fn id_prefix(&self) -> &str {
        &self.prefix
    }

    /// The counter part of the next event id.
    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes an event already encoded (see [`nex_proto::events::ExecSucceededEncoder`]).
    pub async fn publish_encoded(&self, subject: async_nats::Subject, body: Bytes) {
        if let Err(e) = self.client.publish(subject, body).await {
            tracing::debug!("event not published: {e}");
        }
    }

    /// Publishes event `event_type` in `namespace`.
    pub async fn event<T: Serialize>(&self, namespace: &str, event_type: &str, data: T) {
        let n = self.next_id();
        let ev = CloudEvent::new(
            format!("{}-{n}", self.prefix),
            &self.node_id,
            event_type,
            data,
        );
        match serde_json::to_vec(&ev) {
            Ok(body) => {
                if let Err(e) = self
                    .client
                    .publish(subjects::event(namespace, event_type), Bytes::from(body))
                    .await
                {
                    tracing::debug!("event {event_type} not published: {e}");
                }
            }
            Err(e) => tracing::warn!("event {event_type} not serializable: {e}"),
        }
    }

    /// Publishes a log line of workload `id` on its log subject
    /// ([`nex_proto::subjects::log`], made once per workload).
    pub async fn log(&self, subject: &async_nats::Subject, id: &str, level: &str, text: &str) {
        let line = LogLine {
            text: text.into(),
            level: level.into(),
            id: id.into(),
        };
        if let Ok(body) = serde_json::to_vec(&line) {
            let _ = self
                .client
                .publish(subject.clone(), Bytes::from(body))
                .await;
        }
    }
}
