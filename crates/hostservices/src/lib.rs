//! Host services: what a function can do beyond computing a reply, performed by the **node** on
//! the function's behalf (the function never holds NATS credentials).
//!
//! This crate owns the semantics of each operation and its per-workload scope: a key-value
//! bucket `hs_<namespace>_<workload_name>_kv` and an object store
//! `hs_<namespace>_<workload_name>_obj`, both created on first use, and core messaging that
//! refuses system subjects. It is plain async Rust over async-nats and knows nothing of QuickJS,
//! wasmtime or the agent protocol beyond the [`HostRequest`]/[`HostResult`] data types.

pub mod http;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use nex_proto::agent_wire::{HostRequest, HostResult};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

/// Subjects a function may not publish or send requests to.
pub const RESERVED_PREFIXES: &[&str] = &["$NEX", "$SYS", "$JS", "$KV", "$O"];
/// Default time limit of `messaging.request`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `requestMany` stops after this long without a new reply...
pub const REQUEST_MANY_QUIET: Duration = Duration::from_millis(300);
/// ...or after this many replies.
pub const REQUEST_MANY_MAX: usize = 100;

/// The host services of one workload.
pub struct HostServices {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    kv_bucket: String,
    obj_bucket: String,
    kv: OnceCell<async_nats::jetstream::kv::Store>,
    obj: OnceCell<async_nats::jetstream::object_store::ObjectStore>,
    http: HttpPolicy,
}

/// Which hosts the HTTP client may reach: none of `deny`, and only `allow` when it is not empty.
/// Names are compared case-insensitively, exactly (no wildcards).
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl HttpPolicy {
    /// May the client connect to `host`?
    pub fn permits(&self, host: &str) -> bool {
        let is = |h: &String| h.eq_ignore_ascii_case(host);
        !self.deny.iter().any(is) && (self.allow.is_empty() || self.allow.iter().any(is))
    }
}

/// A failed call; the text is what the function's exception says.
pub type CallResult = Result<HostResult, String>;

fn arg<'a>(req: &'a HostRequest, name: &str) -> Result<&'a str, String> {
    req.args
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{}: missing string argument `{name}`", req.op))
}

fn data(req: &HostRequest, i: usize) -> Bytes {
    req.data
        .get(i)
        .cloned()
        .map(Bytes::from)
        .unwrap_or_default()
}

fn ok(value: Value, data: Vec<Vec<u8>>) -> CallResult {
    Ok(HostResult { value, data })
}

/// Refuses subjects under the reserved prefixes (and malformed ones).
pub fn check_subject(subject: &str) -> Result<(), String> {
    nex_proto::validate::subject(subject)?;
    if subject.contains('*') || subject.contains('>') {
        return Err(format!("cannot publish to wildcard subject `{subject}`"));
    }
    for p in RESERVED_PREFIXES {
        if subject == *p || subject.starts_with(&format!("{p}.")) {
            return Err(format!(
                "functions may not publish to `{subject}`: `{p}.>` is reserved"
            ));
        }
    }
    Ok(())
}

fn timeout_arg(req: &HostRequest) -> Duration {
    req.args
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .map(Duration::from_millis)
        .unwrap_or(REQUEST_TIMEOUT)
        .min(Duration::from_secs(60))
}

impl HostServices {
    /// Host services for workload `name` in `namespace`.
    pub fn new(client: async_nats::Client, namespace: &str, name: &str) -> Self {
        Self {
            js: async_nats::jetstream::new(client.clone()),
            client,
            kv_bucket: format!("hs_{namespace}_{name}_kv"),
            obj_bucket: format!("hs_{namespace}_{name}_obj"),
            kv: OnceCell::new(),
            obj: OnceCell::new(),
            http: HttpPolicy::default(),
        }
    }

    /// Restricts the HTTP client's hosts.
    pub fn with_http_policy(mut self, policy: HttpPolicy) -> Self {
        self.http = policy;
        self
    }

    /// The workload's key-value bucket name.
    pub fn kv_bucket(&self) -> &str {
        &self.kv_bucket
    }

    /// The workload's object-store bucket name.
    pub fn object_bucket(&self) -> &str {
        &self.obj_bucket
    }

