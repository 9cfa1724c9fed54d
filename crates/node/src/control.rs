//! Handlers of the `$NEX.*` control subjects. Every request with a reply subject gets an
//! [`Envelope`]: data on success, an error sentence on failure. Malformed input never panics and
//! never disturbs running workloads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::Message;
use bytes::Bytes;
use nex_proto::agent_wire::AgentInit;
use nex_proto::control::*;
use nex_proto::events::{self, WorkloadDeployed, WorkloadUndeployed};
use nex_proto::{subjects, validate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::instrument;

use crate::Node;
use crate::agent::AgentSpec;
use crate::artifact;
use crate::workload::{Workload, WorkloadMeta};

/// Which control subject a message came in on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Ping,
    Auction,
    WorkloadPing,
    Info,
    Deploy,
    Stop,
    Lameduck,
}

/// Answers one control message.
pub(crate) async fn handle(node: Arc<Node>, kind: Kind, msg: Message) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let body = match kind {
        Kind::Ping => answer(PING_RESPONSE_TYPE, Ok(ping(&node))),
        Kind::Auction => match auction(&node, &msg.payload) {
            Some(r) => answer(AUCTION_RESPONSE_TYPE, r),
            None => return,
        },
        Kind::WorkloadPing => match workload_ping(&node, msg.subject.as_str()) {
            Some(r) => answer(PING_RESPONSE_TYPE, Ok(r)),
            None => return,
        },
        Kind::Info => answer(INFO_RESPONSE_TYPE, Ok(info(&node, &msg))),
        Kind::Deploy => {
            let ns = subjects::namespace_of(msg.subject.as_str()).unwrap_or_default();
            let r = match parse::<DeployRequest>(&msg.payload, "deploy request") {
                Ok(req) => deploy(&node, ns, req, false).await,
                Err(e) => Err(e),
            };
            answer(RUN_RESPONSE_TYPE, r)
        }
        Kind::Stop => {
            let ns = subjects::namespace_of(msg.subject.as_str()).unwrap_or_default();
            let r = match parse::<StopRequest>(&msg.payload, "stop request") {
                Ok(req) => stop(&node, ns, req).await,
                Err(e) => Err(e),
            };
            answer(STOP_RESPONSE_TYPE, r)
        }
        Kind::Lameduck => {
            let r = lameduck(&node).await;
            answer(LAMEDUCK_RESPONSE_TYPE, Ok(r))
        }
    };
    let _ = node.client.publish(reply, body).await;
    if matches!(kind, Kind::Lameduck) {
        let _ = node.client.flush().await;
        let n = node.clone();
        tokio::spawn(async move {
            n.stop_all("node entered lame-duck mode").await;
            n.exit.notify_one();
        });
    }
}

fn answer<T: Serialize>(kind: &str, r: Result<T, String>) -> Bytes {
    let env = match r {
        Ok(d) => Envelope::ok(kind, d),
        Err(e) => Envelope::err(kind, e),
    };
    Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
}

fn parse<T: DeserializeOwned + Default>(payload: &[u8], what: &str) -> Result<T, String> {
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(format!("{what} is empty; expected a JSON object"));
    }
    serde_json::from_slice(payload).map_err(|e| format!("malformed {what}: {e}"))
}

fn ping(node: &Node) -> PingResponse {
    PingResponse {
        node_id: node.node_id.clone(),
        nexus: node.config.nexus.clone(),
        version: nex_proto::VERSION.into(),
        uptime: node.uptime(),
        target_xkey: node.identity.xkey.public_key(),
        tags: node.tags(),
        running_machines: node.workload_count(),
    }
}

/// `None`: this node does not bid (no match, lame duck, or malformed request).
fn auction(node: &Node, payload: &[u8]) -> Option<Result<PingResponse, String>> {
    if node.lameduck.load(Ordering::Acquire) {
        return None;
    }
    let req: AuctionRequest = if payload.iter().all(|b| b.is_ascii_whitespace()) {
        AuctionRequest::default()
    } else {
        match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => return Some(Err(format!("malformed auction request: {e}"))),
        }
    };
    let tags = node.tags();
    let matches = req
        .arch
        .as_deref()
        .is_none_or(|a| a == std::env::consts::ARCH)
        && req.os.as_deref().is_none_or(|o| o == std::env::consts::OS)
        && req.sandboxed.is_none_or(|s| s != node.config.no_sandbox)
        && req.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
        && req
            .workload_types
            .iter()
            .all(|t| node.config.workload_types.contains(t));
    matches.then(|| Ok(ping(node)))
}

