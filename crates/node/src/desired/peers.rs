//! The other nodes this node hears on `$NEX.PRESENCE`, and when each was last heard. A node
//! silent for `gone_after` is gone: its replicas are placed elsewhere.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nex_proto::deployments::Presence;

#[derive(Debug, Default)]
pub(crate) struct Peers {
    nodes: HashMap<String, (Presence, Instant)>,
}

impl Peers {
    /// Takes a beacon heard at `now`; true when it changes what placement sees (a new node, or
    /// a change in what it runs, refuses, matches or whether it is a lame duck).
    pub fn heard(&mut self, p: Presence, now: Instant) -> bool {
        match self.nodes.get_mut(&p.node_id) {
            Some((old, seen)) => {
                *seen = now;
                let changed = *old != p;
                *old = p;
                changed
            }
            None => {
                self.nodes.insert(p.node_id.clone(), (p, now));
                true
            }
        }
    }

    /// Forgets nodes not heard for `gone_after`; returns their ids.
    pub fn expire(&mut self, now: Instant, gone_after: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, (_, seen))| now.saturating_duration_since(*seen) > gone_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.nodes.remove(id);
        }
        gone
    }

    /// Forgets a node that said goodbye.
    pub fn forget(&mut self, node_id: &str) -> bool {
        self.nodes.remove(node_id).is_some()
    }

    /// The live nodes' beacons.
    pub fn live(&self) -> impl Iterator<Item = &Presence> {
        self.nodes.values().map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(id: &str) -> Presence {
        Presence {
            node_id: id.into(),
            lameduck: false,
            tags: Default::default(),
            workload_types: vec![],
            running: vec![],
            refused: vec![],
            interval_ms: 1000,
            leaving: false,
        }
    }

    #[test]
    fn silent_nodes_are_gone_and_repeated_beacons_change_nothing() {
        let t0 = Instant::now();
        let mut peers = Peers::default();
        assert!(peers.heard(beacon("A"), t0));
        assert!(peers.heard(beacon("B"), t0));
        assert!(!peers.heard(beacon("A"), t0 + Duration::from_secs(2)));
        let mut lame = beacon("A");
        lame.lameduck = true;
        assert!(peers.heard(lame, t0 + Duration::from_secs(2)));
        let gone = peers.expire(t0 + Duration::from_millis(3500), Duration::from_secs(3));
        assert_eq!(gone, vec!["B".to_owned()]);
        assert_eq!(peers.live().count(), 1);
        assert!(peers.forget("A"));
        assert_eq!(peers.live().count(), 0);
    }
}
