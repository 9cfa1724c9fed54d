//! Tests of `fetch.js` (and `structuredClone`, streaming `TextDecoder` of `web.js`): the answers
//! are what Node 20 gives for the same code (`node` run on the same snippets).

use std::cell::RefCell;
use std::rc::Rc;

use nex_hostapi::{Call, ErrorKind, GuestError, Reply, http};

use crate::web::tests_support::run;
use crate::{HostFn, JsConfig, JsFunction};

/// Runs `body` inside an async function that pushes lines to `out`, and returns them joined.
fn lines(body: &str) -> String {
    run(&format!(
        "return (async () => {{ const out = []; {body}; return out.join('\\n'); }})()"
    ))
}

#[test]
fn structured_clone_copies_deeply_like_node() {
    let got = lines(
        r#"const c = structuredClone({a: [1, {b: new Date(0)}], m: new Map([[1, new Set(['x'])]]), u: new Uint8Array([1,2]), e: new RangeError('r'), re: /x/gi});
out.push(JSON.stringify(c), c.m.get(1).has('x'), c.u.constructor.name, c.e instanceof RangeError, c.e.message, String(c.re), c.a[1].b instanceof Date);
const o = {n: 1}; o.self = o; const oc = structuredClone(o); out.push(oc.self === oc, oc !== o);
try { structuredClone(() => 1) } catch (e) { out.push(e.name, e.message, e instanceof DOMException, e.code) }
try { structuredClone({s: Symbol('q')}) } catch (e) { out.push(e.name, e.message) }
out.push(JSON.stringify(structuredClone(new (class A { x = 1 }))))"#,
    );
    assert_eq!(
        got,
        r#"{"a":[1,{"b":"1970-01-01T00:00:00.000Z"}],"m":{},"u":{"0":1,"1":2},"e":{},"re":{}}
true
Uint8Array
true
r
/x/gi
true
true
true
DataCloneError
() => 1 could not be cloned.
true
25
DataCloneError
Symbol(q) could not be cloned.
{"x":1}"#
    );
}

#[test]
fn blob_joins_parts_slices_and_reads_like_node() {
    let got = lines(
        r#"const b = new Blob(['héllo ', new Uint8Array([119, 111]), new Blob(['rld'])], {type: 'Text/Plain'});
out.push(b.size, b.type, await b.text(), Object.prototype.toString.call(b));
out.push(await b.slice(1, 3).text(), await b.slice(-3).text(), b.slice(2, 1).size, b.slice(0, 2, 'x/y').type, b.slice().type);
out.push(new Uint8Array(await b.arrayBuffer()).length, (await b.bytes())[0]);
const r = new Response(b); out.push(r.headers.get('content-type'), await r.text());
const r2 = new Response('abc', {headers: {'content-type': 'text/x'}}); const b2 = await r2.blob(); out.push(b2.size, b2.type, await b2.text(), b2 instanceof Blob);
try { new Blob('abc') } catch (e) { out.push(e.name) }"#,
    );
    assert_eq!(
        got,
        "12\ntext/plain\nhéllo world\n[object Blob]\né\nrld\n0\nx/y\n\n12\n104\ntext/plain\nhéllo world\n3\ntext/x\nabc\ntrue\nTypeError"
    );
}

#[test]
fn text_decoder_streams_split_sequences() {
    let got = lines(
        r#"const d = new TextDecoder(); const bytes = new TextEncoder().encode('\ufeffé✓😀');
let t = ''; for (const b of bytes) t += d.decode(new Uint8Array([b]), {stream: true}); t += d.decode();
out.push(t, t.length);
const d2 = new TextDecoder(); out.push(d2.decode(new Uint8Array([0xe2, 0x9c]), {stream: true}) + '|' + d2.decode())"#,
    );
    assert_eq!(got, "é✓😀\n4\n|\u{fffd}");
}

