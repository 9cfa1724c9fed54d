//! Errors of the control client: one enum whose variants carry what happened, and an
//! [`ErrorKind`] to `match` on (as async-nats does with `err.kind()`), with a stable
//! [`code`](Error::code) for scripts.

use std::path::PathBuf;
use std::time::Duration;

use nex_proto::control::{ErrorCode, Refusal, WorkloadType};

/// A boxed source error (NATS and JetStream operations have one error type each).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors talking to nodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing listens on the subject: no node runs there, or none this server reaches.
    #[error("no node answered on {subject}: nothing listens there")]
    NoResponders { subject: String },
    /// Something listens on the subject, but no answer came in time.
    #[error("no answer on {subject} within {:.1} s", .timeout.as_secs_f64())]
    TimedOut { subject: String, timeout: Duration },
    /// The node answered with an error; its code says which kind.
    #[error("the node refused: {0}")]
    Refused(#[from] Refusal),
    /// The answer could not be parsed.
    #[error("unreadable answer on {subject}: {source}")]
    BadAnswer {
        subject: String,
        source: serde_json::Error,
    },
    /// No node or workload has this id, id prefix or name.
    #[error("no {what} matches `{wanted}`{}", known_list(.known))]
    NotFound {
        /// `node` or `workload`.
        what: &'static str,
        wanted: String,
        /// What does exist (node ids, or workloads as `name id`), for the message.
        known: Vec<String>,
    },
    /// An id prefix matches more than one node or workload.
    #[error("`{prefix}` matches {} {what}s: {}; give more of the id", .candidates.len(), .candidates.join(", "))]
    Ambiguous {
        /// `node` or `workload`.
        what: &'static str,
        prefix: String,
        candidates: Vec<String>,
    },
    /// No node bid in the auction: none runs this workload type, or none is running at all.
    #[error("no node can run a {workload_type} workload (no node answered the auction)")]
    NoBid { workload_type: WorkloadType },
    /// Invalid input caught before anything was sent.
    #[error("{0}")]
    Invalid(String),
    /// A name that nodes would refuse, caught before anything was sent.
    #[error(transparent)]
    Name(#[from] nex_proto::validate::NameError),
    /// A deployment record that nodes would refuse, caught before it was written.
    #[error(transparent)]
    Spec(#[from] nex_proto::deployments::SpecError),
    /// A local file (an artifact, a key) cannot be read or written.
    #[error("{what} {}: {source}", .path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key cannot be used (a bad seed or public key, sealing failed).
    #[error("{what}: {source}")]
    Key {
        what: String,
        source: nkeys::error::Error,
    },
    /// A TypeScript source cannot become JavaScript (its position is in the `.ts` file);
    /// nothing was uploaded.
    #[error(transparent)]
    TypeScript(#[from] nex_typescript::Error),
    /// A token cannot be signed.
    #[error(transparent)]
    Token(#[from] nex_jwt::JwtError),
    /// A NATS or JetStream operation failed.
    #[error("{what}: {source}")]
    Nats { what: String, source: BoxError },
    /// A Python function could not be built into a component; its
    /// [`code`](crate::python::PythonError::code) says why.
    #[error(transparent)]
    Python(#[from] crate::python::PythonError),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (there are: {})", known.join(", "))
    }
}

/// What kind of failure an [`Error`] is, to `match` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Nothing listens on the subject ([`Error::NoResponders`]).
    NoResponders,
    /// No answer in time ([`Error::TimedOut`]).
    TimedOut,
    /// A node refused ([`Error::Refused`]); [`Error::refusal_code`] says why.
    Refused,
    /// An answer that does not parse.
    BadAnswer,
    /// No such node or workload.
    NotFound,
    /// An id prefix matches several.
    Ambiguous,
    /// No node bid in the auction.
    NoBid,
    /// Invalid input.
    Invalid,
    /// A local file, key or token problem.
    Local,
    /// A NATS or JetStream operation failed.
    Nats,
    /// A Python function could not be built ([`Error::code`] says why:
    /// `python_tool_missing`, `python_build_failed`).
    Python,
    /// A TypeScript source does not parse ([`nex_typescript::Error::Syntax`]).
    TypeScriptSyntax,
    /// A TypeScript source uses what stripping types cannot turn into JavaScript
    /// ([`nex_typescript::Error::Unsupported`]).
    TypeScriptUnsupported,
}

impl ErrorKind {
    /// The stable code of this kind, as `nex --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoResponders => "no_responders",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::Refused => "refused",
            ErrorKind::BadAnswer => "bad_answer",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Ambiguous => "ambiguous",
            ErrorKind::NoBid => "no_bid",
            ErrorKind::Invalid => "bad_request",
            ErrorKind::Local => "local",
            ErrorKind::Nats => "nats",
            ErrorKind::Python => "python",
            ErrorKind::TypeScriptSyntax => "typescript_syntax",
            ErrorKind::TypeScriptUnsupported => "typescript_unsupported",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Which kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoResponders { .. } => ErrorKind::NoResponders,
            Error::TimedOut { .. } => ErrorKind::TimedOut,
            Error::Refused(_) => ErrorKind::Refused,
            Error::BadAnswer { .. } => ErrorKind::BadAnswer,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Ambiguous { .. } => ErrorKind::Ambiguous,
            Error::NoBid { .. } => ErrorKind::NoBid,
            Error::Invalid(_) | Error::Name(_) | Error::Spec(_) => ErrorKind::Invalid,
            Error::File { .. } | Error::Key { .. } | Error::Token(_) => ErrorKind::Local,
            Error::Nats { .. } => ErrorKind::Nats,
            Error::Python(_) => ErrorKind::Python,
            Error::TypeScript(nex_typescript::Error::Syntax { .. }) => ErrorKind::TypeScriptSyntax,
            Error::TypeScript(nex_typescript::Error::Unsupported { .. }) => {
                ErrorKind::TypeScriptUnsupported
            }
        }
    }

    /// The node's code when a node refused.
    pub fn refusal_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused(r) => r.code,
            _ => None,
        }
    }

    /// A stable, machine-readable code: the node's [`ErrorCode`] when it refused with one, a
    /// Python build's own (`python_tool_missing`, `python_build_failed`), otherwise the
    /// [`ErrorKind`]'s.
    pub fn code(&self) -> &'static str {
        if let Error::Python(e) = self {
            return e.code();
        }
        match self.refusal_code() {
            Some(c) => c.as_str(),
            None => self.kind().as_str(),
        }
    }

    /// A NATS or JetStream failure while doing `what`.
    pub(crate) fn nats(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Nats {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A key that cannot be used.
    pub(crate) fn key(what: impl Into<String>, source: nkeys::error::Error) -> Self {
        Error::Key {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_refusal_code_or_the_kind() {
        let refused = Error::Refused(Refusal {
            code: Some(ErrorCode::QuotaExceeded),
            message: "full".into(),
        });
        assert_eq!(refused.kind(), ErrorKind::Refused);
        assert_eq!(refused.code(), "quota_exceeded");
        let old_node = Error::Refused(Refusal {
            code: None,
            message: "no".into(),
        });
        assert_eq!(old_node.code(), "refused");
        let e = Error::NoResponders {
            subject: "$NEX.PING".into(),
        };
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::NoResponders, "no_responders")
        );
    }

    #[test]
    fn python_build_errors_have_their_own_codes() {
        let e = Error::from(crate::python::PythonError::ToolMissing {
            found: "componentize-py is not on PATH".into(),
        });
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::Python, "python_tool_missing")
        );
        let e = Error::from(crate::python::PythonError::BuildFailed {
            path: "app.py".into(),
            stderr: "SyntaxError: expected ':'".into(),
        });
        assert_eq!(e.code(), "python_build_failed");
        assert!(e.to_string().contains("SyntaxError"), "{e}");
    }

    #[test]
    fn typescript_errors_have_codes_of_their_own() {
        let e = Error::from(nex_typescript::strip("f.ts", "let x: = 1;").unwrap_err());
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::TypeScriptSyntax, "typescript_syntax")
        );
        let e = Error::from(nex_typescript::strip("f.ts", "enum E { A }").unwrap_err());
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::TypeScriptUnsupported, "typescript_unsupported")
        );
    }

    #[test]
    fn ambiguity_lists_the_candidates() {
        let e = Error::Ambiguous {
            what: "node",
            prefix: "NA".into(),
            candidates: vec!["NAB".into(), "NAC".into()],
        };
        assert_eq!(
            e.to_string(),
            "`NA` matches 2 nodes: NAB, NAC; give more of the id"
        );
        let e = Error::NotFound {
            what: "node",
            wanted: "NX".into(),
            known: vec!["NAB".into()],
        };
        assert_eq!(e.to_string(), "no node matches `NX` (there are: NAB)");
    }
}
