//! libFuzzer entry point; the body is `edgehost_proto::fuzzing::disk_record`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgehost_proto::fuzzing::disk_record(data));
