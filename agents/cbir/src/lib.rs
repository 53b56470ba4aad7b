//! Content-based image retrieval for edgehost's CBIR agents: decoding
//! images ([`image`]), reducing them to descriptors ([`descriptor`]), an
//! index searched by distance ([`index`]), and seeded synthetic images for
//! tests and experiments ([`synth`]).
//!
//! Plain Rust: the `cbir-features` and `cbir-index` agents build it into
//! their components, and the host's tools and tests build it natively, so
//! both sides compute the same descriptors.

pub mod descriptor;
pub mod image;
pub mod index;
pub mod synth;

pub use descriptor::{Descriptor, describe};
pub use index::Index;

#[cfg(test)]
mod tests {
    use super::*;

    /// A variant of a scene is found again: it is nearest to its own scene
    /// among many others.
    #[test]
    fn variants_are_retrieved_first() {
        let mut index = Index::default();
        for seed in 0..40 {
            let d = describe(&synth::scene(seed, 64, 48));
            let request = index::Request::Add {
                id: format!("scene-{seed}"),
                descriptor: d,
            };
            index.apply(request, 1000).unwrap();
        }
        let mut found = 0;
        for seed in 0..40 {
            let query = describe(&synth::variant(seed, 1 + seed % 3, 64, 48));
            let hits = index.nearest(&query, 3);
            if hits[0].id == format!("scene-{seed}") {
                found += 1;
            }
        }
        assert!(found >= 38, "only {found} of 40 variants found first");
    }

    #[test]
    fn scenes_are_reproducible_and_distinct() {
        assert_eq!(synth::scene(7, 32, 32), synth::scene(7, 32, 32));
        assert_ne!(synth::scene(7, 32, 32), synth::scene(8, 32, 32));
        assert_ne!(synth::variant(7, 1, 32, 32), synth::scene(7, 32, 32));
    }

    #[test]
    fn a_refused_request_changes_nothing() {
        let mut index = Index::default();
        let d = describe(&synth::scene(1, 16, 16));
        let add = |id: &str| index::Request::Add {
            id: id.to_owned(),
            descriptor: d.clone(),
        };
        index.apply(add("a"), 1).unwrap();
        let before = index.clone();
        assert_eq!(index.apply(add("b"), 1), Err(index::IndexError::Full(1)));
        assert!(index.apply(add(""), 1).is_err());
        let mut bad = d.clone();
        bad.histogram.truncate(3);
        let query = index::Request::Query {
            k: 1,
            descriptor: bad,
        };
        assert!(index.apply(query, 1).is_err());
        assert!(
            index
                .apply(
                    index::Request::Query {
                        k: 0,
                        descriptor: d.clone()
                    },
                    1
                )
                .is_err()
        );
        assert_eq!(index, before);
        let request: index::Request = serde_json::from_str(r#"{"op":"stats"}"#).unwrap();
        assert_eq!(index.apply(request, 1), Ok(index::Reply::Images(1)));
    }
}
