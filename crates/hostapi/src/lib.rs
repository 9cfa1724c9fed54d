//! The host API of nex functions, defined once: every call a function can make on the node
//! ([`Call`]), every answer ([`Reply`]), the error a function sees ([`GuestError`]), the one
//! encoding all of them travel in, and the rules an argument must meet before the node sends
//! anything to NATS ([`Call::validate`]).
//!
//! The node (`nex-hostservices`), the agent, both runtimes and the wasm guest library
//! (`guests/nex-guest`) build this crate, so adding an operation is one variant here and the
//! compiler points at every place that must handle it. It does no I/O, has no async and knows
//! nothing of NATS, QuickJS or wasmtime.
//!
//! # Layout
//! - [`kv`], [`object_store`], [`messaging`], [`http`]: one module per service: its calls, its
//!   reply types, its limits and its validation.
//! - [`error`]: [`GuestError`] and its [`ErrorKind`]s (stable numbers and names).
//! - encoding: [`encode_call`]/[`decode_call`] and [`encode_result`]/[`decode_result`]:
//!   postcard, with decoding bounded by the input (lengths are a hostile guest's to choose) and
//!   canonical (a byte string that decodes re-encodes to itself; any other is refused).

mod bytes;
pub mod error;
pub mod http;
pub mod kv;
pub mod messaging;
pub mod object_store;
pub mod rate;

use serde::{Deserialize, Serialize};

pub use error::{ErrorKind, GuestError};

/// One host-service call from a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    Kv(kv::Call),
    ObjectStore(object_store::Call),
    Messaging(messaging::Call),
    Http(http::Call),
}

/// The answer to a [`Call`] that succeeded; each call's docs name the variant it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The call is done and has nothing to say.
    Done,
    /// A value, or `None` when there is none (`kv.get`, `objectStore.get`).
    Value(#[serde(with = "bytes::option")] Option<Vec<u8>>),
    /// Keys, sorted (`kv.keys`).
    Keys(Vec<String>),
    /// The metadata of the object just stored (`objectStore.put`).
    Object(object_store::ObjectInfo),
    /// Every object's metadata (`objectStore.list`).
    Objects(Vec<object_store::ObjectInfo>),
    /// One message (`messaging.request`).
    Message(#[serde(with = "bytes")] Vec<u8>),
    /// Messages, in arrival order (`messaging.requestMany`).
    Messages(#[serde(with = "bytes::list")] Vec<Vec<u8>>),
    /// An HTTP response (`http.request`).
    Http(http::Response),
    /// A counter's new value (`kv.increment`).
    Count(u64),
}

/// What a call comes to: a reply, or the error the function sees.
pub type CallResult = Result<Reply, GuestError>;

/// The name of each operation, as JavaScript's wrappers and messages spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    KvGet,
    KvSet,
    KvDelete,
    KvKeys,
    ObjectGet,
    ObjectPut,
    ObjectDelete,
    ObjectList,
    Publish,
    Request,
    RequestMany,
    HttpRequest,
    KvIncrement,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 13] = [
        Op::KvGet,
        Op::KvSet,
        Op::KvDelete,
        Op::KvKeys,
        Op::ObjectGet,
        Op::ObjectPut,
        Op::ObjectDelete,
        Op::ObjectList,
        Op::Publish,
        Op::Request,
        Op::RequestMany,
        Op::HttpRequest,
        Op::KvIncrement,
    ];

    /// `service.method`, e.g. `kv.get`.
    pub fn name(self) -> &'static str {
        match self {
            Op::KvGet => "kv.get",
            Op::KvSet => "kv.set",
            Op::KvDelete => "kv.delete",
            Op::KvKeys => "kv.keys",
            Op::ObjectGet => "objectStore.get",
            Op::ObjectPut => "objectStore.put",
            Op::ObjectDelete => "objectStore.delete",
            Op::ObjectList => "objectStore.list",
            Op::Publish => "messaging.publish",
            Op::Request => "messaging.request",
            Op::RequestMany => "messaging.requestMany",
            Op::HttpRequest => "http.request",
            Op::KvIncrement => "kv.increment",
        }
    }

    /// The operation called `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Call {
    /// Which operation this is.
    pub fn op(&self) -> Op {
        match self {
            Call::Kv(c) => match c {
                kv::Call::Get { .. } => Op::KvGet,
                kv::Call::Set { .. } => Op::KvSet,
                kv::Call::Delete { .. } => Op::KvDelete,
                kv::Call::Keys => Op::KvKeys,
                kv::Call::Increment { .. } => Op::KvIncrement,
            },
            Call::ObjectStore(c) => match c {
                object_store::Call::Get { .. } => Op::ObjectGet,
                object_store::Call::Put { .. } => Op::ObjectPut,
                object_store::Call::Delete { .. } => Op::ObjectDelete,
                object_store::Call::List => Op::ObjectList,
            },
            Call::Messaging(c) => match c {
                messaging::Call::Publish { .. } => Op::Publish,
                messaging::Call::Request { .. } => Op::Request,
                messaging::Call::RequestMany { .. } => Op::RequestMany,
            },
            Call::Http(http::Call::Request(_) | http::Call::RequestWithin { .. }) => {
                Op::HttpRequest
            }
        }
    }

    /// Checks every argument against the rules of its service: key, name, subject and URL
    /// shapes and lengths, reserved subjects, header bytes, payload sizes. The node calls this
    /// before anything is sent to NATS; a failure is an [`ErrorKind::InvalidArgument`] (or
    /// [`ErrorKind::TooLarge`]) that names the call.
    pub fn validate(&self) -> Result<(), GuestError> {
        let op = self.op().name();
        match self {
            Call::Kv(c) => c.validate(op),
            Call::ObjectStore(c) => c.validate(op),
            Call::Messaging(c) => c.validate(op),
            Call::Http(c) => c.validate(op),
        }
    }
}

