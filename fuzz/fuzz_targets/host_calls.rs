//! Bytes a (hostile) function hands the node as a host call, and bytes a node hands back as a
//! result: decoding never panics and never allocates beyond the input, and whatever decodes
//! re-encodes to exactly the same bytes (the encoding is canonical). Validation of a decoded
//! call never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = nex_hostapi::decode_call(data) {
        assert_eq!(nex_hostapi::encode_call(&call), data);
        let _ = call.validate();
        let _ = call.op().name();
    }
    if let Ok(result) = nex_hostapi::decode_result(data) {
        assert_eq!(nex_hostapi::encode_result(&result), data);
    }
});
