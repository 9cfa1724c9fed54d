//! Web platform globals (issue 20): `TextEncoder`/`TextDecoder`, `atob`/`btoa`,
//! `crypto.getRandomValues`/`randomUUID`, `crypto.subtle`, `performance.now`, `queueMicrotask`,
//! `DOMException`, `URL`, timers, `structuredClone` (`web.js`), and fetch with its companions
//! `Headers`, `Request`, `Response`, `AbortController`/`AbortSignal`, `Event`/`EventTarget`
//! (`fetch.js`, over the HTTP host service). The API surface is JavaScript; utf-8, randomness,
//! URL parsing, hashing and the clock are Rust. Each source is evaluated on first use of one of
//! its globals.

use std::time::Instant;

use rquickjs::function::Func;
use rquickjs::{Ctx, Exception, Function, Object, TypedArray};

/// The sources, by group: each defines the globals [`GLOBALS`] lists under its index.
const SOURCES: [&str; 2] = [include_str!("web.js"), include_str!("fetch.js")];

fn utf8_encode<'js>(
    ctx: Ctx<'js>,
    text: rquickjs::String<'js>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    // `web.js` made the string well-formed (lone surrogates become U+FFFD, as the Encoding
    // standard says), so it has a utf-8 form.
    let s = text.to_string()?;
    TypedArray::new(ctx, s.into_bytes())
}

fn utf8_decode<'js>(
    ctx: Ctx<'js>,
    bytes: TypedArray<'js, u8>,
    fatal: bool,
) -> rquickjs::Result<String> {
    let raw = crate::copy_raw(bytes.as_raw());
    if fatal {
        match String::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(e) => Err(Exception::throw_type(
                &ctx,
                &format!("TextDecoder: the input is not valid utf-8 ({e})"),
            )),
        }
    } else {
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }
}

fn random_bytes<'js>(ctx: Ctx<'js>, n: usize) -> rquickjs::Result<TypedArray<'js, u8>> {
    let mut buf = vec![0u8; n.min(65536)];
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(k) => done += k,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(Exception::throw_internal(
                    &ctx,
                    &format!("no randomness: {e}"),
                ));
            }
        }
    }
    TypedArray::new(ctx, buf)
}

/// The parts of a parsed URL, in the order `web.js` reads them.
fn url_parts(u: &url::Url) -> Vec<String> {
    use url::quirks as q;
    [
        q::href(u).to_owned(),
        q::origin(u),
        q::protocol(u).to_owned(),
        q::username(u).to_owned(),
        q::password(u).to_owned(),
        q::host(u).to_owned(),
        q::hostname(u).to_owned(),
        q::port(u).to_owned(),
        q::pathname(u).to_owned(),
        q::search(u).to_owned(),
        q::hash(u).to_owned(),
    ]
    .into()
}

/// `new URL(input, base)`: the parts, or a `TypeError` (WHATWG parsing, by the `url` crate).
fn url_parse(ctx: Ctx<'_>, input: String, base: Option<String>) -> rquickjs::Result<Vec<String>> {
    let parsed = match base {
        Some(base) => url::Url::parse(&base).and_then(|b| b.join(&input)),
        None => url::Url::parse(&input),
    };
    match parsed {
        Ok(u) => Ok(url_parts(&u)),
        Err(e) => Err(Exception::throw_type(
            &ctx,
            &format!("Invalid URL '{input}': {e}"),
        )),
    }
}

/// A URL setter: `href` with `part` set to `value`, as the URL standard's setters do (a value
/// a setter refuses leaves the URL as it was; only `href` throws).
fn url_set(
    ctx: Ctx<'_>,
    href: String,
    part: String,
    value: String,
) -> rquickjs::Result<Vec<String>> {
    use url::quirks as q;
    let mut u = url::Url::parse(&href)
        .map_err(|e| Exception::throw_type(&ctx, &format!("Invalid URL '{href}': {e}")))?;
    match part.as_str() {
        "href" => q::set_href(&mut u, &value)
            .map_err(|e| Exception::throw_type(&ctx, &format!("Invalid URL '{value}': {e}")))?,
        "protocol" => drop(q::set_protocol(&mut u, &value)),
        "username" => drop(q::set_username(&mut u, &value)),
        "password" => drop(q::set_password(&mut u, &value)),
        "host" => drop(q::set_host(&mut u, &value)),
        "hostname" => drop(q::set_hostname(&mut u, &value)),
        "port" => drop(q::set_port(&mut u, &value)),
        "pathname" => q::set_pathname(&mut u, &value),
        "search" => q::set_search(&mut u, &value),
        "hash" => q::set_hash(&mut u, &value),
        other => {
            return Err(Exception::throw_type(
                &ctx,
                &format!("URL has no part {other}"),
            ));
        }
    }
    Ok(url_parts(&u))
}

