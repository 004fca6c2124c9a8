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

#[test]
fn verification_never_panics_on_truncations_and_bit_flips() {
    let key = SigningKey::new("k1", &[9; 32]).unwrap();
    let token = mint(&claims(), &key).unwrap();
    let v = verifier(&key);
    let bytes = token.as_bytes();
    for cut in 0..bytes.len() {
        let _ = v.verify(&bytes[..cut], 1_200);
    }
    let mut flipped = bytes.to_vec();
    for i in 0..flipped.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            assert_ne!(
                v.verify(&flipped, 1_200).map(|g| g.jti().to_owned()).ok().as_deref(),
                Some("tampered")
            );
            flipped[i] ^= 1 << bit;
        }
    }
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
