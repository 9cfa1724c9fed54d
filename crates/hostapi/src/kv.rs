//! The key-value service: the function's own bucket (one JetStream KV bucket per workload).

use serde::{Deserialize, Serialize};

use crate::error::{GuestError, excerpt};

/// Longest key, in bytes. Far below nats-server's 4096-byte control line, which a key ends up in
/// (`PUB $KV.<bucket>.<key> <reply> <size>`); a longer one made the server close the node's
/// connection (issue 17, hole 7).
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes (a value is one NATS message; the server's `max_payload` may be
/// lower, and then the put fails with an error, not a closed connection).
pub const MAX_VALUE_BYTES: usize = 8 << 20;

/// A call on the key-value bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `kv.get`: the value of `key`. Reply: [`Reply::Value`](crate::Reply::Value), `None` when
    /// the key has no value.
    Get { key: String },
    /// `kv.set`: sets `key` to `value`. Reply: [`Reply::Done`](crate::Reply::Done).
    Set {
        key: String,
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
    },
    /// `kv.delete`: deletes `key`. Reply: [`Reply::Done`](crate::Reply::Done).
    Delete { key: String },
    /// `kv.keys`: every key, sorted. Reply: [`Reply::Keys`](crate::Reply::Keys).
    Keys,
    /// `kv.increment`: atomically adds `delta` to the number `key` holds (its value as decimal
    /// ASCII digits; no value counts as 0) and stores the sum the same way. Reply:
    /// [`Reply::Count`](crate::Reply::Count), the new number. A value that is not such a number,
    /// or a sum past `u64::MAX`, is an [`ErrorKind::InvalidArgument`](crate::ErrorKind).
    Increment { key: String, delta: u64 },
}

impl Call {
    pub(crate) fn validate(&self, op: &str) -> Result<(), GuestError> {
        match self {
            Call::Get { key } | Call::Delete { key } | Call::Increment { key, .. } => {
                check_key(op, key)
            }
            Call::Set { key, value } => {
                check_key(op, key)?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(GuestError::too_large(format!(
                        "{op}: the value is {} bytes, above the limit of {MAX_VALUE_BYTES}",
                        value.len()
                    )));
                }
                Ok(())
            }
            Call::Keys => Ok(()),
        }
    }
}

/// Checks a key against the NATS KV rules: 1 to [`MAX_KEY_BYTES`] bytes of `[-/_=.a-zA-Z0-9]`,
/// no empty token (no leading, trailing or doubled `.`).
pub fn check_key(op: &str, key: &str) -> Result<(), GuestError> {
    let bad =
        |why: &str| GuestError::invalid_argument(format!("{op}: key `{}` {why}", excerpt(key)));
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad(&format!(
            "is {} bytes long, above the limit of {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if let Some(c) = key
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.')))
    {
        return Err(bad(&format!(
            "contains {c:?}: keys are made of letters, digits and `-/_=.`"
        )));
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        return Err(bad(
            "has an empty token (a leading, trailing or doubled `.`)",
        ));
    }
    Ok(())
}

/// The number a counter's value holds for `kv.increment`: no value is 0, otherwise decimal ASCII
/// digits of a `u64`.
pub fn parse_count(op: &str, key: &str, value: Option<&[u8]>) -> Result<u64, GuestError> {
    let Some(value) = value else { return Ok(0) };
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            GuestError::invalid_argument(format!(
                "{op}: the value of `{}` is not a whole number (decimal digits of a u64)",
                excerpt(key)
            ))
        })
}

/// `count + delta` for `kv.increment`, or the error a sum past `u64::MAX` is.
pub fn add_count(op: &str, key: &str, count: u64, delta: u64) -> Result<u64, GuestError> {
    count.checked_add(delta).ok_or_else(|| {
        GuestError::invalid_argument(format!(
            "{op}: `{}` would pass the largest number ({count} + {delta})",
            excerpt(key)
        ))
    })
}
