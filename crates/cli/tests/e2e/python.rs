//! Python functions end to end: `nex devrun app.py` builds `guests/python/echo/app.py` with
//! componentize-py (installed by `scripts/ensure-tools`) into a handler component, the node
//! compiles and runs it, directly and as a deployment record (`--replicas`). One build serves
//! every call; the syntax-error case builds once more (the tool finds the error only when it
//! runs the module), and the missing-tool case builds nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

fn app() -> std::path::PathBuf {
    nex_test_support::repo_root().join("guests/python/echo/app.py")
}

/// The `--json` error a failed CLI run printed on stderr.
fn json_error(out: &std::process::Output) -> serde_json::Value {
    assert!(!out.status.success(), "nex should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON error on stderr: {stderr}"));
    serde_json::from_str::<serde_json::Value>(line).unwrap()["error"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_function_echoes_counts_in_its_bucket_and_keeps_its_instance() {
    let w = World::start().await;
    let mut logs = collect(&w.client, "$NEX.logs.default.*.app.*").await;
    let started = Instant::now();
    // One worker, so one instance: its own count of calls shows when it is kept.
    w.devrun(&app(), &["pyecho"], &["--max-concurrency", "1"]);
    let first = started.elapsed();

    assert_eq!(w.call("pyecho", b"hi").await, b"hipyecho");
    for n in 1..=3 {
        assert_eq!(
            w.call("pyecho", b"count").await,
            format!("count={n}").into_bytes()
        );
    }
    let line = next_log_line(&mut logs).await;
    assert_eq!(line["text"], "app: count 1 on pyecho", "{line}");
    assert_eq!(w.call("pyecho", b"hits").await, b"hits=1");
    assert_eq!(w.call("pyecho", b"hits").await, b"hits=2");
    assert_eq!(w.call("pyecho", b"calls").await, b"calls=7");

    // Refused input is a 400 and keeps the instance; an exception is a 500 with the Python
    // error, and the next call gets a fresh instance.
    let m = w.request("pyecho", b"bad").await.unwrap();
    let (code, message) = service_error(&m).expect("a service error");
    assert_eq!(code, "400", "{message}");
    assert!(message.contains("bad is not a command"), "{message}");
    assert_eq!(w.call("pyecho", b"calls").await, b"calls=9");
    let m = w.request("pyecho", b"boom").await.unwrap();
    let (code, message) = service_error(&m).expect("a service error");
    assert_eq!(code, "500", "{message}");
    assert!(
        message.contains("ValueError: asked to fail") && message.contains("app.py"),
        "{message}"
    );
    assert_eq!(w.call("pyecho", b"calls").await, b"calls=1");
    assert_eq!(w.call("pyecho", b"count").await, b"count=4");

    // A quick latency sample for docs/python.md (not a benchmark).
    let mut took = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        w.call("pyecho", b"x").await;
        took.push(t.elapsed());
    }
    took.sort();
    let rss = nex_test_support::rss_kib(w.agent_pid("app")).unwrap_or(0);

    // Deployed again: the build comes from the client's cache and the compiled component from
    // the node's, so the artifact (and its hash) is the same and the load is quick.
    let started = Instant::now();
    w.devrun(&app(), &["pyecho"], &[]);
    let again = started.elapsed();
    assert_eq!(w.call("pyecho", b"count").await, b"count=5");
    let cache = w.home.path().join(".nex/cache/python");
    let built: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(built.len(), 1, "one cached build: {built:?}");
    let size = built[0].metadata().unwrap().len();
    eprintln!(
        "python: first devrun (build, upload, compile) {first:.1?}; again (cached) {again:.1?}; \
         component {:.1} MiB; echo p50 {:?} p90 {:?}; agent RSS {} MiB",
        size as f64 / (1 << 20) as f64,
        took[took.len() / 2],
        took[took.len() * 9 / 10],
        rss / 1024
    );
    assert!(
        again < Duration::from_secs(10),
        "a cached build and compile took {again:?}"
    );

    // As a deployment record (`--replicas`): the same build, placed and loaded by the node.
    let app = app();
    w.nex_ok(&[
        "devrun",
        app.to_str().unwrap(),
        "--replicas",
        "1",
        "--name",
        "pyrep",
        "--trigger_subject",
        "pyrep",
    ]);
    assert_eq!(w.call("pyrep", b"hi").await, b"hipyrep");
    assert_eq!(w.call("pyrep", b"count").await, b"count=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_syntax_error_is_refused_at_build_and_nothing_is_deployed() {
    let w = World::start().await;
    let (_dir, bad) = temp_file(
        "broken.py",
        b"import wit_world\n\nclass WitWorld(wit_world.WitWorld):\n    def handle(self, subject, payload)\n        return payload\n",
    );
    let out = w.nex(&[
        "devrun",
        bad.to_str().unwrap(),
        "--trigger_subject",
        "broken",
        "--json",
    ]);
    let e = json_error(&out);
    assert_eq!(e["code"], "python_build_failed", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("SyntaxError") && text.contains("broken.py, line 4"),
        "{text}"
    );
    // Nothing was uploaded or deployed.
    let running = w.control().workload_ping(None).await.unwrap();
    assert!(
        running.iter().all(|r| r.running_machines.is_empty()),
        "{running:?}"
    );
    assert!(w.request("broken", b"x").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_componentize_py_devrun_says_how_to_install_it() {
    let nats = nex_test_support::nats();
    let home = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(NEX)
        .args(["devrun", app().to_str().unwrap(), "--trigger_subject", "py"])
        .args(["--json", "-s", &nats.url()])
        .env("HOME", home.path())
        .env("PATH", empty.path())
        .env_remove("NEX_HOME")
        .env_remove("NATS_URL")
        .output()
        .unwrap();
    let e = json_error(&out);
    assert_eq!(e["code"], "python_tool_missing", "{e}");
    assert!(
        e.to_string()
            .contains("pip install componentize-py==0.25.1"),
        "{e}"
    );
}
