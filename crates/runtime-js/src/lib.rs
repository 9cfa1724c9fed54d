//! JavaScript runtime for nex functions, on QuickJS-ng through `rquickjs`.
//!
//! This crate owns evaluating a function's source once (the file is an expression that yields
//! `(subject, payload) => reply`, or an ES module whose default export is that function or an
//! object with a `handle` method), calling it per trigger with `payload` as a `Uint8Array` and
//! `this.hostServices` bound, awaiting a returned Promise, and turning the returned value into reply
//! bytes (bytes as-is, strings as UTF-8, other values as JSON, `undefined`/`null` as no reply).
//! It enforces the memory limit (QuickJS allocator cap), the time limit (interrupt handler) and a
//! stack limit, and routes `console.*` (formatted as Node formats it) to a sink the embedder
//! provides.
//!
//! A [`JsFunction`] is single-threaded (`!Send`): create and use it on one thread.
//! It knows nothing of NATS or the agent protocol.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nex_hostapi::{Call, CallResult};
use rquickjs::context::EvalOptions;
use rquickjs::function::This;
use rquickjs::{
    ArrayBuffer, CatchResultExt, CaughtError, Context, Ctx, Function, Object, Persistent, Promise,
    Runtime, TypedArray, Value,
};

/// Version of the `rquickjs` binding in use.
pub const RQUICKJS_VERSION: &str = "0.14";

/// Stack QuickJS may use; the thread running a [`JsFunction`] needs more than this.
pub const MAX_STACK_BYTES: usize = 1024 * 1024;

/// Errors loading a function.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The QuickJS runtime could not be created.
    #[error("could not create the JavaScript runtime: {0}")]
    Runtime(String),
    /// The source has a syntax error or threw while evaluating.
    #[error("the JavaScript source does not evaluate: {0}")]
    Eval(String),
    /// The source evaluated to something other than a function.
    #[error(
        "the JavaScript source evaluates to {0}, not a function: the file must be an expression \
         like `(subject, payload) => payload` or a module with `export default`"
    )]
    NotAFunction(String),
    /// The module imports another module (a function is one file).
    #[error("imports are not supported: the module imports '{0}' (a nex function is one file)")]
    Import(String),
    /// The module's default export is neither a function nor an object with `handle`.
    #[error(
        "the module's default export is {0}: export a function (`export default (subject, \
         payload) => …`) or an object with a `handle` method"
    )]
    NoDefault(String),
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvokeError {
    /// The function ran past its deadline.
    #[error("the function exceeded its time limit of {0:?}")]
    Timeout(Duration),
    /// The function used more memory than allowed.
    #[error("the function exceeded its memory limit of {0} MiB")]
    OutOfMemory(usize),
    /// The function threw (or its Promise rejected).
    #[error("the function threw: {0}")]
    Exception(String),
    /// The function's return value could not be turned into bytes.
    #[error("the function's return value cannot be sent: {0}")]
    BadReply(String),
}

/// Level of a `console.*` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Receives console output: invocation id (0 while loading), level, text.
pub type ConsoleSink = Box<dyn Fn(u64, ConsoleLevel, String)>;

/// Performs a host-service call for the function (blocking); `Err` becomes a JS exception (an
/// `Error` whose `code` is the [`nex_hostapi::ErrorKind`] name).
pub type HostFn = Box<dyn Fn(&Call) -> CallResult>;

mod console;
#[cfg(test)]
mod fetch_tests;
mod host_services;
mod module;
mod web;

/// Limits and settings of one function.
#[derive(Debug, Clone)]
pub struct JsConfig {
    /// Heap cap, bytes.
    pub memory_bytes: usize,
    /// Wall-clock limit per invocation (and for evaluating the source).
    pub timeout: Duration,
    /// Environment, visible as `this.env` and `process.env`.
    pub env: BTreeMap<String, String>,
    /// Workload name, used as the script's file name in stack traces.
    pub name: String,
}

impl Default for JsConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(5),
            env: BTreeMap::new(),
            name: "function".into(),
        }
    }
}

/// Result of one invocation.
#[derive(Debug)]
pub struct Invocation {
    pub result: Result<Vec<u8>, InvokeError>,
    pub elapsed: Duration,
}

