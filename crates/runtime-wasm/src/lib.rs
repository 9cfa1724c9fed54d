//! WebAssembly runtime for nex functions: WASI preview-1 modules on wasmtime.
//!
//! This crate owns compiling a module (once per artifact hash, cached on disk so a restart does
//! not recompile), checking that it is runnable, and running it once per trigger. A module is
//! one of two kinds:
//! - a **command** (exports `_start`, the seed's model): `argv = [argv0, subject]`, stdin =
//!   payload, stdout = reply, stderr = log text. Each run gets a fresh instance from a pre-linked
//!   [`InstancePre`] in wasmtime's pooling allocator (copy-on-write memory images);
//! - a **handler** (exports `nex_alloc` and `nex_call`, as `nex-guest`'s `handler!` makes): one
//!   instance is made, initialized once (`_initialize`) and then called for every trigger, as
//!   long as its calls end normally; a trap or a timeout discards it and the next call gets a
//!   fresh one. State kept in the instance survives between calls, like a warm Lambda.
//!
//! Every call has a memory cap and a deadline enforced by epoch interruption. The WASI
//! preview-1 functions are this crate's own (module `wasi`): synchronous, working on the call's
//! in-memory stdin/stdout/stderr, with nothing else open. A module may also import the host
//! services (module `nex`, see [`HostServices`]), which the embedder performs.
//!
//! It knows nothing of NATS, processes or the agent protocol: the agent drives it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    ModuleExport, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
    ValType,
};

pub mod component;
mod host;
mod recycle;
mod wasi;
pub use component::{ComponentFunction, ComponentInvocation, ComponentSpent};
pub use host::{HostFn, HostServices};
use wasi::{Exit, Io, OutputTooLarge, Process};

/// How often the epoch advances; deadlines are rounded up to this.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Instances one store takes before it is dropped: a store's own setup and teardown are shared
/// by this many calls, each still in its own fresh instance.
pub const INSTANCES_PER_STORE: u32 = 8;
/// A store stops taking instances once theirs hold this much linear memory, so sharing a store
/// never keeps much more memory than one call may use.
const MEMORY_HELD_PER_STORE: usize = 8 << 20;
/// Most stderr bytes kept per invocation.
pub(crate) const MAX_STDERR: usize = 64 * 1024;

/// Errors loading a module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("the artifact is not a WebAssembly module (it does not start with `\\0asm`)")]
    NotWasm,
    /// The bytes are a component, given to the loader of modules (use [`ComponentFunction`]).
    #[error("the artifact is a WebAssembly component, not a core module")]
    Component,
    /// The bytes are a core module, given to the loader of components (use [`WasmFunction`]).
    #[error("the artifact is a core WebAssembly module, not a component")]
    NotComponent,
    /// The component imports an interface nex does not provide.
    #[error(
        "the WebAssembly component imports `{0}`, which nex does not provide (nex provides \
         WASI 0.2 `wasi:cli`, `wasi:io`, `wasi:clocks`, `wasi:random`, `wasi:filesystem` and \
         `wasi:sockets`, the last two with nothing open)"
    )]
    MissingImport(String),
    /// The component exports neither `wasi:cli/run` nor a handler's `handle`.
    #[error(
        "the WebAssembly component exports neither `wasi:cli/run@0.2.x` nor `handle`: build a \
         command (a binary with `main`, `--target wasm32-wasip2`) or a handler of the `handler` \
         world in nex's `wit/nex.wit`"
    )]
    NoRun,
    /// Compilation failed.
    #[error("the WebAssembly module does not compile: {0}")]
    Compile(String),
    /// The module has no `_start` export and is not a handler either.
    #[error(
        "the WebAssembly module exports no `_start` function: build a WASI command (a binary with \
         `main`), or a handler library (`nex_guest::handler!`, exporting `nex_alloc` and `nex_call`)"
    )]
    NoStart,
    /// The module exports handler functions of the wrong shape.
    #[error("the WebAssembly handler is malformed: {0}")]
    Handler(String),
    /// The module imports something WASI preview 1 does not provide.
    #[error("the WebAssembly module cannot be linked: {0}")]
    Link(String),
    /// The engine could not be built with the requested limits.
    #[error("could not configure wasmtime: {0}")]
    Engine(String),
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvokeError {
    /// The function ran past its deadline and was interrupted.
    #[error("the function exceeded its time limit of {0:?}")]
    Timeout(Duration),
    /// The function trapped (panic, unreachable, out of bounds, memory limit...).
    #[error("the function trapped: {0}")]
    Trap(String),
    /// The function exited with a non-zero status.
    #[error("the function exited with status {0}")]
    Exit(i32),
    /// A handler returned an error (its instance is kept).
    #[error("the function returned an error: {0}")]
    Failed(String),
    /// A handler component refused its input (`handle-error::bad-input`; its instance is kept).
    #[error("the function refused its input: {0}")]
    BadInput(String),
    /// The function wrote more output than allowed.
    #[error("the function's reply is larger than {0} bytes")]
    OutputTooLarge(usize),
    /// No instance could be made (pool exhausted, memory limit at start).
    #[error("could not instantiate the function: {0}")]
    Instantiate(String),
}

