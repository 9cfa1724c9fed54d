//! The guest-visible error: what a function sees when a host call fails for a reason that is the
//! function's business (a bad argument, a refused subject, a slow backend). Host bugs and
//! exceeded limits are not among these: they fail or abort the invocation instead (see
//! `docs/architecture.md`, "guest-visible errors and traps").

use serde::{Deserialize, Serialize};

/// Why a host call failed. Each kind has a stable number (the wire and the wasm ABI) and a
/// stable name (the `code` property of a JavaScript exception); neither ever changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
#[repr(u16)]
pub enum ErrorKind {
    /// The call's arguments break a rule of the API (a key too long, a reserved subject).
    InvalidArgument = 1,
    /// The thing the call names does not exist where absence is an error (a missing value is
    /// `None`, not this).
    NotFound = 2,
    /// The node's policy forbids the call (an HTTP host on the deny list).
    Denied = 3,
    /// The service or its backend cannot answer now (NATS down, no responders, connect failed).
    Unavailable = 4,
    /// No answer within the call's time limit.
    Timeout = 5,
    /// An argument or an answer is above a size limit.
    TooLarge = 6,
    /// The function made too many calls too quickly.
    RateLimited = 7,
    /// Something went wrong in the node; the message says what.
    Internal = 8,
}

impl ErrorKind {
    /// Every kind, in number order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::Denied,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::TooLarge,
        ErrorKind::RateLimited,
        ErrorKind::Internal,
    ];

    /// The stable number of this kind.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The stable name of this kind, e.g. `InvalidArgument`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Denied => "Denied",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::TooLarge => "TooLarge",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Internal => "Internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ErrorKind> for u16 {
    fn from(k: ErrorKind) -> u16 {
        k.number()
    }
}

/// A number that names no [`ErrorKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error kind {0}")]
pub struct UnknownKind(pub u16);

impl TryFrom<u16> for ErrorKind {
    type Error = UnknownKind;

    fn try_from(n: u16) -> Result<Self, UnknownKind> {
        ErrorKind::ALL
            .into_iter()
            .find(|k| k.number() == n)
            .ok_or(UnknownKind(n))
    }
}

/// A failed host call as the function sees it: a kind to match on and a sentence that says
/// which call failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct GuestError {
    pub kind: ErrorKind,
    pub message: String,
}

impl GuestError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// At most `max` characters of `s` for an error message (a hostile argument is not echoed whole).
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 48;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
