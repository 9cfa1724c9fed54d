//! `wasi:blobstore@0.2.0-draft` onto [`nex_hostapi::object_store`]: the function's own object
//! store, as one container.
//!
//! - The container `default` is the function's object store (the one `nex:function/host`,
//!   JavaScript's `hostServices.objectStore` and `nex-guest` use). `get-container("default")`
//!   opens it and `container-exists` is true for it alone; any other name is an error
//!   ("no container"), and containers are neither created nor deleted (`create-container` and
//!   `delete-container` are errors).
//! - `write-data` = `objectStore.put` of what was written to the outgoing value's stream (at
//!   most [`MAX_OBJECT_BYTES`]); `get-data(name, start, end)` = `objectStore.get`, then the bytes
//!   `start..=end` (an `end` past the object is its end); `list-objects` = `objectStore.list`;
//!   `delete-object` = `objectStore.delete` when the object exists (`objectStore.list` says);
//!   `has-object` and `object-info` read `objectStore.list`; `clear` deletes every object;
//!   `copy-object` and `move-object` within `default` = get and put (and delete).
//! - Timestamps are 0: the object store keeps a modification time only, as text.
//!
//! A failed host call is the guest's `error` (a string), `<kind>: <message>`. A handle the
//! table does not hold is a host bug: a trap.

use nex_hostapi::object_store::{self, MAX_OBJECT_BYTES, ObjectInfo};
use nex_hostapi::{Call, GuestError, Reply};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use super::ComponentState;
use super::bindings::wasi::blobstore::{blobstore, container, types};

/// The name of the function's one container.
pub const DEFAULT_CONTAINER: &str = "default";

/// A `container` resource: the function's object store.
pub struct Container;

/// A `stream-object-names` resource: the names `list-objects` read, and how many were taken.
pub struct ObjectNames {
    names: Vec<String>,
    next: usize,
}

/// An `outgoing-value` resource: the bytes written to its stream so far.
pub struct OutgoingValue {
    body: MemoryOutputPipe,
    stream_taken: bool,
}

/// An `incoming-value` resource: an object's bytes.
pub struct IncomingValue {
    data: Vec<u8>,
}

type Result<T> = wasmtime::Result<T>;
type Outcome<T> = wasmtime::Result<std::result::Result<T, String>>;

fn guest(e: GuestError) -> String {
    format!("{}: {}", e.kind, e.message)
}

fn unexpected(reply: Reply) -> String {
    guest(GuestError::internal(format!(
        "host call: unexpected reply {reply:?}"
    )))
}

fn no_container(name: &str) -> String {
    format!("no container `{name}`: a function has one container, `{DEFAULT_CONTAINER}`")
}

impl ComponentState {
    fn objects(&mut self, call: object_store::Call) -> std::result::Result<Reply, String> {
        self.host_call(Call::ObjectStore(call)).map_err(guest)
    }