/// `application/x-www-form-urlencoded` parsing: the pairs of `query` (without its `?`).
fn form_parse(query: String) -> Vec<Vec<String>> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| vec![k.into_owned(), v.into_owned()])
        .collect()
}

/// ... and serializing.
fn form_serialize(pairs: Vec<Vec<String>>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for pair in &pairs {
        if let [k, v] = pair.as_slice() {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

/// The digest algorithms of `crypto.subtle`, by their Web Crypto names.
#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn named(ctx: &Ctx<'_>, name: &str) -> rquickjs::Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "SHA-1" => Ok(Hash::Sha1),
            "SHA-256" => Ok(Hash::Sha256),
            "SHA-384" => Ok(Hash::Sha384),
            "SHA-512" => Ok(Hash::Sha512),
            _ => Err(Exception::throw_message(
                ctx,
                &format!("NotSupportedError: unrecognized algorithm name {name}"),
            )),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
            Hash::Sha384 => run::<Hmac<sha2::Sha384>>(key, data),
            Hash::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }
}

fn digest<'js>(
    ctx: Ctx<'js>,
    alg: String,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let out = Hash::named(&ctx, &alg)?.digest(&crate::copy_raw(data.as_raw()));
    TypedArray::new(ctx, out)
}

fn hmac_sign<'js>(
    ctx: Ctx<'js>,
    alg: String,
    key: TypedArray<'js, u8>,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let out = Hash::named(&ctx, &alg)?.hmac(
        &crate::copy_raw(key.as_raw()),
        &crate::copy_raw(data.as_raw()),
    );
    TypedArray::new(ctx, out)
}

/// Compares in constant time, as a signature check must.
fn hmac_verify<'js>(
    ctx: Ctx<'js>,
    alg: String,
    key: TypedArray<'js, u8>,
    signature: TypedArray<'js, u8>,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<bool> {
    let expected = Hash::named(&ctx, &alg)?.hmac(
        &crate::copy_raw(key.as_raw()),
        &crate::copy_raw(data.as_raw()),
    );
    let signature = crate::copy_raw(signature.as_raw());
    // Every byte is looked at whatever the others hold.
    let differing = expected
        .iter()
        .zip(&signature)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(expected.len() == signature.len() && differing == 0)
}

/// Defines the globals on first use: evaluating `web.js` takes about 0.8 ms, five times a bare
/// runtime's start, so a function that uses none of them does not pay for it.
const LAZY: &str = r#"(function (native, groups) {
  let control = null;
  const loaded = [];
  const load = (group) => {
    if (loaded[group]) return;
    loaded[group] = true;
    const result = native.source(group)(native);
    if (group === 0) control = result;
  };
  groups.forEach((names, group) => {
    for (const name of names) {
      Object.defineProperty(globalThis, name, {
        configurable: true,
        enumerable: false,
        get() { load(group); return globalThis[name]; },
        set(value) {
          load(group);
          Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
        },
      });
    }
  });
  return {
    wait: () => (control === null ? -1 : control.wait()),
    fire: () => { if (control !== null) control.fire(); },
    clear: () => { if (control !== null) control.clear(); },
  };
})"#;

/// Every global the sources define, by source; each is defined on first use.
pub(crate) const GLOBALS: [&[&str]; 2] = [WEB_GLOBALS, FETCH_GLOBALS];

/// What `web.js` defines.
const WEB_GLOBALS: &[&str] = &[
    "DOMException",
    "TextEncoder",
    "TextDecoder",
    "btoa",
    "atob",
    "crypto",
    "CryptoKey",
    "performance",
    "queueMicrotask",
    "URL",
    "URLSearchParams",
    "setTimeout",
    "setInterval",
    "clearTimeout",
    "clearInterval",
    "structuredClone",
];

/// What `fetch.js` defines.
const FETCH_GLOBALS: &[&str] = &[
    "Event",
    "EventTarget",
    "AbortController",
    "AbortSignal",
    "Headers",
    "Blob",
    "File",
    "FormData",
    "Request",
    "Response",
    "fetch",
];

