//! Workload JWTs, in the NATS JWT format (`alg: ed25519-nkey`): the issuer signs, with its nkey,
//! a token whose `sub` is the workload id and whose `data` names the workload, the SHA-256 of its
//! artifact and the operation (`deploy` or `stop`). Nodes verify the signature, check the claims
//! against the request, and refuse stale or replayed tokens ([`ReplayGuard`]).
//!
//! Upstream Nex's tokens (nats-io/jwt `GenericClaims`) read too: their claims sit under `nats`
//! rather than `data`, carry no `op` ([`Claims::op`] tells deploy from stop tokens by their
//! hash claim) and, in 0.2.7, sign the workload's name as `sub` ([`Claims::workload_name`]).
//!
//! This crate owns issuing and verifying; it does no I/O.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Deploy (or replace) the workload named in `data.name` with id `sub`.
    Deploy,
    /// Stop workload `sub`.
    Stop,
    /// Put node `sub` in lame-duck mode (node operators only).
    Lameduck,
    /// Read namespace `sub`'s workloads (info, workload ping) beyond the public node summary.
    Read,
}

/// Workload-specific claims, under `data` (upstream: `nats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadData {
    /// The workload's name (absent from upstream 0.2.7 tokens and upstream stop tokens).
    #[serde(default)]
    pub name: String,
    /// SHA-256 hex of the artifact (empty in stop tokens).
    #[serde(default)]
    pub hash: String,
    /// What the token allows; absent from upstream's tokens (see [`Claims::op`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Operation>,
}

/// The claims of a workload JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireClaims")]
pub struct Claims {
    /// Unique token id: a node refuses a `jti` it has seen.
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// The issuer's public nkey.
    pub iss: String,
    /// The workload id (upstream 0.2.7: the workload's name).
    pub sub: String,
    /// Expires at, seconds since the Unix epoch (upstream's `exp`; nex tokens have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not valid before, seconds since the Unix epoch (upstream's `nbf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub data: WorkloadData,
}

/// Claims as they arrive: nex's under `data`, with an `op`; upstream's under `nats`, where `op`
/// is optional. A `data` without `op` is not a token (a signed [`Document`] has one), so a
/// document never passes for a token.
#[derive(Deserialize)]
struct WireClaims {
    jti: String,
    iat: u64,
    iss: String,
    sub: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    data: Option<WorkloadData>,
    #[serde(default)]
    nats: Option<WorkloadData>,
}

impl TryFrom<WireClaims> for Claims {
    type Error = &'static str;

    fn try_from(w: WireClaims) -> Result<Self, Self::Error> {
        let data = match (w.data, w.nats) {
            (Some(d), None) if d.op.is_some() => d,
            (Some(_), None) => return Err("`data` has no `op`"),
            (None, Some(upstream)) => upstream,
            (Some(_), Some(_)) => return Err("claims are under both `data` and `nats`"),
            (None, None) => return Err("no claims under `data` or `nats`"),
        };
        Ok(Claims {
            jti: w.jti,
            iat: w.iat,
            iss: w.iss,
            sub: w.sub,
            exp: w.exp,
            nbf: w.nbf,
            data,
        })
    }
}

impl Claims {
    /// What the token allows: its `op` claim, or for upstream's tokens, which have none, what
    /// its shape says: a token signing an artifact hash deploys, one without stops. So an
    /// upstream deploy token cannot serve as a stop token, nor the other way round, and no
    /// token without `op` allows a lame duck or a read.
    pub fn op(&self) -> Operation {
        match self.data.op {
            Some(op) => op,
            None if self.data.hash.is_empty() => Operation::Stop,
            None => Operation::Deploy,
        }
    }

    /// The workload name the token signs: its `name` claim, or for an upstream token without
    /// one (0.2.7 signs the name as `sub`), its `sub`. Empty when it signs none.
    pub fn workload_name(&self) -> &str {
        match (self.data.name.as_str(), self.data.op) {
            ("", None) => &self.sub,
            (name, _) => name,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    typ: String,
    alg: String,
}

const ALG: &str = "ed25519-nkey";

/// Why a token was refused. Messages are meant for the sender.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the workload JWT is malformed: {0}")]
    Malformed(String),
    #[error("the workload JWT is signed with `{0}`, not ed25519-nkey")]
    Algorithm(String),
    #[error("the workload JWT's signature does not verify against its issuer {0}")]
    BadSignature(String),
    #[error("the workload JWT does not match the request: {0}")]
    Mismatch(String),
    #[error(
        "the workload JWT was issued {age_secs} s ago; tokens are accepted for {window_secs} s (is a clock off?)"
    )]
    Stale { age_secs: i64, window_secs: u64 },
    #[error("the workload JWT {0} was already used: replays are refused")]
    Replayed(String),
    #[error("the workload JWT expired at {exp} (Unix seconds)")]
    Expired { exp: u64 },
    #[error("the workload JWT is not valid before {nbf} (Unix seconds)")]
    NotYetValid { nbf: u64 },
    #[error("cannot sign the workload JWT: {0}")]
    Signing(String),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_jti() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().r#gen();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new workload id: 22 random alphanumerics (the `sub` a deploy token binds).
