//! JavaScript functions end to end: the seed echo, console logs, errors, limits.

use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn seed_js_echo_returns_raw_bytes_and_logs_the_subject() {
    let w = World::start().await;
    let mut logs = collect(&w.client, "$NEX.logs.default.*.echo.*").await;
    let echo = nex_test_support::repo_root().join("examples/echo.js");
    w.devrun(&echo, &["js.echo"], &[]);
    assert_eq!(w.call("js.echo", b"hi\x00\xff").await, b"hi\x00\xff");
    let v = next_log_line(&mut logs).await;
    assert_eq!(v["text"], "js.echo");
    assert_eq!(v["level"], "info");
}

#[tokio::test(flavor = "multi_thread")]
async fn js_errors_and_runaway_code_answer_at_once() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "moody.js",
        br#"async (subject, payload) => {
  const text = String.fromCharCode(...payload);
  if (text === 'throw') throw new Error('moody says no');
  if (text === 'loop') { while (true) {} }
  if (text === 'json') return { subject, n: payload.length };
  return 'ok:' + text;
}"#,
    );
    w.devrun(&path, &["js.moody"], &["--exec-timeout-ms", "300"]);
    assert_eq!(w.call("js.moody", b"x").await, b"ok:x");
    assert_eq!(
        w.call("js.moody", b"json").await,
        br#"{"subject":"js.moody","n":4}"#
    );
    let m = w.request("js.moody", b"throw").await.unwrap();
    let (code, msg) = service_error(&m).unwrap();
    assert_eq!(code, "500");
    assert!(msg.contains("moody says no"), "{msg}");
    let t = Instant::now();
    let m = w.request("js.moody", b"loop").await.unwrap();
    let (code, _) = service_error(&m).unwrap();
    assert_eq!(code, "408");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(w.call("js.moody", b"after").await, b"ok:after");
}

#[tokio::test(flavor = "multi_thread")]
async fn loading_code_may_log_and_call_host_services() {
    // A Lambda-style init phase: top-level code runs once per instance, before the first call.
    let w = World::start().await;
    let mut logs = collect(&w.client, "$NEX.logs.default.*.init-phase.*").await;
    let (_d, path) = temp_file(
        "init-phase.js",
        br#"(() => {
  console.log('loading');
  hostServices.kv.set('boot', 'ready');
  const boot = String.fromCharCode(...hostServices.kv.get('boot'));
  return (subject, payload) => boot + ':' + String.fromCharCode(...payload);
})()"#,
    );
    w.devrun(&path, &["js.init"], &[]);
    assert_eq!(w.call("js.init", b"x").await, b"ready:x");
    let v = next_log_line(&mut logs).await;
    assert_eq!(v["text"], "loading");
}

/// Issue 20, first part: the Web platform globals a Workers or Deno user writes first, inside the
/// sandboxed agent (randomness comes through the seccomp allow list), and `this.env` in the arrow
/// form every doc uses.
#[tokio::test(flavor = "multi_thread")]
async fn web_platform_globals_work_in_the_sandbox() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "web.js",
        br#"async (subject, payload) => {
  const text = new TextDecoder().decode(payload);
  const slept = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 20));
  this.hostServices.kv.set('last', new TextEncoder().encode(text.toUpperCase()));
  const stored = new TextDecoder('utf-8', { fatal: true }).decode(this.hostServices.kv.get('last'));
  return JSON.stringify({
    stored,
    b64: btoa(text.length + ':' + subject),
    back: atob(btoa('x')),
    uuid: crypto.randomUUID(),
    random: crypto.getRandomValues(new Uint8Array(16)).some((b) => b !== 0),
    region: this.env.REGION,
    clock: performance.now() - slept >= 20,
    query: new URL('/p?q=' + encodeURIComponent(text), 'https://h.example').searchParams.get('q'),
  });
}"#,
    );
    let out = w.nex_ok(&[
        "devrun",
        path.to_str().unwrap(),
        "REGION=eu-west",
        "--trigger_subject",
        "js.web",
    ]);
    assert!(out.contains("Deployed"), "{out}");
    let v: serde_json::Value =
        serde_json::from_slice(&w.call("js.web", "héllo".as_bytes()).await).unwrap();
    assert_eq!(v["stored"], "HÉLLO");
    assert_eq!(v["b64"], "NTpqcy53ZWI=");
    assert_eq!(v["back"], "x");
    assert_eq!(v["uuid"].as_str().unwrap().len(), 36);
    assert_eq!(v["random"], true);
    assert_eq!(v["region"], "eu-west");
    assert_eq!(v["clock"], true);
    assert_eq!(v["query"], "héllo");
    let again: serde_json::Value = serde_json::from_slice(&w.call("js.web", b"x").await).unwrap();
    assert_ne!(again["uuid"], v["uuid"]);
}
