//! Signed control plane: unsigned, forged, untrusted, mismatched, stale and replayed deploy
//! tokens are refused with a clear error; only the deploying issuer may stop a workload. After
//! every refusal the running function still answers.

use bytes::Bytes;
use nex_client::keys::SenderKeys;
use nex_proto::control::{DeployRequest, StopRequest, StopResponse};
use nex_test_support::guest;

use crate::bad_input::{deploy_raw, devrun_err, signed};
use crate::harness::*;

async fn echo_request(w: &World, name: &str, subject: &str) -> DeployRequest {
    let bytes = std::fs::read(guest("echofunction")).unwrap();
    let location = w.control().upload_artifact(name, &bytes).await.unwrap();
    DeployRequest {
        workload_name: name.into(),
        workload_type: "wasm".into(),
        location,
        hash: nex_client::sha256_hex(&bytes),
        trigger_subjects: vec![subject.into()],
        ..Default::default()
    }
}

async fn deploy_refused(w: &World, req: &DeployRequest) -> String {
    deploy_raw(w, Bytes::from(serde_json::to_vec(req).unwrap()))
        .await
        .into_result()
        .expect_err("deploy must be refused")
}

async fn stop_raw(w: &World, req: &StopRequest) -> Result<StopResponse, String> {
    let m = w
        .client
        .request(
            nex_proto::subjects::stop("default", &w.node.node_id),
            Bytes::from(serde_json::to_vec(req).unwrap()),
        )
        .await
        .unwrap();
    serde_json::from_slice::<nex_proto::control::Envelope<StopResponse>>(&m.payload)
        .unwrap()
        .into_result()
}

