//! Adapts [`nex_runtime_wasm`] to the agent: a pool of worker threads sharing one compiled module
//! or component (told apart by the artifact's header).

use std::sync::Arc;
use std::time::Duration;

use nex_proto::agent_wire::{AgentInit, AgentReady, FailureCode, FromAgent, LogLevel};
use nex_runtime_wasm::{
    BinaryKind, ComponentFunction, ComponentSpent, HostServices, InvokeError, Spent, WasmConfig,
    WasmFunction,
};

use crate::logs::{LogGate, log_frames};
use crate::{Executor, FrameWriter, HostLink, Job, Pool, outcome};

struct WasmExecutor {
    pool: Pool,
}

impl Executor for WasmExecutor {
    fn submit(&self, job: Job, more_input: bool) {
        self.pool.submit(job, more_input);
    }
    fn finish(self: Box<Self>) {
        self.pool.finish();
    }
}

fn code_of(e: &InvokeError) -> FailureCode {
    match e {
        InvokeError::Timeout(_) => FailureCode::Timeout,
        InvokeError::OutputTooLarge(_) => FailureCode::TooLarge,
        InvokeError::Instantiate(_) => FailureCode::Unavailable,
        InvokeError::BadInput(_) => FailureCode::BadInput,
        InvokeError::Trap(_) | InvokeError::Exit(_) | InvokeError::Failed(_) => {
            FailureCode::FunctionError
        }
    }
}

thread_local! {
    /// The last instance this thread ran, kept until its reply has been written, and while calls
    /// are queued, kept for the next call to make its instance in the same store.
    static SPENT: std::cell::RefCell<Option<Spent>> = const { std::cell::RefCell::new(None) };
    /// The last component store this thread ran, kept until its reply has been written.
    static SPENT_COMPONENT: std::cell::RefCell<Option<ComponentSpent>> =
        const { std::cell::RefCell::new(None) };
}

/// Once a thread's replies are on their way: tears down the command component store it kept;
/// keeps a handler component's live instance (until a call breaks it).
fn release_component(_idle: bool) {
    SPENT_COMPONENT.with_borrow_mut(|held| {
        if !held.as_ref().is_some_and(ComponentSpent::keep) {
            held.take();
        }
    });
}

/// Once a thread's replies are on their way: tears down what it kept when it will wait for the
/// next call (`idle`) or its store is full; keeps a store with room while calls are queued, and
/// a handler's live instance or a recycled command instance always (until a call breaks it).
/// A kept command instance is reset here, off the next call's path.
fn release_spent(idle: bool) {
    SPENT.with_borrow_mut(|held| {
        let keep = held.as_mut().is_some_and(|s| {
            let wanted = if idle {
                s.keep_when_idle()
            } else {
                s.has_room()
            };
            wanted && s.prepare()
        });
        if !keep {
            held.take();
        }
    });
}

/// The host services of the `nex` import module, performed by the node through `link`: the
/// guest's encoded call goes to the node as it is, and the node's encoded result comes back.
fn host_services(link: Arc<HostLink>) -> HostServices {
    HostServices(Arc::new(
        move |call: &[u8], deadline: std::time::Instant| {
            link.call_encoded_by(call.to_vec(), deadline)
        },
    ))
}

/// Worker threads for a module whose calls may wait on host services.
const WAITING_THREADS: usize = 8;

