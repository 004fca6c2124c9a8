//! Grants minted by this crate verify under the same rules, whatever their
//! strings hold; invalid claims are refused at minting.

use std::net::{IpAddr, Ipv4Addr};

use grant::{
    decide, mint, GrantClaims, Identity, KeySet, KnownPeer, MintError, NoRevocations, Outcome, Request, ScopeRule,
    SigningKey, Verifier,
};

/// The client every request here comes from (inside `src`).
static CLIENT: KnownPeer = KnownPeer {
    source: Some(IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7))),
    client_cert: None,
};

fn claims() -> GrantClaims {
    GrantClaims {
        iss: "jit-control".into(),
        sub: "josé \"the\" admin\\\n".into(),
        aud: "payments-api".into(),
        jti: "g-ü-1".into(),
        iat: 1_000,
        nbf: 1_000,
        exp: 1_900,
        scope: vec![
            ScopeRule::new(&["GET", "HEAD"], &["/v1/invoices/*", "/v1/reports/**"]),
            ScopeRule::new(&["POST"], &["/v1/refunds"]),
        ],
        src: Some(vec!["10.0.0.0/8".into(), "2001:db8::/32".into()]),
        req: Some("r-42".into()),
        cnf: None,
    }
}

fn verifier(key: &SigningKey) -> Verifier {
    let mut keys = KeySet::new();
    keys.add(key.clone()).unwrap();
    Verifier::new("jit-control", keys)
}

fn request<'a>(method: &'a str, path: &'a str) -> Request<'a> {
    Request {
        method: method.as_bytes(),
        path: path.as_bytes(),
        resource: "payments-api",
        identity: Identity::NotConfigured,
        peer: &CLIENT,
    }
}

#[test]
fn minted_grant_verifies_with_every_claim_intact() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let c = claims();
    let token = mint(&c, &key).unwrap();
    let g = verifier(&key).verify(token.as_bytes(), 1_200).unwrap();
    assert_eq!(g.sub(), c.sub);
    assert_eq!(g.jti(), c.jti);
    assert_eq!(g.aud(), c.aud);
    assert_eq!(g.iss(), c.iss);
    assert_eq!(g.req(), Some("r-42"));
    assert_eq!((g.iat(), g.nbf(), g.exp()), (1_000, 1_000, 1_900));
    assert_eq!(g.scope(), c.scope);
    assert!(g.has_source_restriction());
}

#[test]
fn minted_grant_allows_only_its_scope() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let v = verifier(&key);
    let check = |m, p| decide(&v, Some(token.as_bytes()), &request(m, p), 1_200, &NoRevocations).outcome;
    assert_eq!(check("GET", "/v1/invoices/7"), Outcome::Allowed);
    assert_eq!(check("HEAD", "/v1/reports"), Outcome::Allowed);
    assert_eq!(check("POST", "/v1/refunds?x=1"), Outcome::Allowed);
    assert_eq!(check("DELETE", "/v1/invoices/7"), Outcome::RequestOutOfScope);
    assert_eq!(check("GET", "/v1/refunds"), Outcome::RequestOutOfScope);
    assert_eq!(check("GET", "/v1/invoices/%2e%2e"), Outcome::PathRejected);
}

#[test]
fn identity_is_compared_with_the_decoded_subject() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let v = verifier(&key);
    let sub = claims().sub;
    let mut r = request("GET", "/v1/invoices/7");
    r.identity = Identity::Value(sub.as_bytes());
    assert_eq!(
        decide(&v, Some(token.as_bytes()), &r, 1_200, &NoRevocations).outcome,
        Outcome::Allowed
    );
    r.identity = Identity::Value("josé".as_bytes());
    assert_eq!(
        decide(&v, Some(token.as_bytes()), &r, 1_200, &NoRevocations).outcome,
        Outcome::IdentityMismatch
    );
}

#[test]
fn invalid_claims_are_refused_at_minting() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let mut c = claims();
    c.scope.clear();
    assert_eq!(mint(&c, &key).unwrap_err().code(), "scope_rule_count");
    let mut c = claims();
    c.scope = vec![ScopeRule::new(&["get"], &["/x"])];
    assert_eq!(mint(&c, &key).unwrap_err().code(), "scope_bad_method");
    let mut c = claims();
    c.scope = vec![ScopeRule::new(&["GET"], &["/x/"])];
    assert_eq!(mint(&c, &key).unwrap_err().code(), "scope_bad_pattern");
    let mut c = claims();
    c.exp = c.nbf;
    assert_eq!(mint(&c, &key), Err(MintError::BadTimes));
    let mut c = claims();
    c.sub = String::new();
    assert_eq!(mint(&c, &key), Err(MintError::BadString("sub")));
    let mut c = claims();
    c.src = Some(vec!["10.0.0.1".into()]);
    assert!(matches!(mint(&c, &key), Err(MintError::BadSource(_))));
    let mut c = claims();
    c.scope = (0..32)
        .map(|i| ScopeRule::new(&["GET"], &[&format!("/{}", "x".repeat(60 + i))]))
        .collect();
    assert_eq!(mint(&c, &key), Err(MintError::TooLong));
}

