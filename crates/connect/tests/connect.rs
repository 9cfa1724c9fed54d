//! `nex_connect::connect` against real nats-server processes that require user/password, a
//! token or an nkey, and servers that are down or start late.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::ConnectErrorKind;
use futures::StreamExt;
use nex_connect::{ConnectSpec, Error, Reconnect, connect};
use nex_test_support::{NatsServer, Options};

/// A server started with `config` (nats-server syntax) as its config file.
fn server_with(config: &str) -> (NatsServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config).unwrap();
    let server = NatsServer::start(Options {
        extra_args: vec!["-c".into(), path.to_str().unwrap().into()],
        ..Default::default()
    })
    .expect("nats-server starts");
    (server, dir)
}

/// A URL on a port where nothing listens.
fn dead_url() -> String {
    format!("nats://127.0.0.1:{}", free_port())
}

fn free_port() -> u16 {
    nex_embedded_nats::free_port().unwrap()
}

/// Proves the connection works: a round trip through the server.
async fn round_trip(client: &async_nats::Client) {
    let mut sub = client.subscribe("auth.probe").await.unwrap();
    client.publish("auth.probe", "hi".into()).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message back")
        .expect("subscription open");
    assert_eq!(&m.payload[..], b"hi");
}

fn spec(servers: &[&str]) -> ConnectSpec {
    ConnectSpec::new(servers.iter().copied())
}

fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect {
            kind: ConnectErrorKind::AuthorizationViolation,
            ..
        }
    )
}

#[tokio::test]
async fn user_and_password_in_the_url_or_as_fields() {
    // A password with characters that must be percent-encoded in a URL.
    let (server, _dir) = server_with("authorization { user: alice, password: \"p@ss:w/rd,1\" }\n");
    let port = server.port();
    let url = format!("nats://alice:p%40ss%3Aw%2Frd%2C1@127.0.0.1:{port}");
    round_trip(&connect(&spec(&[&url]), "t").await.unwrap()).await;

    let fields = ConnectSpec {
        user: Some("alice".into()),
        password: Some("p@ss:w/rd,1".into()),
        ..spec(&[&server.url()])
    };
    round_trip(&connect(&fields, "t").await.unwrap()).await;

    let none = connect(&spec(&[&server.url()]), "t").await.unwrap_err();
    assert!(refused(&none), "{none:?}");

    let wrong = format!("nats://alice:hunter2-wrong@127.0.0.1:{port}");
    let e = connect(&spec(&[&wrong]), "t").await.unwrap_err();
    assert!(refused(&e), "{e:?}");
    let all = format!("{e} {e:?} {:?}", std::error::Error::source(&e));
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("alice:***@"), "{all}");
}

#[tokio::test]
async fn token_in_the_url_or_as_a_field() {
    let (server, _dir) = server_with("authorization { token: \"s3cr3t/tok\" }\n");
    let url = format!("nats://s3cr3t%2Ftok@127.0.0.1:{}", server.port());
    round_trip(&connect(&spec(&[&url]), "t").await.unwrap()).await;
    let field = ConnectSpec {
        token: Some("s3cr3t/tok".into()),
        ..spec(&[&server.url()])
    };
    round_trip(&connect(&field, "t").await.unwrap()).await;
    let wrong = ConnectSpec {
        token: Some("nope".into()),
        ..spec(&[&server.url()])
    };
    assert!(refused(&connect(&wrong, "t").await.unwrap_err()));
}

#[tokio::test]
async fn nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let (server, dir) = server_with(&format!(
        "authorization {{ users: [ {{ nkey: {} }} ] }}\n",
        user.public_key()
    ));
    let seed: PathBuf = dir.path().join("user.nk");
    std::fs::write(&seed, format!("{}\n", user.seed().unwrap())).unwrap();
    let with_seed = ConnectSpec {
        nkey: Some(seed.clone()),
        ..spec(&[&server.url()])
    };
    round_trip(&connect(&with_seed, "t").await.unwrap()).await;

    let other = nkeys::KeyPair::new_user();
    std::fs::write(&seed, other.seed().unwrap()).unwrap();
    assert!(refused(&connect(&with_seed, "t").await.unwrap_err()));
}

#[tokio::test]
async fn a_list_whose_first_server_is_down() {
    let server = nex_test_support::nats();
    let started = Instant::now();
    let client = connect(&spec(&[&dead_url(), &dead_url(), &server.url()]), "t")
        .await
        .unwrap();
    round_trip(&client).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Bounded: nothing listening is an error at once, naming the servers.
    let e = connect(&spec(&[&dead_url()]), "t").await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Connect {
                kind: ConnectErrorKind::Io | ConnectErrorKind::TimedOut,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn forever_waits_for_a_late_server_but_not_for_refused_credentials() {
    let port = free_port();
    let forever = ConnectSpec {
        reconnect: Reconnect::Forever,
        ..spec(&[&format!("nats://127.0.0.1:{port}")])
    };
    let waiting = tokio::spawn(async move { connect(&forever, "t").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "gave up while no server listened");
    let _server = NatsServer::start(Options {
        port: Some(port),
        ..Default::default()
    })
    .unwrap();
    let client = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("connected once the server was up")
        .unwrap()
        .unwrap();
    round_trip(&client).await;

    let (server, _dir) = server_with("authorization { token: right }\n");
    let wrong = ConnectSpec {
        reconnect: Reconnect::Forever,
        token: Some("wrong".into()),
        ..spec(&[&server.url()])
    };
    let e = tokio::time::timeout(Duration::from_secs(10), connect(&wrong, "t"))
        .await
        .expect("refused credentials end the wait")
        .unwrap_err();
    assert!(refused(&e), "{e:?}");
}
