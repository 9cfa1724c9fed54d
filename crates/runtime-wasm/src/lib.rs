//! WebAssembly runtime for nex functions: WASI preview-1 *command* modules on wasmtime.
//!
//! This crate owns compiling a module (once per artifact hash, cached on disk so a restart does
//! not recompile), checking that it is a runnable command, and running it once per trigger:
//! `argv = [argv0, subject]`, stdin = payload, stdout = reply, stderr = log text. Each run gets a
//! fresh instance from a pre-linked [`InstancePre`] in wasmtime's pooling allocator (copy-on-write
//! memory images), a memory cap and a deadline enforced by epoch interruption. The WASI
//! preview-1 functions are this crate's own (module `wasi`): synchronous, working on the call's
//! in-memory stdin/stdout/stderr, with nothing else open. A module may also import the host
//! services (module `nex`, see [`HostServices`]), which the embedder performs.
//!
//! It knows nothing of NATS, processes or the agent protocol: the agent drives it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};

mod host;
mod wasi;
pub use host::{HostFn, HostServices};
use wasi::{Exit, Io, OutputTooLarge, Process};

/// How often the epoch advances; deadlines are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Instances one store takes before it is dropped: a store's own setup and teardown are shared
/// by this many calls, each still in its own fresh instance.
pub const INSTANCES_PER_STORE: u32 = 8;
/// A store stops taking instances once theirs hold this much linear memory, so sharing a store
/// never keeps much more memory than one call may use.
const MEMORY_HELD_PER_STORE: usize = 8 << 20;
/// Most stderr bytes kept per invocation.
const MAX_STDERR: usize = 64 * 1024;

/// Errors loading a module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("the artifact is not a WebAssembly module (it does not start with `\\0asm`)")]
    NotWasm,
    /// The bytes are a component, which this runtime does not run yet.
    #[error(
        "the artifact is a WebAssembly component; nex runs WASI preview-1 command modules \
         (build with `--target wasm32-wasip1`)"
    )]
    Component,
    /// Compilation failed.
    #[error("the WebAssembly module does not compile: {0}")]
    Compile(String),
    /// The module has no `_start` export.
    #[error(
        "the WebAssembly module exports no `_start` function: build a WASI command (a binary with \
         `main`), not a library"
    )]
    NoStart,
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
/// for the next call (a few µs): drop it after the reply has left, not before.
pub struct Spent {
    store: Store<State>,
    /// Instances made in `store` so far.
    instances: u32,
    /// Linear memory of those instances, bytes: it stays allocated until the store is dropped.
    memory_bytes: usize,
    /// The call ended normally, so the store may take another instance.
    reusable: bool,
}

impl Spent {
    /// Whether [`WasmFunction::invoke_after`] can make its next instance in this one's store
    /// (saving a store's setup and teardown), or it is full and should be dropped.
    pub fn has_room(&self) -> bool {
        self.reusable
            && self.instances < INSTANCES_PER_STORE
            && self.memory_bytes < MEMORY_HELD_PER_STORE
    }
}

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
    /// `_start`, resolved once instead of by name on every call.
    start: wasmtime::ModuleExport,
    /// The exported `memory` WASI reads and writes, if any.
    memory: Option<wasmtime::ModuleExport>,
    process: Arc<Process>,
    config: WasmConfig,
    deadline_ticks: u64,
    ticker: Arc<Ticker>,
    uses_host_services: bool,
}

impl Drop for WasmFunction {
    fn drop(&mut self) {
        self.ticker.shutdown();
    }
}

fn engine(config: &WasmConfig) -> Result<Engine, LoadError> {
    let mut pool = PoolingAllocationConfig::new();
    let slots = (INSTANCES_PER_STORE + 1) * config.max_concurrency.max(1) + 1;
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .total_component_instances(0)
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
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// Detects what kind of binary `bytes` is, before compiling.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules are version 1 (`01 00 00 00`); components use a layer-1 header (`.. .. 01 00`).
    if bytes[4..8] != [1, 0, 0, 0] && bytes[6..8] == [1, 0] {
        return Err(LoadError::Component);
    }
    Ok(())
}

fn cache_path(engine: &Engine, dir: &Path, hash: &str) -> Option<PathBuf> {
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    Some(dir.join(format!("{hash}-{:016x}.cwasm", h.finish())))
}

