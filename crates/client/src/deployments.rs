//! Deployments: signed records of desired state in the `NEXDEPLOYMENTS` bucket, which every
//! node watches and converges on (see `nex_proto::deployments`). Writing a record is a
//! compare-and-set on the key's last revision, so of two racing deploys of one name exactly one
//! wins and the other is told so.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures::StreamExt;
use nex_proto::control::{ErrorCode, Refusal};
use nex_proto::deployments::{
    DEPLOYMENTS_BUCKET, DeploymentSpec, Presence, RECORD_HISTORY, deployment_key, place,
};
use nex_proto::subjects;
use serde::Serialize;

use crate::keys::SenderKeys;
use crate::{Error, NexClient, Result};

/// A record read back from the bucket.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRecord {
    pub spec: DeploymentSpec,
    /// The signer (empty when the signature does not verify).
    pub issuer: String,
    pub revision: u64,
    /// Why the record does not verify, if it does not: nodes refuse it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// A record written.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub key: String,
    pub version: u64,
    pub revision: u64,
}

/// Where a record runs, from the nodes' presence.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub key: String,
    pub version: u64,
    pub replicas: u32,
    /// The nodes placement picks (fewer than `replicas` when fewer match).
    pub placed: Vec<String>,
    /// Nodes running the record's current version.
    pub running: Vec<String>,
    /// Nodes still running an older version.
    pub outdated: Vec<String>,
    /// Nodes that could not run it, with their reason.
    pub refused: BTreeMap<String, String>,
}

impl Placement {
    /// Every placed node runs the current version and no other node runs an old one.
    pub fn converged(&self) -> bool {
        !self.placed.is_empty()
            && self.placed.iter().all(|n| self.running.contains(n))
            && self.outdated.is_empty()
    }

    /// Replicas asked for but not placeable (too few matching nodes).
    pub fn shortfall(&self) -> u32 {
        self.replicas.saturating_sub(self.placed.len() as u32)
    }
}

