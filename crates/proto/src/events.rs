//! CloudEvents 1.0 envelopes published on `$NEX.events.<ns>.<type>`, their payloads, and log lines
//! published on `$NEX.logs.<ns>.<node>.<workload_name>.<workload_id>`.

use std::borrow::Cow;
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

/// A CloudEvents 1.0 JSON document. Fields borrow where they can: the node builds one per function
/// call, and the constant parts need not be copied each time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudEvent<'a, T> {
    pub specversion: Cow<'a, str>,
    pub id: String,
    pub source: Cow<'a, str>,
    #[serde(rename = "type")]
    pub event_type: Cow<'a, str>,
    pub time: String,
    pub datacontenttype: Cow<'a, str>,
    pub data: T,
}

impl<'a, T> CloudEvent<'a, T> {
    /// An event of `event_type` from `source` (a node id), stamped now.
    pub fn new(id: String, source: &'a str, event_type: &'a str, data: T) -> Self {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            specversion: Cow::Borrowed("1.0"),
            id,
            source: Cow::Borrowed(source),
            event_type: Cow::Borrowed(event_type),
            time,
            datacontenttype: Cow::Borrowed("application/json"),
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

/// `function_exec_succeeded` (one per call: borrows rather than copies).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionExecSucceeded<'a> {
    pub workload_name: Cow<'a, str>,
    pub workload_id: Cow<'a, str>,
    pub trigger_subject: Cow<'a, str>,
    pub elapsed_nanos: u64,
    pub namespace: Cow<'a, str>,
}

/// `function_exec_failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionExecFailed<'a> {
    pub workload_name: Cow<'a, str>,
    pub workload_id: Cow<'a, str>,
    pub trigger_subject: Cow<'a, str>,
    pub namespace: Cow<'a, str>,
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
