//! The framed binary protocol between a node and one agent process.
//!
//! The agent reads frames on its stdin and writes frames on its stdout. A frame is
//! `[len: u32 LE][tag: u8][id: u64 LE][body: len - 9 bytes]`, where `len` counts everything after
//! itself. Bodies are raw bytes (payloads are never re-encoded); only `Init` and `Ready` carry JSON.
//! Decoding never panics on malformed input: it returns [`WireError`].

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::control::{ResolvedLimits, WorkloadType};

/// Bytes of the header after the length prefix: tag + id.
const HEADER: usize = 1 + 8;
/// Largest frame accepted: the largest artifact plus slack.
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// A decoding failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The frame is shorter than its header or its declared fields.
    #[error("frame truncated: {0}")]
    Truncated(&'static str),
    /// The frame tag is not one this version knows.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// The frame declares a length above [`MAX_FRAME`].
    #[error("frame of {0} bytes is above the limit")]
    TooLarge(usize),
    /// A text field is not UTF-8 or a JSON field does not parse.
    #[error("bad frame field: {0}")]
    BadField(String),
}

/// What the agent needs to load a workload. Sent once, as the first frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInit {
    pub workload_id: String,
    pub workload_name: String,
    pub namespace: String,
    pub workload_type: WorkloadType,
    /// SHA-256 hex of the artifact (verified by the node); names compiled-module cache entries.
    pub hash: String,
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub limits: ResolvedLimits,
    /// Directory for the on-disk compiled-module cache, if any.
    pub cache_dir: Option<String>,
    /// Milliseconds without frames after which the agent gives back the memory its calls touched
    /// (code pages, free heap); 0 never does. `None`: the agent's default.
    #[serde(default)]
    pub idle_trim_millis: Option<u64>,
    /// The function's log budget (bytes per second, burst), applied by the agent before it
    /// frames a line; 0 is no limit. The node applies the same budget again.
    #[serde(default)]
    pub log_bytes_per_sec: u64,
    #[serde(default)]
    pub log_burst_bytes: u64,
}

/// What the agent reports once loaded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentReady {
    /// Runtime name and version, e.g. `wasmtime 48`.
    pub runtime: String,
    /// Whether the compiled module came from the on-disk cache.
    pub cache_hit: bool,
    /// Time spent compiling or loading, in microseconds.
    pub load_micros: u64,
    /// Isolation measures the agent put in place, measure → state.
    pub sandbox: BTreeMap<String, String>,
}

/// Severity of a log line from a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LogLevel {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl LogLevel {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => LogLevel::Debug,
            1 => LogLevel::Info,
            2 => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }

    /// The name used in log-line JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Why an invocation failed; the number is the service-error code the caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum FailureCode {
    BadInput = 400,
    /// The node refused the call before it ran (e.g. its reply subject is a `$` subject).
    Forbidden = 403,
    Timeout = 408,
    TooLarge = 413,
    FunctionError = 500,
    Unavailable = 503,
}

impl FailureCode {
    fn from_u16(v: u16) -> Self {
        match v {
            400 => FailureCode::BadInput,
            403 => FailureCode::Forbidden,
            408 => FailureCode::Timeout,
            413 => FailureCode::TooLarge,
            503 => FailureCode::Unavailable,
            _ => FailureCode::FunctionError,
        }
    }
}

/// Node → agent.
#[derive(Debug, Clone, PartialEq)]
pub enum ToAgent {
    /// Load the workload: JSON [`AgentInit`] and the artifact bytes.
    Init { init: Vec<u8>, artifact: Vec<u8> },
    /// Run the function once.
    Invoke {
        id: u64,
        subject: String,
        payload: Vec<u8>,
    },
    /// Finish in-flight work and exit.
    Shutdown,
    /// The answer to host call `id`: its result, encoded by `nex-hostapi`
    /// (`encode_result`), carried as is.
    HostReply { id: u64, result: Vec<u8> },
}

