//! Compile errors from `#[switchboard::service]`: each points at the
//! offending item and says what to write instead (tests/ui_service/*.rs, with the
//! compiler's output in the `.stderr` next to each).
//!
//! After changing a message, regenerate the files with
//! `TRYBUILD=overwrite cargo test --all-features --test service_diagnostics` and
//! read the diff.

#[test]
fn mistakes_in_a_service_trait_are_reported_where_they_are() {
    trybuild::TestCases::new().compile_fail("tests/ui_service/*.rs");
}
