//! The conformance run behind `edgehost policy check`.
