//! The object-store service: the function's own object store (one JetStream object store per
//! workload).

use serde::{Deserialize, Serialize};

use crate::error::{GuestError, excerpt};

/// Longest object name, in bytes. The object's metadata subject carries the name in base64
/// (`$O.<bucket>.M.<base64(name)>`, 4/3 of it), which must stay far below nats-server's
/// 4096-byte control line; a 4,000-byte name made the server close the node's connection
/// (issue 17, hole 7).
pub const MAX_NAME_BYTES: usize = 1024;
/// Largest object, in bytes (it is held in memory by the function and the node).
pub const MAX_OBJECT_BYTES: usize = 64 << 20;

/// A call on the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `objectStore.get`: the object `name`. Reply: [`Reply::Value`](crate::Reply::Value),
    /// `None` when there is none.
    Get { name: String },
    /// `objectStore.put`: stores `data` as `name`. Reply:
    /// [`Reply::Object`](crate::Reply::Object).
    Put {
        name: String,
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// `objectStore.delete`: deletes `name`. Reply: [`Reply::Done`](crate::Reply::Done).
    Delete { name: String },
    /// `objectStore.list`: every object's metadata. Reply:
    /// [`Reply::Objects`](crate::Reply::Objects).
    List,
}

/// An object's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    pub bucket: String,
    pub nuid: String,
    pub chunks: u64,
    /// RFC 3339.
    pub modified: Option<String>,
    /// `SHA-256=<base64>`.
    pub digest: Option<String>,
    pub deleted: bool,
}

impl Call {
    pub(crate) fn validate(&self, op: &str) -> Result<(), GuestError> {
        match self {
            Call::Get { name } | Call::Delete { name } => check_name(op, name),
            Call::Put { name, data } => {
                check_name(op, name)?;
                if data.len() > MAX_OBJECT_BYTES {
                    return Err(GuestError::too_large(format!(
                        "{op}: the object is {} bytes, above the limit of {MAX_OBJECT_BYTES}",
                        data.len()
                    )));
                }
                Ok(())
            }
            Call::List => Ok(()),
        }
    }
}

/// Checks an object name: 1 to [`MAX_NAME_BYTES`] bytes, no control characters.
pub fn check_name(op: &str, name: &str) -> Result<(), GuestError> {
    let bad = |why: &str| {
        GuestError::invalid_argument(format!("{op}: object name `{}` {why}", excerpt(name)))
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(bad(&format!(
            "is {} bytes long, above the limit of {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(())
}
