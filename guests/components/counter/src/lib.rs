//! A handler component: counts its calls in the function's key-value bucket (`count`) and in
//! its own instance (`calls`, a static that survives between calls until a call traps).
//!
//! Payload `trap` panics (a trap: the instance is dropped), `spin` loops forever (the deadline),
//! `grow` allocates until the memory limit, `fail` returns an error (the instance is kept),
//! `bad` refuses its input, `sleep` sleeps 20 ms (a `wasi:clocks` pollable) and answers `slept`; anything else answers `count=<n> calls=<m>`.
//! A subject ending in `.echo` answers the payload as it is (the benchmark's handler echo).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "handler",
    generate_all,
});

use std::sync::atomic::{AtomicU64, Ordering};

use nex::function::host::{self, Level};

/// Calls this instance has answered.
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl Guest for Counter {
    fn handle(subject: String, payload: Vec<u8>) -> Result<Vec<u8>, HandleError> {
        if subject.ends_with(".echo") {
            return Ok(payload);
        }
        match payload.as_slice() {
            b"trap" => panic!("asked to trap on {subject}"),
            b"sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                return Ok(b"slept".to_vec());
            }
            b"spin" => loop {
                std::hint::black_box(&subject);
            },
            b"grow" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"fail" => return Err(HandleError::Failed("asked to fail".into())),
            b"bad" => return Err(HandleError::BadInput("bad is not a number".into())),
            _ => {}
        }
        let failed = |e: host::Error| HandleError::Failed(format!("{:?}: {}", e.kind, e.message));
        let count = host::kv_get("count")
            .map_err(failed)?
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        host::kv_set("count", count.to_string().as_bytes()).map_err(failed)?;
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        host::log(Level::Info, &format!("counted {count} on {subject}"));
        Ok(format!("count={count} calls={calls}").into_bytes())
    }
}

export!(Counter);
