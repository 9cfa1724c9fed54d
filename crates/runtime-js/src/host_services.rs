//! `this.hostServices`: the JavaScript wrappers of `host_services.js` over one native function,
//! `host(op, ...args)`, which turns JavaScript arguments into a typed [`Call`], performs it through
//! the embedder's [`HostFn`], and turns the typed [`Reply`] back into JavaScript values (no JSON on
//! the way). A [`GuestError`] becomes a thrown `Error` whose message says what failed and whose
//! `code` is the error kind's stable name (`InvalidArgument`, `Timeout`, ...).
//!
//! The operations `host_services.js` names are exactly [`Op::ALL`] (a test checks), and the match
//! in [`build`] is exhaustive, so an operation added to `nex-hostapi` fails to compile here until
//! it is wired up.

use std::rc::Rc;

use nex_hostapi::object_store::ObjectInfo;
use nex_hostapi::{Call, GuestError, Op, Reply, http, kv, messaging, object_store};
use rquickjs::function::Rest;
use rquickjs::{Array, Coerced, Ctx, Exception, Function, Object, TypedArray, Value};

use crate::{HostFn, reply_bytes};

/// The JavaScript side of `hostServices`, built on the native `host`.
pub(crate) const JS: &str = include_str!("host_services.js");

/// Throws `e` as an `Error` with `code` set to its kind's name.
fn throw(ctx: &Ctx<'_>, e: &GuestError) -> rquickjs::Error {
    match Exception::from_message(ctx.clone(), &e.message) {
        Ok(ex) => {
            let obj = ex.as_object().clone();
            if let Err(err) = obj.set("code", e.kind.name()) {
                return err;
            }
            ctx.throw(obj.into_value())
        }
        Err(err) => err,
    }
}

/// Arguments of one native call, read by position.
struct Args<'a, 'js> {
    ctx: &'a Ctx<'js>,
    op: Op,
    values: &'a [Value<'js>],
}

impl<'js> Args<'_, 'js> {
    fn get(&self, i: usize) -> Option<&Value<'js>> {
        self.values
            .get(i)
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    /// A string argument (the wrappers pass `String(x)`).
    fn text(&self, i: usize, what: &str) -> Result<String, GuestError> {
        self.get(i)
            .and_then(|v| v.as_string())
            .and_then(|s| s.to_string().ok())
            .ok_or_else(|| {
                GuestError::invalid_argument(format!("{}: `{what}` must be a string", self.op))
            })
    }

    /// Bytes: a Uint8Array or ArrayBuffer as is, a string as UTF-8, another value as JSON,
    /// nothing as no bytes.
    fn bytes(&self, i: usize) -> Result<Vec<u8>, GuestError> {
        match self.get(i) {
            None => Ok(Vec::new()),
            Some(v) => reply_bytes(self.ctx, v.clone()).map_err(|e| {
                GuestError::invalid_argument(format!("{}: cannot send this value: {e}", self.op))
            }),
        }
    }

    /// A non-negative whole number, or nothing.
    fn number(&self, i: usize) -> Option<u64> {
        let n = self.get(i)?.as_number()?;
        (n.is_finite() && n >= 0.0).then_some(n as u64)
    }

    /// An object of string values (HTTP headers).
    fn headers(&self, i: usize) -> Result<std::collections::BTreeMap<String, String>, GuestError> {
        let Some(obj) = self.get(i).and_then(|v| v.as_object()) else {
            return Ok(Default::default());
        };
        obj.props::<String, Coerced<String>>()
            .map(|p| p.map(|(k, Coerced(v))| (k, v)))
            .collect::<rquickjs::Result<_>>()
            .map_err(|e| GuestError::invalid_argument(format!("{}: bad headers: {e}", self.op)))
    }
}

/// The typed call for `op` from the wrappers' arguments (see `host_services.js` for the order).
fn build(a: &Args<'_, '_>) -> Result<Call, GuestError> {
    Ok(match a.op {
        Op::KvGet => Call::Kv(kv::Call::Get {
            key: a.text(0, "key")?,
        }),
        Op::KvSet => Call::Kv(kv::Call::Set {
            key: a.text(0, "key")?,
            value: a.bytes(1)?,
        }),
        Op::KvDelete => Call::Kv(kv::Call::Delete {
            key: a.text(0, "key")?,
        }),
        Op::KvKeys => Call::Kv(kv::Call::Keys),
        Op::ObjectGet => Call::ObjectStore(object_store::Call::Get {
            name: a.text(0, "name")?,
        }),
        Op::ObjectPut => Call::ObjectStore(object_store::Call::Put {
            name: a.text(0, "name")?,
            data: a.bytes(1)?,
        }),
        Op::ObjectDelete => Call::ObjectStore(object_store::Call::Delete {
            name: a.text(0, "name")?,
        }),
        Op::ObjectList => Call::ObjectStore(object_store::Call::List),
        Op::Publish => Call::Messaging(messaging::Call::Publish {
            subject: a.text(0, "subject")?,
            payload: a.bytes(1)?,
        }),
        Op::Request => Call::Messaging(messaging::Call::Request {
            subject: a.text(0, "subject")?,
            payload: a.bytes(1)?,
            timeout_ms: a.number(2),
        }),
        Op::RequestMany => Call::Messaging(messaging::Call::RequestMany {
            subject: a.text(0, "subject")?,
            payload: a.bytes(1)?,
            timeout_ms: a.number(2),
            max: a.number(3).map(|m| m.min(u32::MAX as u64) as u32),
        }),
        Op::KvIncrement => Call::Kv(kv::Call::Increment {
            key: a.text(0, "key")?,
            delta: a.number(1).ok_or_else(|| {
                GuestError::invalid_argument("kv.increment: delta is not a non-negative number")
            })?,
        }),
        Op::HttpRequest => Call::Http(http::Call::new(
            http::Request {
                method: http::Method::parse(&a.text(0, "method")?)?,
                url: a.text(1, "url")?,
                headers: a.headers(2)?,
                body: a.bytes(3)?,
            },
            a.number(4).map(|m| m.min(u32::MAX as u64) as u32),
        )),
    })
}

