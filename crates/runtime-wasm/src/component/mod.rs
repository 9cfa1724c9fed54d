//! WebAssembly components (`wasm32-wasip2`) on wasmtime's component model.
//!
//! A **command component** exports `wasi:cli/run@0.2.x` and runs exactly like a preview-1
//! command: `argv = [argv0, subject]`, stdin = payload, stdout = reply, stderr = log text,
//! environment = the deploy's. Each call gets a fresh instance from a pre-linked
//! [`CommandPre`] in the pooling allocator.
//!
//! WASI preview 2 is wasmtime-wasi's, in its synchronous form, with no files, no directories
//! and no network (TCP, UDP and name lookup are refused before any socket is made). Its
//! synchronous host functions drive their futures on a tokio runtime: this module gives every
//! call one ([`runtime`]) that has a timer and no I/O driver, so making it needs no socket or
//! epoll descriptor, nothing the agent's seccomp filter forbids.
//!
//! A **handler component** targets the `handler` world of `wit/nex.wit`: it exports
//! `handle(subject, payload) -> result<list<u8>, handle-error>` and may import
//! `nex:function/host` (module `host`, mapped onto [`nex_hostapi::Call`]). One instance is
//! made and then called for trigger after trigger, as long as its calls end normally; a trap
//! or a timeout discards it and the next call gets a fresh one.
//!
//! Both kinds may also import `wasi:http/outgoing-handler@0.2.x`: requests go to the node's
//! HTTP host service ([`http`]), as a JavaScript `fetch` does.
//!
//! Limits are the module path's: a memory cap per linear memory, a deadline by epoch
//! interruption (the same [`Ticker`](crate::Ticker)), a cap on the reply.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::{
    EPOCH_TICK, HostServices, InvokeError, LoadError, LoadInfo, MAX_STDERR, Ticker, WasmConfig,
    load_cached,
};

mod blobstore;
mod capture;
mod host;
mod http;
mod keyvalue;
mod logging;
mod messaging;
use capture::Capture;

/// The `handler` world of `wit/nex.wit`, with the standard interfaces it includes (their WIT
/// under `wit/deps/`).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nex:function/handler",
        with: {
            "wasi:keyvalue/store.bucket": super::keyvalue::KvBucket,
            "wasi:messaging/types.client": super::messaging::Client,
            "wasi:messaging/types.message": super::messaging::Message,
            "wasi:messaging/request-reply.request-options": super::messaging::RequestOptions,
            "wasi:blobstore/container.container": super::blobstore::Container,
            "wasi:blobstore/container.stream-object-names": super::blobstore::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::blobstore::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::blobstore::IncomingValue,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
        },
        // Resource handles are looked up in the store's table: a missing one is a host bug,
        // which traps.
        imports: { "wasi:messaging": trappable, "wasi:blobstore": trappable },
    });
}
use bindings::{HandleError, Handler, HandlerPre};

/// Import names a component may have: the WASI 0.2 interfaces wasmtime-wasi provides, and
/// nex's host services, each as (interface prefix, version prefix).
const PROVIDED: &[(&str, &str)] = &[
    ("wasi:cli/", "@0.2."),
    ("wasi:io/", "@0.2."),
    ("wasi:clocks/", "@0.2."),
    ("wasi:random/", "@0.2."),
    ("wasi:filesystem/", "@0.2."),
    ("wasi:sockets/", "@0.2."),
    ("nex:function/host", "@0.1."),
    ("wasi:keyvalue/store", "@0.2.0-draft"),
    ("wasi:keyvalue/atomics", "@0.2.0-draft"),
    ("wasi:keyvalue/batch", "@0.2.0-draft"),
    ("wasi:logging/logging", "@0.1.0-draft"),
    ("wasi:messaging/types", "@0.2.0-draft"),
    ("wasi:messaging/producer", "@0.2.0-draft"),
    ("wasi:messaging/request-reply", "@0.2.0-draft"),
    ("wasi:blobstore/", "@0.2.0-draft"),
    ("wasi:http/types", "@0.2."),
    ("wasi:http/outgoing-handler", "@0.2."),
];

/// Imports whose calls go to the node (and may wait on it), by prefix.
const HOST_SERVICE_IMPORTS: &[&str] = &[
    "nex:function/host@",
    "wasi:keyvalue/",
    "wasi:messaging/",
    "wasi:blobstore/",
    "wasi:http/outgoing-handler@",
];