/// What a damaged copy of a good token must be refused as, worked out from
/// the token's form alone (not from the verifier): which part the damage
/// hit.
fn refusal_for(damaged: &[u8], original: &[u8]) -> &'static [Outcome] {
    const MALFORMED: &[Outcome] = &[Outcome::GrantMalformed];
    // A changed header may no longer parse, name another algorithm or type,
    // or name another key; if it still selects the key, the MAC (over the
    // encoded text) no longer matches.
    const HEADER: &[Outcome] = &[
        Outcome::GrantMalformed,
        Outcome::GrantUnsupported,
        Outcome::GrantUnknownKey,
        Outcome::GrantBadSignature,
    ];
    // Changed claims text, or a changed or shortened MAC.
    const BAD_SIGNATURE: &[Outcome] = &[Outcome::GrantBadSignature];
    let in_alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' || *b == b'.';
    let parts: Vec<&[u8]> = damaged.split(|b| *b == b'.').collect();
    // Unpadded base64url never leaves one character in the last group, and
    // a last character's unused low bits are zero (the canonical spelling).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let canonical = |p: &&[u8]| {
        let unused = match p.len() % 4 {
            2 => 0b1111,
            3 => 0b11,
            _ => 0,
        };
        let last = p.last().and_then(|c| ALPHABET.iter().position(|a| a == c)).unwrap_or(0);
        last & unused == 0
    };
    if !damaged.iter().all(in_alphabet)
        || parts.len() != 3
        || parts.iter().any(|p| p.len() % 4 == 1)
        || !parts.iter().all(canonical)
    {
        return MALFORMED;
    }
    if parts[0] != original.split(|b| *b == b'.').next().unwrap_or_default() {
        return HEADER;
    }
    BAD_SIGNATURE
}

#[test]
fn every_truncated_token_is_refused_as_malformed_or_a_bad_signature() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let v = verifier(&key);
    let bytes = token.as_bytes();
    let mut wrong = Vec::new();
    for cut in 0..bytes.len() {
        let want = refusal_for(&bytes[..cut], bytes);
        let got = v.verify(&bytes[..cut], 1_200).map(|_| ());
        if !want.iter().any(|o| got == Err(*o)) {
            wrong.push(format!("first {cut} bytes: got {got:?}, want one of {want:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} truncations:\n{}",
        wrong.len(),
        bytes.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_bit_flipped_token_is_refused_with_the_class_of_the_part_it_hit() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let v = verifier(&key);
    let bytes = token.as_bytes();
    let mut wrong = Vec::new();
    let mut seen = std::collections::BTreeMap::<Outcome, usize>::new();
    let mut flipped = bytes.to_vec();
    for i in 0..flipped.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            let want = refusal_for(&flipped, bytes);
            match v.verify(&flipped, 1_200) {
                Err(o) if want.contains(&o) => *seen.entry(o).or_default() += 1,
                got => wrong.push(format!(
                    "byte {i} bit {bit}: got {:?}, want one of {want:?}",
                    got.map(|g| g.jti().to_owned())
                )),
            }
            flipped[i] ^= 1 << bit;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} flips:\n{}",
        wrong.len(),
        bytes.len() * 8,
        wrong.join("\n")
    );
    // Every class of damage was exercised (a flip in the header can name
    // another type or key, one in the MAC or claims breaks the MAC).
    for o in [
        Outcome::GrantMalformed,
        Outcome::GrantUnsupported,
        Outcome::GrantUnknownKey,
        Outcome::GrantBadSignature,
    ] {
        assert!(seen.get(&o).is_some_and(|n| *n > 0), "no flip gave {o}: {seen:?}");
    }
}

/// A MAC text that differs from the minted one only in the unused low bits
/// of its last character decodes to the same 32 bytes. RFC 4648 (3.5)
/// lets decoders refuse such non-canonical text, and no encoder produces
/// it, so a strict verifier refuses it as malformed (the token's bytes are
/// then the only spelling of its MAC, as a cache or log keyed by token
/// bytes assumes).
#[test]
fn a_mac_spelled_with_its_unused_bits_set_is_refused() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let v = verifier(&key);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = token.into_bytes();
    let last = bytes.pop().unwrap();
    // 43 characters carry 256 bits: the last one's two low bits are unused
    // and zero, so the next character in the alphabet decodes the same.
    let value = ALPHABET.iter().position(|c| *c == last).unwrap();
    assert_eq!(value % 4, 0, "a canonical last character");
    bytes.push(ALPHABET[value + 1]);
    assert_eq!(v.verify(&bytes, 1_200).err(), Some(Outcome::GrantMalformed));
}

#[test]
fn a_device_bound_grant_round_trips_and_allows_only_its_certificate() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let thumbprint = [0x5a; 32];
    let token = mint(
        &GrantClaims {
            cnf: Some(thumbprint),
            ..claims()
        },
        &key,
    )
    .unwrap();
    let v = verifier(&key);
    assert_eq!(
        v.verify(token.as_bytes(), 1_200).unwrap().bound_certificate(),
        Some(&thumbprint)
    );
    let outcome = |client_cert| {
        let peer = KnownPeer { client_cert, ..CLIENT };
        let r = Request {
            peer: &peer,
            ..request("GET", "/v1/invoices/7")
        };
        decide(&v, Some(token.as_bytes()), &r, 1_200, &NoRevocations).outcome
    };
    assert_eq!(outcome(Some(thumbprint)), Outcome::Allowed);
    assert_eq!(outcome(Some([0x5b; 32])), Outcome::DeviceMismatch);
    assert_eq!(outcome(None), Outcome::DeviceMismatch);
}

#[test]
fn the_allowing_rule_is_the_first_rule_that_allows_the_request() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let g = verifier(&key).verify(token.as_bytes(), 1_200).unwrap();
    assert_eq!(g.allowing_rule(b"GET", b"/v1/invoices/7"), Some(0));
    assert_eq!(g.allowing_rule(b"HEAD", b"/v1/reports/2026/q1"), Some(0));
    assert_eq!(g.allowing_rule(b"POST", b"/v1/refunds"), Some(1));
    assert_eq!(g.allowing_rule(b"POST", b"/v1/invoices/7"), None);
    assert_eq!(g.allowing_rule(b"GET", b"/v1/refunds"), None);
}
