//! Desired state: this node's part in running the deployment records of the `NEXDEPLOYMENTS`
//! key-value bucket.
//!
//! There is no leader and no lock. Each node:
//! 1. watches the bucket ([`Reconciler::take_entry`]) and keeps the records that verify
//!    ([`records`]);
//! 2. publishes its presence on `$NEX.PRESENCE` every `presence_interval` and on every change
//!    ([`Reconciler::beacon`]), and hears the others' ([`peers`]); a node silent for
//!    `node_gone_after` is gone;
//! 3. computes, from both, the replicas it should run ([`plan`], over the rendezvous placement
//!    of `nex_proto::deployments::place` that every node computes alike), and starts or stops
//!    them through the same deploy pipeline as direct deploys ([`crate::control::deploy`]).
//!
//! Layout: [`records`] (verification, roll-back and owner checks), [`peers`] (who is live),
//! [`plan`] (the convergence rules, pure), this module (the loop and its I/O).

mod peers;
mod plan;
mod records;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt;
use nex_proto::control::DeployRequest;
use nex_proto::deployments::{
    DEPLOYMENTS_BUCKET, Presence, RECORD_HISTORY, Refused, ReplicaState, Scores,
    parse_deployment_key,
};
use nex_proto::events::{self, DeploymentRefused};
use nex_proto::subjects;
use tokio::sync::mpsc;

use self::peers::Peers;
use self::plan::{Action, Local};
use self::records::{Record, Records};
use crate::Node;
use crate::control::{Authority, RecordRef};

/// How long a node that failed to start a record's version stays out of its placement before
/// it tries again.
const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// Least time between two plans of one node. Changes that come closer together (a hundred
/// nodes' beacons while replicas start) are planned for together: the gap bounds a node's
/// planning work at scale and delays convergence by at most this.
const PLAN_GAP: Duration = Duration::from_millis(50);

/// The outcome of one replica start.
struct Started {
    key: String,
    version: u64,
    /// The workload id, or why the deploy pipeline refused the replica.
    result: Result<String, crate::control::error::ControlError>,
}

struct Reconciler {
    node: Arc<Node>,
    records: Records,
    peers: Peers,
    /// Keys whose start is under way here.
    starting: HashSet<String>,
    /// Record versions this node failed to start, and when.
    refused: HashMap<(String, u64), (String, Instant)>,
    started_tx: mpsc::UnboundedSender<Started>,
    /// No placement before this: the node first hears who else is there.
    warm_until: Instant,
    /// The bucket's values have all been read once.
    synced: bool,
    /// Rendezvous scores computed so far.
    scores: Scores,
}

/// Runs this node's part of the desired state until the task is dropped. Never returns an
/// error: when JetStream is not there it keeps trying, and the node keeps serving direct
/// deploys meanwhile.
pub(crate) async fn run(node: Arc<Node>) {
    let cfg = node.config.deployments.clone();
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let mut r = Reconciler {
        node: node.clone(),
        records: Records::default(),
        peers: Peers::default(),
        starting: HashSet::new(),
        refused: HashMap::new(),
        started_tx,
        warm_until: Instant::now() + cfg.presence_interval + Duration::from_millis(250),
        synced: false,
        scores: Scores::default(),
    };
    let mut presence = match node.client.subscribe(subjects::PRESENCE).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "cannot subscribe to {}: {e}; deployment records are not run",
                subjects::PRESENCE
            );
            return;
        }
    };
    let mut tick = tokio::time::interval(cfg.presence_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch: Option<kv::Watch> = None;
    let mut retry_watch = Instant::now();
    // A change that came within PLAN_GAP of the last plan waits for the next one.
    let mut next_plan = Instant::now();
    let mut pending = false;
    loop {
        if watch.is_none() && Instant::now() >= retry_watch {
            match open_watch(&node).await {
                Ok((w, empty)) => {
                    watch = Some(w);
                    r.synced |= empty;
                }
                Err(e) => {
                    tracing::warn!("deployment records unavailable, retrying: {e}");
                    retry_watch = Instant::now() + Duration::from_secs(2);
                }
            }
        }
        let mut dirty = false;
        tokio::select! {
            entry = next_entry(&mut watch) => match entry {
                Some(Ok(e)) => {
                    r.synced |= e.delta == 0;
                    dirty = r.take_entry(e).await;
                }
                Some(Err(e)) => {
                    tracing::warn!("watch of {DEPLOYMENTS_BUCKET} failed, reopening: {e}");
                    watch = None;
                }
                None => {
                    watch = None;
                }
            },
            msg = presence.next() => {
                let Some(msg) = msg else { return };
                if let Ok(p) = serde_json::from_slice::<Presence>(&msg.payload)
                    && p.node_id != node.node_id
                {
                    dirty = if p.leaving {
                        r.peers.forget(&p.node_id)
                    } else {
                        r.peers.heard(p, Instant::now())
                    };
                }
            }
            _ = tick.tick() => {
                let gone = r.peers.expire(Instant::now(), cfg.node_gone_after);
                for id in gone {
                    tracing::info!(node = %id, "node gone (no presence)");
                }
                r.refused.retain(|_, (_, at)| at.elapsed() < REFUSAL_TTL);
                r.beacon(false).await;
                dirty = true;
            }
            Some(s) = started_rx.recv() => {
                r.finished(s).await;
                dirty = true;
            }
            _ = node.desired_changed.notified() => {
                r.beacon(false).await;
                dirty = true;
            }
            _ = tokio::time::sleep_until(next_plan.into()), if pending => {
                dirty = true;
            }
        }
        if dirty {
            if Instant::now() < next_plan {
                pending = true;
                continue;
            }
            pending = false;
            next_plan = Instant::now() + PLAN_GAP;
            node.known_nodes
                .store(r.peers.live().count() + 1, Ordering::Relaxed);
            r.reconcile().await;
        }
    }
}

