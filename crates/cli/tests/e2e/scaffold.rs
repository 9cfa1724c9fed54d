//! Starting a function (issue 21): `nex new` for each template, whose own `test.sh` then builds
//! and checks it on a real node, and `nex devrun --watch` redeploying on save.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Runs `dir/test.sh` with this world's `nex` on `PATH` and its server in `NATS_URL`; its
/// stdout, insisting it succeeds.
fn run_test_sh(w: &World, dir: &Path, target_dir: &Path) -> String {
    let bin = Path::new(NEX).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(dir.join("test.sh"))
        .env("PATH", path)
        .env("NATS_URL", w.nats.url())
        .env("HOME", w.home.path())
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("NEX_HOME")
        // The outer build's settings are for the host's test build, not for the template.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("run test.sh");
    assert!(
        out.status.success(),
        "{}/test.sh failed:\nstdout: {}\nstderr: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_template_builds_deploys_and_passes_its_own_test() {
    let w = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The guests' target directory: the component template's wit-bindgen for wasm32-wasip2 is
    // already built there (same version, features and profile as the guests').
    let target = nex_test_support::component("echofunction")
        .ancestors()
        .nth(3)
        .unwrap()
        .to_owned();
    for (template, name, expect) in [
        ("js", "hello-js", "ok: Hello, nex!"),
        ("ts", "hello-ts", "ok: Hello, nex!"),
        ("rust", "hello-rs", "ok: Hello, nex!"),
        (
            "rust-handler",
            "hello-handler",
            "ok: Hello, nex! (greeting 2, call 2 of this instance)",
        ),
        (
            "component",
            "hello-component",
            "ok: Hello, nex! (greeting 1)",
        ),
    ] {
        let made = dir.path().join(name);
        let out = w.nex_ok(&["new", template, name, "--dir", made.to_str().unwrap()]);
        assert!(out.contains("nex devrun"), "{out}");
        assert!(made.join("README.md").is_file());
        let said = run_test_sh(&w, &made, &target);
        assert!(said.contains(expect), "{template}: {said}");
        // The test copy is stopped afterwards.
        let info = json(
            w.nex_ok(&["node", "info", &w.node.node_id, "--json"])
                .into_bytes(),
        );
        let copies = info["machines"].as_array().unwrap().iter();
        let test_name = format!("{name}-test");
        assert_eq!(
            copies
                .filter(|m| m["workload"]["name"] == test_name.as_str())
                .count(),
            0
        );
    }
    // A name that is taken is refused, and what is there stays.
    let again = w.nex(&[
        "new",
        "js",
        "hello-js",
        "--dir",
        dir.path().join("hello-js").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// Calls `subject` until it answers `expect`, for up to 15 s.
async fn until_reply(w: &World, subject: &str, expect: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(m) = w.request(subject, b"").await
            && m.payload == expect
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{subject} never answered {expect:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn devrun_watch_redeploys_on_save_and_survives_a_broken_save() {
    let w = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("watched.js");
    std::fs::write(&file, "(subject, payload) => 'v1'").unwrap();
    let mut watcher = tokio::process::Command::new(NEX)
        .args([
            "devrun",
            "--watch",
            file.to_str().unwrap(),
            "--trigger_subject",
            "watched",
        ])
        .args(["-s", &w.nats.url()])
        .env("HOME", w.home.path())
        .env_remove("NATS_URL")
        .env_remove("NEX_HOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_reply(&w, "watched", b"v1").await;

    std::fs::write(&file, "(subject, payload) => 'v2'").unwrap();
    until_reply(&w, "watched", b"v2").await;

    // A save that does not parse is reported; the last good version keeps answering.
    std::fs::write(&file, "(subject, payload) => {").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.call("watched", b"").await, b"v2");

    std::fs::write(&file, "(subject, payload) => 'v3'").unwrap();
    until_reply(&w, "watched", b"v3").await;

    // One workload of that name, not one per save.
    let info = json(
        w.nex_ok(&["node", "info", &w.node.node_id, "--json"])
            .into_bytes(),
    );
    let named = info["machines"].as_array().unwrap().iter();
    assert_eq!(
        named.filter(|m| m["workload"]["name"] == "watched").count(),
        1,
        "{info}"
    );

    watcher.start_kill().unwrap();
    let out = watcher.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("watching"), "{stderr}");
    assert!(
        stderr.contains("error"),
        "the broken save is reported: {stderr}"
    );
}
