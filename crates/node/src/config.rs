//! Node configuration: the JSON file `nex node up --config` reads (upstream field names), plus
//! settings only the embedding program sets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nex_proto::control::{ResolvedLimits, WorkloadType};
use serde::Deserialize;

/// Caps on what one node runs.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeLimits {
    /// Most workloads at once.
    pub max_workloads: usize,
    /// Most artifact bytes across all workloads.
    pub max_total_bytes: u64,
    /// Most bytes of one artifact.
    pub max_workload_bytes: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_workloads: 1000,
            max_total_bytes: 4 << 30,
            max_workload_bytes: 64 << 20,
        }
    }
}

/// What one namespace (tenant) may use on this node: `namespaces.<ns>` in the config, falling
/// back field by field to `namespace_defaults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespacePolicy {
    /// The subject space this namespace owns (NATS patterns such as `shop.>`). When set, the
    /// namespace's triggers must lie inside it, and no other namespace's trigger may collide with
    /// it. Empty: the namespace owns no space and its triggers only must not collide with other
    /// namespaces' (see `tenancy`).
    pub subjects: Vec<String>,
    /// Object-store buckets this namespace's deploys may fetch artifacts from, in addition to its
    /// own key prefix `<namespace>/` in `NEXCLIFILES`.
    pub artifact_buckets: Vec<String>,
    /// Most workloads the namespace runs on this node at once.
    pub max_workloads: Option<usize>,
    /// Most memory its workloads may declare (`limits.memory_mb`) together, in MiB.
    pub max_memory_mb: Option<u64>,
}

/// Quotas of a namespace with no entry of its own in `namespaces` (bounded by default, so one
/// tenant cannot take a whole node).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceDefaults {
    pub max_workloads: usize,
    pub max_memory_mb: u64,
}

impl Default for NamespaceDefaults {
    fn default() -> Self {
        Self {
            max_workloads: 200,
            max_memory_mb: 16 * 1024,
        }
    }
}

/// Which calls publish a per-call event (`function_exec_succeeded` / `function_exec_failed`).
/// Every call is counted in node info either way (`succeeded_calls`, `failed_calls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallEvents {
    /// Every call (upstream's behaviour): one more NATS message per call.
    #[default]
    All,
    /// Failed and refused calls only.
    Failures,
    /// None.
    Off,
}

impl CallEvents {
    /// Does a succeeded call publish `function_exec_succeeded`?
    pub fn on_success(self) -> bool {
        self == Self::All
    }

    /// Does a failed or refused call publish `function_exec_failed`?
    pub fn on_failure(self) -> bool {
        self != Self::Off
    }
}

/// Per-function rates the node enforces on what an agent sends it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Log bytes per second a function may publish; the excess is dropped and counted in a
    /// `logs_dropped` event. Bursts up to `log_burst_bytes`.
    pub log_bytes_per_sec: u64,
    pub log_burst_bytes: u64,
    /// Host-service calls per second a function may make; the excess fails with a rate-limit
    /// error. Bursts up to `host_call_burst`.
    pub host_calls_per_sec: u64,
    pub host_call_burst: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            log_bytes_per_sec: 256 * 1024,
            log_burst_bytes: 1024 * 1024,
            host_calls_per_sec: 10_000,
            host_call_burst: 20_000,
        }
    }
}

/// One workload the node deploys by itself at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutostartWorkload {
    pub name: String,
    #[serde(rename = "type")]
    pub workload_type: WorkloadType,
    /// `file://` path or `nats://BUCKET/key`.
    pub location: String,
    pub trigger_subjects: Vec<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// `autostart` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autostart {
    #[serde(default)]
    pub workloads: Vec<AutostartWorkload>,
}

