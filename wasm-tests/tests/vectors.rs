//! The spec's vectors give their expected outcome in this build (native or
//! WebAssembly).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use jitgate_wasm_tests::{decide_case, vectors, verifier};

#[test]
fn every_spec_vector_gives_its_expected_outcome() {
    let v = vectors();
    let verifier = verifier(&v);
    let failures: Vec<String> = v
        .cases
        .iter()
        .filter_map(|case| {
            let got = decide_case(&verifier, case);
            (got.code() != case.expect).then(|| format!("{}: got {got}, want {}", case.name, case.expect))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(v.cases.len(), 98);
}
