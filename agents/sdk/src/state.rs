//! An agent's state blob: a tag naming the agent and its format version,
//! then the state in postcard, and nothing after it.
//!
//! `import_state` takes bytes from outside the agent: a blob from another
//! host, from disk, or from an operator's hand. [`decode`] either gives back
//! the whole value or an error, never a value read from part of the blob,
//! so an agent can decode first and replace its memory only on success, as
//! the host relies on. It is plain Rust, built and fuzzed on the host
//! (`fuzz/`) as well as in the component.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a state blob was refused or could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The blob does not start with the agent's tag: another agent's state,
    /// another format version, or no state at all.
    #[error("not a state blob of this agent and version (bad header)")]
    Header,
    /// The bytes after the tag are not the state.
    #[error("corrupt state blob")]
    Malformed(#[source] postcard::Error),
    /// The state decoded but bytes were left over.
    #[error("{0} trailing bytes after the state")]
    Trailing(usize),
    /// The state could not be encoded.
    #[error("encoding the state")]
    Encode(#[source] postcard::Error),
}

/// The blob of `state` under the tag `magic` (the agent's name and format
/// version, e.g. `b"EHMEMv1\0"`).
pub fn encode<T: Serialize>(magic: &[u8; 8], state: &T) -> Result<Vec<u8>, StateError> {
    let mut blob = magic.to_vec();
    postcard::to_io(state, &mut blob).map_err(StateError::Encode)?;
    Ok(blob)
}

/// The state in `blob`, which must carry the tag `magic` and nothing after
/// the state.
pub fn decode<T: DeserializeOwned>(magic: &[u8; 8], blob: &[u8]) -> Result<T, StateError> {
    let body = blob
        .strip_prefix(magic.as_slice())
        .ok_or(StateError::Header)?;
    let (state, rest) = postcard::take_from_bytes(body).map_err(StateError::Malformed)?;
    if !rest.is_empty() {
        return Err(StateError::Trailing(rest.len()));
    }
    Ok(state)
}

/// The body of the `sdk_state` fuzz target, run over its corpus by this
/// crate's tests: a blob decoded as the memory agent's state (notes and
/// dialogue turns), and if it decodes, its re-encoding decodes to the same
/// state.
#[doc(hidden)]
pub fn fuzz_decode(blob: &[u8]) {
    type Memory = (Vec<String>, Vec<(String, String)>);
    const MAGIC: &[u8; 8] = b"EHMEMv1\0";
    if let Ok(state) = decode::<Memory>(MAGIC, blob) {
        let again = encode(MAGIC, &state).expect("a decoded state encodes");
        let back: Memory = decode(MAGIC, &again).expect("a state's encoding decodes");
        assert_eq!(back, state, "a state changed across a round trip");
    }
    // The same bytes as a number and as raw bytes: other shapes agents keep.
    let _ = decode::<u64>(MAGIC, blob);
    let _ = decode::<Vec<u8>>(MAGIC, blob);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_anything_else_is_refused() {
        const MAGIC: &[u8; 8] = b"TESTv1\0\0";
        let state = (vec!["note".to_owned()], 7u64);
        let blob = encode(MAGIC, &state).unwrap();
        assert_eq!(decode::<(Vec<String>, u64)>(MAGIC, &blob).unwrap(), state);
        assert!(matches!(
            decode::<(Vec<String>, u64)>(b"TESTv2\0\0", &blob),
            Err(StateError::Header)
        ));
        assert!(matches!(
            decode::<(Vec<String>, u64)>(MAGIC, &blob[..blob.len() - 1]),
            Err(StateError::Malformed(_))
        ));
        let mut padded = blob.clone();
        padded.push(0);
        assert!(matches!(
            decode::<(Vec<String>, u64)>(MAGIC, &padded),
            Err(StateError::Trailing(1))
        ));
    }
}