    fn object_get(&mut self, name: String) -> std::result::Result<Option<Vec<u8>>, String> {
        match self.objects(object_store::Call::Get { name })? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    fn object_put(&mut self, name: String, data: Vec<u8>) -> std::result::Result<(), String> {
        match self.objects(object_store::Call::Put { name, data })? {
            Reply::Object(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn object_list(&mut self) -> std::result::Result<Vec<ObjectInfo>, String> {
        match self.objects(object_store::Call::List)? {
            Reply::Objects(o) => Ok(o.into_iter().filter(|o| !o.deleted).collect()),
            other => Err(unexpected(other)),
        }
    }

    fn object_info_of(&mut self, name: &str) -> std::result::Result<Option<ObjectInfo>, String> {
        Ok(self.object_list()?.into_iter().find(|o| o.name == name))
    }

    fn object_delete(&mut self, name: String) -> std::result::Result<(), String> {
        if self.object_info_of(&name)?.is_none() {
            return Ok(());
        }
        match self.objects(object_store::Call::Delete { name })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Copies `src` to `dest`, both in the default container.
    fn object_copy(
        &mut self,
        src: &types::ObjectId,
        dest: &types::ObjectId,
    ) -> std::result::Result<(), String> {
        for c in [&src.container, &dest.container] {
            if c != DEFAULT_CONTAINER {
                return Err(no_container(c));
            }
        }
        let data = self
            .object_get(src.object.clone())?
            .ok_or_else(|| format!("no object `{}`", src.object))?;
        self.object_put(dest.object.clone(), data)
    }
}

impl types::Host for ComponentState {}

impl types::HostOutgoingValue for ComponentState {
    fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue {
            body: MemoryOutputPipe::new(MAX_OBJECT_BYTES),
            stream_taken: false,
        })?)
    }

    fn outgoing_value_write_body(
        &mut self,
        v: Resource<OutgoingValue>,
    ) -> Result<std::result::Result<Resource<DynOutputStream>, ()>> {
        let value = self.table.get_mut(&v)?;
        if value.stream_taken {
            return Ok(Err(()));
        }
        value.stream_taken = true;
        let stream: DynOutputStream = Box::new(value.body.clone());
        Ok(Ok(self.table.push(stream)?))
    }

    fn finish(&mut self, v: Resource<OutgoingValue>) -> Outcome<()> {
        self.table.delete(v)?;
        Ok(Ok(()))
    }

    fn drop(&mut self, v: Resource<OutgoingValue>) -> Result<()> {
        self.table.delete(v)?;
        Ok(())
    }
}

impl types::HostIncomingValue for ComponentState {
    fn incoming_value_consume_sync(&mut self, v: Resource<IncomingValue>) -> Outcome<Vec<u8>> {
        Ok(Ok(self.table.delete(v)?.data))
    }

    fn incoming_value_consume_async(
        &mut self,
        v: Resource<IncomingValue>,
    ) -> Outcome<Resource<DynInputStream>> {
        let data = self.table.delete(v)?.data;
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(data));
        Ok(Ok(self.table.push(stream)?))
    }

    fn size(&mut self, v: Resource<IncomingValue>) -> Result<u64> {
        Ok(self.table.get(&v)?.data.len() as u64)
    }

    fn drop(&mut self, v: Resource<IncomingValue>) -> Result<()> {
        self.table.delete(v)?;
        Ok(())
    }
}

impl container::Host for ComponentState {}

impl container::HostContainer for ComponentState {
    fn name(&mut self, _: Resource<Container>) -> Outcome<String> {
        Ok(Ok(DEFAULT_CONTAINER.into()))
    }

    fn info(&mut self, _: Resource<Container>) -> Outcome<types::ContainerMetadata> {
        Ok(Ok(types::ContainerMetadata {
            name: DEFAULT_CONTAINER.into(),
            created_at: 0,
        }))
    }

    fn get_data(
        &mut self,
        _: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Outcome<Resource<IncomingValue>> {
        let data = match self.object_get(name.clone()) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Err(format!("no object `{name}`"))),
            Err(e) => return Ok(Err(e)),
        };
        let len = data.len() as u64;
        if start > end || (start >= len && len > 0) {
            return Ok(Err(format!(
                "get-data `{name}`: bytes {start}..={end} are outside its {len} bytes"
            )));
        }
        // Within `data`, so the casts are lossless.
        let (from, to) = (
            start.min(len) as usize,
            end.saturating_add(1).min(len) as usize,
        );
        let data = data[from..to].to_vec();
        Ok(Ok(self.table.push(IncomingValue { data })?))
    }

    fn write_data(
        &mut self,
        _: Resource<Container>,
        name: String,
        v: Resource<OutgoingValue>,
    ) -> Outcome<()> {
        let data = self.table.get(&v)?.body.contents().to_vec();
        Ok(self.object_put(name, data))
    }

