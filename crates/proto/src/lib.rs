//! Wire types and subject names of nex.
//!
//! This crate owns every string and byte layout that crosses a process boundary, and nothing else:
//! it does no I/O and knows nothing of NATS clients, runtimes or the file system.
//!
//! Layout:
//! - [`subjects`]: every NATS subject nex uses, built in one place.
//! - [`names`]: bucket names and artifact keys derived from a namespace and a workload name.
//! - [`deployments`]: desired-state records, node presence and the placement rule.
//! - [`control`]: JSON bodies of the control plane (`$NEX.*`) requests and answers.
//! - [`events`]: CloudEvents envelopes and event payloads, and log lines.
//! - [`agent_wire`]: the framed binary protocol between a node and its per-workload agent process.
//! - [`validate`]: checks on names and trigger subjects shared by the node and the CLI.
//! - [`upstream`]: how upstream Nex clients' deploys read: Go's URL object, nulls, devrun's
//!   placeholder hash.

pub mod agent_wire;
pub mod control;
pub mod deployments;
pub mod events;
pub mod names;
pub mod subjects;
pub mod upstream;
pub mod validate;

/// The nex version every node and CLI reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Header on a successful function reply: the function's execution time in nanoseconds.
pub const HEADER_RUNTIME_NS: &str = "x-nex-runtime-ns";
/// NATS service-error header carrying a human-readable message.
pub const HEADER_SERVICE_ERROR: &str = "Nats-Service-Error";
/// NATS service-error header carrying a numeric code (HTTP-like).
pub const HEADER_SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// Header carrying a signed JWT on control requests whose body is not theirs to extend
/// (`$NEX.LAMEDUCK.<node>`, `$NEX.INFO.<ns>.<node>`, `$NEX.WPING.<ns>...`).
pub const HEADER_JWT: &str = "Nex-Jwt";

/// Object-store bucket `nex devrun` uploads artifacts to.
pub use names::DEVRUN_BUCKET;