#[test]
fn abort_headers_request_and_response_behave_like_node() {
    let got = lines(
        r#"const c = new AbortController(); const seen = [];
c.signal.onabort = (e) => seen.push('on:' + e.type);
c.signal.addEventListener('abort', (e) => seen.push('l:' + (e.target === c.signal)), {once: true});
out.push(c.signal.aborted);
c.abort('why'); c.abort('again');
out.push(c.signal.aborted, c.signal.reason, seen.join());
try { c.signal.throwIfAborted() } catch (e) { out.push('thrown:' + e) }
const c2 = new AbortController(); c2.abort(); out.push(c2.signal.reason.name, c2.signal.reason.message, c2.signal.reason instanceof DOMException);
out.push(AbortSignal.abort().reason.name);
try { new AbortSignal() } catch (e) { out.push(e.name) }
const h = new Headers({'Content-Type': 'text/plain', 'X-A': '1'});
h.append('x-a', ' 2 '); h.set('B', 'b');
out.push(h.get('content-type'), h.get('X-A'), h.has('x-a'), h.get('nope'), JSON.stringify([...h]));
h.delete('X-A'); out.push([...h.keys()].join());
try { h.set('bad name', 'x') } catch (e) { out.push(e.name + ': ' + e.message) }
const r = new Response('{"a":1}', {status: 201, headers: {'x': 'y'}});
out.push(r.status, r.ok, r.statusText, r.headers.get('content-type'), r.bodyUsed);
const r2 = r.clone();
out.push(JSON.stringify(await r.json()), r.bodyUsed);
try { await r.text() } catch (e) { out.push(e.name + ': ' + e.message) }
try { r.clone() } catch (e) { out.push(e.name + ': ' + e.message) }
out.push(await r2.text());
const j = Response.json({k: [1]}, {status: 202});
out.push(j.status, j.headers.get('content-type'), await j.text());
out.push(new Response(null, {status: 404}).ok, (await new Response(new Uint8Array([104, 105])).arrayBuffer()).byteLength);
out.push([...(await new Response('hé').bytes())].join());
try { new Response('x', {status: 99}) } catch (e) { out.push(e.name + ': ' + e.message) }
const q = new Request('http://h.example/a?b', {method: 'post', body: new URLSearchParams({a: '1 2'}), headers: {'X-T': 't'}});
out.push(q.method, q.url, q.headers.get('content-type'), q.headers.get('x-t'), await q.clone().text(), await q.text());
try { new Request('http://h/', {body: 'x'}) } catch (e) { out.push(e.name + ': ' + e.message) }
try { new Request('/relative') } catch (e) { out.push(e.name + ': ' + e.message) }
out.push(new Request('http://h/', {method: 'patch'}).method);
const t = AbortSignal.timeout(10); await new Promise((r) => setTimeout(r, 30)); out.push(t.aborted, t.reason.name, t.reason.message);
const any = AbortSignal.any([new AbortController().signal, AbortSignal.abort('x')]); out.push(any.aborted, any.reason);
const ev = new EventTarget(); let n = 0; const f = () => n++; ev.addEventListener('x', f); ev.addEventListener('x', f); ev.dispatchEvent(new Event('x')); ev.removeEventListener('x', f); ev.dispatchEvent(new Event('x')); out.push(n)"#,
    );
    assert_eq!(
        got,
        r#"false
true
why
on:abort,l:true
thrown:why
AbortError
This operation was aborted
true
AbortError
TypeError
text/plain
1, 2
true

[["b","b"],["content-type","text/plain"],["x-a","1, 2"]]
b,content-type
TypeError: Headers.set: "bad name" is an invalid header name.
201
true

text/plain;charset=UTF-8
false
{"a":1}
true
TypeError: Body is unusable: Body has already been read
TypeError: Response.clone: Body has already been consumed.
{"a":1}
202
application/json
{"k":[1]}
false
2
104,195,169
RangeError: init["status"] must be in the range of 200 to 599, inclusive.
POST
http://h.example/a?b
application/x-www-form-urlencoded;charset=UTF-8
t
a=1+2
a=1+2
TypeError: Request with GET/HEAD method cannot have body.
TypeError: Failed to parse URL from /relative
patch
true
TimeoutError
The operation was aborted due to timeout
true
x
1"#
    );
}

