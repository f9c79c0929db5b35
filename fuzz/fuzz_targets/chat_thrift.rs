#![no_main]

#[path = "protocol.rs"]
mod protocol;

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_protocol(chat::protocols::thrift(), data));