fn refused(code: ErrorCode, message: String) -> Error {
    Error::Refused(Refusal {
        code: Some(code),
        message,
    })
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl NexClient {
    /// The records bucket, created when missing (with this client's bucket replicas).
    pub async fn deployments_bucket(&self) -> Result<kv::Store> {
        let js = async_nats::jetstream::new(self.client.clone());
        nex_connect::replicas::get_or_create_stream(
            &js,
            nex_connect::replicas::key_value_stream(DEPLOYMENTS_BUCKET, RECORD_HISTORY),
            self.bucket_replicas,
        )
        .await
        .map_err(|e| Error::nats(format!("creating {DEPLOYMENTS_BUCKET}"), e))?;
        js.get_key_value(DEPLOYMENTS_BUCKET)
            .await
            .map_err(|e| Error::nats(format!("opening {DEPLOYMENTS_BUCKET}"), e))
    }

    /// The record of `name` in this namespace and its entry's revision, if there is one.
    async fn current_record(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<(Option<StoredRecord>, u64)>> {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| Error::nats(format!("reading record {key}"), e))?;
        Ok(match entry {
            // An unreadable value is no record, but its revision is what a write must follow.
            Some(e) if e.operation == kv::Operation::Put => {
                Some((decode(&e.value, e.revision).ok(), e.revision))
            }
            // Deleted or purged: no record (a create follows the delete marker).
            _ => None,
        })
    }

    /// Signs `spec` (its `version` is set here: above the current record's, and never below
    /// the clock's milliseconds so a deleted key's old versions stay behind) and writes it
    /// with compare-and-set. Refused: another issuer's live record (`forbidden`), or a record
    /// changed since it was read (`conflict`, the racing deploy won).
    pub async fn put_record(&self, keys: &SenderKeys, mut spec: DeploymentSpec) -> Result<Written> {
        spec.namespace = self.namespace.clone();
        let key = deployment_key(&spec.namespace, &spec.name);
        let store = self.deployments_bucket().await?;
        let current = self.current_record(&store, &key).await?;
        let mut version = now_millis();
        if let Some((Some(cur), _)) = &current {
            if !cur.spec.undeployed
                && cur.invalid.is_none()
                && cur.issuer != keys.issuer.public_key()
            {
                return Err(refused(
                    ErrorCode::Forbidden,
                    format!(
                        "`{}` in namespace {} belongs to issuer {}; this issuer ({}) may not replace it",
                        spec.name,
                        spec.namespace,
                        cur.issuer,
                        keys.issuer.public_key()
                    ),
                ));
            }
            version = version.max(cur.spec.version + 1);
        }
        spec.version = version;
        if !spec.undeployed {
            spec.check()?;
        }
        let token = nex_jwt::sign_document(&keys.issuer, &key, &spec)?;
        let lost_race = || {
            refused(
                ErrorCode::Conflict,
                format!(
                    "another deploy of `{}` changed its record first; this one changed nothing \
                     (run it again to replace that one)",
                    spec.name
                ),
            )
        };
        let written = match &current {
            Some((_, revision)) => store
                .update(&key, token.clone().into(), *revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => None,
                    _ => Some(Error::nats(format!("writing record {key}"), e)),
                }),
            None => store
                .create(&key, token.clone().into())
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => None,
                    _ => Some(Error::nats(format!("writing record {key}"), e)),
                }),
        };
        let revision = match written {
            Ok(revision) => revision,
            Err(Some(e)) => return Err(e),
            // The key changed since it was read. When what it holds now is this very token,
            // the write landed and only its acknowledgement was lost and sent again (a loaded
            // server): that is this deploy's success, not another's.
            Err(None) => match store.entry(&key).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put && e.value == token.as_bytes() => {
                    e.revision
                }
                _ => return Err(lost_race()),
            },
        };
        Ok(Written {
            key,
            version,
            revision,
        })
    }

    /// Writes a signed tombstone for `name`: every node stops its replicas.
    pub async fn undeploy(&self, keys: &SenderKeys, name: &str) -> Result<Written> {
        let key = deployment_key(&self.namespace, name);
        let store = self.deployments_bucket().await?;
        match self.current_record(&store, &key).await? {
            Some((Some(cur), _)) if !cur.spec.undeployed => {
                let mut spec = cur.spec;
                spec.undeployed = true;
                self.put_record(keys, spec).await
            }
            _ => Err(refused(
                ErrorCode::NotFound,
                format!(
                    "no deployment `{name}` in namespace {} (nex ls lists them)",
                    self.namespace
                ),
            )),
        }
    }

    /// Every record of this namespace (`all`: of every namespace), tombstones left out.
    pub async fn list_records(&self, all: bool) -> Result<Vec<StoredRecord>> {
        let store = self.deployments_bucket().await?;
        let mut out = Vec::new();
        let mut watch = store
            .watch_with_history(">")
            .await
            .map_err(|e| Error::nats("presence", e))?;
        let empty = store
            .status()
            .await
            .map_err(|e| Error::nats("presence", e))?
            .values()
            == 0;
        if empty {
            return Ok(out);
        }
        let prefix = format!("{}.", self.namespace);
        let deadline = tokio::time::Instant::now() + self.timeout.max(Duration::from_secs(2));
        loop {
            let next = tokio::time::timeout_at(deadline, watch.next()).await;
            let Ok(Some(Ok(e))) = next else { break };
            if e.operation == kv::Operation::Put && (all || e.key.starts_with(&prefix)) {
                match decode(&e.value, e.revision) {
                    Ok(r) if !r.spec.undeployed => out.push(r),
                    // Tombstones, and values that are not even a JWT (nodes refuse them and
                    // report a `deployment_refused` event).
                    _ => {}
                }
            }
            if e.delta == 0 {
                break;
            }
        }
        out.sort_by_key(|r| r.spec.key());
        Ok(out)
    }

    /// The nodes' presence beacons heard within `window` (every node sends one per presence
    /// interval, 1 s by default).
    pub async fn presence(&self, window: Duration) -> Result<Vec<Presence>> {
        let mut sub = self
            .client
            .subscribe(subjects::PRESENCE)
            .await
            .map_err(|e| Error::nats("presence", e))?;
        let mut nodes: BTreeMap<String, Presence> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
            if let Ok(p) = serde_json::from_slice::<Presence>(&msg.payload) {
                if p.leaving {
                    nodes.remove(&p.node_id);
                } else {
                    nodes.insert(p.node_id.clone(), p);
                }
            }
        }
        Ok(nodes.into_values().collect())
    }

    /// Where `spec` runs according to `nodes`' presence.
    pub fn placement(spec: &DeploymentSpec, nodes: &[Presence]) -> Placement {
        let key = spec.key();
        let mut running = Vec::new();
        let mut outdated = Vec::new();
        let mut refused = BTreeMap::new();
        for n in nodes {
            match n.runs(&key) {
                Some(v) if v == spec.version => running.push(n.node_id.clone()),
                Some(_) => outdated.push(n.node_id.clone()),
                None => {}
            }
            if let Some(r) = n
                .refused
                .iter()
                .find(|r| r.key == key && r.version == spec.version)
            {
                refused.insert(n.node_id.clone(), r.reason.clone());
            }
        }
        Placement {
            key,
            version: spec.version,
            replicas: spec.replicas,
            placed: place(spec, nodes),
            running,
            outdated,
            refused,
        }
    }

    /// Follows the nodes' presence until `spec` has converged (or, for a tombstone, until no
    /// node runs it), or until `limit`; returns the last placement seen.
    pub async fn wait_converged(
        &self,
        spec: &DeploymentSpec,
        limit: Duration,
    ) -> Result<Placement> {
        let mut sub = self
            .client
            .subscribe(subjects::PRESENCE)
            .await
            .map_err(|e| Error::nats("presence", e))?;
        let mut nodes: BTreeMap<String, (Presence, tokio::time::Instant)> = BTreeMap::new();
        let start = tokio::time::Instant::now();
        let deadline = start + limit;
        // A node beacons at least once a second: by then every live node has been heard.
        let heard_all = start + Duration::from_millis(1500);
        loop {
            let msg = tokio::time::timeout_at(deadline, sub.next()).await;
            let now = tokio::time::Instant::now();
            if let Ok(Some(msg)) = &msg
                && let Ok(p) = serde_json::from_slice::<Presence>(&msg.payload)
            {
                if p.leaving {
                    nodes.remove(&p.node_id);
                } else {
                    nodes.insert(p.node_id.clone(), (p, now));
                }
            }
            nodes.retain(|_, (_, seen)| now.duration_since(*seen) < Duration::from_secs(3));
            let live: Vec<Presence> = nodes.values().map(|(p, _)| p.clone()).collect();
            let placement = Self::placement(spec, &live);
            // Not before every live node has been heard: placement over a partial view could
            // look converged early.
            let done = now >= heard_all
                && if spec.undeployed {
                    placement.running.is_empty() && placement.outdated.is_empty()
                } else {
                    placement.converged() || placement.placed.is_empty()
                };
            if done || msg.is_err() {
                return Ok(placement);
            }
        }
    }

    /// The deployment xkey the nodes share (from their pings): environments of records are
    /// sealed to it.
    pub async fn deployment_xkey(&self) -> Result<String> {
        let pings = self.ping().await?;
        let mut keys: Vec<String> = pings
            .into_iter()
            .filter_map(|p| p.deployment_xkey)
            .collect();
        keys.sort();
        keys.dedup();
        match keys.len() {
            1 => Ok(keys.remove(0)),
            0 => Err(Error::Invalid(
                "no node has a deployment xkey (deployments.xkey_file in the node config), so an \
                 environment cannot be sealed for a deployment record"
                    .into(),
            )),
            _ => Err(Error::Invalid(format!(
                "nodes answer with {} different deployment xkeys; every node of a system must \
                 share one (deployments.xkey_file)",
                keys.len()
            ))),
        }
    }
}

/// Reads a stored record; a record that does not verify is kept with its reason (nodes refuse it).
fn decode(value: &[u8], revision: u64) -> std::result::Result<StoredRecord, String> {
    let text = String::from_utf8_lossy(value);
    match nex_jwt::verify_document::<DeploymentSpec>(text.trim()) {
        Ok(doc) => Ok(StoredRecord {
            spec: doc.data,
            issuer: doc.iss,
            revision,
            invalid: None,
        }),
        Err(e) => {
            // Shown as what it claims to be, marked invalid.
            let claims = text
                .split('.')
                .nth(1)
                .and_then(|c| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(c)
                        .ok()
                })
                .and_then(|c| serde_json::from_slice::<nex_jwt::Document<DeploymentSpec>>(&c).ok());
            match claims {
                Some(doc) => Ok(StoredRecord {
                    spec: doc.data,
                    issuer: String::new(),
                    revision,
                    invalid: Some(e.to_string()),
                }),
                None => Err(format!(
                    "a record at revision {revision} is unreadable: {e}"
                )),
            }
        }
    }
}
