//! The per-workload agent process.
//!
//! A node starts one agent per workload by re-executing its own binary (`nex agent`). The agent
//! reads [`nex_proto::agent_wire`] frames on stdin and writes frames on stdout; it never opens a
//! network connection and never holds NATS credentials. It owns:
//! - loading the workload into its runtime ([`nex_runtime_wasm`] or [`nex_runtime_js`]),
//! - running invocations, on its reader thread when that costs no other call anything and on
//!   worker threads (or further JavaScript instances) up to the workload's concurrency limit,
//! - turning runtime results and guest output into reply, failure and log frames,
//! - the process-level limits it applies to itself before loading tenant code ([`limits`]).
//!
//! Layout: [`run`] is the whole process; `wasm` and `js` adapt each runtime to [`Executor`].

mod js;
pub mod landlock;
pub mod limits;
pub mod logs;
mod resident;
mod wasm;

use std::io::{self, BufReader, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use nex_hostapi::{Call, CallResult, GuestError, Op};
use nex_proto::agent_wire::{self, AgentInit, AgentReady, FailureCode, FromAgent, ToAgent};
use nex_proto::control::WorkloadType;

/// Writes frames to the node; shared by all worker threads. Frames are appended whole to a
/// pending buffer, and whichever thread finds no write in progress writes everything pending:
/// replies finished while another thread is in `write` leave in the same syscall, so under load
/// the node reads many replies per wake-up, and no frame is ever split or interleaved.
#[derive(Clone)]
pub struct FrameWriter {
    shared: Arc<WriterShared>,
}

struct WriterShared {
    pending: Mutex<Vec<u8>>,
    writing: std::sync::atomic::AtomicBool,
    /// Standard output as a plain file: `io::Stdout` is line-buffered and would split binary
    /// frames at every newline byte.
    out: Mutex<std::mem::ManuallyDrop<std::fs::File>>,
}

thread_local! {
    /// The bytes a writing thread took from `pending`, reused across writes.
    static BATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl FrameWriter {
    fn new() -> Self {
        Self {
            shared: Arc::new(WriterShared {
                pending: Mutex::new(Vec::with_capacity(64 * 1024)),
                writing: std::sync::atomic::AtomicBool::new(false),
                // SAFETY: fd 1 is open for the whole life of the agent (the node's pipe), and
                // `ManuallyDrop` keeps this handle from ever closing it.
                out: Mutex::new(std::mem::ManuallyDrop::new(unsafe {
                    <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(1)
                })),
            }),
        }
    }

    /// Sends `msgs`, together with whatever other threads queued meanwhile.
    pub fn send(&self, msgs: &[FromAgent]) {
        let s = &*self.shared;
        {
            let mut pending = s.pending.lock().unwrap_or_else(|p| p.into_inner());
            for m in msgs {
                agent_wire::encode_from_agent(m, &mut pending);
            }
        }
        loop {
            if s.writing.swap(true, Ordering::AcqRel) {
                // The thread writing now will pick our frames up before it stops.
                return;
            }
            BATCH.with_borrow_mut(|batch| {
                {
                    let mut pending = s.pending.lock().unwrap_or_else(|p| p.into_inner());
                    batch.extend_from_slice(&pending);
                    pending.clear();
                    pending.shrink_to(256 * 1024);
                }
                if !batch.is_empty() {
                    let mut out = s.out.lock().unwrap_or_else(|p| p.into_inner());
                    if out.write_all(batch).is_err() {
                        // The node is gone; nothing left to serve.
                        std::process::exit(0);
                    }
                    batch.clear();
                }
                // Large replies should not pin their memory to this thread.
                batch.shrink_to(256 * 1024);
            });
            s.writing.store(false, Ordering::Release);
            // Frames queued after our swap but before the flag dropped saw `writing` set and
            // left them to us.
            if s.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                return;
            }
        }
    }
}

/// Host-service calls from the function thread to the node: sends `HostCall` frames and waits for
/// the matching `HostReply`, which the reader thread delivers. Calls and results travel encoded by
/// `nex-hostapi`; a wasm guest's bytes pass through untouched (the node decodes and checks them).
pub struct HostLink {
    writer: FrameWriter,
    pending: Mutex<std::collections::HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    next: AtomicU64,
}

/// Longest a host call may wait for the node.
const HOST_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(70);

/// An encoded result as the function sees it; a malformed one is the node's fault.
fn decode_result(op: Op, bytes: &[u8]) -> CallResult {
    nex_hostapi::decode_result(bytes).unwrap_or_else(|e| {
        Err(GuestError::internal(format!(
            "{op}: the node's answer is malformed: {e}"
        )))
    })
}

impl HostLink {
    fn new(writer: FrameWriter) -> Self {
        Self {
            writer,
            pending: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    /// Performs `call` through the node; blocks the calling thread until it answers.
    pub fn call(&self, call: &Call) -> CallResult {
        let op = call.op();
        match self.wait_for_reply(nex_hostapi::encode_call(call), HOST_CALL_TIMEOUT) {
            Some(bytes) => decode_result(op, &bytes),
            None => Err(GuestError::timeout(format!(
                "{op}: the node did not answer the host-service call"
            ))),
        }
    }

    /// Performs an encoded call (a wasm guest's bytes, as they are) and returns the encoded
    /// result, giving up at `deadline` (the calling function's own).
    pub fn call_encoded_by(&self, call: Vec<u8>, deadline: std::time::Instant) -> Vec<u8> {
        let wait = deadline
            .saturating_duration_since(std::time::Instant::now())
            .min(HOST_CALL_TIMEOUT);
        self.wait_for_reply(call, wait).unwrap_or_else(|| {
            nex_hostapi::encode_result(&Err(GuestError::timeout(
                "host call: no answer within the function's time limit",
            )))
        })
    }

    /// Sends `call` and waits up to `wait` for its encoded result; `None` when none came.
    fn wait_for_reply(&self, call: Vec<u8>, wait: std::time::Duration) -> Option<Vec<u8>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.lock().insert(id, tx);
        self.writer.send(&[FromAgent::HostCall { id, call }]);
        let r = rx.recv_timeout(wait);
        self.lock().remove(&id);
        r.ok()
    }

    /// Performs `call` from the reader thread itself, which no other thread can wake: sends
    /// the call, then reads the node's frames until the reply arrives. Replies to other threads'
    /// calls read meanwhile are delivered, invocations are handed to `on_invoke`, and a stop
    /// from the node is noted in `inbox` for the main loop.
    pub(crate) fn call_on_reader(
        &self,
        call: &Call,
        inbox: &Inbox,
        mut on_invoke: impl FnMut(Job),
    ) -> CallResult {
        let op = call.op();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.writer.send(&[FromAgent::HostCall {
            id,
            call: nex_hostapi::encode_call(call),
        }]);
        let deadline = std::time::Instant::now() + HOST_CALL_TIMEOUT;
        loop {
            match inbox.next(Some(deadline)) {
                Next::Frame(ToAgent::HostReply { id: r, result }) if r == id => {
                    return decode_result(op, &result);
                }
                Next::Frame(ToAgent::HostReply { id: r, result }) => self.deliver(r, result),
                Next::Frame(ToAgent::Invoke {
                    id,
                    subject,
                    payload,
                }) => on_invoke(Job {
                    id,
                    subject,
                    payload,
                }),
                Next::Frame(ToAgent::Shutdown) => inbox.stopping.set(true),
                Next::Frame(ToAgent::Init { .. }) => tracing::warn!("ignoring second init"),
                Next::Malformed(e) => tracing::warn!("ignoring malformed frame: {e}"),
                Next::Closed(_) => {
                    inbox.stopping.set(true);
                    return Err(GuestError::unavailable(format!(
                        "{op}: the node went away during the host-service call"
                    )));
                }
                Next::TimedOut => {
                    return Err(GuestError::timeout(format!(
                        "{op}: the node did not answer the host-service call"
                    )));
                }
            }
        }
    }

    fn deliver(&self, id: u64, result: Vec<u8>) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, mpsc::Sender<Vec<u8>>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One invocation handed to a worker.
pub struct Job {
    pub id: u64,
    pub subject: String,
    pub payload: Vec<u8>,
}

/// A loaded workload that can run jobs. Lives on the reader thread.
pub trait Executor {
    /// Runs or queues a job; called from the reader thread. `more_input` says whether further
    /// frames are already waiting: a job run on the reader may then hold its reply back to leave
    /// with theirs.
    fn submit(&self, job: Job, more_input: bool);
    /// Sends replies held back by [`Executor::submit`]; called before the reader waits for input.
    fn flush(&self) {}
    /// Waits for queued jobs to finish.
    fn finish(self: Box<Self>);
}

/// The agent's input: the node's frames on stdin. Read by the main loop, and by a call running
/// on the reader thread while it waits for a host-service reply ([`HostLink::call_on_reader`]).
pub(crate) struct Inbox {
    input: std::cell::RefCell<BufReader<io::Stdin>>,
    buf: std::cell::RefCell<Vec<u8>>,
    /// See [`run`].
    escape_payload: Option<Vec<u8>>,
    /// The node asked the agent to stop (or went away) while a call was reading.
    pub(crate) stopping: std::cell::Cell<bool>,
}

/// What [`Inbox::next`] read.
pub(crate) enum Next {
    Frame(ToAgent),
    Malformed(String),
    /// Input ended; with the reason when it broke.
    Closed(Option<String>),
    TimedOut,
}

impl Inbox {
    fn new(escape_payload: Option<Vec<u8>>) -> Self {
        Self {
            input: std::cell::RefCell::new(BufReader::with_capacity(256 * 1024, io::stdin())),
            buf: std::cell::RefCell::default(),
            escape_payload,
            stopping: std::cell::Cell::new(false),
        }
    }

    /// The next frame; with a `deadline`, gives up when nothing has arrived by then.
    pub(crate) fn next(&self, deadline: Option<std::time::Instant>) -> Next {
        let mut input = self.input.borrow_mut();
        if let Some(deadline) = deadline {
            // A signal can end a wait early; only the deadline ends it for good.
            while input.buffer().is_empty()
                && !stdin_readable(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                if std::time::Instant::now() >= deadline {
                    return Next::TimedOut;
                }
            }
        }
        let mut buf = self.buf.borrow_mut();
        match agent_wire::read_frame(&mut *input, &mut buf) {
            Ok(true) => {}
            Ok(false) => return Next::Closed(None),
            Err(e) => return Next::Closed(Some(e.to_string())),
        }
        match agent_wire::decode_to_agent(&buf) {
            Ok(frame) => {
                if let ToAgent::Invoke { payload, .. } = &frame
                    && self.escape_payload.as_deref() == Some(&payload[..])
                {
                    limits::forbidden_syscall();
                }
                Next::Frame(frame)
            }
            Err(e) => Next::Malformed(e.to_string()),
        }
    }

    /// Are further frames already waiting (or is the end of input there)?
    fn more_buffered(&self) -> bool {
        !self.input.borrow().buffer().is_empty() || stdin_readable(std::time::Duration::ZERO)
    }
}

/// The failure frame for job `id`.
pub fn failed(id: u64, elapsed_nanos: u64, code: FailureCode, message: String) -> FromAgent {
    FromAgent::Failed {
        id,
        elapsed_nanos,
        code,
        message,
    }
}

/// The frame that ends job `id`: its reply, or its failure with the code `code_of` gives.
pub(crate) fn outcome<E: std::fmt::Display>(
    id: u64,
    elapsed: std::time::Duration,
    result: Result<Vec<u8>, E>,
    code_of: impl FnOnce(&E) -> FailureCode,
) -> FromAgent {
    let elapsed_nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
    match result {
        Ok(reply) => FromAgent::Reply {
            id,
            elapsed_nanos,
            reply,
        },
        Err(e) => failed(id, elapsed_nanos, code_of(&e), e.to_string()),
    }
}

fn load(
    init: &AgentInit,
    artifact: Vec<u8>,
    writer: FrameWriter,
    host: Arc<HostLink>,
    inbox: &std::rc::Rc<Inbox>,
    gate: Arc<logs::LogGate>,
) -> Result<(Box<dyn Executor>, AgentReady), String> {
    match init.workload_type {
        WorkloadType::Wasm => wasm::load(init, artifact, writer, host, gate),
        WorkloadType::Javascript => js::load(init, artifact, writer, host, inbox.clone(), gate),
    }
}

/// Runs the agent on this process's stdin/stdout until the node says stop or goes away.
/// `sandbox = false` (the node's dev mode) skips the process limits. Returns the exit code.
/// `escape_payload` is a test hook: a call whose payload is exactly these bytes makes a forbidden
/// syscall, as a native-code escape would.
pub fn run(sandbox: bool, escape_payload: Option<Vec<u8>>) -> i32 {
    let writer = FrameWriter::new();
    let inbox = std::rc::Rc::new(Inbox::new(escape_payload));
    let sandboxed = sandbox;
    let trim = resident::Trim::prepare();
    let mut sandbox = limits::apply_process_limits(sandboxed);

    let (init, artifact) = match inbox.next(None) {
        Next::Frame(ToAgent::Init { init, artifact }) => {
            match serde_json::from_slice::<AgentInit>(&init) {
                Ok(init) => (init, artifact),
                Err(e) => return fail_init(&writer, format!("bad init: {e}")),
            }
        }
        Next::Frame(_) => return fail_init(&writer, "first frame was not init".into()),
        Next::Malformed(e) | Next::Closed(Some(e)) => return fail_init(&writer, e),
        Next::Closed(None) | Next::TimedOut => {
            return fail_init(&writer, "no init frame".into());
        }
    };

    if sandboxed {
        if init.workload_type == WorkloadType::Wasm {
            let fast = nex_runtime_wasm::prepare_for_sandbox();
            sandbox.insert(
                "wasm_memory_reset".into(),
                if fast { "pagemap_scan" } else { "memset" }.into(),
            );
        }
        let cache_dir = init.cache_dir.as_ref().map(std::path::PathBuf::from);
        let address_space_bytes = match init.workload_type {
            // QuickJS's own heap limit for every instance the function may get, an allocator
            // arena (64 MiB of address space) each, and room for the agent itself.
            WorkloadType::Javascript => {
                let instances = js::instances_for(init.limits.max_concurrency) as u64;
                Some((instances * (init.limits.memory_mb as u64 + 64) + 1024) << 20)
            }
            WorkloadType::Wasm => None,
        };
        limits::apply_workload_limits(
            &limits::WorkloadLimits {
                cache_dir: cache_dir.as_deref(),
                address_space_bytes,
            },
            &mut sandbox,
        );
    }
    let host = Arc::new(HostLink::new(writer.clone()));
    let gate = Arc::new(logs::LogGate::new(
        init.log_bytes_per_sec,
        init.log_burst_bytes,
    ));
    let loaded = load(
        &init,
        artifact,
        writer.clone(),
        host.clone(),
        &inbox,
        gate.clone(),
    );
    let (executor, mut ready) = match loaded {
        Ok(x) => x,
        Err(e) => return fail_init(&writer, e),
    };
    ready.sandbox = sandbox;
    // Loading touched code no call needs (the compiler, the init path): let it go, and again
    // whenever the function falls idle.
    trim.apply();
    let idle_after = init
        .idle_trim_millis
        .map_or(resident::IDLE_AFTER, std::time::Duration::from_millis);
    ready.sandbox.insert(
        "resident_trim".into(),
        format!(
            "{} read-only file mappings, again after {} ms idle",
            trim.mappings(),
            idle_after.as_millis()
        ),
    );
    let idle = resident::IdleTrim::start(trim, idle_after);
    writer.send(&[FromAgent::Ready(
        serde_json::to_vec(&ready).unwrap_or_default(),
    )]);

    while !inbox.stopping.get() {
        let frame = match inbox.next(None) {
            Next::Frame(frame) => frame,
            Next::Malformed(e) => {
                tracing::warn!("ignoring malformed frame: {e}");
                executor.flush();
                continue;
            }
            Next::Closed(None) | Next::TimedOut => break,
            Next::Closed(Some(e)) => {
                tracing::error!("agent input broken: {e}");
                break;
            }
        };
        idle.activity();
        match frame {
            ToAgent::Invoke {
                id,
                subject,
                payload,
            } => {
                let more_input = inbox.more_buffered();
                executor.submit(
                    Job {
                        id,
                        subject,
                        payload,
                    },
                    more_input,
                );
                continue;
            }
            ToAgent::HostReply { id, result } => host.deliver(id, result),
            ToAgent::Shutdown => break,
            ToAgent::Init { .. } => tracing::warn!("ignoring second init"),
        }
        // Replies held for a burst leave before anything but a call is handled: the reader may
        // block on its next read.
        executor.flush();
    }
    executor.finish();
    if let Some(dropped) = gate.flush() {
        writer.send(&[dropped]);
    }
    let _ = io::stdout().flush();
    0
}

/// Are bytes (or the end of input) waiting on stdin, or do they arrive within `wait`? A zero
/// `wait` is one cheap syscall that never blocks.
fn stdin_readable(wait: std::time::Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
}

fn fail_init(writer: &FrameWriter, message: String) -> i32 {
    writer.send(&[FromAgent::InitFailed(message)]);
    2
}

/// Runs one job, appending its frames (logs, then the reply or failure) to the batch.
pub(crate) type Work = dyn Fn(Job, &mut Vec<FromAgent>) + Send + Sync;

/// How long finished replies may wait for the jobs queued behind them before they are sent.
pub(crate) const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_micros(100);
/// Most frames sent in one write.
pub(crate) const BATCH_FRAMES: usize = 64;

/// Runs `first` and then, while the batch window is open, the jobs already waiting (`more`),
/// and sends all their frames in one write: a burst costs one wake-up and one syscall instead of
/// one per call, and an idle queue sends at once.
pub(crate) fn run_batch(
    first: Job,
    mut more: impl FnMut() -> Option<Job>,
    mut run: impl FnMut(Job, &mut Vec<FromAgent>),
    frames: &mut Vec<FromAgent>,
    writer: &FrameWriter,
) {
    let started = std::time::Instant::now();
    frames.clear();
    run(first, frames);
    while frames.len() < BATCH_FRAMES && started.elapsed() < BATCH_WINDOW {
        match more() {
            Some(job) => run(job, frames),
            None => break,
        }
    }
    writer.send(frames);
    frames.clear();
}

/// A pool of worker threads fed by one channel.
pub(crate) struct Pool {
    tx: Option<crossbeam_channel::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    work: Arc<Work>,
    writer: FrameWriter,
    /// Jobs handed to workers and not finished yet.
    busy: Arc<AtomicUsize>,
    /// Moving average of recent job durations, nanoseconds: only fast functions run inline, so a
    /// slow call never holds up the reader.
    recent_nanos: Arc<AtomicU64>,
    /// Runs on a thread after it has sent the frames of its jobs (clean-up kept off the reply's
    /// path), told whether the thread is going to wait for work (nothing queued).
    after_send: fn(bool),
    /// Jobs may run on the reader thread (not when they may block on a host-service call: only
    /// the reader can deliver its reply).
    inline: bool,
}

/// How long a worker keeps what `after_send(false)` let it keep when no job comes.
const HOLD_WHILE_IDLE: std::time::Duration = std::time::Duration::from_millis(2);

/// Functions whose recent calls averaged under this may run on the reader thread.
const INLINE_BELOW_NANOS: u64 = 500_000;

fn timed(work: &Work, job: Job, frames: &mut Vec<FromAgent>, recent: &AtomicU64) {
    let started = std::time::Instant::now();
    work(job, frames);
    let took = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    let old = recent.load(Ordering::Relaxed);
    recent.store(old - old / 8 + took / 8, Ordering::Relaxed);
}

impl Pool {
    /// Starts `n` workers, each running `work` on jobs, sending the frames with `writer` and
    /// then calling `after_send`.
    pub(crate) fn start(
        n: usize,
        work: Arc<Work>,
        writer: FrameWriter,
        after_send: fn(bool),
        inline: bool,
    ) -> Self {
        // A multi-consumer channel: a job wakes exactly one idle worker (a mutex around a
        // single-consumer receiver woke two threads per job).
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let busy = Arc::new(AtomicUsize::new(0));
        let recent_nanos = Arc::new(AtomicU64::new(0));
        let workers = (0..n.max(1))
            .map(|i| {
                let rx = rx.clone();
                let work = work.clone();
                let busy = busy.clone();
                let recent = recent_nanos.clone();
                let writer = writer.clone();
                std::thread::Builder::new()
                    .name(format!("nex-worker-{i}"))
                    .spawn(move || {
                        let mut frames = Vec::new();
                        // A worker that kept something for the next job lets go of it once the
                        // queue has been empty for a moment.
                        let next = || match rx.recv_timeout(HOLD_WHILE_IDLE) {
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                after_send(true);
                                rx.recv().ok()
                            }
                            job => job.ok(),
                        };
                        while let Some(first) = next() {
                            let mut done = 0;
                            run_batch(
                                first,
                                || rx.try_recv().ok(),
                                |job, frames| {
                                    timed(&*work, job, frames, &recent);
                                    done += 1;
                                },
                                &mut frames,
                                &writer,
                            );
                            busy.fetch_sub(done, Ordering::AcqRel);
                            after_send(rx.is_empty());
                        }
                    })
                    .expect("spawn worker")
            })
            .collect();
        Self {
            tx: Some(tx),
            workers,
            work,
            writer,
            busy,
            recent_nanos,
            after_send,
            inline,
        }
    }

    /// Runs `job` on the calling (reader) thread when nothing else is running and no other
    /// request is waiting — saving a thread wake-up on the latency path — and hands it to a
    /// worker otherwise.
    pub(crate) fn submit(&self, job: Job, more_input: bool) {
        if self.inline
            && !more_input
            && self.busy.load(Ordering::Acquire) == 0
            && self.recent_nanos.load(Ordering::Relaxed) < INLINE_BELOW_NANOS
        {
            let mut frames = Vec::new();
            timed(&*self.work, job, &mut frames, &self.recent_nanos);
            self.writer.send(&frames);
            (self.after_send)(true);
            return;
        }
        if let Some(tx) = &self.tx {
            self.busy.fetch_add(1, Ordering::AcqRel);
            let _ = tx.send(job);
        }
    }

    pub(crate) fn finish(mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