/// Whether nex provides the import called `name` (e.g. `wasi:cli/stdout@0.2.3`).
fn provided(name: &str) -> bool {
    PROVIDED.iter().any(|(interface, version)| {
        name.strip_prefix(interface)
            .and_then(|rest| rest.find('@').map(|at| (at, &rest[at..])))
            // `wasi:cli/` names a package's interfaces; `nex:function/host` one interface. A
            // `-draft` version is served exactly; others by prefix (`@0.2.` is any 0.2.x).
            .is_some_and(|(at, v)| {
                (interface.ends_with('/') || at == 0)
                    && if version.ends_with("-draft") {
                        v == *version
                    } else {
                        v.starts_with(version)
                    }
            })
    })
}

/// The tokio runtime wasmtime-wasi's synchronous host functions run their futures on: a timer
/// (for `wasi:clocks` sleeps and pollables) and no I/O driver, so it opens no descriptors.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nex-wasi")
            .enable_time()
            .build()
            .expect("a tokio runtime without I/O needs no descriptors")
    });
    &RUNTIME
}

/// A store's data: the call's WASI context and its captured output.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    stdout: Capture,
    stderr: Capture,
    /// The host services behind `nex:function/host`.
    host: Option<HostServices>,
    /// The present call's deadline, which host calls never wait past.
    deadline: Instant,
    /// `wasi:http`: its resources' limits, and the hooks that send requests to the node.
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: http::NodeHttp,
}

impl wasmtime_wasi_http::WasiHttpView for ComponentState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        // Every `wasi:http` call comes through here: the hooks see the present call's deadline.
        self.http_hooks.deadline = self.deadline;
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A finished call's store. Dropping it tears its instance down: drop it after the reply has
/// left. A handler's live instance is meant to be kept and passed to the next call
/// ([`keep`](Self::keep)).
pub struct ComponentSpent {
    store: Store<ComponentState>,
    /// A handler's instance, whose last call ended normally.
    handler: Option<Handler>,
}

impl ComponentSpent {
    /// Whether this is a handler's live instance, worth keeping for the next call.
    pub fn keep(&self) -> bool {
        self.handler.is_some()
    }
}

/// Result of one call of a component: the reply or why it failed, what it wrote to stderr.
pub struct ComponentInvocation {
    pub result: Result<Vec<u8>, InvokeError>,
    pub stderr: Vec<u8>,
    /// Time from the call's start to the end of the guest's run.
    pub elapsed: std::time::Duration,
    /// The finished store, to drop off the reply's path.
    pub spent: ComponentSpent,
}

/// How a component is entered.
enum Entry {
    /// `wasi:cli/run`, in a fresh instance per call.
    Command(CommandPre<ComponentState>),
    /// `handle`, in an instance kept between calls.
    Handler(HandlerPre<ComponentState>),
}

/// A compiled, linked, ready-to-instantiate component.
pub struct ComponentFunction {
    engine: Engine,
    entry: Entry,
    uses_host_services: bool,
    config: WasmConfig,
    deadline_ticks: u64,
    ticker: Arc<Ticker>,
}

impl Drop for ComponentFunction {
    fn drop(&mut self) {
        self.ticker.shutdown();
    }
}

/// Refuses a component that imports something nex does not provide, naming the first such
/// import.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !provided(name) {
            return Err(LoadError::MissingImport(name.to_owned()));
        }
    }
    Ok(())
}

/// Links the interfaces nex serves beside WASI 0.2: `nex:function/host` and the standard ones
/// of the `imports` world.
fn add_host_interfaces(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    type Data = HasSelf<ComponentState>;
    fn get(s: &mut ComponentState) -> &mut ComponentState {
        s
    }
    bindings::nex::function::host::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::keyvalue::store::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::keyvalue::atomics::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::keyvalue::batch::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::logging::logging::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::messaging::types::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::messaging::producer::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::messaging::request_reply::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::blobstore::types::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::blobstore::container::add_to_linker::<_, Data>(linker, get)?;
    bindings::wasi::blobstore::blobstore::add_to_linker::<_, Data>(linker, get)?;
    Ok(())
}

