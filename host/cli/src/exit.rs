//! Exit codes, ripgrep's way: 0 for success, 2 for an error, and codes of
//! their own for outcomes a script wants to tell apart from a failure of
//! the tool. The README lists them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | not found: no such agent, component, host or file |
//! | 2 | error: anything else, a wrong flag or argument included |
//! | 3 | refused: a host or a check said no (not allowed, name taken, host full, another protocol version, a plugin that fails its checks or fails during `sim`) |
//! | 4 | unreachable: no host of the fleet could be reached |
//! | 141 | standard output was closed by its reader |

use std::fmt;

use edgehost_fleet::{Error as FleetError, ErrorKind};

/// What a failed command tells its caller through its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No such agent, component, host or file.
    NotFound = 1,
    /// Anything else went wrong.
    Error = 2,
    /// A host or a check refused.
    Refused = 3,
    /// No host could be reached.
    Unreachable = 4,
}

/// An outcome a command decided itself ("no host runs an agent named x"),
/// with its exit code; its message is the error line.
#[derive(Debug)]
pub struct Outcome {
    code: Code,
    message: String,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Outcome {}

/// An error with exit code `code` and `message` as its line.
pub fn outcome(code: Code, message: impl Into<String>) -> anyhow::Error {
    Outcome {
        code,
        message: message.into(),
    }
    .into()
}

/// The exit code for `error`: the first cause in its chain that says what
/// kind of failure it is decides; anything else is [`Code::Error`].
pub fn code_of(error: &anyhow::Error) -> Code {
    for cause in error.chain() {
        if let Some(o) = cause.downcast_ref::<Outcome>() {
            return o.code;
        }
        if let Some(code) = cause.downcast_ref::<FleetError>().and_then(fleet_code) {
            return code;
        }
        if cause.is::<edgehost_sim::PluginFailed>() {
            return Code::Refused;
        }
        if let Some(edgehost_runtime::Error::Io { cause, .. }) =
            cause.downcast_ref::<edgehost_runtime::Error>()
            && cause.kind() == std::io::ErrorKind::NotFound
        {
            return Code::NotFound;
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Code::NotFound;
        }
    }
    Code::Error
}

fn fleet_code(e: &FleetError) -> Option<Code> {
    let kind = match e {
        FleetError::Connect(_) => return Some(Code::Unreachable),
        FleetError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
            return Some(Code::NotFound);
        }
        FleetError::Remote { kind, .. } => *kind,
        FleetError::NotFound(_)
        | FleetError::Forbidden(_)
        | FleetError::Conflict(_)
        | FleetError::Proto(edgehost_fleet::protocol::Error::Version { .. }) => e.kind(),
        _ => return None,
    };
    match kind {
        ErrorKind::NotFound => Some(Code::NotFound),
        ErrorKind::Forbidden | ErrorKind::Conflict | ErrorKind::Version | ErrorKind::BadRequest => {
            Some(Code::Refused)
        }
        ErrorKind::Agent | ErrorKind::Internal => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_decide_the_code() {
        let remote = |kind| FleetError::Remote {
            kind,
            message: "x".into(),
        };
        let cases = [
            (
                anyhow::Error::from(remote(ErrorKind::NotFound)),
                Code::NotFound,
            ),
            (
                anyhow::Error::from(remote(ErrorKind::Forbidden)),
                Code::Refused,
            ),
            (
                anyhow::Error::from(remote(ErrorKind::Conflict)),
                Code::Refused,
            ),
            (anyhow::Error::from(remote(ErrorKind::Agent)), Code::Error),
            (
                anyhow::Error::from(FleetError::Connect("h".into())),
                Code::Unreachable,
            ),
            (
                anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound))
                    .context("reading x"),
                Code::NotFound,
            ),
            (outcome(Code::Refused, "checks failed"), Code::Refused),
            (anyhow::anyhow!("anything"), Code::Error),
        ];
        for (error, code) in cases {
            assert_eq!(code_of(&error), code, "{error:#}");
        }
    }
}
