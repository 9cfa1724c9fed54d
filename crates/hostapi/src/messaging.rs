//! The messaging service: core NATS publish and request, outside the subjects the system, the
//! node and other requesters own.

use serde::{Deserialize, Serialize};

use crate::error::{GuestError, excerpt};

/// Longest subject, in bytes (the control line it travels in is 4096 bytes, with a reply
/// subject and a size beside it).
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Largest payload, in bytes (the server's `max_payload` may be lower; then the publish fails
/// with an error).
pub const MAX_PAYLOAD_BYTES: usize = 8 << 20;
/// Longest time limit of a request; longer ones are cut to it.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Most replies `requestMany` gathers; more are cut to it.
pub const MAX_REPLIES: u32 = 10_000;
/// Subjects no function may publish or send requests to: `$`-prefixed ones (the server, JetStream,
/// KV, object store, nex itself), other requesters' inboxes and the reply subjects of services.
pub const RESERVED_PREFIXES: &[&str] = &["$", "_INBOX", "_R_"];

/// A messaging call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `messaging.publish`. Reply: [`Reply::Done`](crate::Reply::Done).
    Publish {
        subject: String,
        #[serde(with = "crate::bytes")]
        payload: Vec<u8>,
    },
    /// `messaging.request`: one reply within `timeout_ms` (default 5 s). Reply:
    /// [`Reply::Message`](crate::Reply::Message).
    Request {
        subject: String,
        #[serde(with = "crate::bytes")]
        payload: Vec<u8>,
        timeout_ms: Option<u64>,
    },
    /// `messaging.requestMany`: replies until `max` (default 100) came, a short quiet period
    /// passed, or `timeout_ms` ran out. Reply: [`Reply::Messages`](crate::Reply::Messages).
    RequestMany {
        subject: String,
        #[serde(with = "crate::bytes")]
        payload: Vec<u8>,
        timeout_ms: Option<u64>,
        max: Option<u32>,
    },
}

impl Call {
    pub(crate) fn validate(&self, op: &str) -> Result<(), GuestError> {
        let (Call::Publish { subject, payload }
        | Call::Request {
            subject, payload, ..
        }
        | Call::RequestMany {
            subject, payload, ..
        }) = self;
        check_subject(op, subject)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(GuestError::too_large(format!(
                "{op}: the payload is {} bytes, above the limit of {MAX_PAYLOAD_BYTES}",
                payload.len()
            )));
        }
        Ok(())
    }
}

/// Checks a subject a function sends to: 1 to [`MAX_SUBJECT_BYTES`] bytes, non-empty tokens of
/// printable characters without white space, no wildcards, and not under a reserved prefix
/// ([`RESERVED_PREFIXES`]).
pub fn check_subject(op: &str, subject: &str) -> Result<(), GuestError> {
    let bad = |why: &str| {
        GuestError::invalid_argument(format!("{op}: subject `{}` {why}", excerpt(subject)))
    };
    if subject.is_empty() {
        return Err(bad("is empty"));
    }
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(bad(&format!(
            "is {} bytes long, above the limit of {MAX_SUBJECT_BYTES}",
            subject.len()
        )));
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains white space or a control character"));
    }
    if subject.split('.').any(str::is_empty) {
        return Err(bad("has an empty token"));
    }
    if subject.contains(['*', '>']) {
        return Err(bad("contains a wildcard: functions publish to one subject"));
    }
    if subject.starts_with('$') {
        return Err(bad(
            "is reserved: functions may not send to `$`-prefixed subjects",
        ));
    }
    for p in &RESERVED_PREFIXES[1..] {
        if subject == *p || subject.strip_prefix(p).is_some_and(|r| r.starts_with('.')) {
            return Err(bad(&format!(
                "is reserved: functions may not send to `{p}.>`"
            )));
        }
    }
    Ok(())
}
