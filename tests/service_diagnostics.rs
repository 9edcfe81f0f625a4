//! Compile errors from `#[switchboard::service]`: each points at the
//! offending item and says what to write instead (tests/ui_service/*.rs, with the
//! compiler's output in the `.stderr` next to each).
//!
//! After changing a message, regenerate the files with
//! `TRYBUILD=overwrite cargo test --all-features --test service_diagnostics` and
//! read the diff.

// trybuild runs cargo on the host; compile errors do not depend on the
// platform, so they are checked on the host only (not under Wine).
#![cfg(not(windows))]

#[test]
fn mistakes_in_a_service_trait_are_reported_where_they_are() {
    trybuild::TestCases::new().compile_fail("tests/ui_service/*.rs");
}
