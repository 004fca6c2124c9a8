//! Shared fixtures for tests that run the grant crate both natively and
//! compiled to `wasm32-unknown-unknown` under Node (`wasm-bindgen-test`).
//!
//! The same test files build for both targets. Each corpus here is
//! generated deterministically, and its outcomes are folded into a digest
//! that the tests compare with one recorded constant, so a difference
//! between the native and the WebAssembly build fails on either side.

use grant::Verifier;
pub use vectors::{Case, VectorFile};

/// The spec's vectors, embedded at compile time (the `vectors` crate).
pub fn vectors() -> VectorFile {
    VectorFile::spec()
}

/// A verifier configured as the vectors say.
pub fn verifier(v: &VectorFile) -> Verifier {
    v.verifier().unwrap_or_else(|e| panic!("vectors: {e}"))
}

/// A small deterministic generator (xorshift64*), identical on every
/// target, so both builds see the same corpus.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a over a stream of bytes: the digest of a corpus's outcomes.
#[derive(Debug, Clone, Copy)]
pub struct Digest(pub u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Folds bytes in.
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 ^= 0xff;
    }
}

/// Random request paths built from segments that exercise the path rules.
pub fn random_path(rng: &mut Rng) -> String {
    const SEGMENTS: &[&str] = &[
        "v1", "invoices", "reports", "INV-9", "a", "", ".", "..", "..;x", "%2e", "%2F", "%41", "%5c", "%00", "a;b",
        "~", "*", "**", "é", "a b", "?", "#", "\\", "x?y=/..",
    ];
    let mut path = String::new();
    for _ in 0..rng.below(6) {
        path.push('/');
        let segment: &&str = rng.pick(SEGMENTS);
        path.push_str(segment);
    }
    if path.is_empty() || rng.below(10) == 0 {
        path.push('/');
    }
    path
}

/// Random patterns, valid or not.
pub fn random_pattern(rng: &mut Rng) -> String {
    const SEGMENTS: &[&str] = &["v1", "invoices", "reports", "INV-9", "a", "*", "**", "", "a*"];
    let mut p = String::new();
    for _ in 0..=rng.below(4) {
        p.push('/');
        let segment: &&str = rng.pick(SEGMENTS);
        p.push_str(segment);
    }
    p
}

/// Mutates a token: flips, deletes, inserts and duplicates bytes.
pub fn mutate(rng: &mut Rng, token: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCabc019-_.=+/ \x00\xff{}\"";
    let mut t = token.to_vec();
    for _ in 0..=rng.below(4) {
        if t.is_empty() {
            t.push(*rng.pick(ALPHABET));
            continue;
        }
        let at = rng.below(t.len());
        match rng.below(4) {
            0 => t[at] ^= 1 << rng.below(8),
            1 => {
                t.remove(at);
            }
            2 => t.insert(at, *rng.pick(ALPHABET)),
            _ => {
                let end = (at + rng.below(16)).min(t.len());
                let chunk = t[at..end].to_vec();
                t.splice(at..at, chunk);
            }
        }
    }
    t
}
