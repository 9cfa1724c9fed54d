//! nex host services for WebAssembly: the `nex` import module a function links against (through
//! the guest library in `guests/nex-guest`) to reach the key-value store, object store, messaging
//! and HTTP client the node performs on its behalf.
//!
//! Two functions, so any language can call them:
//! - `host_call(op, op_len, args, args_len, data, data_len) -> i32` performs operation `op`
//!   (`kv.get`, `messaging.request`, ...) with JSON arguments `args` and one binary part `data`,
//!   and blocks until the node answers or the call's deadline passes. It returns the length of
//!   the result (`>= 0`) or `-1 - length` of an error message (`< 0`); either is held for
//!   `host_result`. A result is `u32 json_len, json, u32 count, count × (u32 len, bytes)`,
//!   little-endian.
//! - `host_result(buf, buf_len) -> i32` copies the held result or message into `buf` (at most
//!   `buf_len` bytes), returns how many it copied (`-1` for a bad pointer), and lets it go.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Caller, Linker, Module};

use crate::wasi::{WasiState, guest};

/// The import module of the host services.
pub(crate) const MODULE: &str = "nex";

/// Performs one host-service call: `(op, args JSON, binary part, deadline)` to the encoded result
/// or an error message.
pub type HostFn = dyn Fn(&str, &[u8], &[u8], Instant) -> Result<Vec<u8>, String> + Send + Sync;

/// The host services a function's calls may use.
#[derive(Clone)]
pub struct HostServices(pub Arc<HostFn>);

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostServices")
    }
}

/// Whether `module` imports the host services.
pub(crate) fn imported_by(module: &Module) -> bool {
    module.imports().any(|i| i.module() == MODULE)
}

fn error(held: &mut Vec<u8>, message: String) -> i32 {
    let n = message.len().min(i32::MAX as usize - 1);
    *held = message.into_bytes();
    -1 - n as i32
}

/// Adds `host_call` and `host_result` to `linker`.
pub(crate) fn add_to_linker<T: WasiState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "host_call",
        |mut caller: Caller<'_, T>,
         op: i32,
         op_len: i32,
         args: i32,
         args_len: i32,
         data: i32,
         data_len: i32|
         -> i32 {
            let Some((mem, state)) = guest(&mut caller) else {
                return -1;
            };
            let host = state.process().host.clone();
            let io = state.io();
            let parts = (
                crate::wasi::range(mem, op, op_len as u32 as usize),
                crate::wasi::range(mem, args, args_len as u32 as usize),
                crate::wasi::range(mem, data, data_len as u32 as usize),
            );
            let (Some(op), Some(args), Some(data)) = parts else {
                return error(
                    &mut io.host_result,
                    "host_call: a pointer is out of bounds".into(),
                );
            };
            let Ok(op) = std::str::from_utf8(&mem[op]) else {
                return error(
                    &mut io.host_result,
                    "host_call: the operation is not UTF-8".into(),
                );
            };
            let Some(host) = host else {
                return error(
                    &mut io.host_result,
                    "host services are not available to this function".into(),
                );
            };
            match (host.0)(op, &mem[args], &mem[data], io.deadline) {
                Ok(result) if result.len() <= i32::MAX as usize => {
                    let n = result.len() as i32;
                    io.host_result = result;
                    n
                }
                Ok(_) => error(
                    &mut io.host_result,
                    format!("{op}: the result is too large"),
                ),
                Err(message) => error(&mut io.host_result, message),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "host_result",
        |mut caller: Caller<'_, T>, buf: i32, buf_len: i32| -> i32 {
            let Some((mem, state)) = guest(&mut caller) else {
                return -1;
            };
            let held = std::mem::take(&mut state.io().host_result);
            let n = held.len().min(buf_len.max(0) as usize);
            match crate::wasi::range(mem, buf, n) {
                Some(r) => {
                    mem[r].copy_from_slice(&held[..n]);
                    n as i32
                }
                None => -1,
            }
        },
    )?;
    Ok(())
}