/// Everything a node needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Extra tags announced with every ping.
    pub tags: BTreeMap<String, String>,
    /// Workload types this node accepts.
    pub workload_types: Vec<WorkloadType>,
    /// Issuer public keys allowed to deploy; empty allows any.
    pub valid_issuers: Vec<String>,
    /// Public nkeys of the node's operators: only they may lame-duck the node, replace or stop
    /// the workloads the node started from its own config, and read every namespace. `nex node
    /// up` adds the key of the user that starts it (`~/.nex/issuer.nk`) when this is empty.
    pub operator_keys: Vec<String>,
    /// Per-namespace subject spaces and quotas.
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    /// Quotas of namespaces without their own entry.
    pub namespace_defaults: NamespaceDefaults,
    /// Declared memory of all workloads together may reach this multiple of the host's memory.
    pub memory_overcommit: f64,
    /// Longest a workload may take to load (compile, top level, init) before its deploy fails,
    /// whatever its size; [`compile_time_per_mib`](Self::compile_time_per_mib) more per MiB.
    #[serde(with = "secs")]
    pub load_timeout: Duration,
    /// More load time per MiB of artifact: compiling WebAssembly takes time in proportion to
    /// its size (an 18 MiB Python component takes 20-30 s in a debug build). Bounded by
    /// `node_limits.max_workload_bytes`.
    #[serde(with = "secs")]
    pub compile_time_per_mib: Duration,
    /// Log and host-call rates per function.
    pub rate_limits: RateLimits,
    /// Subject patterns functions may not be triggered by: a trigger that could receive any
    /// subject one of them matches is refused (`secret.*` refuses `secret.x` and `*.x`).
    pub deny_trigger_subjects: Vec<String>,
    /// Host-services settings (kept for later use, accepted now).
    pub host_services: Option<serde_json::Value>,
    pub node_limits: NodeLimits,
    /// Default limits of workloads that set none.
    pub default_limits: Option<nex_proto::control::Limits>,
    /// Run workloads without the agent's process limits (development only).
    pub no_sandbox: bool,
    /// Test hook: agents make a forbidden syscall when a call's payload is exactly this, standing
    /// in for a native-code escape. Set only by `nex node up --test-escape-payload`, never from
    /// the config file.
    #[serde(skip)]
    pub test_escape_payload: Option<String>,
    /// Accept `file://` artifact locations (development only).
    pub allow_file_locations: bool,
    /// Run deploys whose hash is upstream `nex devrun`'s placeholder
    /// ([`UPSTREAM_DEVRUN_HASH`](nex_proto::upstream::UPSTREAM_DEVRUN_HASH)) without verifying
    /// the artifact (development only: off, such a deploy is refused).
    pub allow_upstream_devrun_hash: bool,
    pub autostart: Autostart,
    /// Seed file of the node's server nkey; created when missing. `None`: a fresh key each start.
    pub node_seed_file: Option<PathBuf>,
    /// Directory of compiled-module caches.
    pub cache_dir: Option<PathBuf>,
    /// A second NATS connection for host-service calls, so that no call a function makes can
    /// disturb the control connection; `None` uses the control connection. Set by the program
    /// that embeds the node, never from the config file.
    #[serde(skip)]
    pub host_client: Option<async_nats::Client>,
    /// Program to run as the agent (`<agent_exe> agent`); `None`: this executable.
    #[serde(skip)]
    pub agent_exe: Option<PathBuf>,
    /// Interval between heartbeats.
    #[serde(with = "secs")]
    pub heartbeat_interval: Duration,
    /// Optional name of the nexus (cluster) this node belongs to.
    pub nexus: Option<String>,
    /// Seconds without calls after which an agent gives back the code pages and free heap its
    /// calls touched: idle functions cost less memory, and the first call after pays for
    /// faulting the code back in (see docs/performance.md). 0 never trims.
    #[serde(with = "secs")]
    pub idle_trim_after: Duration,
    /// Agent processes kept started and sandboxed ahead of deploys (upstream's name for its pool
    /// of warm VMs); 0 starts each on demand.
    pub machine_pool_size: usize,
    /// How the node connects to NATS: `servers` (a list), `user`/`password`, `token`, `creds`,
    /// `nkey`, `tls_cert`/`tls_key`/`tls_ca`. `nex node up` puts its flags on top and stores the
    /// result here, so the node can open further connections with [`nex_connect::connect`].
    pub nats: nex_connect::ConnectSpec,
    /// Copies of the JetStream buckets the node creates (functions' key-value buckets and object
    /// stores): `"auto"` (default) is `min(3, cluster size)`, else 1 to 5 exactly, failing the
    /// creation while JetStream cannot place that many (see `nex_connect::replicas`).
    pub bucket_replicas: nex_connect::Replicas,
    /// Which calls publish a per-call event: `"all"` (default), `"failures"` or `"off"`.
    pub call_events: CallEvents,
    /// Desired state: deployment records, presence and placement (see [`DeploymentsConfig`]).
    pub deployments: DeploymentsConfig,
    /// CPU shares of agents (see [`CpuConfig`]).
    pub cpu: CpuConfig,
    /// The Prometheus endpoint (see [`MetricsConfig`]).
    pub metrics: MetricsConfig,
}

