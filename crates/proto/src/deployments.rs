//! Desired state: deployment records in the [`DEPLOYMENTS_BUCKET`] key-value bucket, the
//! presence beacons nodes publish on [`PRESENCE`](crate::subjects::PRESENCE), and the placement
//! rule every node (and the CLI) computes alike from the two.
//!
//! A record is a [`DeploymentSpec`] signed once by its issuer (a JWT whose `data` is the spec,
//! see `nex_jwt::sign_document`) stored under [`deployment_key`]. Nodes verify it before they run
//! anything from it. Placement is *rendezvous hashing*: every live node that matches a record
//! gets a score from SHA-256 of (node id, key), and the `replicas` highest run it. Nodes that see
//! the same peers choose the same nodes, so no replica is placed twice and no lock is needed;
//! a node joining or leaving moves only the replicas it gains or held.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::control::{Limits, WorkloadType};
use crate::validate::{NameError, TriggerError};

/// Why a deployment record's spec is refused (by the CLI before it writes, by every node that
/// reads it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("replicas must be 1 to {MAX_REPLICAS}, not {0}")]
    Replicas(u32),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error("hash `{0}` is not a SHA-256 hex digest")]
    Hash(String),
}

/// Key-value bucket of deployment records.
pub const DEPLOYMENTS_BUCKET: &str = "NEXDEPLOYMENTS";
/// Most replicas a record may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// Revisions of each record the bucket keeps (history for `nex ls --history` and audits).
pub const RECORD_HISTORY: i64 = 5;

/// Key of the record of workload `name` in `namespace`: `<namespace>.<name>` (names hold no
/// `.`, see [`crate::validate::name`], so the split is unambiguous).
pub fn deployment_key(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// Splits a record key into namespace and name.
pub fn parse_deployment_key(key: &str) -> Option<(&str, &str)> {
    let (ns, name) = key.split_once('.')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('.')).then_some((ns, name))
}

/// What a deployment is: everything a node needs to run a replica, signed by the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub namespace: String,
    pub name: String,
    /// Grows by one with every record of this key; nodes refuse a record older than one they
    /// have seen (no roll-back while they run).
    pub version: u64,
    #[serde(rename = "type")]
    pub workload_type: WorkloadType,
    /// `nats://BUCKET/key` of the artifact.
    pub location: String,
    /// SHA-256 hex of the artifact.
    pub hash: String,
    pub trigger_subjects: Vec<String>,
    pub replicas: u32,
    /// Node tags a node must have (all of them, equal values) to run a replica.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Base64 of the JSON environment map sealed by `sender_public_key` to the nodes'
    /// shared deployment xkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_public_key: Option<String>,
    /// A signed removal: nodes stop every replica; the key keeps the tombstone so that an older
    /// record cannot be put back unnoticed while nodes remember it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undeployed: bool,
}

impl DeploymentSpec {
    /// A spec of one replica with nothing else set (version 0, no artifact, no triggers):
    /// fill in the rest with struct update syntax.
    pub fn new(namespace: &str, name: &str, workload_type: WorkloadType) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version: 0,
            workload_type,
            location: String::new(),
            hash: String::new(),
            trigger_subjects: Vec::new(),
            replicas: 1,
            placement: BTreeMap::new(),
            description: None,
            argv: Vec::new(),
            limits: None,
            environment: None,
            sender_public_key: None,
            undeployed: false,
        }
    }

    /// This record's key in the bucket.
    pub fn key(&self) -> String {
        deployment_key(&self.namespace, &self.name)
    }

    /// Checks what the record alone can tell: names, replica count, subjects.
    pub fn check(&self) -> Result<(), SpecError> {
        crate::validate::name("namespace", &self.namespace)?;
        crate::validate::name("workload name", &self.name)?;
        if self.undeployed {
            return Ok(());
        }
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return Err(SpecError::Replicas(self.replicas));
        }
        if self.trigger_subjects.is_empty() {
            return Err(TriggerError::Missing.into());
        }
        crate::validate::trigger_subjects(&self.trigger_subjects, &[])?;
        if self.hash.len() != 64 || !self.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SpecError::Hash(self.hash.clone()));
        }
        Ok(())
    }

    /// Does a node with these tags and workload types match this record's placement?
    pub fn matches(&self, tags: &BTreeMap<String, String>, types: &[WorkloadType]) -> bool {
        types.contains(&self.workload_type)
            && self
                .placement
                .iter()
                .all(|(k, v)| tags.get(k).is_some_and(|t| t == v))
    }
}

/// One replica a node runs, as its presence reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// Record key.
    pub key: String,
    pub version: u64,
    pub workload_id: String,
}

