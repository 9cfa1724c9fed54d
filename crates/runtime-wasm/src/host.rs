//! nex host services for WebAssembly: the `nex` import module a function links against (through
//! the guest library in `guests/nex-guest`) to reach the key-value store, object store, messaging
//! and HTTP client the node performs on its behalf.
//!
//! Two functions, so any language can call them (the ABI is in `docs/webassembly.md`):
//! - `host_call(call, call_len) -> i32` performs the call encoded at `call` (a
//!   [`nex_hostapi::Call`], encoded by `nex_hostapi::encode_call`), blocking until the node
//!   answers or the function's deadline passes. It holds the encoded result
//!   (`Result<Reply, GuestError>`, `nex_hostapi::encode_result`) for `host_result` and returns
//!   its length. Failures the function can handle (a bad pointer, no host services, a refused
//!   argument) are results too, with a [`GuestError`]; `-1` only when the module has no memory.
//! - `host_result(buf, buf_len) -> i32` copies the held result into `buf` (at most `buf_len`
//!   bytes), returns how many it copied (`-1` for a bad pointer), and lets it go.
//!
//! This crate does not decode the call: the bytes go to the embedder as they are, and the node
//! decodes and checks them.

use std::sync::Arc;
use std::time::Instant;

use nex_hostapi::GuestError;
use wasmtime::{Caller, Linker, Module};

use crate::wasi::{WasiState, guest};

/// The import module of the host services.
pub(crate) const MODULE: &str = "nex";

/// Performs one host-service call: the encoded call and the function's deadline to the encoded
/// result.
pub type HostFn = dyn Fn(&[u8], Instant) -> Vec<u8> + Send + Sync;

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

/// Holds `result` for `host_result` and returns its length.
fn hold(held: &mut Vec<u8>, result: Vec<u8>) -> i32 {
    match i32::try_from(result.len()) {
        Ok(n) => {
            *held = result;
            n
        }
        Err(_) => hold(
            held,
            nex_hostapi::encode_result(&Err(GuestError::too_large(
                "host call: the result is too large for a 32-bit module",
            ))),
        ),
    }
}

fn fail(held: &mut Vec<u8>, error: GuestError) -> i32 {
    hold(held, nex_hostapi::encode_result(&Err(error)))
}

/// Adds `host_call` and `host_result` to `linker`.
pub(crate) fn add_to_linker<T: WasiState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "host_call",
        |mut caller: Caller<'_, T>, call: i32, call_len: i32| -> i32 {
            let Some((mem, state)) = guest(&mut caller) else {
                return -1;
            };
            let host = state.process().host.clone();
            let io = state.io();
            let Some(call) = crate::wasi::range(mem, call, call_len as u32 as usize) else {
                return fail(
                    &mut io.host_result,
                    GuestError::invalid_argument("host_call: a pointer is out of bounds"),
                );
            };
            let Some(host) = host else {
                return fail(
                    &mut io.host_result,
                    GuestError::unavailable("host services are not available to this function"),
                );
            };
            let result = (host.0)(&mem[call], io.deadline);
            hold(&mut io.host_result, result)
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