fn source<'js>(ctx: Ctx<'js>, group: usize) -> rquickjs::Result<Function<'js>> {
    match SOURCES.get(group) {
        Some(js) => ctx.eval(*js),
        None => Err(Exception::throw_internal(&ctx, "no such source")),
    }
}

/// Installs the globals on `ctx`. `started` is the origin of `performance.now()`; `armed` is
/// set whenever a timer is set, so a call that set none has nothing to clear; `host` is the
/// host-service call `fetch` performs requests with. Returns the timer control (`wait`, `fire`,
/// `clear`) the runtime drives.
pub(crate) fn install<'js>(
    ctx: &Ctx<'js>,
    started: Instant,
    armed: std::rc::Rc<std::cell::Cell<bool>>,
    host: Function<'js>,
) -> rquickjs::Result<Object<'js>> {
    let native = Object::new(ctx.clone())?;
    native.set("host", host)?;
    native.set("armed", Func::from(move || armed.set(true)))?;
    native.set("source", Func::from(source))?;
    native.set("utf8Encode", Func::from(utf8_encode))?;
    native.set("utf8Decode", Func::from(utf8_decode))?;
    native.set("randomBytes", Func::from(random_bytes))?;
    native.set("urlParse", Func::from(url_parse))?;
    native.set("digest", Func::from(digest))?;
    native.set("hmacSign", Func::from(hmac_sign))?;
    native.set("hmacVerify", Func::from(hmac_verify))?;
    native.set("urlSet", Func::from(url_set))?;
    native.set("formParse", Func::from(form_parse))?;
    native.set("formSerialize", Func::from(form_serialize))?;
    native.set(
        "now",
        Func::from(move || started.elapsed().as_secs_f64() * 1000.0),
    )?;
    let lazy: Function = ctx.eval(LAZY)?;
    let groups: Vec<Vec<&str>> = GLOBALS.iter().map(|g| g.to_vec()).collect();
    lazy.call((native, groups))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::{JsConfig, JsFunction};

    /// Runs `body` (a function body over `p`, the payload) and returns its reply as text.
    pub fn run_with(body: &str, payload: &[u8]) -> String {
        let src = format!("(s, p) => {{ {body} }}");
        let mut config = JsConfig::default();
        config.env.insert("REGION".into(), "eu".into());
        let f = JsFunction::load(&src, config, Box::new(|_, _, _| {}), None).unwrap();
        let r = f.invoke(1, "subj", payload).result;
        String::from_utf8(r.unwrap_or_else(|e| panic!("{body}: {e}"))).unwrap()
    }

    pub fn run(body: &str) -> String {
        run_with(body, b"")
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::run_with as run;

    fn throws(body: &str) -> String {
        run(
            &format!(
                "try {{ {body}; return 'no error'; }} catch (e) {{ return e.name + ': ' + e.message; }}"
            ),
            b"",
        )
    }

    #[test]
    fn text_decoder_and_encoder_round_trip_utf8() {
        assert_eq!(
            run("return new TextDecoder().decode(p)", "héllo ✓".as_bytes()),
            "héllo ✓"
        );
        assert_eq!(
            run("return new TextDecoder('UTF8').decode(p.buffer)", b"ab"),
            "ab"
        );
        // Any view: the bytes it covers, not its whole buffer.
        assert_eq!(
            run(
                "return new TextDecoder().decode(new DataView(p.buffer, 1, 2))",
                b"abcd"
            ),
            "bc"
        );
        assert_eq!(
            run("return new TextDecoder().decode(p)", b"a\xffb"),
            "a\u{fffd}b"
        );
        assert!(
            throws("new TextDecoder('utf-8', {fatal: true}).decode(new Uint8Array([0x61, 0xff]))")
                .starts_with("TypeError")
        );
        assert_eq!(
            run("return new TextDecoder().decode(p)", b"\xef\xbb\xbfx"),
            "x"
        );
        assert_eq!(
            run(
                "return new TextDecoder('utf-8', {ignoreBOM: true}).decode(p).length",
                b"\xef\xbb\xbfx"
            ),
            "2"
        );
        assert!(throws("new TextDecoder('latin1')").starts_with("RangeError"));
        assert_eq!(
            run(
                "const b = new TextEncoder().encode('é✓'); return [b.constructor.name, ...b].join()",
                b""
            ),
            "Uint8Array,195,169,226,156,147"
        );
        // A lone surrogate encodes as U+FFFD.
        assert_eq!(
            run(
                "return [...new TextEncoder().encode('\\ud800')].join()",
                b""
            ),
            "239,191,189"
        );
        assert_eq!(
            run(
                "const d = new Uint8Array(4); const r = new TextEncoder().encodeInto('a✓b', d); return [r.read, r.written, ...d].join()",
                b""
            ),
            "2,4,97,226,156,147"
        );
    }

    #[test]
    fn base64_matches_the_web_platform() {
        assert_eq!(run("return btoa('hello')", b""), "aGVsbG8=");
        assert_eq!(run("return btoa('\\xff\\x00')", b""), "/wA=");
        assert_eq!(run("return atob(' aGVs bG8= ')", b""), "hello");
        assert_eq!(run("return atob('aGVsbG8')", b""), "hello");
        assert_eq!(run("return escape(atob('/wA='))", b""), "%FF%00");
        assert!(throws("btoa('✓')").starts_with("InvalidCharacterError"));
        assert!(throws("atob('a')").starts_with("InvalidCharacterError"));
        assert!(throws("atob('a*bc')").starts_with("InvalidCharacterError"));
    }

    #[test]
    fn crypto_performance_microtasks_and_env() {
        let uuid = run("return crypto.randomUUID()", b"");
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!("89ab".contains(&uuid[19..20]), "{uuid}");
        assert_ne!(uuid, run("return crypto.randomUUID()", b""));
        assert_eq!(
            run(
                "const a = crypto.getRandomValues(new Uint32Array(8)); return a.some(x => x !== 0)",
                b""
            ),
            "true"
        );
        assert!(
            throws("crypto.getRandomValues(new Uint8Array(65537))")
                .starts_with("QuotaExceededError")
        );
        assert!(
            throws("crypto.getRandomValues(new Float32Array(2))").starts_with("TypeMismatchError")
        );
        assert_eq!(
            run(
                "const t = performance.now(); return t >= 0 && t < 60000 && performance.timeOrigin > 1.6e12",
                b""
            ),
            "true"
        );
        assert_eq!(
            run(
                "return new Promise(r => { let x = 'sync'; queueMicrotask(() => r(x)); x = 'micro'; })",
                b""
            ),
            "micro"
        );
        // The arrow form sees the environment through `this`, as docs/javascript.md says.
        assert_eq!(
            run("return this.env.REGION + process.env.REGION", b""),
            "eueu"
        );
    }
}

