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
/// A function logged faster than its rate limit: lines were dropped.
pub const LOGS_DROPPED: &str = "logs_dropped";
/// A deployment record a node will not run (bad or foreign signature, roll-back, another
/// issuer's name, a record it cannot load), in the record's namespace.
pub const DEPLOYMENT_REFUSED: &str = "deployment_refused";

/// Payload of [`DEPLOYMENT_REFUSED`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentRefused {
    pub node_id: String,
    /// The record's key (`<namespace>.<name>`).
    pub key: String,
    /// Its revision in the bucket.
    pub revision: u64,
    pub reason: String,
}

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

/// `logs_dropped`: what a function's log rate limit dropped since the last such event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsDropped {
    pub workload_id: String,
    pub workload_name: String,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
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

/// Encodes `function_exec_succeeded` CloudEvents for one workload without going through serde for
/// each call: everything but the event id, the time, the trigger subject and the elapsed time is
/// fixed at deploy and kept as ready JSON. The output equals [`CloudEvent`] of
/// [`FunctionExecSucceeded`] field for field (the time always carries nine fraction digits).
#[derive(Debug, Clone)]
pub struct ExecSucceededEncoder {
    /// `{"specversion":"1.0","id":"<id prefix>-`
    head: Vec<u8>,
    /// `","source":…,"time":"`
    after_id: Vec<u8>,
    /// `","datacontenttype":…,"trigger_subject":`
    after_time: Vec<u8>,
    /// `,"namespace":"…"}}`
    tail: Vec<u8>,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

impl ExecSucceededEncoder {
    /// `id_prefix` starts every event id (`<id_prefix>-<counter>`); `source` is the node id.
    pub fn new(id_prefix: &str, source: &str, namespace: &str, name: &str, id: &str) -> Self {
        let head = format!(r#"{{"specversion":"1.0","id":{}"#, json_str(id_prefix));
        // The id's closing quote is dropped so the counter can follow `-` inside the string.
        let head = format!("{}-", &head[..head.len() - 1]);
        Self {
            head: head.into_bytes(),
            after_id: format!(
                r#"","source":{},"type":"{FUNCTION_EXEC_SUCCEEDED}","time":""#,
                json_str(source)
            )
            .into_bytes(),
            after_time: format!(
                r#"","datacontenttype":"application/json","data":{{"workload_name":{},"workload_id":{},"trigger_subject":"#,
                json_str(name),
                json_str(id)
            )
            .into_bytes(),
            tail: format!(r#","namespace":{}}}}}"#, json_str(namespace)).into_bytes(),
        }
    }

    /// Appends the event for call number `counter` of the node, at `now`, to `out`.
    pub fn encode(
        &self,
        counter: u64,
        now: std::time::SystemTime,
        trigger_subject: &str,
        elapsed_nanos: u64,
        out: &mut Vec<u8>,
    ) {
        out.reserve(
            self.head.len()
                + self.after_id.len()
                + self.after_time.len()
                + self.tail.len()
                + trigger_subject.len()
                + 80,
        );
        out.extend_from_slice(&self.head);
        push_decimal(out, counter);
        out.extend_from_slice(&self.after_id);
        push_rfc3339(out, now);
        out.extend_from_slice(&self.after_time);
        if trigger_subject
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            out.push(b'"');
            out.extend_from_slice(trigger_subject.as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(json_str(trigger_subject).as_bytes());
        }
        out.extend_from_slice(br#","elapsed_nanos":"#);
        push_decimal(out, elapsed_nanos);
        out.extend_from_slice(&self.tail);
    }
}

/// Appends `n` in decimal, without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 9];
    let mut n = n;
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Appends `t` as RFC 3339 in UTC with nanoseconds, e.g. `2026-11-26T01:40:51.123456789Z`.
fn push_rfc3339(out: &mut Vec<u8>, t: std::time::SystemTime) {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_padded(out, year as u64, 4);
    out.push(b'-');
    push_padded(out, month as u64, 2);
    out.push(b'-');
    push_padded(out, day as u64, 2);
    out.push(b'T');
    push_padded(out, rem / 3600, 2);
    out.push(b':');
    push_padded(out, rem / 60 % 60, 2);
    out.push(b':');
    push_padded(out, rem % 60, 2);
    out.push(b'.');
    push_padded(out, u64::from(since.subsec_nanos()), 9);
    out.push(b'Z');
}

/// Body of a log line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine<'a> {
    pub text: Cow<'a, str>,
    pub level: Cow<'a, str>,
    /// The workload id.
    pub id: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_succeeded_encoder_matches_serde() {
        let enc = ExecSucceededEncoder::new("18a-\"x", "NODE\\1", "ns", "na\"me", "W1");
        let now = std::time::UNIX_EPOCH + std::time::Duration::new(1_795_660_851, 7_000);
        for subject in ["echo", "a.b.\"c\"", "t\u{e9}l\u{e9}"] {
            let mut fast = Vec::new();
            enc.encode(42, now, subject, 1234, &mut fast);
            let fast: serde_json::Value = serde_json::from_slice(&fast).expect("valid JSON");
            let slow = CloudEvent::new(
                "18a-\"x-42".to_owned(),
                "NODE\\1",
                FUNCTION_EXEC_SUCCEEDED,
                FunctionExecSucceeded {
                    workload_name: "na\"me".into(),
                    workload_id: "W1".into(),
                    trigger_subject: subject.into(),
                    elapsed_nanos: 1234,
                    namespace: "ns".into(),
                },
            );
            let mut slow = serde_json::to_value(&slow).unwrap();
            let time = slow["time"].take();
            let mut fast = fast;
            let fast_time = fast["time"].take();
            assert_eq!(fast, slow);
            assert!(time.is_string());
            assert_eq!(fast_time, "2026-11-26T02:40:51.000007000Z");
        }
    }

    #[test]
    fn rfc3339_agrees_with_the_time_crate() {
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            4_102_444_799,
            1_795_660_851,
        ] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, 123_456_789);
            let mut out = Vec::new();
            push_rfc3339(&mut out, t);
            let want = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let out = String::from_utf8(out).unwrap();
            assert_eq!(&out[..19], &want[..19]);
            assert_eq!(&out[19..], ".123456789Z");
        }
    }
}
