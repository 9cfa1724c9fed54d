//! Web platform globals (issue 20, first part): `TextEncoder`/`TextDecoder`, `atob`/`btoa`,
//! `crypto.getRandomValues`/`randomUUID`, `performance.now`, `queueMicrotask`, `DOMException`.
//! The API surface is JavaScript (`web.js`); utf-8, randomness and the clock are Rust.

use std::time::Instant;

use rquickjs::function::Func;
use rquickjs::{Ctx, Exception, Function, Object, TypedArray};

const JS: &str = include_str!("web.js");

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

/// Installs the globals on `ctx`. `started` is the origin of `performance.now()`.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, started: Instant) -> rquickjs::Result<()> {
    let native = Object::new(ctx.clone())?;
    native.set("utf8Encode", Func::from(utf8_encode))?;
    native.set("utf8Decode", Func::from(utf8_decode))?;
    native.set("randomBytes", Func::from(random_bytes))?;
    native.set(
        "now",
        Func::from(move || started.elapsed().as_secs_f64() * 1000.0),
    )?;
    let setup: Function = ctx.eval(JS)?;
    setup.call::<_, ()>((native,))
}

#[cfg(test)]
mod tests {
    use crate::{JsConfig, JsFunction};

    /// Runs `body` (a function body over `p`, the payload) and returns its reply as text.
    fn run(body: &str, payload: &[u8]) -> String {
        let src = format!("(s, p) => {{ {body} }}");
        let mut config = JsConfig::default();
        config.env.insert("REGION".into(), "eu".into());
        let f = JsFunction::load(&src, config, Box::new(|_, _, _| {}), None).unwrap();
        let r = f.invoke(1, "subj", payload).result;
        String::from_utf8(r.unwrap_or_else(|e| panic!("{body}: {e}"))).unwrap()
    }

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
