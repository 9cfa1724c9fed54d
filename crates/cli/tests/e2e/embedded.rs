//! `nex node up` with no server: the embedded nats-server, and a clear error without one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::NEX;

#[tokio::test(flavor = "multi_thread")]
async fn node_up_starts_and_stops_an_embedded_server() {
    let port = nex_embedded_nats::free_port().unwrap();
    let store = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(NEX)
        .args([
            "node",
            "up",
            "--json",
            "--nats-port",
            &port.to_string(),
            "--store-dir",
        ])
        .arg(store.path())
        .env("HOME", home.path())
        .env_remove("NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(v["nats_url"], format!("nats://127.0.0.1:{port}"));

    // A client can reach the node through the embedded server, with JetStream on.
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let nex = nex_client::NexClient::new(client.clone(), "default", Duration::from_secs(3));
    let nodes = nex.ping().await.unwrap();
    assert_eq!(nodes.len(), 1);
    nex.upload("probe", "k", b"v")
        .await
        .expect("JetStream object store works");
    assert!(store.path().join("jetstream").exists());
    drop(client);

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node did not exit on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        !nex_embedded_nats::is_listening(port),
        "embedded server still running"
    );
}

#[test]
fn node_up_without_nats_server_says_how_to_install_it() {
    let port = nex_embedded_nats::free_port().unwrap();
    let out = Command::new(NEX)
        .args(["node", "up", "--nats-port", &port.to_string()])
        .env("NEX_NATS_SERVER", "/nonexistent/nats-server")
        .env_remove("NATS_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install nats-server"), "{err}");
}
