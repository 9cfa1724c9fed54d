//! What one node does to converge: from the records, the live nodes' presence (its own
//! included) and the replicas it runs, the replicas to start and to stop. A pure function, so
//! every rule is tested here without NATS.
//!
//! Rules, per record:
//! - the node is among the record's placed nodes ([`nex_proto::deployments::place`]) and does
//!   not run its version: start it (a same-name replica of an older version is replaced once
//!   the new one is ready, so a rolling replace never leaves the node without one);
//! - the node runs a replica but is not placed (a node joined, the record's replicas went down,
//!   or this node is a lame duck): stop it only once every placed node reports the record's
//!   version running, so the name never has no replica;
//! - the record is removed, or a tombstone: stop at once.

use std::collections::{BTreeMap, HashSet};

use nex_proto::deployments::{Presence, Scores, place_with};

use super::records::Record;

/// A replica of a record this node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Local {
    pub key: String,
    pub version: u64,
    pub workload_id: String,
}

/// One step towards the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a replica of the record under this key.
    Start { key: String },
    /// Stop this replica.
    Stop {
        workload_id: String,
        key: String,
        why: &'static str,
    },
}

/// What the node learns beside the actions.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub actions: Vec<Action>,
    /// Keys of replicas here that no other node can take (every other node is ineligible):
    /// a lame duck stops waiting for them.
    pub stranded: Vec<String>,
}

/// [`plan_with`], scoring afresh.
#[cfg(test)]
pub(crate) fn plan(
    me: &str,
    records: &BTreeMap<String, Record>,
    live: &[Presence],
    local: &[Local],
    starting: &HashSet<String>,
) -> Plan {
    plan_with(me, records, live, local, starting, &mut Scores::default())
}

/// The plan of node `me`. `live` holds every live node's presence, `me`'s own included;
/// `starting` the keys whose start is under way here; `scores` the rendezvous scores known.
pub(crate) fn plan_with(
    me: &str,
    records: &BTreeMap<String, Record>,
    live: &[Presence],
    local: &[Local],
    starting: &HashSet<String>,
    scores: &mut Scores,
) -> Plan {
    let mut out = Plan::default();
    for (key, record) in records {
        let spec = &record.spec;
        let mine: Vec<&Local> = local.iter().filter(|l| &l.key == key).collect();
        if spec.undeployed {
            for l in mine {
                out.actions.push(stop(l, "undeployed"));
            }
            continue;
        }
        let placed = place_with(spec, live, scores);
        if placed.iter().any(|n| n == me) {
            let current = mine.iter().any(|l| l.version == spec.version);
            if !current && !starting.contains(key) {
                out.actions.push(Action::Start { key: key.clone() });
            }
            // Older versions here are replaced by the start (same name).
            continue;
        }
        if mine.is_empty() {
            continue;
        }
        if placed.is_empty() {
            out.stranded.push(key.clone());
            continue;
        }
        let handed_over = placed.iter().all(|n| {
            live.iter()
                .find(|p| &p.node_id == n)
                .and_then(|p| p.runs(key))
                == Some(spec.version)
        });
        if handed_over {
            for l in mine {
                out.actions.push(stop(l, "placed on other nodes"));
            }
        }
    }
    for l in local {
        if !records.contains_key(&l.key) {
            out.actions
                .push(stop(l, "its deployment record was removed"));
        }
    }
    out
}