/// Agent → node.
#[derive(Debug, Clone, PartialEq)]
pub enum FromAgent {
    /// Loaded; JSON [`AgentReady`].
    Ready(Vec<u8>),
    /// Could not load; the message says why.
    InitFailed(String),
    /// Invocation `id` succeeded with `reply` (empty: no reply).
    Reply {
        id: u64,
        elapsed_nanos: u64,
        reply: Vec<u8>,
    },
    /// Invocation `id` failed.
    Failed {
        id: u64,
        elapsed_nanos: u64,
        code: FailureCode,
        message: String,
    },
    /// A log line from the function (`id` is the invocation, 0 when none).
    Log {
        id: u64,
        level: LogLevel,
        text: String,
    },
    /// A host-service call `id` made by the function, encoded by `nex-hostapi`
    /// (`encode_call`), carried as is (the node decodes and checks it).
    HostCall { id: u64, call: Vec<u8> },
    /// Log lines the agent's budget dropped since its last such frame.
    LogsDropped { lines: u64, bytes: u64 },
}

mod tag {
    pub const INIT: u8 = 1;
    pub const INVOKE: u8 = 2;
    pub const SHUTDOWN: u8 = 3;
    pub const HOST_REPLY: u8 = 4;
    pub const READY: u8 = 10;
    pub const INIT_FAILED: u8 = 11;
    pub const REPLY: u8 = 12;
    pub const FAILED: u8 = 13;
    pub const LOG: u8 = 14;
    pub const HOST_CALL: u8 = 15;
    pub const LOGS_DROPPED: u8 = 16;
}

fn put_header(out: &mut Vec<u8>, tag: u8, id: u64, body_len: usize) {
    let len = (HEADER + body_len) as u32;
    out.reserve(4 + HEADER + body_len);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(tag);
    out.extend_from_slice(&id.to_le_bytes());
}

/// Appends the frame for `msg` to `out`.
pub fn encode_to_agent(msg: &ToAgent, out: &mut Vec<u8>) {
    match msg {
        ToAgent::Init { init, artifact } => {
            put_header(out, tag::INIT, 0, 4 + init.len() + artifact.len());
            out.extend_from_slice(&(init.len() as u32).to_le_bytes());
            out.extend_from_slice(init);
            out.extend_from_slice(artifact);
        }
        ToAgent::Invoke {
            id,
            subject,
            payload,
        } => encode_invoke(*id, subject, payload, out),
        ToAgent::Shutdown => put_header(out, tag::SHUTDOWN, 0, 0),
        ToAgent::HostReply { id, result } => {
            put_header(out, tag::HOST_REPLY, *id, result.len());
            out.extend_from_slice(result);
        }
    }
}

/// Appends an `Invoke` frame without building a [`ToAgent`] (the node's hot path).
pub fn encode_invoke(id: u64, subject: &str, payload: &[u8], out: &mut Vec<u8>) {
    put_header(out, tag::INVOKE, id, 2 + subject.len() + payload.len());
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(payload);
}

/// Appends the frame for `msg` to `out`.
pub fn encode_from_agent(msg: &FromAgent, out: &mut Vec<u8>) {
    match msg {
        FromAgent::Ready(json) => {
            put_header(out, tag::READY, 0, json.len());
            out.extend_from_slice(json);
        }
        FromAgent::InitFailed(m) => {
            put_header(out, tag::INIT_FAILED, 0, m.len());
            out.extend_from_slice(m.as_bytes());
        }
        FromAgent::Reply {
            id,
            elapsed_nanos,
            reply,
        } => {
            put_header(out, tag::REPLY, *id, 8 + reply.len());
            out.extend_from_slice(&elapsed_nanos.to_le_bytes());
            out.extend_from_slice(reply);
        }
        FromAgent::Failed {
            id,
            elapsed_nanos,
            code,
            message,
        } => {
            put_header(out, tag::FAILED, *id, 8 + 2 + message.len());
            out.extend_from_slice(&elapsed_nanos.to_le_bytes());
            out.extend_from_slice(&(*code as u16).to_le_bytes());
            out.extend_from_slice(message.as_bytes());
        }
        FromAgent::Log { id, level, text } => {
            put_header(out, tag::LOG, *id, 1 + text.len());
            out.push(*level as u8);
            out.extend_from_slice(text.as_bytes());
        }
        FromAgent::HostCall { id, call } => {
            put_header(out, tag::HOST_CALL, *id, call.len());
            out.extend_from_slice(call);
        }
        FromAgent::LogsDropped { lines, bytes } => {
            put_header(out, tag::LOGS_DROPPED, 0, 16);
            out.extend_from_slice(&lines.to_le_bytes());
            out.extend_from_slice(&bytes.to_le_bytes());
        }
    }
}