fn bytes<'js>(ctx: &Ctx<'js>, b: Vec<u8>) -> rquickjs::Result<Value<'js>> {
    Ok(TypedArray::<u8>::new(ctx.clone(), b)?.into_value())
}

fn object_info<'js>(ctx: &Ctx<'js>, i: ObjectInfo) -> rquickjs::Result<Value<'js>> {
    let o = Object::new(ctx.clone())?;
    o.set("name", i.name)?;
    o.set("size", i.size as f64)?;
    o.set("bucket", i.bucket)?;
    o.set("nuid", i.nuid)?;
    o.set("chunks", i.chunks as f64)?;
    if let Some(m) = i.modified {
        o.set("modified", m)?;
    }
    if let Some(d) = i.digest {
        o.set("digest", d)?;
    }
    o.set("deleted", i.deleted)?;
    Ok(o.into_value())
}

/// The JavaScript value of a reply.
fn value<'js>(ctx: &Ctx<'js>, reply: Reply) -> rquickjs::Result<Value<'js>> {
    let list = |items: Vec<Value<'js>>| -> rquickjs::Result<Value<'js>> {
        let a = Array::new(ctx.clone())?;
        for (i, v) in items.into_iter().enumerate() {
            a.set(i, v)?;
        }
        Ok(a.into_value())
    };
    match reply {
        Reply::Done => Ok(Value::new_undefined(ctx.clone())),
        Reply::Value(None) => Ok(Value::new_null(ctx.clone())),
        Reply::Value(Some(b)) | Reply::Message(b) => bytes(ctx, b),
        Reply::Count(n) => Ok(Value::new_number(ctx.clone(), n as f64)),
        Reply::Keys(keys) => {
            let a = Array::new(ctx.clone())?;
            for (i, k) in keys.into_iter().enumerate() {
                a.set(i, k)?;
            }
            Ok(a.into_value())
        }
        Reply::Object(info) => object_info(ctx, info),
        Reply::Objects(infos) => list(
            infos
                .into_iter()
                .map(|i| object_info(ctx, i))
                .collect::<rquickjs::Result<_>>()?,
        ),
        Reply::Messages(ms) => list(
            ms.into_iter()
                .map(|m| bytes(ctx, m))
                .collect::<rquickjs::Result<_>>()?,
        ),
        Reply::Http(r) => {
            let o = Object::new(ctx.clone())?;
            o.set("status", r.status)?;
            let headers = Object::new(ctx.clone())?;
            for (k, v) in r.headers {
                headers.set(k, v)?;
            }
            o.set("headers", headers)?;
            o.set("response", String::from_utf8_lossy(&r.body).into_owned())?;
            o.set("body", bytes(ctx, r.body)?)?;
            Ok(o.into_value())
        }
    }
}

/// The native `host(op, ...args)` around `host` (or around a stub that throws when `None`).
pub(crate) fn native<'js>(ctx: &Ctx<'js>, host: Option<HostFn>) -> rquickjs::Result<Function<'js>> {
    let host = Rc::new(host);
    Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, op: String, args: Rest<Value<'js>>| -> rquickjs::Result<Value<'js>> {
            let Some(host) = host.as_ref() else {
                return Err(throw(
                    &ctx,
                    &GuestError::unavailable("host services are not available here"),
                ));
            };
            let Some(op) = Op::from_name(&op) else {
                return Err(throw(
                    &ctx,
                    &GuestError::invalid_argument(format!("unknown host service operation `{op}`")),
                ));
            };
            let a = Args {
                ctx: &ctx,
                op,
                values: &args.0,
            };
            let result = build(&a).and_then(|call| host(&call));
            match result {
                Ok(reply) => value(&ctx, reply),
                Err(e) => Err(throw(&ctx, &e)),
            }
        },
    )
}

/// Builds the `hostServices` object around `native` (see [`native`]).
pub(crate) fn install<'js>(ctx: &Ctx<'js>, native: Function<'js>) -> rquickjs::Result<Object<'js>> {
    let wrap: Function = ctx.eval(JS)?;
    wrap.call((native,))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The wrappers name every operation of the host API, and nothing else.
    #[test]
    fn the_javascript_wrappers_cover_exactly_the_host_api() {
        let mut named = BTreeSet::new();
        for part in JS.split("host('").skip(1) {
            named.insert(part.split('\'').next().unwrap().to_owned());
        }
        let defined: BTreeSet<String> = Op::ALL.iter().map(|op| op.name().to_owned()).collect();
        assert_eq!(named, defined);
    }
}