async fn next_entry(w: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Why the records bucket cannot be read (the loop retries).
#[derive(Debug, thiserror::Error)]
enum BucketError {
    #[error("creating {DEPLOYMENTS_BUCKET}: {0}")]
    Create(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error("opening {DEPLOYMENTS_BUCKET}: {0}")]
    Open(#[from] async_nats::jetstream::context::KeyValueError),
    #[error("reading {DEPLOYMENTS_BUCKET}: {0}")]
    Status(#[from] kv::StatusError),
    #[error("watching {DEPLOYMENTS_BUCKET}: {0}")]
    Watch(#[from] kv::WatchError),
}

/// Opens (creating when missing, with `bucket_replicas` copies) the records bucket and a watch
/// of every key's last value; true when the bucket holds nothing yet.
async fn open_watch(node: &Node) -> Result<(kv::Watch, bool), BucketError> {
    let store = open_bucket(&node.js, node.config.bucket_replicas).await?;
    let empty = store.status().await?.values() == 0;
    let w = store.watch_with_history(">").await?;
    Ok((w, empty))
}

/// The deployment records bucket, created when missing.
async fn open_bucket(
    js: &async_nats::jetstream::Context,
    replicas: nex_connect::Replicas,
) -> Result<kv::Store, BucketError> {
    nex_connect::replicas::get_or_create_stream(
        js,
        nex_connect::replicas::key_value_stream(DEPLOYMENTS_BUCKET, RECORD_HISTORY),
        replicas,
    )
    .await?;
    Ok(js.get_key_value(DEPLOYMENTS_BUCKET).await?)
}

impl Reconciler {
    /// Takes one watched entry; true when the records changed.
    async fn take_entry(&mut self, e: kv::Entry) -> bool {
        let changed = match e.operation {
            kv::Operation::Put => {
                let node = &self.node;
                let trusted = |iss: &str| crate::control::auth::trusted_issuer(node, iss);
                match self.records.put(&e.key, &e.value, e.revision, trusted) {
                    Ok(changed) => changed,
                    Err(err) => {
                        self.report(&e.key, e.revision, &err.to_string()).await;
                        false
                    }
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => self.records.remove(&e.key),
        };
        if changed {
            let live: HashSet<String> = self.records.live_keys().map(str::to_owned).collect();
            *self.node.managed.lock().unwrap_or_else(|p| p.into_inner()) = live;
        }
        changed
    }

    /// Publishes a `deployment_refused` event in the record's namespace.
    async fn report(&self, key: &str, revision: u64, reason: &str) {
        tracing::warn!(key, revision, "deployment record refused: {reason}");
        let ns = parse_deployment_key(key).map_or(subjects::SYSTEM_NAMESPACE, |(ns, _)| ns);
        self.node
            .emitter
            .event(
                ns,
                events::DEPLOYMENT_REFUSED,
                DeploymentRefused {
                    node_id: self.node.node_id.clone(),
                    key: key.to_owned(),
                    revision,
                    reason: reason.to_owned(),
                },
            )
            .await;
    }

    /// This node's replicas of records.
    fn local(&self) -> Vec<Local> {
        self.node
            .workloads()
            .into_iter()
            .filter_map(|w| {
                w.meta.record.as_ref().map(|r| Local {
                    key: r.key.clone(),
                    version: r.version,
                    workload_id: w.meta.id.clone(),
                })
            })
            .collect()
    }

    fn presence(&self, leaving: bool) -> Presence {
        let node = &self.node;
        Presence {
            node_id: node.node_id.clone(),
            lameduck: node.lameduck.load(Ordering::Acquire),
            tags: node.tags(),
            workload_types: node.config.workload_types.clone(),
            running: self
                .local()
                .into_iter()
                .map(|l| ReplicaState {
                    key: l.key,
                    version: l.version,
                    workload_id: l.workload_id,
                })
                .collect(),
            refused: self
                .refused
                .iter()
                .map(|((key, version), (reason, _))| Refused {
                    key: key.clone(),
                    version: *version,
                    reason: reason.clone(),
                })
                .collect(),
            interval_ms: node.config.deployments.presence_interval.as_millis() as u64,
            leaving,
        }
    }

    async fn beacon(&self, leaving: bool) {
        let body = serde_json::to_vec(&self.presence(leaving)).unwrap_or_default();
        let _ = self
            .node
            .client
            .publish(subjects::PRESENCE, body.into())
            .await;
    }

    async fn finished(&mut self, s: Started) {
        self.starting.remove(&s.key);
        match s.result {
            Ok(id) => {
                tracing::info!(key = %s.key, version = s.version, workload_id = %id, "replica started")
            }
            Err(e) => {
                let reason = e.to_string();
                let revision = self.records.current().get(&s.key).map_or(0, |r| r.revision);
                self.report(&s.key, revision, &reason).await;
                self.refused
                    .insert((s.key, s.version), (reason, Instant::now()));
            }
        }
        self.beacon(false).await;
    }

    async fn reconcile(&mut self) {
        if !self.synced || Instant::now() < self.warm_until {
            return;
        }
        let local = self.local();
        let mut live: Vec<Presence> = self.peers.live().cloned().collect();
        live.push(self.presence(false));
        let plan = plan::plan_with(
            &self.node.node_id,
            self.records.current(),
            &live,
            &local,
            &self.starting,
            &mut self.scores,
        );
        *self.node.stranded.lock().unwrap_or_else(|p| p.into_inner()) =
            plan.stranded.into_iter().collect();
        let mut stopped = false;
        for action in plan.actions {
            match action {
                Action::Start { key } => {
                    if let Some(record) = self.records.current().get(&key) {
                        self.start(&key, record.clone());
                    }
                }
                Action::Stop {
                    workload_id,
                    key,
                    why,
                } => {
                    tracing::info!(%key, %workload_id, "stopping replica: {why}");
                    crate::control::retire(&self.node, &workload_id, why).await;
                    stopped = true;
                }
            }
        }
        if stopped {
            self.beacon(false).await;
        }
    }

    fn start(&mut self, key: &str, record: Record) {
        self.starting.insert(key.to_owned());
        let node = self.node.clone();
        let tx = self.started_tx.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let spec = record.spec;
            let version = spec.version;
            let req = DeployRequest {
                workload_name: spec.name.clone(),
                description: spec.description.clone(),
                workload_type: spec.workload_type.as_str().into(),
                location: spec.location.clone(),
                hash: spec.hash.clone(),
                argv: spec.argv.clone(),
                trigger_subjects: spec.trigger_subjects.clone(),
                environment: spec.environment.clone(),
                sender_public_key: spec.sender_public_key.clone(),
                limits: spec.limits,
                ..Default::default()
            };
            let authority = Authority::Record(RecordRef {
                key: key.clone(),
                version,
                issuer: record.issuer,
            });
            let result = crate::control::deploy(&node, &spec.namespace, req, authority)
                .await
                .map(|r| r.id);
            let _ = tx.send(Started {
                key,
                version,
                result,
            });
        });
    }
}

/// Tells the other nodes that this one is leaving, so they place its replicas at once.
pub(crate) async fn goodbye(node: &Node) {
    let p = Presence {
        node_id: node.node_id.clone(),
        lameduck: true,
        tags: node.tags(),
        workload_types: node.config.workload_types.clone(),
        running: vec![],
        refused: vec![],
        interval_ms: 0,
        leaving: true,
    };
    let body = serde_json::to_vec(&p).unwrap_or_default();
    let _ = node.client.publish(subjects::PRESENCE, body.into()).await;
}

/// A lame duck's hand-over: waits until none of its record replicas is left that another node
/// could take (the reconciler stops each once its placed nodes run it), or until `limit`.
pub(crate) async fn hand_over(node: &Node, limit: Duration) {
    node.desired_changed.notify_one();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let stranded = node
            .stranded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let waiting = node
            .workloads()
            .iter()
            .filter_map(|w| w.meta.record.as_ref())
            .any(|r| !stranded.contains(&r.key));
        if !waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("lame duck: replicas not taken over within {limit:?}; stopping them anyway");
}
