//! Tenants sharing a node: two issuers with their own keys and namespaces (`a` and `b`). Each
//! test is one hole of issue 17 (bucket names, subject ownership, reply subjects, artifact
//! locations, deny-list wildcards, reserved triggers) attacked the way the attack pass did, and
//! each ends with the victim's function still answering.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use nex_client::NexClient;
use nex_client::keys::SenderKeys;
use nex_proto::control::{DeployRequest, RunResponse};
use nex_proto::names;
use nex_test_support::{NatsServer, Options, guest};

use crate::bad_input::devrun_err;
use crate::harness::*;

/// One tenant: its own issuer key and namespace.
struct Tenant {
    keys: std::sync::Arc<SenderKeys>,
    nex: NexClient,
    _dir: tempfile::TempDir,
}

impl Tenant {
    fn new(w: &World, namespace: &str) -> Tenant {
        let dir = tempfile::tempdir().unwrap();
        let keys = std::sync::Arc::new(SenderKeys::load_or_create(dir.path()).unwrap());
        Tenant {
            nex: NexClient::new(w.client.clone(), namespace, Duration::from_secs(10))
                .with_keys(keys.clone()),
            keys,
            _dir: dir,
        }
    }

    /// Uploads `file` to this namespace's place in `NEXCLIFILES` and deploys it as `name`.
    async fn deploy(
        &self,
        w: &World,
        name: &str,
        file: &Path,
        triggers: &[&str],
    ) -> Result<RunResponse, String> {
        let bytes = std::fs::read(file).unwrap();
        let location = self.nex.upload_artifact(name, &bytes).await.unwrap();
        self.deploy_at(
            w,
            name,
            file,
            &location,
            &nex_client::sha256_hex(&bytes),
            triggers,
        )
        .await
    }

