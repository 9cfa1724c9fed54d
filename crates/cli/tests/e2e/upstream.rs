//! Upstream Nex clients drive a nex node: deploys and stops built byte for byte as upstream's Go
//! control API (0.2.7 and 0.3) builds them: the JSON layouts of its `DeployRequest` and
//! `StopRequest`, `location` as Go's `url.URL` object, and a nats-io/jwt `GenericClaims` token
//! under `nats`, signed by an account nkey. They run, stop, and pass every check a nex request
//! passes: a forged, untrusted, stale, replayed, unhashed or mis-hashed one is refused with its
//! code, nothing of it runs, and the node keeps serving.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use nex_proto::control::{Envelope, ErrorCode, RunResponse, StopResponse};
use nkeys::{KeyPair, XKey};
use serde::Serialize;
use serde_json::json;

use crate::harness::*;

/// The function every test deploys (upstream's `v8` type).
const FUNCTION: &str = r#"(subject, payload) => "upstream:" + new TextDecoder().decode(payload)"#;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 4648 base32 without padding, as nats-io/jwt writes a `jti`.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buf, mut bits) = (String::new(), 0u32, 0);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// nats-io/jwt `GenericClaims.Encode`: header `{"typ":"JWT","alg":"ed25519-nkey"}`; claims
/// `jti, iat, iss, sub, nats` in Go's field order, `jti` the base32 SHA-512/256 of the claims
/// without it, `nats.version` = 2; signed by `signer`. `iss` is `signer`'s key unless given
/// (a forgery), `iat` now unless given (a stale token).
fn generic_claims(
    signer: &KeyPair,
    sub: &str,
    mut data: serde_json::Map<String, serde_json::Value>,
    iss: Option<&str>,
    iat: Option<i64>,
) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let iss = iss.map_or_else(|| signer.public_key(), str::to_owned);
    let iat = iat.unwrap_or_else(now);
    #[derive(Serialize)]
    struct ClaimsData<'a> {
        #[serde(skip_serializing_if = "str::is_empty")]
        jti: &'a str,
        iat: i64,
        iss: &'a str,
        sub: &'a str,
    }
    let unsigned = ClaimsData {
        jti: "",
        iat,
        iss: &iss,
        sub,
    };
    let jti = base32(&sha2::Sha512_256::digest(
        serde_json::to_vec(&unsigned).unwrap(),
    ));
    data.insert("version".into(), 2.into());
    #[derive(Serialize)]
    struct GenericClaims<'a> {
        #[serde(flatten)]
        claims: ClaimsData<'a>,
        nats: serde_json::Map<String, serde_json::Value>,
    }
    let claims = GenericClaims {
        claims: ClaimsData {
            jti: &jti,
            ..unsigned
        },
        nats: data,
    };
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = b64(&serde_json::to_vec(&claims).unwrap());
    let signing_input = format!("{header}.{payload}");
    let sig = signer.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(&sig))
}

/// `nats` claims of a deploy token: upstream 0.2.7 signs the hash; 0.3 the hash and the name.
fn deploy_data(hash: &str, name: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("hash".into(), hash.into());
    if let Some(n) = name {
        m.insert("name".into(), n.into());
    }
    m
}

/// Go's `net/url.URL` as `encoding/json` writes it.
#[derive(Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct GoUrl {
    scheme: String,
    opaque: String,
    user: Option<()>,
    host: String,
    path: String,
    raw_path: String,
    omit_host: bool,
    force_query: bool,
    raw_query: String,
    fragment: String,
    raw_fragment: String,
}

/// `url.Parse("nats://BUCKET/key")`.
fn go_url(location: &str) -> GoUrl {
    let rest = location.strip_prefix("nats://").unwrap();
    let (bucket, key) = rest.split_once('/').unwrap();
    GoUrl {
        scheme: "nats".into(),
        opaque: String::new(),
        user: None,
        host: bucket.into(),
        path: format!("/{key}"),
        raw_path: String::new(),
        omit_host: false,
        force_query: false,
        raw_query: String::new(),
        fragment: String::new(),
        raw_fragment: String::new(),
    }
}