/// Limits and settings of one loaded function.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Linear memory cap per instance, bytes.
    pub memory_bytes: usize,
    /// Wall-clock limit per invocation.
    pub timeout: Duration,
    /// Most calls running at once. The pool has two slots per call and one more: a finished
    /// call's [`Spent`] instance keeps its slot until it is dropped.
    pub max_concurrency: u32,
    /// Most reply bytes.
    pub max_output_bytes: usize,
    /// Directory of the compiled-module cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// `argv[0]` the function sees.
    pub argv0: String,
    /// Environment variables the function sees.
    pub env: Vec<(String, String)>,
    /// The host services behind the `nex` import module; a function that imports it and has
    /// none gets an error from every call.
    pub host_services: Option<HostServices>,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(5),
            max_concurrency: 16,
            max_output_bytes: 8 << 20,
            cache_dir: None,
            argv0: "nexfunction".into(),
            env: Vec::new(),
            host_services: None,
        }
    }
}

/// What happened while loading.
#[derive(Debug, Clone, Default)]
pub struct LoadInfo {
    /// The compiled module came from the disk cache.
    pub cache_hit: bool,
    /// Time spent compiling or deserializing.
    pub load_time: Duration,
}

/// Result of one invocation: the reply or why it failed, plus what the function wrote to stderr.
pub struct Invocation {
    pub result: Result<Vec<u8>, InvokeError>,
    pub stderr: Vec<u8>,
    /// Time from the call's start to the end of the guest's run (teardown not included).
    pub elapsed: Duration,
    /// The finished instance.
    pub spent: Spent,
}

/// A finished call's instance. Dropping it tears the instance down and resets its memory slot
/// for the next call (a few µs): drop it after the reply has left, not before. A handler's
/// instance is meant to be kept and passed to the next call ([`keep_when_idle`](Self::keep_when_idle)).
pub struct Spent {
    store: Store<State>,
    /// Instances made in `store` so far.
    instances: u32,
    /// Linear memory of those instances, bytes: it stays allocated until the store is dropped.
    memory_bytes: usize,
    /// The call ended normally, so the store may take another instance.
    reusable: bool,
    /// A handler's live instance, or a command's instance to recycle, for the next call.
    warm: Option<Warm>,
}

impl Spent {
    /// Whether [`WasmFunction::invoke_after`] can make its next instance in this one's store
    /// (saving a store's setup and teardown), or — for a handler — call the same instance again;
    /// otherwise it should be dropped.
    pub fn has_room(&self) -> bool {
        self.reusable
            && (self.warm.is_some()
                || (self.instances < INSTANCES_PER_STORE
                    && self.memory_bytes < MEMORY_HELD_PER_STORE))
    }

    /// Whether this is a handler's live instance, worth keeping while no call comes: the next
    /// call then skips instantiation and the handler's own initialization.
    pub fn keep_when_idle(&self) -> bool {
        self.reusable && self.warm.is_some()
    }

    /// Gets a kept instance ready for its next call now, so that call does not wait for it: a
    /// recycled command's memory and globals are put back to a fresh instance's. Returns
    /// `false` when the instance cannot be used again (drop it then).
    pub fn prepare(&mut self) -> bool {
        let Some(Warm::Command(recycled)) = &mut self.warm else {
            return true;
        };
        if recycled.dirty {
            if !recycled.reset(&mut self.store) {
                self.warm = None;
                self.reusable = false;
                return false;
            }
            recycled.dirty = false;
        }
        true
    }
}

/// An instance kept for the next call.
enum Warm {
    /// A handler's instance, called again as it is.
    Handler(HandlerInstance),
    /// A command's instance, reset to a fresh instance's state before it runs again.
    Command(Recycled),
}

impl Warm {
    fn memory(&self) -> Memory {
        match self {
            Warm::Handler(h) => h.memory,
            Warm::Command(c) => c.memory,
        }
    }
}

/// A handler instance's entry points, resolved once when it is made.
struct HandlerInstance {
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    call: TypedFunc<(u32, u32, u32), u64>,
}

/// A command instance that ran and may run again once reset (module `recycle`).
struct Recycled {
    start: TypedFunc<(), ()>,
    memory: Memory,
    globals: Vec<wasmtime::Global>,
    snapshot: Arc<recycle::Snapshot>,
    /// It ran since its last reset.
    dirty: bool,
}

/// How a command's instances are recycled, when its module allows it.
struct Recycling {
    plan: recycle::Plan,
    /// A fresh instance's memory and globals (globals from the first instance).
    snapshot: OnceLock<Arc<recycle::Snapshot>>,
}