impl ComponentFunction {
    /// Compiles (or loads from cache) and links the component `bytes`, whose SHA-256 hex is
    /// `hash`.
    pub fn load(
        bytes: &[u8],
        hash: &str,
        config: WasmConfig,
    ) -> Result<(Self, LoadInfo), LoadError> {
        if crate::binary_kind(bytes)? != crate::BinaryKind::Component {
            return Err(LoadError::NotComponent);
        }
        let engine = crate::engine(&config)?;
        let started = Instant::now();
        let (component, cache_hit) = load_cached(
            &engine,
            bytes,
            hash,
            config.cache_dir.as_deref(),
            |e, b| Component::new(e, b),
            // SAFETY: see `load_cached`: our own cache file, written by `Component::serialize`
            // with an engine of the same compatibility hash; wasmtime checks its header.
            |e, p| unsafe { Component::deserialize_file(e, p) },
            Component::serialize,
        )?;
        let load_time = started.elapsed();
        check_imports(&engine, &component)?;
        let mut linker: Linker<ComponentState> = Linker::new(&engine);
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(link)?;
        add_host_interfaces(&mut linker).map_err(link)?;
        let uses_host_services = component
            .component_type()
            .imports(&engine)
            .any(|(name, _)| {
                HOST_SERVICE_IMPORTS
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            });
        let pre = linker.instantiate_pre(&component).map_err(link)?;
        let entry = match CommandPre::new(pre.clone()) {
            Ok(command) => Entry::Command(command),
            Err(_) => Entry::Handler(HandlerPre::new(pre).map_err(|_| LoadError::NoRun)?),
        };
        let deadline_ticks = config.timeout.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
        let ticker = Ticker::spawn(engine.clone());
        Ok((
            Self {
                engine,
                entry,
                uses_host_services,
                config,
                deadline_ticks,
                ticker,
            },
            LoadInfo {
                cache_hit,
                load_time,
            },
        ))
    }

    /// The settings this function was loaded with.
    pub fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// Whether the component is a handler (`handle`, one instance for many calls) rather than
    /// a command (`wasi:cli/run`, a fresh instance per call).
    pub fn is_handler(&self) -> bool {
        matches!(self.entry, Entry::Handler(_))
    }

    /// Whether the component imports `nex:function/host`: its calls may block on the node.
    pub fn uses_host_services(&self) -> bool {
        self.uses_host_services
    }

    /// A store for one command call (`args` = `[argv0, subject]`, stdin = `payload`), or for a
    /// handler's instance (`args` = `[argv0]`, stdin empty).
    fn new_store(&self, subject: Option<&str>, payload: Vec<u8>) -> Store<ComponentState> {
        let stdout = Capture::strict(self.config.max_output_bytes);
        let stderr = Capture::lossy(MAX_STDERR);
        let mut wasi = WasiCtx::builder();
        let mut args = vec![self.config.argv0.as_str()];
        args.extend(subject);
        wasi.args(&args)
            .envs(&self.config.env)
            .stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(payload))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.config.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let deadline = Instant::now() + self.config.timeout;
        let state = ComponentState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            stdout,
            stderr,
            host: self.config.host_services.clone(),
            deadline,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::NodeHttp {
                host: self.config.host_services.clone(),
                deadline,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
    }

    /// Runs the function once: a command in a fresh instance with `argv[1] = subject` and
    /// `payload` on stdin, a handler's `handle(subject, payload)` in a new instance.
    /// Safe to call from many threads at once, up to `max_concurrency`.
    pub fn invoke(&self, subject: &str, payload: Vec<u8>) -> ComponentInvocation {
        self.invoke_after(None, subject, payload)
    }

    /// Like [`invoke`](Self::invoke); a handler calls `previous`'s live instance again when it
    /// [is one](ComponentSpent::keep) (otherwise `previous` is dropped first).
    pub fn invoke_after(
        &self,
        previous: Option<ComponentSpent>,
        subject: &str,
        payload: Vec<u8>,
    ) -> ComponentInvocation {
        let started = Instant::now();
        let _tokio = runtime().enter();
        let (mut store, result, handler) = match &self.entry {
            Entry::Command(pre) => {
                drop(previous);
                let mut store = self.new_store(Some(subject), payload);
                let result = self.timed(&mut store, |s| self.run_command(s, pre));
                (store, result.map(|()| None), None)
            }
            Entry::Handler(pre) => {
                let (mut store, kept) = match previous.filter(ComponentSpent::keep) {
                    Some(p) => (p.store, p.handler),
                    None => (self.new_store(None, Vec::new()), None),
                };
                store.data_mut().deadline = started + self.config.timeout;
                let (result, handler) = self.timed(&mut store, |s| {
                    self.run_handler(s, pre, kept, subject, &payload)
                });
                (store, result.map(Some), handler)
            }
        };
        let data = store.data_mut();
        let (stdout, mut stderr) = (data.stdout.take(), data.stderr.take());
        let result = match result {
            // A handler's reply is its return value; what it prints is log text.
            Ok(Some(reply)) => {
                stderr.splice(0..0, stdout);
                Ok(reply)
            }
            Ok(None) => Ok(stdout),
            Err(e) => crate::with_panic(Err(e), &stderr),
        };
        ComponentInvocation {
            result,
            stderr,
            elapsed: started.elapsed(),
            spent: ComponentSpent { store, handler },
        }
    }