/// A record a node could not run (bad artifact, quota, load failure): other nodes then place
/// that version elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub key: String,
    pub version: u64,
    pub reason: String,
}

/// A node's beacon on `$NEX.PRESENCE`, published every presence interval and on every change.
/// A node that sends none for the configured `node_gone_after` is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub node_id: String,
    #[serde(default)]
    pub lameduck: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub workload_types: Vec<WorkloadType>,
    /// Replicas of deployment records it runs (not workloads deployed to it directly).
    #[serde(default)]
    pub running: Vec<ReplicaState>,
    #[serde(default)]
    pub refused: Vec<Refused>,
    /// Milliseconds between its beacons.
    #[serde(default)]
    pub interval_ms: u64,
    /// Its last beacon: the node is stopping (forget it now, do not wait for silence).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

impl Presence {
    /// May this node take a new replica of `spec`?
    pub fn eligible_for(&self, spec: &DeploymentSpec) -> bool {
        !self.lameduck
            && spec.matches(&self.tags, &self.workload_types)
            && !self
                .refused
                .iter()
                .any(|r| r.key == spec.key() && r.version == spec.version)
    }

    /// The version of `key` this node runs, if any.
    pub fn runs(&self, key: &str) -> Option<u64> {
        self.running
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.version)
            .max()
    }
}

/// Rendezvous score of `node` for record `key`: the first 8 bytes of SHA-256(node, 0, key).
pub fn score(node: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Memoized [`score`]s. A node plans again on every change of presence, and each plan scores
/// every (node, record) pair: R records on N nodes are R×N SHA-256 computations (10,000 with
/// 100 of each), on every node, for every beacon that changed something. Scores never change,
/// so each pair is hashed once; the memo is dropped whole past [`Scores::MAX_ENTRIES`].
#[derive(Debug, Default)]
pub struct Scores {
    by_key: std::collections::HashMap<String, std::collections::HashMap<String, u64>>,
    entries: usize,
}

impl Scores {
    /// Most pairs kept (a few tens of MB at most).
    pub const MAX_ENTRIES: usize = 1 << 18;

    /// [`score`] of `node` for `key`, computed once.
    pub fn score(&mut self, node: &str, key: &str) -> u64 {
        if let Some(s) = self.by_key.get(key).and_then(|m| m.get(node)) {
            return *s;
        }
        if self.entries >= Self::MAX_ENTRIES {
            self.by_key.clear();
            self.entries = 0;
        }
        let s = score(node, key);
        self.by_key
            .entry(key.to_owned())
            .or_default()
            .insert(node.to_owned(), s);
        self.entries += 1;
        s
    }
}

/// The nodes that run record `spec`: the `replicas` eligible nodes of `live` with the highest
/// [`score`], best first. Fewer when fewer are eligible (the shortfall).
pub fn place<'a>(
    spec: &DeploymentSpec,
    live: impl IntoIterator<Item = &'a Presence>,
) -> Vec<String> {
    place_with(spec, live, &mut Scores::default())
}

