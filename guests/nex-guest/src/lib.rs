//! Host services for nex WebAssembly functions: the key-value store, object store, messaging
//! and HTTP client that JavaScript functions reach through `this.hostServices`, for a WASI
//! command built for `wasm32-wasip1`.
//!
//! ```no_run
//! // A counter: argv[1] is the subject, stdin the payload, stdout the reply.
//! let n = nex_guest::kv::get("count")?.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0)) + 1;
//! nex_guest::kv::set("count", n.to_string().as_bytes())?;
//! print!("{n}");
//! # Ok::<(), nex_guest::Error>(())
//! ```
//!
//! Every call blocks the function until the node has performed it (the function never holds
//! NATS credentials; the node acts for it, within the function's own buckets and the node's
//! policies) and fails with an [`Error`] saying what went wrong. The calls go through the two
//! functions of the `nex` import module; see `docs/webassembly.md` for that ABI.

use std::fmt;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "nex")]
extern "C" {
    fn host_call(
        op: *const u8,
        op_len: usize,
        args: *const u8,
        args_len: usize,
        data: *const u8,
        data_len: usize,
    ) -> i32;
    fn host_result(buf: *mut u8, buf_len: usize) -> i32;
}

/// Outside WebAssembly there is no node to ask.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn host_call(_: *const u8, _: usize, _: *const u8, _: usize, _: *const u8, _: usize) -> i32 {
    let message = b"nex host services exist only inside a nex WebAssembly function";
    -1 - message.len() as i32
}

#[cfg(not(target_arch = "wasm32"))]
unsafe fn host_result(buf: *mut u8, buf_len: usize) -> i32 {
    let message = b"nex host services exist only inside a nex WebAssembly function";
    let n = message.len().min(buf_len);
    std::ptr::copy_nonoverlapping(message.as_ptr(), buf, n);
    n as i32
}

/// A host-service call failed: the message says which call and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The answer to a call: JSON fields and binary parts.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The operation's JSON result (`null` when it has none).
    pub json: String,
    /// Binary results (a value, an object, replies), in the order the operation defines.
    pub data: Vec<Vec<u8>>,
}

/// Performs operation `op` (such as `kv.get`) with JSON `args` and one binary part: the
/// general form every function below uses.
pub fn call(op: &str, args: &str, data: &[u8]) -> Result<Reply, Error> {
    // SAFETY: every pointer and length describes a live slice of this module's memory.
    let n = unsafe {
        host_call(
            op.as_ptr(),
            op.len(),
            args.as_ptr(),
            args.len(),
            data.as_ptr(),
            data.len(),
        )
    };
    let len = if n < 0 { (-1 - n) as usize } else { n as usize };
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is `len` writable bytes.
    let got = unsafe { host_result(buf.as_mut_ptr(), len) };
    buf.truncate(got.max(0) as usize);
    if n < 0 {
        return Err(Error(String::from_utf8_lossy(&buf).into_owned()));
    }
    parse_reply(&buf).ok_or_else(|| Error(format!("{op}: malformed answer from the host")))
}

fn take_u32(buf: &mut &[u8]) -> Option<usize> {
    let (head, rest) = buf.split_at_checked(4)?;
    *buf = rest;
    Some(u32::from_le_bytes(head.try_into().ok()?) as usize)
}

fn take_bytes<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = buf.split_at_checked(n)?;
    *buf = rest;
    Some(head)
}

fn parse_reply(mut buf: &[u8]) -> Option<Reply> {
    let json_len = take_u32(&mut buf)?;
    let json = String::from_utf8(take_bytes(&mut buf, json_len)?.to_vec()).ok()?;
    let count = take_u32(&mut buf)?;
    let mut data = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let n = take_u32(&mut buf)?;
        data.push(take_bytes(&mut buf, n)?.to_vec());
    }
    Some(Reply { json, data })
}

/// `s` as a JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a JSON object has `"field":true`.
fn is_true(json: &str, field: &str) -> bool {
    json.contains(&format!("{}:true", quote(field)))
}

/// The number in `"field":N` of a JSON object.
fn number(json: &str, field: &str) -> Option<u64> {
    let key = format!("{}:", quote(field));
    let rest = &json[json.find(&key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The strings of a JSON array of strings.
fn strings(json: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = json.trim().strip_prefix('[')?.chars();
    loop {
        match chars.by_ref().find(|c| !c.is_whitespace() && *c != ',')? {
            ']' => return Some(out),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'b' => s.push('\u{8}'),
                            'f' => s.push('\u{c}'),
                            'u' => {
                                let hex: String = chars.by_ref().take(4).collect();
                                s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                            }
                            c => s.push(c),
                        },
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            _ => return None,
        }
    }
}

fn malformed(op: &str) -> Error {
    Error(format!("{op}: malformed answer from the host"))
}

/// The function's own key-value bucket (`hs_<namespace>_<function>_kv`), created on first use.
pub mod kv {
    use super::*;

    /// The value of `key`, or `None` when it has none.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        let r = call("kv.get", &format!("{{\"key\":{}}}", quote(key)), &[])?;
        Ok(is_true(&r.json, "found").then(|| r.data.into_iter().next().unwrap_or_default()))
    }

    /// Sets `key` to `value`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
        call("kv.set", &format!("{{\"key\":{}}}", quote(key)), value).map(drop)
    }

    /// Deletes `key`.
    pub fn delete(key: &str) -> Result<(), Error> {
        call("kv.delete", &format!("{{\"key\":{}}}", quote(key)), &[]).map(drop)
    }

    /// Every key of the bucket, sorted.
    pub fn keys() -> Result<Vec<String>, Error> {
        let r = call("kv.keys", "{}", &[])?;
        strings(&r.json).ok_or_else(|| malformed("kv.keys"))
    }
}

