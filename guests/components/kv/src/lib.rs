//! A handler component on the standard interfaces only: `wasi:keyvalue` (store, atomics,
//! batch), `wasi:logging`, `wasi:messaging` and `wasi:blobstore`, as a component written for
//! another WASI cloud host would use them. It imports nothing of `nex:function/host`.
//!
//! On a subject ending in `.kvget` (nex-bench), whatever the payload: `get("k")`, answering the
//! value (empty when there is none). Otherwise by payload:
//! - empty: `increment("count", 1)` in the `default` bucket; answers `count=<n>`.
//! - `other`: opens the store `other`; answers what `open` said (`error: no-such-store`).
//! - `crud`: set, get, exists, list-keys, delete and the batch calls on keys `crud.*`; answers
//!   what each saw.
//! - `set <key> <value>` / `get <key>`: one `set` or `get`; a key the host refuses is bad input
//!   (400) with the host's message.
//! - `blob <name> <data>`: `wasi:blobstore` in container `default`: writes the object through
//!   an outgoing value's stream, reads it back, lists, checks and deletes it; answers what each
//!   saw. `blob-other`: answers what `get-container("other")` said.
//! - `pub <subject> <data>`: `wasi:messaging` `producer.send`; answers `sent`.
//! - `req <subject> <data> <n>`: `request-reply.request` expecting `n` replies within 1 s;
//!   answers the replies, `,`-separated. A subject the host refuses is bad input (400).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "handler",
    generate_all,
});

use wasi::blobstore::blobstore as blobs;
use wasi::blobstore::types::{IncomingValue, OutgoingValue};
use wasi::keyvalue::store::{self, Bucket};
use wasi::keyvalue::{atomics, batch};
use wasi::logging::logging::{log, Level};
use wasi::messaging::{producer, request_reply, types};

/// Writes, reads, lists, checks and deletes object `name` in container `default`.
fn blob(name: &str, data: &str) -> Result<String, String> {
    let c = blobs::get_container("default")?;
    let value = OutgoingValue::new_outgoing_value();
    let body = value
        .outgoing_value_write_body()
        .map_err(|()| "no body stream".to_string())?;
    body.blocking_write_and_flush(data.as_bytes())
        .map_err(|e| format!("write: {e:?}"))?;
    drop(body);
    c.write_data(name, &value)?;
    OutgoingValue::finish(value)?;
    let mut out = Vec::new();
    let all = IncomingValue::incoming_value_consume_sync(c.get_data(name, 0, u64::MAX)?)?;
    let part = IncomingValue::incoming_value_consume_sync(c.get_data(name, 1, 2)?)?;
    out.push(format!(
        "read={} part={}",
        String::from_utf8_lossy(&all),
        String::from_utf8_lossy(&part)
    ));
    let (names, end) = c.list_objects()?.read_stream_object_names(100)?;
    out.push(format!("list={} end={end}", names.join(",")));
    out.push(format!("size={}", c.object_info(name)?.size));
    out.push(format!("has={}", c.has_object(name)?));
    c.delete_object(name)?;
    out.push(format!("deleted={}", !c.has_object(name)?));
    Ok(out.join(";"))
}

struct Kv;

/// A failed store call: bad input when the host refused the arguments, a failure otherwise.
fn fail(what: &str, e: store::Error) -> HandleError {
    match e {
        store::Error::Other(m) if m.starts_with("InvalidArgument") => {
            HandleError::BadInput(format!("{what}: {m}"))
        }
        e => HandleError::Failed(format!("{what}: {e:?}")),
    }
}

fn open() -> Result<Bucket, HandleError> {
    store::open("default").map_err(|e| fail("open", e))
}

