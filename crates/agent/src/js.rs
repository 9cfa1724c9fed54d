//! Adapts [`nex_runtime_js`] to the agent: each instance of the function is a QuickJS runtime
//! owned by one thread; instances take jobs from one queue (see [`JsExecutor`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use nex_proto::agent_wire::{AgentInit, AgentReady, FailureCode, FromAgent, LogLevel};
use nex_runtime_js::{ConsoleLevel, InvokeError, JsConfig, JsFunction};

use std::sync::Arc;

use crate::{Executor, FrameWriter, HostLink, Job, outcome, run_batch};

/// Console output of a fast call is held and leaves with the call's reply, in the same write (one
/// wake-up of the node instead of two). Output is sent at once when the call has run for a while,
/// when it makes a host-service call, or when much is held; a call that logs once and then
/// computes for long shows that line when it ends.
#[derive(Default)]
struct HeldLogs {
    frames: Vec<FromAgent>,
    bytes: usize,
    /// When the running call started; `None` outside calls (loading), when output goes at once.
    call_started: Option<Instant>,
}

/// Longest a call's console output is held back.
const HOLD_LOGS_FOR: Duration = Duration::from_millis(2);
/// Most console output held back, bytes.
const HOLD_LOGS_BYTES: usize = 64 * 1024;

impl HeldLogs {
    fn push(&mut self, frame: FromAgent, writer: &FrameWriter) {
        if let FromAgent::Log { text, .. } = &frame {
            self.bytes += text.len();
        }
        self.frames.push(frame);
        let hold = self
            .call_started
            .is_some_and(|t| t.elapsed() < HOLD_LOGS_FOR && self.bytes < HOLD_LOGS_BYTES);
        if !hold {
            self.flush(writer);
        }
    }

    fn flush(&mut self, writer: &FrameWriter) {
        if !self.frames.is_empty() {
            writer.send(&self.frames);
            self.frames.clear();
            self.bytes = 0;
        }
    }

    /// Moves what is held into `out` and ends the call.
    fn take_into(&mut self, out: &mut Vec<FromAgent>) {
        out.append(&mut self.frames);
        self.bytes = 0;
        self.call_started = None;
    }
}

fn level(l: ConsoleLevel) -> LogLevel {
    match l {
        ConsoleLevel::Debug => LogLevel::Debug,
        ConsoleLevel::Info => LogLevel::Info,
        ConsoleLevel::Warn => LogLevel::Warn,
        ConsoleLevel::Error => LogLevel::Error,
    }
}

fn code_of(e: &InvokeError) -> FailureCode {
    match e {
        InvokeError::Timeout(_) => FailureCode::Timeout,
        InvokeError::OutOfMemory(_) => FailureCode::FunctionError,
        InvokeError::Exception(_) => FailureCode::FunctionError,
        InvokeError::BadReply(_) => FailureCode::FunctionError,
    }
}

