//! The deploy pipeline, one function per stage: [`check_request`] (lame duck, names, type,
//! triggers), [`auth::deploy_token`], [`check_owner`], [`fetch_artifact`], [`admit`] (quotas,
//! under the short admission lock, leaving a [`Reservation`]), [`start`] (the agent loads, no
//! lock held: deploys of different workloads proceed in parallel, each bounded by the node's
//! `load_timeout`), and [`commit`] (the workload joins the registry; a same-name predecessor is
//! stopped once the new one is ready).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nex_proto::agent_wire::AgentInit;
use nex_proto::control::*;
use nex_proto::events::{self, WorkloadDeployed};
use nex_proto::{subjects, validate};
use tracing::{Instrument, instrument};

use super::auth;
use super::error::{ControlError, Result};
use super::read::host_memory_mb;
use crate::Node;
use crate::agent::AgentSpec;
use crate::artifact;
use crate::tenancy;
use crate::workload::{Workload, WorkloadMeta};

/// A deploy admitted but not yet running: it counts toward every quota, and holds its name so
/// that two racing deploys of one name have one clear winner.
#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub memory_mb: u64,
    pub bytes: u64,
    pub triggers: Vec<String>,
}

/// Removes its reservation when the deploy ends, however it ends.
struct Reserved<'a> {
    node: &'a Node,
    id: String,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.node
            .admission
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| r.id != self.id);
    }
}

/// Who vouches for a deploy.
#[derive(Debug, Clone)]
pub(crate) enum Authority {
    /// The node's own configuration (autostart): trusted, and may use files.
    Local,
    /// A direct deploy request, carrying a single-use workload JWT.
    Token,
    /// A deployment record its issuer signed, verified by the reconciler
    /// ([`crate::desired`]); the environment is sealed to the nodes' shared deployment xkey.
    Record(RecordRef),
}

/// The deployment record a replica runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordRef {
    pub key: String,
    pub version: u64,
    pub issuer: String,
}

impl Authority {
    fn local(&self) -> bool {
        matches!(self, Authority::Local)
    }
}

/// Validates, authorizes, fetches, admits and starts a workload, in a `deploy` span
/// ([`crate::spans`]) that ends with the workload's id or the error.
pub(crate) async fn deploy(
    node: &Arc<Node>,
    ns: &str,
    req: DeployRequest,
    authority: Authority,
) -> Result<RunResponse> {
    let span = crate::spans::deploy(ns, &req.workload_name, &req.workload_type);
    let result = deploy_in_span(node, ns, req, authority)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(r) => crate::spans::record_deploy(&span, Ok(&r.id)),
        Err(e) => crate::spans::record_deploy(&span, Err(e)),
    }
    result
}