fn load_module(
    engine: &Engine,
    bytes: &[u8],
    hash: &str,
    cache_dir: Option<&Path>,
) -> Result<(Module, bool), LoadError> {
    let path = cache_dir.and_then(|d| cache_path(engine, d, hash));
    if let Some(p) = path.as_deref().filter(|p| p.is_file()) {
        // SAFETY: the file is one this crate serialized with a compatible engine (the name carries
        // the engine's compatibility hash) into the node's private cache directory; wasmtime
        // checks its header and version before use, and we fall back to compiling on any error.
        match unsafe { Module::deserialize_file(engine, p) } {
            Ok(m) => return Ok((m, true)),
            Err(e) => tracing::warn!(path = %p.display(), "ignoring bad cache entry: {e:#}"),
        }
    }
    let module = Module::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    if let Some(p) = path
        && let Err(e) = store_in_cache(&module, &p)
    {
        tracing::warn!(path = %p.display(), "could not write compiled-module cache: {e:#}");
    }
    Ok((module, false))
}

fn store_in_cache(module: &Module, path: &Path) -> std::io::Result<()> {
    let bytes = module
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
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
        let (module, cache_hit) = load_module(&engine, bytes, hash, config.cache_dir.as_deref())?;
        let load_time = started.elapsed();
        let start = match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(_)) => module
                .get_export_index("_start")
                .ok_or(LoadError::NoStart)?,
            _ => return Err(LoadError::NoStart),
        };
        let memory = match module.get_export("memory") {
            Some(wasmtime::ExternType::Memory(_)) => module.get_export_index("memory"),
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
                start,
                memory,
                process,
                config,
                deadline_ticks,
                ticker,
                uses_host_services,
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

    /// Runs the command once with `argv[1] = subject` and `payload` on stdin.
    /// Safe to call from many threads at once, up to `max_concurrency`.
    pub fn invoke(&self, subject: &str, payload: Vec<u8>) -> Invocation {
        self.invoke_after(None, subject, payload)
    }

    /// Like [`invoke`](Self::invoke), making the instance in `previous`'s store when it
    /// [has room](Spent::has_room) (otherwise `previous` is dropped first).
    pub fn invoke_after(
        &self,
        previous: Option<Spent>,
        subject: &str,
        payload: Vec<u8>,
    ) -> Invocation {
        let started = Instant::now();
        let io = Io::new(subject, payload, started + self.config.timeout);
        let (mut store, instances, memory_bytes) = match previous {
            Some(p) if p.has_room() => {
                let mut store = p.store;
                store.data_mut().io = io;
                (store, p.instances, p.memory_bytes)
            }
            previous => {
                drop(previous);
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
                (store, 0, 0)
            }
        };
        store.set_epoch_deadline(self.deadline_ticks);
        self.ticker.enter();
        let result = self.run(&mut store);
        self.ticker.leave();
        let memory = store.data().io.memory.map_or(0, |m| m.data_size(&store));
        let io = &mut store.data_mut().io;
        let (stdout, stderr) = (
            std::mem::take(&mut io.stdout),
            std::mem::take(&mut io.stderr),
        );
        let reusable = result.is_ok();
        Invocation {
            result: result.map(|()| stdout),
            stderr,
            elapsed: started.elapsed(),
            spent: Spent {
                store,
                instances: instances + 1,
                memory_bytes: memory_bytes + memory,
                reusable,
            },
        }
    }

    fn run(&self, store: &mut Store<State>) -> Result<(), InvokeError> {
        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        if let Some(memory) = &self.memory {
            store.data_mut().io.memory = instance
                .get_module_export(&mut *store, memory)
                .and_then(wasmtime::Extern::into_memory);
        }
        let start = instance
            .get_module_export(&mut *store, &self.start)
            .and_then(wasmtime::Extern::into_func)
            .ok_or_else(|| InvokeError::Instantiate("the module has no `_start`".into()))?
            .typed::<(), ()>(&*store)
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        match start.call(&mut *store, ()) {
            Ok(()) => Ok(()),
            // `proc_exit(0)` is a normal end of a command.
            Err(e) if e.downcast_ref::<Exit>().is_some_and(|x| x.0 == 0) => Ok(()),
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: wasmtime::Error) -> InvokeError {
        if let Some(exit) = e.downcast_ref::<Exit>() {
            return InvokeError::Exit(exit.0);
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return InvokeError::Timeout(self.config.timeout);
        }
        if e.is::<OutputTooLarge>() {
            return InvokeError::OutputTooLarge(self.config.max_output_bytes);
        }
        let text = format!("{e:#}");
        if text.contains("forcing trap when growing memory") {
            return InvokeError::Trap(format!(
                "memory limit of {} MiB exceeded",
                self.config.memory_bytes >> 20
            ));
        }
        // Keep the first line (the reason) and the innermost wasm frame, not the whole backtrace.
        let reason = e
            .downcast_ref::<Trap>()
            .map(|t| t.to_string())
            .unwrap_or_else(|| text.lines().next().unwrap_or("unknown error").to_owned());
        InvokeError::Trap(reason)
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
