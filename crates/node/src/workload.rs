//! A deployed workload: its agent (restarted when it dies), its trigger subscriptions, and the
//! handling of each trigger message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::Message;
use futures::StreamExt;
use nex_proto::agent_wire::FailureCode;
use nex_proto::control::{
    MachineInfo, MachineSummary, ResolvedLimits, WorkloadDescription, WorkloadType, format_duration,
};
use nex_proto::events::{self, AgentEvent};
use nex_proto::{subjects, validate};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

use crate::agent::{AgentConn, AgentContext, AgentSpec, Budgets, Exit, SpawnError};
use crate::answer::{Answerer, Call, Outcome};
use crate::config::{CallEvents, RateLimits};
use crate::emitter::Emitter;

/// What a workload is, fixed at deploy.
#[derive(Debug, Clone)]
pub struct WorkloadMeta {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub description: String,
    pub workload_type: WorkloadType,
    pub hash: String,
    pub issuer: String,
    pub trigger_subjects: Vec<String>,
    pub limits: ResolvedLimits,
    pub total_bytes: u64,
    /// The deployment record this workload is a replica of (`None`: deployed directly).
    pub record: Option<crate::control::RecordRef>,
}

/// A running workload.
pub struct Workload {
    pub meta: WorkloadMeta,
    pub runtime: String,
    /// Isolation measures the agent reported as in force.
    pub sandbox: std::collections::BTreeMap<String, String>,
    started: Instant,
    emitter: Arc<Emitter>,
    conn: RwLock<Arc<AgentConn>>,
    permits: Arc<Semaphore>,
    stopping: AtomicBool,
    /// Tells the trigger loops to stop taking messages and drain.
    stop_triggers: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    limit: Duration,
    answerer: Arc<Answerer>,
    /// Calls refused for their reply subject (see [`Workload::refuse_reply`]).
    refused_calls: AtomicU64,
    /// Times the agent was started again after it ended.
    restarts: AtomicU64,
}

impl Workload {
    /// Starts the agent, waits until it has loaded the artifact, then subscribes to the triggers.
    /// `host` performs the workload's host-service calls.
    pub async fn start(
        meta: WorkloadMeta,
        spec: AgentSpec,
        client: async_nats::Client,
        host: nex_hostservices::HostServices,
        emitter: Arc<Emitter>,
        rates: RateLimits,
        call_events: CallEvents,
    ) -> Result<Arc<Workload>, SpawnError> {
        let answerer = Arc::new(Answerer::new(
            client.clone(),
            emitter.clone(),
            &meta.namespace,
            &meta.name,
            &meta.id,
            call_events,
        ));
        let logs = AgentContext {
            answerer: answerer.clone(),
            emitter: emitter.clone(),
            id: meta.id.clone(),
            log_subject: subjects::log(&meta.namespace, emitter.node_id(), &meta.name, &meta.id)
                .into(),
            host: Arc::new(host),
            budgets: Arc::new(Budgets::new(&rates, &meta.namespace, &meta.name)),
        };
        let (conn, ready, exit) = AgentConn::spawn(&spec, logs.clone()).await?;
        let limit = Duration::from_millis(meta.limits.timeout_ms);
        let permits = Arc::new(Semaphore::new(meta.limits.max_concurrency as usize));
        let wl = Arc::new(Workload {
            runtime: ready.runtime.clone(),
            sandbox: ready.sandbox.clone(),
            started: Instant::now(),
            emitter: emitter.clone(),
            conn: RwLock::new(conn),
            permits,
            stopping: AtomicBool::new(false),
            stop_triggers: watch::Sender::new(false),
            tasks: Default::default(),
            limit,
            answerer,
            refused_calls: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            meta,
        });
        tracing::info!(
            workload_id = %wl.meta.id,
            name = %wl.meta.name,
            cache_hit = ready.cache_hit,
            load_micros = ready.load_micros,
            "agent ready"
        );
        wl.agent_event(events::AGENT_STARTED, 0, String::new())
            .await;
        let mut tasks = Vec::new();
        for subject in &wl.meta.trigger_subjects {
            let group = subjects::trigger_queue_group(&wl.meta.namespace, &wl.meta.name);
            let sub = client
                .queue_subscribe(subject.clone(), group)
                .await
                .map_err(|e| SpawnError::Subscribe(format!("{subject}: {e}")))?;
            tasks.push(tokio::spawn(dispatch(wl.clone(), sub)));
        }
        tasks.push(tokio::spawn(supervise(wl.clone(), spec, logs, exit)));
        *wl.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        // Make sure the server has the subscriptions before we say "deployed".
        let _ = client.flush().await;
        Ok(wl)
    }