    /// Deploys the artifact at `location`, claiming it has `hash`, signed by this tenant.
    async fn deploy_at(
        &self,
        w: &World,
        name: &str,
        file: &Path,
        location: &str,
        hash: &str,
        triggers: &[&str],
    ) -> Result<RunResponse, String> {
        let wasm = file.extension().is_some_and(|e| e == "wasm");
        let mut req = DeployRequest {
            workload_name: name.into(),
            workload_type: if wasm { "wasm" } else { "javascript" }.into(),
            location: location.into(),
            hash: hash.into(),
            trigger_subjects: triggers.iter().map(|s| s.to_string()).collect(),
            target_node: Some(w.node.node_id.clone()),
            ..Default::default()
        };
        self.keys.sign_deploy(&mut req).unwrap();
        self.nex
            .deploy(&w.node.node_id, &req)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Hole 3: namespace `a` with function `b_c` and namespace `a_b` with function `c` used to share
/// the bucket `hs_a_b_c_kv`.
#[tokio::test(flavor = "multi_thread")]
async fn bucket_names_cannot_collide() {
    let w = World::start().await;
    w.devrun(
        &example("kv-counter.js"),
        &["h3.one"],
        &["--name", "b_c", "--namespace", "a"],
    );
    w.devrun(
        &example("kv-counter.js"),
        &["h3.two"],
        &["--name", "c", "--namespace", "a_b"],
    );
    assert_eq!(json(w.call("h3.one", b"").await)["count"], 1);
    assert_eq!(json(w.call("h3.one", b"").await)["count"], 2);
    let two = json(w.call("h3.two", b"").await);
    assert_eq!(two["count"], 1);
    assert_eq!(
        two["keys"],
        serde_json::json!(["h3.two"]),
        "a_b/c sees a/b_c's keys"
    );
    let one = json(w.call("h3.one", b"").await);
    assert_eq!(
        one["keys"],
        serde_json::json!(["h3.one"]),
        "a/b_c sees a_b/c's keys"
    );

    // The buckets are the ones `nex_proto::names` documents.
    let js = async_nats::jetstream::new(w.client.clone());
    let a = names::workload_buckets("a", "b_c").kv;
    let ab = names::workload_buckets("a_b", "c").kv;
    assert_eq!(
        (a.as_str(), ab.as_str()),
        ("hs_1_a_b_c_kv", "hs_3_a_b_c_kv")
    );
    let kv = js.get_key_value(a).await.unwrap();
    assert_eq!(kv.get("h3.one").await.unwrap().unwrap(), "3");
    let kv = js.get_key_value(ab).await.unwrap();
    assert_eq!(kv.get("h3.two").await.unwrap().unwrap(), "1");
}

const CONFIG: &str = r#"{
    "deny_trigger_subjects": ["secret.*", "vault.>"],
    "namespaces": {
        "shop": {"subjects": ["shop.>", "orders.*"]},
        "a": {"artifact_buckets": ["A_ARTIFACTS"]}
    }
}"#;

/// Hole 4: a function may not take another namespace's subjects as triggers: neither a space
/// the node config gives a namespace, nor (by default) a subject a workload of another namespace
/// already uses on this node.
#[tokio::test(flavor = "multi_thread")]
async fn triggers_stay_inside_their_namespace() {
    let w = World::start_with_config(CONFIG).await;
    let a = Tenant::new(&w, "a");
    let b = Tenant::new(&w, "b");
    let echo = guest("echofunction");

    // Default rule: B is first on `b.orders.new`; A may not catch it, exactly or by wildcard.
    b.deploy(&w, "orders", &echo, &["b.orders.new", "b.pay.>"])
        .await
        .expect("b deploys");
    for stolen in ["b.orders.new", "b.>", "b.*.new", "b.pay.x", "b.pay.*.y"] {
        let e = a
            .deploy(&w, "thief", &echo, &["a.mine", stolen])
            .await
            .unwrap_err();
        assert!(
            e.contains("collides with a trigger of a workload in namespace b"),
            "{stolen}: {e}"
        );
    }
    // A subject next to B's is free, and B itself may add more triggers on its own subjects.
    a.deploy(&w, "neighbour", &echo, &["b.orders.old"])
        .await
        .expect("a free subject");
    b.deploy(&w, "orders2", &echo, &["b.pay.extra"])
        .await
        .expect("own namespace");

    // The config map: `shop` owns `shop.>` and `orders.*`.
    let shop = Tenant::new(&w, "shop");
    for (who, subject) in [
        (&a, "shop.x"),
        (&a, "shop.*.new"),
        (&b, "orders.new"),
        (&b, "orders.>"),
    ] {
        let e = who.deploy(&w, "grab", &echo, &[subject]).await.unwrap_err();
        assert!(
            e.contains("which the node config gives to namespace shop"),
            "{subject}: {e}"
        );
    }
    let e = shop
        .deploy(&w, "wander", &echo, &["elsewhere"])
        .await
        .unwrap_err();
    assert!(e.contains("lies outside namespace shop's subjects"), "{e}");
    let e = shop
        .deploy(&w, "wander", &echo, &["orders.new.x"])
        .await
        .unwrap_err();
    assert!(e.contains("lies outside"), "{e}");
    shop.deploy(&w, "front", &echo, &["shop.>", "orders.new"])
        .await
        .expect("inside its space");

    // Every owner still gets its own callers.
    assert_eq!(w.call("b.orders.new", b"b:").await, b"b:b.orders.new");
    assert_eq!(w.call("shop.cart", b"s:").await, b"s:shop.cart");
    assert_eq!(w.call("b.orders.old", b"a:").await, b"a:b.orders.old");
    let info = b.nex.info(&w.node.node_id).await.unwrap();
    assert_eq!(info.machines.len(), 2, "b's workloads");
    let info = a.nex.info(&w.node.node_id).await.unwrap();
    assert_eq!(info.machines.len(), 1, "only a's neighbour");
}

/// Hole 12: the node's deny list matches with NATS wildcards on both sides.
/// Hole 17: reserved subjects (every `$` subject, `_INBOX.>`, `_R_.>`) and wildcard-led triggers
/// are refused, and a deploy has at most 32 triggers.
#[tokio::test(flavor = "multi_thread")]
async fn deny_lists_and_reserved_subjects_use_wildcard_semantics() {
    let w = World::start_with_config(CONFIG).await;
    let echo = guest("echofunction");
    for denied in ["secret.x", "secret.*", "secret.>", "vault.a.b", "vault.*"] {
        let e = devrun_err(&w, &echo, denied, &[]);
        assert!(e.contains("which this node denies"), "{denied}: {e}");
    }
    for reserved in [
        "$SRV.>",
        "$SRV.PING",
        "$MQTT.>",
        "$MQTT.sub.x",
        "$G",
        "$KV.x.y",
        "$O.x",
        "_INBOX.>",
        "_INBOX.abc",
        "_R_.>",
        "_R_.x.y",
    ] {
        let e = devrun_err(&w, &echo, reserved, &[]);
        assert!(
            e.contains("overlaps the reserved subjects"),
            "{reserved}: {e}"
        );
    }
    for wild in ["*.x", "*.>", "*", ">"] {
        let e = devrun_err(&w, &echo, wild, &[]);
        assert!(e.contains("begins with a wildcard"), "{wild}: {e}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("many.{i}")).collect();
    let mut args = vec!["devrun", echo.to_str().unwrap()];
    for s in &many {
        args.extend(["--trigger_subject", s.as_str()]);
    }
    let out = w.nex(&args);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("at most 32 trigger subjects; this one has 33"),
        "{e}"
    );
    // 32 is fine, and so are subjects next to the denied ones.
    let mut args = vec!["devrun", echo.to_str().unwrap(), "--json"];
    for s in &many[..32] {
        args.extend(["--trigger_subject", s.as_str()]);
    }
    w.nex_ok(&args);
    w.devrun(
        &echo,
        &["secret.x.y", "secret", "vault"],
        &["--name", "near"],
    );
    assert_eq!(w.call("many.31", b"m:").await, b"m:many.31");
    assert_eq!(w.call("secret.x.y", b"n:").await, b"n:secret.x.y");
}

/// Hole 6: a deploy fetches artifacts only from its own namespace's place, and a hash mismatch
/// never reveals the object's hash.
#[tokio::test(flavor = "multi_thread")]
async fn artifacts_come_only_from_the_deployers_namespace() {
    let w = World::start_with_config(CONFIG).await;
    let a = Tenant::new(&w, "a");
    let b = Tenant::new(&w, "b");
    let (_d, secret) = temp_file("secret.js", b"(s, p) => 'b secret code'");
    let secret_bytes = std::fs::read(&secret).unwrap();
    let b_hash = nex_client::sha256_hex(&secret_bytes);
    b.deploy(&w, "secret", &secret, &["b.secret"])
        .await
        .expect("b deploys");
    let b_location =
        names::artifact_location(names::DEVRUN_BUCKET, &names::artifact_key("b", "secret"));

    // A guesses the hash: refused for the location, and B's hash is not in the answer.
    let e = a
        .deploy_at(
            &w,
            "stolen",
            &secret,
            &b_location,
            &"00".repeat(32),
            &["a.stolen"],
        )
        .await
        .unwrap_err();
    assert!(e.contains("is outside namespace a"), "{e}");
    assert!(
        e.contains("nats://NEXCLIFILES/a/"),
        "the allowed prefix is named: {e}"
    );
    assert!(!e.contains(&b_hash), "b's hash leaked: {e}");
    // Knowing the hash does not help either.
    let e = a
        .deploy_at(&w, "stolen", &secret, &b_location, &b_hash, &["a.stolen"])
        .await
        .unwrap_err();
    assert!(e.contains("is outside namespace a"), "{e}");
    // Nor does a bucket the config gives another namespace, or a host-services bucket.
    for location in [
        "nats://A_ARTIFACTS/x",
        "nats://hs_1_b_secret_obj/x",
        "nats://NEXCLIFILES/secret",
    ] {
        let e = b
            .deploy_at(&w, "other", &secret, location, &b_hash, &["b.other"])
            .await
            .unwrap_err();
        assert!(e.contains("is outside namespace b"), "{location}: {e}");
    }

    // A hash mismatch in A's own place names only the hash A sent.
    let (_d2, mine) = temp_file("mine.js", b"(s, p) => 'a code'");
    let mine_bytes = std::fs::read(&mine).unwrap();
    let mine_location = a.nex.upload_artifact("mine", &mine_bytes).await.unwrap();
    let e = a
        .deploy_at(
            &w,
            "mine",
            &mine,
            &mine_location,
            &"ab".repeat(32),
            &["a.mine"],
        )
        .await
        .unwrap_err();
    assert!(
        e.contains("hash mismatch") && e.contains(&"ab".repeat(32)),
        "{e}"
    );
    assert!(
        !e.contains(&nex_client::sha256_hex(&mine_bytes)),
        "the object's hash leaked: {e}"
    );

    // A's extra bucket from the config works for A.
    let extra = a
        .nex
        .upload("A_ARTIFACTS", "mine.js", &mine_bytes)
        .await
        .unwrap();
    a.deploy_at(
        &w,
        "extra",
        &mine,
        &extra,
        &nex_client::sha256_hex(&mine_bytes),
        &["a.extra"],
    )
    .await
    .expect("a's own bucket");
    assert_eq!(w.call("a.extra", b"").await, b"a code");

    // The CLI: `nex run` with a key outside the namespace says which prefix is allowed, and
    // `nex devrun` uploads under the namespace.
    let out = w.nex(&[
        "run",
        &b_location,
        &w.node.node_id,
        "--namespace",
        "a",
        "--name",
        "stolen",
        "--type",
        "javascript",
        "--trigger_subject",
        "a.cli",
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("nats://NEXCLIFILES/a/"), "{e}");
    let out = w.nex_ok(&[
        "devrun",
        mine.to_str().unwrap(),
        "--json",
        "--namespace",
        "a",
        "--trigger_subject",
        "a.dev",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["location"]
            .as_str()
            .unwrap()
            .starts_with("nats://NEXCLIFILES/a/mine-"),
        "{v}"
    );
    assert_eq!(w.call("a.dev", b"").await, b"a code");
    assert_eq!(w.call("b.secret", b"").await, b"b secret code");
}

/// A nats-server whose user `attacker` may publish only `a.>` and subscribe only `_INBOX.>`,
/// and a node that connects without credentials as the full-permission user `node`.
async fn world_with_permissions() -> World {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        r#"
authorization {
  users = [
    { user: node, password: node-pass }
    { user: attacker, password: attacker-pass, permissions: {
        publish: { allow: ["a.>"] }
        subscribe: { allow: ["_INBOX.>"] }
    } }
  ]
}
no_auth_user: node
"#,
    )
    .unwrap();
    let nats = NatsServer::start(Options {
        extra_args: vec!["-c".into(), conf.to_str().unwrap().into()],
        ..Default::default()
    })
    .expect("nats-server with a permissions config");
    World::start_on(nats, &[]).await
}

/// Hole 5: a caller allowed only `a.>` calls its own function with a reply subject in JetStream's
/// API, hoping the node publishes the answer there with its own permissions.
#[tokio::test(flavor = "multi_thread")]
async fn reply_subjects_cannot_reach_jetstream_or_system_apis() {
    let w = world_with_permissions().await;
    let a = Tenant::new(&w, "a");
    let b = Tenant::new(&w, "b");
    b.deploy(&w, "vault", &example("kv-counter.js"), &["b.count"])
        .await
        .expect("b deploys");
    assert_eq!(json(w.call("b.count", b"").await)["count"], 1);
    let bucket = names::workload_buckets("b", "vault").kv;
    let js = async_nats::jetstream::new(w.client.clone());
    let kv = js.get_key_value(bucket.clone()).await.unwrap();
    kv.put("secret", Bytes::from_static(b"b's data"))
        .await
        .unwrap();

    // A's function answers its payload, or fails (an empty service-error answer) on "fail".
    let (_d, f) = temp_file(
        "deputy.js",
        b"(s, p) => { const t = String.fromCharCode(...p); if (t === 'fail') throw new Error('no'); return t; }",
    );
    a.deploy(&w, "deputy", &f, &["a.fn"])
        .await
        .expect("a deploys");
    let mut failed = collect(
        &w.client,
        &nex_proto::subjects::event("a", nex_proto::events::FUNCTION_EXEC_FAILED),
    )
    .await;

    let attacker = async_nats::ConnectOptions::with_user_and_password(
        "attacker".into(),
        "attacker-pass".into(),
    )
    .connect(w.nats.url())
    .await
    .unwrap();
    // Its own permissions: no JetStream API, no other tenant's subjects.
    let own = attacker
        .request("a.fn", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(&own.payload[..], b"hello");

    let write = format!("$KV.{bucket}.secret");
    let delete = format!("$JS.API.STREAM.DELETE.{}", names::kv_stream(&bucket));
    attacker
        .publish_with_reply(
            "a.fn",
            write.clone(),
            Bytes::from_static(b"overwritten by a"),
        )
        .await
        .unwrap();
    attacker
        .publish_with_reply("a.fn", delete.clone(), Bytes::from_static(b"fail"))
        .await
        .unwrap();
    attacker.flush().await.unwrap();

    // B's KV keeps its data and its stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    js.get_stream(names::kv_stream(&bucket))
        .await
        .expect("b's KV stream still exists");
    assert_eq!(kv.get("secret").await.unwrap().unwrap(), "b's data");
    // Both calls are refused before they run, each with a function_exec_failed saying why.
    for reply in [&write, &delete] {
        let ev = wait_for(&mut failed, Duration::from_secs(5), |m| {
            String::from_utf8_lossy(&m.payload).contains(reply.as_str())
        })
        .await
        .unwrap_or_else(|| panic!("no function_exec_failed for {reply}"));
        let ev: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
        assert_eq!(ev["data"]["code"], 403, "{ev}");
        assert!(
            ev["data"]["error"]
                .as_str()
                .unwrap()
                .contains("begins with `$`"),
            "{ev}"
        );
    }
    assert_eq!(json(w.call("b.count", b"").await)["count"], 2);
    // The refusals are counted on A's workload.
    let info = a.nex.info(&w.node.node_id).await.unwrap();
    assert_eq!(info.machines[0].refused_calls, 2, "{:?}", info.machines[0]);
    let own = attacker
        .request("a.fn", Bytes::from_static(b"still"))
        .await
        .unwrap();
    assert_eq!(&own.payload[..], b"still");
}
