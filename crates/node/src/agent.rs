//! The node's side of one agent process: spawning it, the init handshake, the framed pipe, and
//! matching replies to pending invocations.
//!
//! The agent gets an empty environment (never the node's NATS credentials), its own process group,
//! and is killed when its handle drops or when it stops answering.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nex_proto::agent_wire::{self, AgentInit, AgentReady, FailureCode, FromAgent, ToAgent};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use nex_proto::events::{self, LogsDropped};

use crate::answer::{Answerer, Call, Outcome};
use crate::config::RateLimits;
use crate::emitter::Emitter;
use nex_hostapi::rate::{LogBudget, TokenBucket};

/// Extra time the node waits beyond a function's own limit before declaring the agent stuck.
const GRACE: Duration = Duration::from_secs(2);

/// How to start an agent for one workload.
#[derive(Clone)]
pub struct AgentSpec {
    pub init: AgentInit,
    pub artifact: Arc<Vec<u8>>,
    /// Where the agent process comes from.
    pub agents: Arc<WarmAgents>,
    /// Longest the load (compile, top level, init) may take; the agent is killed past it.
    pub load_timeout: Duration,
}

/// How agent processes are started; the same for every workload of a node.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    pub no_sandbox: bool,
    /// See [`crate::config::NodeConfig::test_escape_payload`].
    pub test_escape_payload: Option<String>,
    /// The agents' CPU groups; `Err`: why agents run without a CPU share.
    pub cpu: Result<Arc<crate::cpu::CpuGroups>, Arc<crate::cpu::CpuGroupError>>,
    /// Loading agents run under `SCHED_IDLE` (`crate::priority`; the node config's
    /// `cpu.idle_loading`).
    pub idle_loading: bool,
}

impl Launch {
    /// What workloads show for their CPU share in their `sandbox` map.
    fn cpu_state(&self) -> String {
        match &self.cpu {
            Ok(_) => "active".into(),
            Err(e) => format!("unavailable: {e}"),
        }
    }

    /// What workloads show for their priority while loading in their `sandbox` map.
    fn priority_state(&self) -> String {
        if self.idle_loading {
            crate::priority::state()
        } else {
            "off in the node config".into()
        }
    }
}

