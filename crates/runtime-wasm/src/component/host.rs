//! `nex:function/host` (`wit/nex.wit`) onto [`nex_hostapi::Call`]: the one place where a
//! component's host call becomes the typed call the node performs, and its reply the WIT value.
//!
//! Every function builds a [`Call`], hands it encoded to the embedder's [`HostServices`]
//! (which blocks until the node answers or the call's deadline passes) and maps the
//! [`Reply`] back. Failures are guest-visible errors (`error` in WIT), never traps.

use nex_hostapi::{Call, ErrorKind, GuestError, Reply, http, kv, messaging, object_store};

use super::ComponentState;
use super::bindings::nex::function::host::{
    self, Error, ErrorKind as WitKind, HttpRequest, HttpResponse, Level,
};

impl From<GuestError> for Error {
    fn from(e: GuestError) -> Self {
        let kind = match e.kind {
            ErrorKind::InvalidArgument => WitKind::InvalidArgument,
            ErrorKind::NotFound => WitKind::NotFound,
            ErrorKind::Denied => WitKind::Denied,
            ErrorKind::Unavailable => WitKind::Unavailable,
            ErrorKind::Timeout => WitKind::Timeout,
            ErrorKind::TooLarge => WitKind::TooLarge,
            ErrorKind::RateLimited => WitKind::RateLimited,
            ErrorKind::Internal => WitKind::Internal,
        };
        Error {
            kind,
            message: e.message,
        }
    }
}

/// A reply of the wrong variant for its call: a bug of the node, seen by the guest as such.
fn unexpected(reply: Reply) -> Error {
    GuestError::internal(format!("host call: unexpected reply {reply:?}")).into()
}

impl ComponentState {
    /// Performs `call` through the host services, until the call's deadline: the one way every
    /// interface here (`nex:function/host`, `wasi:keyvalue`, ...) reaches the node.
    pub(super) fn host_call(&mut self, call: Call) -> Result<Reply, GuestError> {
        let Some(host) = &self.host else {
            return Err(GuestError::unavailable(
                "host services are not available to this function",
            ));
        };
        let result = (host.0)(&nex_hostapi::encode_call(&call), self.deadline);
        match nex_hostapi::decode_result(&result) {
            Ok(r) => r,
            Err(e) => Err(GuestError::internal(format!("host call: bad result: {e}"))),
        }
    }

    /// A line on the function's log. Best effort, as stderr is: past its cap, lines are
    /// dropped.
    pub(super) fn log_line(&mut self, line: &str) {
        let _ = self.stderr.append(format!("{line}\n").as_bytes());
    }

    fn call(&mut self, call: Call) -> Result<Reply, Error> {
        self.host_call(call).map_err(Error::from)
    }

    fn done(&mut self, call: Call) -> Result<(), Error> {
        match self.call(call)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn value(&mut self, call: Call) -> Result<Option<Vec<u8>>, Error> {
        match self.call(call)? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }
}

impl host::Host for ComponentState {
    fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.value(Call::Kv(kv::Call::Get { key }))
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.done(Call::Kv(kv::Call::Set { key, value }))
    }

    fn kv_delete(&mut self, key: String) -> Result<(), Error> {
        self.done(Call::Kv(kv::Call::Delete { key }))
    }

    fn kv_keys(&mut self) -> Result<Vec<String>, Error> {
        match self.call(Call::Kv(kv::Call::Keys))? {
            Reply::Keys(k) => Ok(k),
            other => Err(unexpected(other)),
        }
    }

    fn object_put(&mut self, name: String, data: Vec<u8>) -> Result<u64, Error> {
        match self.call(Call::ObjectStore(object_store::Call::Put { name, data }))? {
            Reply::Object(info) => Ok(info.size),
            other => Err(unexpected(other)),
        }
    }

    fn object_get(&mut self, name: String) -> Result<Option<Vec<u8>>, Error> {
        self.value(Call::ObjectStore(object_store::Call::Get { name }))
    }

    fn publish(&mut self, subject: String, payload: Vec<u8>) -> Result<(), Error> {
        self.done(Call::Messaging(messaging::Call::Publish {
            subject,
            payload,
        }))
    }

    fn request(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        timeout_ms: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        let call = messaging::Call::Request {
            subject,
            payload,
            timeout_ms,
        };
        match self.call(Call::Messaging(call))? {
            Reply::Message(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    fn http_send(&mut self, request: HttpRequest) -> Result<HttpResponse, Error> {
        let method = http::Method::parse(&request.method)?;
        let call = http::Call::Request(http::Request {
            method,
            url: request.url,
            headers: request.headers.into_iter().collect(),
            body: request.body,
        });
        match self.call(Call::Http(call))? {
            Reply::Http(r) => Ok(HttpResponse {
                status: r.status,
                headers: r.headers.into_iter().collect(),
                body: r.body,
            }),
            other => Err(unexpected(other)),
        }
    }

    fn log(&mut self, level: Level, message: String) {
        let prefix = match level {
            Level::Debug => "debug: ",
            Level::Info => "",
            Level::Warn => "warn: ",
            Level::Error => "error: ",
        };
        self.log_line(&format!("{prefix}{message}"));
    }
}