async fn deploy_in_span(
    node: &Arc<Node>,
    ns: &str,
    mut req: DeployRequest,
    authority: Authority,
) -> Result<RunResponse> {
    let local = authority.local();
    if matches!(authority, Authority::Token) && req.workload_name.is_empty() {
        // Upstream 0.2.7 names the workload only in its token.
        req.workload_name = auth::signed_workload_name(&req)?;
        tracing::Span::current().record("nex.workload", req.workload_name.as_str());
    }
    let workload_type = check_request(node, ns, &req)?;
    note_upstream_fields(&req);
    let (issuer, signed_id) = match &authority {
        Authority::Local => (String::new(), None),
        Authority::Token => {
            let claims = auth::deploy_token(node, &req)?;
            if req.hash.is_empty() {
                // Upstream sends the hash only in its token.
                req.hash = claims.data.hash;
            }
            (claims.iss, Some(claims.sub))
        }
        Authority::Record(r) => (r.issuer.clone(), None),
    };
    if matches!(authority, Authority::Token) && node.is_managed(ns, &req.workload_name) {
        return Err(ControlError::Conflict(format!(
            "`{}` in namespace {ns} is a deployment record's (nex ls shows it): deploy it with \
             --replicas to replace it, or nex undeploy it first",
            req.workload_name
        )));
    }
    check_owner(node, ns, &req.workload_name, &issuer, local)?;
    let limits = node
        .config
        .workload_defaults()?
        .apply(req.limits.as_ref())?;
    let environment = match req.environment.as_deref().filter(|e| !e.is_empty()) {
        None => BTreeMap::new(),
        Some(sealed) => {
            let sender = req.sender_public_key.as_deref().ok_or_else(|| {
                ControlError::Invalid(
                    "an environment is present but sender_public_key (the sender's xkey) is missing"
                        .into(),
                )
            })?;
            match &authority {
                Authority::Record(_) => {
                    let key = node.deployment_xkey.as_ref().ok_or_else(|| {
                        ControlError::Invalid(
                            "the record has an environment and this node has no deployment \
                             xkey (deployments.xkey_file in its config)"
                                .into(),
                        )
                    })?;
                    crate::identity::open_environment(key, sealed, sender)?
                }
                _ => node.identity.open_environment(sealed, sender)?,
            }
        }
    };
    let (bytes, hash) = fetch_artifact(node, ns, &req, local).await?;

    let id = signed_id
        .or_else(|| req.id.clone().filter(|i| !i.is_empty()))
        .unwrap_or_else(nex_jwt::new_workload_id);
    validate::name("workload id", &id)?;
    let reservation = Reservation {
        id: id.clone(),
        namespace: ns.to_owned(),
        name: req.workload_name.clone(),
        memory_mb: u64::from(limits.memory_mb),
        bytes: bytes.len() as u64,
        triggers: req.trigger_subjects.clone(),
    };
    let _reserved = admit(node, reservation, &issuer, local)?;

    let meta = WorkloadMeta {
        id: id.clone(),
        name: req.workload_name.clone(),
        namespace: ns.to_owned(),
        description: req.description.clone().unwrap_or_default(),
        workload_type,
        hash: hash.clone(),
        issuer: issuer.clone(),
        trigger_subjects: req.trigger_subjects.clone(),
        limits,
        total_bytes: bytes.len() as u64,
        record: match authority {
            Authority::Record(r) => Some(r),
            _ => None,
        },
    };
    let mut argv = vec!["nexfunction".to_owned()];
    argv.extend(req.argv.iter().cloned());
    let init = AgentInit {
        workload_id: id.clone(),
        workload_name: req.workload_name.clone(),
        namespace: ns.to_owned(),
        workload_type,
        hash,
        argv,
        environment,
        limits,
        // One cache directory per namespace: an agent may write only its own namespace's
        // compiled modules, so a tenant cannot plant code another tenant's agent would load.
        cache_dir: node
            .cache_dir
            .as_ref()
            .map(|d| d.join(ns).to_string_lossy().into_owned()),
        idle_trim_millis: Some(node.config.idle_trim_after.as_millis() as u64),
        log_bytes_per_sec: node.config.rate_limits.log_bytes_per_sec,
        log_burst_bytes: node.config.rate_limits.log_burst_bytes,
    };
    let wl = start(node, meta, init, bytes).await?;
    commit(node, wl, &issuer).await
}

