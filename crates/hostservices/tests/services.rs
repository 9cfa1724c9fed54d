//! Every host service against a real nats-server: calls in, typed replies out, and arguments
//! that would break the node's connection refused before anything is sent.

use std::time::Duration;

use futures::StreamExt;
use nex_hostapi::{Call, ErrorKind, Reply, kv, messaging, object_store};
use nex_hostservices::{HostServices, call_encoded};

async fn connect(nats: &nex_test_support::NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url()).await.unwrap()
}

fn kind(r: nex_hostapi::CallResult) -> ErrorKind {
    r.unwrap_err().kind
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_and_object_store_round_trip_in_the_workloads_own_buckets() {
    let nats = nex_test_support::nats();
    let client = connect(&nats).await;
    let hs = HostServices::new(client.clone(), "ns", "fn");
    let get = |key: &str| Call::Kv(kv::Call::Get { key: key.into() });
    assert_eq!(hs.call(get("a.b")).await, Ok(Reply::Value(None)));
    let set = Call::Kv(kv::Call::Set {
        key: "a.b".into(),
        value: b"\0v".to_vec(),
    });
    assert_eq!(hs.call(set).await, Ok(Reply::Done));
    assert_eq!(
        hs.call(get("a.b")).await,
        Ok(Reply::Value(Some(b"\0v".to_vec())))
    );
    assert_eq!(
        hs.call(Call::Kv(kv::Call::Keys)).await,
        Ok(Reply::Keys(vec!["a.b".into()]))
    );
    let js = async_nats::jetstream::new(client.clone());
    let bucket = js.get_key_value(hs.kv_bucket()).await.unwrap();
    assert_eq!(bucket.get("a.b").await.unwrap().unwrap(), &b"\0v"[..]);
    let delete = Call::Kv(kv::Call::Delete { key: "a.b".into() });
    assert_eq!(hs.call(delete).await, Ok(Reply::Done));
    assert_eq!(hs.call(get("a.b")).await, Ok(Reply::Value(None)));

    let put = Call::ObjectStore(object_store::Call::Put {
        name: "greeting".into(),
        data: b"hello".to_vec(),
    });
    let Ok(Reply::Object(info)) = hs.call(put).await else {
        panic!("put")
    };
    assert_eq!((info.name.as_str(), info.size), ("greeting", 5));
    assert_eq!(info.bucket, hs.object_bucket());
    assert!(info.digest.is_some(), "{info:?}");
    let oget = |name: &str| Call::ObjectStore(object_store::Call::Get { name: name.into() });
    assert_eq!(
        hs.call(oget("greeting")).await,
        Ok(Reply::Value(Some(b"hello".to_vec())))
    );
    assert_eq!(hs.call(oget("nothing")).await, Ok(Reply::Value(None)));
    let Ok(Reply::Objects(list)) = hs.call(Call::ObjectStore(object_store::Call::List)).await
    else {
        panic!("list")
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "greeting");
    let odel = Call::ObjectStore(object_store::Call::Delete {
        name: "greeting".into(),
    });
    assert_eq!(hs.call(odel).await, Ok(Reply::Done));
    assert_eq!(hs.call(oget("greeting")).await, Ok(Reply::Value(None)));
}

/// Issue 17, hole 7: a 5,000-byte key and a 4,000-byte object name made nats-server close the
/// node's connection (control line too long). Now they are refused before anything is sent, and
/// the connection never drops.
#[tokio::test(flavor = "multi_thread")]
async fn long_keys_and_names_are_refused_and_the_connection_stays_up() {
    let nats = nex_test_support::nats();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(nats.url())
        .await
        .unwrap();
    let hs = HostServices::new(client.clone(), "ns", "fn");
    // The buckets exist first, so the bad calls are the only traffic that could hurt.
    let ok = Call::Kv(kv::Call::Set {
        key: "k".into(),
        value: b"1".to_vec(),
    });
    hs.call(ok).await.unwrap();
    client.flush().await.unwrap();
    while let Ok(e) = events.try_recv() {
        assert_eq!(e, "connected");
    }
    let long_key = "k".repeat(5000);
    let long_name = "n".repeat(4000);
    for _ in 0..20 {
        let set = Call::Kv(kv::Call::Set {
            key: long_key.clone(),
            value: b"x".to_vec(),
        });
        assert_eq!(kind(hs.call(set).await), ErrorKind::InvalidArgument);
        let get = Call::Kv(kv::Call::Get {
            key: long_key.clone(),
        });
        assert_eq!(kind(hs.call(get).await), ErrorKind::InvalidArgument);
        let put = Call::ObjectStore(object_store::Call::Put {
            name: long_name.clone(),
            data: b"x".to_vec(),
        });
        assert_eq!(kind(hs.call(put).await), ErrorKind::InvalidArgument);
    }
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen.is_empty(), "connection events: {seen:?}");
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    let get = Call::Kv(kv::Call::Get { key: "k".into() });
    assert_eq!(hs.call(get).await, Ok(Reply::Value(Some(b"1".to_vec()))));
}

