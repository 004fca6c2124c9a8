//! The grant spec's test vectors (`grant-token.md`, "Test vectors"): the
//! file format, and one way to decide a case.
//!
//! The grant crate's tests, the tests inside WebAssembly, the filter's
//! request-path tests and `jitgate grant check` all read vector files
//! through this crate, so a new member of a case (1.1 added `client_cert`)
//! is taught to every runner at once.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use base64::Engine;
use grant::{decide, GrantVerifier, Identity, KeySet, KnownPeer, Outcome, Request, Verifier};
use serde::Deserialize;

/// The spec's own vectors, as copied into this repository from
/// `shared/spec/grant-vectors.json`.
pub const SPEC_VECTORS: &str = include_str!("../../grant/tests/data/grant-vectors.json");

/// What can be wrong with a vector file.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The text is not a vector file.
    #[error("not a grant vector file: {0}")]
    Parse(#[from] serde_json::Error),
    /// A key is not a usable base64url secret.
    #[error("keys.{kid}: {reason}")]
    Key {
        /// The key id.
        kid: String,
        /// Why it was refused.
        reason: String,
    },
    /// A case's `client_cert` is not a base64url SHA-256 thumbprint.
    #[error("case {0:?}: request.client_cert is not 43 base64url characters of a SHA-256 thumbprint")]
    ClientCert(String),
    /// A case's `expect` is not an outcome code.
    #[error("case {case:?}: expect {code:?} is not an outcome code")]
    Expect {
        /// The case.
        case: String,
        /// What it said.
        code: String,
    },
}

/// A file in the spec's vector format.
#[derive(Debug, Deserialize)]
pub struct VectorFile {
    /// Expected issuer.
    pub issuer: String,
    /// Allowed skew, seconds.
    #[serde(default = "default_leeway")]
    pub leeway: u64,
    /// Longest lifetime, seconds.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u64,
    /// Keys by kid (base64url secrets).
    pub keys: BTreeMap<String, String>,
    /// The cases.
    pub cases: Vec<Case>,
}

fn default_leeway() -> u64 {
    grant::DEFAULT_LEEWAY
}

fn default_max_ttl() -> u64 {
    grant::DEFAULT_MAX_TTL
}

/// One case.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// Name.
    pub name: String,
    /// The grant sent, or none.
    pub token: Option<String>,
    /// The verifier's clock, seconds since the epoch.
    pub now: u64,
    /// The request.
    pub request: CaseRequest,
    /// The expected outcome code (a file made for `grant check` may omit it).
    #[serde(default)]
    pub expect: Option<String>,
}

/// A case's request.
#[derive(Debug, Deserialize)]
pub struct CaseRequest {
    /// Method.
    pub method: String,
    /// Path, possibly with a query.
    pub path: String,
    /// The resource the request was routed to.
    pub resource: String,
    /// The client address (unknown when missing, null or unparsable).
    #[serde(default)]
    pub source: Option<String>,
    /// Revoked grant ids.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Identity: a missing key means no identity source is configured;
    /// null means configured and absent.
    #[serde(default, deserialize_with = "present")]
    pub identity: Option<Option<String>>,
    /// The base64url SHA-256 thumbprint of the client certificate on the
    /// connection (missing or null: none).
    #[serde(default)]
    pub client_cert: Option<String>,
}