    fn conn(&self) -> Arc<AgentConn> {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Is the agent up?
    pub fn healthy(&self) -> bool {
        self.conn().is_alive()
    }

    /// Stops taking triggers, lets in-flight calls finish (up to `drain`), then ends the agent.
    pub async fn stop(&self, drain: Duration) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        // The trigger loops drain their subscriptions (every call the server sent before it
        // took the unsubscribe is still handled) and end; then in-flight calls finish. Past
        // `drain` both are cut short.
        self.stop_triggers.send_replace(true);
        let deadline = tokio::time::Instant::now() + drain;
        let triggers = self.meta.trigger_subjects.len();
        let mut loops: Vec<JoinHandle<()>> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let n = triggers.min(tasks.len());
            tasks.drain(..n).collect()
        };
        for l in &mut loops {
            if tokio::time::timeout_at(deadline, &mut *l).await.is_err() {
                l.abort();
            }
        }
        let all = self.meta.limits.max_concurrency;
        let _ = tokio::time::timeout_at(deadline, self.permits.acquire_many(all)).await;
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let conn = self.conn();
        conn.shutdown();
        let deadline = Instant::now() + Duration::from_secs(2);
        while conn.is_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        conn.kill();
    }

    /// What the Prometheus endpoint reports of this workload.
    pub fn sample(&self) -> crate::metrics::WorkloadSample<'_> {
        let (succeeded, failed) = self.answerer.counts();
        let limit = self.meta.limits.max_concurrency as usize;
        crate::metrics::WorkloadSample {
            namespace: &self.meta.namespace,
            name: &self.meta.name,
            succeeded,
            failed,
            stats: self.answerer.stats(),
            in_flight: limit.saturating_sub(self.permits.available_permits()) as u64,
            restarts: self.restarts.load(Ordering::Relaxed),
            agent_pid: self.conn().pid(),
        }
    }

    /// Summary for workload pings.
    pub fn summary(&self) -> MachineSummary {
        MachineSummary {
            id: self.meta.id.clone(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
            workload_type: self.meta.workload_type,
        }
    }

    /// Details for info answers.
    pub fn info(&self) -> MachineInfo {
        MachineInfo {
            agent_pid: Some(self.conn().pid()),
            id: self.meta.id.clone(),
            healthy: self.healthy(),
            uptime: format_duration(self.started.elapsed()),
            namespace: self.meta.namespace.clone(),
            workload: WorkloadDescription {
                name: self.meta.name.clone(),
                description: self.meta.description.clone(),
                runtime: self.runtime.clone(),
                workload_type: self.meta.workload_type,
                hash: self.meta.hash.clone(),
                trigger_subjects: self.meta.trigger_subjects.clone(),
            },
            refused_calls: self.refused_calls.load(Ordering::Relaxed),
            succeeded_calls: self.answerer.counts().0,
            failed_calls: self.answerer.counts().1,
        }
    }

    /// Refuses a call whose reply subject is a `$` subject (JetStream, KV, object-store and
    /// system APIs): publishing the answer there would act with the node's permissions on the
    /// caller's behalf. The call is not run; it is counted and reported as `function_exec_failed`.
    async fn refuse_reply(&self, msg: Message) {
        self.refused_calls.fetch_add(1, Ordering::Relaxed);
        let reply = msg.reply.as_deref().unwrap_or_default();
        tracing::warn!(workload_id = %self.meta.id, reply, "call refused: reply subject is reserved");
        self.answerer
            .refused(
                &msg.subject,
                FailureCode::Forbidden,
                format!(
                    "call not run: its reply subject `{reply}` begins with `$` (JetStream, KV, \
                     object-store and system APIs), where the node publishes nothing for a caller"
                ),
            )
            .await;
    }

    async fn agent_event(&self, kind: &str, code: i32, message: String) {
        self.emitter
            .event(
                &self.meta.namespace,
                kind,
                AgentEvent {
                    workload_id: self.meta.id.clone(),
                    workload_name: self.meta.name.clone(),
                    message,
                    code,
                },
            )
            .await;
    }

    /// Starts one trigger message's call; its answer goes out when the agent replies.
    async fn start_call(&self, msg: Message, permit: OwnedSemaphorePermit) {
        let call = Call {
            span: crate::spans::call(
                &self.meta.namespace,
                &self.meta.name,
                &msg.subject,
                msg.headers.as_ref(),
            ),
            trigger: msg.subject,
            reply_to: msg.reply,
            permit,
            started: Instant::now(),
        };
        let refused = if msg.payload.len() > self.meta.limits.max_payload_bytes as usize {
            Some((
                call,
                Outcome::Failed {
                    code: FailureCode::TooLarge,
                    message: format!(
                        "payload of {} bytes is above this function's limit of {} bytes",
                        msg.payload.len(),
                        self.meta.limits.max_payload_bytes
                    ),
                },
            ))
        } else {
            self.conn()
                .start(call, &msg.payload, self.limit)
                .err()
                .map(|refused| {
                    let (call, why) = *refused;
                    (call, Outcome::unavailable(why))
                })
        };
        if let Some((call, outcome)) = refused {
            self.answerer.answer(call, outcome).await;
        }
    }
}