    fn list_objects(&mut self, _: Resource<Container>) -> Outcome<Resource<ObjectNames>> {
        let names = match self.object_list() {
            Ok(o) => o.into_iter().map(|o| o.name).collect(),
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(ObjectNames { names, next: 0 })?))
    }

    fn delete_object(&mut self, _: Resource<Container>, name: String) -> Outcome<()> {
        Ok(self.object_delete(name))
    }

    fn delete_objects(&mut self, _: Resource<Container>, names: Vec<String>) -> Outcome<()> {
        Ok(names.into_iter().try_for_each(|n| self.object_delete(n)))
    }

    fn has_object(&mut self, _: Resource<Container>, name: String) -> Outcome<bool> {
        Ok(self.object_info_of(&name).map(|o| o.is_some()))
    }

    fn object_info(
        &mut self,
        _: Resource<Container>,
        name: String,
    ) -> Outcome<types::ObjectMetadata> {
        Ok(match self.object_info_of(&name) {
            Ok(Some(o)) => Ok(types::ObjectMetadata {
                name: o.name,
                container: DEFAULT_CONTAINER.into(),
                created_at: 0,
                size: o.size,
            }),
            Ok(None) => Err(format!("no object `{name}`")),
            Err(e) => Err(e),
        })
    }

    fn clear(&mut self, _: Resource<Container>) -> Outcome<()> {
        let names: Vec<String> = match self.object_list() {
            Ok(o) => o.into_iter().map(|o| o.name).collect(),
            Err(e) => return Ok(Err(e)),
        };
        Ok(names.into_iter().try_for_each(|n| self.object_delete(n)))
    }

    fn drop(&mut self, c: Resource<Container>) -> Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for ComponentState {
    fn read_stream_object_names(
        &mut self,
        s: Resource<ObjectNames>,
        len: u64,
    ) -> Outcome<(Vec<String>, bool)> {
        let s = self.table.get_mut(&s)?;
        let take = usize::try_from(len).unwrap_or(usize::MAX);
        let names: Vec<String> = s.names.iter().skip(s.next).take(take).cloned().collect();
        s.next += names.len();
        Ok(Ok((names, s.next >= s.names.len())))
    }

    fn skip_stream_object_names(
        &mut self,
        s: Resource<ObjectNames>,
        num: u64,
    ) -> Outcome<(u64, bool)> {
        let s = self.table.get_mut(&s)?;
        let skip = usize::try_from(num)
            .unwrap_or(usize::MAX)
            .min(s.names.len() - s.next);
        s.next += skip;
        Ok(Ok((skip as u64, s.next >= s.names.len())))
    }

    fn drop(&mut self, s: Resource<ObjectNames>) -> Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl blobstore::Host for ComponentState {
    fn create_container(&mut self, name: String) -> Outcome<Resource<Container>> {
        Ok(Err(format!(
            "create-container `{name}`: containers are not created; a function has one, \
             `{DEFAULT_CONTAINER}`"
        )))
    }

    fn get_container(&mut self, name: String) -> Outcome<Resource<Container>> {
        if name != DEFAULT_CONTAINER {
            return Ok(Err(no_container(&name)));
        }
        Ok(Ok(self.table.push(Container)?))
    }

    fn delete_container(&mut self, name: String) -> Outcome<()> {
        Ok(Err(format!(
            "delete-container `{name}`: containers are not deleted; clear it instead"
        )))
    }

    fn container_exists(&mut self, name: String) -> Outcome<bool> {
        Ok(Ok(name == DEFAULT_CONTAINER))
    }

    fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Outcome<()> {
        Ok(self.object_copy(&src, &dest))
    }

    fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Outcome<()> {
        if src.container == dest.container && src.object == dest.object {
            return Ok(Ok(()));
        }
        Ok(self
            .object_copy(&src, &dest)
            .and_then(|()| self.object_delete(src.object)))
    }
}
