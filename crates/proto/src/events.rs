//! CloudEvents 1.0 envelopes published on `$NEX.events.<ns>.<type>`, their payloads, and log lines
//! published on `$NEX.logs.<ns>.<node>.<workload_name>.<workload_id>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const NODE_STARTED: &str = "node_started";
pub const NODE_STOPPED: &str = "node_stopped";
pub const NODE_ENTERED_LAMEDUCK: &str = "node_entered_lameduck";
pub const HEARTBEAT: &str = "heartbeat";
pub const AGENT_STARTED: &str = "agent_started";
pub const AGENT_STOPPED: &str = "agent_stopped";
pub const WORKLOAD_DEPLOYED: &str = "workload_deployed";
pub const WORKLOAD_UNDEPLOYED: &str = "workload_undeployed";
pub const FUNCTION_EXEC_SUCCEEDED: &str = "function_exec_succeeded";
pub const FUNCTION_EXEC_FAILED: &str = "function_exec_failed";

/// A CloudEvents 1.0 JSON document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudEvent<T> {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: String,
    pub datacontenttype: String,
    pub data: T,
}

impl<T> CloudEvent<T> {
    /// An event of `event_type` from `source` (a node id), stamped now.
    pub fn new(id: String, source: &str, event_type: &str, data: T) -> Self {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            specversion: "1.0".into(),
            id,
            source: source.into(),
            event_type: event_type.into(),
            time,
            datacontenttype: "application/json".into(),
            data,
        }
    }
}

/// `node_started`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStarted {
    pub version: String,
    pub id: String,
    pub tags: BTreeMap<String, String>,
}

/// `node_stopped`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStopped {
    pub id: String,
    pub graceful: bool,
}

/// `heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: String,
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexus: Option<String>,
    pub uptime: String,
    pub tags: BTreeMap<String, String>,
    pub running_machines: usize,
}

/// `agent_started` and `agent_stopped`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentEvent {
    pub workload_id: String,
    pub workload_name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: i32,
}

/// `workload_deployed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadDeployed {
    pub workload_id: String,
    pub workload_name: String,
    pub total_bytes: u64,
}

/// `workload_undeployed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadUndeployed {
    pub workload_id: String,
    pub workload_name: String,
    pub code: i32,
    pub message: String,
}

/// `function_exec_succeeded`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionExecSucceeded {
    pub workload_name: String,
    pub workload_id: String,
    pub trigger_subject: String,
    pub elapsed_nanos: u64,
    pub namespace: String,
}

/// `function_exec_failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionExecFailed {
    pub workload_name: String,
    pub workload_id: String,
    pub trigger_subject: String,
    pub namespace: String,
    pub error: String,
    pub code: u16,
}

/// Body of a log line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub text: String,
    pub level: String,
    /// The workload id.
    pub id: String,
}
