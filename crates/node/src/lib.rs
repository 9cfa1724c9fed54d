//! The nex node: a daemon that joins a NATS system, answers the control plane, and runs each
//! deployed function in its own agent process.
//!
//! Layout:
//! - [`config`]: the node's settings (JSON with upstream field names).
//! - [`identity`]: node id (server nkey) and xkey for sealed environments.
//! - `control`: handlers of `$NEX.*` requests (ping, auction, info, deploy, stop, lame duck),
//!   who may make them (`control::auth`) and the deploy pipeline (`control::deploy`).
//! - `rate`: token buckets bounding what one function's agent may send (logs, host calls).
//! - `workload`: one deployed function: agent supervision, trigger subscriptions, dispatch.
//! - `agent`: spawning an agent process and the framed pipe to it.
//! - `artifact`: fetching artifacts from the object store and verifying their hash.
//! - `emitter`: CloudEvents and log lines.
//! - `desired`: desired state: deployment records, presence, placement and reconciliation.
//! - `tenancy`: which namespace may use which trigger subjects and artifact locations.
//!
//! Entry point: [`run`] with a connected client, a config and a shutdown future.

mod agent;
mod answer;
mod artifact;
pub mod config;
mod control;
mod cpu;
mod desired;
mod emitter;
pub mod identity;
mod metrics;
mod priority;
mod spans;
mod tenancy;
mod workload;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use config::NodeConfig;
use futures::StreamExt;
use nex_proto::control::{
    TAG_ARCH, TAG_CPUCOUNT, TAG_LAMEDUCK, TAG_OS, TAG_UNSAFE, format_duration,
};
use nex_proto::events::{self, Heartbeat, NodeStarted, NodeStopped};
use nex_proto::subjects::{self, ControlSubjects, SYSTEM_NAMESPACE};
use tokio::sync::Notify;

use crate::emitter::Emitter;
use crate::identity::Identity;
use crate::workload::Workload;

/// Errors that stop a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be used.
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    /// A key file of the node cannot be used.
    #[error("key file {0}")]
    KeyFile(#[from] identity::KeyFileError),
    /// Subscribing to the control subjects failed.
    #[error("could not subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// State shared by all handlers of one node.
pub(crate) struct Node {
    /// The control connection: control subjects, triggers, replies, events and logs.
    pub client: async_nats::Client,
    /// The connection host-service calls use, so that nothing a function asks for can close
    /// the control connection (the control connection when no other was given).
    pub host_client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub identity: Identity,
    pub node_id: String,
    pub config: NodeConfig,
    /// Where functions' HTTP requests may go, read once from the config.
    pub http_policy: nex_hostservices::HttpPolicy,
    /// Where agent processes come from (started ahead when `machine_pool_size` > 0).
    pub agents: Arc<agent::WarmAgents>,
    pub cache_dir: Option<PathBuf>,
    pub started: Instant,
    pub emitter: Arc<Emitter>,
    pub workloads: Mutex<HashMap<String, Arc<Workload>>>,
    pub lameduck: AtomicBool,
    pub exit: Notify,
    /// Deploys admitted and still loading: quotas and same-name races are checked against
    /// them under this short lock, never held across I/O or a workload's load.
    pub admission: Mutex<Vec<control::Reservation>>,
    /// Workload JWTs accepted recently: each is good for one deploy or stop.
    pub replay: Mutex<nex_jwt::ReplayGuard>,
    /// The xkey every node shares for deployment records' environments.
    pub deployment_xkey: Option<nkeys::XKey>,
    /// Keys (`<ns>.<name>`) of live deployment records: direct deploys of these names are
    /// refused.
    pub managed: Mutex<HashSet<String>>,
    /// Keys of this node's record replicas that no other node can take (a lame duck keeps them).
    pub stranded: Mutex<HashSet<String>>,
    /// Wakes the reconciler (lame duck entered, a replica stopped).
    pub desired_changed: Notify,
    /// Nodes heard on `$NEX.PRESENCE`, this one included (0: not known).
    pub known_nodes: std::sync::atomic::AtomicUsize,
}

impl Node {
    pub fn uptime(&self) -> String {
        format_duration(self.started.elapsed())
    }

    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.config.tags.clone();
        tags.insert(TAG_OS.into(), std::env::consts::OS.into());
        tags.insert(TAG_ARCH.into(), std::env::consts::ARCH.into());
        tags.insert(
            TAG_CPUCOUNT.into(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .to_string(),
        );
        tags.insert(TAG_UNSAFE.into(), self.config.no_sandbox.to_string());
        tags.insert(
            TAG_LAMEDUCK.into(),
            self.lameduck.load(Ordering::Acquire).to_string(),
        );
        tags
    }

    pub fn workloads(&self) -> Vec<Arc<Workload>> {
        let mut v: Vec<_> = self
            .workloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        v
    }

    /// Is `name` in `ns` a deployment record's?
    pub fn is_managed(&self, ns: &str, name: &str) -> bool {
        self.managed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&nex_proto::deployments::deployment_key(ns, name))
    }

    pub fn workload_count(&self) -> usize {
        self.workloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            version: nex_proto::VERSION.into(),
            node_id: self.node_id.clone(),
            nexus: self.config.nexus.clone(),
            uptime: self.uptime(),
            tags: self.tags(),
            running_machines: self.workload_count(),
        }
    }

    /// Stops every workload, emitting `workload_undeployed` for each.
    async fn stop_all(&self, message: &str) {
        let all: Vec<_> = self
            .workloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        let stops = all.iter().map(|w| async move {
            w.stop(Duration::from_secs(5)).await;
            control::undeployed_event(self, w, message).await;
        });
        futures::future::join_all(stops).await;
    }
}

