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
//! policies) and fails with an [`Error`] whose [`ErrorKind`] says how it went wrong and whose
//! message says what. Calls and replies are the typed ones of [`hostapi`] (`nex-hostapi`, the
//! same crate the node decodes them with), encoded once and passed through the two functions
//! of the `nex` import module; see `docs/webassembly.md` for that ABI.

use nex_hostapi::{http as api_http, kv as api_kv, messaging as api_messaging};
use nex_hostapi::object_store as api_object_store;

/// The typed host API this library speaks (calls, replies, errors, limits), shared with the node.
pub use nex_hostapi as hostapi;
pub use nex_hostapi::object_store::ObjectInfo;
pub use nex_hostapi::{Call, ErrorKind, Reply};

/// A host-service call failed: [`kind`](Error::kind) says how (match on it), the message says
/// which call and why.
pub type Error = nex_hostapi::GuestError;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "nex")]
extern "C" {
    fn host_call(call: *const u8, call_len: usize) -> i32;
    fn host_result(buf: *mut u8, buf_len: usize) -> i32;
}

/// Hands the encoded call to the node and returns the encoded result.
#[cfg(target_arch = "wasm32")]
fn perform(call: &[u8]) -> Result<Vec<u8>, Error> {
    // SAFETY: the pointer and length describe a live slice of this module's memory.
    let n = unsafe { host_call(call.as_ptr(), call.len()) };
    if n < 0 {
        return Err(Error::internal("host_call: the host cannot reach this module's memory"));
    }
    let mut buf = vec![0u8; n as usize];
    // SAFETY: `buf` is `n` writable bytes.
    let got = unsafe { host_result(buf.as_mut_ptr(), buf.len()) };
    buf.truncate(got.max(0) as usize);
    Ok(buf)
}

/// Outside WebAssembly there is no node to ask.
#[cfg(not(target_arch = "wasm32"))]
fn perform(_call: &[u8]) -> Result<Vec<u8>, Error> {
    Err(Error::unavailable(
        "nex host services exist only inside a nex WebAssembly function",
    ))
}

/// Performs one call and returns its reply: the general form every function below uses.
pub fn call(call: &Call) -> Result<Reply, Error> {
    let result = perform(&nex_hostapi::encode_call(call))?;
    nex_hostapi::decode_result(&result).unwrap_or_else(|e| {
        Err(Error::internal(format!(
            "{}: malformed answer from the host: {e}",
            call.op()
        )))
    })
}

fn unexpected(call: &Call, reply: &Reply) -> Error {
    Error::internal(format!("{}: unexpected answer from the host: {reply:?}", call.op()))
}

/// Performs `c` and picks the reply it expects with `pick`.
fn expect<T>(c: Call, pick: impl FnOnce(Reply) -> Result<T, Reply>) -> Result<T, Error> {
    pick(call(&c)?).map_err(|r| unexpected(&c, &r))
}

/// The function's own key-value bucket, created on first use. Keys are 1 to
/// [`MAX_KEY_BYTES`](nex_hostapi::kv::MAX_KEY_BYTES) bytes of `[-/_=.a-zA-Z0-9]`, with no
/// empty token; others fail with [`ErrorKind::InvalidArgument`].
pub mod kv {
    use super::*;

    /// The value of `key`, or `None` when it has none.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        let c = Call::Kv(api_kv::Call::Get { key: key.into() });
        expect(c, |r| match r {
            Reply::Value(v) => Ok(v),
            r => Err(r),
        })
    }

    /// Sets `key` to `value`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
        let c = Call::Kv(api_kv::Call::Set {
            key: key.into(),
            value: value.to_vec(),
        });
        call(&c).map(drop)
    }

    /// Deletes `key`.
    pub fn delete(key: &str) -> Result<(), Error> {
        call(&Call::Kv(api_kv::Call::Delete { key: key.into() })).map(drop)
    }

    /// Every key of the bucket, sorted.
    pub fn keys() -> Result<Vec<String>, Error> {
        expect(Call::Kv(api_kv::Call::Keys), |r| match r {
            Reply::Keys(k) => Ok(k),
            r => Err(r),
        })
    }
}

