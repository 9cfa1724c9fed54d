//! Adapts [`nex_runtime_js`] to the agent: each instance of the function is a QuickJS runtime
//! owned by one thread. The first runs on the agent's reader thread; more start on threads of
//! their own when calls wait on host services (see [`JsExecutor`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nex_hostapi::Call;
use nex_proto::agent_wire::{AgentInit, AgentReady, FailureCode, FromAgent, LogLevel};
use nex_runtime_js::{ConsoleLevel, InvokeError, JsConfig, JsFunction};

use crate::logs::LogGate;
use crate::{
    BATCH_FRAMES, BATCH_WINDOW, Executor, FrameWriter, HostLink, Inbox, Job, outcome, run_batch,
};

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
/// An instance on a thread of its own ends after this long without a call.
const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// What every instance of one function shares.
struct Instances {
    source: String,
    config: JsConfig,
    writer: FrameWriter,
    host: Arc<HostLink>,
    jobs: crossbeam_channel::Receiver<Job>,
    /// Instances on threads waiting for a job.
    idle: AtomicUsize,
    /// Instances blocked in a host-service call.
    in_host_call: AtomicUsize,
    /// Instances started (or starting), the reader's own included; at most `max`.
    started: AtomicUsize,
    max: usize,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The function's log budget, shared by every instance.
    gate: Arc<LogGate>,
}

/// Replies of calls run on the reader, held back while more requests wait to be read so that
/// a burst leaves in one write.
#[derive(Default)]
struct HeldReplies {
    frames: Vec<FromAgent>,
    since: Option<Instant>,
}

impl HeldReplies {
    fn send(&mut self, writer: &FrameWriter) {
        if !self.frames.is_empty() {
            writer.send(&self.frames);
            self.frames.clear();
        }
        self.since = None;
    }
}

/// The instance on the reader thread: a call it runs needs no thread hand-off on the way in
/// (a wake-up, about 10 µs here, on the latency path).
struct Home {
    function: JsFunction,
    logs: Rc<RefCell<HeldLogs>>,
    replies: Rc<RefCell<HeldReplies>>,
}

/// A JavaScript function served by one or more instances, each a QuickJS runtime. The first
/// loads before the agent says ready and runs on the reader thread; while one of its calls waits
/// on a host service, the reader goes on reading, and calls that arrive meanwhile queue. Another
/// instance starts, on its own thread, only when a job waits, no instance is free and one is
/// blocked on a host-service call — so calls that wait on the network overlap (as separate
/// Lambda execution environments would), while calls that only compute stay on one runtime.
/// While instances on threads exist, every call goes through the queue to them; the last of
/// them ends after [`RETIRE_AFTER`] without calls. Module-level state is per instance.
struct JsExecutor {
    home: Option<Home>,
    instances: Arc<Instances>,
    tx: Option<crossbeam_channel::Sender<Job>>,
}

impl JsExecutor {
    fn run_home(&self, home: &Home, job: Job) {
        let started = Instant::now();
        home.logs.borrow_mut().call_started = Some(started);
        let inv = home.function.invoke(job.id, &job.subject, &job.payload);
        let mut replies = home.replies.borrow_mut();
        home.logs.borrow_mut().take_into(&mut replies.frames);
        replies.frames.extend(self.instances.gate.flush());
        replies
            .frames
            .push(outcome(job.id, inv.elapsed, inv.result, code_of));
        replies.since.get_or_insert(started);
    }

    fn queue(&self, job: Job) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
            grow_if_waiting(&self.instances);
        }
    }
}

impl Executor for JsExecutor {
    fn submit(&self, job: Job, more_input: bool) {
        let Some(home) = &self.home else { return };
        if self.instances.started.load(Ordering::Acquire) > 1 {
            // What the reader's instance answered before others took over leaves now.
            home.replies.borrow_mut().send(&self.instances.writer);
            self.queue(job);
            return;
        }
        self.run_home(home, job);
        // Calls that arrived while that one waited on a host service and that no other
        // instance took.
        while self.instances.started.load(Ordering::Acquire) == 1
            && let Ok(job) = self.instances.jobs.try_recv()
        {
            self.run_home(home, job);
        }
        let mut replies = home.replies.borrow_mut();
        if !more_input
            || replies.frames.len() >= BATCH_FRAMES
            || replies.since.is_some_and(|t| t.elapsed() >= BATCH_WINDOW)
        {
            replies.send(&self.instances.writer);
        }
    }

    fn flush(&self) {
        if let Some(home) = &self.home {
            home.replies.borrow_mut().send(&self.instances.writer);
        }
    }

