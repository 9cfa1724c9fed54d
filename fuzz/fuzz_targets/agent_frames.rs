//! Bytes on the node-agent pipe, either way: reading and decoding never panic, and every frame
//! that decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nex_proto::agent_wire::{
    decode_from_agent, decode_to_agent, encode_from_agent, encode_to_agent, read_frame,
};

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let mut buf = Vec::new();
    while let Ok(true) = read_frame(&mut reader, &mut buf) {
        if let Ok(msg) = decode_to_agent(&buf) {
            let mut out = Vec::new();
            encode_to_agent(&msg, &mut out);
            let mut again = &out[..];
            let mut frame = Vec::new();
            assert!(read_frame(&mut again, &mut frame).unwrap());
            assert_eq!(decode_to_agent(&frame).expect("a re-encoded frame decodes"), msg);
        }
        if let Ok(msg) = decode_from_agent(&buf) {
            let mut out = Vec::new();
            encode_from_agent(&msg, &mut out);
            let mut again = &out[..];
            let mut frame = Vec::new();
            assert!(read_frame(&mut again, &mut frame).unwrap());
            assert_eq!(decode_from_agent(&frame).expect("a re-encoded frame decodes"), msg);
        }
    }
});