/// Set, get, exists, list-keys, delete, and the batch calls; what each saw, `;`-separated.
fn crud(b: &Bucket) -> Result<String, store::Error> {
    let mut out = Vec::new();
    b.set("crud.a", b"1")?;
    b.set("crud.b", b"2")?;
    out.push(format!("get={:?}", b.get("crud.a")?.map(String::from_utf8)));
    out.push(format!("exists={}", b.exists("crud.a")?));
    let keys = b.list_keys(None)?;
    out.push(format!("keys={}", keys.keys.join(",")));
    b.delete("crud.a")?;
    out.push(format!("deleted={}", !b.exists("crud.a")?));
    batch::set_many(
        b,
        &[
            ("crud.c".into(), b"3".to_vec()),
            ("crud.d".into(), b"4".to_vec()),
        ],
    )?;
    let many = batch::get_many(b, &["crud.c".into(), "crud.x".into(), "crud.d".into()])?;
    let many: Vec<String> = many
        .into_iter()
        .map(|kv| {
            kv.map_or("-".into(), |(k, v)| {
                format!("{k}={}", String::from_utf8_lossy(&v))
            })
        })
        .collect();
    out.push(format!("many={}", many.join(",")));
    batch::delete_many(b, &["crud.b".into(), "crud.c".into(), "crud.d".into()])?;
    out.push(format!("left={}", b.list_keys(None)?.keys.join(",")));
    Ok(out.join(";"))
}

/// A failed messaging call, as [`fail`] does for the store.
fn msg_fail(what: &str, e: types::Error) -> HandleError {
    match e {
        types::Error::Other(m) if m.starts_with("InvalidArgument") => {
            HandleError::BadInput(format!("{what}: {m}"))
        }
        e => HandleError::Failed(format!("{what}: {e:?}")),
    }
}

fn client() -> Result<types::Client, HandleError> {
    types::Client::connect("default").map_err(|e| msg_fail("connect", e))
}

impl Guest for Kv {
    fn handle(subject: String, payload: Vec<u8>) -> Result<Vec<u8>, HandleError> {
        if subject.ends_with(".kvget") {
            return Ok(open()?
                .get("k")
                .map_err(|e| fail("get", e))?
                .unwrap_or_default());
        }
        let payload = String::from_utf8(payload)
            .map_err(|_| HandleError::BadInput("the payload is not UTF-8".into()))?;
        let words: Vec<&str> = payload.split(' ').collect();
        let reply = match words.as_slice() {
            [""] => {
                let n =
                    atomics::increment(&open()?, "count", 1).map_err(|e| fail("increment", e))?;
                log(Level::Info, "kv", &format!("count {n} on {subject}"));
                format!("count={n}")
            }
            ["other"] => match store::open("other") {
                Ok(_) => "opened other".into(),
                Err(e) => format!(
                    "error: {}",
                    match e {
                        store::Error::NoSuchStore => "no-such-store".into(),
                        store::Error::AccessDenied => "access-denied".into(),
                        store::Error::Other(m) => m,
                    }
                ),
            },
            ["crud"] => crud(&open()?).map_err(|e| fail("crud", e))?,
            ["set", key, value] => {
                open()?
                    .set(key, value.as_bytes())
                    .map_err(|e| fail("set", e))?;
                "ok".into()
            }
            ["get", key] => match open()?.get(key).map_err(|e| fail("get", e))? {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => "none".into(),
            },
            ["blob", name, data] => blob(name, data).map_err(HandleError::Failed)?,
            ["blob-other"] => match blobs::get_container("other") {
                Ok(_) => "opened other".into(),
                Err(e) => format!("error: {e}"),
            },
            ["pub", subject, data] => {
                let m = types::Message::new(data.as_bytes());
                producer::send(&client()?, subject, m).map_err(|e| msg_fail("send", e))?;
                "sent".into()
            }
            ["req", subject, data, n] => {
                let options = request_reply::RequestOptions::new();
                options.set_timeout_ms(1000);
                options.set_expected_replies(n.parse().unwrap_or(1));
                let m = types::Message::new(data.as_bytes());
                let replies = request_reply::request(&client()?, subject, &m, Some(options))
                    .map_err(|e| msg_fail("request", e))?;
                let replies: Vec<String> = replies
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.data()).into_owned())
                    .collect();
                replies.join(",")
            }
            _ => {
                return Err(HandleError::BadInput(format!(
                    "unknown command `{payload}`"
                )))
            }
        };
        Ok(reply.into_bytes())
    }
}

export!(Kv);
