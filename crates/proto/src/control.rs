//! JSON bodies of the control plane: requests to nodes and the envelopes they answer with.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Answer `type` of a ping or workload ping.
pub const PING_RESPONSE_TYPE: &str = "io.nats.nex.v1.ping_response";
/// Answer `type` of an auction.
pub const AUCTION_RESPONSE_TYPE: &str = "io.nats.nex.v1.auction_response";
/// Answer `type` of an info request.
pub const INFO_RESPONSE_TYPE: &str = "io.nats.nex.v1.info_response";
/// Answer `type` of a deploy request.
pub const RUN_RESPONSE_TYPE: &str = "io.nats.nex.v1.run_response";
/// Answer `type` of a stop request.
pub const STOP_RESPONSE_TYPE: &str = "io.nats.nex.v1.stop_response";
/// Answer `type` of a lame-duck request.
pub const LAMEDUCK_RESPONSE_TYPE: &str = "io.nats.nex.v1.lameduck_response";

/// Standard tag: operating system of the node.
pub const TAG_OS: &str = "nex.os";
/// Standard tag: CPU architecture of the node.
pub const TAG_ARCH: &str = "nex.arch";
/// Standard tag: number of CPUs.
pub const TAG_CPUCOUNT: &str = "nex.cpucount";
/// Standard tag: `true` when workloads run without the OS sandbox.
pub const TAG_UNSAFE: &str = "nex.unsafe";
/// Standard tag: `true` once the node is in lame-duck mode.
pub const TAG_LAMEDUCK: &str = "nex.lameduck";

/// Stable, machine-readable kind of a control-plane failure: the envelope's `code`, beside the
/// `error` sentence. Clients and tests match on this, never on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or asks for something invalid (names, subjects, limits).
    BadRequest,
    /// The request is not signed, or its token is forged, stale, replayed, or for another
    /// request, or its issuer is not trusted by this node.
    Unauthorized,
    /// The signer is known but may not do this: the workload or name belongs to another issuer,
    /// or the operation is for node operators only.
    Forbidden,
    /// No such workload.
    NotFound,
    /// Another deploy of the same name is in progress, or the id is taken.
    Conflict,
    /// A node or namespace quota would be exceeded.
    QuotaExceeded,
    /// The node is in lame-duck mode.
    LameDuck,
    /// The artifact cannot be fetched or does not match its hash.
    Artifact,
    /// The agent could not load the workload (bad module, load deadline, crash).
    LoadFailed,
    /// A code this client does not know (sent by a newer node).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The wire name, e.g. `quota_exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::LameDuck => "lame_duck",
            ErrorCode::Artifact => "artifact",
            ErrorCode::LoadFailed => "load_failed",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed control answer: its code (absent from nodes older than codes) and its sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: Option<ErrorCode>,
    pub message: String,
}

/// Every control answer: `data` on success, `error` (a sentence a user can act on) and `code`
/// (its [`ErrorCode`]) on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "Option::default")]
    pub data: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

impl<T> Envelope<T> {
    /// A successful answer.
    pub fn ok(kind: &str, data: T) -> Self {
        Self {
            kind: kind.to_owned(),
            data: Some(data),
            error: None,
            code: None,
        }
    }

    /// A failed answer without a code.
    pub fn err(kind: &str, error: impl fmt::Display) -> Self {
        Self {
            kind: kind.to_owned(),
            data: None,
            error: Some(error.to_string()),
            code: None,
        }
    }

    /// A failed answer of kind `code`.
    pub fn refused(kind: &str, code: ErrorCode, error: impl fmt::Display) -> Self {
        Self {
            code: Some(code),
            ..Self::err(kind, error)
        }
    }

    /// The data, or the error text when the answer is a failure.
    pub fn into_result(self) -> Result<T, String> {
        self.into_outcome().map_err(|r| r.message)
    }

    /// The data, or the failure's code and text.
    pub fn into_outcome(self) -> Result<T, Refusal> {
        match (self.error, self.data) {
            (Some(message), _) => Err(Refusal {
                code: self.code,
                message,
            }),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(Refusal {
                code: None,
                message: format!("answer of type {} carried no data", self.kind),
            }),
        }
    }
}

/// Kind of workload a node can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadType {
    /// A JavaScript function (upstream's `v8` is the same thing).
    #[serde(alias = "v8")]
    Javascript,
    /// A WASI preview-1 module: a command (`_start`) or a handler (`nex_call`).
    Wasm,
}