    /// Runs `f` under the call's epoch deadline.
    fn timed<R>(
        &self,
        store: &mut Store<ComponentState>,
        f: impl FnOnce(&mut Store<ComponentState>) -> R,
    ) -> R {
        store.set_epoch_deadline(self.deadline_ticks);
        self.ticker.enter();
        let r = f(store);
        self.ticker.leave();
        r
    }

    /// Calls a handler: in `kept`, or in a new instance. Hands the instance back for the next
    /// call unless the call broke it (a trap, a timeout).
    fn run_handler(
        &self,
        store: &mut Store<ComponentState>,
        pre: &HandlerPre<ComponentState>,
        kept: Option<Handler>,
        subject: &str,
        payload: &[u8],
    ) -> (Result<Vec<u8>, InvokeError>, Option<Handler>) {
        let handler = match kept {
            Some(h) => h,
            None => match pre.instantiate(&mut *store) {
                Ok(h) => h,
                Err(e) => return (Err(self.instantiate_error(e)), None),
            },
        };
        match handler.call_handle(&mut *store, subject, payload) {
            Ok(Ok(reply)) if reply.len() > self.config.max_output_bytes => (
                Err(InvokeError::OutputTooLarge(self.config.max_output_bytes)),
                Some(handler),
            ),
            Ok(Ok(reply)) => (Ok(reply), Some(handler)),
            Ok(Err(HandleError::BadInput(why))) => (Err(InvokeError::BadInput(why)), Some(handler)),
            Ok(Err(HandleError::Failed(why))) => (Err(InvokeError::Failed(why)), Some(handler)),
            Err(e) => (Err(self.classify(e)), None),
        }
    }

    /// Instantiation that failed: a trap in the component's start-up is the function's fault.
    fn instantiate_error(&self, e: wasmtime::Error) -> InvokeError {
        match self.classify(e) {
            InvokeError::Trap(why) => InvokeError::Instantiate(why),
            other => other,
        }
    }

    fn run_command(
        &self,
        store: &mut Store<ComponentState>,
        pre: &CommandPre<ComponentState>,
    ) -> Result<(), InvokeError> {
        let command = pre
            .instantiate(&mut *store)
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        match command.wasi_cli_run().call_run(&mut *store) {
            Ok(Ok(())) => Ok(()),
            // `wasi:cli/run` returning an error is a failed command: exit status 1.
            Ok(Err(())) => Err(InvokeError::Exit(1)),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => Ok(()),
                Some(I32Exit(code)) => Err(InvokeError::Exit(*code)),
                None => Err(self.classify(e)),
            },
        }
    }

    fn classify(&self, e: wasmtime::Error) -> InvokeError {
        crate::classify(e, &self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_0_2_interfaces_are_provided_and_others_are_not() {
        assert!(provided("wasi:cli/stdout@0.2.3"));
        assert!(provided("wasi:io/streams@0.2.0"));
        assert!(provided("nex:function/host@0.1.0"));
        assert!(!provided("nex:function/host@0.2.0"));
        assert!(!provided("nex:function/hostile@0.1.0"));
        assert!(provided("wasi:keyvalue/store@0.2.0-draft"));
        assert!(provided("wasi:keyvalue/atomics@0.2.0-draft"));
        assert!(provided("wasi:logging/logging@0.1.0-draft"));
        assert!(!provided("wasi:keyvalue/store@0.2.0"));
        assert!(!provided("wasi:keyvalue/store@0.2.0-draft2"));
        assert!(!provided("wasi:keyvalue/watcher@0.2.0-draft"));
        assert!(!provided("wasi:cli/stdout@0.3.0"));
        assert!(!provided("acme:thing/api@1.0.0"));
        assert!(provided("wasi:http/outgoing-handler@0.2.6"));
        assert!(provided("wasi:http/types@0.2.0"));
        assert!(!provided("wasi:http/incoming-handler@0.2.0"));
    }
}