/// A handle to a started node, for programs that embed it.
pub struct NodeHandle {
    pub node_id: String,
    pub public_xkey: String,
}

/// Longest the node waits for its workloads to stop when it shuts down.
const STOP_WORKLOADS_LIMIT: Duration = Duration::from_secs(20);
/// Longest the node waits to deliver `node_stopped` (NATS may be gone).
const GOODBYE_LIMIT: Duration = Duration::from_secs(2);

/// Runs a node on `client` until `shutdown` completes or a lame-duck request ends it.
/// `on_ready` is called once the node answers control requests.
pub async fn run(
    client: async_nats::Client,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(NodeHandle),
) -> Result<()> {
    let identity = Identity::load_or_create(config.node_seed_file.as_deref())?;
    let node_id = identity.node_id();
    let agent_exe = match &config.agent_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(config::ConfigError::AgentExe)?,
    };
    let cache_dir = config
        .cache_dir
        .clone()
        .or_else(|| Some(std::env::temp_dir().join("nex-cache")));
    config.workload_defaults()?;
    let http_policy = config.http_policy()?;
    tenancy::check_policies(&config.namespaces).map_err(config::ConfigError::from)?;
    let emitter = Arc::new(Emitter::new(client.clone(), node_id.clone()));
    let agents = agent::WarmAgents::new(
        agent::Launch {
            exe: agent_exe,
            no_sandbox: config.no_sandbox,
            test_escape_payload: config.test_escape_payload.clone(),
            cpu: if config.cpu.shares {
                cpu::CpuGroups::start(config.cpu.agents_shares).map_err(Arc::new)
            } else {
                Err(Arc::new(cpu::CpuGroupError::Off))
            },
            idle_loading: config.cpu.idle_loading,
        },
        config.machine_pool_size,
    );
    let host_client = config.host_client.clone().unwrap_or_else(|| client.clone());
    let deployment_xkey = match &config.deployments.xkey_file {
        Some(path) => Some(Identity::shared_xkey(path)?),
        None => None,
    };
    let node = Arc::new(Node {
        js: async_nats::jetstream::new(client.clone()),
        host_client,
        client: client.clone(),
        node_id: node_id.clone(),
        config,
        http_policy,
        agents,
        cache_dir,
        started: Instant::now(),
        emitter: emitter.clone(),
        workloads: Mutex::default(),
        lameduck: AtomicBool::new(false),
        exit: Notify::new(),
        admission: Mutex::default(),
        replay: Mutex::default(),
        identity,
        deployment_xkey,
        managed: Mutex::default(),
        stranded: Mutex::default(),
        desired_changed: Notify::new(),
        known_nodes: Default::default(),
    });
    node.agents.refill();
    if let Some(listen) = &node.config.metrics.listen {
        let addr = metrics::serve(&node, listen).await.map_err(|source| {
            config::ConfigError::MetricsListen {
                listen: listen.clone(),
                source,
            }
        })?;
        tracing::info!("metrics on http://{addr}/metrics");
    }

    let subs = ControlSubjects::for_node(&node_id);
    let mut streams = Vec::new();
    for (kind, subject) in [
        (control::Kind::Ping, subs.ping.to_owned()),
        (control::Kind::Ping, subs.ping_node),
        (control::Kind::Auction, subs.auction.to_owned()),
        (control::Kind::WorkloadPing, subs.workload_ping),
        (control::Kind::Info, subs.info),
        (control::Kind::Deploy, subs.deploy),
        (control::Kind::Stop, subs.stop),
        (control::Kind::Lameduck, subs.lameduck),
    ] {
        let sub = client
            .subscribe(subject.clone())
            .await
            .map_err(|source| Error::Subscribe { subject, source })?;
        streams.push(sub.map(move |m| (kind, m)).boxed());
    }
    let mut control_msgs = futures::stream::select_all(streams);
    let _ = client.flush().await;

    emitter
        .event(
            SYSTEM_NAMESPACE,
            events::NODE_STARTED,
            NodeStarted {
                version: nex_proto::VERSION.into(),
                id: node_id.clone(),
                tags: node.tags(),
            },
        )
        .await;
    tracing::info!(node_id = %node_id, "node started");
    if node.config.allow_upstream_devrun_hash {
        tracing::warn!(
            "allow_upstream_devrun_hash is on: deploys signing upstream devrun's placeholder hash \
             run unverified artifacts (development nodes only)"
        );
    }
    control::autostart(&node).await;
    let desired = node
        .config
        .deployments
        .enabled
        .then(|| tokio::spawn(desired::run(node.clone())));
    on_ready(NodeHandle {
        node_id: node_id.clone(),
        public_xkey: node.identity.xkey.public_key(),
    });

    let mut heartbeat = tokio::time::interval(node.config.heartbeat_interval);
    heartbeat.tick().await;
    tokio::pin!(shutdown);
    let graceful = loop {
        tokio::select! {
            _ = &mut shutdown => break true,
            _ = node.exit.notified() => break true,
            _ = heartbeat.tick() => {
                emitter.event(SYSTEM_NAMESPACE, events::HEARTBEAT, node.heartbeat()).await;
            }
            msg = control_msgs.next() => match msg {
                Some((kind, msg)) => {
                    let node = node.clone();
                    tokio::spawn(async move { control::handle(node, kind, msg).await });
                }
                None => break false,
            },
        }
    };
    drop(control_msgs);
    if let Some(task) = desired {
        task.abort();
        // Other nodes place this node's replicas now rather than after its silence.
        desired::goodbye(&node).await;
    }
    // Stopping must finish even when NATS is gone (a flush would wait for a reconnect forever):
    // workloads get their drain time, the goodbye a short while.
    if tokio::time::timeout(STOP_WORKLOADS_LIMIT, node.stop_all("node stopping"))
        .await
        .is_err()
    {
        tracing::warn!("workloads did not stop in time; their agents end with the node");
    }
    node.agents.close().await;
    let goodbye = async {
        emitter
            .event(
                SYSTEM_NAMESPACE,
                events::NODE_STOPPED,
                NodeStopped {
                    id: node_id.clone(),
                    graceful,
                },
            )
            .await;
        let _ = client.flush().await;
    };
    if tokio::time::timeout(GOODBYE_LIMIT, goodbye).await.is_err() {
        tracing::warn!("NATS unreachable: node_stopped not delivered");
    }
    tracing::info!(node_id = %node_id, "node stopped");
    Ok(())
}

/// The subject a node with id `node_id` listens on for deploys in `namespace` (for tests and tools).
pub fn deploy_subject(namespace: &str, node_id: &str) -> String {
    subjects::deploy(namespace, node_id)
}
