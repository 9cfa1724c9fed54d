//! The object-store service over a JetStream object store of the workload's own.

use std::future::Future;

use futures::StreamExt;
use nex_connect::Replicas;
use nex_connect::replicas::object_store_stream;
use nex_hostapi::GuestError;
use nex_hostapi::object_store::ObjectInfo;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

/// A workload's object store.
///
/// Every method runs on the node's tokio runtime, in the task the node spawns for one host call,
/// so calls of one workload overlap. Methods await the network and never block the thread.
/// Arguments are already validated ([`nex_hostapi::Call::validate`]).
pub trait ObjectStore {
    /// The object `name`, `None` when there is none.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<Vec<u8>>, GuestError>> + Send;
    /// Stores `data` as `name`, replacing any object of that name.
    fn put(
        &self,
        name: &str,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<ObjectInfo, GuestError>> + Send;
    /// Deletes the object `name`.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), GuestError>> + Send;
    /// Every object's metadata.
    fn list(&self) -> impl Future<Output = Result<Vec<ObjectInfo>, GuestError>> + Send;
}

/// [`ObjectStore`] over the JetStream object store `bucket`, created on first use with
/// `replicas` copies ([`nex_connect::replicas`]).
pub struct NatsObjectStore {
    js: async_nats::jetstream::Context,
    bucket: String,
    replicas: Replicas,
    store: OnceCell<async_nats::jetstream::object_store::ObjectStore>,
}

fn info(i: async_nats::jetstream::object_store::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        // async-nats serializes its time type as RFC 3339 (whichever time crate it was built with).
        modified: i
            .modified
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        digest: i.digest,
        name: i.name,
        size: i.size as u64,
        bucket: i.bucket,
        nuid: i.nuid,
        chunks: i.chunks as u64,
        deleted: i.deleted,
    }
}

impl NatsObjectStore {
    pub fn new(js: async_nats::jetstream::Context, bucket: String, replicas: Replicas) -> Self {
        Self {
            js,
            bucket,
            replicas,
            store: OnceCell::new(),
        }
    }

    /// The store's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn store(&self) -> Result<&async_nats::jetstream::object_store::ObjectStore, GuestError> {
        self.store
            .get_or_try_init(|| async {
                let unavailable = |e: &dyn std::fmt::Display| {
                    GuestError::unavailable(format!(
                        "object store {} is not available: {e}",
                        self.bucket
                    ))
                };
                // The stream an object store is, made as `create_object_store` makes it (or
                // its copies raised), with the node's replica policy.
                nex_connect::replicas::get_or_create_stream(
                    &self.js,
                    object_store_stream(&self.bucket),
                    self.replicas,
                )
                .await
                .map_err(|e| unavailable(&e))?;
                self.js
                    .get_object_store(&self.bucket)
                    .await
                    .map_err(|e| unavailable(&e))
            })
            .await
    }
}

impl ObjectStore for NatsObjectStore {
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, GuestError> {
        let failed = |e: &dyn std::fmt::Display| {
            GuestError::unavailable(format!("objectStore.get {name}: {e}"))
        };
        match self.store().await?.get(name).await {
            Ok(mut object) => {
                let mut bytes = Vec::with_capacity(object.info().size);
                object
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(failed(&e)),
        }
    }

    async fn put(&self, name: &str, data: Vec<u8>) -> Result<ObjectInfo, GuestError> {
        let mut reader = data.as_slice();
        self.store()
            .await?
            .put(name, &mut reader)
            .await
            .map(info)
            .map_err(|e| GuestError::unavailable(format!("objectStore.put {name}: {e}")))
    }

    async fn delete(&self, name: &str) -> Result<(), GuestError> {
        self.store()
            .await?
            .delete(name)
            .await
            .map_err(|e| GuestError::unavailable(format!("objectStore.delete {name}: {e}")))
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>, GuestError> {
        let failed =
            |e: &dyn std::fmt::Display| GuestError::unavailable(format!("objectStore.list: {e}"));
        let mut list = self.store().await?.list().await.map_err(|e| failed(&e))?;
        let mut out = Vec::new();
        while let Some(i) = list.next().await {
            out.push(info(i.map_err(|e| failed(&e))?));
        }
        Ok(out)
    }
}
