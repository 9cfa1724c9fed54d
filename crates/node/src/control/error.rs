//! Why a control request was refused: one variant per stage of the pipelines, each with the
//! stable [`ErrorCode`] the envelope carries beside the sentence.

use nex_proto::control::ErrorCode;

use crate::agent::SpawnError;

/// A refused control request. The message is what the sender reads; the code is what scripts
/// and tests match.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// The node is draining.
    #[error("this node is in lame-duck mode and takes no new workloads")]
    LameDuck,
    /// The request is malformed or asks for something invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request carries no token where one is required.
    #[error("the {what} is not signed: {hint}")]
    Unsigned {
        what: &'static str,
        hint: &'static str,
    },
    /// The token is forged, malformed, stale or replayed.
    #[error(transparent)]
    Token(#[from] nex_jwt::JwtError),
    /// The token is valid but not for this request, or its issuer is not trusted.
    #[error("{0}")]
    Unauthorized(String),
    /// The signer may not do this (another issuer's workload, operators only).
    #[error("{0}")]
    Forbidden(String),
    /// No such workload.
    #[error("no workload {id} in namespace {namespace} on this node")]
    NotFound { id: String, namespace: String },
    /// Another deploy of this name or id is in progress or running.
    #[error("{0}")]
    Conflict(String),
    /// A node or namespace quota would be exceeded.
    #[error("{0}")]
    Quota(String),
    /// A namespace, workload name or id is malformed.
    #[error(transparent)]
    Name(#[from] nex_proto::validate::NameError),
    /// The deploy's limits are zero or above the maximum.
    #[error(transparent)]
    Limits(#[from] nex_proto::control::LimitError),
    /// The deploy's workload type is unknown.
    #[error(transparent)]
    WorkloadType(#[from] nex_proto::control::UnknownWorkloadType),
    /// A trigger subject is invalid, reserved, denied, or too many are given.
    #[error(transparent)]
    Trigger(#[from] nex_proto::validate::TriggerError),
    /// A trigger or artifact location lies in another namespace's space.
    #[error(transparent)]
    Tenancy(#[from] crate::tenancy::TenancyError),
    /// The deploy names no artifact hash: neither `hash` nor its token's hash claim.
    #[error(
        "the deploy names no artifact hash (neither `hash` nor its token's hash claim): this node \
         verifies every artifact against the hash its issuer signed"
    )]
    NoHash,
    /// The deploy's hash is upstream devrun's placeholder, and the node verifies artifacts.
    #[error(
        "the deploy's hash is upstream nex devrun's placeholder `{}`, not a hash: this node \
         verifies every artifact (a development node may allow it: allow_upstream_devrun_hash \
         in its config)",
        nex_proto::upstream::UPSTREAM_DEVRUN_HASH
    )]
    PlaceholderHash,
    /// The artifact cannot be had or does not match.
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    /// The sealed environment cannot be opened.
    #[error(transparent)]
    Environment(#[from] crate::identity::EnvironmentError),
    /// The node's own configuration does not allow the request (its default limits; the node
    /// checks them at start, so this is never seen in practice).
    #[error(transparent)]
    NodeConfig(#[from] crate::config::ConfigError),
    /// The agent did not load the workload.
    #[error("workload {name} did not start: {source}")]
    Spawn { name: String, source: SpawnError },
}

impl ControlError {
    /// The envelope's code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControlError::LameDuck => ErrorCode::LameDuck,
            ControlError::Invalid(_) | ControlError::NoHash | ControlError::PlaceholderHash => {
                ErrorCode::BadRequest
            }
            ControlError::Unsigned { .. }
            | ControlError::Token(_)
            | ControlError::Unauthorized(_) => ErrorCode::Unauthorized,
            ControlError::Forbidden(_) => ErrorCode::Forbidden,
            ControlError::Trigger(_)
            | ControlError::Name(_)
            | ControlError::Limits(_)
            | ControlError::WorkloadType(_) => ErrorCode::BadRequest,
            ControlError::Tenancy(
                crate::tenancy::TenancyError::Config(_)
                | crate::tenancy::TenancyError::ConfigName(_),
            ) => ErrorCode::BadRequest,
            ControlError::Tenancy(_) => ErrorCode::Forbidden,
            ControlError::NotFound { .. } => ErrorCode::NotFound,
            ControlError::Conflict(_) => ErrorCode::Conflict,
            ControlError::Quota(_) => ErrorCode::QuotaExceeded,
            ControlError::Artifact(_) => ErrorCode::Artifact,
            ControlError::Environment(_) | ControlError::NodeConfig(_) => ErrorCode::BadRequest,
            ControlError::Spawn { .. } => ErrorCode::LoadFailed,
        }
    }
}

pub(crate) type Result<T, E = ControlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_code() {
        assert_eq!(ControlError::LameDuck.code(), ErrorCode::LameDuck);
        assert_eq!(
            ControlError::from(nex_proto::validate::name("namespace", "a.b").unwrap_err()).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            ControlError::Token(nex_jwt::JwtError::Replayed("x".into())).code(),
            ErrorCode::Unauthorized
        );
        assert_eq!(ControlError::NoHash.code(), ErrorCode::BadRequest);
        assert_eq!(ControlError::PlaceholderHash.code(), ErrorCode::BadRequest);
        assert_eq!(
            ControlError::Quota("full".into()).code(),
            ErrorCode::QuotaExceeded
        );
        assert_eq!(
            ControlError::Spawn {
                name: "n".into(),
                source: SpawnError::Refused("no".into())
            }
            .code(),
            ErrorCode::LoadFailed
        );
    }
}