#[cfg(test)]
mod url_tests {
    fn run(body: &str) -> String {
        super::tests_support::run(body)
    }

    #[test]
    fn url_parses_resolves_and_sets_like_the_standard() {
        assert_eq!(
            run(
                "const u = new URL('https://user:pw@Example.COM:8443/a/./b/../c?x=1&y=%20#frag'); \
                 return [u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash, u.origin].join('|')"
            ),
            "https:|user|pw|example.com:8443|example.com|8443|/a/c|?x=1&y=%20|#frag|https://example.com:8443"
        );
        assert_eq!(
            run("return new URL('../d?q', 'http://h/a/b/c').href"),
            "http://h/a/d?q"
        );
        assert_eq!(run("return new URL('http://h:80/').port"), "");
        assert_eq!(
            run("try { new URL('not a url'); return 'parsed'; } catch (e) { return e.name; }"),
            "TypeError"
        );
        assert_eq!(
            run("return [URL.canParse('x:'), URL.canParse('/x'), URL.parse('/x')].join()"),
            "true,false,"
        );
        assert_eq!(
            run(
                "const u = new URL('http://h/p'); u.pathname = '/a b'; u.hash = 'x'; u.port = 'nope'; u.host = 'k:81'; return u.href"
            ),
            "http://k:81/a%20b#x"
        );
        assert_eq!(
            run("return JSON.stringify({u: new URL('http://h')})"),
            r#"{"u":"http://h/"}"#
        );
    }

    #[test]
    fn search_params_parse_edit_and_follow_their_url() {
        assert_eq!(
            run(
                "const q = new URLSearchParams('?a=1&b=x+y&a=%C3%A9'); return [q.get('a'), q.get('b'), q.getAll('a').join('/'), q.get('z'), q.size].join('|')"
            ),
            "1|x y|1/é||3"
        );
        assert_eq!(
            run(
                "const q = new URLSearchParams({q: 'a&b', n: 1}); q.append('e', 'é ~'); return q.toString()"
            ),
            "q=a%26b&n=1&e=%C3%A9+%7E"
        );
        assert_eq!(
            run(
                "const q = new URLSearchParams([['b','2'],['a','1'],['b','3']]); q.sort(); q.set('b', 'x'); return [...q].join(';')"
            ),
            "a,1;b,x"
        );
        assert_eq!(
            run(
                "const u = new URL('http://h/?a=1'); u.searchParams.append('b', '2 3'); u.searchParams.delete('a'); const s1 = u.href; u.search = '?c=4'; return s1 + ' ' + u.searchParams.get('c')"
            ),
            "http://h/?b=2+3 4"
        );
    }
}