#[tokio::test(flavor = "multi_thread")]
async fn messaging_reaches_real_subscribers_and_refuses_reserved_subjects() {
    let nats = nex_test_support::nats();
    let client = connect(&nats).await;
    let hs = HostServices::new(client.clone(), "ns", "fn");
    let mut published = client.subscribe("out.x").await.unwrap();
    let mut inbox = client.subscribe("_INBOX.>").await.unwrap();
    let mut service = client.subscribe("svc").await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r.clone(), "one".into()).await;
                let _ = responder.publish(r, "two".into()).await;
            }
        }
    });
    client.flush().await.unwrap();

    let publish = |s: &str| {
        Call::Messaging(messaging::Call::Publish {
            subject: s.into(),
            payload: b"p".to_vec(),
        })
    };
    assert_eq!(hs.call(publish("out.x")).await, Ok(Reply::Done));
    let m = tokio::time::timeout(Duration::from_secs(5), published.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"p");

    let request = Call::Messaging(messaging::Call::Request {
        subject: "svc".into(),
        payload: vec![],
        timeout_ms: Some(2000),
    });
    assert_eq!(hs.call(request).await, Ok(Reply::Message(b"one".to_vec())));
    let many = Call::Messaging(messaging::Call::RequestMany {
        subject: "svc".into(),
        payload: vec![],
        timeout_ms: Some(2000),
        max: Some(5),
    });
    assert_eq!(
        hs.call(many).await,
        Ok(Reply::Messages(vec![b"one".to_vec(), b"two".to_vec()]))
    );
    let nobody = Call::Messaging(messaging::Call::Request {
        subject: "nobody.home".into(),
        payload: vec![],
        timeout_ms: Some(300),
    });
    let e = hs.call(nobody).await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e:?}"
    );

    // Issue 17, hole 15: nothing reaches another requester's inbox, or any reserved subject.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), inbox.next()).await {}
    for s in ["_INBOX.x", "_R_.x", "$ANYTHING.x", "$KV.b.k", "a.*", "a.>"] {
        assert_eq!(
            kind(hs.call(publish(s)).await),
            ErrorKind::InvalidArgument,
            "{s}"
        );
    }
    client.flush().await.unwrap();
    let leaked = tokio::time::timeout(Duration::from_millis(300), inbox.next()).await;
    assert!(leaked.is_err(), "a publish reached an inbox: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_calls_in_encoded_results_out_and_garbage_is_an_invalid_argument() {
    let nats = nex_test_support::nats();
    let hs = HostServices::new(connect(&nats).await, "ns", "fn");
    let call = nex_hostapi::encode_call(&Call::Kv(kv::Call::Get { key: "none".into() }));
    let out = nex_hostapi::decode_result(&call_encoded(&hs, &call).await).unwrap();
    assert_eq!(out, Ok(Reply::Value(None)));
    for garbage in [&[][..], &[0xff], &[0, 0, 200, 1]] {
        let out = nex_hostapi::decode_result(&call_encoded(&hs, garbage).await).unwrap();
        assert_eq!(kind(out), ErrorKind::InvalidArgument);
    }
}

/// Sets a key and puts an object, so both buckets exist.
async fn put(hs: &HostServices) {
    let set = Call::Kv(kv::Call::Set {
        key: "k".into(),
        value: b"v".to_vec(),
    });
    assert_eq!(hs.call(set).await, Ok(Reply::Done));
    let obj = Call::ObjectStore(object_store::Call::Put {
        name: "o".into(),
        data: b"x".to_vec(),
    });
    assert!(hs.call(obj).await.is_ok());
}

/// Replicas of the stream `name`.
async fn replicas_of(js: &async_nats::jetstream::Context, name: &str) -> usize {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .num_replicas
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_get_three_copies_on_a_cluster_one_alone_or_what_the_node_says_and_one_copy_is_raised()
 {
    let cluster = nex_test_support::NatsCluster::start().unwrap();
    let client = async_nats::connect(cluster.url(0)).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let auto = HostServices::new(client.clone(), "ns", "auto");
    put(&auto).await;
    assert_eq!(
        replicas_of(&js, &format!("KV_{}", auto.kv_bucket())).await,
        3
    );
    assert_eq!(
        replicas_of(&js, &format!("OBJ_{}", auto.object_bucket())).await,
        3
    );
    let two = HostServices::with_replicas(
        client.clone(),
        "ns",
        "two",
        nex_connect::Replicas::exactly(2).unwrap(),
    );
    put(&two).await;
    assert_eq!(
        replicas_of(&js, &format!("KV_{}", two.kv_bucket())).await,
        2
    );
    // Buckets made with one copy (by older versions) get three on first use.
    let one = nex_connect::Replicas::exactly(1).unwrap();
    put(&HostServices::with_replicas(
        client.clone(),
        "ns",
        "old",
        one,
    ))
    .await;
    let old = HostServices::new(client.clone(), "ns", "old");
    assert_eq!(
        replicas_of(&js, &format!("KV_{}", old.kv_bucket())).await,
        1
    );
    put(&old).await;
    assert_eq!(
        replicas_of(&js, &format!("KV_{}", old.kv_bucket())).await,
        3
    );
    assert_eq!(
        replicas_of(&js, &format!("OBJ_{}", old.object_bucket())).await,
        3
    );

    let nats = nex_test_support::nats();
    let client = connect(&nats).await;
    let js = async_nats::jetstream::new(client.clone());
    let alone = HostServices::new(client, "ns", "alone");
    put(&alone).await;
    assert_eq!(
        replicas_of(&js, &format!("KV_{}", alone.kv_bucket())).await,
        1
    );
}