    async fn kv(&self) -> Result<&async_nats::jetstream::kv::Store, String> {
        self.kv
            .get_or_try_init(|| async {
                if let Ok(s) = self.js.get_key_value(&self.kv_bucket).await {
                    return Ok(s);
                }
                // The stream a KV bucket is, made directly: `create_key_value` first asks for
                // account info, whose shape older servers (2.9) answer differently.
                use async_nats::jetstream::stream;
                let unavailable = |e: &dyn std::fmt::Display| {
                    format!("key-value bucket {} is not available: {e}", self.kv_bucket)
                };
                self.js
                    .get_or_create_stream(stream::Config {
                        name: format!("KV_{}", self.kv_bucket),
                        subjects: vec![format!("$KV.{}.>", self.kv_bucket)],
                        max_messages_per_subject: 1,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        discard: stream::DiscardPolicy::New,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.js
                    .get_key_value(&self.kv_bucket)
                    .await
                    .map_err(|e| unavailable(&e))
            })
            .await
    }

    async fn obj(&self) -> Result<&async_nats::jetstream::object_store::ObjectStore, String> {
        self.obj
            .get_or_try_init(|| async {
                if let Ok(s) = self.js.get_object_store(&self.obj_bucket).await {
                    return Ok(s);
                }
                self.js
                    .create_object_store(async_nats::jetstream::object_store::Config {
                        bucket: self.obj_bucket.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("object store {} is not available: {e}", self.obj_bucket))
            })
            .await
    }

    /// Performs one call.
    pub async fn call(&self, req: &HostRequest) -> CallResult {
        match req.op.as_str() {
            "kv.get" => {
                let key = arg(req, "key")?;
                match self.kv().await?.get(key).await {
                    Ok(Some(v)) => ok(json!({"found": true}), vec![v.to_vec()]),
                    Ok(None) => ok(json!({"found": false}), vec![]),
                    Err(e) => Err(format!("kv.get {key}: {e}")),
                }
            }
            "kv.set" => {
                let key = arg(req, "key")?;
                self.kv()
                    .await?
                    .put(key, data(req, 0))
                    .await
                    .map_err(|e| format!("kv.set {key}: {e}"))?;
                ok(Value::Null, vec![])
            }
            "kv.delete" => {
                let key = arg(req, "key")?;
                self.kv()
                    .await?
                    .delete(key)
                    .await
                    .map_err(|e| format!("kv.delete {key}: {e}"))?;
                ok(Value::Null, vec![])
            }
            "kv.keys" => {
                let mut keys = self
                    .kv()
                    .await?
                    .keys()
                    .await
                    .map_err(|e| format!("kv.keys: {e}"))?;
                let mut out = Vec::new();
                while let Some(k) = keys.next().await {
                    out.push(k.map_err(|e| format!("kv.keys: {e}"))?);
                }
                out.sort();
                ok(json!(out), vec![])
            }
            "objectStore.put" => {
                let name = arg(req, "name")?;
                let bytes = req.data.first().map(Vec::as_slice).unwrap_or_default();
                let mut reader = bytes;
                let info = self
                    .obj()
                    .await?
                    .put(name, &mut reader)
                    .await
                    .map_err(|e| format!("objectStore.put {name}: {e}"))?;
                ok(serde_json::to_value(info).unwrap_or_default(), vec![])
            }
            "objectStore.get" => {
                let name = arg(req, "name")?;
                match self.obj().await?.get(name).await {
                    Ok(mut object) => {
                        let mut bytes = Vec::with_capacity(object.info().size);
                        object
                            .read_to_end(&mut bytes)
                            .await
                            .map_err(|e| format!("objectStore.get {name}: {e}"))?;
                        ok(json!({"found": true}), vec![bytes])
                    }
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::object_store::GetErrorKind::NotFound =>
                    {
                        ok(json!({"found": false}), vec![])
                    }
                    Err(e) => Err(format!("objectStore.get {name}: {e}")),
                }
            }
            "objectStore.delete" => {
                let name = arg(req, "name")?;
                self.obj()
                    .await?
                    .delete(name)
                    .await
                    .map_err(|e| format!("objectStore.delete {name}: {e}"))?;
                ok(Value::Null, vec![])
            }
            "objectStore.list" => {
                let mut list = self
                    .obj()
                    .await?
                    .list()
                    .await
                    .map_err(|e| format!("objectStore.list: {e}"))?;
                let mut out = Vec::new();
                while let Some(info) = list.next().await {
                    let info = info.map_err(|e| format!("objectStore.list: {e}"))?;
                    out.push(serde_json::to_value(info).unwrap_or_default());
                }
                ok(Value::Array(out), vec![])
            }
            "messaging.publish" => {
                let subject = arg(req, "subject")?;
                check_subject(subject)?;
                self.client
                    .publish(subject.to_owned(), data(req, 0))
                    .await
                    .map_err(|e| format!("messaging.publish {subject}: {e}"))?;
                ok(Value::Null, vec![])
            }
            "messaging.request" => {
                let subject = arg(req, "subject")?;
                check_subject(subject)?;
                let r = async_nats::Request::new()
                    .payload(data(req, 0))
                    .timeout(Some(timeout_arg(req)));
                let m = self
                    .client
                    .send_request(subject.to_owned(), r)
                    .await
                    .map_err(|e| match e.kind() {
                        async_nats::RequestErrorKind::NoResponders => {
                            format!("messaging.request {subject}: no responders")
                        }
                        async_nats::RequestErrorKind::TimedOut => format!(
                            "messaging.request {subject}: no reply within {:?}",
                            timeout_arg(req)
                        ),
                        _ => format!("messaging.request {subject}: {e}"),
                    })?;
                ok(Value::Null, vec![m.payload.to_vec()])
            }
            "messaging.requestMany" => {
                let subject = arg(req, "subject")?;
                check_subject(subject)?;
                let max = req
                    .args
                    .get("max")
                    .and_then(Value::as_u64)
                    .map(|m| m as usize)
                    .unwrap_or(REQUEST_MANY_MAX)
                    .clamp(1, 10_000);
                let inbox = self.client.new_inbox();
                let mut sub = self
                    .client
                    .subscribe(inbox.clone())
                    .await
                    .map_err(|e| format!("messaging.requestMany {subject}: {e}"))?;
                self.client
                    .publish_with_reply(subject.to_owned(), inbox, data(req, 0))
                    .await
                    .map_err(|e| format!("messaging.requestMany {subject}: {e}"))?;
                let deadline = tokio::time::Instant::now() + timeout_arg(req);
                let mut replies = Vec::new();
                while replies.len() < max {
                    let wait = if replies.is_empty() {
                        deadline.saturating_duration_since(tokio::time::Instant::now())
                    } else {
                        REQUEST_MANY_QUIET
                            .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                    };
                    match tokio::time::timeout(wait, sub.next()).await {
                        Ok(Some(m)) if m.status.is_none() => replies.push(m.payload.to_vec()),
                        Ok(Some(_)) => break, // "no responders" status
                        _ => break,
                    }
                }
                ok(Value::Null, replies)
            }
            "http.request" => {
                let method = arg(req, "method")?.to_ascii_uppercase();
                if !matches!(
                    method.as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
                ) {
                    return Err(format!("http: unsupported method {method}"));
                }
                let url = arg(req, "url")?;
                let headers: BTreeMap<String, String> = req
                    .args
                    .get("headers")
                    .and_then(|h| serde_json::from_value(h.clone()).ok())
                    .unwrap_or_default();
                let body = req.data.first().map(Vec::as_slice).unwrap_or_default();
                let r = http::request(&method, url, &headers, body, |host| self.http.permits(host))
                    .await?;
                ok(
                    json!({
                        "status": r.status,
                        "headers": r.headers,
                        "text": String::from_utf8_lossy(&r.body),
                    }),
                    vec![r.body],
                )
            }
            other => Err(format!("unknown host service operation `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_subjects_are_refused() {
        for bad in [
            "$NEX.PING",
            "$JS.API.INFO",
            "$KV.b.k",
            "$O.x",
            "$SYS",
            "a.*",
            "a.>",
            "",
        ] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
        assert!(check_subject("hello.world").is_ok());
    }

    #[test]
    fn http_policy() {
        let p = HttpPolicy {
            allow: vec![],
            deny: vec!["Evil.example".into()],
        };
        assert!(!p.permits("evil.example"));
        assert!(p.permits("good.example"));
        let p = HttpPolicy {
            allow: vec!["only.example".into()],
            deny: vec![],
        };
        assert!(p.permits("only.example"));
        assert!(!p.permits("other.example"));
    }
}