impl WorkloadType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadType::Javascript => "javascript",
            WorkloadType::Wasm => "wasm",
        }
    }

    /// Guess the type from a file name: `.js`/`.mjs` is JavaScript, and so is TypeScript
    /// (`.ts`/`.mts`/`.cts`: the client strips its types before uploading); `.wasm` is
    /// WebAssembly, and so is `.py` (`nex devrun` builds a Python function into a component).
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if [".js", ".mjs", ".ts", ".mts", ".cts"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            Some(WorkloadType::Javascript)
        } else if lower.ends_with(".wasm") || lower.ends_with(".py") {
            Some(WorkloadType::Wasm)
        } else {
            None
        }
    }
}

impl fmt::Display for WorkloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload type nex does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload type `{0}`: expected `javascript` or `wasm`")]
pub struct UnknownWorkloadType(pub String);

impl std::str::FromStr for WorkloadType {
    type Err = UnknownWorkloadType;
    fn from_str(s: &str) -> Result<Self, UnknownWorkloadType> {
        match s {
            "javascript" | "js" | "v8" => Ok(WorkloadType::Javascript),
            "wasm" | "webassembly" => Ok(WorkloadType::Wasm),
            other => Err(UnknownWorkloadType(other.to_owned())),
        }
    }
}

/// How long a node lets a workload load (compile, top level, init) before its deploy fails: a
/// base for every workload and a time per MiB of artifact, since compiling WebAssembly takes
/// time in proportion to its size (an 18 MiB Python component takes 20-30 s on a node built for
/// debugging). A node's config sets both (`load_timeout`, `compile_time_per_mib`); a client
/// waits for a deploy by the defaults. Bounded by the node's largest artifact
/// (`node_limits.max_workload_bytes`, 64 MiB by default: 10 s + 192 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadDeadline {
    /// For every workload, whatever its size.
    pub base: std::time::Duration,
    /// More for each MiB of artifact.
    pub per_mib: std::time::Duration,
}

impl LoadDeadline {
    /// A node's defaults: 10 s, and 3 s per MiB.
    pub const DEFAULT: LoadDeadline = LoadDeadline {
        base: std::time::Duration::from_secs(10),
        per_mib: std::time::Duration::from_secs(3),
    };

    /// The deadline of an artifact of `bytes` bytes.
    pub fn for_bytes(self, bytes: u64) -> std::time::Duration {
        self.base + self.per_mib.mul_f64(bytes as f64 / (1024.0 * 1024.0))
    }
}

/// Per-workload limits a deploy may set (nex addition). Unset fields take the node's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<u32>,
}

/// Limits with every field decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedLimits {
    pub memory_mb: u32,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
    pub max_payload_bytes: u32,
}

/// Why a deploy's limits are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("limit {name} must be above 0")]
    Zero { name: &'static str },
    #[error("limit {name} = {value} is above the maximum {max}")]
    AboveMax {
        name: &'static str,
        value: u64,
        max: u64,
    },
}

impl ResolvedLimits {
    /// The defaults a node applies when a deploy sets nothing.
    pub const DEFAULT: ResolvedLimits = ResolvedLimits {
        memory_mb: 64,
        timeout_ms: 5_000,
        max_concurrency: 16,
        max_payload_bytes: 1024 * 1024,
    };

    /// Caps on what a deploy may ask for.
    pub const MAX: ResolvedLimits = ResolvedLimits {
        memory_mb: 4096,
        timeout_ms: 15 * 60 * 1000,
        max_concurrency: 256,
        max_payload_bytes: 64 * 1024 * 1024,
    };

    /// Fill unset fields of `limits` from `self`, refusing values of zero or above [`Self::MAX`].
    pub fn apply(self, limits: Option<&Limits>) -> Result<ResolvedLimits, LimitError> {
        let Some(l) = limits else { return Ok(self) };
        fn pick<T: Copy + PartialOrd + Default + Into<u64>>(
            name: &'static str,
            asked: Option<T>,
            default: T,
            max: T,
        ) -> Result<T, LimitError> {
            match asked {
                None => Ok(default),
                Some(v) if v == T::default() => Err(LimitError::Zero { name }),
                Some(v) if v > max => Err(LimitError::AboveMax {
                    name,
                    value: v.into(),
                    max: max.into(),
                }),
                Some(v) => Ok(v),
            }
        }
        let max = Self::MAX;
        Ok(ResolvedLimits {
            memory_mb: pick("memory_mb", l.memory_mb, self.memory_mb, max.memory_mb)?,
            timeout_ms: pick("timeout_ms", l.timeout_ms, self.timeout_ms, max.timeout_ms)?,
            max_concurrency: pick(
                "max_concurrency",
                l.max_concurrency,
                self.max_concurrency,
                max.max_concurrency,
            )?,
            max_payload_bytes: pick(
                "max_payload_bytes",
                l.max_payload_bytes,
                self.max_payload_bytes,
                max.max_payload_bytes,
            )?,
        })
    }
}

