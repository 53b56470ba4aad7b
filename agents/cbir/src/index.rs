//! The index agent's memory: descriptors by image id, searched by distance.
//! Its requests and replies are JSON, one object each.

use serde::{Deserialize, Serialize};

use crate::descriptor::Descriptor;

/// Longest image id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most results one query returns.
pub const MAX_K: usize = 100;

/// One indexed image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The image's id, unique in the index.
    pub id: String,
    /// Its descriptor.
    pub descriptor: Descriptor,
}

/// A request to the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Index an image, or replace the descriptor kept under its id.
    Add {
        /// The id.
        id: String,
        /// The descriptor.
        descriptor: Descriptor,
    },
    /// The `k` images nearest to a descriptor, nearest first.
    Query {
        /// How many.
        k: usize,
        /// The descriptor searched for.
        descriptor: Descriptor,
    },
    /// Forget an image.
    Remove {
        /// Its id.
        id: String,
    },
    /// How many images the index holds.
    Stats,
}

/// One result of a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The image's id.
    pub id: String,
    /// Its distance to the query, in `[0, 1]`.
    pub distance: f32,
}

/// The index's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// The image is indexed; `replaced` when its id was already there.
    Added {
        /// The id.
        id: String,
        /// Whether it replaced an entry.
        replaced: bool,
        /// Images held now.
        images: usize,
    },
    /// The nearest images, nearest first, ties by id.
    Hits(Vec<Hit>),
    /// Whether the id was there.
    Removed(bool),
    /// Images held.
    Images(usize),
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The request is malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The index holds as many images as it may.
    #[error("the index is full ({0} images)")]
    Full(usize),
}

/// The images indexed, in insertion order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Index {
    /// Carries out one request. Nothing changes when it is refused.
    pub fn apply(&mut self, request: Request, capacity: usize) -> Result<Reply, IndexError> {
        let invalid = |s: String| IndexError::Invalid(s);
        match request {
            Request::Add { id, descriptor } => {
                check_id(&id)?;
                descriptor.check().map_err(|e| invalid(e.to_string()))?;
                let held = self.entries.len();
                let replaced = match self.entries.iter_mut().find(|e| e.id == id) {
                    Some(entry) => {
                        entry.descriptor = descriptor;
                        true
                    }
                    None if held >= capacity => return Err(IndexError::Full(held)),
                    None => {
                        self.entries.push(Entry {
                            id: id.clone(),
                            descriptor,
                        });
                        false
                    }
                };
                Ok(Reply::Added {
                    id,
                    replaced,
                    images: self.entries.len(),
                })
            }
            Request::Query { k, descriptor } => {
                if !(1..=MAX_K).contains(&k) {
                    return Err(invalid(format!("k={k}: must be 1 to {MAX_K}")));
                }
                descriptor.check().map_err(|e| invalid(e.to_string()))?;
                Ok(Reply::Hits(self.nearest(&descriptor, k)))
            }
            Request::Remove { id } => {
                let before = self.entries.len();
                self.entries.retain(|e| e.id != id);
                Ok(Reply::Removed(self.entries.len() < before))
            }
            Request::Stats => Ok(Reply::Images(self.entries.len())),
        }
    }

    /// The `k` entries nearest to `query`, nearest first, ties by id.
    pub fn nearest(&self, query: &Descriptor, k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .entries
            .iter()
            .map(|e| Hit {
                id: e.id.clone(),
                distance: e.descriptor.distance(query),
            })
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        hits
    }

    /// Checks a state decoded from outside, as [`Index::apply`] checks
    /// each request.
    pub fn check(&self, capacity: usize) -> Result<(), IndexError> {
        if self.entries.len() > capacity {
            return Err(IndexError::Full(self.entries.len()));
        }
        let mut ids = std::collections::BTreeSet::new();
        for e in &self.entries {
            check_id(&e.id)?;
            e.descriptor
                .check()
                .map_err(|err| IndexError::Invalid(err.to_string()))?;
            if !ids.insert(&e.id) {
                return Err(IndexError::Invalid(format!("id {:?} twice", e.id)));
            }
        }
        Ok(())
    }
}

fn check_id(id: &str) -> Result<(), IndexError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(IndexError::Invalid(format!(
            "image id must be 1 to {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}
