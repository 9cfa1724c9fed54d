//! Who is asking, and may they: verifying the workload JWTs of control requests against the
//! node's trust settings (`valid_issuers`, `operator_keys`) and the owner of what they touch.
//!
//! | request | who may |
//! |---|---|
//! | deploy a new name | any trusted issuer |
//! | replace a running name | the issuer that deployed it (operators for config workloads) |
//! | stop | the issuer that deployed it (operators for config workloads) |
//! | lame duck | operators |
//! | info / workload ping beyond the public summary | each issuer sees its own workloads; operators all |
//!
//! Upstream Nex's tokens pass the same checks: they have no `op`, so [`Claims::op`] reads it
//! from their shape (a hash claim deploys, none stops), and they never allow a lame duck or a
//! read.

use async_nats::HeaderMap;
use nex_jwt::{Claims, Operation};
use nex_proto::control::{DeployRequest, StopRequest};

use super::error::{ControlError, Result};
use crate::Node;
use crate::workload::Workload;

/// The signer of a read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reader {
    /// No (valid) token: the public node summary only.
    Anonymous,
    /// An issuer: its own workloads in the namespace.
    Issuer(String),
    /// A node operator: every workload, agent pids included.
    Operator,
}

impl Reader {
    /// May this reader see workload `wl`?
    pub fn sees(&self, wl: &Workload) -> bool {
        match self {
            Reader::Anonymous => false,
            Reader::Issuer(key) => wl.meta.issuer == *key,
            Reader::Operator => true,
        }
    }
}

/// Is `key` one of the node's operators?
pub(crate) fn is_operator(node: &Node, key: &str) -> bool {
    node.config.operator_keys.iter().any(|k| k == key)
}

/// The JWT a header-signed request carries.
pub(crate) fn header_token(headers: Option<&HeaderMap>) -> Option<&str> {
    headers
        .and_then(|h| h.get(nex_proto::HEADER_JWT))
        .map(|v| v.as_str())
        .filter(|t| !t.is_empty())
}

/// May `issuer` deploy on this node (`valid_issuers`, empty for any, and the operators)?
pub(crate) fn trusted_issuer(node: &Node, issuer: &str) -> bool {
    node.config.valid_issuers.is_empty()
        || node.config.valid_issuers.iter().any(|i| i == issuer)
        || is_operator(node, issuer)
}

fn check_issuer(node: &Node, issuer: &str) -> Result<()> {
    if !trusted_issuer(node, issuer) {
        return Err(ControlError::Unauthorized(format!(
            "issuer `{issuer}` is not trusted by this node"
        )));
    }
    Ok(())
}

fn admit(node: &Node, claims: &Claims) -> Result<()> {
    node.replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(claims)?;
    Ok(())
}

/// The signature-checked claims of a deploy's workload JWT (nothing else is checked).
fn deploy_claims(req: &DeployRequest) -> Result<Claims> {
    let token = req
        .workload_jwt
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(ControlError::Unsigned {
            what: "deploy",
            hint: "workload_jwt is missing (nex devrun and nex run sign deploys)",
        })?;
    Ok(nex_jwt::verify(token)?)
}

/// The workload name a deploy's token signs, for a request that names none (upstream 0.2.7):
/// the token's `name` claim, else its `sub`. [`deploy_token`] then checks the whole token.
pub(crate) fn signed_workload_name(req: &DeployRequest) -> Result<String> {
    Ok(deploy_claims(req)?.workload_name().to_owned())
}

/// Verifies the deploy's workload JWT: signature, trusted issuer, a deploy token (its `op`, or
/// for upstream's tokens a hash claim), claims matching the request, freshness, and first use.
/// The hash is the request's, or when it has none (upstream), the one the token signs; with
/// neither the deploy is refused.
pub(crate) fn deploy_token(node: &Node, req: &DeployRequest) -> Result<Claims> {
    let claims = deploy_claims(req)?;
    check_issuer(node, &claims.iss)?;
    let mismatch = |what: &str, token: &str, request: &str| {
        Err(ControlError::Unauthorized(format!(
            "the workload JWT does not match the request: its {what} is `{token}`, the request's is `{request}`"
        )))
    };
    if claims.op() != Operation::Deploy {
        if claims.data.op.is_none() {
            // An upstream token signing no hash (`Checksum("")`): a stop token by its shape,
            // and what its sender needs to hear is that it names no hash.
            return Err(ControlError::NoHash);
        }
        return Err(ControlError::Unauthorized(
            "the workload JWT is not a deploy token".into(),
        ));
    }
    if let Some(id) = req.id.as_deref().filter(|i| !i.is_empty())
        && id != claims.sub
    {
        return mismatch("workload id (sub)", &claims.sub, id);
    }
    if claims.workload_name() != req.workload_name {
        return mismatch("name", claims.workload_name(), &req.workload_name);
    }
    if claims.data.hash.is_empty() {
        return Err(ControlError::NoHash);
    }
    if !req.hash.is_empty() && !claims.data.hash.eq_ignore_ascii_case(&req.hash) {
        return mismatch("artifact hash", &claims.data.hash, &req.hash);
    }
    admit(node, &claims)?;
    Ok(claims)
}