impl Recycling {
    /// Takes a fresh `instance` (before it runs) for recycling; the first one also gives the
    /// snapshot. `None` when its memory or globals cannot be reached.
    fn adopt(
        &self,
        store: &mut Store<State>,
        instance: &wasmtime::Instance,
        start: &TypedFunc<(), ()>,
    ) -> Option<Recycled> {
        let memory = store.data().io.memory?;
        let globals = self
            .plan
            .globals
            .iter()
            .map(|name| instance.get_global(&mut *store, name))
            .collect::<Option<Vec<_>>>()?;
        let snapshot = self
            .snapshot
            .get_or_init(|| {
                let values = globals.iter().map(|g| g.get(&mut *store)).collect();
                let size = memory.data_size(&*store);
                Arc::new(recycle::Snapshot::new(&self.plan, size, values))
            })
            .clone();
        Some(Recycled {
            start: start.clone(),
            memory,
            globals,
            snapshot,
            dirty: false,
        })
    }
}

impl Recycled {
    /// Puts memory and globals back to a fresh instance's; `false` if that is not possible.
    fn reset(&mut self, store: &mut Store<State>) -> bool {
        if !self
            .snapshot
            .restore_memory(self.memory.data_mut(&mut *store))
        {
            return false;
        }
        self.globals
            .iter()
            .zip(&self.snapshot.globals)
            .all(|(g, v)| g.set(&mut *store, *v).is_ok())
    }
}

/// How a module is entered.
enum Entry {
    /// A WASI command: a fresh instance runs `_start` per call.
    Command { start: ModuleExport },
    /// A handler: `_initialize` once per instance, then `nex_alloc` and `nex_call` per call.
    Handler(HandlerExports),
}

/// A handler module's entry points.
struct HandlerExports {
    initialize: Option<ModuleExport>,
    alloc: ModuleExport,
    call: ModuleExport,
}

/// Bit 31 of the length `nex_call` returns: the bytes are an error message, not a reply.
const HANDLER_ERROR: u64 = 1 << 31;

struct State {
    process: Arc<Process>,
    io: Io,
    limits: StoreLimits,
}

impl wasi::WasiState for State {
    fn process(&self) -> &Process {
        &self.process
    }
    fn io(&mut self) -> &mut Io {
        &mut self.io
    }
}

/// A compiled, linked, ready-to-instantiate WASI command.
pub struct WasmFunction {
    engine: Engine,
    pre: InstancePre<State>,
    /// The entry points, resolved once instead of by name on every call.
    entry: Entry,
    /// The exported `memory` WASI reads and writes, if any.
    memory: Option<wasmtime::ModuleExport>,
    process: Arc<Process>,
    config: WasmConfig,
    deadline_ticks: u64,
    ticker: Arc<Ticker>,
    uses_host_services: bool,
    /// A command whose instances are recycled (module `recycle`); `None`: a fresh instance per
    /// call.
    recycling: Option<Recycling>,
}

impl Drop for WasmFunction {
    fn drop(&mut self) {
        self.ticker.shutdown();
    }
}

/// Core instances and tables one component instance may hold: a `wasm32-wasip2` Rust program
/// has three or four core instances, one memory and a few tables; a Python function built by
/// `componentize-py` has 14 core modules (CPython, its C library and extension modules, the
/// WASI adapter and shims) in 15 core instances. Bounded so that one component cannot take the
/// whole pool.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

fn engine(config: &WasmConfig) -> Result<Engine, LoadError> {
    let mut pool = PoolingAllocationConfig::new();
    let slots = (INSTANCES_PER_STORE + 1) * config.max_concurrency.max(1) + 1;
    // A component's core instances come from the same pool: room for `slots` modules, or for a
    // component per call (plus one finished) at full concurrency.
    let components = 2 * config.max_concurrency.max(1) + 1;
    let per = CORE_INSTANCES_PER_COMPONENT;
    pool.total_core_instances(slots.max(components * per))
        .total_memories(slots.max(components * 2))
        .total_tables(slots.max(components * per))
        .total_stacks(slots)
        .total_component_instances(components)
        .max_core_instances_per_component(per)
        .max_memories_per_component(2)
        .max_tables_per_component(per)
        .max_memory_size(config.memory_bytes)
        // Reset the first pages of a slot with memset instead of giving them back to the kernel:
        // a command's hot data is small, and re-faulting it on every call costs more than zeroing.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        // On Linux 6.7+ the kernel tells which pages a call dirtied (PAGEMAP_SCAN), so a reset
        // touches only those instead of memsetting the whole resident prefix.
        .pagemap_scan(Enabled::Auto);
    let mut c = Config::new();
    c.epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .parallel_compilation(true);
    Engine::new(&c).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// Opens what the runtime needs from the file system before a sandbox takes it away: wasmtime
/// resets memory slots with the `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap`, which it opens on
/// first use. Returns whether that fast reset is available.
pub fn prepare_for_sandbox() -> bool {
    // Our own recycling of command instances asks the kernel the same question.
    recycle::available() && PoolingAllocationConfig::is_pagemap_scan_available()
}

/// What a WebAssembly binary is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// A core module: [`WasmFunction`].
    Module,
    /// A component: [`ComponentFunction`].
    Component,
}