/// The Prometheus endpoint (`crate::metrics`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to serve `GET /metrics` on, e.g. `127.0.0.1:9464`; none (the default): no
    /// endpoint. It names every tenant's functions: bind it where only operators reach.
    pub listen: Option<String>,
}

/// How agents share the CPU (`crate::cpu`): each in a cgroup of its own, all of them together
/// weighed against the node and the rest of the machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// Give each agent a CPU share of its own (off by default: measured, it cost the call
    /// path's p99, see docs/security.md). Where the node cannot make cgroups (no cgroup v1
    /// `cpu` hierarchy it may write), agents run without, and workloads show
    /// `cpu_share: unavailable: <why>` in their sandbox map.
    pub shares: bool,
    /// The cgroup v1 `cpu.shares` of the group of all agents: 1024 weighs as much as one busy
    /// thread of the node, nats-server or anything else in the node's cgroup. Each agent's own
    /// group has 1024 inside it, so agents are equal.
    pub agents_shares: u64,
    /// Run a loading agent's threads under `SCHED_IDLE` until its workload is ready
    /// (`crate::priority`; on by default): a load that spins yields at once to anything else
    /// that wants the CPU. It needs `CAP_SYS_NICE` to restore them; without it agents are left
    /// alone and workloads show `load_priority: unavailable (...)` in their sandbox map.
    pub idle_loading: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            shares: false,
            agents_shares: 1024,
            idle_loading: true,
        }
    }
}

/// How the node takes part in running deployment records (the `NEXDEPLOYMENTS` bucket).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentsConfig {
    /// Run replicas of deployment records (on by default). Off: the node takes only direct
    /// deploys.
    pub enabled: bool,
    /// File holding the x25519 seed (`SX...`) every node of the system shares, which opens the
    /// environments of deployment records. Created when missing. `None`: records with an
    /// environment are refused by this node.
    pub xkey_file: Option<PathBuf>,
    /// Seconds between presence beacons.
    #[serde(with = "secs")]
    pub presence_interval: Duration,
    /// Seconds without a beacon after which a node is gone and its replicas are placed anew.
    #[serde(with = "secs")]
    pub node_gone_after: Duration,
    /// Longest a lame-duck node waits for its replicas to run elsewhere before it stops them.
    #[serde(with = "secs")]
    pub lameduck_handoff: Duration,
}

impl Default for DeploymentsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            xkey_file: None,
            presence_interval: Duration::from_secs(1),
            node_gone_after: Duration::from_secs(3),
            lameduck_handoff: Duration::from_secs(15),
        }
    }
}

/// `host_services.services.http.config`: where functions' HTTP requests may go. Decisions are
/// made on the resolved IP address; deny wins, a non-empty allow list means only those, and
/// non-public addresses (loopback, private, link-local, ...) need an `allow_hosts` IP/CIDR entry
/// or `allow_private_addresses` (see `nex_hostservices::http::policy`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Host names, `*.domain`, IP addresses and CIDRs; when not empty, only these.
    pub allow_hosts: Vec<String>,
    /// Host names, `*.domain`, IP addresses and CIDRs never reached.
    pub deny_hosts: Vec<String>,
    /// Lets functions reach non-public addresses (development only).
    pub allow_private_addresses: bool,
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?))
    }
}

