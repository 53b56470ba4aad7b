//! Block deltas between two state blobs, for pre-copy migration.
//!
//! A migration sends the agent's state once while the agent still serves
//! (the pre-copy), then quiesces it, exports again and sends only the
//! fixed-size blocks that changed since. An agent that was idle during the
//! pre-copy moves with a delta of a few bytes: its memory no longer crosses
//! the network while its calls are held.
//!
//! Blocks are compared at fixed offsets: a blob that grows at its end (a
//! conversation that gained a turn) changes its last blocks and whatever
//! header encodes its length, not the rest.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Size of a block, in bytes.
pub const BLOCK_BYTES: usize = 4096;

/// One block of the new blob that differs from the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Its index: it starts at `index * BLOCK_BYTES`.
    pub index: u32,
    /// Its bytes: `BLOCK_BYTES` of them, fewer only for the last block.
    pub bytes: Vec<u8>,
}

/// The blocks of `new` that differ from `base` at the same offsets.
pub fn diff(base: &[u8], new: &[u8]) -> Vec<Block> {
    new.chunks(BLOCK_BYTES)
        .enumerate()
        .filter(|(i, chunk)| {
            let start = i * BLOCK_BYTES;
            base.get(start..start + chunk.len()) != Some(*chunk)
        })
        .map(|(i, chunk)| Block {
            // A blob is at most a few hundred MiB: the index fits.
            index: u32::try_from(i).unwrap_or(u32::MAX),
            bytes: chunk.to_vec(),
        })
        .collect()
}

/// Rebuilds the new blob of `len` bytes from `base` and the changed
/// blocks. Blocks that do not fit `len`, have the wrong size or come twice
/// are refused: the result is either exactly what [`diff`] was given or an
/// error, never a blob patched half-way. The caller still checks the
/// result against its digest.
pub fn apply(mut base: Vec<u8>, len: u64, blocks: &[Block], max: usize) -> Result<Vec<u8>> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max)
        .ok_or_else(|| {
            Error::Delta(format!(
                "a state of {len} bytes is over the {max}-byte limit"
            ))
        })?;
    let mut last = None;
    for block in blocks {
        let start = block.index as usize * BLOCK_BYTES;
        let expected = len.saturating_sub(start).min(BLOCK_BYTES);
        if start >= len || block.bytes.len() != expected {
            return Err(Error::Delta(format!(
                "state block {} does not fit a {len}-byte state",
                block.index
            )));
        }
        if last.is_some_and(|l| block.index <= l) {
            return Err(Error::Delta(
                "state blocks must come in increasing order, once each".into(),
            ));
        }
        last = Some(block.index);
    }
    base.resize(len, 0);
    for block in blocks {
        let start = block.index as usize * BLOCK_BYTES;
        base[start..start + block.bytes.len()].copy_from_slice(&block.bytes);
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(base: &[u8], new: &[u8]) -> usize {
        let blocks = diff(base, new);
        let rebuilt = apply(base.to_vec(), new.len() as u64, &blocks, 1 << 30).unwrap();
        assert_eq!(rebuilt, new);
        blocks.len()
    }

    #[test]
    fn an_unchanged_blob_needs_no_blocks() {
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(roundtrip(&blob, &blob), 0);
    }

    #[test]
    fn only_changed_blocks_travel() {
        let base = vec![7u8; 10 * BLOCK_BYTES];
        let mut new = base.clone();
        new[3 * BLOCK_BYTES + 5] = 1;
        new.extend_from_slice(b"a new turn");
        // Block 3 changed, block 10 is new.
        assert_eq!(roundtrip(&base, &new), 2);
        // Shrinking needs no block when the prefix is unchanged.
        assert_eq!(roundtrip(&base, &base[..BLOCK_BYTES + 9]), 0);
        assert_eq!(roundtrip(&[], &new), 11);
        assert_eq!(roundtrip(&new, &[]), 0);
    }

    #[test]
    fn blocks_that_do_not_fit_are_refused() {
        let base = vec![0u8; 2 * BLOCK_BYTES];
        let block = |index, n| Block {
            index,
            bytes: vec![1; n],
        };
        for (blocks, len) in [
            (vec![block(2, BLOCK_BYTES)], 2 * BLOCK_BYTES),
            (vec![block(0, 10)], 2 * BLOCK_BYTES),
            (vec![block(1, BLOCK_BYTES)], BLOCK_BYTES + 10),
            (
                vec![block(1, BLOCK_BYTES), block(1, BLOCK_BYTES)],
                2 * BLOCK_BYTES,
            ),
            (
                vec![block(1, BLOCK_BYTES), block(0, BLOCK_BYTES)],
                2 * BLOCK_BYTES,
            ),
            (vec![block(u32::MAX, 1)], 2 * BLOCK_BYTES),
        ] {
            let err = apply(base.clone(), len as u64, &blocks, 1 << 20).unwrap_err();
            assert!(matches!(err, Error::Delta(_)), "{err}");
        }
        let err = apply(base, 2 << 20, &[], 1 << 20).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn apply_inverts_diff(
            base in proptest::collection::vec(0u8..4, 0..20_000),
            new in proptest::collection::vec(0u8..4, 0..20_000),
        ) {
            let blocks = diff(&base, &new);
            let rebuilt = apply(base.clone(), new.len() as u64, &blocks, 1 << 20).unwrap();
            proptest::prop_assert_eq!(rebuilt, new);
        }
    }
}
