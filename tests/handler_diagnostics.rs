//! A handler of the wrong shape is a compile error that says which shapes
//! are allowed (the `.stderr` files next to each case hold the message).

// trybuild runs cargo on the host; compile errors do not depend on the
// platform, so they are checked on the host only (not under Wine).
#![cfg(not(windows))]

#[test]
fn wrong_handler_shapes_explain_themselves() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui_handlers/*.rs");
}