/// Splits a frame (without its length prefix) into tag, id and body.
fn split(frame: &[u8]) -> Result<(u8, u64, &[u8]), WireError> {
    if frame.len() < HEADER {
        return Err(WireError::Truncated("header"));
    }
    let id = u64::from_le_bytes(frame[1..9].try_into().expect("8 bytes"));
    Ok((frame[0], id, &frame[HEADER..]))
}

fn take<'a>(body: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
    if body.len() < n {
        return Err(WireError::Truncated(what));
    }
    let (head, rest) = body.split_at(n);
    *body = rest;
    Ok(head)
}

fn take_u16(body: &mut &[u8], what: &'static str) -> Result<u16, WireError> {
    Ok(u16::from_le_bytes(
        take(body, 2, what)?.try_into().expect("2"),
    ))
}

fn take_u32(body: &mut &[u8], what: &'static str) -> Result<u32, WireError> {
    Ok(u32::from_le_bytes(
        take(body, 4, what)?.try_into().expect("4"),
    ))
}

fn take_u64(body: &mut &[u8], what: &'static str) -> Result<u64, WireError> {
    Ok(u64::from_le_bytes(
        take(body, 8, what)?.try_into().expect("8"),
    ))
}

fn text(bytes: &[u8]) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| WireError::BadField(e.to_string()))
}

/// Decodes a node → agent frame (the bytes after the length prefix).
pub fn decode_to_agent(frame: &[u8]) -> Result<ToAgent, WireError> {
    let (tag, id, mut body) = split(frame)?;
    match tag {
        tag::INIT => {
            let n = take_u32(&mut body, "init length")? as usize;
            let init = take(&mut body, n, "init json")?.to_vec();
            Ok(ToAgent::Init {
                init,
                artifact: body.to_vec(),
            })
        }
        tag::INVOKE => {
            let n = take_u16(&mut body, "subject length")? as usize;
            let subject = text(take(&mut body, n, "subject")?)?;
            Ok(ToAgent::Invoke {
                id,
                subject,
                payload: body.to_vec(),
            })
        }
        tag::SHUTDOWN => Ok(ToAgent::Shutdown),
        tag::HOST_REPLY => Ok(ToAgent::HostReply {
            id,
            result: body.to_vec(),
        }),
        other => Err(WireError::UnknownTag(other)),
    }
}

/// Decodes an agent → node frame (the bytes after the length prefix).
pub fn decode_from_agent(frame: &[u8]) -> Result<FromAgent, WireError> {
    let (tag, id, mut body) = split(frame)?;
    match tag {
        tag::READY => Ok(FromAgent::Ready(body.to_vec())),
        tag::INIT_FAILED => Ok(FromAgent::InitFailed(
            String::from_utf8_lossy(body).into_owned(),
        )),
        tag::REPLY => {
            let elapsed_nanos = take_u64(&mut body, "elapsed")?;
            Ok(FromAgent::Reply {
                id,
                elapsed_nanos,
                reply: body.to_vec(),
            })
        }
        tag::FAILED => {
            let elapsed_nanos = take_u64(&mut body, "elapsed")?;
            let code = FailureCode::from_u16(take_u16(&mut body, "code")?);
            Ok(FromAgent::Failed {
                id,
                elapsed_nanos,
                code,
                message: String::from_utf8_lossy(body).into_owned(),
            })
        }
        tag::LOG => {
            let level = LogLevel::from_u8(take(&mut body, 1, "level")?[0]);
            Ok(FromAgent::Log {
                id,
                level,
                text: String::from_utf8_lossy(body).into_owned(),
            })
        }
        tag::HOST_CALL => Ok(FromAgent::HostCall {
            id,
            call: body.to_vec(),
        }),
        tag::LOGS_DROPPED => Ok(FromAgent::LogsDropped {
            lines: take_u64(&mut body, "dropped lines")?,
            bytes: take_u64(&mut body, "dropped bytes")?,
        }),
        other => Err(WireError::UnknownTag(other)),
    }
}

