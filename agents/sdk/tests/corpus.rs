//! The `sdk_state` fuzz corpus as regression inputs, and its seeds.
//!
//! Every file of `fuzz/corpus/sdk_state/` goes through the function the fuzz
//! target calls ([`edgehost_agent::state::fuzz_decode`]). The seeds are real
//! memory-agent blobs, made and checked by `write_seeds`, and written into
//! the corpus with `EDGEHOST_WRITE_SEEDS=1 cargo test -p edgehost-agent
//! --test corpus write_seeds`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgehost_agent::state;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sdk_state")
}

#[test]
fn the_sdk_state_corpus_decodes_without_a_failure() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let path = entry.unwrap().path();
        let blob = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| state::fuzz_decode(&blob));
        assert!(outcome.is_ok(), "{} fails its harness", path.display());
        n += 1;
    }
    assert!(n > 0, "the sdk_state corpus is empty");
}

#[test]
fn write_seeds() {
    /// The memory agent's state, field for field.
    #[derive(serde::Serialize)]
    struct Memory {
        notes: Vec<String>,
        turns: Vec<(String, String)>,
    }
    const MAGIC: &[u8; 8] = b"EHMEMv1\0";
    let dir = corpus();
    let write = |name: &str, memory: &Memory| {
        let blob = state::encode(MAGIC, memory).unwrap();
        // Each seed decodes, as the harness checks; with EDGEHOST_WRITE_SEEDS
        // it is also written into the committed corpus.
        state::fuzz_decode(&blob);
        assert!(
            state::decode::<(Vec<String>, Vec<(String, String)>)>(MAGIC, &blob).is_ok(),
            "seed {name}"
        );
        if std::env::var_os("EDGEHOST_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{name}")), blob).unwrap();
        }
    };
    write(
        "empty",
        &Memory {
            notes: vec![],
            turns: vec![],
        },
    );
    write(
        "conversation",
        &Memory {
            notes: vec![
                "the user's name is Ada".into(),
                "prefers short answers".into(),
            ],
            turns: vec![
                ("user".into(), "hello".into()),
                (
                    "assistant".into(),
                    "(no LLM configured) I remember 2 note(s)".into(),
                ),
            ],
        },
    );
    write(
        "unicode",
        &Memory {
            notes: vec!["北京 ☃".into()],
            turns: vec![],
        },
    );
}
