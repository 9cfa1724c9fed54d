//! The key-value service over a JetStream KV bucket of the workload's own.

use std::future::Future;

use futures::StreamExt;
use nex_connect::Replicas;
use nex_hostapi::GuestError;
use tokio::sync::OnceCell;

/// A workload's key-value store.
///
/// Every method runs on the node's tokio runtime, in the task the node spawns for one host call
/// (`nex_node::agent::host_reply_frame`), so calls of one workload overlap. Methods await the
/// network and never block the thread. Arguments are already validated
/// ([`nex_hostapi::Call::validate`]).
pub trait KeyValue {
    /// The value of `key`, `None` when it has none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, GuestError>> + Send;
    /// Sets `key` to `value`.
    fn set(&self, key: &str, value: Vec<u8>)
    -> impl Future<Output = Result<(), GuestError>> + Send;
    /// Deletes `key` (a no-op when it has no value).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), GuestError>> + Send;
    /// Every key, sorted.
    fn keys(&self) -> impl Future<Output = Result<Vec<String>, GuestError>> + Send;
    /// Atomically adds `delta` to the number `key` holds (decimal digits; none = 0) and returns
    /// the sum, which is stored the same way.
    fn increment(
        &self,
        key: &str,
        delta: u64,
    ) -> impl Future<Output = Result<u64, GuestError>> + Send;
}

/// Tries of `kv.increment`'s compare-and-set before it gives up (each lost try means another
/// writer changed the key between our read and our write).
const INCREMENT_TRIES: usize = 64;

/// Entries asked for at a time when listing keys.
const KEYS_BATCH: usize = 1024;

/// [`KeyValue`] over the JetStream KV bucket `bucket`, created on first use with `replicas`
/// copies ([`nex_connect::replicas`]).
pub struct NatsKv {
    js: async_nats::jetstream::Context,
    bucket: String,
    replicas: Replicas,
    store: OnceCell<async_nats::jetstream::kv::Store>,
}

impl NatsKv {
    pub fn new(js: async_nats::jetstream::Context, bucket: String, replicas: Replicas) -> Self {
        Self {
            js,
            bucket,
            replicas,
            store: OnceCell::new(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn store(&self) -> Result<&async_nats::jetstream::kv::Store, GuestError> {
        self.store
            .get_or_try_init(|| async {
                // The stream a KV bucket is, made directly (or its copies raised, see
                // `nex_connect::replicas`): `create_key_value` first asks for account info,
                // whose shape older servers (2.9) answer differently.
                let unavailable = |e: &dyn std::fmt::Display| {
                    GuestError::unavailable(format!(
                        "key-value bucket {} is not available: {e}",
                        self.bucket
                    ))
                };
                nex_connect::replicas::get_or_create_stream(
                    &self.js,
                    nex_connect::replicas::key_value_stream(&self.bucket, 1),
                    self.replicas,
                )
                .await
                .map_err(|e| unavailable(&e))?;
                self.js
                    .get_key_value(&self.bucket)
                    .await
                    .map_err(|e| unavailable(&e))
            })
            .await
    }
}

impl KeyValue for NatsKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, GuestError> {
        match self.store().await?.get(key).await {
            Ok(v) => Ok(v.map(|v| v.to_vec())),
            Err(e) => Err(GuestError::unavailable(format!("kv.get {key}: {e}"))),
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), GuestError> {
        self.store()
            .await?
            .put(key, value.into())
            .await
            .map(drop)
            .map_err(|e| GuestError::unavailable(format!("kv.set {key}: {e}")))
    }

    async fn delete(&self, key: &str) -> Result<(), GuestError> {
        self.store()
            .await?
            .delete(key)
            .await
            .map_err(|e| GuestError::unavailable(format!("kv.delete {key}: {e}")))
    }

    /// Reads the key's entry and writes the sum only if the key is still at that revision
    /// (`create` when it has no value); a lost race reads again.
    async fn increment(&self, key: &str, delta: u64) -> Result<u64, GuestError> {
        use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
        const OP: &str = "kv.increment";
        let failed =
            |e: &dyn std::fmt::Display| GuestError::unavailable(format!("{OP} {key}: {e}"));
        let store = self.store().await?;
        for _ in 0..INCREMENT_TRIES {
            let entry = store.entry(key).await.map_err(|e| failed(&e))?;
            let live = entry.as_ref().filter(|e| e.operation == Operation::Put);
            let count = nex_hostapi::kv::parse_count(OP, key, live.map(|e| &e.value[..]))?;
            let sum = nex_hostapi::kv::add_count(OP, key, count, delta)?;
            let value = sum.to_string().into_bytes().into();
            let written = match live {
                Some(e) => match store.update(key, value, e.revision).await {
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => false,
                    other => other.map(|_| true).map_err(|e| failed(&e))?,
                },
                None => match store.create(key, value).await {
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => false,
                    other => other.map(|_| true).map_err(|e| failed(&e))?,
                },
            };
            if written {
                return Ok(sum);
            }
        }
        Err(GuestError::unavailable(format!(
            "{OP} {key}: {INCREMENT_TRIES} concurrent writers won the race in a row"
        )))
    }

    /// The bucket's keys, read with a pull consumer that delivers the last entry of each key and
    /// is asked with `no_wait` until it has nothing more. (async-nats's `Store::keys` waits for
    /// a 5 s idle heartbeat whenever a concurrent write overwrites an entry it had counted as
    /// pending: four callers of a counter that lists its keys stalled for 5 s each.)
    async fn keys(&self) -> Result<Vec<String>, GuestError> {
        use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
        let failed = |e: &dyn std::fmt::Display| GuestError::unavailable(format!("kv.keys: {e}"));
        let store = self.store().await?;
        let consumer = store
            .stream
            .create_consumer(pull::Config {
                filter_subject: format!("{}>", store.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ack_policy: AckPolicy::None,
                headers_only: true,
                memory_storage: true,
                inactive_threshold: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        // Key -> present; a later entry of a key (a write or delete meanwhile) wins.
        let mut keys = std::collections::BTreeMap::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(KEYS_BATCH)
                .messages()
                .await
                .map_err(|e| failed(&e))?;
            let mut got = 0;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| failed(&e))?;
                got += 1;
                let Some(key) = m.subject.strip_prefix(store.prefix.as_str()) else {
                    continue;
                };
                let removed = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                keys.insert(key.to_owned(), !removed);
            }
            if got < KEYS_BATCH {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        let stream = store.stream.clone();
        // The consumer goes at once (it would also expire by itself when idle).
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        Ok(keys
            .into_iter()
            .filter_map(|(k, present)| present.then_some(k))
            .collect())
    }
}
