//! Bad input gets a clear error envelope and the node keeps serving everything else.

use std::time::Duration;

use bytes::Bytes;
use nex_proto::control::{DeployRequest, Envelope, RunResponse};

use crate::harness::*;
use nex_test_support::guest;

pub(crate) async fn deploy_raw(w: &World, body: Bytes) -> Envelope<RunResponse> {
    let subject = nex_proto::subjects::deploy("default", &w.node.node_id);
    let req = async_nats::Request::new()
        .payload(body)
        .timeout(Some(Duration::from_secs(10)));
    let m = w
        .client
        .send_request(subject, req)
        .await
        .expect("node answers");
    serde_json::from_slice(&m.payload).expect("an envelope")
}

/// Signs `req` as `nex devrun` would, so the node gets past the signature to the point tested.
pub(crate) fn signed(w: &World, req: &DeployRequest) -> DeployRequest {
    let mut req = req.clone();
    w.keys().sign_deploy(&mut req).unwrap();
    req
}

pub(crate) async fn deploy_err(w: &World, req: &DeployRequest) -> String {
    let env = deploy_raw(w, Bytes::from(serde_json::to_vec(&signed(w, req)).unwrap())).await;
    env.into_result().expect_err("deploy must fail")
}

pub(crate) fn devrun_err(
    w: &World,
    file: &std::path::Path,
    subject: &str,
    extra: &[&str],
) -> String {
    let mut args = vec![
        "devrun",
        file.to_str().unwrap(),
        "--trigger_subject",
        subject,
    ];
    args.extend_from_slice(extra);
    let out = w.nex(&args);
    assert!(!out.status.success(), "devrun {file:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_deploys_are_refused_clearly_and_nothing_else_breaks() {
    let w = World::start().await;
    w.devrun(&guest("echofunction"), &["good"], &[]);

    let (_d1, not_wasm) = temp_file("notwasm.wasm", b"#!/bin/sh\necho hi\n");
    let e = devrun_err(&w, &not_wasm, "bad1", &[]);
    assert!(e.contains("not a WebAssembly module"), "{e}");

    let (_d2, no_start) = temp_file("nostart.wasm", b"\0asm\x01\0\0\0");
    let e = devrun_err(&w, &no_start, "bad2", &[]);
    assert!(e.contains("_start"), "{e}");

    let (_d3, js_bad) = temp_file("broken.js", b"(subject, payload) => {");
    let e = devrun_err(&w, &js_bad, "bad3", &[]);
    assert!(e.contains("SyntaxError"), "{e}");

    for reserved in ["$NEX.steal", "$JS.API.>", "$SYS.x", ">"] {
        let e = devrun_err(&w, &guest("echofunction"), reserved, &[]);
        assert!(
            e.contains("overlaps") || e.contains("every subject"),
            "{reserved}: {e}"
        );
    }

    // Straight to the control subject: wrong hash, unknown type, missing object, malformed JSON.
    let location = w
        .control()
        .upload_artifact(
            "echo-direct",
            &std::fs::read(guest("echofunction")).unwrap(),
        )
        .await
        .unwrap();
    let good = DeployRequest {
        workload_name: "direct".into(),
        workload_type: "wasm".into(),
        location: location.clone(),
        hash: nex_client::sha256_hex(&std::fs::read(guest("echofunction")).unwrap()),
        trigger_subjects: vec!["direct".into()],
        ..Default::default()
    };
    let e = deploy_err(
        &w,
        &DeployRequest {
            hash: "00".repeat(32),
            ..good.clone()
        },
    )
    .await;
    assert!(e.contains("hash mismatch"), "{e}");
    let e = deploy_err(
        &w,
        &DeployRequest {
            workload_type: "elf".into(),
            ..good.clone()
        },
    )
    .await;
    assert!(e.contains("unknown workload type `elf`"), "{e}");
    let e = deploy_err(
        &w,
        &DeployRequest {
            location: "nats://NEXCLIFILES/default/missing".into(),
            ..good.clone()
        },
    )
    .await;
    assert!(e.contains("not found"), "{e}");
    let e = deploy_err(
        &w,
        &DeployRequest {
            workload_name: "bad name!".into(),
            ..good.clone()
        },
    )
    .await;
    assert!(e.contains("workload name"), "{e}");
    let e = deploy_err(
        &w,
        &DeployRequest {
            location: "file:///etc/passwd".into(),
            ..good.clone()
        },
    )
    .await;
    assert!(e.contains("file://"), "{e}");

    for garbage in [
        &b"{not json"[..],
        b"",
        b"\xff\xfe\x00garbage",
        b"[]",
        br#"{"workload_name": 5}"#,
    ] {
        let env = deploy_raw(&w, Bytes::copy_from_slice(garbage)).await;
        let e = env.into_result().expect_err("garbage refused");
        assert!(e.contains("deploy request"), "{e}");
    }
    let e = deploy_raw(
        &w,
        Bytes::from(r#"{"workload_name":"a","type":"wasm","location":"x","surprise":1}"#),
    )
    .await;
    assert!(e.into_result().unwrap_err().contains("surprise"));

    // Garbage on every control subject gets an answer or silence, never a crash.
    for subject in [
        "$NEX.PING".to_owned(),
        "$NEX.AUCTION".to_owned(),
        nex_proto::subjects::stop("default", &w.node.node_id),
        nex_proto::subjects::info("default", &w.node.node_id),
        "$NEX.WPING.default.nothing".to_owned(),
    ] {
        let req = async_nats::Request::new()
            .payload(Bytes::from_static(b"\x00\x01{{{"))
            .timeout(Some(Duration::from_millis(500)));
        let _ = w.client.send_request(subject, req).await;
    }

    // The good one was never disturbed, and a correct direct deploy works.
    assert_eq!(w.call("good", b"still ").await, b"still good");
    let env = deploy_raw(
        &w,
        Bytes::from(serde_json::to_vec(&signed(&w, &good)).unwrap()),
    )
    .await;
    env.into_result().expect("good direct deploy");
    assert_eq!(w.call("direct", b"d").await, b"ddirect");
    let ls: serde_json::Value = serde_json::from_str(&w.nex_ok(&["node", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["running_machines"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_payloads_get_413() {
    let w = World::start().await;
    w.devrun(
        &guest("echofunction"),
        &["small"],
        &["--max-payload-bytes", "8"],
    );
    let m = w
        .request("small", b"way more than eight bytes")
        .await
        .unwrap();
    let (code, msg) = service_error(&m).unwrap();
    assert_eq!(code, "413");
    assert!(msg.contains("limit"), "{msg}");
    assert_eq!(w.call("small", b"tiny").await, b"tinysmall");
}
