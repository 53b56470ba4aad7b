//! Names that are checked once, when they are made or decoded, and are
//! valid from then on.
//!
//! An agent's name becomes a file name in a host's data directory and a key
//! in every host's tables; a host's name is a DNS label in its certificate.
//! Both follow one rule: 1 to 63 of `a-z`, `0-9` and `-`, not starting or
//! ending with `-`. So no name is empty, contains a path separator, a `..`,
//! a NUL or an upper-case twin of another name, and none is longer than a
//! DNS label. A [`AgentName`] or [`HostName`] that exists obeys the rule:
//! the only ways to make one check it, deserialising included, so a message
//! with a bad name fails to decode instead of reaching the file system.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest name: one DNS label.
pub const MAX_NAME_BYTES: usize = 63;

/// A string that breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {shown:?} is not a valid name (1-63 of a-z, 0-9 and '-', not starting or ending with '-')"
)]
pub struct NameError {
    /// What the name was for (`agent`, `host`).
    pub what: &'static str,
    /// The start of the offending string, for the message.
    pub shown: String,
}

/// Whether `name` obeys the naming rule.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Checks `name` against the naming rule; `what` names it in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NameError {
            what,
            shown: name.chars().take(80).collect(),
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// Checks `name` and makes it one.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                check_name($what, &name)?;
                Ok($ty(name))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $ty {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$ty> for str {
            fn eq(&self, other: &$ty) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$ty> for String {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                $ty::new(name).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// An agent's name, unique in the fleet.
    AgentName,
    "agent"
);
name_type!(
    /// A host's name: the name its certificate was issued to.
    HostName,
    "host"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_become_paths_or_keys_twice_are_refused() {
        let long = "a".repeat(10_000);
        for bad in [
            "",
            "..",
            "../../x",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "A",
            "-a",
            "a-",
            "a.b",
            "é",
            long.as_str(),
        ] {
            assert!(AgentName::new(bad).is_err(), "{bad:?}");
            assert!(HostName::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AgentName::new("memory-1").unwrap(), "memory-1");
        assert!(HostName::new("a".repeat(63)).is_ok());
        assert!(HostName::new("a".repeat(64)).is_err());
    }

    #[test]
    fn decoding_checks_the_rule() {
        let good: AgentName = serde_json::from_str("\"notes\"").unwrap();
        assert_eq!(good.as_str(), "notes");
        let err = serde_json::from_str::<AgentName>("\"../x\"").unwrap_err();
        assert!(err.to_string().contains("not a valid name"), "{err}");
        let bytes = postcard::to_stdvec("a/b").unwrap();
        assert!(postcard::from_bytes::<HostName>(&bytes).is_err());
    }
}
