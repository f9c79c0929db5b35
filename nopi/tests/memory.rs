//! The conformance suite on the memory backend.
#[macro_use]
mod conformance;
mod support;

conformance_suite!(support::memory);