fn stop(l: &Local, why: &'static str) -> Action {
    Action::Stop {
        workload_id: l.workload_id.clone(),
        key: l.key.clone(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nex_proto::control::WorkloadType;
    use nex_proto::deployments::{DeploymentSpec, ReplicaState, place};

    use super::*;

    fn record(name: &str, version: u64, replicas: u32) -> (String, Record) {
        let spec = DeploymentSpec {
            version,
            location: "nats://NEXCLIFILES/default/x".into(),
            hash: "a".repeat(64),
            trigger_subjects: vec!["s".into()],
            replicas,
            ..DeploymentSpec::new("default", name, WorkloadType::Javascript)
        };
        (
            spec.key(),
            Record {
                spec,
                issuer: "A".into(),
                revision: 1,
            },
        )
    }

    fn presence(id: &str, running: &[(&str, u64)]) -> Presence {
        Presence {
            node_id: id.into(),
            lameduck: false,
            tags: BTreeMap::new(),
            workload_types: vec![WorkloadType::Javascript],
            running: running
                .iter()
                .map(|(k, v)| ReplicaState {
                    key: (*k).into(),
                    version: *v,
                    workload_id: format!("{id}-{k}"),
                })
                .collect(),
            refused: vec![],
            interval_ms: 1000,
            leaving: false,
        }
    }

    fn local(key: &str, version: u64) -> Local {
        Local {
            key: key.into(),
            version,
            workload_id: format!("w-{key}-{version}"),
        }
    }

    /// Runs every node's plan over `rounds` rounds, applying starts and stops at once, and
    /// returns who runs what.
    fn converge(records: &BTreeMap<String, Record>, nodes: &mut [Presence], rounds: usize) {
        for _ in 0..rounds {
            let snapshot = nodes.to_vec();
            for n in nodes.iter_mut() {
                let locals: Vec<Local> = n
                    .running
                    .iter()
                    .map(|r| Local {
                        key: r.key.clone(),
                        version: r.version,
                        workload_id: r.workload_id.clone(),
                    })
                    .collect();
                let p = plan(&n.node_id, records, &snapshot, &locals, &HashSet::new());
                for a in p.actions {
                    match a {
                        Action::Start { key } => {
                            let v = records[&key].spec.version;
                            n.running.retain(|r| r.key != key);
                            n.running.push(ReplicaState {
                                key,
                                version: v,
                                workload_id: "new".into(),
                            });
                        }
                        Action::Stop { key, .. } => n.running.retain(|r| r.key != key),
                    }
                }
            }
        }
    }

    fn holders(nodes: &[Presence], key: &str) -> Vec<String> {
        nodes
            .iter()
            .filter(|n| n.runs(key).is_some())
            .map(|n| n.node_id.clone())
            .collect()
    }

    #[test]
    fn a_record_converges_on_exactly_its_replica_count() {
        let records: BTreeMap<_, _> = [record("echo", 1, 2), record("other", 1, 3)]
            .into_iter()
            .collect();
        let mut nodes: Vec<_> = (0..4).map(|i| presence(&format!("N{i}"), &[])).collect();
        converge(&records, &mut nodes, 3);
        assert_eq!(holders(&nodes, "default.echo").len(), 2);
        assert_eq!(holders(&nodes, "default.other").len(), 3);
        // Converged: nothing more to do anywhere.
        for n in &nodes {
            let locals: Vec<Local> = n.running.iter().map(|r| local(&r.key, r.version)).collect();
            assert!(
                plan(&n.node_id, &records, &nodes, &locals, &HashSet::new())
                    .actions
                    .is_empty()
            );
        }
    }

    #[test]
    fn a_lost_node_is_replaced_and_a_joined_node_takes_over_only_after_it_runs() {
        let records: BTreeMap<_, _> = [record("echo", 1, 2)].into_iter().collect();
        let mut nodes: Vec<_> = (0..3).map(|i| presence(&format!("N{i}"), &[])).collect();
        converge(&records, &mut nodes, 2);
        let before = holders(&nodes, "default.echo");
        nodes.retain(|n| n.node_id != before[0]);
        converge(&records, &mut nodes, 2);
        assert_eq!(holders(&nodes, "default.echo").len(), 2);

        // A new node placed above a holder: the holder keeps its replica until the new node
        // reports it running.
        let key = "default.echo";
        let spec = &records[key].spec;
        let mut joined = presence("J", &[]);
        for i in 0..1000 {
            joined.node_id = format!("J{i}");
            let mut all = nodes.clone();
            all.push(joined.clone());
            if place(spec, &all).contains(&joined.node_id) {
                break;
            }
        }
        let mut all = nodes.clone();
        all.push(joined.clone());
        let displaced = holders(&nodes, key)
            .into_iter()
            .find(|h| !place(spec, &all).contains(h))
            .expect("someone is displaced");
        let p = plan(
            &displaced,
            &records,
            &all,
            &[local(key, 1)],
            &HashSet::new(),
        );
        assert!(p.actions.is_empty(), "stopped before the new node ran it");
        all.iter_mut()
            .find(|n| n.node_id == joined.node_id)
            .unwrap()
            .running
            .push(ReplicaState {
                key: key.into(),
                version: 1,
                workload_id: "x".into(),
            });
        let p = plan(
            &displaced,
            &records,
            &all,
            &[local(key, 1)],
            &HashSet::new(),
        );
        assert!(matches!(p.actions[..], [Action::Stop { .. }]));
    }

    #[test]
    fn a_new_version_is_started_where_placed_and_old_ones_elsewhere_wait() {
        let (key, r1) = record("echo", 1, 1);
        let mut records: BTreeMap<_, _> = [(key.clone(), r1)].into_iter().collect();
        let mut nodes: Vec<_> = (0..2).map(|i| presence(&format!("N{i}"), &[])).collect();
        converge(&records, &mut nodes, 2);
        let holder = holders(&nodes, &key)[0].clone();
        records.insert(key.clone(), record("echo", 2, 1).1);
        let p = plan(
            &holder,
            &records,
            &nodes,
            &[local(&key, 1)],
            &HashSet::new(),
        );
        assert_eq!(p.actions, vec![Action::Start { key: key.clone() }]);
        // Under way: not started twice.
        let starting: HashSet<String> = [key.clone()].into();
        assert!(
            plan(&holder, &records, &nodes, &[local(&key, 1)], &starting)
                .actions
                .is_empty()
        );
    }

    #[test]
    fn tombstones_and_removed_records_stop_replicas_at_once() {
        let (key, mut r) = record("echo", 1, 1);
        r.spec.undeployed = true;
        let records: BTreeMap<_, _> = [(key.clone(), r)].into_iter().collect();
        let nodes = vec![presence("N0", &[(&key, 1)])];
        let p = plan("N0", &records, &nodes, &[local(&key, 1)], &HashSet::new());
        assert!(matches!(
            p.actions[..],
            [Action::Stop {
                why: "undeployed",
                ..
            }]
        ));
        let p = plan(
            "N0",
            &BTreeMap::new(),
            &nodes,
            &[local(&key, 1)],
            &HashSet::new(),
        );
        assert!(matches!(p.actions[..], [Action::Stop { .. }]));
    }

    #[test]
    fn a_lame_duck_hands_over_and_a_lone_one_is_stranded() {
        let (key, r) = record("echo", 1, 1);
        let records: BTreeMap<_, _> = [(key.clone(), r)].into_iter().collect();
        let mut me = presence("N0", &[(&key, 1)]);
        me.lameduck = true;
        let p = plan(
            "N0",
            &records,
            &[me.clone()],
            &[local(&key, 1)],
            &HashSet::new(),
        );
        assert_eq!(p.stranded, vec![key.clone()]);
        assert!(p.actions.is_empty());
        let other = presence("N1", &[(&key, 1)]);
        let p = plan(
            "N0",
            &records,
            &[me, other],
            &[local(&key, 1)],
            &HashSet::new(),
        );
        assert!(matches!(p.actions[..], [Action::Stop { .. }]));
    }
}