pub(crate) fn load(
    init: &AgentInit,
    artifact: Vec<u8>,
    writer: FrameWriter,
    host: Arc<HostLink>,
    gate: Arc<LogGate>,
) -> Result<(Box<dyn Executor>, AgentReady), String> {
    // Two threads per core: a call waiting on a host service leaves its core to another, and
    // under full load the agent gets a fair share of the CPU next to the node and nats-server
    // (measured at c=64 on 2 cores: 4 threads +6% throughput over 2). A module that imports
    // the host services gets up to `WAITING_THREADS`, as a JavaScript function gets instances:
    // its calls mostly wait on the node. Calls beyond the thread count queue here; the node
    // still bounds how many are in flight.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let computing = (init.limits.max_concurrency as usize).min(2 * cores);
    let waiting = (init.limits.max_concurrency as usize).min(WAITING_THREADS.max(2 * cores));
    let config = WasmConfig {
        memory_bytes: (init.limits.memory_mb as usize) << 20,
        timeout: Duration::from_millis(init.limits.timeout_ms),
        // Calls run on the pool's threads and, one at a time, on the reader.
        max_concurrency: waiting as u32 + 1,
        max_output_bytes: 8 << 20,
        cache_dir: init.cache_dir.as_ref().map(Into::into),
        argv0: init
            .argv
            .first()
            .cloned()
            .unwrap_or_else(|| "nexfunction".into()),
        env: init
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        host_services: Some(host_services(host)),
    };
    if nex_runtime_wasm::binary_kind(&artifact).map_err(|e| e.to_string())? == BinaryKind::Component
    {
        return load_component(
            &artifact,
            &init.hash,
            config,
            (computing, waiting),
            writer,
            gate,
        );
    }
    let (function, info) =
        WasmFunction::load(&artifact, &init.hash, config).map_err(|e| e.to_string())?;
    drop(artifact);
    // A call that may wait on the node never runs on the reader, which delivers the answer.
    let inline = !function.uses_host_services();
    let kind = if function.is_handler() {
        "handler"
    } else if function.recycles_instances() {
        "command, recycled"
    } else {
        "command"
    };
    let function = Arc::new(function);
    let work = Arc::new(move |job: Job, frames: &mut Vec<FromAgent>| {
        let previous = SPENT.with_borrow_mut(Option::take);
        let inv = function.invoke_after(previous, &job.subject, job.payload);
        log_frames(&gate, job.id, LogLevel::Info, &inv.stderr, frames);
        frames.extend(gate.flush());
        frames.push(outcome(job.id, inv.elapsed, inv.result, code_of));
        // This instance is torn down after the write (a call that runs alone, the latency path,
        // is answered before its teardown), or under load, when its store is full.
        SPENT.with_borrow_mut(|held| *held = Some(inv.spent));
    });
    let threads = if inline { computing } else { waiting };
    let pool = Pool::start(threads, work, writer, release_spent, inline);
    Ok((
        Box::new(WasmExecutor { pool }),
        AgentReady {
            runtime: format!("wasmtime 48 (wasi preview 1, {kind})"),
            cache_hit: info.cache_hit,
            load_micros: info.load_time.as_micros() as u64,
            sandbox: Default::default(),
        },
    ))
}

/// A component: a command (`wasi:cli/run`) gets a fresh instance per call, a handler
/// (`handle`) one instance per worker thread, kept until a call breaks it. `threads` are the
/// worker threads for one that computes and for one whose calls wait on host services.
fn load_component(
    artifact: &[u8],
    hash: &str,
    config: WasmConfig,
    (computing, waiting): (usize, usize),
    writer: FrameWriter,
    gate: Arc<LogGate>,
) -> Result<(Box<dyn Executor>, AgentReady), String> {
    let (function, info) =
        ComponentFunction::load(artifact, hash, config).map_err(|e| e.to_string())?;
    // A call that may wait on the node never runs on the reader, which delivers the answer.
    let inline = !function.uses_host_services();
    let kind = if function.is_handler() {
        "handler component"
    } else {
        "command component"
    };
    let function = Arc::new(function);
    let work = Arc::new(move |job: Job, frames: &mut Vec<FromAgent>| {
        let previous = SPENT_COMPONENT.with_borrow_mut(Option::take);
        let inv = function.invoke_after(previous, &job.subject, job.payload);
        log_frames(&gate, job.id, LogLevel::Info, &inv.stderr, frames);
        frames.extend(gate.flush());
        frames.push(outcome(job.id, inv.elapsed, inv.result, code_of));
        SPENT_COMPONENT.with_borrow_mut(|held| *held = Some(inv.spent));
    });
    let threads = if inline { computing } else { waiting };
    let pool = Pool::start(threads, work, writer, release_component, inline);
    Ok((
        Box::new(WasmExecutor { pool }),
        AgentReady {
            runtime: format!("wasmtime 48 (wasi preview 2, {kind})"),
            cache_hit: info.cache_hit,
            load_micros: info.load_time.as_micros() as u64,
            sandbox: Default::default(),
        },
    ))
}