/// Upstream 0.2.7's `controlapi.DeployRequest`, fields in Go's order, as `NewDeployRequest`
/// fills it: no `workload_name`, no `hash`, no `id`.
#[derive(Serialize, Clone)]
struct DeployRequest027 {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    argv: Vec<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    workload_type: String,
    location: GoUrl,
    essential: Option<bool>,
    workload_jwt: Option<String>,
    environment: Option<String>,
    jsdomain: Option<String>,
    sender_public_key: Option<String>,
    target_node: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trigger_subjects: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger_connection: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retried_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_services: Option<serde_json::Value>,
}

/// Upstream 0.3's `controlapi.DeployRequest`, fields in Go's order, as `NewDeployRequest`
/// fills it: `hash` left nil (the hash is in the token), an id, the name.
#[derive(Serialize, Clone)]
struct DeployRequest03 {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    argv: Vec<String>,
    description: Option<String>,
    hash: Option<String>,
    location: GoUrl,
    essential: Option<bool>,
    environment: Option<String>,
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jsdomain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retried_at: Option<String>,
    sender_public_key: Option<String>,
    target_node: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trigger_subjects: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_services_config: Option<serde_json::Value>,
    workload_name: Option<String>,
    workload_jwt: Option<String>,
    #[serde(rename = "type")]
    workload_type: String,
}

/// Upstream 0.2.7's `controlapi.StopRequest`.
#[derive(Serialize)]
struct StopRequest027<'a> {
    workload_id: &'a str,
    workload_jwt: String,
    target_node: &'a str,
}

/// Upstream 0.3's `controlapi.StopRequest`.
#[derive(Serialize)]
struct StopRequest03<'a> {
    node_id: &'a str,
    workload_id: &'a str,
    workload_jwt: String,
}

/// An upstream client: its issuer account key and its sender xkey.
struct Upstream {
    issuer: KeyPair,
    xkey: XKey,
}

impl Upstream {
    fn new() -> Upstream {
        Upstream {
            issuer: KeyPair::new_account(),
            xkey: XKey::new(),
        }
    }

    /// `EncryptRequestEnvironment`: JSON of the map (`null` for Go's nil map), sealed to the
    /// node's xkey, standard base64.
    fn environment(&self, env: serde_json::Value, node_xkey: &str) -> String {
        use base64::Engine as _;
        let node = XKey::from_public_key(node_xkey).unwrap();
        let sealed = self
            .xkey
            .seal(&serde_json::to_vec(&env).unwrap(), &node)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }
}

/// What one test needs of its world: the node's id and xkey, and the function's location.
struct Setup {
    node: String,
    xkey: String,
    location: String,
    hash: String,
}

async fn setup(w: &World, key: &str) -> Setup {
    let location = w
        .control()
        .upload_artifact(key, FUNCTION.as_bytes())
        .await
        .unwrap();
    let info = w.control().info(&w.node.node_id).await.unwrap();
    Setup {
        node: w.node.node_id.clone(),
        xkey: info.public_xkey,
        location,
        hash: nex_client::sha256_hex(FUNCTION.as_bytes()),
    }
}

/// An 0.2.7 deploy of `name` on `subject`, as `NewDeployRequest` builds it with `Checksum(hash)`.
fn deploy_027(u: &Upstream, s: &Setup, name: &str, subject: &str, hash: &str) -> DeployRequest027 {
    DeployRequest027 {
        argv: vec![],
        description: Some("Workload published in devmode".into()),
        workload_type: "v8".into(),
        location: go_url(&s.location),
        essential: Some(false),
        workload_jwt: Some(generic_claims(
            &u.issuer,
            name,
            deploy_data(hash, None),
            None,
            None,
        )),
        environment: Some(u.environment(serde_json::Value::Null, &s.xkey)),
        jsdomain: Some(String::new()),
        sender_public_key: Some(u.xkey.public_key()),
        target_node: Some(s.node.clone()),
        trigger_subjects: vec![subject.into()],
        trigger_connection: None,
        retry_count: None,
        retried_at: None,
        host_services: None,
    }
}