/// Detects what kind of binary `bytes` is, before compiling (the header `wasmparser` reads).
pub fn binary_kind(bytes: &[u8]) -> Result<BinaryKind, LoadError> {
    if !wasmparser::Parser::is_core_wasm(bytes) && !wasmparser::Parser::is_component(bytes) {
        return Err(LoadError::NotWasm);
    }
    Ok(if wasmparser::Parser::is_component(bytes) {
        BinaryKind::Component
    } else {
        BinaryKind::Module
    })
}

/// Checks that `bytes` is a core module, before compiling.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    match binary_kind(bytes)? {
        BinaryKind::Module => Ok(()),
        BinaryKind::Component => Err(LoadError::Component),
    }
}

fn cache_path(engine: &Engine, dir: &Path, hash: &str) -> Option<PathBuf> {
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    // What nex does to a module before compiling it (module `recycle`) is part of the key.
    recycle::REWRITE_VERSION.hash(&mut h);
    Some(dir.join(format!("{hash}-{:016x}.cwasm", h.finish())))
}

fn load_module(
    engine: &Engine,
    bytes: &[u8],
    hash: &str,
    cache_dir: Option<&Path>,
) -> Result<(Module, bool), LoadError> {
    load_cached(
        engine,
        bytes,
        hash,
        cache_dir,
        |e, b| Module::new(e, b),
        // SAFETY: see `load_cached`.
        |e, p| unsafe { Module::deserialize_file(e, p) },
        Module::serialize,
    )
}

