//! Adapts [`nex_runtime_js`] to the agent: one thread owns the QuickJS runtime and runs jobs in order.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nex_proto::agent_wire::{AgentInit, AgentReady, FailureCode, FromAgent, LogLevel};
use nex_runtime_js::{ConsoleLevel, InvokeError, JsConfig, JsFunction};

use std::sync::Arc;

use crate::{Executor, FrameWriter, HostLink, Job, outcome, run_batch};

struct JsExecutor {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Executor for JsExecutor {
    fn submit(&self, job: Job, _more_input: bool) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
    }
    fn finish(mut self: Box<Self>) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

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
    let (tx, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<AgentReady, String>>();
    let thread = std::thread::Builder::new()
        .name("nex-js".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let logs = Rc::new(RefCell::new(HeldLogs::default()));
            let console = {
                let logs = logs.clone();
                let writer = writer.clone();
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
                let writer = writer.clone();
                Box::new(move |req| {
                    // A host call waits on the network: what the function said so far goes now.
                    logs.borrow_mut().flush(&writer);
                    host.call(req)
                })
            };
            let function = match JsFunction::load(&source, config, console, Some(host_fn)) {
                Ok(f) => f,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(AgentReady {
                runtime: format!("quickjs-ng (rquickjs {})", nex_runtime_js::RQUICKJS_VERSION),
                cache_hit: false,
                load_micros: started.elapsed().as_micros() as u64,
                sandbox: Default::default(),
            }));
            let mut frames = Vec::new();
            while let Ok(first) = rx.recv() {
                run_batch(
                    first,
                    || rx.try_recv().ok(),
                    |job, frames| {
                        logs.borrow_mut().call_started = Some(Instant::now());
                        let inv = function.invoke(job.id, &job.subject, &job.payload);
                        logs.borrow_mut().take_into(frames);
                        frames.push(outcome(job.id, inv.elapsed, inv.result, code_of));
                    },
                    &mut frames,
                    &writer,
                );
            }
        })
        .map_err(|e| e.to_string())?;
    let ready = ready_rx
        .recv()
        .map_err(|_| "the JavaScript thread died while loading".to_owned())??;
    Ok((
        Box::new(JsExecutor {
            tx: Some(tx),
            thread: Some(thread),
        }),
        ready,
    ))
}