pub fn new_workload_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Signs a token for `op` on workload `id` named `name` with artifact `hash`.
pub fn issue(
    issuer: &KeyPair,
    id: &str,
    name: &str,
    hash: &str,
    op: Operation,
) -> Result<String, JwtError> {
    let claims = Claims {
        jti: new_jti(),
        iat: now_secs(),
        iss: issuer.public_key(),
        sub: id.to_owned(),
        exp: None,
        nbf: None,
        data: WorkloadData {
            name: name.to_owned(),
            hash: hash.to_owned(),
            op: Some(op),
        },
    };
    encode(issuer, &claims)
}

/// Signs `claims` as given (tests use this to make bad tokens).
pub fn encode<C: Serialize>(issuer: &KeyPair, claims: &C) -> Result<String, JwtError> {
    let header = Header {
        typ: "JWT".into(),
        alg: ALG.into(),
    };
    let signing_input = format!("{}.{}", b64_json(&header)?, b64_json(claims)?);
    let sig = issuer
        .sign(signing_input.as_bytes())
        .map_err(|e| JwtError::Signing(e.to_string()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

fn b64_json<T: Serialize>(v: &T) -> Result<String, JwtError> {
    let json = serde_json::to_vec(v).map_err(|e| JwtError::Signing(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Longest token accepted, in bytes: a control message is small, a token far smaller.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest signed document accepted (a deployment record with a sealed environment).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Checks the signature of `token` against the issuer it names and returns its claims.
/// Does not check freshness or replays: see [`ReplayGuard::admit`].
pub fn verify(token: &str) -> Result<Claims, JwtError> {
    verify_as(token, MAX_TOKEN_BYTES)
}

/// A document signed once by its issuer and kept (a deployment record): unlike a request's
/// token it has no freshness window and may be read any number of times. `sub` says what it is
/// about (the record's key), so one cannot be moved to another key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document<T> {
    pub jti: String,
    pub iat: u64,
    /// The issuer's public nkey.
    pub iss: String,
    pub sub: String,
    pub data: T,
}

/// Signs `data` about `sub` as a JWT (same format as workload tokens).
pub fn sign_document<T: Serialize>(
    issuer: &KeyPair,
    sub: &str,
    data: T,
) -> Result<String, JwtError> {
    let doc = Document {
        jti: new_jti(),
        iat: now_secs(),
        iss: issuer.public_key(),
        sub: sub.to_owned(),
        data,
    };
    encode(issuer, &doc)
}

/// Checks a signed document's signature against the issuer it names and returns it.
pub fn verify_document<T: serde::de::DeserializeOwned>(
    token: &str,
) -> Result<Document<T>, JwtError> {
    verify_as(token, MAX_DOCUMENT_BYTES)
}

/// Claims of any signed token: the issuer is all the check needs.
trait Issued {
    fn issuer(&self) -> &str;
}

impl Issued for Claims {
    fn issuer(&self) -> &str {
        &self.iss
    }
}

impl<T> Issued for Document<T> {
    fn issuer(&self) -> &str {
        &self.iss
    }
}

fn verify_as<C: serde::de::DeserializeOwned + Issued>(
    token: &str,
    max_bytes: usize,
) -> Result<C, JwtError> {
    if token.len() > max_bytes {
        return Err(JwtError::Malformed(format!(
            "{} bytes is longer than {max_bytes}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| JwtError::Malformed(format!("{what} is not base64url: {e}")))
    };
    let header: Header = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    if header.alg != ALG {
        return Err(JwtError::Algorithm(header.alg));
    }
    let claims: C = serde_json::from_slice(&decode(c, "claims")?)
        .map_err(|e| JwtError::Malformed(format!("claims: {e}")))?;
    let sig = decode(s, "signature")?;
    let iss = claims.issuer();
    let issuer = KeyPair::from_public_key(iss)
        .map_err(|e| JwtError::Malformed(format!("iss `{iss}` is not an nkey: {e}")))?;
    let signed = &token[..h.len() + 1 + c.len()];
    issuer
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature(iss.to_owned()))?;
    Ok(claims)
}

/// Remembers the tokens a node accepted within the freshness window, so none is used twice.
/// Tokens older than the window are refused outright, so the memory stays bounded and a node
/// restart cannot reopen old tokens for long.
///
/// A token is remembered by its operation ([`Claims::op`]) and `jti`: upstream derives `jti`
/// from `iat`, `iss` and `sub`, so its deploy and stop tokens for one workload in one second
/// share it. A token serves one operation only, so this lets no token in twice.
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    seen: HashMap<(Operation, String), u64>,
}

/// How old (or how far in the future, for skewed clocks) a token may be.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

/// Refuses `claims` issued more than `window` ago (or as far in the future), past their `exp`
/// or before their `nbf`. For requests that change nothing (reads), where a replay within the
/// window discloses only what the signer could see anyway, this is the whole check; changes go
/// through [`ReplayGuard::admit`].
pub fn check_fresh(claims: &Claims, window: Duration) -> Result<(), JwtError> {
    let now = now_secs();
    if let Some(exp) = claims.exp
        && now > exp
    {
        return Err(JwtError::Expired { exp });
    }
    if let Some(nbf) = claims.nbf
        && now < nbf
    {
        return Err(JwtError::NotYetValid { nbf });
    }
    let age = now as i64 - claims.iat as i64;
    if age.unsigned_abs() > window.as_secs() {
        return Err(JwtError::Stale {
            age_secs: age,
            window_secs: window.as_secs(),
        });
    }
    Ok(())
}

impl ReplayGuard {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
        }
    }

    /// Accepts `claims` if fresh and never seen, and remembers them.
    pub fn admit(&mut self, claims: &Claims) -> Result<(), JwtError> {
        check_fresh(claims, self.window)?;
        let now = now_secs();
        let window = self.window.as_secs();
        self.seen
            .retain(|_, iat| now.saturating_sub(*iat) <= window * 2);
        let key = (claims.op(), claims.jti.clone());
        if self.seen.contains_key(&key) {
            return Err(JwtError::Replayed(claims.jti.clone()));
        }
        self.seen.insert(key, claims.iat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> KeyPair {
        KeyPair::new_account()
    }

    #[test]
    fn a_token_verifies_and_carries_its_claims() {
        let kp = issuer();
        let t = issue(&kp, "W1", "echo", "abc", Operation::Deploy).unwrap();
        let c = verify(&t).unwrap();
        assert_eq!(c.iss, kp.public_key());
        assert_eq!(c.sub, "W1");
        assert_eq!(c.data.name, "echo");
        assert_eq!(c.data.hash, "abc");
        assert_eq!(c.op(), Operation::Deploy);
    }

    #[test]
    fn a_changed_claim_breaks_the_signature() {
        let kp = issuer();
        let t = issue(&kp, "W1", "echo", "abc", Operation::Deploy).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let mut claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims.data.hash = "evil".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        assert!(matches!(verify(&forged), Err(JwtError::BadSignature(_))));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let kp = issuer();
        let other = issuer();
        let mut claims = verify(&issue(&kp, "W", "n", "h", Operation::Deploy).unwrap()).unwrap();
        claims.iss = kp.public_key();
        let t = encode(&other, &claims).unwrap();
        assert!(matches!(verify(&t), Err(JwtError::BadSignature(_))));
    }

    #[test]
    fn a_document_verifies_and_a_changed_one_does_not() {
        let kp = issuer();
        let t = sign_document(&kp, "default.echo", serde_json::json!({"replicas": 3})).unwrap();
        let d: Document<serde_json::Value> = verify_document(&t).unwrap();
        assert_eq!(d.iss, kp.public_key());
        assert_eq!(d.sub, "default.echo");
        assert_eq!(d.data["replicas"], 3);
        let parts: Vec<&str> = t.split('.').collect();
        let mut doc = d.clone();
        doc.data["replicas"] = 300.into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&doc).unwrap()),
            parts[2]
        );
        assert!(matches!(
            verify_document::<serde_json::Value>(&forged),
            Err(JwtError::BadSignature(_))
        ));
        // A workload token is not a document of a spec, nor the other way round.
        assert!(verify(&t).is_err());
    }

    /// Claims as nats-io/jwt's `GenericClaims` writes them: no `op`, claims under `nats`.
    fn upstream(kp: &KeyPair, sub: &str, nats: serde_json::Value) -> String {
        let claims = serde_json::json!({
            "jti": "UPSTREAMJTI", "iat": now_secs(), "iss": kp.public_key(), "sub": sub,
            "nats": nats,
        });
        encode(kp, &claims).unwrap()
    }

    #[test]
    fn upstream_generic_claims_read_with_their_op_from_their_shape() {
        let kp = issuer();
        // 0.2.7 deploy: `sub` is the name, the hash under `nats`.
        let c = verify(&upstream(
            &kp,
            "echo",
            serde_json::json!({"hash": "abc", "version": 2}),
        ))
        .unwrap();
        assert_eq!((c.op(), c.workload_name()), (Operation::Deploy, "echo"));
        // 0.3 deploy: `sub` is the id, the name under `nats`.
        let c = verify(&upstream(
            &kp,
            "W1",
            serde_json::json!({"hash": "abc", "name": "echo", "version": 2}),
        ))
        .unwrap();
        assert_eq!((c.op(), c.workload_name()), (Operation::Deploy, "echo"));
        // A stop: no hash.
        let stop = verify(&upstream(&kp, "W1", serde_json::json!({"version": 2}))).unwrap();
        assert_eq!(stop.op(), Operation::Stop);
        // nex's own tokens keep their explicit op and never take the name from `sub`.
        let nex = verify(&issue(&kp, "W1", "", "", Operation::Lameduck).unwrap()).unwrap();
        assert_eq!((nex.op(), nex.workload_name()), (Operation::Lameduck, ""));
    }

    #[test]
    fn claims_under_data_need_an_op_and_one_place_only() {
        let kp = issuer();
        let at = |claims: serde_json::Value| encode(&kp, &claims).unwrap();
        let base =
            serde_json::json!({"jti": "j", "iat": now_secs(), "iss": kp.public_key(), "sub": "W"});
        let mut no_op = base.clone();
        no_op["data"] = serde_json::json!({"name": "n", "hash": "h"});
        assert!(matches!(verify(&at(no_op)), Err(JwtError::Malformed(_))));
        let mut both = base.clone();
        both["data"] = serde_json::json!({"name": "n", "hash": "h", "op": "deploy"});
        both["nats"] = serde_json::json!({"hash": "h"});
        assert!(matches!(verify(&at(both)), Err(JwtError::Malformed(_))));
        assert!(matches!(verify(&at(base)), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn exp_and_nbf_are_honoured() {
        let kp = issuer();
        let mut c = verify(&upstream(&kp, "W", serde_json::json!({"hash": "h"}))).unwrap();
        c.exp = Some(now_secs() - 1);
        assert!(matches!(
            check_fresh(&c, DEFAULT_WINDOW),
            Err(JwtError::Expired { .. })
        ));
        c.exp = None;
        c.nbf = Some(now_secs() + 60);
        assert!(matches!(
            check_fresh(&c, DEFAULT_WINDOW),
            Err(JwtError::NotYetValid { .. })
        ));
    }

    #[test]
    fn an_upstream_deploy_and_stop_sharing_a_jti_are_each_used_once() {
        let kp = issuer();
        let deploy = verify(&upstream(&kp, "W", serde_json::json!({"hash": "h"}))).unwrap();
        let stop = verify(&upstream(&kp, "W", serde_json::json!({}))).unwrap();
        assert_eq!(deploy.jti, stop.jti);
        let mut guard = ReplayGuard::default();
        guard.admit(&deploy).unwrap();
        guard.admit(&stop).unwrap();
        assert!(matches!(guard.admit(&deploy), Err(JwtError::Replayed(_))));
        assert!(matches!(guard.admit(&stop), Err(JwtError::Replayed(_))));
    }

    #[test]
    fn garbage_is_malformed() {
        for t in ["", "a.b", "a.b.c.d", "!!.??.**", &"x".repeat(20_000)] {
            assert!(matches!(verify(t), Err(JwtError::Malformed(_))), "{t:.20}");
        }
    }

    #[test]
    fn replays_and_stale_tokens_are_refused() {
        let kp = issuer();
        let c = verify(&issue(&kp, "W", "n", "h", Operation::Deploy).unwrap()).unwrap();
        let mut guard = ReplayGuard::default();
        guard.admit(&c).unwrap();
        assert!(matches!(guard.admit(&c), Err(JwtError::Replayed(_))));
        let mut old = c.clone();
        old.jti = "other".into();
        old.iat -= 3600;
        assert!(matches!(guard.admit(&old), Err(JwtError::Stale { .. })));
    }
}