/// Compiles `bytes` with `compile`, or loads what an earlier run cached on disk.
///
/// `deserialize` must only be called on files this crate wrote: the cache file is one this
/// crate serialized with a compatible engine (the name carries the engine's compatibility
/// hash) into the node's private cache directory; wasmtime checks its header and version
/// before use, and we fall back to compiling on any error.
pub(crate) fn load_cached<T>(
    engine: &Engine,
    bytes: &[u8],
    hash: &str,
    cache_dir: Option<&Path>,
    compile: impl FnOnce(&Engine, &[u8]) -> wasmtime::Result<T>,
    deserialize: impl FnOnce(&Engine, &Path) -> wasmtime::Result<T>,
    serialize: impl FnOnce(&T) -> wasmtime::Result<Vec<u8>>,
) -> Result<(T, bool), LoadError> {
    let path = cache_dir.and_then(|d| cache_path(engine, d, hash));
    if let Some(p) = path.as_deref().filter(|p| p.is_file()) {
        match deserialize(engine, p) {
            Ok(m) => return Ok((m, true)),
            Err(e) => tracing::warn!(path = %p.display(), "ignoring bad cache entry: {e:#}"),
        }
    }
    let compiled = compile(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    if let Some(p) = path
        && let Err(e) = store_in_cache(serialize(&compiled), &p)
    {
        tracing::warn!(path = %p.display(), "could not write compiled-module cache: {e:#}");
    }
    Ok((compiled, false))
}

fn store_in_cache(bytes: wasmtime::Result<Vec<u8>>, path: &Path) -> std::io::Result<()> {
    let bytes = bytes.map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

impl WasmFunction {
    /// Compiles (or loads from cache) and links `bytes`, whose SHA-256 hex is `hash`.
    pub fn load(
        bytes: &[u8],
        hash: &str,
        config: WasmConfig,
    ) -> Result<(Self, LoadInfo), LoadError> {
        check_header(bytes)?;
        let engine = engine(&config)?;
        let started = Instant::now();
        // Whether a command's instances can be recycled depends on the module alone; the
        // module is compiled with its mutable globals exported for that.
        let plan = recycle::plan(bytes);
        let compiled = match &plan {
            Ok((_, Some(rewritten))) => rewritten.as_slice(),
            _ => bytes,
        };
        let (module, cache_hit) =
            load_module(&engine, compiled, hash, config.cache_dir.as_deref())?;
        let load_time = started.elapsed();
        let entry = entry_of(&module)?;
        let memory = match module.get_export("memory") {
            Some(wasmtime::ExternType::Memory(_)) => module.get_export_index("memory"),
            _ => None,
        };
        // Recycling resets the memory WASI uses, the one exported as `memory`.
        let recycling = match (plan, &entry) {
            (Ok((plan, _)), Entry::Command { .. }) if recycle::available() && memory.is_some() => {
                Some(Recycling {
                    plan,
                    snapshot: OnceLock::new(),
                })
            }
            (Err(why), Entry::Command { .. }) => {
                tracing::debug!("a fresh instance per call: {why}");
                None
            }
            _ => None,
        };
        let mut linker: Linker<State> = Linker::new(&engine);
        wasi::add_to_linker(&mut linker, &module).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let uses_host_services = host::imported_by(&module);
        if uses_host_services {
            host::add_to_linker(&mut linker).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        }
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let deadline_ticks = config.timeout.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
        let ticker = Ticker::spawn(engine.clone());
        let process = Arc::new(Process::new(
            &config.argv0,
            &config.env,
            config.max_output_bytes,
            MAX_STDERR,
            config.host_services.clone(),
        ));
        Ok((
            Self {
                engine,
                pre,
                entry,
                memory,
                process,
                config,
                deadline_ticks,
                ticker,
                uses_host_services,
                recycling,
            },
            LoadInfo {
                cache_hit,
                load_time,
            },
        ))
    }

    /// Whether the module imports the host services (`nex` module): its calls may block on the
    /// node.
    pub fn uses_host_services(&self) -> bool {
        self.uses_host_services
    }

    /// The settings this function was loaded with.
    pub fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// Whether a command's instance is reset and reused after a call that ended normally,
    /// rather than made anew for every call (the guest sees the same either way).
    pub fn recycles_instances(&self) -> bool {
        self.recycling.is_some()
    }

    /// Whether the module is a handler (one instance called per trigger) rather than a WASI
    /// command (a fresh instance per trigger).
    pub fn is_handler(&self) -> bool {
        matches!(self.entry, Entry::Handler(_))
    }

    /// Runs the function once: a command with `argv[1] = subject` and `payload` on stdin, a
    /// handler with `nex_call(subject, payload)` in a new instance.
    /// Safe to call from many threads at once, up to `max_concurrency`.
    pub fn invoke(&self, subject: &str, payload: Vec<u8>) -> Invocation {
        self.invoke_after(None, subject, payload)
    }

    /// Like [`invoke`](Self::invoke), making the instance in `previous`'s store when it
    /// [has room](Spent::has_room), or for a handler, calling `previous`'s live instance again
    /// (otherwise `previous` is dropped first).
    pub fn invoke_after(
        &self,
        previous: Option<Spent>,
        subject: &str,
        payload: Vec<u8>,
    ) -> Invocation {
        let started = Instant::now();
        let handler = self.is_handler();
        let (stdin, input) = if handler {
            (Vec::new(), payload)
        } else {
            (payload, Vec::new())
        };
        let mut io = Io::new(subject, stdin, started + self.config.timeout);
        // A kept store that cannot take this call is dropped before a new one is made.
        let previous = previous
            .filter(Spent::has_room)
            .and_then(|mut p| p.prepare().then_some(p));
        let (mut store, instances, memory_bytes, warm) = match previous {
            Some(mut p) => {
                let warm = p.warm.take();
                io.memory = warm.as_ref().map(Warm::memory);
                p.store.data_mut().io = io;
                (p.store, p.instances, p.memory_bytes, warm)
            }
            None => (self.new_store(io), 0, 0, None),
        };
        store.set_epoch_deadline(self.deadline_ticks);
        self.ticker.enter();
        let made = warm.is_none();
        let (result, warm) = match &self.entry {
            Entry::Command { start } => {
                let kept = match warm {
                    Some(Warm::Command(r)) => Some(r),
                    _ => None,
                };
                let (result, kept) = self.run_command(&mut store, start, kept);
                (result.map(|()| None), kept.map(Warm::Command))
            }
            Entry::Handler(exports) => {
                let kept = match warm {
                    Some(Warm::Handler(h)) => Some(h),
                    _ => None,
                };
                let (result, kept) = self.run_handler(&mut store, exports, kept, subject, &input);
                (result, kept.map(Warm::Handler))
            }
        };
        self.ticker.leave();
        let memory = store.data().io.memory.map_or(0, |m| m.data_size(&store));
        let io = &mut store.data_mut().io;
        let (stdout, mut stderr) = (
            std::mem::take(&mut io.stdout),
            std::mem::take(&mut io.stderr),
        );
        // A command's store may take another instance after a normal end; a handler keeps its
        // instance unless the call broke it.
        let reusable = warm.is_some() || result.is_ok();
        let result = match result {
            Ok(Some(reply)) => {
                // A handler's reply is its return value; what it prints is log text.
                stderr.extend_from_slice(&stdout);
                Ok(reply)
            }
            Ok(None) => Ok(stdout),
            Err(e) => with_panic(Err(e), &stderr),
        };
        Invocation {
            result,
            stderr,
            elapsed: started.elapsed(),
            spent: Spent {
                store,
                // A kept instance was counted when it was made; one left behind in the store
                // (its call broke it or grew its memory) is counted again at its present size.
                instances: instances + u32::from(made),
                memory_bytes: memory_bytes + if made || warm.is_none() { memory } else { 0 },
                reusable,
                warm,
            },
        }
    }

    fn new_store(&self, io: Io) -> Store<State> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.config.memory_bytes)
            .instances(INSTANCES_PER_STORE as usize)
            .memories(INSTANCES_PER_STORE as usize)
            .tables(INSTANCES_PER_STORE as usize)
            .trap_on_grow_failure(true)
            .build();
        let state = State {
            process: self.process.clone(),
            io,
            limits,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
    }

    /// Makes a fresh instance and hands back its exported memory.
    fn instantiate(&self, store: &mut Store<State>) -> Result<wasmtime::Instance, InvokeError> {
        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        if let Some(memory) = &self.memory {
            store.data_mut().io.memory = instance
                .get_module_export(&mut *store, memory)
                .and_then(wasmtime::Extern::into_memory);
        }
        Ok(instance)
    }

    /// Runs a command: in `kept` (already reset), or in a fresh instance. Hands the instance
    /// back for recycling when the call ended normally and the module allows it.
    fn run_command(
        &self,
        store: &mut Store<State>,
        start: &ModuleExport,
        kept: Option<Recycled>,
    ) -> (Result<(), InvokeError>, Option<Recycled>) {
        let (entry, recycled) = match kept {
            Some(r) => (r.start.clone(), Some(r)),
            None => {
                let instance = match self.instantiate(store) {
                    Ok(i) => i,
                    Err(e) => return (Err(e), None),
                };
                let entry = match typed_export::<(), ()>(store, &instance, start) {
                    Ok(f) => f,
                    Err(e) => return (Err(e), None),
                };
                let recycled = self
                    .recycling
                    .as_ref()
                    .and_then(|r| r.adopt(store, &instance, &entry));
                (entry, recycled)
            }
        };
        let result = match entry.call(&mut *store, ()) {
            Ok(()) => Ok(()),
            // `proc_exit(0)` is a normal end of a command.
            Err(e) if e.downcast_ref::<Exit>().is_some_and(|x| x.0 == 0) => Ok(()),
            Err(e) => Err(self.classify(e)),
        };
        // A call that grew the memory cannot be undone: its instance is not recycled.
        let recycled = recycled
            .filter(|r| result.is_ok() && r.memory.data_size(&*store) == r.snapshot.memory_size)
            .map(|mut r| {
                r.dirty = true;
                r
            });
        (result, recycled)
    }

    /// Calls a handler: in `warm`, or in a new instance made and initialized first. Hands the
    /// instance back for the next call unless the call broke it (a trap, a timeout).
    fn run_handler(
        &self,
        store: &mut Store<State>,
        exports: &HandlerExports,
        warm: Option<HandlerInstance>,
        subject: &str,
        payload: &[u8],
    ) -> (
        Result<Option<Vec<u8>>, InvokeError>,
        Option<HandlerInstance>,
    ) {
        let warm = match warm {
            Some(w) => w,
            None => match self.new_handler(store, exports) {
                Ok(w) => w,
                Err(e) => return (Err(e), None),
            },
        };
        let result = self.call_handler(store, &warm, subject, payload);
        let keep = matches!(result, Ok(_) | Err(InvokeError::Failed(_)));
        (result.map(Some), keep.then_some(warm))
    }

    fn new_handler(
        &self,
        store: &mut Store<State>,
        exports: &HandlerExports,
    ) -> Result<HandlerInstance, InvokeError> {
        let HandlerExports {
            initialize,
            alloc,
            call,
        } = exports;
        let instance = self.instantiate(store)?;
        let memory = store.data().io.memory.ok_or_else(|| {
            InvokeError::Instantiate("a handler must export its memory as `memory`".into())
        })?;
        if let Some(initialize) = initialize {
            let initialize = typed_export::<(), ()>(store, &instance, initialize)?;
            initialize
                .call(&mut *store, ())
                .map_err(|e| self.classify(e))?;
        }
        Ok(HandlerInstance {
            memory,
            alloc: typed_export(store, &instance, alloc)?,
            call: typed_export(store, &instance, call)?,
        })
    }

    fn call_handler(
        &self,
        store: &mut Store<State>,
        warm: &HandlerInstance,
        subject: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, InvokeError> {
        let broken = |what: &str| InvokeError::Trap(format!("the handler's `{what}` is broken"));
        let len = subject.len() + payload.len();
        let len32 = u32::try_from(len).map_err(|_| broken("nex_alloc"))?;
        let at = warm
            .alloc
            .call(&mut *store, len32)
            .map_err(|e| self.classify(e))? as usize;
        let input = warm
            .memory
            .data_mut(&mut *store)
            .get_mut(at..at + len)
            .ok_or_else(|| broken("nex_alloc"))?;
        let (s, p) = input.split_at_mut(subject.len());
        s.copy_from_slice(subject.as_bytes());
        p.copy_from_slice(payload);
        let packed = warm
            .call
            .call(
                &mut *store,
                (at as u32, subject.len() as u32, payload.len() as u32),
            )
            .map_err(|e| self.classify(e))?;
        let at = (packed >> 32) as usize;
        let len = (packed & (HANDLER_ERROR - 1)) as usize;
        if len > self.config.max_output_bytes {
            return Err(InvokeError::OutputTooLarge(self.config.max_output_bytes));
        }
        let out = warm
            .memory
            .data(&*store)
            .get(at..at + len)
            .ok_or_else(|| broken("nex_call"))?;
        if packed & HANDLER_ERROR != 0 {
            return Err(InvokeError::Failed(
                String::from_utf8_lossy(out).into_owned(),
            ));
        }
        Ok(out.to_vec())
    }

    fn classify(&self, e: wasmtime::Error) -> InvokeError {
        if let Some(exit) = e.downcast_ref::<Exit>() {
            return InvokeError::Exit(exit.0);
        }
        classify(e, &self.config)
    }
}

/// Longest panic message put in front of a trap's reason.
const MAX_PANIC_TEXT: usize = 1024;

/// The panic a Rust guest printed to stderr before it trapped, as one line:
/// `panicked at src/main.rs:9:5: boom` (the thread name and the backtrace note left out).
pub(crate) fn panic_text(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let at = text.rfind("panicked at ")?;
    let mut lines = text[at..].lines();
    let location = lines.next()?.trim_end().trim_end_matches(':').to_owned();
    let message: Vec<&str> = lines
        .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace:"))
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let one = if message.is_empty() {
        location
    } else {
        format!("{location}: {}", message.join(" "))
    };
    Some(capped(one))
}

/// `one`, cut to [`MAX_PANIC_TEXT`] bytes with `…` when longer.
fn capped(mut one: String) -> String {
    if one.len() > MAX_PANIC_TEXT {
        let mut cut = MAX_PANIC_TEXT;
        while !one.is_char_boundary(cut) {
            cut -= 1;
        }
        one.truncate(cut);
        one.push('…');
    }
    one
}

/// The exception a Python guest (built by componentize-py) printed before it trapped, as one
/// line: `ValueError: asked to fail (File "/0/app.py", line 45, in handle)` — the last
/// traceback's exception and its innermost frame. (The runtime's own panic that follows, "Python
/// function threw an unexpected exception", says nothing more.)
pub(crate) fn python_exception(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let at = text.rfind("Traceback (most recent call last):")?;
    let mut place = None;
    for line in text[at..].lines().skip(1) {
        let trimmed = line.trim();
        if line.starts_with(char::is_whitespace) {
            if trimmed.starts_with("File ") {
                place = Some(trimmed.to_owned());
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        return Some(capped(match place {
            Some(p) => format!("{trimmed} ({p})"),
            None => trimmed.to_owned(),
        }));
    }
    None
}

/// A trap with the panic that caused it, when the guest printed one: the caller then reads
/// `panicked at src/main.rs:9:5: boom (wasm trap: wasm `unreachable` instruction executed)`,
/// not the trap kind alone; for a Python guest, the exception
/// (`ValueError: asked to fail (File "/0/app.py", line 45, in handle) (wasm trap: ...)`).
pub(crate) fn with_panic(
    result: Result<Vec<u8>, InvokeError>,
    stderr: &[u8],
) -> Result<Vec<u8>, InvokeError> {
    match result {
        Err(InvokeError::Trap(reason)) => Err(InvokeError::Trap(
            match python_exception(stderr).or_else(|| panic_text(stderr)) {
                Some(panic) => format!("{panic} ({reason})"),
                None => reason,
            },
        )),
        other => other,
    }
}

/// What a failed call of a module or a component was: its deadline (epoch interrupt), its
/// reply cap, its memory limit, or a trap, with the reason only (not the whole backtrace).
pub(crate) fn classify(e: wasmtime::Error, config: &WasmConfig) -> InvokeError {
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return InvokeError::Timeout(config.timeout);
    }
    if e.chain().any(|c| c.is::<OutputTooLarge>()) {
        return InvokeError::OutputTooLarge(config.max_output_bytes);
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory") {
        return InvokeError::Trap(format!(
            "memory limit of {} MiB exceeded",
            config.memory_bytes >> 20
        ));
    }
    let reason = e
        .downcast_ref::<Trap>()
        .map(|t| t.to_string())
        .unwrap_or_else(|| text.lines().next().unwrap_or("unknown error").to_owned());
    InvokeError::Trap(reason)
}

/// Resolves an export of `instance` as a typed function.
fn typed_export<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<State>,
    instance: &wasmtime::Instance,
    export: &ModuleExport,
) -> Result<TypedFunc<P, R>, InvokeError> {
    instance
        .get_module_export(&mut *store, export)
        .and_then(wasmtime::Extern::into_func)
        .ok_or_else(|| InvokeError::Instantiate("an entry point is missing".into()))?
        .typed::<P, R>(&*store)
        .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))
}

