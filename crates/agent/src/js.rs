//! Adapts [`nex_runtime_js`] to the agent: one thread owns the QuickJS runtime and runs jobs in order.

use std::sync::mpsc;
use std::time::Duration;

use nex_proto::agent_wire::{AgentInit, AgentReady, FailureCode, FromAgent, LogLevel};
use nex_runtime_js::{ConsoleLevel, InvokeError, JsConfig, JsFunction};

use std::sync::Arc;

use crate::{Executor, FrameWriter, HostLink, Job, failed, run_batch};

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
            let log_writer = writer.clone();
            let console = Box::new(move |id: u64, l: ConsoleLevel, text: String| {
                log_writer.send(&[FromAgent::Log {
                    id,
                    level: level(l),
                    text,
                }]);
            });
            let host_fn: nex_runtime_js::HostFn = Box::new(move |req| host.call(req));
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
                        let inv = function.invoke(job.id, &job.subject, &job.payload);
                        let nanos = inv.elapsed.as_nanos() as u64;
                        frames.push(match inv.result {
                            Ok(reply) => FromAgent::Reply {
                                id: job.id,
                                elapsed_nanos: nanos,
                                reply,
                            },
                            Err(e) => failed(job.id, nanos, code_of(&e), e.to_string()),
                        });
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