/// A function over a host that answers HTTP calls with `reply` and records them.
fn with_host(
    src: &str,
    reply: impl Fn(&http::Request, Option<u32>) -> Result<Reply, GuestError> + 'static,
) -> (JsFunction, Rc<RefCell<Vec<http::Call>>>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let host: HostFn = Box::new(move |call: &Call| match call {
        Call::Http(c) => {
            s.borrow_mut().push(c.clone());
            reply(c.request(), c.timeout_ms())
        }
        _ => Err(GuestError::internal("unexpected")),
    });
    let f = JsFunction::load(src, JsConfig::default(), Box::new(|_, _, _| {}), Some(host)).unwrap();
    (f, seen)
}

#[test]
fn fetch_goes_through_the_http_host_service() {
    let (f, seen) = with_host(
        r#"async (s) => {
  const r = await fetch(new URL('http://api.example/items?x=1'), { method: 'POST', headers: { 'X-Key': 'k' }, body: JSON.stringify({ a: 1 }) });
  const b = await fetch('http://api.example/raw', { method: 'put', body: new Uint8Array([1, 2, 3]).buffer });
  return [r.status, r.ok, r.statusText, r.url, r.headers.get('Content-Type'), JSON.stringify(await r.json()), b.status, b.ok].join('|');
}"#,
        |r, _| {
            Ok(Reply::Http(http::Response {
                status: if r.method == http::Method::Put {
                    404
                } else {
                    200
                },
                headers: [("content-type".to_string(), "application/json".to_string())].into(),
                body: br#"{"got":true}"#.to_vec(),
            }))
        },
    );
    assert_eq!(
        String::from_utf8(f.invoke(1, "s", b"").result.unwrap()).unwrap(),
        r#"200|true|OK|http://api.example/items?x=1|application/json|{"got":true}|404|false"#
    );
    let seen: Vec<http::Request> = seen.borrow().iter().map(|c| c.request().clone()).collect();
    assert_eq!(
        seen[0],
        http::Request {
            method: http::Method::Post,
            url: "http://api.example/items?x=1".into(),
            headers: [
                (
                    "content-type".to_string(),
                    "text/plain;charset=UTF-8".to_string()
                ),
                ("x-key".to_string(), "k".to_string())
            ]
            .into(),
            body: br#"{"a":1}"#.to_vec(),
        }
    );
    assert_eq!(seen[1].method, http::Method::Put);
    assert_eq!(seen[1].body, vec![1, 2, 3]);
    assert!(seen[1].headers.is_empty());
}

#[test]
fn fetch_failures_are_type_errors_and_aborts_reject_with_the_reason() {
    let (f, seen) = with_host(
        r#"async (s) => {
  const out = [];
  try { await fetch('http://10.0.0.1/'); } catch (e) { out.push(e instanceof TypeError, e.message, e.cause.code); }
  const c = new AbortController(); c.abort();
  try { await fetch('http://a.example/', { signal: c.signal }); } catch (e) { out.push(e.name); }
  try { await fetch('http://a.example/', { signal: AbortSignal.timeout(0) }); } catch (e) { out.push(e.name); }
  try { await fetch('file:///etc/passwd'); } catch (e) { out.push(e.name + ': ' + e.message); }
  try { await fetch('nope'); } catch (e) { out.push(e.name); }
  return out.join('|');
}"#,
        |r, _| {
            if r.url.contains("10.0.0.1") {
                Err(GuestError::new(
                    ErrorKind::Denied,
                    "`http://10.0.0.1/`: `10.0.0.1` (10.0.0.1) is not allowed by this node (private address)",
                ))
            } else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(Reply::Http(http::Response {
                    status: 200,
                    ..Default::default()
                }))
            }
        },
    );
    assert_eq!(
        String::from_utf8(f.invoke(1, "s", b"").result.unwrap()).unwrap(),
        "true|fetch failed: `http://10.0.0.1/`: `10.0.0.1` (10.0.0.1) is not allowed by this node (private address)|Denied|AbortError|TimeoutError|TypeError: fetch failed: file: URLs are not supported (http: and https: only)|TypeError"
    );
    // Neither the fetch aborted before its start nor the one whose timeout was already due
    // reached the host.
    assert_eq!(seen.borrow().len(), 1);
}

