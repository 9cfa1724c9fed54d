//! Host services: what a function can do beyond computing a reply, performed by the **node** on
//! the function's behalf (the function never holds NATS credentials).
//!
//! This crate owns the semantics of each operation and its per-workload scope: a key-value
//! bucket `hs_<len(ns)>_<ns>_<name>_kv` and an object store
//! `hs_<len(ns)>_<ns>_<name>_obj` (`nex_proto::names`), both created on first use with
//! `min(3, cluster size)` copies unless the node says otherwise (`nex_connect::replicas`), core messaging outside the
//! reserved subjects, and an HTTP client within the node's policy. The calls, replies, errors and
//! argument rules are `nex-hostapi`'s; this crate performs them. It is plain async Rust over
//! async-nats and knows nothing of QuickJS, wasmtime or the agent protocol.
//!
//! # Layout
//! - [`HostServices::call`]: validates a [`Call`] and hands it to its service.
//! - [`kv`], [`object_store`], [`messaging`], [`http_service`]: one module per service, each a
//!   trait (whose docs say where its methods run and whether they may block) and its
//!   implementation over NATS (or the node's HTTP client).
//! - [`http`]: the HTTP client itself.

pub mod http;
pub mod http_service;
pub mod kv;
pub mod messaging;
pub mod object_store;

pub use http::HttpPolicy;

use std::time::Duration;

use nex_hostapi::{Call, CallResult, GuestError, Reply};

use crate::http_service::Http;
use crate::kv::KeyValue;
use crate::messaging::Messaging;
use crate::object_store::ObjectStore;

/// The host services of one workload.
pub struct HostServices {
    kv: kv::NatsKv,
    obj: object_store::NatsObjectStore,
    messaging: messaging::NatsMessaging,
    http: http_service::HttpClient,
}

impl HostServices {
    /// Host services for workload `name` in `namespace`; its buckets, created on first use, get
    /// `min(3, cluster size)` copies ([`nex_connect::Replicas::Auto`]).
    pub fn new(client: async_nats::Client, namespace: &str, name: &str) -> Self {
        Self::with_replicas(client, namespace, name, nex_connect::Replicas::Auto)
    }

    /// Host services whose buckets, created on first use, get `replicas` copies.
    pub fn with_replicas(
        client: async_nats::Client,
        namespace: &str,
        name: &str,
        replicas: nex_connect::Replicas,
    ) -> Self {
        let js = async_nats::jetstream::new(client.clone());
        let buckets = nex_proto::names::workload_buckets(namespace, name);
        Self {
            kv: kv::NatsKv::new(js.clone(), buckets.kv, replicas),
            obj: object_store::NatsObjectStore::new(js, buckets.object, replicas),
            messaging: messaging::NatsMessaging::new(client),
            http: http_service::HttpClient {
                policy: HttpPolicy::default(),
            },
        }
    }

    /// Restricts the HTTP client's hosts.
    pub fn with_http_policy(mut self, policy: HttpPolicy) -> Self {
        self.http.policy = policy;
        self
    }

    /// The workload's key-value bucket name.
    pub fn kv_bucket(&self) -> &str {
        self.kv.bucket()
    }

    /// The workload's object-store bucket name.
    pub fn object_bucket(&self) -> &str {
        self.obj.bucket()
    }

    /// Performs one call: checks its arguments ([`Call::validate`]) before anything is sent to
    /// NATS, then hands it to its service. Runs on the node's tokio runtime, in the task spawned
    /// for this call; it awaits the network and never blocks the thread.
    pub async fn call(&self, call: Call) -> CallResult {
        call.validate()?;
        match call {
            Call::Kv(c) => self.kv_call(c).await,
            Call::ObjectStore(c) => self.object_call(c).await,
            Call::Messaging(c) => self.messaging_call(c).await,
            Call::Http(c) => self.http.request(c).await.map(Reply::Http),
        }
    }

    async fn kv_call(&self, call: nex_hostapi::kv::Call) -> CallResult {
        use nex_hostapi::kv::Call;
        Ok(match call {
            Call::Get { key } => Reply::Value(self.kv.get(&key).await?),
            Call::Set { key, value } => self.kv.set(&key, value).await.map(|()| Reply::Done)?,
            Call::Delete { key } => self.kv.delete(&key).await.map(|()| Reply::Done)?,
            Call::Keys => Reply::Keys(self.kv.keys().await?),
            Call::Increment { key, delta } => Reply::Count(self.kv.increment(&key, delta).await?),
        })
    }

    async fn object_call(&self, call: nex_hostapi::object_store::Call) -> CallResult {
        use nex_hostapi::object_store::Call;
        Ok(match call {
            Call::Get { name } => Reply::Value(self.obj.get(&name).await?),
            Call::Put { name, data } => Reply::Object(self.obj.put(&name, data).await?),
            Call::Delete { name } => self.obj.delete(&name).await.map(|()| Reply::Done)?,
            Call::List => Reply::Objects(self.obj.list().await?),
        })
    }

    async fn messaging_call(&self, call: nex_hostapi::messaging::Call) -> CallResult {
        use nex_hostapi::messaging::{Call, MAX_REPLIES, MAX_TIMEOUT_MS};
        let timeout = |ms: Option<u64>| {
            ms.map(|ms| Duration::from_millis(ms.min(MAX_TIMEOUT_MS)))
                .unwrap_or(messaging::REQUEST_TIMEOUT)
        };
        Ok(match call {
            Call::Publish { subject, payload } => {
                self.messaging.publish(&subject, payload).await?;
                Reply::Done
            }
            Call::Request {
                subject,
                payload,
                timeout_ms,
            } => Reply::Message(
                self.messaging
                    .request(&subject, payload, timeout(timeout_ms))
                    .await?,
            ),
            Call::RequestMany {
                subject,
                payload,
                timeout_ms,
                max,
            } => {
                let max = max.map_or(messaging::REQUEST_MANY_MAX, |m| {
                    m.clamp(1, MAX_REPLIES) as usize
                });
                Reply::Messages(
                    self.messaging
                        .request_many(&subject, payload, timeout(timeout_ms), max)
                        .await?,
                )
            }
        })
    }
}

/// A call's bytes as the agent sent them to the encoded result the agent expects back: the one
/// entry point of the node's host-call path. Bytes that are not a call are an invalid argument.
pub async fn call_encoded(host: &HostServices, call: &[u8]) -> Vec<u8> {
    let result = match nex_hostapi::decode_call(call) {
        Ok(call) => host.call(call).await,
        Err(e) => Err(GuestError::invalid_argument(format!(
            "the host call is not one this node knows: {e}"
        ))),
    };
    nex_hostapi::encode_result(&result)
}