impl NodeConfig {
    /// How long a workload of `bytes` bytes may take to load.
    pub fn load_deadline(&self, bytes: u64) -> Duration {
        nex_proto::control::LoadDeadline {
            base: self.load_timeout,
            per_mib: self.compile_time_per_mib,
        }
        .for_bytes(bytes)
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            tags: BTreeMap::new(),
            workload_types: vec![WorkloadType::Javascript, WorkloadType::Wasm],
            valid_issuers: Vec::new(),
            operator_keys: Vec::new(),
            namespaces: BTreeMap::new(),
            namespace_defaults: NamespaceDefaults::default(),
            memory_overcommit: 2.0,
            load_timeout: nex_proto::control::LoadDeadline::DEFAULT.base,
            compile_time_per_mib: nex_proto::control::LoadDeadline::DEFAULT.per_mib,
            rate_limits: RateLimits::default(),
            deny_trigger_subjects: Vec::new(),
            host_services: None,
            node_limits: NodeLimits::default(),
            default_limits: None,
            no_sandbox: false,
            test_escape_payload: None,
            allow_file_locations: false,
            allow_upstream_devrun_hash: false,
            autostart: Autostart::default(),
            node_seed_file: None,
            cache_dir: None,
            agent_exe: None,
            host_client: None,
            heartbeat_interval: Duration::from_secs(30),
            nexus: None,
            idle_trim_after: Duration::from_secs(5),
            machine_pool_size: 1,
            cpu: CpuConfig::default(),
            metrics: MetricsConfig::default(),
            nats: nex_connect::ConnectSpec::default(),
            bucket_replicas: nex_connect::Replicas::Auto,
            call_events: CallEvents::All,
            deployments: DeploymentsConfig::default(),
        }
    }
}

