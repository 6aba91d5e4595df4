// The generated snapshot of codegen/tests/fixtures/minimal must compile without warnings. trybuild
// builds a binary, where unused public items count as dead code, hence the one allowance.
#![deny(warnings)]
#![allow(dead_code)]

include!("../../codegen/tests/snapshots/minimal.rs");

fn main() {}
