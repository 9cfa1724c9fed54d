//! Finding nodes and workloads from what a user types: a whole id, a unique prefix of one, or
//! (for workloads) a name. When a prefix matches several, the error lists them.

use nex_proto::control::{MachineSummary, StopResponse};
use nex_proto::subjects;

use crate::keys::SenderKeys;
use crate::{Error, NexClient, Result};

/// Length of a node id (an nkey server public key, `N...`).
const NODE_ID_LEN: usize = 56;
/// Length of a workload id, as `nex_jwt::new_workload_id` makes them.
const WORKLOAD_ID_LEN: usize = 22;

/// A running workload and the node it runs on.
#[derive(Debug, Clone)]
pub struct Located {
    pub node_id: String,
    pub machine: MachineSummary,
}

/// Whether `id` is a whole node id (no look-up needed).
fn is_node_id(id: &str) -> bool {
    id.len() == NODE_ID_LEN && id.starts_with('N') && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The one of `ids` that `prefix` begins (ids compared in upper case: node ids are).
fn pick_node(prefix: &str, ids: Vec<String>) -> Result<String> {
    let wanted = prefix.to_ascii_uppercase();
    let mut hits: Vec<String> = ids
        .iter()
        .filter(|id| id.starts_with(&wanted))
        .cloned()
        .collect();
    hits.sort();
    hits.dedup();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(Error::NotFound {
            what: "node",
            wanted: prefix.to_owned(),
            known: ids,
        }),
        _ => Err(Error::Ambiguous {
            what: "node",
            prefix: prefix.to_owned(),
            candidates: hits,
        }),
    }
}

/// The workloads `wanted` means among `running`: the one with that id; else every replica
/// named `wanted`; else the one whose id begins with `wanted`.
fn pick_workloads(wanted: &str, running: Vec<Located>) -> Result<Vec<Located>> {
    if let Some(w) = running.iter().find(|w| w.machine.id == wanted) {
        return Ok(vec![w.clone()]);
    }
    let named: Vec<Located> = running
        .iter()
        .filter(|w| w.machine.name == wanted)
        .cloned()
        .collect();
    if !named.is_empty() {
        return Ok(named);
    }
    let mut by_prefix: Vec<Located> = running
        .iter()
        .filter(|w| !wanted.is_empty() && w.machine.id.starts_with(wanted))
        .cloned()
        .collect();
    match by_prefix.len() {
        1 => Ok(vec![by_prefix.remove(0)]),
        0 => Err(Error::NotFound {
            what: "workload",
            wanted: wanted.to_owned(),
            known: running
                .iter()
                .map(|w| format!("{} {}", w.machine.name, w.machine.id))
                .collect(),
        }),
        _ => Err(Error::Ambiguous {
            what: "workload",
            prefix: wanted.to_owned(),
            candidates: by_prefix
                .iter()
                .map(|w| format!("{} ({})", w.machine.id, w.machine.name))
                .collect(),
        }),
    }
}

impl NexClient {
    /// The whole id of the node `id` names: `id` itself when it is a whole node id, else the one
    /// node (of those answering a ping) whose id begins with it, in any case.
    pub async fn resolve_node(&self, id: &str) -> Result<String> {
        if is_node_id(id) {
            return Ok(id.to_owned());
        }
        let ids: Vec<String> = self.ping().await?.into_iter().map(|n| n.node_id).collect();
        if ids.is_empty() {
            return Err(Error::NoResponders {
                subject: subjects::PING.to_owned(),
            });
        }
        pick_node(id, ids)
    }

    /// The running workloads of this namespace (that this client's issuer may see) that
    /// `wanted` means: an id, a unique id prefix, or a name (every replica of it). With `node`,
    /// only that node's.
    pub async fn find_workloads(&self, wanted: &str, node: Option<&str>) -> Result<Vec<Located>> {
        let running: Vec<Located> = self
            .workload_ping(None)
            .await?
            .into_iter()
            .filter(|a| node.is_none_or(|n| a.node_id == n))
            .flat_map(|a| {
                let node_id = a.node_id;
                a.running_machines.into_iter().map(move |machine| Located {
                    node_id: node_id.clone(),
                    machine,
                })
            })
            .collect();
        pick_workloads(wanted, running)
    }

    /// Stops what `wanted` names (see [`find_workloads`](Self::find_workloads)) wherever it
    /// runs, signing each stop with `keys`.
    pub async fn stop_named(&self, keys: &SenderKeys, wanted: &str) -> Result<Vec<StopResponse>> {
        let mut stopped = Vec::new();
        for w in self.find_workloads(wanted, None).await? {
            stopped.push(self.stop(keys, &w.node_id, &w.machine.id).await?);
        }
        Ok(stopped)
    }

    /// Stops workload `workload` (a whole id, a unique id prefix or a name) on node `node` (a
    /// whole id or a unique prefix).
    pub async fn stop_on(
        &self,
        keys: &SenderKeys,
        node: &str,
        workload: &str,
    ) -> Result<Vec<StopResponse>> {
        let node = self.resolve_node(node).await?;
        if workload.len() == WORKLOAD_ID_LEN {
            // A whole id: the node says whether it runs it.
            return Ok(vec![self.stop(keys, &node, workload).await?]);
        }
        let mut stopped = Vec::new();
        for w in self.find_workloads(workload, Some(&node)).await? {
            stopped.push(self.stop(keys, &node, &w.machine.id).await?);
        }
        Ok(stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use nex_proto::control::WorkloadType;

    fn at(node: &str, id: &str, name: &str) -> Located {
        Located {
            node_id: node.into(),
            machine: MachineSummary {
                id: id.into(),
                namespace: "default".into(),
                name: name.into(),
                workload_type: WorkloadType::Wasm,
            },
        }
    }

    #[test]
    fn a_unique_node_prefix_in_any_case_resolves() {
        let ids = vec!["NABC".to_owned(), "NBCD".to_owned()];
        assert_eq!(pick_node("nb", ids.clone()).unwrap(), "NBCD");
        assert_eq!(
            pick_node("N", ids.clone()).unwrap_err().kind(),
            ErrorKind::Ambiguous
        );
        let e = pick_node("NX", ids).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("NABC, NBCD"), "{e}");
        assert!(is_node_id(&format!("N{}", "A".repeat(55))));
        assert!(!is_node_id("NABC"));
    }

    #[test]
    fn workloads_by_id_name_or_unique_prefix() {
        let running = vec![
            at("N1", "abc111", "echo"),
            at("N2", "abc222", "echo"),
            at("N1", "xyz333", "counter"),
        ];
        let ids = |r: Result<Vec<Located>>| -> Vec<String> {
            r.unwrap().into_iter().map(|w| w.machine.id).collect()
        };
        assert_eq!(ids(pick_workloads("abc222", running.clone())), ["abc222"]);
        assert_eq!(
            ids(pick_workloads("echo", running.clone())),
            ["abc111", "abc222"]
        );
        assert_eq!(ids(pick_workloads("xy", running.clone())), ["xyz333"]);
        let e = pick_workloads("abc", running.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Ambiguous);
        assert!(e.to_string().contains("abc111 (echo)"), "{e}");
        let e = pick_workloads("nope", running).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("counter xyz333"), "{e}");
        assert_eq!(
            pick_workloads("", vec![]).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