/// A loaded JavaScript function, ready to call many times.
pub struct JsFunction {
    // Field order is drop order: values held across calls must go before their context and
    // runtime, or QuickJS aborts on leaked objects.
    function: Persistent<Function<'static>>,
    this: Persistent<Object<'static>>,
    /// An empty `Uint8Array` that is never handed out: while one lives, the shapes of a new
    /// `Uint8Array` and of its `ArrayBuffer` stay in QuickJS's shape table. Without it the
    /// payload of a call is the only object of those shapes, so every call made both shapes anew
    /// and freed them with the reply (about a tenth of a bare echo's instructions).
    _shapes: Persistent<TypedArray<'static, u8>>,
    /// `wait`/`fire`/`clear` of the function's timers (`web.js`).
    timers: Persistent<Object<'static>>,
    /// A timer was set since they were last cleared.
    timers_armed: Rc<Cell<bool>>,
    context: Context,
    _runtime: Runtime,
    deadline: Rc<Cell<Option<Instant>>>,
    current: Rc<Cell<u64>>,
    config: JsConfig,
}

fn describe<'js>(ctx: &Ctx<'js>, err: CaughtError<'js>) -> String {
    match err {
        CaughtError::Exception(e) => {
            let msg = e.message().unwrap_or_default();
            let name: String = e
                .as_object()
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .unwrap_or_else(|| "Error".into());
            let at = e
                .stack()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.contains("at "))
                        .map(|l| l.trim().to_owned())
                })
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            format!("{name}: {msg}{at}")
        }
        CaughtError::Value(v) => ctx
            .json_stringify(v)
            .ok()
            .flatten()
            .and_then(|s| s.to_string().ok())
            .unwrap_or_else(|| "a non-error value".into()),
        CaughtError::Error(e) => e.to_string(),
    }
}

fn type_name(v: &Value<'_>) -> String {
    v.type_name().to_owned()
}

fn install_env<'js>(
    ctx: &Ctx<'js>,
    this: &Object<'js>,
    env: &BTreeMap<String, String>,
) -> rquickjs::Result<()> {
    let obj = Object::new(ctx.clone())?;
    for (k, v) in env {
        obj.set(k.as_str(), v.as_str())?;
    }
    this.set("env", obj.clone())?;
    // An arrow function's `this` is the script's: the global object. `this.env` works there too,
    // as `this.hostServices` does.
    ctx.globals().set("env", obj.clone())?;
    let process = Object::new(ctx.clone())?;
    process.set("env", obj)?;
    ctx.globals().set("process", process)
}

/// Copies the bytes a view points at.
fn copy_raw(raw: Option<NonNull<[u8]>>) -> Vec<u8> {
    match raw {
        // SAFETY: the pointer comes from QuickJS for a live, attached buffer, and no JavaScript
        // runs between obtaining it and this copy, so the memory is valid and unchanged.
        Some(p) => unsafe { p.as_ref().to_vec() },
        None => Vec::new(),
    }
}

/// Turns a function's return value into reply bytes.
pub(crate) fn reply_bytes<'js>(ctx: &Ctx<'js>, v: Value<'js>) -> Result<Vec<u8>, InvokeError> {
    if v.is_undefined() || v.is_null() {
        return Ok(Vec::new());
    }
    if let Some(s) = v.as_string() {
        return s
            .to_string()
            .map(String::into_bytes)
            .map_err(|e| InvokeError::BadReply(e.to_string()));
    }
    if let Some(obj) = v.as_object() {
        if let Ok(ta) = TypedArray::<u8>::from_object(obj.clone()) {
            return Ok(copy_raw(ta.as_raw()));
        }
        if let Some(ab) = ArrayBuffer::from_object(obj.clone()) {
            return Ok(copy_raw(ab.as_raw()));
        }
    }
    match ctx.json_stringify(v) {
        Ok(Some(s)) => s
            .to_string()
            .map(String::into_bytes)
            .map_err(|e| InvokeError::BadReply(e.to_string())),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(InvokeError::BadReply(e.to_string())),
    }
}

