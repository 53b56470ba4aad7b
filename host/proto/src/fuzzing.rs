//! The bodies of the fuzz targets in `fuzz/`, kept here so `cargo test`
//! runs the committed corpora through exactly what the fuzzer ran
//! (`tests/corpus.rs`).
//!
//! Each function takes the raw input, must never panic for any input, and
//! panics (an assertion) only when a property of the decoder breaks: a value
//! that decodes re-encodes to bytes that decode to the same value, a delta
//! rebuilds exactly what was diffed, a log replays only what checks.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{ClientConfig, HostConfig};
use crate::delta::{self, Block};
use crate::disk::{self, AgentRecord, LogEntry, Tombstone};
use crate::{
    Digest, FRAME_HEADER_BYTES, MAX_MESSAGE_BYTES, Request, Response, decode, encode, frame_header,
    frame_len,
};

/// The largest state the delta target lets a delta claim: small, so the
/// fuzzer spends its time on the checks rather than on zeroing memory.
const MAX_FUZZ_STATE: usize = 1 << 20;

/// `frames`: the frame header in front, then the bytes as a request and as
/// a response.
pub fn frames(data: &[u8]) {
    if let Some((header, _)) = data.split_first_chunk::<FRAME_HEADER_BYTES>() {
        match frame_len(*header, MAX_MESSAGE_BYTES) {
            Ok(len) => {
                assert!(len <= MAX_MESSAGE_BYTES);
                assert_eq!(frame_header(len).ok().as_ref(), Some(header));
            }
            Err(_) => assert!(u32::from_be_bytes(*header) as usize > MAX_MESSAGE_BYTES),
        }
    }
    request(data);
    response(data);
}

/// A request frame: if it decodes, its encoding decodes to a value that
/// encodes the same.
pub fn request(data: &[u8]) {
    if let Ok(message) = decode::<Request>(data) {
        let again = encode(&message).expect("a decoded request encodes");
        let back = decode::<Request>(&again).expect("a request's encoding decodes");
        assert_eq!(
            encode(&back).expect("a decoded request encodes"),
            again,
            "a request changed across a round trip"
        );
    }
}

/// A response frame, as [`request`].
pub fn response(data: &[u8]) {
    if let Ok(message) = decode::<Response>(data) {
        let again = encode(&message).expect("a decoded response encodes");
        let back = decode::<Response>(&again).expect("a response's encoding decodes");
        assert_eq!(
            encode(&back).expect("a decoded response encodes"),
            again,
            "a response changed across a round trip"
        );
    }
}

/// `delta`: the input is a postcard `(len, base, blocks)`, applied as a
/// migration's final delta would be; the whole input also split in two and
/// diffed, which [`delta::apply`] must invert.
pub fn delta(data: &[u8]) {
    if let Ok(((len, base, blocks), _)) =
        postcard::take_from_bytes::<(u64, Vec<u8>, Vec<Block>)>(data)
    {
        check_apply(&base, len, &blocks);
    }
    let (base, new) = data.split_at(data.len() / 2);
    let blocks = delta::diff(base, new);
    let rebuilt = delta::apply(base.to_vec(), new.len() as u64, &blocks, MAX_FUZZ_STATE)
        .expect("a diff applies to its own base");
    assert_eq!(rebuilt, new, "apply did not invert diff");
}

/// Applies `blocks` and checks the result is `base` resized to `len` with
/// each block at its offset, or an error.
fn check_apply(base: &[u8], len: u64, blocks: &[Block]) {
    let Ok(out) = delta::apply(base.to_vec(), len, blocks, MAX_FUZZ_STATE) else {
        return;
    };
    assert_eq!(out.len() as u64, len);
    let mut expected = base.to_vec();
    expected.resize(out.len(), 0);
    for block in blocks {
        let start = block.index as usize * delta::BLOCK_BYTES;
        expected[start..start + block.bytes.len()].copy_from_slice(&block.bytes);
    }
    assert_eq!(
        out, expected,
        "apply patched something other than its blocks"
    );
}

/// The snapshot every fuzzed log extends.
const SNAPSHOT: &[u8] = b"the snapshot";