fn workload_ping(node: &Node, subject: &str) -> Option<WorkloadPingResponse> {
    let (ns, which) = subjects::parse_workload_ping(subject)?;
    let running: Vec<_> = node
        .workloads()
        .iter()
        .filter(|w| w.meta.namespace == ns)
        .filter(|w| which.is_none_or(|x| x == w.meta.id || x == w.meta.name))
        .map(|w| w.summary())
        .collect();
    if running.is_empty() {
        return None;
    }
    let p = ping(node);
    Some(WorkloadPingResponse {
        node_id: p.node_id,
        nexus: p.nexus,
        version: p.version,
        uptime: p.uptime,
        target_xkey: p.target_xkey,
        tags: p.tags,
        running_machines: running,
    })
}

fn meminfo() -> MemoryStat {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    MemoryStat {
        total: field("MemTotal:"),
        free: field("MemFree:"),
        available: field("MemAvailable:"),
    }
}

fn info(node: &Node, msg: &Message) -> InfoResponse {
    let ns = subjects::namespace_of(msg.subject.as_str()).unwrap_or_default();
    let mut sandbox = BTreeMap::new();
    sandbox.insert("process_per_workload".to_owned(), "active".to_owned());
    sandbox.insert(
        "agent_limits".to_owned(),
        if node.config.no_sandbox {
            "off (no_sandbox)"
        } else {
            "active"
        }
        .to_owned(),
    );
    // What the agents actually put in place (they all apply the same measures).
    if let Some(w) = node.workloads().first() {
        for (k, v) in &w.sandbox {
            sandbox.insert(format!("agent.{k}"), v.clone());
        }
    }
    InfoResponse {
        node_id: node.node_id.clone(),
        version: nex_proto::VERSION.into(),
        uptime: node.uptime(),
        public_xkey: node.identity.xkey.public_key(),
        tags: node.tags(),
        memory: meminfo(),
        machines: node
            .workloads()
            .iter()
            .filter(|w| w.meta.namespace == ns)
            .map(|w| w.info())
            .collect(),
        supported_workload_types: node.config.workload_types.clone(),
        sandbox,
    }
}

/// Verifies the deploy's workload JWT: signature, trusted issuer, claims matching the request,
/// freshness, and first use.
fn check_deploy_token(node: &Node, req: &DeployRequest) -> Result<nex_jwt::Claims, String> {
    let token = req.workload_jwt.as_deref().filter(|t| !t.is_empty()).ok_or(
        "the deploy is not signed: workload_jwt is missing (nex devrun and nex run sign deploys)",
    )?;
    let claims = nex_jwt::verify(token).map_err(|e| e.to_string())?;
    check_issuer(node, &claims.iss)?;
    let mismatch = |what: &str, token: &str, request: &str| {
        Err(format!(
            "the workload JWT does not match the request: its {what} is `{token}`, the request's is `{request}`"
        ))
    };
    if claims.data.op != nex_jwt::Operation::Deploy {
        return Err("the workload JWT is not a deploy token".into());
    }
    if let Some(id) = req.id.as_deref().filter(|i| !i.is_empty())
        && id != claims.sub
    {
        return mismatch("workload id (sub)", &claims.sub, id);
    }
    if claims.data.name != req.workload_name {
        return mismatch("name", &claims.data.name, &req.workload_name);
    }
    if !claims.data.hash.eq_ignore_ascii_case(&req.hash) || req.hash.is_empty() {
        return mismatch("artifact hash", &claims.data.hash, &req.hash);
    }
    node.replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(&claims)
        .map_err(|e| e.to_string())?;
    Ok(claims)
}