/// Largest encoded call or result accepted: the largest argument a call may carry (an object)
/// plus room for the rest.
pub const MAX_ENCODED_BYTES: usize = object_store::MAX_OBJECT_BYTES + (1 << 20);

/// Bytes that are not an encoded call or result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_ENCODED_BYTES`].
    #[error("{0} bytes, above the limit of {MAX_ENCODED_BYTES}")]
    TooLarge(usize),
    /// Not the encoding of any value of the type (truncated, unknown variant, bad UTF-8...).
    #[error("malformed: {0}")]
    Malformed(String),
    /// A value, but not encoded the one way this crate encodes it (extra bytes after it, an
    /// over-long number, unsorted map keys).
    #[error("not in canonical form")]
    NotCanonical,
}

/// Encodes a call.
pub fn encode_call(call: &Call) -> Vec<u8> {
    encode(call)
}

/// Decodes a call encoded by [`encode_call`].
pub fn decode_call(bytes: &[u8]) -> Result<Call, DecodeError> {
    decode(bytes)
}

/// Encodes the result of a call.
pub fn encode_result(result: &CallResult) -> Vec<u8> {
    encode(result)
}

/// Decodes a result encoded by [`encode_result`].
pub fn decode_result(bytes: &[u8]) -> Result<CallResult, DecodeError> {
    decode(bytes)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types into a growing vector cannot fail: every type here has a
    // postcard form and the vector only runs out when memory does.
    postcard::to_allocvec(value).unwrap_or_default()
}

fn decode<'a, T: Serialize + Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    // Every length inside is checked against the bytes that are there, and serde caps what a
    // declared count preallocates, so hostile lengths cost nothing.
    let value: T =
        postcard::from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    // Re-encoding into a comparison (no allocation) finds trailing bytes and non-canonical
    // forms, so exactly one byte string stands for each value.
    postcard::serialize_with_flavor(&value, Same { rest: bytes })
        .map_err(|_| DecodeError::NotCanonical)?;
    Ok(value)
}

/// A postcard output that, instead of storing bytes, checks they are the next ones of `rest`.
struct Same<'a> {
    rest: &'a [u8],
}

impl postcard::ser_flavors::Flavor for Same<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.rest.split_at_checked(data.len()) {
            Some((head, tail)) if head == data => {
                self.rest = tail;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

#[cfg(test)]
mod tests;
