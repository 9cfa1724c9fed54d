//! Typed client for the nex control plane over NATS.
//!
//! This crate owns talking to nodes: pings and auctions that gather many answers, requests to one
//! node, uploading artifacts to the object store, and `devrun` (upload + auction + deploy in one
//! call; a `.py` file is first built into a component, see [`python`]). The CLI, the benchmark and the tests all use it; it never formats subjects itself
//! (see [`nex_proto::subjects`]).

pub mod deployments;
pub mod devrun;
mod error;
pub mod keys;
pub mod python;
mod resolve;

pub use error::{BoxError, Error, ErrorKind, Result};
pub use resolve::Located;

/// Connecting to NATS with servers, credentials and TLS as every NATS tool takes them.
pub use nex_connect as connect;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use nex_proto::control::*;
use nex_proto::subjects;

use crate::keys::SenderKeys;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A control-plane client bound to one namespace.
#[derive(Clone)]
pub struct NexClient {
    client: async_nats::Client,
    namespace: String,
    timeout: Duration,
    /// Signs reads (info, workload ping) and lame-duck requests; without keys, reads get the
    /// public node summary only.
    keys: Option<Arc<SenderKeys>>,
    /// Copies of the buckets this client creates (`NEXCLIFILES`).
    bucket_replicas: nex_connect::Replicas,
    /// Told how far uploads have got.
    upload_progress: Option<UploadProgress>,
}

/// Called as an upload goes with `(bytes sent, total bytes)`, on the task that uploads; it must
/// not block.
pub type UploadProgress = Arc<dyn Fn(u64, u64) + Send + Sync>;