/// `disk_record`: the first byte picks what the rest is read as: an agent
/// record, a tombstone, a whole log file, a log's records after a valid
/// header, or payloads the harness frames with their true lengths and
/// checksums (which the fuzzer could not forge) after a valid header.
pub fn disk_record(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => record::<AgentRecord>(rest),
        1 => record::<Tombstone>(rest),
        2 => log(rest),
        3 => log(&[&disk::log_header(&Digest::of(SNAPSHOT)), rest].concat()),
        _ => log(&framed_log(rest)),
    }
}

/// A record that decodes encodes to bytes that decode to the same value.
fn record<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(value) = disk::decode_record::<T>(bytes) {
        let again = disk::encode_record(&value).expect("a decoded record encodes");
        let back = disk::decode_record::<T>(&again).expect("a record's encoding decodes");
        assert_eq!(back, value, "a record changed across a round trip");
    }
}

/// A log after a valid header: the input as a series of payloads, each
/// after a 2-byte length, framed as appends are. A last payload cut short
/// is framed with the length it announced: a torn append.
fn framed_log(mut rest: &[u8]) -> Vec<u8> {
    let mut log = disk::log_header(&Digest::of(SNAPSHOT));
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let (payload, tail) = tail.split_at(len.min(tail.len()));
        log.extend_from_slice(&(len as u32).to_be_bytes());
        log.extend_from_slice(Digest::of(payload).as_bytes());
        log.extend_from_slice(payload);
        rest = tail;
    }
    log
}

/// Parses and replays a log onto [`SNAPSHOT`], checking that what parses
/// is a prefix that parses alike on its own, that its entries round-trip,
/// and that replay ignores exactly the bytes past that prefix.
fn log(bytes: &[u8]) {
    let snapshot = Digest::of(SNAPSHOT);
    let parsed = disk::parse_log(bytes, &snapshot);
    assert!(parsed.valid <= bytes.len());
    if parsed.valid == 0 {
        assert!(parsed.entries.is_empty());
    } else {
        assert_eq!(disk::parse_log(&bytes[..parsed.valid], &snapshot), parsed);
    }
    for entry in &parsed.entries {
        let payload = postcard::to_stdvec(entry).expect("a log entry encodes");
        let back: LogEntry = postcard::from_bytes(&payload).expect("a log entry decodes");
        assert_eq!(&back, entry, "a log entry changed across a round trip");
    }
    let mut state = SNAPSHOT.to_vec();
    let mut expected = Ok(());
    for entry in &parsed.entries {
        match delta::apply(state.clone(), entry.len, &entry.blocks, MAX_FUZZ_STATE) {
            Ok(next) => state = next,
            Err(_) => {
                expected = Err(());
                break;
            }
        }
    }
    match disk::replay_log(bytes, SNAPSHOT.to_vec(), MAX_FUZZ_STATE) {
        Ok((replayed, torn)) => {
            assert_eq!(expected, Ok(()), "replay accepted an entry apply refuses");
            assert_eq!(replayed, state);
            let valid = if parsed.valid == 0 {
                bytes.len()
            } else {
                parsed.valid
            };
            assert_eq!(torn, bytes.len() - valid);
        }
        Err(_) => assert_eq!(expected, Err(()), "replay refused a log that applies"),
    }
}

/// `config_toml`: the input as a host's and as a client's configuration
/// file. What parses is checked, and its own TOML parses to the same
/// configuration.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/etc/edgehost");
    if let Ok(config) = HostConfig::parse(text, base) {
        let _ = config.validate();
        assert!(config.cache_dir().is_absolute());
        same_again(&config, |t| HostConfig::parse(t, base).ok());
    }
    if let Ok(config) = ClientConfig::parse(text, base) {
        assert!(!config.hosts.is_empty());
        same_again(&config, |t| ClientConfig::parse(t, base).ok());
    }
}

/// A configuration written as TOML parses to one that writes the same TOML.
fn same_again<T: Serialize>(config: &T, parse: impl Fn(&str) -> Option<T>) {
    if let Ok(text) = toml::to_string(config) {
        let back = parse(&text).expect("a configuration's own TOML parses");
        assert_eq!(
            toml::to_string(&back).ok().as_deref(),
            Some(text.as_str()),
            "a configuration changed across a round trip"
        );
    }
}
