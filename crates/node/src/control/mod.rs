//! Handlers of the `$NEX.*` control subjects. Every request with a reply subject gets an
//! [`Envelope`]: data on success; on failure an error sentence and its stable
//! [`ErrorCode`](nex_proto::control::ErrorCode). Malformed input never panics and never disturbs
//! running workloads.
//!
//! Layout:
//! - [`auth`]: who signed a request and whether they may (tokens, operators, owners).
//! - [`read`]: ping, auction, workload ping, info.
//! - [`deploy`]: the deploy pipeline, stage by stage, and autostart.
//! - [`error`]: [`ControlError`], one variant per refusal, each with its code.
//! - this module: dispatch, stop and lame duck.

pub(crate) mod auth;
pub(crate) mod deploy;
pub(crate) mod error;
mod read;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::Message;
use bytes::Bytes;
use nex_proto::control::*;
use nex_proto::events::{self, WorkloadUndeployed};
use nex_proto::subjects;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::instrument;

pub(crate) use self::deploy::{Authority, RecordRef, Reservation, autostart, deploy};
use self::error::{ControlError, Result};
use crate::Node;
use crate::workload::Workload;

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
    let mut lameducked = false;
    let body = match kind {
        Kind::Ping => answer(PING_RESPONSE_TYPE, Ok(read::ping(&node))),
        Kind::Auction => match read::auction(&node, &msg.payload) {
            Some(r) => answer(AUCTION_RESPONSE_TYPE, r),
            None => return,
        },
        Kind::WorkloadPing => match read::workload_ping(&node, &msg) {
            Some(r) => answer(PING_RESPONSE_TYPE, Ok(r)),
            None => return,
        },
        Kind::Info => answer(INFO_RESPONSE_TYPE, read::info(&node, &msg)),
        Kind::Deploy => {
            let ns = subjects::namespace_of(msg.subject.as_str()).unwrap_or_default();
            let r = match parse::<DeployRequest>(&msg.payload, "deploy request") {
                Ok(req) => deploy::deploy(&node, ns, req, deploy::Authority::Token).await,
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
            let r = lameduck(&node, &msg).await;
            lameducked = r.is_ok();
            answer(LAMEDUCK_RESPONSE_TYPE, r)
        }
    };
    let _ = node.client.publish(reply, body).await;
    if lameducked {
        let _ = node.client.flush().await;
        let n = node.clone();
        tokio::spawn(async move {
            // Replicas of deployment records move to other nodes first.
            if n.config.deployments.enabled {
                crate::desired::hand_over(&n, n.config.deployments.lameduck_handoff).await;
            }
            n.stop_all("node entered lame-duck mode").await;
            n.exit.notify_one();
        });
    }
}

fn answer<T: Serialize>(kind: &str, r: Result<T>) -> Bytes {
    let env = match r {
        Ok(d) => Envelope::ok(kind, d),
        Err(e) => Envelope::refused(kind, e.code(), &e),
    };
    Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
}

fn parse<T: DeserializeOwned + Default>(payload: &[u8], what: &str) -> Result<T> {
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ControlError::Invalid(format!(
            "{what} is empty; expected a JSON object"
        )));
    }
    serde_json::from_slice(payload)
        .map_err(|e| ControlError::Invalid(format!("malformed {what}: {e}")))
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

/// Takes workload `id` out of the registry, stops it and reports it undeployed.
pub(crate) async fn retire(node: &Node, id: &str, message: &str) {
    let wl = node
        .workloads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    if let Some(wl) = wl {
        wl.stop(Duration::from_secs(5)).await;
        undeployed_event(node, &wl, message).await;
    }
}

#[instrument(skip_all, fields(namespace = ns, workload_id = %req.workload_id))]
async fn stop(node: &Arc<Node>, ns: &str, req: StopRequest) -> Result<StopResponse> {
    let wl = {
        let mut map = node.workloads.lock().unwrap_or_else(|p| p.into_inner());
        let found = match map.get(&req.workload_id) {
            Some(w) if w.meta.namespace == ns => w.clone(),
            _ => {
                return Err(ControlError::NotFound {
                    id: req.workload_id,
                    namespace: ns.to_owned(),
                });
            }
        };
        auth::stop_token(node, &req, &found)?;
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

/// Lame duck, for the node's operators only: stop taking work, then drain and exit.
async fn lameduck(node: &Arc<Node>, msg: &Message) -> Result<LameduckResponse> {
    auth::lameduck_token(node, msg.headers.as_ref())?;
    node.lameduck.store(true, Ordering::Release);
    node.emitter
        .event(
            subjects::SYSTEM_NAMESPACE,
            events::NODE_ENTERED_LAMEDUCK,
            serde_json::json!({ "node_id": node.node_id }),
        )
        .await;
    Ok(LameduckResponse {
        node_id: node.node_id.clone(),
        success: true,
    })
}
