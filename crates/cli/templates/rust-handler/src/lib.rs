//! {{name}}: a nex handler function (`nex_guest::handler!`). One instance per worker thread
//! answers call after call, so module state (here a count of calls) lives until the instance
//! is replaced (a trap, a redeploy). Host services come from `nex_guest`: key-value (the
//! function's own bucket), object store, messaging and HTTP, each a typed call to the node.

use std::cell::Cell;

thread_local! {
    /// Calls this instance has answered.
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// The greeting for `payload`, a name (`world` when empty).
pub fn greeting(payload: &[u8]) -> String {
    let name = String::from_utf8_lossy(payload);
    let name = name.trim();
    format!("Hello, {}!", if name.is_empty() { "world" } else { name })
}

/// Answers one call: the greeting, how many greetings the function's bucket has counted, and
/// how many calls this instance answered. An `Err` is the caller's service error (500).
fn handle(_subject: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    CALLS.set(CALLS.get() + 1);
    let greeted = nex_guest::kv::get("greeted")
        .map_err(|e| e.to_string())?
        .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    nex_guest::kv::set("greeted", greeted.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let reply = format!(
        "{} (greeting {greeted}, call {} of this instance)",
        greeting(payload),
        CALLS.get()
    );
    Ok(reply.into_bytes())
}

nex_guest::handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name_or_the_world() {
        assert_eq!(greeting(b"nex"), "Hello, nex!");
        assert_eq!(greeting(b" \n"), "Hello, world!");
    }
}