/// The function's own object store (`hs_<namespace>_<function>_obj`), created on first use.
pub mod object_store {
    use super::*;

    /// Stores `data` as `name`; returns the object's metadata as JSON.
    pub fn put(name: &str, data: &[u8]) -> Result<String, Error> {
        call(
            "objectStore.put",
            &format!("{{\"name\":{}}}", quote(name)),
            data,
        )
        .map(|r| r.json)
    }

    /// The object `name`, or `None` when there is none.
    pub fn get(name: &str) -> Result<Option<Vec<u8>>, Error> {
        let r = call(
            "objectStore.get",
            &format!("{{\"name\":{}}}", quote(name)),
            &[],
        )?;
        Ok(is_true(&r.json, "found").then(|| r.data.into_iter().next().unwrap_or_default()))
    }

    /// Deletes the object `name`.
    pub fn delete(name: &str) -> Result<(), Error> {
        call(
            "objectStore.delete",
            &format!("{{\"name\":{}}}", quote(name)),
            &[],
        )
        .map(drop)
    }

    /// The metadata of every object, as a JSON array (`name`, `size`, `modified`, `digest`...).
    pub fn list() -> Result<String, Error> {
        call("objectStore.list", "{}", &[]).map(|r| r.json)
    }
}

/// Core NATS messaging, outside the `$NEX`, `$SYS`, `$JS`, `$KV` and `$O` subjects.
pub mod messaging {
    use super::*;

    /// Publishes `payload` on `subject`.
    pub fn publish(subject: &str, payload: &[u8]) -> Result<(), Error> {
        call(
            "messaging.publish",
            &format!("{{\"subject\":{}}}", quote(subject)),
            payload,
        )
        .map(drop)
    }

    /// Sends a request and returns the reply.
    pub fn request(subject: &str, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let r = call(
            "messaging.request",
            &format!("{{\"subject\":{}}}", quote(subject)),
            payload,
        )?;
        r.data
            .into_iter()
            .next()
            .ok_or_else(|| malformed("messaging.request"))
    }

    /// Sends a request and gathers the replies until a short quiet period.
    pub fn request_many(subject: &str, payload: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let args = format!("{{\"subject\":{}}}", quote(subject));
        call("messaging.requestMany", &args, payload).map(|r| r.data)
    }
}

/// HTTP(S) requests, within the node's allow and deny lists.
pub mod http {
    use super::*;

    /// An HTTP response.
    #[derive(Debug, Clone)]
    pub struct Response {
        pub status: u16,
        /// `{status, headers, text}` as JSON.
        pub json: String,
        pub body: Vec<u8>,
    }

