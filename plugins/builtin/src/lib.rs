//! The reference heuristic and cost model of edgehost, as a policy plugin.
//!
//! It runs the decision engine's own functions inside the sandbox, so it
//! gives the same numbers as the host's native policy; the host's tests
//! hold the two against each other on many seeded instances. It is also the
//! smallest complete plugin: every [`Policy`] method keeps its default body,
//! which is the reference implementation.
#![cfg(target_family = "wasm")]

use edgehost_policy::Policy;

/// The reference policy.
struct Builtin;

impl Policy for Builtin {}

edgehost_policy::export_policy!(Builtin);
