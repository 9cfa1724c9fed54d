//! {{name}}: a nex function as a WebAssembly component, on the `handler` world of
//! `wit/nex.wit`. nex calls `handle` once per message on its trigger subjects, in one instance
//! that it keeps from call to call; the function's state lives in its key-value bucket,
//! reached here through the standard `wasi:keyvalue` interface (`open("default")` is the
//! function's own bucket).

wit_bindgen::generate!({ path: "wit", world: "nex:function/handler", generate_all });

use wasi::keyvalue::{atomics, store};

/// The reply to `who` at its `n`th greeting.
fn greeting(who: &str, n: u64) -> String {
    let who = if who.is_empty() { "world" } else { who };
    format!("Hello, {who}! (greeting {n})")
}

struct Function;

impl Guest for Function {
    fn handle(_subject: String, payload: Vec<u8>) -> Result<Vec<u8>, HandleError> {
        let who = String::from_utf8(payload)
            .map_err(|_| HandleError::BadInput("the payload is not UTF-8".into()))?;
        let failed = |e: store::Error| HandleError::Failed(format!("{e:?}"));
        let bucket = store::open("default").map_err(failed)?;
        let n = atomics::increment(&bucket, "greetings", 1).map_err(failed)?;
        Ok(greeting(&who, n).into_bytes())
    }
}

export!(Function);

#[cfg(test)]
mod tests {
    #[test]
    fn greets_the_payload_or_the_world() {
        assert_eq!(super::greeting("nex", 1), "Hello, nex! (greeting 1)");
        assert_eq!(super::greeting("", 2), "Hello, world! (greeting 2)");
    }
}