/// Most instances (QuickJS runtimes) one JavaScript function gets.
const MAX_INSTANCES: usize = 8;
/// An instance beyond the first ends after this long without a call.
const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// What every instance thread of one function shares.
struct Instances {
    source: String,
    config: JsConfig,
    writer: FrameWriter,
    host: Arc<HostLink>,
    jobs: crossbeam_channel::Receiver<Job>,
    /// Instances waiting for a job.
    idle: AtomicUsize,
    /// Instances blocked in a host-service call.
    in_host_call: AtomicUsize,
    /// Instances started (or starting), at most `max`.
    started: AtomicUsize,
    max: usize,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// A JavaScript function served by one or more instances, each a QuickJS runtime on its own
/// thread, all taking jobs from one queue. The first instance loads before the agent says ready;
/// another starts only when a job waits, no instance is idle and one of them is blocked on a
/// host-service call — so calls that wait on the network overlap (as separate Lambda execution
/// environments would), while calls that only compute stay on one runtime. Module-level state
/// is per instance.
struct JsExecutor {
    instances: Arc<Instances>,
    tx: Option<crossbeam_channel::Sender<Job>>,
}

impl Executor for JsExecutor {
    fn submit(&self, job: Job, _more_input: bool) {
        let Some(tx) = &self.tx else { return };
        let _ = tx.send(job);
        grow_if_waiting(&self.instances);
    }
    fn finish(mut self: Box<Self>) {
        self.tx.take();
        loop {
            let next = self
                .instances
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            match next {
                Some(t) => {
                    let _ = t.join();
                }
                None => break,
            }
        }
    }
}

type ReadyTx = mpsc::Sender<Result<AgentReady, String>>;

/// Starts another instance when a job waits, no instance is free to take it and one is blocked
/// on a host-service call. Checked when a job arrives and when a call starts waiting.
fn grow_if_waiting(instances: &Arc<Instances>) {
    let i = &**instances;
    if i.idle.load(Ordering::Acquire) == 0
        && i.in_host_call.load(Ordering::Acquire) > 0
        && !i.jobs.is_empty()
        && i.started.load(Ordering::Acquire) < i.max
    {
        start_instance(instances, None);
    }
}

/// Starts one more instance thread; `ready` (the first instance only) hears how loading went.
fn start_instance(instances: &Arc<Instances>, ready: Option<ReadyTx>) {
    let n = instances.started.fetch_add(1, Ordering::AcqRel);
    if n >= instances.max {
        instances.started.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let shared = instances.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("nex-js-{n}"))
        .spawn(move || serve(&shared, ready));
    match spawned {
        Ok(t) => {
            let mut threads = instances.threads.lock().unwrap_or_else(|p| p.into_inner());
            // Retired instances' threads have ended; keep only the handles worth joining.
            threads.retain(|t| !t.is_finished());
            threads.push(t);
        }
        Err(e) => {
            instances.started.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("could not start another JavaScript instance: {e}");
        }
    }
}

/// One instance: loads the function into its own runtime, then runs jobs until the queue closes.
fn serve(i: &Arc<Instances>, ready: Option<ReadyTx>) {
    let started = Instant::now();
    let first_instance = ready.is_some();
    let logs = Rc::new(RefCell::new(HeldLogs::default()));
    let console = {
        let logs = logs.clone();
        let writer = i.writer.clone();
        Box::new(move |id: u64, l: ConsoleLevel, text: String| {
            logs.borrow_mut().push(
                FromAgent::Log {
                    id,
                    level: level(l),
                    text,
                },
                &writer,
            );
        })
    };
    let host_fn: nex_runtime_js::HostFn = {
        let logs = logs.clone();
        let instances = i.clone();
        Box::new(move |req| {
            // A host call waits on the network: what the function said so far goes now.
            logs.borrow_mut().flush(&instances.writer);
            instances.in_host_call.fetch_add(1, Ordering::AcqRel);
            grow_if_waiting(&instances);
            let result = instances.host.call(req);
            instances.in_host_call.fetch_sub(1, Ordering::AcqRel);
            result
        })
    };
    let function = match JsFunction::load(&i.source, i.config.clone(), console, Some(host_fn)) {
        Ok(f) => f,
        Err(e) => {
            match ready {
                Some(tx) => {
                    let _ = tx.send(Err(e.to_string()));
                }
                None => tracing::warn!("another JavaScript instance did not load: {e}"),
            }
            i.started.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    };
    if let Some(tx) = ready {
        let _ = tx.send(Ok(AgentReady {
            runtime: format!("quickjs-ng (rquickjs {})", nex_runtime_js::RQUICKJS_VERSION),
            cache_hit: false,
            load_micros: started.elapsed().as_micros() as u64,
            sandbox: Default::default(),
        }));
    }
    let mut frames = Vec::new();
    loop {
        i.idle.fetch_add(1, Ordering::AcqRel);
        // Extra instances give their memory back once calls stop needing them.
        let next = if first_instance {
            i.jobs.recv().ok()
        } else {
            i.jobs.recv_timeout(RETIRE_AFTER).ok()
        };
        i.idle.fetch_sub(1, Ordering::AcqRel);
        let Some(first) = next else { break };
        run_batch(
            first,
            || i.jobs.try_recv().ok(),
            |job, frames| {
                logs.borrow_mut().call_started = Some(Instant::now());
                let inv = function.invoke(job.id, &job.subject, &job.payload);
                logs.borrow_mut().take_into(frames);
                frames.push(outcome(job.id, inv.elapsed, inv.result, code_of));
            },
            &mut frames,
            &i.writer,
        );
    }
    if !first_instance {
        i.started.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn load(
    init: &AgentInit,
    artifact: Vec<u8>,
    writer: FrameWriter,
    host: Arc<HostLink>,
) -> Result<(Box<dyn Executor>, AgentReady), String> {
    let source = String::from_utf8(artifact)
        .map_err(|_| "the JavaScript source is not valid UTF-8".to_owned())?;
    let config = JsConfig {
        memory_bytes: (init.limits.memory_mb as usize) << 20,
        timeout: Duration::from_millis(init.limits.timeout_ms),
        env: init.environment.clone(),
        name: init.workload_name.clone(),
    };
    let (tx, jobs) = crossbeam_channel::unbounded::<Job>();
    let instances = Arc::new(Instances {
        source,
        config,
        writer,
        host,
        jobs,
        idle: AtomicUsize::new(0),
        in_host_call: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        max: instances_for(init.limits.max_concurrency),
        threads: Mutex::default(),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    start_instance(&instances, Some(ready_tx));
    let ready = ready_rx
        .recv()
        .map_err(|_| "the JavaScript thread died while loading".to_owned())??;
    Ok((
        Box::new(JsExecutor {
            instances,
            tx: Some(tx),
        }),
        ready,
    ))
}

/// How many instances a function with this concurrency limit may get.
pub(crate) fn instances_for(max_concurrency: u32) -> usize {
    (max_concurrency as usize).clamp(1, MAX_INSTANCES)
}
