//! WebAssembly components (`wasm32-wasip2`) end to end: the seed echo as a command component,
//! a handler component's state in KV, traps, imports nex does not provide, malformed bytes.

use crate::harness::*;
use nex_test_support::component;

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_echo_as_a_command_component_answers_on_every_trigger() {
    let w = World::start().await;
    w.devrun(&component("echo_component"), &["echo", "echo.second"], &[]);
    assert_eq!(w.call("echo", b"hi").await, b"hiecho");
    assert_eq!(w.call("echo.second", b"hi").await, b"hiecho.second");
    let calls = (0..32).map(|i| {
        let w = &w;
        async move { (i, w.call("echo", format!("n{i}-").as_bytes()).await) }
    });
    for (i, got) in futures::future::join_all(calls).await {
        assert_eq!(got, format!("n{i}-echo").into_bytes());
    }
    let info: serde_json::Value =
        serde_json::from_str(&w.nex_ok(&["node", "info", &w.node.node_id, "--json"])).unwrap();
    assert!(info.to_string().contains("command component"), "{info}");
}