fn check_issuer(node: &Node, issuer: &str) -> Result<(), String> {
    if !node.config.valid_issuers.is_empty()
        && !node.config.valid_issuers.iter().any(|i| i == issuer)
    {
        return Err(format!("issuer `{issuer}` is not trusted by this node"));
    }
    Ok(())
}

/// Verifies a stop's workload JWT: signed by the issuer that deployed `wl`, naming it, fresh and
/// unused. Workloads the node started from its own config may be stopped by any trusted issuer.
fn check_stop_token(node: &Node, req: &StopRequest, wl: &Workload) -> Result<(), String> {
    let token = req
        .workload_jwt
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or("the stop is not signed: workload_jwt is missing (nex stop signs it)")?;
    let claims = nex_jwt::verify(token).map_err(|e| e.to_string())?;
    check_issuer(node, &claims.iss)?;
    if claims.data.op != nex_jwt::Operation::Stop || claims.sub != wl.meta.id {
        return Err(format!(
            "the workload JWT is not a stop token for workload {}",
            wl.meta.id
        ));
    }
    if !wl.meta.issuer.is_empty() && claims.iss != wl.meta.issuer {
        return Err(format!(
            "workload {} was deployed by issuer {}; only that issuer may stop it",
            wl.meta.id, wl.meta.issuer
        ));
    }
    node.replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(&claims)
        .map_err(|e| e.to_string())
}

/// Validates, fetches, verifies and starts a workload. `local` deploys (autostart) may use files.
#[instrument(skip_all, fields(namespace = ns, workload_name = %req.workload_name))]
pub(crate) async fn deploy(
    node: &Arc<Node>,
    ns: &str,
    req: DeployRequest,
    local: bool,
) -> Result<RunResponse, String> {
    if node.lameduck.load(Ordering::Acquire) {
        return Err("this node is in lame-duck mode and takes no new workloads".into());
    }
    validate::name("namespace", ns)?;
    validate::name("workload name", &req.workload_name)?;
    let workload_type: WorkloadType = req.workload_type.parse()?;
    if !node.config.workload_types.contains(&workload_type) {
        return Err(format!(
            "this node does not run {workload_type} workloads (it runs: {})",
            node.config
                .workload_types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if req.trigger_subjects.is_empty() {
        return Err("a function needs at least one trigger subject".into());
    }
    for s in &req.trigger_subjects {
        validate::trigger_subject(s, &node.config.deny_trigger_subjects)?;
    }
    if let Some(t) = req.target_node.as_deref().filter(|t| !t.is_empty())
        && t != node.node_id
    {
        return Err(format!("deploy is addressed to node {t}, not this one"));
    }
    // Deploys from the node's own config are trusted; every other one is signed.
    let (issuer, signed_id) = if local {
        (String::new(), None)
    } else {
        let claims = check_deploy_token(node, &req)?;
        (claims.iss, Some(claims.sub))
    };
    let limits = node
        .config
        .workload_defaults()?
        .apply(req.limits.as_ref())?;
    let environment = match req.environment.as_deref().filter(|e| !e.is_empty()) {
        None => BTreeMap::new(),
        Some(sealed) => {
            let sender = req.sender_public_key.as_deref().ok_or(
                "an environment is present but sender_public_key (the sender's xkey) is missing",
            )?;
            node.identity.open_environment(sealed, sender)?
        }
    };

    let nl = node.config.node_limits;
    let bytes = artifact::fetch(
        &node.js,
        &req.location,
        local || node.config.allow_file_locations,
        nl.max_workload_bytes,
    )
    .await?;
    let hash = if local && req.hash.is_empty() {
        artifact::sha256_hex(&bytes)
    } else {
        artifact::verify_hash(&bytes, &req.hash)?
    };

    let _guard = node.deploy_lock.lock().await;
    let replaced = node
        .workloads()
        .into_iter()
        .find(|w| w.meta.namespace == ns && w.meta.name == req.workload_name);
    let count = node.workload_count() - usize::from(replaced.is_some());
    if count >= nl.max_workloads {
        return Err(format!(
            "this node already runs its maximum of {} workloads",
            nl.max_workloads
        ));
    }
    let total: u64 = node
        .workloads()
        .iter()
        .filter(|w| replaced.as_ref().is_none_or(|r| r.meta.id != w.meta.id))
        .map(|w| w.meta.total_bytes)
        .sum();
    if total + bytes.len() as u64 > nl.max_total_bytes {
        return Err(format!(
            "this node's artifact budget of {} bytes would be exceeded",
            nl.max_total_bytes
        ));
    }

    let id = signed_id
        .or_else(|| req.id.clone().filter(|i| !i.is_empty()))
        .unwrap_or_else(nex_jwt::new_workload_id);
    validate::name("workload id", &id)?;
    if node.workloads().iter().any(|w| w.meta.id == id) {
        return Err(format!("a workload with id {id} already runs on this node"));
    }
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
    };
    let mut argv = vec!["nexfunction".to_owned()];
    argv.extend(req.argv.iter().cloned());
    let spec = AgentSpec {
        init: AgentInit {
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
        },
        artifact: Arc::new(bytes),
        agents: node.agents.clone(),
    };
    let total_bytes = meta.total_bytes;
    let wl = Workload::start(
        meta,
        spec,
        node.client.clone(),
        node.emitter.clone(),
        node.config.http_policy(),
    )
    .await
    .map_err(|e| format!("workload {} did not start: {e}", req.workload_name))?;
    node.workloads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), wl);
    drop(_guard);

    if let Some(old) = replaced {
        node.workloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&old.meta.id);
        old.stop(Duration::from_secs(5)).await;
        undeployed_event(node, &old, &format!("replaced by {id}")).await;
    }
    node.emitter
        .event(
            ns,
            events::WORKLOAD_DEPLOYED,
            WorkloadDeployed {
                workload_id: id.clone(),
                workload_name: req.workload_name.clone(),
                total_bytes,
            },
        )
        .await;
    tracing::info!(workload_id = %id, "workload deployed");
    Ok(RunResponse {
        started: true,
        id,
        issuer,
        name: req.workload_name,
    })
}