/// A function that uses none of the globals does not evaluate their sources (their load time
/// is paid on first use; see docs/performance.md).
#[test]
fn a_bare_function_leaves_every_global_unevaluated() {
    let names: Vec<String> = crate::web::GLOBALS
        .iter()
        .flat_map(|g| g.iter().map(|n| format!("'{n}'")))
        .collect();
    let src = format!(
        "(s, p) => [{}].filter((n) => Object.getOwnPropertyDescriptor(globalThis, n).get === undefined).join()",
        names.join(",")
    );
    let f = JsFunction::load(&src, JsConfig::default(), Box::new(|_, _, _| {}), None).unwrap();
    assert_eq!(f.invoke(1, "s", b"").result.unwrap(), b"");
    let f = JsFunction::load(
        "(s) => { structuredClone(1); return [Object.getOwnPropertyDescriptor(globalThis, 'URL').get === undefined, Object.getOwnPropertyDescriptor(globalThis, 'fetch').get === undefined].join(); }",
        JsConfig::default(),
        Box::new(|_, _, _| {}),
        None,
    )
    .unwrap();
    // Using one of web.js's globals defines them all, and none of fetch.js's.
    assert_eq!(f.invoke(1, "s", b"").result.unwrap(), b"true,false");
}

#[test]
fn form_data_and_file_encode_and_parse_like_node() {
    let got = lines(
        r#"const fd = new FormData();
fd.append('a', 'x\ny');
fd.append('b', new Blob(['blob-bytes'], {type: 'text/plain'}));
fd.append('a', 2);
fd.append('f', new File(['file'], 'n"1.txt', {type: 'application/json', lastModified: 5}));
fd.append('g', new Blob(['g']), 'given.bin');
out.push(fd.get('a'), fd.getAll('a').join('|'), fd.has('b'), fd.get('zz'), Object.prototype.toString.call(fd));
const b = fd.get('b'); out.push(b instanceof File, b instanceof Blob, b.name, b.type, b.size);
const f = fd.get('f'); out.push(f.name, f.lastModified, f.type, await f.text(), Object.prototype.toString.call(f));
out.push(fd.get('g').name, fd.get('g').type);
fd.set('a', 'only'); out.push(fd.getAll('a').join('|'), [...fd.keys()].join(','));
fd.delete('g'); out.push([...fd.keys()].join(','));
const r = new Response(fd);
const ct = r.headers.get('content-type');
out.push(ct.startsWith('multipart/form-data; boundary='));
const boundary = ct.split('boundary=')[1];
const text = await r.text();
out.push(JSON.stringify(text.split(boundary).join('BOUNDARY')));
const back = await new Response(text, {headers: {'content-type': ct}}).formData();
for (const [k, v] of back) out.push(k + '=' + (typeof v === 'string' ? v : `File(${v.name},${v.type},${await v.text()})`));
const u = await new Response('x=1&y=%20z&x=2', {headers: {'content-type': 'application/x-www-form-urlencoded'}}).formData();
out.push(u.getAll('x').join('|'), JSON.stringify(u.get('y')));
try { await new Response('abc', {headers: {'content-type': 'text/plain'}}).formData() } catch (e) { out.push(e.name) }
try { fd.append('only-one') } catch (e) { out.push(e.name) }
const nf = new File(['ab'], 'plain'); out.push(nf.type === '', typeof nf.lastModified, nf.size);
const fd2 = new FormData(); fd2.append('k', 'v'); const seen = []; fd2.forEach((v, k, p) => seen.push(k, v, p === fd2)); out.push(seen.join(','));
const fd3 = new FormData(); fd3.append('l\n"x', 'a\nb\rc\r\nd'); fd3.append('e', new Blob(['z']), 'q\r.bin');
const r3 = new Response(fd3); const bd = r3.headers.get('content-type').split('boundary=')[1];
out.push(JSON.stringify((await r3.text()).split(bd).join('B')));
try { new FormData(5) } catch (e) { out.push(e.name, e.message) }
const q = new Request('http://x/', {method: 'POST', body: fd3}); out.push(q.headers.get('content-type').startsWith('multipart/form-data; boundary=----formdata-'))"#,
    );
    // `node` printed this for the same code (the boundary replaced, as it is random).
    assert_eq!(
        got,
        r#"x
y
x
y|2
true

[object FormData]
true
true
blob
text/plain
10
n"1.txt
5
application/json
file
[object File]
given.bin

only
a,b,f,g
a,b,f
true
"--BOUNDARY\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nonly\r\n--BOUNDARY\r\nContent-Disposition: form-data; name=\"b\"; filename=\"blob\"\r\nContent-Type: text/plain\r\n\r\nblob-bytes\r\n--BOUNDARY\r\nContent-Disposition: form-data; name=\"f\"; filename=\"n%221.txt\"\r\nContent-Type: application/json\r\n\r\nfile\r\n--BOUNDARY--\r\n"
a=only
b=File(blob,text/plain,blob-bytes)
f=File(n"1.txt,application/json,file)
1|2
" z"
TypeError
TypeError
true
number
2
k,v,true
"--B\r\nContent-Disposition: form-data; name=\"l%0D%0A%22x\"\r\n\r\na\r\nb\r\nc\r\nd\r\n--B\r\nContent-Disposition: form-data; name=\"e\"; filename=\"q%0D.bin\"\r\nContent-Type: application/octet-stream\r\n\r\nz\r\n--B--\r\n"
TypeError
FormData constructor: Argument 1 could not be converted to: undefined.
true"#
    );
}

#[test]
fn a_timeout_signal_goes_to_the_host_as_the_exchange_limit() {
    let (f, seen) = with_host(
        r#"async (s) => {
  const out = [];
  try { await fetch('http://slow.example/', { signal: AbortSignal.timeout(300) }); } catch (e) { out.push(e.name, e instanceof DOMException); }
  const c = new AbortController();
  await fetch('http://a.example/', { signal: AbortSignal.any([c.signal, AbortSignal.timeout(5000), AbortSignal.timeout(800)]) });
  await fetch('http://a.example/', { signal: c.signal });
  await fetch('http://a.example/');
  return out.join('|');
}"#,
        |r, timeout_ms| {
            if r.url.contains("slow") {
                // What the node does when the limit passes: the exchange fails as a timeout.
                std::thread::sleep(std::time::Duration::from_millis(
                    timeout_ms.unwrap_or(0).into(),
                ));
                Err(GuestError::new(
                    ErrorKind::Timeout,
                    "no complete answer in time",
                ))
            } else {
                Ok(Reply::Http(http::Response {
                    status: 200,
                    ..Default::default()
                }))
            }
        },
    );
    assert_eq!(
        String::from_utf8(f.invoke(1, "s", b"").result.unwrap()).unwrap(),
        "TimeoutError|true"
    );
    let limits: Vec<Option<u32>> = seen.borrow().iter().map(http::Call::timeout_ms).collect();
    let near = |got: Option<u32>, want: u32| got.is_some_and(|ms| ms <= want && ms + 100 >= want);
    assert!(near(limits[0], 300), "{limits:?}");
    // The earliest of the signals `any` follows; a signal that cannot time out sets none.
    assert!(near(limits[1], 800), "{limits:?}");
    assert_eq!(limits[2..], [None, None]);
}