/// An agent process that is running and has put its process limits in place, waiting for the
/// workload (the init frame).
pub struct Started {
    child: tokio::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Started {
    /// Starts `<exe> agent` with an empty environment, in its own process group, with 1 MiB pipes.
    /// Must run on a runtime worker thread, not a blocking-pool one: the agent dies with the
    /// thread that started it (parent-death signal), and blocking-pool threads come and go.
    fn launch(launch: &Launch) -> Result<Started, SpawnError> {
        let mut cmd = Command::new(&launch.exe);
        cmd.arg("agent");
        if launch.no_sandbox {
            cmd.arg("--no-sandbox");
        }
        if let Some(p) = &launch.test_escape_payload {
            cmd.args(["--test-escape-payload", p]);
        }
        cmd.env_clear()
            .envs(std::env::vars().filter(|(k, _)| k == "RUST_LOG" || k == "RUST_BACKTRACE"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn().map_err(SpawnError::Spawn)?;
        let pid = child.id().unwrap_or_default();
        // Before it reads its workload: all the tenant code it will run has a share of its own.
        if let Ok(groups) = &launch.cpu
            && let Err(e) = groups.place(pid)
        {
            tracing::warn!("agent {pid} runs without a CPU share of its own: {e}");
        }
        if launch.idle_loading
            && let Err(e @ crate::priority::PriorityError::Set { .. }) =
                crate::priority::loading(pid)
        {
            tracing::warn!("agent {pid} loads at the node's priority: {e}");
        }
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        enlarge_pipe(&stdin);
        enlarge_pipe(&stdout);
        Ok(Started {
            child,
            stdin,
            stdout: BufReader::with_capacity(256 * 1024, stdout),
            pid,
        })
    }
}

/// Agent processes started ahead of need (upstream Nex keeps a pool of warm VMs the same way): a
/// deploy takes one that is already running and sandboxed, which saves the process start (about
/// 3 ms here) from its cold start, and a replacement starts in the background. An agent is not
/// tied to a workload type or tenant until its init frame arrives.
pub struct WarmAgents {
    launch: Launch,
    size: usize,
    ready: Mutex<Vec<Started>>,
    refilling: AtomicBool,
}

impl WarmAgents {
    /// A pool keeping `size` agents ready; 0 starts every agent on demand.
    pub fn new(launch: Launch, size: usize) -> Arc<Self> {
        Arc::new(Self {
            launch,
            size,
            ready: Mutex::default(),
            refilling: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Started>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A running agent: a warm one if any is alive, else a new one. Starts a replacement.
    fn take(self: &Arc<Self>) -> Result<Started, SpawnError> {
        // Agents that died while waiting are dropped on the way.
        let warm = {
            let mut ready = self.lock();
            std::iter::from_fn(|| ready.pop())
                .find_map(|mut s| matches!(s.child.try_wait(), Ok(None)).then_some(s))
        };
        self.refill();
        match warm {
            Some(s) => Ok(s),
            None => Started::launch(&self.launch),
        }
    }

    /// Ends the warm agents and removes the agents' CPU groups (at node exit, after the
    /// workloads stopped; a group whose agent still runs stays for the next node to remove).
    pub async fn close(&self) {
        let ready = std::mem::take(&mut *self.lock());
        for mut s in ready {
            let _ = s.child.kill().await;
        }
        // Stopped workloads' agents may take a moment to exit; then their groups can go.
        if let Ok(groups) = &self.launch.cpu {
            for _ in 0..50 {
                if groups.close() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Agents started and waiting for a workload.
    pub fn warm(&self) -> usize {
        self.lock().len()
    }

    /// Starts agents in the background until `size` are ready.
    pub fn refill(self: &Arc<Self>) {
        if self.size == 0 || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            while pool.lock().len() < pool.size {
                match Started::launch(&pool.launch) {
                    Ok(s) => pool.lock().push(s),
                    Err(e) => {
                        tracing::warn!("could not start a warm agent: {e}");
                        break;
                    }
                }
                tokio::task::yield_now().await;
            }
            pool.refilling.store(false, Ordering::Release);
        });
    }
}

/// What an agent's output needs on the node side: where log lines go, and who performs its
/// host-service calls.
#[derive(Clone)]
pub struct AgentContext {
    pub emitter: Arc<Emitter>,
    /// The workload id.
    pub id: String,
    /// Where its log lines go.
    pub log_subject: async_nats::Subject,
    pub host: Arc<nex_hostservices::HostServices>,
    /// Answers callers as replies arrive.
    pub answerer: Arc<Answerer>,
    /// The function's log and host-call budgets (shared by its successive agents).
    pub budgets: Arc<Budgets>,
}

/// What one function may send the node per second, and the event that reports dropped logs.
pub struct Budgets {
    logs: Mutex<LogBudget>,
    host_calls: Mutex<TokenBucket>,
    namespace: String,
    name: String,
}

impl Budgets {
    pub fn new(limits: &RateLimits, namespace: &str, name: &str) -> Self {
        let now = Instant::now();
        Self {
            logs: Mutex::new(LogBudget::new(
                limits.log_bytes_per_sec,
                limits.log_burst_bytes,
                now,
            )),
            host_calls: Mutex::new(TokenBucket::new(
                limits.host_calls_per_sec,
                limits.host_call_burst,
                now,
            )),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn host_call_allowed(&self) -> bool {
        self.host_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(1, Instant::now())
    }
}

impl AgentContext {
    /// Publishes one of the agent's log lines, within the function's log budget; what the budget
    /// drops is reported in a `logs_dropped` event at most once a second.
    async fn log(&self, level: agent_wire::LogLevel, text: &str) {
        let (admitted, report) = {
            let now = Instant::now();
            let mut b = self.budgets.logs.lock().unwrap_or_else(|p| p.into_inner());
            let admitted = b.admit(text.len(), now);
            (admitted, b.report(now, false))
        };
        if admitted {
            self.emitter
                .log(&self.log_subject, &self.id, level.as_str(), text)
                .await;
        }
        if let Some((lines, bytes)) = report {
            self.logs_dropped(lines, bytes).await;
        }
    }

    /// Counts the lines the agent's own log budget dropped; reported like the node's drops.
    async fn dropped_by_agent(&self, lines: u64, bytes: u64) {
        let report = {
            let mut b = self.budgets.logs.lock().unwrap_or_else(|p| p.into_inner());
            b.add_dropped(lines, bytes);
            b.report(Instant::now(), false)
        };
        if let Some((lines, bytes)) = report {
            self.logs_dropped(lines, bytes).await;
        }
    }

    /// Reports what the log budget dropped and has not reported yet (when an agent ends).
    async fn flush_dropped(&self) {
        let report = self
            .budgets
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(Instant::now(), true);
        if let Some((lines, bytes)) = report {
            self.logs_dropped(lines, bytes).await;
        }
    }

    async fn logs_dropped(&self, dropped_lines: u64, dropped_bytes: u64) {
        self.emitter
            .event(
                &self.budgets.namespace,
                events::LOGS_DROPPED,
                LogsDropped {
                    workload_id: self.id.clone(),
                    workload_name: self.budgets.name.clone(),
                    dropped_lines,
                    dropped_bytes,
                },
            )
            .await;
    }
}

/// Performs one host-service call for an agent, within the function's host-call budget; returns
/// the `HostReply` frame to send back.
async fn host_reply_frame(logs: &AgentContext, id: u64, call: &[u8]) -> Vec<u8> {
    let result = if logs.budgets.host_call_allowed() {
        // Boxed: the call's future is large (every host service's state), and spawning copies
        // a future several times.
        Box::pin(nex_hostservices::call_encoded(&logs.host, call)).await
    } else {
        nex_hostapi::encode_result(&Err(nex_hostapi::GuestError::new(
            nex_hostapi::ErrorKind::RateLimited,
            "host call: rate limited: this function makes more host-service calls per second than the node allows",
        )))
    };
    let mut frame = Vec::new();
    agent_wire::encode_to_agent(&ToAgent::HostReply { id, result }, &mut frame);
    frame
}

/// How an agent ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

/// A call waiting for its reply, and when the node gives up on the agent.
struct Waiter {
    call: Call,
    deadline: Instant,
    limit: Duration,
}

type Pending = Mutex<HashMap<u64, Waiter>>;

/// How often the watchdog looks for calls the agent left unanswered.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(500);

/// A live connection to one agent process.
pub struct AgentConn {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    dead: Arc<AtomicBool>,
    pid: u32,
}

impl AgentConn {
    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Reasons an agent did not come up.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("could not start the agent process: {0}")]
    Spawn(std::io::Error),
    /// The agent refused the workload; the message is the runtime's reason.
    #[error("{0}")]
    Refused(String),
    #[error(
        "the workload did not finish loading within {0:?} (the node's load_timeout, plus \
         compile_time_per_mib for each MiB of artifact)"
    )]
    Timeout(Duration),
    #[error("the agent exited while loading: {0}")]
    Died(String),
    /// Subscribing to a trigger subject failed.
    #[error("could not subscribe to trigger {0}")]
    Subscribe(String),
}

async fn read_frame(r: &mut BufReader<ChildStdout>, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = agent_wire::frame_len(prefix)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    // Grow with the bytes that actually arrive: an agent that announces a huge frame and sends
    // nothing must not make the node allocate it.
    buf.clear();
    buf.reserve(len.min(agent_wire::PREALLOCATE_LIMIT));
    let got = (&mut *r).take(len as u64).read_to_end(buf).await?;
    if got != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "agent output ended inside a frame",
        ));
    }
    Ok(true)
}

impl AgentConn {
    /// Starts an agent, sends it the workload and waits until it is ready. The returned receiver
    /// yields once, when the agent process has ended.
    pub async fn spawn(
        spec: &AgentSpec,
        logs: AgentContext,
    ) -> Result<(Arc<AgentConn>, AgentReady, oneshot::Receiver<Exit>), SpawnError> {
        let Started {
            mut child,
            mut stdin,
            mut stdout,
            pid,
        } = spec.agents.take()?;

        let mut init_frame = Vec::new();
        agent_wire::encode_to_agent(
            &ToAgent::Init {
                init: serde_json::to_vec(&spec.init).expect("init serializes"),
                artifact: spec.artifact.to_vec(),
            },
            &mut init_frame,
        );
        let handshake = async {
            stdin.write_all(&init_frame).await?;
            stdin.flush().await?;
            let mut buf = Vec::new();
            loop {
                if !read_frame(&mut stdout, &mut buf).await? {
                    return Ok(None);
                }
                // Loading code (a JavaScript function's top level, an init phase as in Lambda)
                // may log and call host services: both are served until the agent is ready.
                match agent_wire::decode_from_agent(&buf) {
                    Ok(FromAgent::Log { level, text, .. }) => logs.log(level, &text).await,
                    Ok(FromAgent::LogsDropped { lines, bytes }) => {
                        logs.dropped_by_agent(lines, bytes).await
                    }
                    Ok(FromAgent::HostCall { id, call }) => {
                        let frame = host_reply_frame(&logs, id, &call).await;
                        stdin.write_all(&frame).await?;
                        stdin.flush().await?;
                    }
                    _ => return Ok::<_, std::io::Error>(Some(buf)),
                }
            }
        };
        let first = match tokio::time::timeout(spec.load_timeout, handshake).await {
            Err(_) => return Err(SpawnError::Timeout(spec.load_timeout)),
            Ok(Err(e)) => return Err(SpawnError::Died(e.to_string())),
            Ok(Ok(None)) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                return Err(SpawnError::Died(status));
            }
            Ok(Ok(Some(buf))) => buf,
        };
        let mut ready: AgentReady = match agent_wire::decode_from_agent(&first) {
            Ok(FromAgent::Ready(json)) => serde_json::from_slice(&json).unwrap_or_default(),
            Ok(FromAgent::InitFailed(msg)) => return Err(SpawnError::Refused(msg)),
            Ok(other) => {
                return Err(SpawnError::Died(format!(
                    "unexpected first frame {other:?}"
                )));
            }
            Err(e) => return Err(SpawnError::Died(e.to_string())),
        };

        if let Ok(groups) = &spec.agents.launch.cpu
            && let Err(e) = groups.loaded(pid)
        {
            tracing::warn!("agent {pid} keeps its loading CPU share: {e}");
        }
        if spec.agents.launch.idle_loading
            && let Err(e @ crate::priority::PriorityError::Set { .. }) = crate::priority::ready(pid)
        {
            tracing::warn!("agent {pid} keeps its loading priority: {e}");
        }
        ready
            .sandbox
            .insert("cpu_share".into(), spec.agents.launch.cpu_state());
        ready
            .sandbox
            .insert("load_priority".into(), spec.agents.launch.priority_state());
        let (frames_tx, frames_rx) = mpsc::unbounded_channel();
        let pending: Arc<Pending> = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        let (exit_tx, exit_rx) = oneshot::channel();
        tokio::spawn(write_loop(stdin, frames_rx));
        tokio::spawn(watchdog(pending.clone(), dead.clone(), pid, logs.clone()));
        tokio::spawn(read_loop(
            frames_tx.clone(),
            stdout,
            AgentProcess {
                child,
                cpu: spec.agents.launch.cpu.as_ref().ok().cloned(),
            },
            pending.clone(),
            dead.clone(),
            logs,
            exit_tx,
        ));
        Ok((
            Arc::new(AgentConn {
                frames: frames_tx,
                pending,
                next_id: AtomicU64::new(1),
                dead,
                pid,
            }),
            ready,
            exit_rx,
        ))
    }

    /// Is the agent process still running?
    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }

    /// Hands `call` to the agent; its answer goes out when the reply frame arrives. `limit` is
    /// the function's own time limit; if the agent does not answer within it plus a grace
    /// period, the call fails and the agent is killed (and restarted by its owner). Gives the
    /// call back when the agent is not running (boxed: that is the rare path, and a call is
    /// large).
    pub fn start(
        &self,
        call: Call,
        payload: &[u8],
        limit: Duration,
    ) -> Result<(), Box<(Call, &'static str)>> {
        if !self.is_alive() {
            return Err(Box::new((call, "the function's agent is restarting")));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(4 + 9 + 2 + call.trigger.len() + payload.len());
        agent_wire::encode_invoke(id, &call.trigger, payload, &mut frame);
        // No timer per call: the agent enforces `limit` itself, and the watchdog catches an
        // agent that stops answering.
        self.lock_pending().insert(
            id,
            Waiter {
                call,
                deadline: Instant::now() + limit + GRACE,
                limit,
            },
        );
        if self.frames.send(frame).is_err()
            && let Some(w) = self.lock_pending().remove(&id)
        {
            return Err(Box::new((w.call, "the function's agent is gone")));
        }
        Ok(())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the agent to finish in-flight work and exit.
    pub fn shutdown(&self) {
        let mut frame = Vec::new();
        agent_wire::encode_to_agent(&ToAgent::Shutdown, &mut frame);
        let _ = self.frames.send(frame);
    }

    /// Kills the agent process now.
    pub fn kill(&self) {
        kill_agent(&self.dead, self.pid);
    }
}

/// Pipe buffer size asked for; Linux allows up to `/proc/sys/fs/pipe-max-size` (1 MiB by
/// default) without privileges.
const PIPE_BYTES: usize = 1 << 20;

/// Grows a pipe to [`PIPE_BYTES`] so a frame with a large payload (64 KiB and more) is written
/// in one go: with the default 64 KiB buffer the writer blocks mid-frame and both processes
/// wake several times per request. Best effort: a smaller pipe still works.
fn enlarge_pipe(fd: impl std::os::fd::AsFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(fd, PIPE_BYTES);
}

fn kill_agent(dead: &AtomicBool, pid: u32) {
    if !dead.load(Ordering::Acquire) && pid != 0 {
        // The process is our un-reaped child (the read loop reaps it only after marking it
        // dead), so the pid cannot have been reused.
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Fails the calls an agent left unanswered past their limit plus a grace period, and kills
/// that agent: it is wedged (its own deadline should have fired), and the supervisor restarts it.
/// It also reports the log lines the function's log budget dropped, once they are due.
async fn watchdog(pending: Arc<Pending>, dead: Arc<AtomicBool>, pid: u32, ctx: AgentContext) {
    let answerer = ctx.answerer.clone();
    let mut tick = tokio::time::interval(WATCHDOG_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !dead.load(Ordering::Acquire) {
        tick.tick().await;
        let now = Instant::now();
        let due = ctx
            .budgets
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(now, false);
        if let Some((lines, bytes)) = due {
            ctx.logs_dropped(lines, bytes).await;
        }
        let overdue: Vec<Waiter> = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extract_if(|_, w| w.deadline <= now)
            .map(|(_, w)| w)
            .collect();
        if overdue.is_empty() {
            continue;
        }
        tracing::warn!(pid, calls = overdue.len(), "agent unresponsive; killing it");
        kill_agent(&dead, pid);
        for w in overdue {
            let message = format!(
                "the function did not finish within its time limit of {:?}",
                w.limit
            );
            answerer
                .answer(
                    w.call,
                    Outcome::Failed {
                        code: FailureCode::Timeout,
                        message,
                    },
                )
                .await;
        }
    }
}

async fn write_loop(mut stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        // Coalesce whatever is already queued into one write.
        let result = if let Ok(second) = rx.try_recv() {
            batch.clear();
            batch.extend_from_slice(&first);
            batch.extend_from_slice(&second);
            while batch.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            stdin.write_all(&batch).await
        } else {
            stdin.write_all(&first).await
        };
        if result.is_err() {
            return;
        }
    }
}

/// A running agent process and the CPU group it is in.
struct AgentProcess {
    child: tokio::process::Child,
    cpu: Option<Arc<crate::cpu::CpuGroups>>,
}

impl AgentProcess {
    /// Kills the agent first, so a half-broken one cannot linger, reaps it and removes its group.
    async fn end(mut self) -> std::io::Result<std::process::ExitStatus> {
        let pid = self.child.id();
        let _ = self.child.start_kill();
        let status = self.child.wait().await;
        if let (Some(groups), Some(pid)) = (self.cpu, pid) {
            groups.remove_agent(pid);
        }
        status
    }
}

async fn read_loop(
    frames: mpsc::UnboundedSender<Vec<u8>>,
    mut stdout: BufReader<ChildStdout>,
    process: AgentProcess,
    pending: Arc<Pending>,
    dead: Arc<AtomicBool>,
    logs: AgentContext,
    exit_tx: oneshot::Sender<Exit>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut reason = String::new();
    loop {
        match read_frame(&mut stdout, &mut buf).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                reason = format!("agent output broken: {e}");
                break;
            }
        }
        let msg = match agent_wire::decode_from_agent(&buf) {
            Ok(m) => m,
            Err(e) => {
                reason = format!("agent sent a malformed frame: {e}");
                break;
            }
        };
        let (id, outcome) = match msg {
            FromAgent::Reply {
                id,
                elapsed_nanos,
                reply,
            } => (
                id,
                Outcome::Reply {
                    elapsed_nanos,
                    reply,
                },
            ),
            FromAgent::Failed {
                id, code, message, ..
            } => (id, Outcome::Failed { code, message }),
            FromAgent::Log { level, text, .. } => {
                logs.log(level, &text).await;
                continue;
            }
            FromAgent::LogsDropped { lines, bytes } => {
                logs.dropped_by_agent(lines, bytes).await;
                continue;
            }
            FromAgent::HostCall { id, call } => {
                let ctx = logs.clone();
                let frames = frames.clone();
                tokio::spawn(async move {
                    let _ = frames.send(host_reply_frame(&ctx, id, &call).await);
                });
                continue;
            }
            FromAgent::Ready(_) | FromAgent::InitFailed(_) => continue,
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(w) = waiter {
            logs.answerer.answer(w.call, outcome).await;
        }
    }
    dead.store(true, Ordering::Release);
    logs.flush_dropped().await;
    let status = process.end().await;
    let drained: Vec<_> = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for (_, w) in drained {
        logs.answerer
            .answer(
                w.call,
                Outcome::unavailable("the function's agent exited during the call"),
            )
            .await;
    }
    let (code, message) = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let code = s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
            let m = if reason.is_empty() {
                s.to_string()
            } else {
                format!("{reason} ({s})")
            };
            (code, m)
        }
        Err(e) => (-1, format!("{reason} (wait failed: {e})")),
    };
    let _ = exit_tx.send(Exit { code, message });
}