impl NexClient {
    /// A client for `namespace` waiting up to `timeout` for answers.
    pub fn new(
        client: async_nats::Client,
        namespace: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            timeout,
            keys: None,
            bucket_replicas: nex_connect::Replicas::Auto,
            upload_progress: None,
        }
    }

    /// The same client, telling `progress` how far each upload has got.
    pub fn with_upload_progress(mut self, progress: UploadProgress) -> Self {
        self.upload_progress = Some(progress);
        self
    }

    /// The same client, signing with `keys` the requests that need a signature.
    pub fn with_keys(mut self, keys: Arc<SenderKeys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Copies of the buckets this client creates (default: `min(3, cluster size)`).
    pub fn with_bucket_replicas(mut self, replicas: nex_connect::Replicas) -> Self {
        self.bucket_replicas = replicas;
        self
    }

    /// The `Nex-Jwt` header carrying `token`.
    fn jwt_headers(token: Option<String>) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        if let Some(t) = token {
            h.insert(nex_proto::HEADER_JWT, t.as_str());
        }
        h
    }

    /// A read token for this client's namespace, when it has keys.
    fn read_token(&self) -> Result<Option<String>> {
        self.keys
            .as_ref()
            .map(|k| k.read_token(&self.namespace))
            .transpose()
    }

    /// The underlying NATS client.
    pub fn nats(&self) -> &async_nats::Client {
        &self.client
    }

    /// The namespace requests go to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Publishes `body` on `subject` and gathers every answer until the timeout, or until a short
    /// quiet period after the last answer.
    async fn gather<T: DeserializeOwned>(
        &self,
        subject: &str,
        headers: async_nats::HeaderMap,
        body: Bytes,
    ) -> Result<Vec<T>> {
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Error::nats("subscribing to the answers' inbox", e))?;
        self.client
            .publish_with_reply_and_headers(subject.to_owned(), inbox, headers, body)
            .await
            .map_err(|e| Error::nats(format!("publishing on {subject}"), e))?;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let quiet = Duration::from_millis(250);
        // Nodes say how many nodes they hear (`known_nodes`): until that many have answered,
        // a quiet period does not end the gathering (a node on a slow link is still coming).
        let mut expected = 0usize;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = if out.is_empty() || out.len() < expected {
                left
            } else {
                quiet.min(left)
            };
            match tokio::time::timeout(wait, sub.next()).await {
                Ok(Some(msg)) => {
                    if msg.payload.is_empty() {
                        continue; // "no responders" status
                    }
                    let bad = |source: serde_json::Error| Error::BadAnswer {
                        subject: subject.to_owned(),
                        source,
                    };
                    let env: Envelope<serde_json::Value> =
                        serde_json::from_slice(&msg.payload).map_err(bad)?;
                    if let Ok(d) = env.into_result() {
                        if let Some(n) = d.get("known_nodes").and_then(|n| n.as_u64()) {
                            expected = expected.max(n as usize);
                        }
                        out.push(serde_json::from_value(d).map_err(bad)?);
                    }
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Sends `body` to one node and returns its answer.
    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        subject: String,
        body: &B,
    ) -> Result<T> {
        let payload =
            Bytes::from(serde_json::to_vec(body).map_err(|e| {
                Error::Invalid(format!("cannot encode the request to {subject}: {e}"))
            })?);
        self.request_raw(subject, None, payload).await
    }

    async fn request_raw<T: DeserializeOwned>(
        &self,
        subject: String,
        token: Option<String>,
        payload: Bytes,
    ) -> Result<T> {
        self.request_within(subject, token, payload, self.timeout)
            .await
    }

    /// [`request_raw`](Self::request_raw), waiting up to `timeout`.
    async fn request_within<T: DeserializeOwned>(
        &self,
        subject: String,
        token: Option<String>,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<T> {
        let req = async_nats::Request::new()
            .payload(payload)
            .headers(Self::jwt_headers(token))
            .timeout(Some(timeout));
        let msg = self
            .client
            .send_request(subject.clone(), req)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => Error::NoResponders {
                    subject: subject.clone(),
                },
                async_nats::RequestErrorKind::TimedOut => Error::TimedOut {
                    subject: subject.clone(),
                    timeout,
                },
                _ => Error::nats(format!("requesting {subject}"), e),
            })?;
        let env: Envelope<T> =
            serde_json::from_slice(&msg.payload).map_err(|source| Error::BadAnswer {
                subject: subject.clone(),
                source,
            })?;
        Ok(env.into_outcome()?)
    }

    /// Every node's ping answer.
    pub async fn ping(&self) -> Result<Vec<PingResponse>> {
        self.gather(subjects::PING, Default::default(), Bytes::new())
            .await
    }

    /// Nodes that match `req`.
    pub async fn auction(&self, req: &AuctionRequest) -> Result<Vec<PingResponse>> {
        let body = Bytes::from(
            serde_json::to_vec(req)
                .map_err(|e| Error::Invalid(format!("cannot encode the auction: {e}")))?,
        );
        self.gather(subjects::AUCTION, Default::default(), body)
            .await
    }

    /// Nodes running a workload of this namespace that this client's issuer deployed
    /// (optionally with this id or name). Unsigned, no node answers.
    pub async fn workload_ping(&self, workload: Option<&str>) -> Result<Vec<WorkloadPingResponse>> {
        self.gather(
            &subjects::workload_ping(&self.namespace, workload),
            Self::jwt_headers(self.read_token()?),
            Bytes::new(),
        )
        .await
    }

    /// One node's details; its workloads in this namespace that this client's issuer deployed
    /// (all of them for the node's operators; none unsigned).
    pub async fn info(&self, node: &str) -> Result<InfoResponse> {
        self.request_raw(
            subjects::info(&self.namespace, node),
            self.read_token()?,
            Bytes::new(),
        )
        .await
    }

    /// Deploys on `node`.
    pub async fn deploy(&self, node: &str, req: &DeployRequest) -> Result<RunResponse> {
        self.request(subjects::deploy(&self.namespace, node), req)
            .await
    }

    /// Deploys on `node` an artifact of `artifact_bytes` bytes, waiting for the node's load,
    /// which may take longer for a large one: this client's timeout plus [`load_allowance`].
    pub async fn deploy_artifact(
        &self,
        node: &str,
        req: &DeployRequest,
        artifact_bytes: u64,
    ) -> Result<RunResponse> {
        let subject = subjects::deploy(&self.namespace, node);
        let payload =
            Bytes::from(serde_json::to_vec(req).map_err(|e| {
                Error::Invalid(format!("cannot encode the request to {subject}: {e}"))
            })?);
        let wait = self.timeout + load_allowance(artifact_bytes);
        self.request_within(subject, None, payload, wait).await
    }

    /// Stops workload `workload_id` on `node`, signing the request with `keys` (the issuer that
    /// deployed it).
    pub async fn stop(
        &self,
        keys: &SenderKeys,
        node: &str,
        workload_id: &str,
    ) -> Result<StopResponse> {
        let req = StopRequest {
            workload_id: workload_id.to_owned(),
            workload_jwt: Some(keys.stop_token(workload_id)?),
            node_id: Some(node.to_owned()),
        };
        self.request(subjects::stop(&self.namespace, node), &req)
            .await
    }

    /// Puts `node` in lame-duck mode, signed with this client's keys (an operator's).
    pub async fn lameduck(&self, node: &str) -> Result<LameduckResponse> {
        let token = self
            .keys
            .as_ref()
            .map(|k| k.lameduck_token(node))
            .transpose()?;
        self.request_raw(subjects::lameduck(node), token, Bytes::new())
            .await
    }

    /// Uploads `bytes` as `key` in object-store `bucket` (created when missing, with this
    /// client's bucket replicas, by default `min(3, cluster size)`) and returns the
    /// `nats://BUCKET/key` location.
    pub async fn upload(&self, bucket: &str, key: &str, bytes: &[u8]) -> Result<String> {
        let js = async_nats::jetstream::new(self.client.clone());
        // Created, or its copies raised, with this client's replica policy.
        let mut config = nex_connect::replicas::object_store_stream(bucket);
        config.description = Some("artifacts uploaded by nex".into());
        nex_connect::replicas::get_or_create_stream(&js, config, self.bucket_replicas)
            .await
            .map_err(|e| Error::nats(format!("creating object store {bucket}"), e))?;
        let store = js
            .get_object_store(bucket)
            .await
            .map_err(|e| Error::nats(format!("opening object store {bucket}"), e))?;
        let mut reader = Counted {
            inner: bytes,
            sent: 0,
            total: bytes.len() as u64,
            progress: self.upload_progress.clone(),
        };
        store
            .put(key, &mut reader)
            .await
            .map_err(|e| Error::nats(format!("uploading {key} to {bucket}"), e))?;
        Ok(nex_proto::names::artifact_location(bucket, key))
    }

    /// Uploads `bytes` as `<namespace>/<name>` in `NEXCLIFILES` (this client's namespace): the
    /// place in that bucket a node lets this namespace's deploys fetch from. Returns the location.
    pub async fn upload_artifact(&self, name: &str, bytes: &[u8]) -> Result<String> {
        let key = nex_proto::names::artifact_key(&self.namespace, name);
        self.upload(nex_proto::DEVRUN_BUCKET, &key, bytes).await
    }
}

/// A reader that tells an [`UploadProgress`] how much has been read.
struct Counted<'a> {
    inner: &'a [u8],
    sent: u64,
    total: u64,
    progress: Option<UploadProgress>,
}

impl tokio::io::AsyncRead for Counted<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            this.sent += read;
            if let Some(p) = &this.progress {
                p(this.sent, this.total);
            }
        }
        polled
    }
}

/// How much longer than for a small artifact a node may take to load one of `bytes` bytes,
/// by the nodes' default `compile_time_per_mib` ([`LoadDeadline::DEFAULT`]): a client waits
/// this much more for the deploy's answer (54 s for an 18 MiB Python component).
///
/// [`LoadDeadline::DEFAULT`]: nex_proto::control::LoadDeadline::DEFAULT
pub fn load_allowance(bytes: u64) -> Duration {
    let d = nex_proto::control::LoadDeadline::DEFAULT;
    d.for_bytes(bytes).saturating_sub(d.base)
}

/// SHA-256 hex of `bytes`, as deploy requests carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