/// May `issuer` replace or stop workload `wl`? Its deployer may; a workload the node started
/// from its own config (no issuer) belongs to the node's operators.
pub(crate) fn owns(node: &Node, issuer: &str, wl: &Workload) -> Result<()> {
    let owner = &wl.meta.issuer;
    if owner == issuer || (owner.is_empty() && is_operator(node, issuer)) {
        return Ok(());
    }
    let who = if owner.is_empty() {
        "the node's operators (it was started from the node's configuration)".to_owned()
    } else {
        format!("issuer {owner}")
    };
    Err(ControlError::Forbidden(format!(
        "workload {} (`{}` in namespace {}) belongs to {who}; issuer {issuer} may not replace or stop it",
        wl.meta.id, wl.meta.name, wl.meta.namespace
    )))
}

/// Verifies a stop's workload JWT: signed by the owner of `wl`, naming it, fresh and unused.
pub(crate) fn stop_token(node: &Node, req: &StopRequest, wl: &Workload) -> Result<()> {
    let token = req
        .workload_jwt
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(ControlError::Unsigned {
            what: "stop",
            hint: "workload_jwt is missing (nex stop signs it)",
        })?;
    let claims = nex_jwt::verify(token)?;
    check_issuer(node, &claims.iss)?;
    if claims.op() != Operation::Stop || claims.sub != wl.meta.id {
        return Err(ControlError::Unauthorized(format!(
            "the workload JWT is not a stop token for workload {}",
            wl.meta.id
        )));
    }
    owns(node, &claims.iss, wl)?;
    admit(node, &claims)
}

/// Verifies a lame-duck request: a fresh, unused lame-duck token for this node, signed by one
/// of its operators.
pub(crate) fn lameduck_token(node: &Node, headers: Option<&HeaderMap>) -> Result<()> {
    let token = header_token(headers).ok_or(ControlError::Unsigned {
        what: "lame-duck request",
        hint: "the Nex-Jwt header is missing (nex lameduck signs it with an operator key)",
    })?;
    let claims = nex_jwt::verify(token)?;
    if claims.op() != Operation::Lameduck || claims.sub != node.node_id {
        return Err(ControlError::Unauthorized(format!(
            "the JWT is not a lame-duck token for node {}",
            node.node_id
        )));
    }
    if !is_operator(node, &claims.iss) {
        return Err(ControlError::Forbidden(format!(
            "issuer {} is not an operator of this node (operator_keys in the node config)",
            claims.iss
        )));
    }
    admit(node, &claims)
}

/// Who signed a read of namespace `ns`: an invalid, stale or foreign token is an error, no
/// token is [`Reader::Anonymous`]. Reads are not replay-guarded (a replay within the freshness
/// window shows only what the signer could see).
pub(crate) fn reader(node: &Node, headers: Option<&HeaderMap>, ns: &str) -> Result<Reader> {
    let Some(token) = header_token(headers) else {
        return Ok(Reader::Anonymous);
    };
    let claims = nex_jwt::verify(token)?;
    nex_jwt::check_fresh(&claims, nex_jwt::DEFAULT_WINDOW)?;
    if claims.op() != Operation::Read || claims.sub != ns {
        return Err(ControlError::Unauthorized(format!(
            "the JWT is not a read token for namespace {ns}"
        )));
    }
    if is_operator(node, &claims.iss) {
        return Ok(Reader::Operator);
    }
    check_issuer(node, &claims.iss)?;
    Ok(Reader::Issuer(claims.iss))
}
