//! A handler function (`nex_guest::handler!`): one instance answers many calls. The last part
//! of the subject says what to do: `count` (calls this instance has answered), `fail` (returns
//! an error), `panic`, `spin` (loops forever), `grow` (allocates until the memory limit),
//! `kv` (a counter in the function's key-value bucket), `kvget` (the value of key `k`), `print` (logs a line), `liar` (returns a
//! reply address outside its memory), `huge` (claims a 2 GiB reply); anything else echoes the
//! payload.
use std::cell::Cell;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn handle(subject: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let calls = CALLS.get() + 1;
    CALLS.set(calls);
    Ok(match subject.rsplit('.').next().unwrap_or_default() {
        "count" => calls.to_string().into_bytes(),
        "fail" => return Err(format!("asked to fail on call {calls}")),
        "panic" => panic!("asked to panic"),
        "spin" => loop {
            std::hint::black_box(calls);
        },
        "grow" => {
            let mut hoard = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
            }
        }
        "kv" => {
            let n = nex_guest::kv::get("n")
                .map_err(|e| e.to_string())?
                .map_or(0, |v| {
                    String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0)
                })
                + 1;
            nex_guest::kv::set("n", n.to_string().as_bytes()).map_err(|e| e.to_string())?;
            n.to_string().into_bytes()
        }
        "kvget" => nex_guest::kv::get("k")
            .map_err(|e| e.to_string())?
            .unwrap_or_default(),
        "print" => {
            println!("handler call {calls}");
            eprintln!("to stderr");
            b"printed".to_vec()
        }
        _ => payload.to_vec(),
    })
}

// What `nex_guest::handler!(handle)` expands to, plus two lies about where the reply is.
#[no_mangle]
pub extern "C" fn nex_alloc(len: u32) -> u32 {
    nex_guest::handler::alloc(len)
}

#[no_mangle]
pub extern "C" fn nex_call(input: u32, subject_len: u32, payload_len: u32) -> u64 {
    // SAFETY: the node wrote the subject at `input`, inside the buffer `nex_alloc` returned.
    let subject =
        unsafe { std::slice::from_raw_parts(input as usize as *const u8, subject_len as usize) };
    if subject.ends_with(b".liar") {
        return 0xffff_fff0 << 32 | 16;
    }
    if subject.ends_with(b".huge") {
        return 0x7fff_ffff;
    }
    nex_guest::handler::call(subject_len, payload_len, handle)
}