/// An 0.3 deploy of `name` (id `id`) on `subject`, as `NewDeployRequest` builds it with
/// `Hash(hash)`.
fn deploy_03(
    u: &Upstream,
    s: &Setup,
    id: &str,
    name: &str,
    subject: &str,
    hash: &str,
) -> DeployRequest03 {
    DeployRequest03 {
        argv: vec![],
        description: Some("Workload published in devmode".into()),
        hash: None,
        location: go_url(&s.location),
        essential: Some(true),
        environment: Some(u.environment(json!({"GREETING": "hi"}), &s.xkey)),
        id: Some(id.into()),
        jsdomain: None,
        retry_count: None,
        retried_at: None,
        sender_public_key: Some(u.xkey.public_key()),
        target_node: Some(s.node.clone()),
        trigger_subjects: vec![subject.into()],
        host_services_config: None,
        workload_name: Some(name.into()),
        workload_jwt: Some(generic_claims(
            &u.issuer,
            id,
            deploy_data(hash, Some(name)),
            None,
            None,
        )),
        workload_type: "v8".into(),
    }
}

/// `StartWorkload`: the request on `$NEX.DEPLOY.<ns>.<node>`.
async fn deploy(w: &World, body: &impl Serialize) -> Envelope<RunResponse> {
    control(
        w,
        nex_proto::subjects::deploy("default", &w.node.node_id),
        body,
    )
    .await
}

/// `StopWorkload`: the request on `$NEX.STOP.<ns>.<node>`.
async fn stop(w: &World, body: &impl Serialize) -> Envelope<StopResponse> {
    control(
        w,
        nex_proto::subjects::stop("default", &w.node.node_id),
        body,
    )
    .await
}

async fn control<T: serde::de::DeserializeOwned>(
    w: &World,
    subject: String,
    body: &impl Serialize,
) -> Envelope<T> {
    let req = async_nats::Request::new()
        .payload(Bytes::from(serde_json::to_vec(body).unwrap()))
        .timeout(Some(Duration::from_secs(15)));
    let m = w
        .client
        .send_request(subject, req)
        .await
        .expect("the node answers");
    serde_json::from_slice(&m.payload).expect("an envelope")
}

fn refused<T: std::fmt::Debug>(env: Envelope<T>) -> ErrorCode {
    let r = env.into_outcome().expect_err("must be refused");
    r.code.expect("a refusal carries a code")
}

/// Waits until nobody answers `subject` (a stopped function), for up to 5 s.
async fn wait_gone(w: &World, subject: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match w.request(subject, b"x").await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => return,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("{subject} still answers: {other:?}"),
        }
    }
}