/// Why a node configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the config's JSON: a syntax error, a wrong type, or an unknown field (named).
    #[error("invalid node configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// `host_services.services.http.config` has an unknown key or a wrong type.
    #[error("host_services.services.http.config: {0}")]
    HttpConfig(#[source] serde_json::Error),
    /// An allow or deny entry of the HTTP policy is malformed.
    #[error("host_services.services.http.config: {0}")]
    HttpPolicy(#[from] nex_hostservices::http::RuleError),
    /// `default_limits` are out of range.
    #[error("default_limits: {0}")]
    Limits(#[from] nex_proto::control::LimitError),
    /// The namespaces' subject spaces or buckets are malformed or overlap.
    #[error(transparent)]
    Namespaces(#[from] crate::tenancy::TenancyError),
    /// `metrics.listen` cannot be bound.
    #[error("metrics.listen {listen}: {source}")]
    MetricsListen {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    /// The node's own executable (what agents run) cannot be found.
    #[error("cannot find the node's own executable for agents: {0}")]
    AgentExe(#[source] std::io::Error),
}

impl NodeConfig {
    /// Parses a JSON config; unknown fields are an error that names the field.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text)?;
        config.http_policy()?;
        Ok(config)
    }

    /// The HTTP host policy from `host_services.services.http.config` (see [`HttpConfig`]);
    /// an unknown key, a wrong type or a malformed entry is an error, never an open door.
    pub fn http_policy(&self) -> Result<nex_hostservices::HttpPolicy, ConfigError> {
        let config: HttpConfig = match self
            .host_services
            .as_ref()
            .and_then(|h| h.pointer("/services/http/config"))
        {
            None | Some(serde_json::Value::Null) => HttpConfig::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(ConfigError::HttpConfig)?,
        };
        Ok(
            nex_hostservices::HttpPolicy::new(&config.allow_hosts, &config.deny_hosts)
                .map(|p| p.with_private_addresses(config.allow_private_addresses))?,
        )
    }

    /// The quotas of namespace `ns`: (most workloads, most declared memory in MiB).
    pub fn namespace_quota(&self, ns: &str) -> (usize, u64) {
        let d = self.namespace_defaults;
        match self.namespaces.get(ns) {
            Some(p) => (
                p.max_workloads.unwrap_or(d.max_workloads),
                p.max_memory_mb.unwrap_or(d.max_memory_mb),
            ),
            None => (d.max_workloads, d.max_memory_mb),
        }
    }

    /// The limits a workload gets when its deploy sets none.
    pub fn workload_defaults(&self) -> Result<ResolvedLimits, ConfigError> {
        ResolvedLimits::DEFAULT
            .apply(self.default_limits.as_ref())
            .map_err(ConfigError::Limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = NodeConfig::from_json(r#"{"tags": {}, "colour": "blue"}"#).unwrap_err();
        assert!(matches!(err, ConfigError::Json(_)), "{err:?}");
        assert!(err.to_string().contains("colour"), "{err}");
        let ok = NodeConfig::from_json(
            r#"{"tags": {"a": "b"}, "node_limits": {"max_workloads": 3}, "heartbeat_interval": 1}"#,
        )
        .unwrap();
        assert_eq!(ok.node_limits.max_workloads, 3);
        assert_eq!(ok.heartbeat_interval, Duration::from_secs(1));
    }

    #[test]
    fn the_load_deadline_grows_with_the_artifact() {
        let d = NodeConfig::default();
        assert_eq!(d.load_deadline(0), Duration::from_secs(10));
        assert_eq!(d.load_deadline(18 << 20), Duration::from_secs(64));
        let c =
            NodeConfig::from_json(r#"{"load_timeout": 2, "compile_time_per_mib": 0.5}"#).unwrap();
        assert_eq!(c.load_deadline(4 << 20), Duration::from_secs(4));
    }

    #[test]
    fn bucket_replicas_are_auto_or_one_to_five() {
        use nex_connect::Replicas;
        let with = |v: &str| NodeConfig::from_json(&format!(r#"{{"bucket_replicas": {v}}}"#));
        assert_eq!(NodeConfig::default().bucket_replicas, Replicas::Auto);
        assert_eq!(with("3").unwrap().bucket_replicas, Replicas::Exactly(3));
        assert_eq!(with(r#""auto""#).unwrap().bucket_replicas, Replicas::Auto);
        for bad in ["0", "10000", r#""many""#] {
            let err = with(bad).unwrap_err();
            assert!(matches!(err, ConfigError::Json(_)), "{err:?}");
            assert!(
                err.to_string().contains("bucket replicas must be 1 to 5"),
                "{err}"
            );
        }
    }

    #[test]
    fn call_events_are_all_failures_or_off() {
        let with = |v: &str| NodeConfig::from_json(&format!(r#"{{"call_events": {v}}}"#));
        assert_eq!(NodeConfig::default().call_events, CallEvents::All);
        assert_eq!(with(r#""off""#).unwrap().call_events, CallEvents::Off);
        assert_eq!(
            with(r#""failures""#).unwrap().call_events,
            CallEvents::Failures
        );
        let err = with(r#""some""#).unwrap_err().to_string();
        assert!(err.contains("all") && err.contains("off"), "{err}");
        assert!(CallEvents::Failures.on_failure() && !CallEvents::Failures.on_success());
        assert!(!CallEvents::Off.on_failure());
    }

    #[test]
    fn the_http_policy_is_read_strictly() {
        let with = |http: &str| {
            NodeConfig::from_json(&format!(
                r#"{{"host_services": {{"services": {{"http": {{"config": {http}}}}}}}}}"#
            ))
        };
        let p =
            with(r#"{"allow_hosts": ["127.0.0.1", "10.0.0.0/8"], "deny_hosts": ["x.example"]}"#)
                .unwrap()
                .http_policy()
                .unwrap();
        assert!(p.check_addr(None, "127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_name("x.example").is_err());
        let open = with(r#"{"allow_private_addresses": true}"#).unwrap();
        assert!(
            open.http_policy()
                .unwrap()
                .check_addr(None, "10.1.1.1".parse().unwrap())
                .is_ok()
        );
        // The default refuses loopback.
        let default = NodeConfig::default().http_policy().unwrap();
        assert!(
            default
                .check_addr(None, "127.0.0.1".parse().unwrap())
                .is_err()
        );
        for bad in [
            r#"{"deny_hosts": "127.0.0.1"}"#,
            r#"{"deny_host": ["127.0.0.1"]}"#,
            r#"{"deny_hosts": ["10.0.0.0/33"]}"#,
            r#"{"allow_hosts": ["localhost:8080"]}"#,
            r#"{"allow_private_addresses": "yes"}"#,
        ] {
            let err = with(bad).unwrap_err();
            assert!(
                matches!(err, ConfigError::HttpConfig(_) | ConfigError::HttpPolicy(_)),
                "{bad}: {err:?}"
            );
        }
    }
}
