//! Names of the placement algorithms, as the command line and reports
//! spell them.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A placement algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// ALP plus LLM refinement (ALP alone when no refiner is configured).
    #[serde(rename = "antllm")]
    AntLlm,
    /// [`crate::baseline::greedy`].
    Greedy,
    /// [`crate::baseline::polling`].
    Polling,
    /// [`crate::baseline::random`].
    Random,
    /// [`crate::local::LocalSearch`].
    LocalSearch,
    /// [`crate::exact::Optimal`].
    Optimal,
}

impl Algorithm {
    /// All algorithms, in report order.
    pub const ALL: [Self; 6] = [
        Self::AntLlm,
        Self::LocalSearch,
        Self::Greedy,
        Self::Polling,
        Self::Random,
        Self::Optimal,
    ];

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AntLlm => "antllm",
            Self::Greedy => "greedy",
            Self::Polling => "polling",
            Self::Random => "random",
            Self::LocalSearch => "local-search",
            Self::Optimal => "optimal",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::InvalidParameters(format!(
                    "unknown algorithm `{s}` (expected antllm, local-search, greedy, polling, random or optimal)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().expect("known"), a);
        }
        assert!("ants".parse::<Algorithm>().is_err());
        let json = serde_json::to_string(&Algorithm::ALL).expect("json");
        let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(json, serde_json::to_string(&names).expect("json"));
    }
}
