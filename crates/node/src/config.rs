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
    /// Subjects (and `prefix.>` patterns) functions may not be triggered by.
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
    pub autostart: Autostart,
    /// Seed file of the node's server nkey; created when missing. `None`: a fresh key each start.
    pub node_seed_file: Option<PathBuf>,
    /// Directory of compiled-module caches.
    pub cache_dir: Option<PathBuf>,
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
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?))
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            tags: BTreeMap::new(),
            workload_types: vec![WorkloadType::Javascript, WorkloadType::Wasm],
            valid_issuers: Vec::new(),
            deny_trigger_subjects: Vec::new(),
            host_services: None,
            node_limits: NodeLimits::default(),
            default_limits: None,
            no_sandbox: false,
            test_escape_payload: None,
            allow_file_locations: false,
            autostart: Autostart::default(),
            node_seed_file: None,
            cache_dir: None,
            agent_exe: None,
            heartbeat_interval: Duration::from_secs(30),
            nexus: None,
            idle_trim_after: Duration::from_secs(5),
            machine_pool_size: 1,
            nats: nex_connect::ConnectSpec::default(),
        }
    }
}

impl NodeConfig {
    /// Parses a JSON config; unknown fields are an error that names the field.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid node configuration: {e}"))
    }

    /// The HTTP host policy from `host_services.services.http.config.{allow_hosts, deny_hosts}`.
    pub fn http_policy(&self) -> nex_hostservices::HttpPolicy {
        let list = |name: &str| -> Vec<String> {
            self.host_services
                .as_ref()
                .and_then(|h| h.pointer(&format!("/services/http/config/{name}")))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        };
        nex_hostservices::HttpPolicy {
            allow: list("allow_hosts"),
            deny: list("deny_hosts"),
        }
    }

    /// The limits a workload gets when its deploy sets none.
    pub fn workload_defaults(&self) -> Result<ResolvedLimits, String> {
        ResolvedLimits::DEFAULT.apply(self.default_limits.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = NodeConfig::from_json(r#"{"tags": {}, "colour": "blue"}"#).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let ok = NodeConfig::from_json(
            r#"{"tags": {"a": "b"}, "node_limits": {"max_workloads": 3}, "heartbeat_interval": 1}"#,
        )
        .unwrap();
        assert_eq!(ok.node_limits.max_workloads, 3);
        assert_eq!(ok.heartbeat_interval, Duration::from_secs(1));
    }
}