impl JsFunction {
    /// Evaluates `source` and keeps the function it yields.
    pub fn load(
        source: &str,
        config: JsConfig,
        console: ConsoleSink,
        host: Option<HostFn>,
    ) -> Result<Self, LoadError> {
        let runtime = Runtime::new().map_err(|e| LoadError::Runtime(e.to_string()))?;
        runtime.set_memory_limit(config.memory_bytes);
        runtime.set_max_stack_size(MAX_STACK_BYTES);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let d = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            d.get().is_some_and(|t| Instant::now() >= t)
        })));
        let refused_import = Rc::new(std::cell::RefCell::new(None));
        runtime.set_loader(
            module::NoImports(refused_import.clone()),
            module::NoImports(refused_import.clone()),
        );
        let context = Context::full(&runtime).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let current = Rc::new(Cell::new(0u64));
        let sink = Rc::new(console);
        let timers_armed = Rc::new(Cell::new(false));
        deadline.set(Some(Instant::now() + config.timeout));
        let loaded = context.with(|ctx| -> Result<_, LoadError> {
            console::install(&ctx, sink.clone(), current.clone())
                .map_err(|e| LoadError::Runtime(e.to_string()))?;
            let host =
                host_services::native(&ctx, host).map_err(|e| LoadError::Runtime(e.to_string()))?;
            let timers = web::install(&ctx, Instant::now(), timers_armed.clone(), host.clone())
                .catch(&ctx)
                .map_err(|e| LoadError::Runtime(describe(&ctx, e)))?;
            let this = Object::new(ctx.clone()).map_err(|e| LoadError::Runtime(e.to_string()))?;
            let hs = host_services::install(&ctx, host)
                .catch(&ctx)
                .map_err(|e| LoadError::Runtime(describe(&ctx, e)))?;
            this.set("hostServices", hs.clone())
                .and_then(|()| ctx.globals().set("hostServices", hs))
                .and_then(|()| install_env(&ctx, &this, &config.env))
                .map_err(|e| LoadError::Runtime(e.to_string()))?;
            let file = format!("{}.js", config.name);
            let (function, this) = if module::is_module(source) {
                let (function, target) = module::evaluate(&ctx, &file, source, &refused_import)?;
                (function, target.unwrap_or(this))
            } else {
                let mut opts = EvalOptions::default();
                opts.global = true;
                opts.strict = false;
                opts.backtrace_barrier = true;
                opts.filename = Some(file);
                let value: Value = ctx
                    .eval_with_options(source, opts)
                    .catch(&ctx)
                    .map_err(|e| LoadError::Eval(describe(&ctx, e)))?;
                let Some(function) = value.as_function().cloned() else {
                    return Err(LoadError::NotAFunction(type_name(&value)));
                };
                (function, this)
            };
            // Timers the top level set do not outlive it.
            if timers_armed.replace(false) {
                let _ = timers
                    .get::<_, Function>("clear")
                    .and_then(|f| f.call::<_, ()>(()));
            }
            let shapes = TypedArray::<u8>::new_copy(ctx.clone(), [])
                .map_err(|e| LoadError::Runtime(e.to_string()))?;
            Ok((
                Persistent::save(&ctx, function),
                Persistent::save(&ctx, this),
                Persistent::save(&ctx, shapes),
                Persistent::save(&ctx, timers),
            ))
        });
        deadline.set(None);
        let (function, this, _shapes, timers) = loaded?;
        Ok(Self {
            _runtime: runtime,
            context,
            function,
            this,
            _shapes,
            timers,
            timers_armed,
            deadline,
            current,
            config,
        })
    }

    /// Calls the function once. `id` tags console output of this call.
    pub fn invoke(&self, id: u64, subject: &str, payload: &[u8]) -> Invocation {
        let started = Instant::now();
        self.current.set(id);
        self.deadline.set(Some(started + self.config.timeout));
        let result = self.context.with(|ctx| self.call(&ctx, subject, payload));
        self.deadline.set(None);
        self.current.set(0);
        let result = result.map_err(|e| self.refine(e, started));
        Invocation {
            result,
            elapsed: started.elapsed(),
        }
    }

    /// Maps an exception caused by the interrupt handler or the allocator to its real reason.
    fn refine(&self, e: InvokeError, started: Instant) -> InvokeError {
        match e {
            InvokeError::Exception(m)
                if started.elapsed() >= self.config.timeout && m.contains("interrupted") =>
            {
                InvokeError::Timeout(self.config.timeout)
            }
            InvokeError::Exception(m) if m.contains("out of memory") => {
                InvokeError::OutOfMemory(self.config.memory_bytes >> 20)
            }
            other => other,
        }
    }

    fn call<'js>(
        &self,
        ctx: &Ctx<'js>,
        subject: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, InvokeError> {
        let exc = |e| InvokeError::Exception(describe(ctx, e));
        let function = self.function.clone().restore(ctx).catch(ctx).map_err(exc)?;
        let this = self.this.clone().restore(ctx).catch(ctx).map_err(exc)?;
        let payload = TypedArray::<u8>::new_copy(ctx.clone(), payload)
            .catch(ctx)
            .map_err(exc)?;
        let value: Value = function
            .call((This(this), subject, payload))
            .catch(ctx)
            .map_err(exc)?;
        let value = match value.as_promise() {
            Some(p) => {
                let timers = self.timers.clone().restore(ctx).catch(ctx).map_err(exc)?;
                self.settle(ctx, p.clone(), &timers)
            }
            None => Ok(value),
        };
        // Timers belong to their call: what is left is dropped (as a Worker's are when it has
        // answered and nothing waits on them). A call that set none costs nothing here.
        if self.timers_armed.replace(false)
            && let Ok(timers) = self.timers.clone().restore(ctx)
        {
            let _ = timers
                .get::<_, Function>("clear")
                .and_then(|f| f.call::<_, ()>(()));
        }
        reply_bytes(ctx, value?)
    }

    /// Runs queued jobs, and timers when no job is left, until `promise` settles or the call's
    /// deadline passes.
    fn settle<'js>(
        &self,
        ctx: &Ctx<'js>,
        promise: Promise<'js>,
        timers: &Object<'js>,
    ) -> Result<Value<'js>, InvokeError> {
        let exc = |e| InvokeError::Exception(describe(ctx, e));
        loop {
            if let Some(r) = promise.result::<Value>() {
                return r.catch(ctx).map_err(exc);
            }
            // The runtime is locked while inside `Context::with`: run jobs through the context.
            if ctx.execute_pending_job() {
                continue;
            }
            let wait: f64 = timers
                .get::<_, Function>("wait")
                .and_then(|f| f.call(()))
                .catch(ctx)
                .map_err(exc)?;
            if wait < 0.0 {
                return Err(InvokeError::Exception(
                    "the returned Promise never settles (nothing left to run)".into(),
                ));
            }
            let due = Instant::now() + Duration::from_secs_f64(wait / 1000.0);
            if let Some(deadline) = self.deadline.get()
                && due >= deadline
            {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return Err(InvokeError::Timeout(self.config.timeout));
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            timers
                .get::<_, Function>("fire")
                .and_then(|f| f.call::<_, ()>(()))
                .catch(ctx)
                .map_err(exc)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nex_hostapi::GuestError;
    use std::cell::RefCell;

    fn load(src: &str) -> Result<JsFunction, LoadError> {
        JsFunction::load(src, JsConfig::default(), Box::new(|_, _, _| {}), None)
    }

    fn call(f: &JsFunction, payload: &[u8]) -> Result<Vec<u8>, InvokeError> {
        f.invoke(1, "subj", payload).result
    }

    #[test]
    fn the_seed_echo_returns_the_payload_bytes() {
        let f = load("(subject, payload) => {\n  console.log(subject);\n  return payload;\n};\n")
            .unwrap();
        assert_eq!(call(&f, b"hi\0\xff").unwrap(), b"hi\0\xff");
    }

    #[test]
    fn replies_are_bytes_strings_or_json() {
        let f = load("(s, p) => s + ':' + p.length").unwrap();
        assert_eq!(call(&f, b"abc").unwrap(), b"subj:3");
        let f = load("(s, p) => ({a: 1, s})").unwrap();
        assert_eq!(call(&f, b"").unwrap(), br#"{"a":1,"s":"subj"}"#);
        let f = load("(s, p) => undefined").unwrap();
        assert_eq!(call(&f, b"x").unwrap(), b"");
        let f = load("async (s, p) => { await null; return 'later'; }").unwrap();
        assert_eq!(call(&f, b"").unwrap(), b"later");
    }

    #[test]
    fn host_services_reach_the_host_function_and_errors_throw() {
        use nex_hostapi::{ErrorKind, Reply, kv};
        let host: HostFn = Box::new(|call: &Call| match call {
            Call::Kv(kv::Call::Get { key }) if key == "k" => {
                Ok(Reply::Value(Some(b"val".to_vec())))
            }
            Call::Kv(kv::Call::Get { .. }) => Ok(Reply::Value(None)),
            Call::Kv(kv::Call::Set { value, .. }) => Err(GuestError::new(
                ErrorKind::Denied,
                format!("refused {}", String::from_utf8_lossy(value)),
            )),
            _ => Err(GuestError::internal("unexpected")),
        });
        let f = JsFunction::load(
            "(s, p) => { const v = this.hostServices.kv.get('k'); const none = hostServices.kv.get('x'); \
             try { hostServices.kv.set('a', {b: 1}); } catch (e) { return String.fromCharCode(...v) + '|' + none + '|' + e.message + '|' + e.code + '|' + (e instanceof Error); } }",
            JsConfig::default(),
            Box::new(|_, _, _| {}),
            Some(host),
        )
        .unwrap();
        assert_eq!(
            call(&f, b"").unwrap(),
            br#"val|null|refused {"b":1}|Denied|true"#
        );
        let f = load("async () => { try { await hostServices.kv.getAsync('k'); } catch (e) { return e.message + '|' + e.code; } }").unwrap();
        assert_eq!(
            call(&f, b"").unwrap(),
            b"host services are not available here|Unavailable"
        );
    }

    #[test]
    fn every_wrapper_builds_its_typed_call_and_every_reply_becomes_a_value() {
        use nex_hostapi::object_store::ObjectInfo;
        use nex_hostapi::{Op, Reply};
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let host: HostFn = Box::new(move |call: &Call| {
            s.borrow_mut().push(call.clone());
            Ok(match call.op() {
                Op::KvGet | Op::ObjectGet => Reply::Value(Some(b"v".to_vec())),
                Op::KvKeys => Reply::Keys(vec!["a".into(), "b".into()]),
                Op::KvIncrement => Reply::Count(7),
                Op::ObjectPut => Reply::Object(ObjectInfo {
                    name: "n".into(),
                    size: 3,
                    ..Default::default()
                }),
                Op::ObjectList => Reply::Objects(vec![ObjectInfo::default()]),
                Op::Request => Reply::Message(b"m".to_vec()),
                Op::RequestMany => Reply::Messages(vec![b"1".to_vec(), b"2".to_vec()]),
                Op::HttpRequest => Reply::Http(nex_hostapi::http::Response {
                    status: 201,
                    headers: [("content-type".to_string(), "text/plain".to_string())].into(),
                    body: b"hi".to_vec(),
                }),
                _ => Reply::Done,
            })
        });
        let f = JsFunction::load(
            r#"(s, p) => { const h = this.hostServices; const out = [];
              out.push(String.fromCharCode(...h.kv.get('k')));
              out.push(h.kv.set('k', 'v'), h.kv.delete('k'), h.kv.keys().join(','));
              out.push(String.fromCharCode(...h.objectStore.get('o')));
              const info = h.objectStore.put('o', new Uint8Array([1, 2, 3]));
              out.push(info.name + info.size, h.objectStore.delete('o'), h.objectStore.list().length);
              out.push(h.messaging.publish('a.b', {x: 1}));
              out.push(String.fromCharCode(...h.messaging.request('a.b', 'q', { timeout: 300 })));
              out.push(h.messaging.requestMany('a.b', null, { timeout: 200, max: 2 }).length);
              const r = h.http.patch('http://127.0.0.1:1/x', 'body', { headers: { 'x-n': 5 } });
              out.push(r.status + r.headers['content-type'] + r.response + r.body.length);
              out.push(h.kv.increment('c', 2));
              return out.map(String).join('|'); }"#,
            JsConfig::default(),
            Box::new(|_, _, _| {}),
            Some(host),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(call(&f, b"").unwrap()).unwrap(),
            "v|undefined|undefined|a,b|v|n3|undefined|1|undefined|m|2|201text/plainhi2|7"
        );
        let seen = seen.borrow();
        let ops: Vec<Op> = seen.iter().map(Call::op).collect();
        assert_eq!(ops, Op::ALL);
        use nex_hostapi::{http, kv, messaging, object_store};
        assert_eq!(
            seen[1],
            Call::Kv(kv::Call::Set {
                key: "k".into(),
                value: b"v".to_vec()
            })
        );
        assert_eq!(
            seen[5],
            Call::ObjectStore(object_store::Call::Put {
                name: "o".into(),
                data: vec![1, 2, 3]
            })
        );
        assert_eq!(
            seen[8],
            Call::Messaging(messaging::Call::Publish {
                subject: "a.b".into(),
                payload: br#"{"x":1}"#.to_vec()
            })
        );
        assert_eq!(
            seen[10],
            Call::Messaging(messaging::Call::RequestMany {
                subject: "a.b".into(),
                payload: vec![],
                timeout_ms: Some(200),
                max: Some(2)
            })
        );
        assert_eq!(
            seen[11],
            Call::Http(http::Call::Request(http::Request {
                method: http::Method::Patch,
                url: "http://127.0.0.1:1/x".into(),
                headers: [("x-n".to_string(), "5".to_string())].into(),
                body: b"body".to_vec(),
            }))
        );
    }

    #[test]
    fn console_goes_to_the_sink() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let f = JsFunction::load(
            "(s) => { console.warn('w', 1, {a: 2}); }",
            JsConfig::default(),
            Box::new(move |id, l, t| s.borrow_mut().push((id, l, t))),
            None,
        )
        .unwrap();
        f.invoke(9, "x", b"").result.unwrap();
        assert_eq!(
            seen.borrow().as_slice(),
            &[(9, ConsoleLevel::Warn, "w 1 { a: 2 }".to_owned())]
        );
    }

    #[test]
    fn errors_are_clear_and_the_function_keeps_working() {
        let err = load("(s, p) => {\n  return p +;\n}").err().unwrap();
        assert!(err.to_string().contains("SyntaxError"), "{err}");
        assert!(
            err.to_string().contains("function.js:2:"),
            "line and column: {err}"
        );
        let err = load("42").err().unwrap();
        assert!(matches!(err, LoadError::NotAFunction(_)), "{err}");
        let f = load("(s, p) => { if (p.length) throw new Error('boom'); return 'ok'; }").unwrap();
        let e = call(&f, b"x").unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        assert_eq!(call(&f, b"").unwrap(), b"ok");
        let f = load("async () => { throw new TypeError('nope'); }").unwrap();
        assert!(call(&f, b"").unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn runaway_code_is_stopped() {
        let cfg = JsConfig {
            timeout: Duration::from_millis(100),
            memory_bytes: 16 << 20,
            ..Default::default()
        };
        let f = JsFunction::load(
            "(s, p) => { if (s === 'loop') while (true) {} if (s === 'mem') { let a = []; while (true) a.push(new Array(1e5).fill(1)); } if (s === 'deep') { const r = (n) => r(n + 1) + 1; return r(0); } return 'fine'; }",
            cfg,
            Box::new(|_, _, _| {}),
            None,
        )
        .unwrap();
        let t = Instant::now();
        assert_eq!(
            f.invoke(1, "loop", b"").result.unwrap_err(),
            InvokeError::Timeout(Duration::from_millis(100))
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            f.invoke(2, "mem", b"").result.unwrap_err(),
            InvokeError::OutOfMemory(16)
        ));
        let deep = f.invoke(3, "deep", b"").result.unwrap_err();
        assert!(deep.to_string().contains("stack"), "{deep}");
        assert_eq!(f.invoke(4, "ok", b"").result.unwrap(), b"fine");
    }
}
