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
//! Limits are the module path's: a memory cap per linear memory, a deadline by epoch
//! interruption (the same [`Ticker`](crate::Ticker)), a cap on the reply.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::wasi::OutputTooLarge;
use crate::{
    EPOCH_TICK, InvokeError, LoadError, LoadInfo, MAX_STDERR, Ticker, WasmConfig, load_cached,
};

mod capture;
use capture::Capture;

/// Import names a component may have: the WASI 0.2 interfaces wasmtime-wasi provides.
const PROVIDED: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Whether nex provides the import called `name` (e.g. `wasi:cli/stdout@0.2.3`).
fn provided(name: &str) -> bool {
    PROVIDED
        .iter()
        .any(|p| name.starts_with(p) && name.contains("@0.2."))
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
/// left.
pub struct ComponentSpent {
    _store: Option<Store<ComponentState>>,
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

/// A compiled, linked, ready-to-instantiate command component.
pub struct ComponentFunction {
    engine: Engine,
    pre: CommandPre<ComponentState>,
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
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = CommandPre::new(pre).map_err(|_| LoadError::NoRun)?;
        let deadline_ticks = config.timeout.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
        let ticker = Ticker::spawn(engine.clone());
        Ok((
            Self {
                engine,
                pre,
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

    fn new_store(&self, subject: &str, payload: Vec<u8>) -> Store<ComponentState> {
        let stdout = Capture::strict(self.config.max_output_bytes);
        let stderr = Capture::lossy(MAX_STDERR);
        let mut wasi = WasiCtx::builder();
        wasi.args(&[self.config.argv0.as_str(), subject])
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
        let state = ComponentState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            stdout,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Runs the command once in a fresh instance: `argv[1] = subject`, `payload` on stdin.
    /// Safe to call from many threads at once, up to `max_concurrency`.
    pub fn invoke(&self, subject: &str, payload: Vec<u8>) -> ComponentInvocation {
        let started = Instant::now();
        let _tokio = runtime().enter();
        let mut store = self.new_store(subject, payload);
        self.ticker.enter();
        let result = self.run_command(&mut store);
        self.ticker.leave();
        let data = store.data();
        let (stdout, stderr) = (data.stdout.take(), data.stderr.take());
        ComponentInvocation {
            result: result.map(|()| stdout),
            stderr,
            elapsed: started.elapsed(),
            spent: ComponentSpent {
                _store: Some(store),
            },
        }
    }

    fn run_command(&self, store: &mut Store<ComponentState>) -> Result<(), InvokeError> {
        let command = self
            .pre
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
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return InvokeError::Timeout(self.config.timeout);
        }
        if e.chain().any(|c| c.is::<OutputTooLarge>()) {
            return InvokeError::OutputTooLarge(self.config.max_output_bytes);
        }
        let text = format!("{e:#}");
        if text.contains("forcing trap when growing memory") {
            return InvokeError::Trap(format!(
                "memory limit of {} MiB exceeded",
                self.config.memory_bytes >> 20
            ));
        }
        let reason = e
            .downcast_ref::<Trap>()
            .map(|t| t.to_string())
            .unwrap_or_else(|| text.lines().next().unwrap_or("unknown error").to_owned());
        InvokeError::Trap(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_0_2_interfaces_are_provided_and_others_are_not() {
        assert!(provided("wasi:cli/stdout@0.2.3"));
        assert!(provided("wasi:io/streams@0.2.0"));
        assert!(!provided("wasi:keyvalue/store@0.2.0-draft"));
        assert!(!provided("wasi:cli/stdout@0.3.0"));
        assert!(!provided("acme:thing/api@1.0.0"));
    }
}