/// Distinguishes a missing key (outer `None`, via `default`) from `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl VectorFile {
    /// Parses a vector file.
    pub fn parse(text: &str) -> Result<VectorFile, VectorError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The spec's vectors.
    pub fn spec() -> VectorFile {
        // The file is part of this crate's source: a parse failure is a
        // broken build, caught by every test that uses it.
        #[allow(clippy::expect_used)]
        VectorFile::parse(SPEC_VECTORS).expect("the spec's vector file parses")
    }

    /// The key set of the file.
    pub fn keys(&self) -> Result<KeySet, VectorError> {
        let mut keys = KeySet::new();
        for (kid, secret) in &self.keys {
            keys.insert_base64url(kid, secret).map_err(|e| VectorError::Key {
                kid: kid.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(keys)
    }

    /// A verifier configured as the file says.
    pub fn verifier(&self) -> Result<Verifier, VectorError> {
        Ok(Verifier::new(&self.issuer, self.keys()?)
            .with_leeway(self.leeway)
            .with_max_ttl(self.max_ttl))
    }
}

impl Case {
    /// The identity the case's verifier sees.
    pub fn identity(&self) -> Identity<'_> {
        match &self.request.identity {
            None => Identity::NotConfigured,
            Some(None) => Identity::Absent,
            Some(Some(id)) => Identity::Value(id.as_bytes()),
        }
    }

    /// The client address, if the case gives a parsable one.
    pub fn source(&self) -> Option<IpAddr> {
        self.request.source.as_deref().and_then(|s| s.parse().ok())
    }

    /// The client certificate's thumbprint, if one was presented.
    pub fn client_cert(&self) -> Result<Option<[u8; 32]>, VectorError> {
        let Some(text) = &self.request.client_cert else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(32) if text.len() == 43 => Ok(Some(out)),
            _ => Err(VectorError::ClientCert(self.name.clone())),
        }
    }

    /// The revoked ids as a set.
    pub fn revoked(&self) -> HashSet<String> {
        self.request.revoked.iter().cloned().collect()
    }

    /// The expected outcome, if the case names one.
    pub fn expected(&self) -> Result<Option<Outcome>, VectorError> {
        self.expect
            .as_deref()
            .map(|code| {
                Outcome::from_code(code).ok_or_else(|| VectorError::Expect {
                    case: self.name.clone(),
                    code: code.to_owned(),
                })
            })
            .transpose()
    }

    /// Decides the case with `grant::decide` and `verifier`.
    pub fn decide<V: GrantVerifier + ?Sized>(&self, verifier: &V) -> Result<Outcome, VectorError> {
        let peer = KnownPeer {
            source: self.source(),
            client_cert: self.client_cert()?,
        };
        let request = Request {
            method: self.request.method.as_bytes(),
            path: self.request.path.as_bytes(),
            resource: &self.request.resource,
            identity: self.identity(),
            peer: &peer,
        };
        let token = self.token.as_deref().map(str::as_bytes);
        Ok(decide(verifier, token, &request, self.now, &self.revoked()).outcome)
    }
}

/// One case's result against its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The case.
    pub name: String,
    /// What it expects.
    pub expected: Outcome,
    /// What was decided.
    pub got: Outcome,
}

/// Runs every case that names an expectation through `run` and returns
/// the number run and every mismatch. Used by each runner so that all of
/// them count and report alike.
pub fn run_all(
    file: &VectorFile,
    mut run: impl FnMut(&Case) -> Result<Outcome, VectorError>,
) -> Result<(usize, Vec<Mismatch>), VectorError> {
    let mut mismatches = Vec::new();
    let mut count = 0;
    for case in &file.cases {
        let Some(expected) = case.expected()? else {
            continue;
        };
        count += 1;
        let got = run(case)?;
        if got != expected {
            mismatches.push(Mismatch {
                name: case.name.clone(),
                expected,
                got,
            });
        }
    }
    Ok((count, mismatches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_identity_key_differs_from_null() {
        let file = VectorFile::parse(
            r#"{"issuer":"i","keys":{},"cases":[
              {"name":"a","token":null,"now":0,"request":{"method":"GET","path":"/","resource":"r","source":null}},
              {"name":"b","token":null,"now":0,"request":{"method":"GET","path":"/","resource":"r","source":null,"identity":null}}]}"#,
        )
        .unwrap();
        assert_eq!(file.cases[0].identity(), Identity::NotConfigured);
        assert_eq!(file.cases[1].identity(), Identity::Absent);
    }

    #[test]
    fn a_client_cert_that_is_not_a_thumbprint_is_an_error() {
        let file = VectorFile::parse(
            r#"{"issuer":"i","keys":{},"cases":[
              {"name":"c","token":null,"now":0,"request":{"method":"GET","path":"/","resource":"r","source":null,"client_cert":"abc"}}]}"#,
        )
        .unwrap();
        assert!(matches!(file.cases[0].client_cert(), Err(VectorError::ClientCert(_))));
    }
}
