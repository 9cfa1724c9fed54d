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

/// Issue 20, second part: fetch through the node's HTTP host service against a real server on
/// loopback (opened by the node's policy), with `Headers`, `Request`, `Response`,
/// `AbortController`, `FormData`, `structuredClone` and streaming `TextDecoder` in the sandbox; a
/// denied address rejects with a `TypeError` and the function goes on; a timeout signal cuts a
/// slow exchange short.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_reaches_a_local_server_and_a_denied_host_is_a_type_error() {
    let (w, base) = World::with_local_http().await;
    let (_d, path) = temp_file(
        "fetcher.js",
        br#"async (subject, payload) => {
  const base = new TextDecoder().decode(payload);
  const headers = new Headers({ 'X-Key': 'k1' });
  headers.append('x-key', 'k2');
  const r = await fetch(base + '/items?x=1', { method: 'POST', headers, body: JSON.stringify({ a: 1 }) });
  const seen = await r.json();
  const put = await fetch(new Request(base + '/raw', { method: 'PUT', body: new Uint8Array([104, 105]) }));
  const form = await (await fetch(base + '/form', { method: 'POST', body: new URLSearchParams({ q: 'a b' }) })).json();
  const out = { status: r.status, ok: r.ok, statusText: r.statusText, served: r.headers.get('X-Served-By'),
    line: seen.line, key: seen.key, type: seen.type, body: seen.body, put: (await put.json()).body,
    form: [form.type, form.body], used: r.bodyUsed };
  try { await fetch('http://10.1.2.3/secret'); out.denied = 'no error'; }
  catch (e) { out.denied = e.name + ': ' + e.message; }
  const c = new AbortController(); c.abort();
  out.aborted = await fetch(base, { signal: c.signal }).then(() => 'fetched', (e) => e.name);
  const t0 = performance.now();
  out.cut = await fetch(base + '/slow', { signal: AbortSignal.timeout(300) }).then(() => 'fetched', (e) => e.name);
  out.cutMs = performance.now() - t0;
  const fd = new FormData(); fd.append('q', 'a b'); fd.append('f', new File(['file-bytes'], 'f.txt', { type: 'text/plain' }));
  const multi = await (await fetch(base + '/multi', { method: 'POST', body: fd })).json();
  const parsed = await new Response(multi.body, { headers: { 'content-type': multi.type } }).formData();
  out.multi = [multi.type.startsWith('multipart/form-data; boundary='), parsed.get('q'), parsed.get('f').name, await parsed.get('f').text()];
  const clone = structuredClone({ m: new Map([['k', [1]]]) });
  out.clone = clone.m.get('k')[0];
  const d = new TextDecoder();
  out.stream = d.decode(new Uint8Array([0xe2, 0x9c]), { stream: true }) + d.decode(new Uint8Array([0x93]));
  out.made = await Response.json({ made: true }).json();
  return out;
}"#,
    );
    w.devrun(&path, &["js.fetch"], &[]);
    for _ in 0..2 {
        let v = json(w.call("js.fetch", base.as_bytes()).await);
        assert_eq!(v["status"], 201, "{v}");
        assert_eq!(v["ok"], true);
        assert_eq!(v["statusText"], "Created");
        assert_eq!(v["served"], "test");
        assert_eq!(v["line"], "POST /items?x=1 HTTP/1.1");
        assert_eq!(v["key"], "k1, k2");
        assert_eq!(v["type"], "text/plain;charset=UTF-8");
        assert_eq!(v["body"], r#"{"a":1}"#);
        assert_eq!(v["put"], "hi");
        assert_eq!(
            v["form"],
            serde_json::json!(["application/x-www-form-urlencoded;charset=UTF-8", "q=a+b"])
        );
        assert_eq!(v["used"], true);
        let denied = v["denied"].as_str().unwrap();
        assert!(
            denied.starts_with("TypeError: fetch failed: `http://10.1.2.3/secret`")
                && denied.contains("not allowed by this node"),
            "{denied}"
        );
        assert_eq!(v["aborted"], "AbortError");
        // The server answers after 3 s; the signal's 300 ms went with the request to the node.
        assert_eq!(v["cut"], "TimeoutError", "{v}");
        assert!(v["cutMs"].as_f64().unwrap() < 2000.0, "{v}");
        assert_eq!(
            v["multi"],
            serde_json::json!([true, "a b", "f.txt", "file-bytes"])
        );
        assert_eq!(v["clone"], 1);
        assert_eq!(v["stream"], "✓");
        assert_eq!(v["made"]["made"], true);
    }
}

/// Issue 20: `console.log` of objects reads as Node prints it (the expected lines are Node 20's
/// output for the same calls), in the function's log stream.
#[tokio::test(flavor = "multi_thread")]
async fn console_formats_objects_as_node_does() {
    let w = World::start().await;
    let mut logs = collect(&w.client, "$NEX.logs.default.*.pretty.*").await;
    let (_d, path) = temp_file(
        "pretty.js",
        br#"(subject, payload) => {
  console.log('got %s (%d bytes)', subject, payload.length, { nested: { list: [1, 'two', [3]] }, m: new Map([['k', new Set([1])]]) });
  const e = new RangeError('out of range'); e.code = 'E_RANGE';
  console.error(e);
  return 'logged';
}"#,
    );
    w.devrun(&path, &["js.pretty"], &[]);
    assert_eq!(w.call("js.pretty", b"abc").await, b"logged");
    let v = next_log_line(&mut logs).await;
    assert_eq!(
        v["text"],
        "got js.pretty (3 bytes) {\n  nested: { list: [ 1, 'two', [Array] ] },\n  m: Map(1) { 'k' => Set(1) { 1 } }\n}"
    );
    let v = next_log_line(&mut logs).await;
    assert_eq!(v["level"], "error");
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("RangeError: out of range\n    at "),
        "{text}"
    );
    assert!(text.ends_with("{\n  code: 'E_RANGE'\n}"), "{text}");
}

/// Issue 20: the ES module forms deploy and answer; a module that imports is refused at deploy
/// with a message that says so.
#[tokio::test(flavor = "multi_thread")]
async fn module_forms_deploy_and_imports_are_refused() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "handler.js",
        br#"const prefix = await Promise.resolve('mod');
export default {
  async handle(subject, payload) {
    return prefix + ':' + subject + ':' + new TextDecoder().decode(payload);
  },
};"#,
    );
    w.devrun(&path, &["js.mod"], &[]);
    assert_eq!(w.call("js.mod", b"x").await, b"mod:js.mod:x");
    let (_d2, path) = temp_file(
        "arrow_mod.js",
        b"export default (subject, payload) => payload.length;",
    );
    w.devrun(&path, &["js.arrowmod"], &[]);
    assert_eq!(w.call("js.arrowmod", b"four").await, b"4");

    let (_d3, path) = temp_file(
        "importer.js",
        b"import fs from 'fs';\nexport default () => fs.readFileSync('/etc/passwd');",
    );
    let err = crate::bad_input::devrun_err(&w, &path, "js.importer", &[]);
    assert!(
        err.contains("imports are not supported: the module imports 'fs'"),
        "{err}"
    );
}
