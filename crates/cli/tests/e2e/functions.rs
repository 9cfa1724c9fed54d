//! WebAssembly functions end to end: the seed echo, several triggers, replace, stop, failures,
//! environment, agent restart.

use std::time::{Duration, Instant};

use crate::harness::*;
use nex_test_support::guest;

#[tokio::test(flavor = "multi_thread")]
async fn seed_echofunction_answers_on_every_trigger_and_stops() {
    let w = World::start().await;
    let id = w.devrun(&guest("echofunction"), &["echo", "echo.second"], &[]);
    assert_eq!(w.call("echo", b"hi").await, b"hiecho");
    assert_eq!(w.call("echo.second", b"hi").await, b"hiecho.second");
    let m = w.request("echo", b"timed").await.unwrap();
    let ns: u64 = m
        .headers
        .as_ref()
        .unwrap()
        .get(nex_proto::HEADER_RUNTIME_NS)
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    assert!(ns > 0);

    // Binary payloads pass through untouched.
    assert_eq!(w.call("echo", b"\0\xff\x01").await, b"\0\xff\x01echo");

    // Concurrent calls all get their own answer.
    let calls = (0..32).map(|i| {
        let w = &w;
        async move { (i, w.call("echo", format!("n{i}-").as_bytes()).await) }
    });
    for (i, got) in futures::future::join_all(calls).await {
        assert_eq!(got, format!("n{i}-echo").into_bytes());
    }

    // Deploying the same name again replaces it.
    let id2 = w.devrun(&guest("echofunction"), &["echo"], &[]);
    assert_ne!(id, id2);
    let info = w.control().info(&w.node.node_id).await.unwrap();
    assert_eq!(info.machines.len(), 1);
    assert_eq!(info.machines[0].id, id2);
    assert_eq!(w.call("echo", b"again").await, b"againecho");
    // The old one's second trigger is gone with it.
    assert!(w.request("echo.second", b"x").await.is_err());

    let out = w.nex_ok(&["stop", &w.node.node_id, &id2]);
    assert!(out.contains(&id2), "{out}");
    let err = w.request("echo", b"hi").await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    // Stopping it twice is a clear error.
    let again = w.nex(&["stop", &w.node.node_id, &id2]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no workload"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recycled_command_starts_every_call_from_a_fresh_state() {
    let w = World::start().await;
    w.devrun(&guest("fresh_state"), &["fresh"], &[]);
    let info = w.control().info(&w.node.node_id).await.unwrap();
    let runtime = &info.machines[0].workload.runtime;
    // Where the kernel reports dirty pages (Linux 6.7+) the agent recycles the instance.
    assert_eq!(
        runtime.contains("command, recycled"),
        nex_runtime_wasm::prepare_for_sandbox(),
        "{runtime}"
    );
    let fresh = b"calls=1 scratch=clean heap=0";
    for _ in 0..3 {
        // One after another (the reader thread's instance), then many at once (the workers').
        for _ in 0..20 {
            assert_eq!(w.call("fresh", b"0").await, fresh);
        }
        let calls = (0..64).map(|_| w.call("fresh", b"0"));
        for got in futures::future::join_all(calls).await {
            assert_eq!(got, fresh, "{}", String::from_utf8_lossy(&got));
        }
        // A call that grows the memory is not recycled; the next one is fresh all the same.
        assert_eq!(w.call("fresh", b"2").await, b"calls=1 scratch=clean heap=2");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_answer_at_once_and_the_next_call_works() {
    let w = World::start().await;
    let mut failed = collect(&w.client, "$NEX.events.default.function_exec_failed").await;
    w.devrun(&guest("trap"), &["f.trap"], &[]);
    w.devrun(&guest("exit_code"), &["f.exit"], &[]);
    w.devrun(&guest("spin"), &["f.spin"], &["--exec-timeout-ms", "300"]);

    let t = Instant::now();
    let m = w.request("f.trap", b"boom").await.unwrap();
    let (code, msg) = service_error(&m).expect("trap answers with an error");
    assert_eq!(code, "500");
    // The panic's message and place reach the caller, with the trap.
    assert!(msg.contains("trap.rs:8:9: asked to trap"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(w.call("f.trap", b"fine").await, b"fine");

    let m = w.request("f.exit", b"fail").await.unwrap();
    let (code, msg) = service_error(&m).unwrap();
    assert_eq!(code, "500");
    assert!(msg.contains("status 3"), "{msg}");
    assert_eq!(w.call("f.exit", b"ok").await, b"ok");

    let t = Instant::now();
    let m = w.request("f.spin", b"spin").await.unwrap();
    let (code, msg) = service_error(&m).unwrap();
    assert_eq!(code, "408", "{msg}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(w.call("f.spin", b"ok").await, b"ok");

    let ev = wait_for(&mut failed, Duration::from_secs(5), |m| {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        v["data"]["trigger_subject"] == "f.trap"
    })
    .await
    .expect("function_exec_failed for the trap");
    let v: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["type"], "function_exec_failed");
    assert_eq!(v["data"]["workload_name"], "trap");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_and_no_file_system() {
    let w = World::start().await;
    w.devrun(&guest("hog"), &["f.hog"], &["--memory-mb", "16"]);
    let m = w.request("f.hog", b"hog").await.unwrap();
    let (code, msg) = service_error(&m).expect("memory bomb fails");
    assert_eq!(code, "500", "{msg}");
    assert_eq!(w.call("f.hog", b"still here").await, b"still here");
    let passwd = String::from_utf8(w.call("f.hog", b"passwd").await).unwrap();
    assert!(passwd.starts_with("denied"), "{passwd}");
    let socket = String::from_utf8(w.call("f.hog", b"socket").await).unwrap();
    assert!(socket.starts_with("denied"), "{socket}");
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_is_sealed_and_visible_to_the_function() {
    let w = World::start().await;
    let mut logs = collect(&w.client, "$NEX.logs.default.*.logger.*").await;
    let path = guest("logger");
    let out = w.nex_ok(&[
        "devrun",
        path.to_str().unwrap(),
        "GREETING=hello there",
        "--trigger_subject",
        "f.env",
    ]);
    assert!(out.contains("Deployed logger"), "{out}");
    assert_eq!(w.call("f.env", b"abc").await, b"f.env|hello there");
    let v = next_log_line(&mut logs).await;
    assert_eq!(v["text"], "log line one for f.env");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_is_restarted() {
    let w = World::start().await;
    let mut events = collect(&w.client, "$NEX.events.default.>").await;
    w.devrun(&guest("echofunction"), &["f.restart"], &[]);
    assert_eq!(w.call("f.restart", b"a").await, b"af.restart");
    // The node's only child agent.
    let out = std::process::Command::new("pgrep")
        .args(["-P", &w.node.pid().to_string()])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&out.stdout).to_string();
    let pid = pids
        .lines()
        .next()
        .expect("an agent process")
        .trim()
        .to_owned();
    std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    wait_for(&mut events, Duration::from_secs(5), |m| {
        m.subject.ends_with("agent_stopped")
    })
    .await
    .expect("agent_stopped event");
    w.wait_until_answers("f.restart", b"b", b"bf.restart").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_functions_on_one_subject_both_run_replicas_share() {
    let w = World::start().await;
    let mut succeeded = collect(&w.client, "$NEX.events.default.function_exec_succeeded").await;
    w.devrun(
        &guest("echofunction"),
        &["shared.subject"],
        &["--name", "first"],
    );
    w.devrun(&guest("trap"), &["shared.subject"], &["--name", "second"]);
    w.client
        .publish("shared.subject", "x".into())
        .await
        .unwrap();
    let mut names = Vec::new();
    for _ in 0..2 {
        let m = wait_for(&mut succeeded, Duration::from_secs(5), |_| true)
            .await
            .expect("event");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        names.push(v["data"]["workload_name"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(names, ["first", "second"]);
}

/// Runs the real agent executable with a self-test flag: it applies its limits, then does what
/// a native-code escape would. The kernel must kill it with SIGSYS.
fn assert_selftest_killed(flag: &str) {
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::Command::new(NEX)
        .args(["agent", flag])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc_sigsys()), "{flag}: {status:?}");
}

#[test]
fn the_agent_seccomp_filter_kills_a_forbidden_syscall() {
    // socket()
    assert_selftest_killed("--seccomp-selftest");
}

#[test]
fn the_agent_seccomp_filter_kills_a_fork() {
    assert_selftest_killed("--fork-selftest");
}

#[test]
fn landlock_leaves_the_agent_no_files_and_seccomp_only_its_syscalls() {
    // Readable before the limits (the test runs as the same user), refused after.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), b"tenant B's data").unwrap();
    let out = std::process::Command::new(NEX)
        .args(["agent", "--read-selftest"])
        .arg(secret.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("\"landlock\": \"unavailable") {
        eprintln!("landlock is not available on this kernel; skipping: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

fn libc_sigsys() -> i32 {
    31 // SIGSYS on Linux x86_64 and aarch64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webassembly_handler_keeps_its_instance_and_survives_its_failures() {
    let w = World::start().await;
    w.devrun(
        &guest("nex_handler_fixture"),
        &["wh.>"],
        &["--exec-timeout-ms", "300", "--memory-mb", "16"],
    );
    assert_eq!(w.call("wh.echo", b"hi").await, b"hi");
    assert_eq!(w.call("wh.echo", b"\0\xff").await, b"\0\xff");
    // State lives in the instance between calls (the agent runs one instance per worker
    // thread, so the count is per instance, but it grows past one; a fresh instance per call
    // would answer 1 every time).
    let mut counts = Vec::new();
    for _ in 0..8 {
        let n = String::from_utf8(w.call("wh.count", b"").await).unwrap();
        counts.push(n.parse::<u64>().unwrap());
    }
    assert!(counts.iter().any(|&n| n > 1), "{counts:?}");

    // A returned error is a 500 with its message; a panic, a timeout and the memory limit too,
    // and each time the function answers the next call.
    for (subject, code, says) in [
        ("wh.fail", "500", "asked to fail"),
        ("wh.panic", "500", "trapped"),
        ("wh.spin", "408", "time limit"),
        ("wh.grow", "500", "memory limit of 16 MiB"),
    ] {
        let m = w.request(subject, b"").await.unwrap();
        let (got, msg) = service_error(&m).unwrap_or_default();
        assert_eq!(got, code, "{subject}: {msg}");
        assert!(msg.contains(says), "{subject}: {msg}");
        assert_eq!(w.call("wh.echo", b"still here").await, b"still here");
    }

    // Host services from a handler: a counter in the function's own bucket.
    assert_eq!(w.call("wh.kv", b"").await, b"1");
    assert_eq!(w.call("wh.kv", b"").await, b"2");
    // The bucket is the function's own (named after it); what is put there, it reads.
    async_nats::jetstream::new(w.client.clone())
        .get_key_value(nex_proto::names::workload_buckets("default", "nex_handler_fixture").kv)
        .await
        .unwrap()
        .put("k", "from outside".into())
        .await
        .unwrap();
    assert_eq!(w.call("wh.kvget", b"").await, b"from outside");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webassembly_hello_example_is_a_handler() {
    let w = World::start().await;
    w.devrun(
        &guest("wasm_hello"),
        &["hello.wasm"],
        &["--name", "hello-wasm"],
    );
    let first = String::from_utf8(w.call("hello.wasm", b"Ada").await).unwrap();
    assert!(first.starts_with("Hello, Ada! (call "), "{first}");
    let mut calls = Vec::new();
    for _ in 0..8 {
        let reply = String::from_utf8(w.call("hello.wasm", b"").await).unwrap();
        let n: u64 = reply
            .strip_prefix("Hello, world! (call ")
            .and_then(|r| r.strip_suffix(" of this instance)"))
            .unwrap_or_else(|| panic!("{reply}"))
            .parse()
            .unwrap();
        calls.push(n);
    }
    // Instances live on between calls (one per worker thread): counts go past one.
    assert!(calls.iter().any(|&n| n > 1), "{calls:?}");
}