#[cfg(test)]
mod timer_tests {
    use std::time::{Duration, Instant};

    use super::tests_support::run;
    use crate::{InvokeError, JsConfig, JsFunction};

    #[test]
    fn timers_fire_in_order_while_the_call_waits() {
        assert_eq!(
            run("return new Promise(r => { const seen = []; \
                 setTimeout(() => seen.push('b'), 40); setTimeout((x) => seen.push(x), 25, 'a'); \
                 const t = setTimeout(() => seen.push('never'), 10); clearTimeout(t); \
                 let n = 0; const i = setInterval(() => { seen.push('i' + n); if (++n === 3) clearInterval(i); }, 1); \
                 setTimeout(() => r(seen.join()), 60); })"),
            "i0,i1,i2,a,b"
        );
        let t = Instant::now();
        assert_eq!(
            run("return new Promise(r => setTimeout(() => r('late'), 50))"),
            "late"
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn timers_end_with_their_call_and_never_pass_its_deadline() {
        let config = JsConfig {
            timeout: Duration::from_millis(100),
            ..JsConfig::default()
        };
        let src = "(s) => s === 'wait' ? new Promise(r => setTimeout(r, 10000)) \
                   : s === 'leave' ? (setTimeout(() => { throw new Error('left over'); }, 0), 'left') \
                   : 'next'";
        let f = JsFunction::load(src, config, Box::new(|_, _, _| {}), None).unwrap();
        let t = Instant::now();
        assert_eq!(
            f.invoke(1, "wait", b"").result,
            Err(InvokeError::Timeout(Duration::from_millis(100)))
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(f.invoke(2, "leave", b"").result.unwrap(), b"left");
        // The timer the last call left was dropped with it.
        assert_eq!(f.invoke(3, "next", b"").result.unwrap(), b"next");
        assert_eq!(
            run("try { setTimeout('code', 1); } catch (e) { return e.name; }"),
            "TypeError"
        );
    }
}

#[cfg(test)]
mod subtle_tests {
    use super::tests_support::run;

    const HEX: &str = "const hex = (b) => [...new Uint8Array(b)].map(x => x.toString(16).padStart(2, '0')).join('');";

    #[test]
    fn digests_match_the_standard_vectors() {
        let body = format!(
            "{HEX} const d = async (a) => hex(await crypto.subtle.digest(a, new TextEncoder().encode('abc'))); \
             return Promise.all(['SHA-1', 'SHA-256', {{name: 'sha-384'}}, 'SHA-512'].map(d)).then(r => r.map(x => x.slice(0, 16)).join())"
        );
        assert_eq!(
            run(&body),
            "a9993e364706816a,ba7816bf8f01cfea,cb00753f45a35e8b,ddaf35a193617aba"
        );
        assert_eq!(
            run(
                "return crypto.subtle.digest('MD5', new Uint8Array(1)).then(() => 'ok', e => e.message)"
            ),
            "NotSupportedError: unrecognized algorithm name MD5"
        );
    }

    #[test]
    fn hmac_signs_and_verifies_a_webhook() {
        // RFC 4231, test case 2.
        let body = format!(
            "{HEX} const enc = new TextEncoder(); \
             const key = await crypto.subtle.importKey('raw', enc.encode('Jefe'), {{name: 'HMAC', hash: 'SHA-256'}}, false, ['sign', 'verify']); \
             const data = enc.encode('what do ya want for nothing?'); \
             const sig = await crypto.subtle.sign('HMAC', key, data); \
             const ok = await crypto.subtle.verify('HMAC', key, sig, data); \
             const forged = await crypto.subtle.verify('HMAC', key, new Uint8Array(32), data); \
             const exported = await crypto.subtle.exportKey('raw', key).then(() => 'exported', e => e.name); \
             return [hex(sig), ok, forged, exported, key.algorithm.hash.name].join();"
        );
        let src = format!("return (async () => {{ {body} }})()");
        assert_eq!(
            run(&src),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843,true,false,InvalidAccessError,SHA-256"
        );
    }
}
