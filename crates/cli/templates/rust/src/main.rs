//! {{name}}: a nex function, a WASI command. nex runs it once per message on its trigger
//! subjects: the subject is `argv[1]`, the payload is stdin, and stdout is the reply. What it
//! prints to stderr goes to `nex logs`; exiting with a status other than 0, or panicking, fails
//! the call (the caller gets the panic message).

use std::io::{Read, Write};

/// The reply to `payload`, received on `subject`.
fn reply(_subject: &str, payload: &[u8]) -> Vec<u8> {
    let who = match String::from_utf8_lossy(payload) {
        w if w.is_empty() => "world".into(),
        w => w,
    };
    format!("Hello, {who}!").into_bytes()
}

fn main() {
    let subject = std::env::args().nth(1).unwrap_or_default();
    let mut payload = Vec::new();
    std::io::stdin().read_to_end(&mut payload).expect("read the payload");
    std::io::stdout()
        .write_all(&reply(&subject, &payload))
        .expect("write the reply");
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets_the_payload_or_the_world() {
        assert_eq!(super::reply("{{name}}", b"nex"), b"Hello, nex!");
        assert_eq!(super::reply("{{name}}", b""), b"Hello, world!");
    }
}