    fn finish(mut self: Box<Self>) {
        self.flush();
        // The reader's instance holds a sender of the queue too (for calls it reads while it
        // waits); the queue closes, and the threads end, once both are gone.
        self.home.take();
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

/// Starts another instance when a job waits, no instance is free to take it and one is blocked
/// on a host-service call. Checked when a job is queued and when a call starts waiting.
fn grow_if_waiting(instances: &Arc<Instances>) {
    let i = &**instances;
    if i.idle.load(Ordering::Acquire) == 0
        && i.in_host_call.load(Ordering::Acquire) > 0
        && !i.jobs.is_empty()
        && i.started.load(Ordering::Acquire) < i.max
    {
        start_instance(instances);
    }
}

/// Starts one more instance on a thread of its own.
fn start_instance(instances: &Arc<Instances>) {
    let n = instances.started.fetch_add(1, Ordering::AcqRel);
    if n >= instances.max {
        instances.started.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let shared = instances.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("nex-js-{n}"))
        .spawn(move || serve(&shared));
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

/// Where an instance's console output goes: held with its call's reply, see [`HeldLogs`].
/// Lines beyond the function's log budget are dropped (and counted) here.
fn console_sink(
    logs: &Rc<RefCell<HeldLogs>>,
    writer: &FrameWriter,
    gate: &Arc<LogGate>,
) -> nex_runtime_js::ConsoleSink {
    let logs = logs.clone();
    let writer = writer.clone();
    let gate = gate.clone();
    Box::new(move |id: u64, l: ConsoleLevel, text: String| {
        let mut frames = Vec::new();
        gate.line(id, level(l), text, &mut frames);
        let mut held = logs.borrow_mut();
        for frame in frames {
            held.push(frame, &writer);
        }
    })
}

/// One instance on a thread of its own: loads the function into its own runtime, then runs
/// jobs until the queue closes or no call came for [`RETIRE_AFTER`].
fn serve(i: &Arc<Instances>) {
    let logs = Rc::new(RefCell::new(HeldLogs::default()));
    let host_fn: nex_runtime_js::HostFn = {
        let logs = logs.clone();
        let instances = i.clone();
        Box::new(move |req: &Call| {
            // A host call waits on the network: what the function said so far goes now.
            logs.borrow_mut().flush(&instances.writer);
            instances.in_host_call.fetch_add(1, Ordering::AcqRel);
            grow_if_waiting(&instances);
            let result = instances.host.call(req);
            instances.in_host_call.fetch_sub(1, Ordering::AcqRel);
            result
        })
    };
    let console = console_sink(&logs, &i.writer, &i.gate);
    match JsFunction::load(&i.source, i.config.clone(), console, Some(host_fn)) {
        Ok(function) => {
            let mut frames = Vec::new();
            loop {
                i.idle.fetch_add(1, Ordering::AcqRel);
                // Instances on threads give their memory back once calls stop needing them.
                let next = i.jobs.recv_timeout(RETIRE_AFTER).ok();
                i.idle.fetch_sub(1, Ordering::AcqRel);
                let Some(first) = next else { break };
                run_batch(
                    first,
                    || i.jobs.try_recv().ok(),
                    |job, frames| {
                        logs.borrow_mut().call_started = Some(Instant::now());
                        let inv = function.invoke(job.id, &job.subject, &job.payload);
                        logs.borrow_mut().take_into(frames);
                        frames.extend(i.gate.flush());
                        frames.push(outcome(job.id, inv.elapsed, inv.result, code_of));
                    },
                    &mut frames,
                    &i.writer,
                );
            }
        }
        Err(e) => tracing::warn!("another JavaScript instance did not load: {e}"),
    }
    i.started.fetch_sub(1, Ordering::AcqRel);
}

pub(crate) fn load(
    init: &AgentInit,
    artifact: Vec<u8>,
    writer: FrameWriter,
    host: Arc<HostLink>,
    inbox: Rc<Inbox>,
    gate: Arc<LogGate>,
) -> Result<(Box<dyn Executor>, AgentReady), String> {
    let started = Instant::now();
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
        started: AtomicUsize::new(1),
        max: instances_for(init.limits.max_concurrency),
        threads: Mutex::default(),
        gate,
    });
    let logs = Rc::new(RefCell::new(HeldLogs::default()));
    let replies = Rc::new(RefCell::new(HeldReplies::default()));
    let host_fn: nex_runtime_js::HostFn = {
        let logs = logs.clone();
        let replies = replies.clone();
        let instances = instances.clone();
        let tx = tx.clone();
        Box::new(move |req: &Call| {
            let i = &*instances;
            // A host call waits on the network: what was said and answered so far goes now.
            logs.borrow_mut().flush(&i.writer);
            replies.borrow_mut().send(&i.writer);
            i.in_host_call.fetch_add(1, Ordering::AcqRel);
            let result = i.host.call_on_reader(req, &inbox, |job| {
                let _ = tx.send(job);
                grow_if_waiting(&instances);
            });
            i.in_host_call.fetch_sub(1, Ordering::AcqRel);
            result
        })
    };
    let console = console_sink(&logs, &instances.writer, &instances.gate);
    let function = JsFunction::load(
        &instances.source,
        instances.config.clone(),
        console,
        Some(host_fn),
    )
    .map_err(|e| e.to_string())?;
    let ready = AgentReady {
        runtime: format!("quickjs-ng (rquickjs {})", nex_runtime_js::RQUICKJS_VERSION),
        cache_hit: false,
        load_micros: started.elapsed().as_micros() as u64,
        sandbox: Default::default(),
    };
    Ok((
        Box::new(JsExecutor {
            home: Some(Home {
                function,
                logs,
                replies,
            }),
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