/// [`place`], with scores from (and into) `scores`.
pub fn place_with<'a>(
    spec: &DeploymentSpec,
    live: impl IntoIterator<Item = &'a Presence>,
    scores: &mut Scores,
) -> Vec<String> {
    let key = spec.key();
    let mut scored: Vec<(u64, &str)> = live
        .into_iter()
        .filter(|p| p.eligible_for(spec))
        .map(|p| (scores.score(&p.node_id, &key), p.node_id.as_str()))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(spec.replicas as usize)
        .map(|(_, n)| n.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, replicas: u32) -> DeploymentSpec {
        DeploymentSpec {
            version: 1,
            location: "nats://NEXCLIFILES/default/x".into(),
            hash: "a".repeat(64),
            trigger_subjects: vec!["echo".into()],
            replicas,
            ..DeploymentSpec::new("default", name, WorkloadType::Javascript)
        }
    }

    fn node(id: &str) -> Presence {
        Presence {
            node_id: id.into(),
            lameduck: false,
            tags: BTreeMap::new(),
            workload_types: vec![WorkloadType::Javascript, WorkloadType::Wasm],
            running: vec![],
            refused: vec![],
            interval_ms: 1000,
            leaving: false,
        }
    }

    #[test]
    fn keys_split_back_into_namespace_and_name() {
        let k = deployment_key("team_a", "echo-1");
        assert_eq!(parse_deployment_key(&k), Some(("team_a", "echo-1")));
        assert_eq!(parse_deployment_key("nodot"), None);
        assert_eq!(parse_deployment_key("a.b.c"), None);
        assert_eq!(parse_deployment_key(".b"), None);
    }

    #[test]
    fn replicas_land_on_distinct_nodes_and_every_order_of_peers_agrees() {
        let nodes: Vec<_> = (0..7).map(|i| node(&format!("N{i}"))).collect();
        let s = spec("echo", 3);
        let a = place(&s, &nodes);
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(a, place(&s, &reversed));
        assert_eq!(a.len(), 3);
        let mut distinct = a.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);
        // A duplicated presence does not count twice.
        let mut doubled = nodes.clone();
        doubled.extend(nodes.clone());
        assert_eq!(place(&s, &doubled), a);
    }

    #[test]
    fn memoized_scores_place_as_fresh_ones_do() {
        let mut scores = Scores::default();
        let mut nodes: Vec<_> = (0..20).map(|i| node(&format!("N{i}"))).collect();
        for round in 0..3 {
            for r in 0..30 {
                let s = spec(&format!("f{r}"), 1 + r % 4);
                assert_eq!(place_with(&s, &nodes, &mut scores), place(&s, &nodes));
                assert_eq!(
                    scores.score("N3", &s.key()),
                    score("N3", &s.key()),
                    "round {round}"
                );
            }
            // Nodes come and go between plans; known pairs are reused, new ones scored.
            nodes.remove(round);
            nodes.push(node(&format!("M{round}")));
        }
        // 20 nodes, then M0 and M1 (M2 came after the last plan): each pair scored once.
        assert_eq!(scores.entries, 30 * 22);
    }

    #[test]
    fn fewer_matching_nodes_than_replicas_is_a_shortfall() {
        let nodes: Vec<_> = (0..2).map(|i| node(&format!("N{i}"))).collect();
        assert_eq!(place(&spec("echo", 5), &nodes).len(), 2);
        let mut tagged = spec("echo", 5);
        tagged.placement.insert("zone".into(), "eu".into());
        assert!(place(&tagged, &nodes).is_empty());
        let mut eu = node("N9");
        eu.tags.insert("zone".into(), "eu".into());
        assert_eq!(place(&tagged, [&nodes[0], &eu]), vec!["N9".to_owned()]);
    }

    #[test]
    fn losing_a_node_moves_only_its_replicas() {
        let nodes: Vec<_> = (0..10).map(|i| node(&format!("N{i}"))).collect();
        let specs: Vec<_> = (0..50).map(|i| spec(&format!("f{i}"), 2)).collect();
        let before: Vec<_> = specs.iter().map(|s| place(s, &nodes)).collect();
        let lost = "N3";
        let rest: Vec<_> = nodes
            .iter()
            .filter(|n| n.node_id != lost)
            .cloned()
            .collect();
        for (s, old) in specs.iter().zip(&before) {
            let new = place(s, &rest);
            for kept in old.iter().filter(|n| *n != lost) {
                assert!(new.contains(kept), "{} moved off {kept}", s.name);
            }
        }
    }

    #[test]
    fn lame_ducks_and_refusals_are_not_eligible() {
        let mut a = node("A");
        let b = node("B");
        let s = spec("echo", 2);
        a.lameduck = true;
        assert_eq!(place(&s, [&a, &b]), vec!["B".to_owned()]);
        a.lameduck = false;
        a.refused.push(Refused {
            key: s.key(),
            version: 1,
            reason: "quota".into(),
        });
        assert_eq!(place(&s, [&a, &b]), vec!["B".to_owned()]);
        let mut v2 = s.clone();
        v2.version = 2;
        assert_eq!(place(&v2, [&a, &b]).len(), 2);
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(spec("echo", 0).check(), Err(SpecError::Replicas(0)));
        assert_eq!(
            spec("echo", MAX_REPLICAS + 1).check(),
            Err(SpecError::Replicas(MAX_REPLICAS + 1))
        );
        assert!(spec("echo", 3).check().is_ok());
        let mut s = spec("echo", 1);
        s.trigger_subjects = vec!["$SYS.x".into()];
        assert!(matches!(
            s.check(),
            Err(SpecError::Trigger(TriggerError::Reserved { .. }))
        ));
        s.trigger_subjects.clear();
        assert_eq!(s.check(), Err(SpecError::Trigger(TriggerError::Missing)));
        let mut s = spec("a.b", 1);
        s.name = "a.b".into();
        assert!(matches!(
            s.check(),
            Err(SpecError::Name(NameError::Character { found: '.', .. }))
        ));
        let mut s = spec("echo", 1);
        s.hash = "zz".into();
        assert_eq!(s.check(), Err(SpecError::Hash("zz".into())));
    }
}
