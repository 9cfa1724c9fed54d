//! A CLI that guides: errors a script can read (`--json`), next steps in errors, workloads
//! stopped by name, node and workload ids by unique prefix.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::*;
use nex_test_support::{NodeProcess, guest};

/// The one JSON error object `nex --json` wrote to stderr (`{"error": {...}}`), insisting the
/// command failed.
fn json_error(out: &Output) -> serde_json::Value {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("error").is_some())
        .collect();
    assert_eq!(errors.len(), 1, "one JSON error on stderr: {stderr}");
    let e = errors[0]["error"].clone();
    assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    assert!(e["causes"].is_array(), "{e}");
    e
}

fn nex_without_world(home: &Path, args: &[&str]) -> Output {
    Command::new(NEX)
        .args(args)
        .env("HOME", home)
        .env_remove("NATS_URL")
        .env_remove("NEX_HOME")
        .output()
        .unwrap()
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn without_a_server_the_error_says_how_to_start_one() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", closed_port());
    let out = nex_without_world(home.path(), &["node", "ls", "--json", "-s", &url]);
    let e = json_error(&out);
    assert_eq!(e["code"], "connection_failed", "{e}");
    assert!(e["hint"].as_str().unwrap().contains("nex node up"), "{e}");

    let out = nex_without_world(home.path(), &["node", "ls", "-s", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot connect to NATS"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  hint: ") && stderr.contains("nex node up"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_command_line_is_a_json_error_too() {
    let home = tempfile::tempdir().unwrap();
    let out = nex_without_world(home.path(), &["--json", "stop"]);
    assert_eq!(out.status.code(), Some(2));
    let e = json_error(&out);
    assert_eq!(e["code"], "usage", "{e}");
    // Help still prints as help.
    let help = nex_without_world(home.path(), &["--json", "stop", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage"));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_stable_codes_and_next_steps() {
    let w = World::start().await;

    // Nothing listens on the subject.
    let e = json_error(&w.nex(&["req", "nobody.listens", "--json"]));
    assert_eq!(e["code"], "no_responders", "{e}");
    assert!(
        e["hint"].as_str().unwrap().contains("nex node probe"),
        "{e}"
    );

    // An unknown node: the nodes that do answer are listed.
    let e = json_error(&w.nex(&["node", "info", "NNOTANODE", "--json"]));
    assert_eq!(e["code"], "not_found", "{e}");
    let said = format!("{} {}", e["message"], e["causes"]);
    assert!(said.contains(&w.node.node_id), "{e}");

    // The node's refusal keeps its code: stopping a workload that does not exist.
    let e = json_error(&w.nex(&["stop", &w.node.node_id, "0123456789abcdefghijkl", "--json"]));
    assert_eq!(e["code"], "not_found", "{e}");

    // The human form ends with the hint.
    let out = w.nex(&["node", "info", "NNOTANODE"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no node matches `NNOTANODE`"), "{stderr}");
    assert!(stderr.contains("  hint: `nex node ls`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_by_name_and_ids_by_unique_prefix() {
    let w = World::start().await;
    // A unique prefix of the node id, in any case.
    let prefix = w.node.node_id[..6].to_ascii_lowercase();
    let info = w.nex_ok(&["node", "info", &prefix]);
    assert!(info.contains(&w.node.node_id), "{info}");

    let a = w.devrun(&guest("echofunction"), &["echo.a"], &["--name", "echo-a"]);
    let b = w.devrun(
        &guest("echofunction"),
        &["echo.b"],
        &["--name", "echo-b", "--node", &prefix],
    );
    assert_eq!(w.call("echo.a", b"x").await, b"xecho.a");
    assert_eq!(w.call("echo.b", b"x").await, b"xecho.b");
    // The runtime column docs/webassembly.md describes.
    let info = w.nex_ok(&["node", "info", &prefix]);
    assert!(
        info.contains("RUNTIME") && info.contains("(wasi preview 1, command"),
        "{info}"
    );

    // By name, wherever it runs.
    let out = w.nex_ok(&["stop", "echo-a"]);
    assert!(out.contains(&a), "{out}");
    let err = w.request("echo.a", b"x").await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    // Gone: the error names what does run.
    let e = json_error(&w.nex(&["stop", "echo-a", "--json"]));
    assert_eq!(e["code"], "not_found", "{e}");
    assert!(e["message"].as_str().unwrap().contains("echo-b"), "{e}");

    // By a unique prefix of its id, on a node given by a prefix.
    let out = w.nex_ok(&["stop", &prefix, &b[..8], "--json"]);
    let stopped: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stopped["id"], b.as_str(), "{out}");
    assert!(w.request("echo.b", b"x").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_by_name_stops_every_replica() {
    let w = World::start().await;
    let second = NodeProcess::start(Path::new(NEX), &w.nats.url(), w.home.path(), &[]).unwrap();
    for node in [&w.node.node_id, &second.node_id] {
        w.devrun(
            &guest("echofunction"),
            &["echo.r"],
            &["--name", "echo-r", "--node", node],
        );
    }
    let out = w.nex_ok(&["stop", "echo-r", "--json"]);
    let stopped: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stopped.as_array().map(Vec::len), Some(2), "{out}");
    let err = w.request("echo.r", b"x").await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_show_a_bar_on_a_terminal_only() {
    let w = World::start().await;
    // A JavaScript echo padded past the size that gets a bar.
    let mut js = b"(subject, payload) => payload\n".to_vec();
    js.extend(std::iter::repeat_n(b"// padding\n".as_slice(), 200_000).flatten());
    let (_dir, file) = temp_file("big.js", &js);
    let file = file.to_str().unwrap();

    // In a pipe (as every test runs the CLI): no bar.
    let piped = w.nex(&["devrun", file, "--trigger_subject", "big.pipe"]);
    assert!(piped.status.success(), "{piped:?}");
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("uploading"));

    // On a terminal (`script` gives the command a pty): a bar that reaches 100%.
    let on_terminal = |extra: &str| {
        let line = format!(
            "{NEX} devrun {file} --trigger_subject big.tty --name big-tty -s {} {extra}",
            w.nats.url()
        );
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("HOME", w.home.path())
            .env_remove("NATS_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_terminal("");
    assert!(
        shown.contains("uploading big.js [") && shown.contains("100%"),
        "{shown}"
    );
    // With --json, none even there.
    let shown = on_terminal("--json");
    assert!(!shown.contains("uploading"), "{shown}");
    assert_eq!(w.call("big.tty", b"hi").await, b"hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_ends_logs_quietly() {
    let w = World::start().await;
    let mut child = Command::new(NEX)
        .args(["logs", "-s", &w.nats.url()])
        .env("HOME", w.home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    w.devrun(&example("echo.js"), &["quiet.echo"], &[]);
    let _ = w.call("quiet.echo", b"x").await;
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.trim().is_empty(), "Ctrl-C printed: {rest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_auctions_get_upstream_answers() {
    let w = World::start().await;
    // Go's architecture names, in any case.
    let go_arch = match std::env::consts::ARCH {
        "x86_64" => "AMD64",
        "aarch64" => "Arm64",
        other => other,
    };
    let bids = w
        .control()
        .auction(&nex_proto::control::AuctionRequest {
            arch: Some(go_arch.into()),
            os: Some(std::env::consts::OS.to_ascii_uppercase()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bids.len(), 1, "{go_arch}");
    // A type nex does not run (upstream's CLI default): silence, not an error reply.
    let req = async_nats::Request::new()
        .payload(bytes::Bytes::from_static(
            br#"{"workload_types":["native"]}"#,
        ))
        .timeout(Some(std::time::Duration::from_millis(500)));
    let err = w
        .client
        .send_request("$NEX.AUCTION".to_owned(), req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::TimedOut);
}