pub(crate) async fn undeployed_event(node: &Node, w: &Workload, message: &str) {
    node.emitter
        .event(
            &w.meta.namespace,
            events::WORKLOAD_UNDEPLOYED,
            WorkloadUndeployed {
                workload_id: w.meta.id.clone(),
                workload_name: w.meta.name.clone(),
                code: 0,
                message: message.to_owned(),
            },
        )
        .await;
}

#[instrument(skip_all, fields(namespace = ns, workload_id = %req.workload_id))]
async fn stop(node: &Arc<Node>, ns: &str, req: StopRequest) -> Result<StopResponse, String> {
    let wl = {
        let mut map = node.workloads.lock().unwrap_or_else(|p| p.into_inner());
        let found = match map.get(&req.workload_id) {
            Some(w) if w.meta.namespace == ns => Some(w.clone()),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "no workload {} in namespace {ns} on this node",
                req.workload_id
            )
        })?;
        check_stop_token(node, &req, &found)?;
        map.remove(&req.workload_id);
        found
    };
    wl.stop(Duration::from_secs(5)).await;
    undeployed_event(node, &wl, "stopped by request").await;
    tracing::info!("workload stopped");
    Ok(StopResponse {
        stopped: true,
        id: wl.meta.id.clone(),
        issuer: wl.meta.issuer.clone(),
        name: wl.meta.name.clone(),
    })
}

async fn lameduck(node: &Arc<Node>) -> LameduckResponse {
    node.lameduck.store(true, Ordering::Release);
    node.emitter
        .event(
            subjects::SYSTEM_NAMESPACE,
            events::NODE_ENTERED_LAMEDUCK,
            serde_json::json!({ "node_id": node.node_id }),
        )
        .await;
    LameduckResponse {
        node_id: node.node_id.clone(),
        success: true,
    }
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
        match deploy(node, &ns, req, true).await {
            Ok(r) => tracing::info!(name = %w.name, id = %r.id, "autostarted"),
            Err(e) => tracing::error!(name = %w.name, "autostart failed: {e}"),
        }
    }
}
