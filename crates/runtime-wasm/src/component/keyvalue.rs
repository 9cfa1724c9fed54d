//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`) onto [`nex_hostapi::kv`]: the
//! function's own bucket, through the same host call as `nex:function/host` and JavaScript.
//!
//! `open("default")` is that bucket; any other identifier is `error::no-such-store`. A failed
//! host call is `error::other("<kind>: <message>")`, with the kind of
//! [`nex_hostapi::ErrorKind`] (`InvalidArgument`, `Unavailable`, ...). Nothing here traps.
//!
//! - `list-keys` pages the sorted keys [`KEYS_PAGE`] at a time; the cursor is the index of the
//!   next key.
//! - `increment` is the node's `kv.increment` (a compare-and-set on the key's revision): the
//!   value is decimal ASCII digits, as the JavaScript and `nex-guest` counters keep it.
//! - `batch` calls are one host call per key, as the draft allows (no atomicity; the first
//!   failure ends the batch).

use nex_hostapi::{Call, GuestError, Reply, kv};
use wasmtime::component::Resource;

use super::ComponentState;
use super::bindings::wasi::keyvalue::{atomics, batch, store};

/// The identifier `open` takes for the function's own bucket.
pub const DEFAULT_STORE: &str = "default";

/// Keys `list-keys` answers at a time.
pub const KEYS_PAGE: usize = 1000;

/// A bucket resource: the function's own key-value bucket (the only one `open` gives).
pub struct KvBucket;

impl From<GuestError> for store::Error {
    fn from(e: GuestError) -> Self {
        store::Error::Other(format!("{}: {}", e.kind, e.message))
    }
}

/// A reply of the wrong variant: a bug of the node, seen by the guest as such.
fn unexpected(reply: Reply) -> store::Error {
    GuestError::internal(format!("host call: unexpected reply {reply:?}")).into()
}

impl ComponentState {
    fn kv(&mut self, call: kv::Call) -> Result<Reply, store::Error> {
        self.host_call(Call::Kv(call)).map_err(store::Error::from)
    }

    fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, store::Error> {
        match self.kv(kv::Call::Get { key })? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    fn kv_done(&mut self, call: kv::Call) -> Result<(), store::Error> {
        match self.kv(call)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl store::Host for ComponentState {
    fn open(&mut self, identifier: String) -> Result<Resource<KvBucket>, store::Error> {
        if identifier == DEFAULT_STORE {
            // The bucket has no state of its own: the handle only says `open` succeeded.
            Ok(Resource::new_own(0))
        } else {
            Err(store::Error::NoSuchStore)
        }
    }
}

impl store::HostBucket for ComponentState {
    fn get(&mut self, _: Resource<KvBucket>, key: String) -> Result<Option<Vec<u8>>, store::Error> {
        self.kv_get(key)
    }

    fn set(
        &mut self,
        _: Resource<KvBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), store::Error> {
        self.kv_done(kv::Call::Set { key, value })
    }

    fn delete(&mut self, _: Resource<KvBucket>, key: String) -> Result<(), store::Error> {
        self.kv_done(kv::Call::Delete { key })
    }

    fn exists(&mut self, _: Resource<KvBucket>, key: String) -> Result<bool, store::Error> {
        Ok(self.kv_get(key)?.is_some())
    }

    fn list_keys(
        &mut self,
        _: Resource<KvBucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, store::Error> {
        let keys = match self.kv(kv::Call::Keys)? {
            Reply::Keys(k) => k,
            other => return Err(unexpected(other)),
        };
        let start = cursor.map_or(0, |c| usize::try_from(c).unwrap_or(usize::MAX));
        let page: Vec<String> = keys.iter().skip(start).take(KEYS_PAGE).cloned().collect();
        let next = start.saturating_add(page.len());
        Ok(store::KeyResponse {
            keys: page,
            cursor: (next < keys.len()).then_some(next as u64),
        })
    }

    fn drop(&mut self, _: Resource<KvBucket>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl atomics::Host for ComponentState {
    fn increment(
        &mut self,
        _: Resource<KvBucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, store::Error> {
        match self.kv(kv::Call::Increment { key, delta })? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

impl batch::Host for ComponentState {
    fn get_many(
        &mut self,
        _: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, store::Error> {
        keys.into_iter()
            .map(|key| Ok(self.kv_get(key.clone())?.map(|v| (key, v))))
            .collect()
    }

    fn set_many(
        &mut self,
        _: Resource<KvBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), store::Error> {
        key_values
            .into_iter()
            .try_for_each(|(key, value)| self.kv_done(kv::Call::Set { key, value }))
    }

    fn delete_many(
        &mut self,
        _: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> Result<(), store::Error> {
        keys.into_iter()
            .try_for_each(|key| self.kv_done(kv::Call::Delete { key }))
    }
}
