//! `edgehost sim`: the decision engine on seeded scenarios; the command
//! itself lives in `edgehost-sim`.

pub use edgehost_sim::SimCommand;