/// `$NEX.DEPLOY.<ns>.<node>` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Workload id; the node makes one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Upstream 0.2.7 sends none: the node then takes the name its token signs (`name` claim,
    /// else `sub`).
    #[serde(default, deserialize_with = "crate::upstream::null_as_empty")]
    pub workload_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `javascript` (or `v8`) or `wasm`; kept as text so an unknown type gets a clear error.
    #[serde(rename = "type")]
    pub workload_type: String,
    /// `nats://BUCKET/key`, or `file://` where the node allows local files. Upstream sends Go's
    /// `url.URL` object, read by [`crate::upstream::GoUrl`].
    #[serde(deserialize_with = "crate::upstream::location")]
    pub location: String,
    /// SHA-256 hex of the artifact; the node verifies it. Upstream sends none (or `null`): the
    /// node then takes the hash its token signs.
    #[serde(default, deserialize_with = "crate::upstream::null_as_empty")]
    pub hash: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub trigger_subjects: Vec<String>,
    /// Base64 of the JSON map `{K: V}`, sealed with the sender's xkey to the node's xkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_jwt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    /// Upstream's per-workload host-services connection (`host_services` in 0.2.7); the node
    /// uses its own and logs that it ignored this.
    #[serde(
        default,
        alias = "host_services",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_services_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Upstream: restart the workload when it exits. A nex node restarts every function's
    /// agent when it dies, so this is logged and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// Upstream: the JetStream domain of the artifact's object store. A nex node reads artifacts
    /// from its own domain; a non-empty one is logged and ignored (the hash check still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsdomain: Option<String>,
    /// Upstream's own retry bookkeeping; logged and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u64>,
    /// Upstream's own retry bookkeeping (an RFC 3339 time); logged and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_at: Option<String>,
    /// Upstream 0.2.7: a NATS connection (URL, user JWT, seed) to subscribe the triggers on. A
    /// nex node subscribes on its own connection only; logged and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_connection: Option<serde_json::Value>,
}

/// `$NEX.STOP.<ns>.<node>` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    pub workload_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_jwt: Option<String>,
    /// The node addressed (upstream 0.2.7 calls it `target_node`).
    #[serde(
        default,
        alias = "target_node",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_id: Option<String>,
}

/// `$NEX.AUCTION` body: only nodes that match every given criterion answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxed: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_types: Vec<WorkloadType>,
}

/// Answer to `$NEX.PING`, `$NEX.PING.<node>` and `$NEX.AUCTION`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingResponse {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexus: Option<String>,
    pub version: String,
    pub uptime: String,
    pub target_xkey: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub running_machines: usize,
    /// The xkey every node of this system shares for deployment records' environments
    /// (absent when the node has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_xkey: Option<String>,
    /// Nodes this node hears on `$NEX.PRESENCE`, itself included: a client gathering ping
    /// answers keeps waiting (up to its timeout) until that many have answered. Absent in
    /// auction answers (only matching nodes bid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_nodes: Option<usize>,
}

/// One running workload, as a workload ping lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineSummary {
    pub id: String,
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub workload_type: WorkloadType,
}

/// Answer to `$NEX.WPING.<ns>[.<workload>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadPingResponse {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexus: Option<String>,
    pub version: String,
    pub uptime: String,
    pub target_xkey: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub running_machines: Vec<MachineSummary>,
}

/// Host memory figures in KiB.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryStat {
    pub total: u64,
    pub free: u64,
    pub available: u64,
}

/// What a running workload is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadDescription {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub runtime: String,
    #[serde(rename = "type")]
    pub workload_type: WorkloadType,
    pub hash: String,
    #[serde(default)]
    pub trigger_subjects: Vec<String>,
}

