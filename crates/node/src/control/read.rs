//! Read-only control requests: ping, auction, workload ping and info. Anyone gets the public
//! node summary; workloads are listed only to their issuer (and to operators).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use async_nats::Message;
use nex_proto::control::*;
use nex_proto::subjects;

use super::auth::{self, Reader};
use super::error::{ControlError, Result};
use crate::Node;

pub(crate) fn ping(node: &Node) -> PingResponse {
    PingResponse {
        node_id: node.node_id.clone(),
        nexus: node.config.nexus.clone(),
        version: nex_proto::VERSION.into(),
        uptime: node.uptime(),
        target_xkey: node.identity.xkey.public_key(),
        tags: node.tags(),
        running_machines: node.workload_count(),
        deployment_xkey: node.deployment_xkey.as_ref().map(|k| k.public_key()),
        known_nodes: match node.known_nodes.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        },
    }
}

/// `None`: this node does not bid (no match, lame duck, or malformed request).
pub(crate) fn auction(node: &Node, payload: &[u8]) -> Option<Result<PingResponse>> {
    if node.lameduck.load(Ordering::Acquire) {
        return None;
    }
    let req: AuctionRequest = if payload.iter().all(|b| b.is_ascii_whitespace()) {
        AuctionRequest::default()
    } else {
        match serde_json::from_slice(payload) {
            Ok(r) => r,
            // Upstream's CLI asks for types nex does not run (`native`, its default): no bid,
            // as upstream's nodes do, rather than an error reply.
            Err(_) if asks_for_an_unknown_type(payload) => return None,
            Err(e) => {
                return Some(Err(ControlError::Invalid(format!(
                    "malformed auction request: {e}"
                ))));
            }
        }
    };
    let tags = node.tags();
    let matches = req
        .arch
        .as_deref()
        .is_none_or(|a| arch_matches(a, std::env::consts::ARCH))
        && req
            .os
            .as_deref()
            .is_none_or(|o| o.eq_ignore_ascii_case(std::env::consts::OS))
        && req.sandboxed.is_none_or(|s| s != node.config.no_sandbox)
        && req.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
        && req
            .workload_types
            .iter()
            .all(|t| node.config.workload_types.contains(t));
    matches.then(|| {
        Ok(PingResponse {
            known_nodes: None,
            ..ping(node)
        })
    })
}

/// Whether an auction's `arch` names this node's: Rust's names (`x86_64`, `aarch64`) or Go's
/// (`amd64`, `arm64`, as upstream sends them), in any case.
fn arch_matches(asked: &str, ours: &str) -> bool {
    let go_to_rust = |a: &str| match a.to_ascii_lowercase().as_str() {
        "amd64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        other => other.to_owned(),
    };
    go_to_rust(asked) == go_to_rust(ours)
}

/// Whether an auction that did not parse asks for a workload type this node does not know.
fn asks_for_an_unknown_type(payload: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return false;
    };
    v.get("workload_types")
        .and_then(|t| t.as_array())
        .is_some_and(|types| {
            types.iter().any(|t| {
                t.as_str()
                    .is_some_and(|t| serde_json::from_value::<WorkloadType>(t.into()).is_err())
            })
        })
}

/// Answers only when the signer can see a matching workload here: an unsigned workload ping
/// gets no answer, so it learns nothing of which names run where.
pub(crate) fn workload_ping(node: &Node, msg: &Message) -> Option<WorkloadPingResponse> {
    let (ns, which) = subjects::parse_workload_ping(msg.subject.as_str())?;
    let reader = auth::reader(node, msg.headers.as_ref(), ns).ok()?;
    let running: Vec<_> = node
        .workloads()
        .iter()
        .filter(|w| w.meta.namespace == ns && reader.sees(w))
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

/// The host's memory in MiB (0 when unknown).
pub(crate) fn host_memory_mb() -> u64 {
    meminfo().total / 1024
}

/// The public node summary for everyone; the signer's workloads in the namespace (all of them,
/// with agent pids, for operators).
pub(crate) fn info(node: &Node, msg: &Message) -> Result<InfoResponse> {
    let ns = subjects::namespace_of(msg.subject.as_str()).unwrap_or_default();
    let reader = auth::reader(node, msg.headers.as_ref(), ns)?;
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
    Ok(InfoResponse {
        node_id: node.node_id.clone(),
        version: nex_proto::VERSION.into(),
        uptime: node.uptime(),
        public_xkey: node.identity.xkey.public_key(),
        tags: node.tags(),
        memory: meminfo(),
        machines: node
            .workloads()
            .iter()
            .filter(|w| w.meta.namespace == ns && reader.sees(w))
            .map(|w| {
                let mut info = w.info();
                if reader != Reader::Operator {
                    info.agent_pid = None;
                }
                info
            })
            .collect(),
        supported_workload_types: node.config.workload_types.clone(),
        sandbox,
    })
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    #[test]
    fn go_arch_names_in_any_case_match() {
        assert!(arch_matches("amd64", "x86_64"));
        assert!(arch_matches("AMD64", "x86_64"));
        assert!(arch_matches("X86_64", "x86_64"));
        assert!(arch_matches("arm64", "aarch64"));
        assert!(!arch_matches("arm64", "x86_64"));
    }

    #[test]
    fn unknown_types_are_told_from_malformed_auctions() {
        assert!(asks_for_an_unknown_type(
            br#"{"workload_types":["native"]}"#
        ));
        assert!(!asks_for_an_unknown_type(
            br#"{"workload_types":["wasm"],"x":1}"#
        ));
        assert!(!asks_for_an_unknown_type(b"not json"));
    }
}