/// Finds how `module` is entered: a handler if it exports `nex_call`, else a command.
fn entry_of(module: &Module) -> Result<Entry, LoadError> {
    let func = |name: &str,
                params: &[ValType],
                results: &[ValType]|
     -> Result<Option<ModuleExport>, LoadError> {
        let Some(ty) = module.get_export(name) else {
            return Ok(None);
        };
        let shape = |t: &[ValType]| t.iter().map(ToString::to_string).collect::<Vec<_>>();
        match ty {
            wasmtime::ExternType::Func(f)
                if shape(&f.params().collect::<Vec<_>>()) == shape(params)
                    && shape(&f.results().collect::<Vec<_>>()) == shape(results) =>
            {
                Ok(module.get_export_index(name))
            }
            _ => Err(LoadError::Handler(format!(
                "`{name}` must be a function ({}) -> ({})",
                shape(params).join(", "),
                shape(results).join(", ")
            ))),
        }
    };
    use ValType::{I32, I64};
    if module.get_export("nex_call").is_some() {
        let call = func("nex_call", &[I32, I32, I32], &[I64])?;
        let alloc = func("nex_alloc", &[I32], &[I32])?
            .ok_or_else(|| LoadError::Handler("it exports `nex_call` but no `nex_alloc`".into()))?;
        return Ok(Entry::Handler(HandlerExports {
            initialize: func("_initialize", &[], &[])?,
            alloc,
            call: call.expect("checked above"),
        }));
    }
    match func("_start", &[], &[]) {
        Ok(Some(start)) => Ok(Entry::Command { start }),
        _ => Err(LoadError::NoStart),
    }
}

