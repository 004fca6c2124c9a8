//! The spec's vectors give their expected outcome in this build (native or
//! WebAssembly).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use jitgate_wasm_tests::{vectors, verifier};

#[test]
fn every_spec_vector_gives_its_expected_outcome() {
    let v = vectors();
    let verifier = verifier(&v);
    let (count, mismatches) = vectors::run_all(&v, |case| case.decide(&verifier)).unwrap();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(count, 109, "every case of the 1.1 vectors ran");
}