    /// Performs `method` (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`) on `url` with `body`.
    pub fn request(method: &str, url: &str, body: &[u8]) -> Result<Response, Error> {
        let args = format!("{{\"method\":{},\"url\":{}}}", quote(method), quote(url));
        let r = call("http.request", &args, body)?;
        let status = number(&r.json, "status").ok_or_else(|| malformed("http.request"))? as u16;
        Ok(Response {
            status,
            body: r.data.into_iter().next().unwrap_or_default(),
            json: r.json,
        })
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, Error> {
        request("GET", url, &[])
    }

    /// `POST url` with `body`.
    pub fn post(url: &str, body: &[u8]) -> Result<Response, Error> {
        request("POST", url, body)
    }

    /// `PUT url` with `body`.
    pub fn put(url: &str, body: &[u8]) -> Result<Response, Error> {
        request("PUT", url, body)
    }

    /// `DELETE url`.
    pub fn delete(url: &str) -> Result<Response, Error> {
        request("DELETE", url, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert!(is_true("{\"found\":true}", "found"));
        assert!(!is_true("{\"found\":false}", "found"));
        assert_eq!(number("{\"status\":204,\"x\":1}", "status"), Some(204));
        assert_eq!(
            strings("[\"a\", \"b\\\"c\", \"\\u0041\"]"),
            Some(vec!["a".into(), "b\"c".into(), "A".into()])
        );
        assert_eq!(strings("[]"), Some(vec![]));
        let err = call("kv.get", "{}", &[]).unwrap_err();
        assert!(err.0.contains("only inside"), "{err}");
    }
}

/// Handler functions: instead of a WASI command run once per trigger in a fresh instance, a
/// handler is a library whose one instance answers trigger after trigger (until a call traps or
/// times out). Nothing is instantiated or reset per call, so a call costs little more than the
/// function itself; state kept in statics survives between calls, as in a warm Lambda (the node
/// may run several instances of one function at once, each with its own state).
///
/// ```ignore
/// // Cargo.toml: [lib] crate-type = ["cdylib"]; build with --target wasm32-wasip1
/// fn echo(subject: &str, payload: &[u8]) -> Vec<u8> {
///     payload.to_vec()
/// }
/// nex_guest::handler!(echo);
/// ```
///
/// The function gets the trigger subject and the payload and returns the reply: bytes, a string,
/// `()` for an empty reply, or a `Result` whose error fails the call with that message (the
/// instance is kept). What it prints to stdout or stderr goes to the function's log.
pub mod handler {
    use std::cell::RefCell;
    use std::fmt::Display;

    thread_local! {
        static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// Bit 31 of the returned length: the bytes are an error message.
    const ERROR: u64 = 1 << 31;

    /// What a handler may return.
    pub trait IntoReply {
        /// The reply bytes, or the message the call fails with.
        fn into_reply(self) -> Result<Vec<u8>, String>;
    }

    impl IntoReply for Vec<u8> {
        fn into_reply(self) -> Result<Vec<u8>, String> {
            Ok(self)
        }
    }

    impl IntoReply for &[u8] {
        fn into_reply(self) -> Result<Vec<u8>, String> {
            Ok(self.to_vec())
        }
    }

    impl IntoReply for String {
        fn into_reply(self) -> Result<Vec<u8>, String> {
            Ok(self.into_bytes())
        }
    }

    impl IntoReply for &str {
        fn into_reply(self) -> Result<Vec<u8>, String> {
            Ok(self.as_bytes().to_vec())
        }
    }

    impl IntoReply for () {
        fn into_reply(self) -> Result<Vec<u8>, String> {
            Ok(Vec::new())
        }
    }

    impl<T: IntoReply, E: Display> IntoReply for Result<T, E> {
        fn into_reply(self) -> Result<Vec<u8>, String> {
            self.map_err(|e| e.to_string())?.into_reply()
        }
    }

    /// `nex_alloc`: a buffer of `len` bytes for the node to write the next call's input into.
    #[doc(hidden)]
    pub fn alloc(len: u32) -> u32 {
        INPUT.with_borrow_mut(|input| {
            input.clear();
            input.resize(len as usize, 0);
            input.as_mut_ptr() as usize as u32
        })
    }

    /// `nex_call`: runs `f` on the input (subject, then payload) and returns where its reply is:
    /// `address << 32 | length`, with bit 31 set for an error message.
    #[doc(hidden)]
    pub fn call<R: IntoReply>(
        subject_len: u32,
        payload_len: u32,
        f: impl FnOnce(&str, &[u8]) -> R,
    ) -> u64 {
        let reply = INPUT.with_borrow(|input| {
            let (subject, payload) = input.split_at((subject_len as usize).min(input.len()));
            let payload = &payload[..(payload_len as usize).min(payload.len())];
            f(std::str::from_utf8(subject).unwrap_or_default(), payload).into_reply()
        });
        OUTPUT.with_borrow_mut(|out| {
            let flag = match reply {
                Ok(bytes) => {
                    *out = bytes;
                    0
                }
                Err(message) => {
                    *out = message.into_bytes();
                    ERROR
                }
            };
            (out.as_ptr() as usize as u64) << 32 | (out.len() as u64 & (ERROR - 1)) | flag
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn input(bytes: &[u8]) {
            alloc(bytes.len() as u32);
            INPUT.with_borrow_mut(|i| i.copy_from_slice(bytes));
        }

        fn output() -> Vec<u8> {
            OUTPUT.with_borrow(Clone::clone)
        }

        #[test]
        fn a_call_sees_subject_and_payload_and_flags_errors() {
            input(b"a.bhello");
            let packed = call(3, 5, |s, p| format!("{s}|{}", String::from_utf8_lossy(p)));
            assert_eq!((packed & (ERROR - 1), packed & ERROR), (9, 0));
            assert_eq!(output(), b"a.b|hello");

            let packed = call(3, 5, |_, _| Err::<(), _>("no such thing"));
            assert_eq!((packed & (ERROR - 1), packed & ERROR), (13, ERROR));
            assert_eq!(output(), b"no such thing");

            // `()` is an empty reply; lengths past the input are cut to it.
            assert_eq!(call(3, 5, |_, _| ()) & (ERROR - 1), 0);
            call(100, 100, |s, p| format!("{}+{}", s.len(), p.len()));
            assert_eq!(output(), b"8+0");
        }
    }
}

/// Makes this library a nex handler: exports `nex_alloc` and `nex_call`, which call `f(subject,
/// payload)` for every trigger. See [`handler`](mod@handler).
#[macro_export]
macro_rules! handler {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn nex_alloc(len: u32) -> u32 {
            $crate::handler::alloc(len)
        }

        #[no_mangle]
        pub extern "C" fn nex_call(_input: u32, subject_len: u32, payload_len: u32) -> u64 {
            $crate::handler::call(subject_len, payload_len, $f)
        }
    };
}