/// Advances the engine's epoch while invocations run and for a short while after, then sleeps,
/// so an idle function costs no wake-ups and a busy one never pays for waking the ticker.
struct Ticker {
    in_flight: AtomicUsize,
    /// The ticker thread is parked (or about to park): the next `enter` must wake it.
    parked: AtomicBool,
    stop: AtomicBool,
    thread: std::thread::Thread,
}

/// Idle ticks before the ticker parks: 100 ms at the 5 ms tick.
const LINGER_TICKS: u32 = 20;

impl Ticker {
    fn spawn(engine: Engine) -> Arc<Ticker> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Ticker>>();
        let handle = std::thread::Builder::new()
            .name("nex-epoch".into())
            .spawn(move || {
                let Ok(t) = rx.recv() else { return };
                let mut idle_ticks = 0;
                while !t.stop.load(Ordering::SeqCst) {
                    if t.in_flight.load(Ordering::SeqCst) > 0 {
                        idle_ticks = 0;
                    } else if idle_ticks >= LINGER_TICKS {
                        // Announce the park first, then look again: an `enter` racing with us
                        // either sees `parked` and unparks, or we see its `in_flight`.
                        t.parked.store(true, Ordering::SeqCst);
                        if t.in_flight.load(Ordering::SeqCst) == 0 && !t.stop.load(Ordering::SeqCst)
                        {
                            std::thread::park();
                        }
                        t.parked.store(false, Ordering::SeqCst);
                        idle_ticks = 0;
                        continue;
                    } else {
                        idle_ticks += 1;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch thread");
        let t = Arc::new(Ticker {
            in_flight: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: handle.thread().clone(),
        });
        let _ = tx.send(t.clone());
        t
    }

    fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_printed_before_a_trap_is_one_line() {
        let stderr = b"log line\nthread 'main' panicked at src/main.rs:9:5:\nasked to trap\nsecond line\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_text(stderr).as_deref(),
            Some("panicked at src/main.rs:9:5: asked to trap second line")
        );
        let trapped = with_panic(Err(InvokeError::Trap("unreachable".into())), stderr);
        assert_eq!(
            trapped,
            Err(InvokeError::Trap(
                "panicked at src/main.rs:9:5: asked to trap second line (unreachable)".into()
            ))
        );
        // No panic printed: the trap as it was; other errors untouched.
        assert_eq!(
            with_panic(Err(InvokeError::Trap("oob".into())), b"just logs\n"),
            Err(InvokeError::Trap("oob".into()))
        );
        assert_eq!(
            with_panic(Err(InvokeError::Exit(3)), stderr),
            Err(InvokeError::Exit(3))
        );
        let long = format!(
            "thread 'main' panicked at a.rs:1:1:\n{}\n",
            "é".repeat(2000)
        );
        let one = panic_text(long.as_bytes()).unwrap();
        assert!(one.len() <= MAX_PANIC_TEXT + '…'.len_utf8() && one.ends_with('…'));
    }

    #[test]
    fn a_python_exception_printed_before_a_trap_is_one_line() {
        let stderr = b"Traceback (most recent call last):\n  File \"/0/app.py\", line 45, in handle\n    raise ValueError(\"asked to fail\")\nValueError: asked to fail\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            with_panic(Err(InvokeError::Trap("unreachable".into())), stderr),
            Err(InvokeError::Trap(
                "ValueError: asked to fail (File \"/0/app.py\", line 45, in handle) (unreachable)"
                    .into()
            ))
        );
        assert_eq!(
            python_exception(b"Traceback (most recent call last):\nKeyError: 'x'\n").as_deref(),
            Some("KeyError: 'x'")
        );
        assert_eq!(python_exception(b"no traceback\n"), None);
    }

    #[test]
    fn headers_are_checked_before_compiling() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x0d\x00\x01\x00"),
            Err(LoadError::Component)
        ));
        assert!(check_header(b"\0asm\x01\x00\x00\x00").is_ok());
    }

    #[test]
    fn an_empty_module_has_no_start() {
        let err = WasmFunction::load(b"\0asm\x01\x00\x00\x00", "", WasmConfig::default())
            .err()
            .unwrap();
        assert!(matches!(err, LoadError::NoStart), "{err}");
    }

    #[test]
    fn garbage_after_the_header_is_a_compile_error() {
        let err = WasmFunction::load(b"\0asm\x01\x00\x00\x00\xff\xff", "", WasmConfig::default())
            .err()
            .unwrap();
        assert!(matches!(err, LoadError::Compile(_)), "{err}");
    }
}