/// One workload in an info answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    pub id: String,
    pub healthy: bool,
    pub uptime: String,
    pub namespace: String,
    pub workload: WorkloadDescription,
    /// Process id of the workload's agent on the node's host (nex's own field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pid: Option<u32>,
    /// Calls the node refused before running them because their reply subject was a `$`
    /// subject (nex's own field; absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_calls: u64,
    /// Calls answered with a reply since the workload started (nex's own field; counted
    /// whether or not the node publishes per-call events).
    #[serde(default)]
    pub succeeded_calls: u64,
    /// Calls that failed or were refused since the workload started (nex's own field).
    #[serde(default)]
    pub failed_calls: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Answer to `$NEX.INFO.<ns>.<node>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoResponse {
    pub node_id: String,
    pub version: String,
    pub uptime: String,
    pub public_xkey: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub memory: MemoryStat,
    pub machines: Vec<MachineInfo>,
    pub supported_workload_types: Vec<WorkloadType>,
    /// Isolation measures in force for workloads (nex addition).
    #[serde(default)]
    pub sandbox: BTreeMap<String, String>,
}

/// Answer to a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResponse {
    pub started: bool,
    pub id: String,
    #[serde(default)]
    pub issuer: String,
    pub name: String,
}

/// Answer to a stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopResponse {
    pub stopped: bool,
    pub id: String,
    #[serde(default)]
    pub issuer: String,
    pub name: String,
}

/// Answer to a lame-duck request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LameduckResponse {
    pub node_id: String,
    pub success: bool,
}

/// Formats a duration the way Go does (`1h2m3s`, `4.5s`, `12ms`), as upstream's uptimes read.
pub fn format_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_files_are_wasm_and_load_deadlines_grow_with_size() {
        assert_eq!(
            WorkloadType::from_file_name("app.py"),
            Some(WorkloadType::Wasm)
        );
        assert_eq!(WorkloadType::from_file_name("app.txt"), None);
        let d = LoadDeadline::DEFAULT;
        assert_eq!(d.for_bytes(0), std::time::Duration::from_secs(10));
        assert_eq!(d.for_bytes(18 << 20), std::time::Duration::from_secs(64));
    }

    #[test]
    fn v8_is_javascript_and_unknown_types_are_named() {
        let t: WorkloadType = serde_json::from_str("\"v8\"").unwrap();
        assert_eq!(t, WorkloadType::Javascript);
        let err = "elf".parse::<WorkloadType>().unwrap_err();
        assert_eq!(err, UnknownWorkloadType("elf".into()));
        assert!(err.to_string().contains("`elf`"), "{err}");
    }

    #[test]
    fn typescript_files_are_javascript_workloads() {
        for name in ["f.js", "f.mjs", "f.ts", "F.MTS", "f.cts"] {
            assert_eq!(
                WorkloadType::from_file_name(name),
                Some(WorkloadType::Javascript),
                "{name}"
            );
        }
        assert_eq!(
            WorkloadType::from_file_name("f.wasm"),
            Some(WorkloadType::Wasm)
        );
        assert_eq!(WorkloadType::from_file_name("f.tsx"), None);
    }

    #[test]
    fn deploy_rejects_unknown_fields() {
        let err = serde_json::from_str::<DeployRequest>(
            r#"{"workload_name":"a","type":"wasm","location":"x","bogus":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    /// Go's `url.URL` for `nats://NEXCLIFILES/default/echo`, as `encoding/json` writes it.
    fn go_url() -> serde_json::Value {
        serde_json::json!({
            "Scheme": "nats", "Opaque": "", "User": null, "Host": "NEXCLIFILES",
            "Path": "/default/echo", "RawPath": "", "OmitHost": false, "ForceQuery": false,
            "RawQuery": "", "Fragment": "", "RawFragment": ""
        })
    }

    #[test]
    fn location_is_a_string_or_a_go_url_object() {
        let text: DeployRequest = serde_json::from_value(serde_json::json!({
            "workload_name": "a", "type": "wasm", "location": "nats://NEXCLIFILES/default/echo"
        }))
        .unwrap();
        let object: DeployRequest = serde_json::from_value(serde_json::json!({
            "workload_name": "a", "type": "wasm", "location": go_url()
        }))
        .unwrap();
        assert_eq!(text.location, "nats://NEXCLIFILES/default/echo");
        assert_eq!(object.location, text.location);
        // What nex sends stays a string.
        let sent = serde_json::to_value(&object).unwrap();
        assert_eq!(sent["location"], "nats://NEXCLIFILES/default/echo");
        for bad in [
            serde_json::json!(42),
            serde_json::json!({"Scheme": "nats", "Host": "B", "Path": "/k", "Bogus": 1}),
            serde_json::json!({"Scheme": "nats", "Host": "B", "Path": "/k", "RawQuery": "x=1"}),
            serde_json::json!({"Host": "B", "Path": "/k"}),
        ] {
            let r = serde_json::from_value::<DeployRequest>(serde_json::json!({
                "workload_name": "a", "type": "wasm", "location": bad
            }));
            assert!(r.is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn upstream_deploys_parse_and_unknown_fields_are_still_refused() {
        // 0.2.7: no workload_name, no hash, `host_services`, `trigger_connection`.
        let v027 = serde_json::json!({
            "description": "Workload published in devmode", "type": "v8",
            "location": go_url(), "essential": false, "workload_jwt": "t",
            "environment": "e", "jsdomain": "", "sender_public_key": "X",
            "target_node": "N", "trigger_subjects": ["a.b"],
            "trigger_connection": {"nats_url": "nats://x", "nats_user_jwt": "", "nats_user_seed": ""},
            "retry_count": 1, "retried_at": "2024-05-01T10:00:00Z",
            "host_services": {"nats_url": "nats://x", "nats_user_jwt": "", "nats_user_seed": ""}
        });
        let r: DeployRequest = serde_json::from_value(v027.clone()).unwrap();
        assert_eq!(r.workload_name, "");
        assert_eq!(r.hash, "");
        assert_eq!(r.essential, Some(false));
        assert_eq!(r.retry_count, Some(1));
        assert!(r.host_services_config.is_some() && r.trigger_connection.is_some());
        // 0.3: `hash` and `workload_name` may be null.
        let r: DeployRequest = serde_json::from_value(serde_json::json!({
            "id": "W1", "workload_name": null, "hash": null, "type": "wasm",
            "location": go_url(), "essential": true, "workload_jwt": "t"
        }))
        .unwrap();
        assert_eq!((r.workload_name.as_str(), r.hash.as_str()), ("", ""));

        let mut unknown = v027;
        unknown["bogus"] = 1.into();
        let err = serde_json::from_value::<DeployRequest>(unknown).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        // `host_services` is another name of `host_services_config`, not a second field.
        let both = serde_json::json!({
            "workload_name": "a", "type": "wasm", "location": "x",
            "host_services": {}, "host_services_config": {}
        });
        assert!(serde_json::from_value::<DeployRequest>(both).is_err());
    }

    #[test]
    fn upstream_stops_parse() {
        let s: StopRequest =
            serde_json::from_str(r#"{"workload_id":"W1","workload_jwt":"t","target_node":"N"}"#)
                .unwrap();
        assert_eq!(s.node_id.as_deref(), Some("N"));
        let s: StopRequest =
            serde_json::from_str(r#"{"node_id":"N","workload_id":"W1","workload_jwt":"t"}"#)
                .unwrap();
        assert_eq!(s.node_id.as_deref(), Some("N"));
        assert!(serde_json::from_str::<StopRequest>(r#"{"workload_id":"W1","bogus":1}"#).is_err());
    }

    #[test]
    fn limits_fill_defaults_and_refuse_nonsense() {
        let d = ResolvedLimits::DEFAULT;
        let l = Limits {
            timeout_ms: Some(100),
            ..Default::default()
        };
        let r = d.apply(Some(&l)).unwrap();
        assert_eq!(r.timeout_ms, 100);
        assert_eq!(r.memory_mb, d.memory_mb);
        let zero = Limits {
            memory_mb: Some(0),
            ..Default::default()
        };
        assert_eq!(
            d.apply(Some(&zero)),
            Err(LimitError::Zero { name: "memory_mb" })
        );
        let huge = Limits {
            max_concurrency: Some(100_000),
            ..Default::default()
        };
        assert_eq!(
            d.apply(Some(&huge)),
            Err(LimitError::AboveMax {
                name: "max_concurrency",
                value: 100_000,
                max: u64::from(ResolvedLimits::MAX.max_concurrency),
            })
        );
    }

    #[test]
    fn envelope_round_trip() {
        let e: Envelope<RunResponse> = Envelope::err(RUN_RESPONSE_TYPE, "no");
        let s = serde_json::to_string(&e).unwrap();
        let back: Envelope<RunResponse> = serde_json::from_str(&s).unwrap();
        assert_eq!(back.into_result().unwrap_err(), "no");
    }

    #[test]
    fn go_style_durations() {
        use std::time::Duration;
        assert_eq!(format_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(format_duration(Duration::from_secs(61)), "1m1s");
        assert_eq!(format_duration(Duration::from_secs(3725)), "1h2m5s");
    }
}