async fn assert_nothing_answers(w: &World, subject: &str) {
    let err = w.request(subject, b"x").await.expect_err("nothing runs");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

/// A world whose node trusts `issuers` only.
async fn world_trusting(issuers: &[&Upstream], extra: &str) -> World {
    let keys: Vec<String> = issuers.iter().map(|u| u.issuer.public_key()).collect();
    World::start_with_config(&format!(
        r#"{{"valid_issuers": {}{extra}}}"#,
        serde_json::to_string(&keys).unwrap()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_027_and_03_deploys_run_and_their_stops_remove_them() {
    let u = Upstream::new();
    let w = world_trusting(&[&u], "").await;
    let s = setup(&w, "upstream-fn").await;

    // 0.2.7: the name only as the token's `sub`, the hash only in the token.
    let run = deploy(&w, &deploy_027(&u, &s, "up027", "up.old", &s.hash))
        .await
        .into_outcome()
        .expect("the 0.2.7 deploy runs");
    assert!(run.started);
    assert_eq!(run.name, "up027");
    // No id in the request: the id is the token's `sub`, which 0.2.7 makes the name.
    assert_eq!(run.id, "up027");
    assert_eq!(run.issuer, u.issuer.public_key());
    assert_eq!(w.call("up.old", b"a").await, b"upstream:a");

    // 0.3: an id, the name in the request and under `nats`, `hash: null`.
    let id = "5b0c8f6e-2f4e-4c1a-9a57-0d2f0c1e9b11";
    let run = deploy(&w, &deploy_03(&u, &s, id, "up03", "up.new", &s.hash))
        .await
        .into_outcome()
        .expect("the 0.3 deploy runs");
    assert_eq!((run.id.as_str(), run.name.as_str()), (id, "up03"));
    assert_eq!(w.call("up.new", b"b").await, b"upstream:b");

    // Both are listed as they run.
    let info = w.control().info(&w.node.node_id).await.unwrap();
    assert!(info.machines.iter().any(|m| m.workload.name == "up027"));
    assert!(info.machines.iter().any(|m| m.workload.name == "up03"));

    // 0.2.7's stop: `sub` is the name (which its deploy's id is), `target_node`. Sent in the
    // second of the deploy or not, its `jti` may equal the deploy token's: still accepted once.
    let stopped = stop(
        &w,
        &StopRequest027 {
            workload_id: "up027",
            workload_jwt: generic_claims(&u.issuer, "up027", serde_json::Map::new(), None, None),
            target_node: &s.node,
        },
    )
    .await
    .into_outcome()
    .expect("the 0.2.7 stop is accepted");
    assert!(stopped.stopped);
    wait_gone(&w, "up.old").await;
    assert_eq!(w.call("up.new", b"c").await, b"upstream:c");

    // 0.3's stop: `sub` is the workload id, `node_id`.
    let stopped = stop(
        &w,
        &StopRequest03 {
            node_id: &s.node,
            workload_id: id,
            workload_jwt: generic_claims(&u.issuer, id, serde_json::Map::new(), None, None),
        },
    )
    .await
    .into_outcome()
    .expect("the 0.3 stop is accepted");
    assert_eq!(stopped.id, id);
    wait_gone(&w, "up.new").await;
    let info = w.control().info(&w.node.node_id).await.unwrap();
    assert!(
        info.machines
            .iter()
            .all(|m| m.workload.name != "up027" && m.workload.name != "up03")
    );
}

/// The id the node gave workload `name`.
async fn run_id_of(w: &World, name: &str) -> String {
    let info = w.control().info(&w.node.node_id).await.unwrap();
    info.machines
        .iter()
        .find(|m| m.workload.name == name)
        .map(|m| m.id.clone())
        .unwrap_or_else(|| panic!("{name} is not running"))
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_requests_failing_a_check_are_refused_by_kind_and_nothing_runs() {
    let (u, other) = (Upstream::new(), Upstream::new());
    let w = world_trusting(&[&u, &other], "").await;
    let s = setup(&w, "upstream-checks").await;
    let good = deploy_027(&u, &s, "keeper", "up.keep", &s.hash);
    deploy(&w, &good).await.into_outcome().expect("runs");

    let with_token = |token: String, subject: &str| DeployRequest027 {
        workload_jwt: Some(token),
        trigger_subjects: vec![subject.into()],
        ..good.clone()
    };
    let cases: Vec<(&str, DeployRequest027, ErrorCode)> = vec![
        (
            // Signed by another key than the trusted issuer it claims.
            "forged",
            with_token(
                generic_claims(
                    &KeyPair::new_account(),
                    "forged",
                    deploy_data(&s.hash, None),
                    Some(&u.issuer.public_key()),
                    None,
                ),
                "up.forged",
            ),
            ErrorCode::Unauthorized,
        ),
        (
            "untrusted",
            with_token(
                generic_claims(
                    &KeyPair::new_account(),
                    "untrusted",
                    deploy_data(&s.hash, None),
                    None,
                    None,
                ),
                "up.untrusted",
            ),
            ErrorCode::Unauthorized,
        ),
        (
            "expired",
            with_token(
                generic_claims(
                    &u.issuer,
                    "expired",
                    deploy_data(&s.hash, None),
                    None,
                    Some(now() - 600),
                ),
                "up.expired",
            ),
            ErrorCode::Unauthorized,
        ),
        (
            // `Checksum("")`: no hash anywhere.
            "nohash",
            with_token(
                generic_claims(&u.issuer, "nohash", deploy_data("", None), None, None),
                "up.nohash",
            ),
            ErrorCode::BadRequest,
        ),
        (
            // Upstream devrun's placeholder, on a node that verifies (the default).
            "placeholder",
            with_token(
                generic_claims(
                    &u.issuer,
                    "placeholder",
                    deploy_data(nex_proto::upstream::UPSTREAM_DEVRUN_HASH, None),
                    None,
                    None,
                ),
                "up.placeholder",
            ),
            ErrorCode::BadRequest,
        ),
        (
            // Signed for another artifact than the one at the location.
            "mishashed",
            with_token(
                generic_claims(
                    &u.issuer,
                    "mishashed",
                    deploy_data(&"ab".repeat(32), None),
                    None,
                    None,
                ),
                "up.mishashed",
            ),
            ErrorCode::Artifact,
        ),
    ];
    for (what, req, code) in cases {
        assert_eq!(refused(deploy(&w, &req).await), code, "{what}");
        assert_nothing_answers(&w, &req.trigger_subjects[0]).await;
    }

    // A replayed deploy: the same bytes again.
    let replay = deploy_027(&u, &s, "once", "up.once", &s.hash);
    deploy(&w, &replay).await.into_outcome().expect("first use");
    assert_eq!(
        refused(deploy(&w, &replay).await),
        ErrorCode::Unauthorized,
        "replay"
    );

    // Unknown fields are still refused.
    let mut unknown =
        serde_json::to_value(deploy_027(&u, &s, "unknown", "up.unknown", &s.hash)).unwrap();
    unknown["bogus"] = true.into();
    assert_eq!(refused(deploy(&w, &unknown).await), ErrorCode::BadRequest);
    assert_nothing_answers(&w, "up.unknown").await;

    // Stops: a deploy token (it signs a hash) is no stop token; another trusted issuer may not
    // stop this one's workload.
    let keeper = run_id_of(&w, "keeper").await;
    let as_stop = StopRequest027 {
        workload_id: &keeper,
        workload_jwt: generic_claims(&u.issuer, "keeper", deploy_data(&s.hash, None), None, None),
        target_node: &s.node,
    };
    assert_eq!(refused(stop(&w, &as_stop).await), ErrorCode::Unauthorized);
    let foreign = StopRequest027 {
        workload_id: &keeper,
        workload_jwt: generic_claims(&other.issuer, "keeper", serde_json::Map::new(), None, None),
        target_node: &s.node,
    };
    assert_eq!(refused(stop(&w, &foreign).await), ErrorCode::Forbidden);

    // The node kept serving throughout.
    assert_eq!(w.call("up.keep", b"k").await, b"upstream:k");
    assert_eq!(w.call("up.once", b"o").await, b"upstream:o");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_devrun_placeholder_hash_runs_only_where_the_node_allows_it() {
    let u = Upstream::new();
    let w = world_trusting(&[&u], r#", "allow_upstream_devrun_hash": true"#).await;
    let s = setup(&w, "upstream-dev").await;
    let req = deploy_03(
        &u,
        &s,
        "devrun-1",
        "devfn",
        "up.dev",
        nex_proto::upstream::UPSTREAM_DEVRUN_HASH,
    );
    let run = deploy(&w, &req)
        .await
        .into_outcome()
        .expect("a development node runs it");
    assert_eq!(run.name, "devfn");
    assert_eq!(w.call("up.dev", b"d").await, b"upstream:d");
    // The node records the artifact's real hash, not the placeholder.
    let info = w.control().info(&w.node.node_id).await.unwrap();
    let m = info
        .machines
        .iter()
        .find(|m| m.workload.name == "devfn")
        .unwrap();
    assert_eq!(m.workload.hash, s.hash);
}
