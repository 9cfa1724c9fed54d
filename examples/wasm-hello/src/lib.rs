//! A WebAssembly *handler* (see docs/webassembly.md): instead of a command started for every
//! message, one instance answers call after call, so a call costs well under a microsecond in
//! the guest and state in statics survives between calls (per instance: the node may run a few).
//!
//! `nex req hello.wasm Ada` → `Hello, Ada! (call 1 of this instance)`
use std::cell::Cell;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn hello(_subject: &str, payload: &[u8]) -> String {
    let calls = CALLS.get() + 1;
    CALLS.set(calls);
    let name = String::from_utf8_lossy(payload);
    let name = if name.trim().is_empty() { "world".into() } else { name };
    format!("Hello, {}! (call {calls} of this instance)", name.trim())
}

nex_guest::handler!(hello);