/// Stage 1: the request alone (no signature, no I/O).
fn check_request(node: &Node, ns: &str, req: &DeployRequest) -> Result<WorkloadType> {
    if node.lameduck.load(Ordering::Acquire) {
        return Err(ControlError::LameDuck);
    }
    validate::name("namespace", ns)?;
    validate::name("workload name", &req.workload_name)?;
    let workload_type: WorkloadType = req.workload_type.parse()?;
    if !node.config.workload_types.contains(&workload_type) {
        return Err(ControlError::Invalid(format!(
            "this node does not run {workload_type} workloads (it runs: {})",
            node.config
                .workload_types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    validate::trigger_subjects(&req.trigger_subjects, &node.config.deny_trigger_subjects)?;
    if let Some(t) = req.target_node.as_deref().filter(|t| !t.is_empty())
        && t != node.node_id
    {
        return Err(ControlError::Invalid(format!(
            "deploy is addressed to node {t}, not this one"
        )));
    }
    Ok(workload_type)
}

/// Logs the upstream Nex fields a nex node accepts and ignores (docs/protocol.md says why).
fn note_upstream_fields(req: &DeployRequest) {
    if let Some(essential) = req.essential {
        tracing::info!(
            essential,
            "upstream `essential` ignored: a nex node restarts every function's agent when it dies"
        );
    }
    if let Some(domain) = req.jsdomain.as_deref().filter(|d| !d.is_empty()) {
        tracing::warn!(
            jsdomain = domain,
            "upstream `jsdomain` ignored: this node reads artifacts from its own JetStream domain"
        );
    }
    if req.retry_count.is_some() || req.retried_at.is_some() {
        tracing::info!(
            retry_count = req.retry_count,
            retried_at = req.retried_at.as_deref(),
            "upstream retry bookkeeping ignored"
        );
    }
    if req.trigger_connection.is_some() {
        tracing::warn!(
            "upstream `trigger_connection` ignored: triggers are subscribed on the node's own connection"
        );
    }
    if req.host_services_config.is_some() {
        tracing::warn!(
            "`host_services_config` ignored: host services use the node's own connection"
        );
    }
}

/// Stage 2: a name that runs here already may be replaced only by its owner. Checked before the
/// artifact is fetched, and again at admission.
fn check_owner(node: &Node, ns: &str, name: &str, issuer: &str, local: bool) -> Result<()> {
    if local {
        return Ok(());
    }
    match node
        .workloads()
        .into_iter()
        .find(|w| w.meta.namespace == ns && w.meta.name == name)
    {
        Some(old) => auth::owns(node, issuer, &old),
        None => Ok(()),
    }
}

/// Stage 3: the artifact, checked against the signed hash. Upstream devrun's placeholder
/// hash is refused before a byte is read, unless the node's `allow_upstream_devrun_hash`
/// (development nodes) lets the artifact run unverified.
#[instrument(level = "debug", skip_all)]
async fn fetch_artifact(
    node: &Node,
    ns: &str,
    req: &DeployRequest,
    local: bool,
) -> Result<(Vec<u8>, String)> {
    let placeholder = req.hash == nex_proto::upstream::UPSTREAM_DEVRUN_HASH;
    if placeholder && !node.config.allow_upstream_devrun_hash {
        return Err(ControlError::PlaceholderHash);
    }
    if !local {
        tenancy::check_location(&node.config.namespaces, ns, &req.location)?;
    }
    let bytes = artifact::fetch(
        &node.js,
        &req.location,
        local || node.config.allow_file_locations,
        node.config.node_limits.max_workload_bytes,
    )
    .await?;
    let hash = if local && req.hash.is_empty() {
        artifact::sha256_hex(&bytes)
    } else if placeholder {
        tracing::warn!(
            location = %req.location,
            "upstream devrun's placeholder hash: artifact not verified (allow_upstream_devrun_hash)"
        );
        artifact::sha256_hex(&bytes)
    } else {
        artifact::verify_hash(&bytes, &req.hash)?
    };
    Ok((bytes, hash))
}

/// Stage 4, under the admission lock (held for microseconds, never across I/O): ownership and
/// races of the name, then the node's and the namespace's quotas counting every running and
/// admitted workload except the one this deploy replaces.
fn admit<'a>(node: &'a Node, r: Reservation, issuer: &str, local: bool) -> Result<Reserved<'a>> {
    let mut pending = node.admission.lock().unwrap_or_else(|p| p.into_inner());
    let running = node.workloads();
    if pending
        .iter()
        .any(|p| p.namespace == r.namespace && p.name == r.name)
    {
        return Err(ControlError::Conflict(format!(
            "another deploy of `{}` in namespace {} is in progress; try again when it has finished",
            r.name, r.namespace
        )));
    }
    if running.iter().any(|w| w.meta.id == r.id) || pending.iter().any(|p| p.id == r.id) {
        return Err(ControlError::Conflict(format!(
            "a workload with id {} already runs on this node",
            r.id
        )));
    }
    let replaced = running
        .iter()
        .find(|w| w.meta.namespace == r.namespace && w.meta.name == r.name);
    if let Some(old) = replaced
        && !local
    {
        auth::owns(node, issuer, old)?;
    }
    // Under the admission lock: no other deploy can take a colliding subject between this
    // check and its start. Pending deploys count as running.
    let in_use = running
        .iter()
        .map(|w| {
            (
                w.meta.namespace.as_str(),
                w.meta.trigger_subjects.as_slice(),
            )
        })
        .chain(
            pending
                .iter()
                .map(|p| (p.namespace.as_str(), p.triggers.as_slice())),
        );
    tenancy::check_triggers(&node.config.namespaces, &r.namespace, &r.triggers, in_use)?;
    // (namespace, memory_mb, bytes) of everything that will run besides the new workload.
    let others: Vec<(&str, u64, u64)> = running
        .iter()
        .filter(|w| replaced.is_none_or(|old| old.meta.id != w.meta.id))
        .map(|w| {
            (
                w.meta.namespace.as_str(),
                u64::from(w.meta.limits.memory_mb),
                w.meta.total_bytes,
            )
        })
        .chain(
            pending
                .iter()
                .map(|p| (p.namespace.as_str(), p.memory_mb, p.bytes)),
        )
        .collect();

    let nl = node.config.node_limits;
    if others.len() >= nl.max_workloads {
        return Err(ControlError::Quota(format!(
            "this node already runs its maximum of {} workloads",
            nl.max_workloads
        )));
    }
    let total_bytes: u64 = others.iter().map(|o| o.2).sum();
    if total_bytes + r.bytes > nl.max_total_bytes {
        return Err(ControlError::Quota(format!(
            "this node's artifact budget of {} bytes would be exceeded",
            nl.max_total_bytes
        )));
    }
    let (ns_workloads, ns_memory) = node.config.namespace_quota(&r.namespace);
    let mine: Vec<_> = others.iter().filter(|o| o.0 == r.namespace).collect();
    if mine.len() >= ns_workloads {
        return Err(ControlError::Quota(format!(
            "namespace {} already runs its quota of {ns_workloads} workloads on this node",
            r.namespace
        )));
    }
    let ns_declared: u64 = mine.iter().map(|o| o.1).sum();
    if ns_declared + r.memory_mb > ns_memory {
        return Err(ControlError::Quota(format!(
            "namespace {} would declare {} MiB of memory on this node; its quota is {ns_memory} MiB",
            r.namespace,
            ns_declared + r.memory_mb
        )));
    }
    let host = host_memory_mb();
    if host > 0 {
        let budget = (host as f64 * node.config.memory_overcommit.max(0.0)) as u64;
        let declared: u64 = others.iter().map(|o| o.1).sum();
        if declared + r.memory_mb > budget {
            return Err(ControlError::Quota(format!(
                "the node's workloads would declare {} MiB of memory; this host allows {budget} MiB \
                 ({host} MiB x memory_overcommit {})",
                declared + r.memory_mb,
                node.config.memory_overcommit
            )));
        }
    }
    let id = r.id.clone();
    pending.push(r);
    Ok(Reserved { node, id })
}

/// Stage 5: an agent loads the workload, bounded by the node's `load_timeout` plus
/// `compile_time_per_mib` for each MiB of artifact; no lock is held.
#[instrument(level = "debug", skip_all, fields(bytes = bytes.len()))]
async fn start(
    node: &Arc<Node>,
    meta: WorkloadMeta,
    init: AgentInit,
    bytes: Vec<u8>,
) -> Result<Arc<Workload>> {
    let name = meta.name.clone();
    let spec = AgentSpec {
        init,
        load_timeout: node.config.load_deadline(bytes.len() as u64),
        artifact: Arc::new(bytes),
        agents: node.agents.clone(),
    };
    let host = nex_hostservices::HostServices::with_replicas(
        node.host_client.clone(),
        &meta.namespace,
        &meta.name,
        node.config.bucket_replicas,
    )
    .with_http_policy(node.http_policy.clone());
    Workload::start(
        meta,
        spec,
        node.client.clone(),
        host,
        node.emitter.clone(),
        node.config.rate_limits,
        node.config.call_events,
    )
    .await
    .map_err(|source| ControlError::Spawn { name, source })
}

/// Stage 6: the new workload joins the registry; a same-name predecessor (ready to be replaced
/// since admission checked its owner) is stopped after, so the name never has no replica.
async fn commit(node: &Arc<Node>, wl: Arc<Workload>, issuer: &str) -> Result<RunResponse> {
    let (id, ns, name) = (
        wl.meta.id.clone(),
        wl.meta.namespace.clone(),
        wl.meta.name.clone(),
    );
    let replaced = {
        let mut map = node.workloads.lock().unwrap_or_else(|p| p.into_inner());
        let old = map
            .values()
            .find(|w| w.meta.namespace == ns && w.meta.name == name)
            .map(|w| w.meta.id.clone());
        map.insert(id.clone(), wl.clone());
        old.and_then(|old| map.remove(&old))
    };
    if let Some(old) = replaced {
        old.stop(Duration::from_secs(5)).await;
        super::undeployed_event(node, &old, &format!("replaced by {id}")).await;
    }
    node.emitter
        .event(
            &ns,
            events::WORKLOAD_DEPLOYED,
            WorkloadDeployed {
                workload_id: id.clone(),
                workload_name: name.clone(),
                total_bytes: wl.meta.total_bytes,
            },
        )
        .await;
    tracing::info!(workload_id = %id, "workload deployed");
    Ok(RunResponse {
        started: true,
        id,
        issuer: issuer.to_owned(),
        name,
    })
}

/// Deploys the workloads listed in the config's `autostart` section.
pub(crate) async fn autostart(node: &Arc<Node>) {
    for w in node.config.autostart.workloads.clone() {
        let ns = w
            .namespace
            .clone()
            .unwrap_or_else(|| subjects::DEFAULT_NAMESPACE.to_owned());
        let mut env = w.environment.clone();
        let sealed = if env.is_empty() {
            None
        } else {
            // Seal to ourselves so autostart follows the same path as remote deploys.
            let plain = serde_json::to_vec(&std::mem::take(&mut env)).unwrap_or_default();
            node.identity
                .xkey
                .seal(&plain, &node.identity.xkey)
                .ok()
                .map(|s| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(s)
                })
        };
        let req = DeployRequest {
            workload_name: w.name.clone(),
            workload_type: w.workload_type.as_str().into(),
            location: w.location.clone(),
            trigger_subjects: w.trigger_subjects.clone(),
            environment: sealed,
            sender_public_key: Some(node.identity.xkey.public_key()),
            ..Default::default()
        };
        match deploy(node, &ns, req, Authority::Local).await {
            Ok(r) => tracing::info!(name = %w.name, id = %r.id, "autostarted"),
            Err(e) => tracing::error!(name = %w.name, "autostart failed: {e}"),
        }
    }
}
