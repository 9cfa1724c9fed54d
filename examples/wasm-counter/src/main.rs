//! Counts calls per subject in the function's own key-value bucket, from WebAssembly, with the
//! `nex-guest` host-services library: the WebAssembly twin of `examples/kv-counter.js`.
use nex_guest::kv;

fn main() -> Result<(), nex_guest::Error> {
    let subject = std::env::args().nth(1).unwrap_or_default();
    let count = kv::get(&subject)?.map_or(0, |v| {
        String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0)
    }) + 1;
    kv::set(&subject, count.to_string().as_bytes())?;
    let keys = kv::keys()?;
    print!("{{\"subject\":{subject:?},\"count\":{count},\"keys\":{keys:?}}}");
    Ok(())
}
