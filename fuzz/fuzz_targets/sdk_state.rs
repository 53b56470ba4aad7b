//! libFuzzer entry point; the body is `edgehost_agent::state::fuzz_decode`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgehost_agent::state::fuzz_decode(data));