fn other_issuer() -> SenderKeys {
    let dir = tempfile::tempdir().unwrap();
    SenderKeys::load_or_create(dir.path()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_tokens_are_verified_and_used_once() {
    let w = World::start().await;
    let id = w.devrun(&guest("echofunction"), &["sec.good"], &[]);
    let req = echo_request(&w, "sec", "sec.x").await;

    // Unsigned.
    let e = deploy_refused(&w, &req).await;
    assert!(e.contains("not signed"), "{e}");

    // Forged: a token signed by one key that claims to come from another.
    let mut forged = signed(&w, &req);
    let mut claims = nex_jwt::verify(forged.workload_jwt.as_deref().unwrap()).unwrap();
    claims.jti = "forged".into();
    forged.workload_jwt = Some(nex_jwt::encode(&nkeys::KeyPair::new_account(), &claims).unwrap());
    let e = deploy_refused(&w, &forged).await;
    assert!(e.contains("signature does not verify"), "{e}");

    // Garbage token.
    let e = deploy_refused(
        &w,
        &DeployRequest {
            workload_jwt: Some("not.a.jwt".into()),
            ..req.clone()
        },
    )
    .await;
    assert!(e.contains("malformed"), "{e}");

    // Signed for another artifact, name or id than the request carries.
    let mut wrong_hash = signed(&w, &req);
    wrong_hash.hash = "00".repeat(32);
    let e = deploy_refused(&w, &wrong_hash).await;
    assert!(e.contains("artifact hash"), "{e}");
    let mut wrong_name = signed(&w, &req);
    wrong_name.workload_name = "other".into();
    let e = deploy_refused(&w, &wrong_name).await;
    assert!(e.contains("its name"), "{e}");
    let mut wrong_id = signed(&w, &req);
    wrong_id.id = Some("someoneelse".into());
    let e = deploy_refused(&w, &wrong_id).await;
    assert!(e.contains("workload id"), "{e}");

    // A stop token is not a deploy token.
    let mut as_stop = req.clone();
    as_stop.id = Some("abc".into());
    as_stop.workload_jwt = Some(w.keys().stop_token("abc").unwrap());
    let e = deploy_refused(&w, &as_stop).await;
    assert!(e.contains("not a deploy token"), "{e}");

    // Stale: issued an hour ago.
    let keys = w.keys();
    let mut stale = req.clone();
    stale.id = Some("stale".into());
    let mut c = nex_jwt::verify(
        &nex_jwt::issue(
            &keys.issuer,
            "stale",
            "sec",
            &req.hash,
            nex_jwt::Operation::Deploy,
        )
        .unwrap(),
    )
    .unwrap();
    c.iat -= 3600;
    stale.workload_jwt = Some(nex_jwt::encode(&keys.issuer, &c).unwrap());
    let e = deploy_refused(&w, &stale).await;
    assert!(e.contains("issued 3600 s ago"), "{e}");

    // A correct one works once; the same request again is a replay.
    let good = signed(&w, &req);
    deploy_raw(&w, Bytes::from(serde_json::to_vec(&good).unwrap()))
        .await
        .into_result()
        .expect("signed deploy");
    assert_eq!(w.call("sec.x", b"a").await, b"asec.x");
    let e = deploy_refused(&w, &good).await;
    assert!(e.contains("already used"), "{e}");

    // Through it all the first function kept answering.
    assert_eq!(w.call("sec.good", b"b").await, b"bsec.good");
    assert!(!id.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_deploying_issuer_may_stop() {
    let w = World::start().await;
    let id = w.devrun(&guest("echofunction"), &["owned"], &[]);

    let unsigned = StopRequest {
        workload_id: id.clone(),
        ..Default::default()
    };
    let e = stop_raw(&w, &unsigned).await.unwrap_err();
    assert!(e.contains("not signed"), "{e}");

    let intruder = other_issuer();
    let e = w
        .control()
        .stop(&intruder, &w.node.node_id, &id)
        .await
        .unwrap_err();
    assert_eq!(
        refusal_code(&e),
        Some(nex_proto::control::ErrorCode::Forbidden),
        "{e}"
    );
    assert_eq!(w.call("owned", b"x").await, b"xowned");

    // The owner, but in another namespace: that namespace has no such workload.
    let out = w.nex(&["stop", "--namespace", "other", &w.node.node_id, &id]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("no workload"), "{e}");
    let pings = w.control().workload_ping(None).await.unwrap();
    assert!(
        pings
            .iter()
            .any(|p| p.running_machines.iter().any(|m| m.id == id))
    );
    let other_ns =
        nex_client::NexClient::new(w.client.clone(), "other", std::time::Duration::from_secs(2));
    let pings = other_ns.workload_ping(None).await.unwrap_or_default();
    assert!(
        !pings
            .iter()
            .any(|p| p.running_machines.iter().any(|m| m.id == id))
    );
    assert_eq!(w.call("owned", b"x").await, b"xowned");

    // A stop token for another workload does not stop this one.
    let wrong = StopRequest {
        workload_id: id.clone(),
        workload_jwt: Some(w.keys().stop_token("another").unwrap()),
        ..Default::default()
    };
    let e = stop_raw(&w, &wrong).await.unwrap_err();
    assert!(e.contains("not a stop token for workload"), "{e}");

    // The owner's stop works, and its token cannot be used again.
    let token = w.keys().stop_token(&id).unwrap();
    let good = StopRequest {
        workload_id: id.clone(),
        workload_jwt: Some(token),
        ..Default::default()
    };
    stop_raw(&w, &good).await.expect("owner stops");
    assert!(w.request("owned", b"x").await.is_err());
    let e = stop_raw(&w, &good).await.unwrap_err();
    assert!(e.contains("no workload"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_issuers_are_refused() {
    let trusted = other_issuer();
    let w = World::start_with_config(&format!(
        r#"{{"valid_issuers": ["{}"]}}"#,
        trusted.issuer.public_key()
    ))
    .await;
    // A tenant outside `valid_issuers` (the world's own key is the node's operator, always
    // trusted).
    let out = w.nex_as(
        &Tenant::new(),
        &[
            "devrun",
            guest("echofunction").to_str().unwrap(),
            "--trigger_subject",
            "untrusted",
        ],
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("is not trusted by this node"), "{e}");

    let mut req = echo_request(&w, "trusted", "trusted").await;
    trusted.sign_deploy(&mut req).unwrap();
    deploy_raw(&w, Bytes::from(serde_json::to_vec(&req).unwrap()))
        .await
        .into_result()
        .expect("trusted issuer deploys");
    assert_eq!(w.call("trusted", b"t").await, b"ttrusted");
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_has_no_ambient_authority_and_runaways_are_contained() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "probe.js",
        br#"async (subject, payload) => {
  const mode = String.fromCharCode(...payload);
  if (mode === 'recurse') { const f = (n) => f(n + 1) + 1; return f(0); }
  if (mode === 'alloc') { const a = []; while (true) a.push('x'.repeat(1 << 20) + a.length); }
  const probe = {};
  for (const name of ['require', 'std', 'os', 'fetch', 'XMLHttpRequest', 'WebSocket', 'Deno', 'scriptArgs'])
    probe[name] = typeof globalThis[name];
  for (const m of ['os', 'std', 'fs', 'node:fs']) {
    try { await import(m); probe['import ' + m] = 'loaded'; } catch (e) { probe['import ' + m] = 'refused'; }
  }
  return probe;
}"#,
    );
    w.devrun(&path, &["js.probe"], &["--exec-timeout-ms", "2000"]);
    let probe: serde_json::Value =
        serde_json::from_slice(&w.call("js.probe", b"probe").await).unwrap();
    // `fetch` exists, and goes only through the node's HTTP host service and its policy
    // (javascript::fetch_*); nothing else reaches the network.
    assert_eq!(probe["fetch"], "function", "{probe}");
    for name in [
        "require",
        "std",
        "os",
        "XMLHttpRequest",
        "WebSocket",
        "Deno",
        "scriptArgs",
    ] {
        assert_eq!(probe[name], "undefined", "{name}: {probe}");
    }
    for m in ["os", "std", "fs", "node:fs"] {
        assert_eq!(probe[format!("import {m}")], "refused", "{m}: {probe}");
    }
    for (mode, expect) in [("recurse", "stack"), ("alloc", "memory")] {
        let m = w.request("js.probe", mode.as_bytes()).await.unwrap();
        let (code, msg) = service_error(&m).unwrap_or_else(|| panic!("{mode} must fail"));
        assert_eq!(code, "500", "{mode}: {msg}");
        assert!(msg.to_lowercase().contains(expect), "{mode}: {msg}");
        // The same agent keeps serving.
        assert!(w.call("js.probe", b"probe").await.starts_with(b"{"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_json_and_garbage_on_control_subjects_leave_the_node_serving() {
    let w = World::start().await;
    w.devrun(&guest("echofunction"), &["still.here"], &[]);
    let deep = Bytes::from(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    let deep_obj = Bytes::from(format!(
        "{}1{}",
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    ));
    for body in [deep.clone(), deep_obj.clone()] {
        let e = deploy_raw(&w, body).await.into_result().unwrap_err();
        assert!(e.contains("deploy request"), "{e}");
    }
    for subject in [
        "$NEX.PING".to_owned(),
        "$NEX.AUCTION".to_owned(),
        nex_proto::subjects::stop("default", &w.node.node_id),
        nex_proto::subjects::info("default", &w.node.node_id),
        nex_proto::subjects::lameduck("nobody"),
        "$NEX.WPING.default.nothing".to_owned(),
    ] {
        for body in [
            deep.clone(),
            deep_obj.clone(),
            Bytes::from(vec![0xffu8; 70_000]),
        ] {
            let req = async_nats::Request::new()
                .payload(body)
                .timeout(Some(std::time::Duration::from_millis(500)));
            let _ = w.client.send_request(subject.clone(), req).await;
        }
    }
    assert_eq!(w.call("still.here", b"x").await, b"xstill.here");
    let ls: serde_json::Value = serde_json::from_str(&w.nex_ok(&["node", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["running_machines"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_above_the_node_limit_are_refused() {
    let w = World::start_with_config(r#"{"node_limits": {"max_workload_bytes": 4096}}"#).await;
    let (_d, small) = temp_file("small.js", b"(s, p) => 'small'");
    w.devrun(&small, &["small"], &[]);
    let e = devrun_err(&w, &guest("echofunction"), "big", &[]);
    assert!(e.contains("above this node's limit of 4096 bytes"), "{e}");
    assert_eq!(w.call("small", b"").await, b"small");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_native_code_escape_is_killed_and_the_workload_restarts() {
    // The test hook makes the agent call socket() when the payload is "escape!": a stand-in for
    // tenant code that broke out of the language sandbox.
    let w = World::start_with(&["--test-escape-payload", "escape!"]).await;
    let mut stopped = collect(&w.client, "$NEX.events.default.agent_stopped").await;
    w.devrun(&guest("echofunction"), &["esc"], &[]);
    let (_d, other) = temp_file("other.js", b"(s, p) => 'other'");
    w.devrun(&other, &["esc.other"], &[]);

    let m = w.request("esc", b"escape!").await.unwrap();
    let (code, msg) = service_error(&m).expect("the caller learns the call failed");
    assert_eq!(code, "503", "{msg}");
    let ev = wait_for(&mut stopped, std::time::Duration::from_secs(5), |_| true)
        .await
        .expect("agent_stopped event");
    let ev: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
    // Killed by SIGSYS (31): exit status 128 + 31.
    assert_eq!(ev["data"]["code"], 159, "{ev}");
    assert_eq!(w.call("esc.other", b"").await, b"other");
    w.wait_until_answers("esc", b"x", b"xesc").await;
}
