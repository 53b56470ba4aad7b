//! libFuzzer entry point; the body is `edgehost_proto::fuzzing::delta`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgehost_proto::fuzzing::delta(data));