async fn dispatch(wl: Arc<Workload>, mut sub: async_nats::Subscriber) {
    // The trigger loop only hands messages to the agent; answers go out from the task that reads
    // the agent's replies. A call holds one of the workload's permits until it is answered, so
    // the concurrency limit (shared by all triggers) is enforced here.
    let mut stop = wl.stop_triggers.subscribe();
    let mut draining = false;
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed(), if !draining => {
                // Unsubscribe, and keep handling what the server sent before it took that:
                // the stream ends at the server's answer to the drain's ping.
                draining = true;
                if sub.drain().await.is_err() {
                    break;
                }
                continue;
            }
            msg = sub.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
        };
        // Before anything else: one byte of the reply subject, no allocation.
        if msg.reply.as_deref().is_some_and(validate::reply_refused) {
            wl.refuse_reply(msg).await;
            continue;
        }
        // A stop waits for this loop to end (up to its drain time), so a call taken from the
        // subscription is always handled.
        let permit = match wl.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match wl.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        wl.start_call(msg, permit).await;
    }
    let _ = sub.unsubscribe().await;
}

/// Restarts the agent whenever it dies, with back-off, until the workload stops.
async fn supervise(
    wl: Arc<Workload>,
    spec: AgentSpec,
    logs: AgentContext,
    mut exit: oneshot::Receiver<Exit>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let ended = (&mut exit).await.unwrap_or(Exit {
            code: -1,
            message: "agent lost".into(),
        });
        if wl.stopping.load(Ordering::Acquire) {
            wl.agent_event(events::AGENT_STOPPED, ended.code, ended.message)
                .await;
            return;
        }
        tracing::warn!(workload_id = %wl.meta.id, code = ended.code, "agent stopped: {}", ended.message);
        wl.agent_event(events::AGENT_STOPPED, ended.code, ended.message)
            .await;
        loop {
            tokio::time::sleep(backoff).await;
            if wl.stopping.load(Ordering::Acquire) {
                return;
            }
            match AgentConn::spawn(&spec, logs.clone()).await {
                Ok((conn, _ready, next_exit)) => {
                    *wl.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
                    exit = next_exit;
                    wl.restarts.fetch_add(1, Ordering::Relaxed);
                    wl.agent_event(events::AGENT_STARTED, 0, "restarted".into())
                        .await;
                    backoff = Duration::from_millis(50);
                    break;
                }
                Err(e) => {
                    tracing::error!(workload_id = %wl.meta.id, "agent restart failed: {e}");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
