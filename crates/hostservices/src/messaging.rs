//! The messaging service: core NATS publish and request on the node's connection.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use nex_hostapi::GuestError;

/// Default time limit of `messaging.request`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `requestMany` stops after this long without a new reply...
pub const REQUEST_MANY_QUIET: Duration = Duration::from_millis(300);
/// ...or after this many replies.
pub const REQUEST_MANY_MAX: usize = 100;

/// Core messaging for a workload.
///
/// Every method runs on the node's tokio runtime, in the task the node spawns for one host call,
/// so calls of one workload overlap. Methods await the network (a request up to its time limit)
/// and never block the thread. Subjects are already validated
/// ([`nex_hostapi::messaging::check_subject`]: no wildcards, nothing reserved).
pub trait Messaging {
    /// Publishes `payload` on `subject`.
    fn publish(
        &self,
        subject: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), GuestError>> + Send;
    /// Sends a request and waits up to `timeout` for one reply.
    fn request(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, GuestError>> + Send;
    /// Sends a request and gathers replies until `max` came, [`REQUEST_MANY_QUIET`] passed
    /// without one (after the first), or `timeout` ran out.
    fn request_many(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, GuestError>> + Send;
}

/// [`Messaging`] over the node's NATS connection.
pub struct NatsMessaging {
    client: async_nats::Client,
}

impl NatsMessaging {
    pub fn new(client: async_nats::Client) -> Self {
        Self { client }
    }
}

impl Messaging for NatsMessaging {
    async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<(), GuestError> {
        self.client
            .publish(subject.to_owned(), payload.into())
            .await
            .map_err(|e| GuestError::unavailable(format!("messaging.publish {subject}: {e}")))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, GuestError> {
        let r = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(timeout));
        let m = self
            .client
            .send_request(subject.to_owned(), r)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    GuestError::unavailable(format!("messaging.request {subject}: no responders"))
                }
                async_nats::RequestErrorKind::TimedOut => GuestError::timeout(format!(
                    "messaging.request {subject}: no reply within {timeout:?}"
                )),
                _ => GuestError::unavailable(format!("messaging.request {subject}: {e}")),
            })?;
        Ok(m.payload.to_vec())
    }

    async fn request_many(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<Vec<u8>>, GuestError> {
        let failed = |e: &dyn std::fmt::Display| {
            GuestError::unavailable(format!("messaging.requestMany {subject}: {e}"))
        };
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| failed(&e))?;
        self.client
            .publish_with_reply(subject.to_owned(), inbox, payload.into())
            .await
            .map_err(|e| failed(&e))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut replies = Vec::new();
        while replies.len() < max {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = if replies.is_empty() {
                left
            } else {
                REQUEST_MANY_QUIET.min(left)
            };
            match tokio::time::timeout(wait, sub.next()).await {
                Ok(Some(m)) if m.status.is_none() => replies.push(m.payload.to_vec()),
                Ok(Some(_)) => break, // "no responders" status
                _ => break,
            }
        }
        Ok(replies)
    }
}
