//! Every case of the spec's test vectors (`tests/data/grant-vectors.json`,
//! copied from `shared/spec`), decided natively by `grant::decide`.

use grant::Outcome;
use vectors::{run_all, VectorFile};

/// The number of cases in the spec's vector file (1.1): a runner that
/// silently skipped cases would show here.
const SPEC_CASES: usize = 109;

#[test]
fn every_spec_vector_gives_its_expected_outcome() {
    let file = VectorFile::spec();
    let verifier = file.verifier().unwrap();
    let (count, mismatches) = run_all(&file, |case| case.decide(&verifier)).unwrap();
    assert_eq!(count, SPEC_CASES, "every vector names its expectation and was run");
    assert!(
        mismatches.is_empty(),
        "{} vectors failed: {mismatches:#?}",
        mismatches.len()
    );
}

#[test]
fn vectors_cover_every_outcome_code() {
    let file = VectorFile::spec();
    for outcome in Outcome::ALL {
        assert!(
            file.cases.iter().any(|c| c.expect.as_deref() == Some(outcome.code())),
            "no vector expects {outcome}"
        );
    }
}
