//! Properties of the path matcher and the token parser over generated
//! corpora, and hostile inputs; each corpus's outcomes are folded into a
//! digest that must equal the recorded constant on every target.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grant::path::check_request_path;
use grant::scope::{is_valid_pattern, pattern_covers, pattern_matches};
use grant::{NoRevocations, Outcome};
use jitgate_wasm_tests::{mutate, random_path, random_pattern, vectors, verifier, Digest, Rng};

/// Outcome digests recorded from the native build. If grant logic changes
/// on purpose, run `cargo test -p jitgate-wasm-tests` natively and update
/// these from the failure message; the WebAssembly run must then agree.
const PATH_DIGEST: u64 = 0xb05f_d43b_3ad6_13a3;
// Seeded from every token of the 1.1 vectors, with non-canonical base64url
// refused (the 1.0 file and lenient decoding gave 0x65cc_93f8_54de_4db2).
const TOKEN_DIGEST: u64 = 0x8f84_6460_dc2f_977b;

fn check_digest(name: &str, got: Digest, want: u64) {
    assert_eq!(got.0, want, "{name} digest differs: got {:#x}", got.0);
}

#[test]
fn path_rules_and_matcher_agree_with_their_properties() {
    let mut rng = Rng::new(0x5eed_0001);
    let mut digest = Digest::default();
    for _ in 0..5_000 {
        let path = random_path(&mut rng);
        let checked = check_request_path(path.as_bytes());
        digest.add(&[u8::from(checked.is_ok())]);
        let Ok(checked) = checked.map(|p| p.as_bytes()) else {
            continue;
        };
        // A checked path never has empty or dot segments.
        if checked != b"/" {
            for seg in checked[1..].split(|&b| b == b'/') {
                assert!(!seg.is_empty() && seg != b"." && seg != b"..", "{path}");
            }
        }
        // `/**` matches every checked path.
        assert!(pattern_matches(b"/**", checked), "{path}");
        let pattern = random_pattern(&mut rng);
        let valid = is_valid_pattern(pattern.as_bytes());
        let matched = valid && pattern_matches(pattern.as_bytes(), checked);
        digest.add(&[u8::from(valid), u8::from(matched)]);
        // A pattern covered by another never matches more than it.
        let other = random_pattern(&mut rng);
        if pattern_covers(&other, &pattern) && matched {
            assert!(
                pattern_matches(other.as_bytes(), checked),
                "{other} covers {pattern} but not {path}"
            );
        }
    }
    check_digest("path", digest, PATH_DIGEST);
}

#[test]
fn mutated_tokens_never_panic_and_decide_identically() {
    let v = vectors();
    let verifier = verifier(&v);
    let mut rng = Rng::new(0x5eed_0002);
    let mut digest = Digest::default();
    let seeds: Vec<&str> = v.cases.iter().filter_map(|c| c.token.as_deref()).collect();
    for _ in 0..5_000 {
        let seed = *rng.pick(&seeds);
        let token = mutate(&mut rng, seed.as_bytes());
        let outcome = match verifier.verify(&token, 1_780_000_000) {
            Ok(g) => {
                digest.add(g.jti().as_bytes());
                Outcome::Allowed
            }
            Err(o) => o,
        };
        digest.add(outcome.code().as_bytes());
    }
    check_digest("token", digest, TOKEN_DIGEST);
}

#[test]
fn hostile_inputs_are_refused_quickly_and_safely() {
    let v = vectors();
    let verifier = verifier(&v);
    let now = 1_780_000_000;
    let huge = vec![b'a'; 1 << 20];
    assert_eq!(verifier.verify(&huge, now).unwrap_err(), Outcome::GrantMalformed);
    let dots = vec![b'.'; 4096];
    assert_eq!(verifier.verify(&dots, now).unwrap_err(), Outcome::GrantMalformed);
    assert_eq!(
        verifier.verify(&[0xff; 4000], now).unwrap_err(),
        Outcome::GrantMalformed
    );
    let long_path = "/a".repeat(1 << 18);
    assert!(check_request_path(long_path.as_bytes()).is_ok());
    assert!(pattern_matches(b"/**", long_path.as_bytes()));
    let request = grant::Request {
        method: &[0xff; 64],
        path: b"/v1/invoices/INV-9",
        resource: "payments-api",
        identity: grant::Identity::Absent,
        peer: &grant::KnownPeer::default(),
    };
    let token = v.cases[0].token.as_deref().map(str::as_bytes);
    assert_eq!(
        grant::decide(&verifier, token, &request, now, &NoRevocations).outcome,
        Outcome::IdentityMismatch
    );
}