/// Parses a length prefix, refusing frames that are too large or too small.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if len < HEADER {
        return Err(WireError::Truncated("length below header size"));
    }
    Ok(len)
}

/// Most a frame reader reserves before the bytes arrive.
pub const PREALLOCATE_LIMIT: usize = 1 << 20;

/// Reads one frame (without its length prefix) from a blocking reader into `buf`.
/// Returns `Ok(false)` on a clean end of stream before a frame starts.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = frame_len(prefix).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // Grow with the bytes that actually arrive: a peer that announces a huge frame and sends
    // nothing must not make us allocate it (found by the `agent_frames` fuzz target). Up to
    // [`PREALLOCATE_LIMIT`] is reserved at once, so ordinary frames arrive in one read.
    buf.clear();
    buf.reserve(len.min(PREALLOCATE_LIMIT));
    let got = r.take(len as u64).read_to_end(buf)?;
    if got != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside a frame",
        ));
    }
    Ok(true)
}

/// Writes already-encoded frames and flushes.
pub fn write_frames(w: &mut impl Write, frames: &[u8]) -> io::Result<()> {
    w.write_all(frames)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_to(msg: ToAgent) {
        let mut out = Vec::new();
        encode_to_agent(&msg, &mut out);
        let mut r = &out[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, &mut buf).unwrap());
        assert_eq!(decode_to_agent(&buf).unwrap(), msg);
    }

    fn round_trip_from(msg: FromAgent) {
        let mut out = Vec::new();
        encode_from_agent(&msg, &mut out);
        assert_eq!(decode_from_agent(&out[4..]).unwrap(), msg);
    }

    #[test]
    fn frames_round_trip() {
        round_trip_to(ToAgent::Init {
            init: b"{}".to_vec(),
            artifact: vec![0, 97, 115, 109],
        });
        round_trip_to(ToAgent::Invoke {
            id: 7,
            subject: "echo".into(),
            payload: b"hi\0\xff".to_vec(),
        });
        round_trip_to(ToAgent::Shutdown);
        round_trip_to(ToAgent::HostReply {
            id: 4,
            result: b"\0result".to_vec(),
        });
        round_trip_to(ToAgent::HostReply {
            id: 5,
            result: vec![],
        });
        round_trip_from(FromAgent::LogsDropped {
            lines: 7,
            bytes: u64::MAX,
        });
        round_trip_from(FromAgent::HostCall {
            id: 6,
            call: b"\0\xffcall".to_vec(),
        });
        round_trip_from(FromAgent::Ready(b"{}".to_vec()));
        round_trip_from(FromAgent::InitFailed("bad".into()));
        round_trip_from(FromAgent::Reply {
            id: 1,
            elapsed_nanos: 5,
            reply: b"x".to_vec(),
        });
        round_trip_from(FromAgent::Failed {
            id: 2,
            elapsed_nanos: 9,
            code: FailureCode::Timeout,
            message: "slow".into(),
        });
        round_trip_from(FromAgent::Log {
            id: 3,
            level: LogLevel::Warn,
            text: "careful".into(),
        });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_to_agent(&[]).is_err());
        assert!(decode_to_agent(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
        assert!(decode_to_agent(&[99, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_from_agent(&[13, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
        assert!(frame_len(3u32.to_le_bytes()).is_err());
        // Every prefix of a valid frame decodes to an error or a value, never a panic.
        let mut out = Vec::new();
        encode_invoke(1, "subject", b"payload", &mut out);
        for n in 0..out.len() {
            let _ = decode_to_agent(&out[4..n.max(4)]);
        }
    }
}