/// The function's own object store, created on first use.
pub mod object_store {
    use super::*;

    /// Stores `data` as `name`; returns the object's metadata.
    pub fn put(name: &str, data: &[u8]) -> Result<ObjectInfo, Error> {
        let c = Call::ObjectStore(api_object_store::Call::Put {
            name: name.into(),
            data: data.to_vec(),
        });
        expect(c, |r| match r {
            Reply::Object(o) => Ok(o),
            r => Err(r),
        })
    }

    /// The object `name`, or `None` when there is none.
    pub fn get(name: &str) -> Result<Option<Vec<u8>>, Error> {
        let c = Call::ObjectStore(api_object_store::Call::Get { name: name.into() });
        expect(c, |r| match r {
            Reply::Value(v) => Ok(v),
            r => Err(r),
        })
    }

    /// Deletes the object `name`.
    pub fn delete(name: &str) -> Result<(), Error> {
        call(&Call::ObjectStore(api_object_store::Call::Delete { name: name.into() })).map(drop)
    }

    /// The metadata of every object.
    pub fn list() -> Result<Vec<ObjectInfo>, Error> {
        expect(Call::ObjectStore(api_object_store::Call::List), |r| match r {
            Reply::Objects(o) => Ok(o),
            r => Err(r),
        })
    }
}

/// Core NATS messaging. `$`-prefixed subjects, other requesters' inboxes (`_INBOX.>`), `_R_.>`
/// and wildcards are refused with [`ErrorKind::InvalidArgument`].
pub mod messaging {
    use super::*;

    /// Publishes `payload` on `subject`.
    pub fn publish(subject: &str, payload: &[u8]) -> Result<(), Error> {
        let c = Call::Messaging(api_messaging::Call::Publish {
            subject: subject.into(),
            payload: payload.to_vec(),
        });
        call(&c).map(drop)
    }

    /// Sends a request and returns the reply (within 5 s).
    pub fn request(subject: &str, payload: &[u8]) -> Result<Vec<u8>, Error> {
        request_with(subject, payload, None)
    }

    /// Sends a request and returns the reply within `timeout_ms` (at most 60 s).
    pub fn request_with(
        subject: &str,
        payload: &[u8],
        timeout_ms: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        let c = Call::Messaging(api_messaging::Call::Request {
            subject: subject.into(),
            payload: payload.to_vec(),
            timeout_ms,
        });
        expect(c, |r| match r {
            Reply::Message(m) => Ok(m),
            r => Err(r),
        })
    }

    /// Sends a request and gathers the replies until a short quiet period.
    pub fn request_many(subject: &str, payload: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        request_many_with(subject, payload, None, None)
    }

    /// Sends a request and gathers up to `max` replies (default 100) until a short quiet
    /// period or `timeout_ms`.
    pub fn request_many_with(
        subject: &str,
        payload: &[u8],
        timeout_ms: Option<u64>,
        max: Option<u32>,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let c = Call::Messaging(api_messaging::Call::RequestMany {
            subject: subject.into(),
            payload: payload.to_vec(),
            timeout_ms,
            max,
        });
        expect(c, |r| match r {
            Reply::Messages(m) => Ok(m),
            r => Err(r),
        })
    }
}

/// HTTP(S) requests, within the node's allow and deny lists.
pub mod http {
    use super::*;

    pub use nex_hostapi::http::{Method, Request, Response};

    /// Performs `method` (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`) on `url` with `body`.
    pub fn request(method: &str, url: &str, body: &[u8]) -> Result<Response, Error> {
        send(Request {
            method: Method::parse(method)?,
            url: url.into(),
            headers: Default::default(),
            body: body.to_vec(),
        })
    }

    /// Performs `request` (with headers).
    pub fn send(request: Request) -> Result<Response, Error> {
        expect(Call::Http(api_http::Call::Request(request)), |r| match r {
            Reply::Http(h) => Ok(h),
            r => Err(r),
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
    fn outside_webassembly_calls_fail_with_a_typed_error() {
        let err = kv::get("k").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("only inside"), "{err}");
        assert!(http::request("TRACE", "http://h/", &[]).unwrap_err().kind == ErrorKind::InvalidArgument);
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
