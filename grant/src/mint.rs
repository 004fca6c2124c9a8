//! Minting: the control service's side of the contract.
//!
//! Claims are checked against the same rules the verifier applies, so the
//! control service cannot mint a token that every proxy would refuse.

use base64::Engine;
use hmac::Mac;

use crate::cidr::Cidr;
use crate::json::MAX_SAFE_INTEGER;
use crate::key::SigningKey;
use crate::scope::{ScopeError, ScopeRule, MAX_RULES};
use crate::token::{BASE64URL, MAX_TOKEN_LEN};
use crate::verify::{MAX_JTI_LEN, MAX_SUB_LEN};

/// The claims of a grant to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantClaims {
    /// The issuer, as proxies are configured to expect.
    pub iss: String,
    /// The identity the grant is issued to (1..256 bytes).
    pub sub: String,
    /// The protected resource id.
    pub aud: String,
    /// The grant id (1..128 bytes).
    pub jti: String,
    /// Issued-at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not-before.
    pub nbf: u64,
    /// Expiry; must be after `nbf`.
    pub exp: u64,
    /// 1 to 32 scope rules.
    pub scope: Vec<ScopeRule>,
    /// Optional client address blocks.
    pub src: Option<Vec<String>>,
    /// Optional access-request id, for audit linking.
    pub req: Option<String>,
    /// Optional device binding (spec 1.1 `cnf`): the SHA-256 thumbprint of
    /// the DER client certificate the grant is bound to. Mint bound grants
    /// only for resources whose every proxy checks `cnf` (spec 1.1).
    pub cnf: Option<[u8; 32]>,
}

/// Why a grant could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// A string claim is empty or too long.
    #[error("claim {0} is empty or too long")]
    BadString(&'static str),
    /// A time claim is out of range or `exp <= nbf`.
    #[error("time claims must be at most 2^53-1 with exp after nbf")]
    BadTimes,
    /// The scope is invalid.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A `src` entry is not a CIDR block.
    #[error("src entry {0:?} is not a CIDR block")]
    BadSource(String),
    /// The token would exceed 4096 bytes.
    #[error("the grant would be longer than 4096 bytes; narrow its scope")]
    TooLong,
}

impl MintError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            MintError::BadString(_) => "mint_bad_string",
            MintError::BadTimes => "mint_bad_times",
            MintError::Scope(e) => e.code(),
            MintError::BadSource(_) => "mint_bad_source",
            MintError::TooLong => "mint_too_long",
        }
    }
}

impl GrantClaims {
    /// Checks the claims against the spec's rules.
    pub fn validate(&self) -> Result<(), MintError> {
        let within = |s: &str, max: usize| !s.is_empty() && s.len() <= max;
        if !within(&self.sub, MAX_SUB_LEN) {
            return Err(MintError::BadString("sub"));
        }
        if !within(&self.jti, MAX_JTI_LEN) {
            return Err(MintError::BadString("jti"));
        }
        if self.iss.is_empty() {
            return Err(MintError::BadString("iss"));
        }
        if self.aud.is_empty() {
            return Err(MintError::BadString("aud"));
        }
        if [self.iat, self.nbf, self.exp].iter().any(|&t| t > MAX_SAFE_INTEGER) || self.exp <= self.nbf {
            return Err(MintError::BadTimes);
        }
        if self.scope.is_empty() || self.scope.len() > MAX_RULES {
            return Err(ScopeError::RuleCount.into());
        }
        self.scope.iter().try_for_each(ScopeRule::validate)?;
        for block in self.src.iter().flatten() {
            if Cidr::parse(block).is_none() {
                return Err(MintError::BadSource(block.clone()));
            }
        }
        Ok(())
    }

    fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        for (name, value) in [
            ("iss", &self.iss),
            ("sub", &self.sub),
            ("aud", &self.aud),
            ("jti", &self.jti),
        ] {
            member(&mut out, name);
            push_json_str(&mut out, value);
            out.push(',');
        }
        for (name, value) in [("iat", self.iat), ("nbf", self.nbf), ("exp", self.exp)] {
            member(&mut out, name);
            out.push_str(&value.to_string());
            out.push(',');
        }
        if let Some(req) = &self.req {
            member(&mut out, "req");
            push_json_str(&mut out, req);
            out.push(',');
        }
        member(&mut out, "scope");
        out.push('[');
        for (i, rule) in self.scope.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            member(&mut out, "methods");
            push_json_list(&mut out, &rule.methods);
            out.push(',');
            member(&mut out, "paths");
            push_json_list(&mut out, &rule.paths);
            out.push('}');
        }
        out.push(']');
        if let Some(src) = &self.src {
            out.push(',');
            member(&mut out, "src");
            push_json_list(&mut out, src);
        }
        if let Some(thumbprint) = &self.cnf {
            out.push(',');
            member(&mut out, "cnf");
            out.push('{');
            member(&mut out, "x5t#S256");
            push_json_str(&mut out, &BASE64URL.encode(thumbprint));
            out.push('}');
        }
        out.push('}');
        out
    }
}

fn member(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

fn push_json_list(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, item);
    }
    out.push(']');
}

/// Writes `s` as a JSON string. Rust strings hold no lone surrogates, so the
/// result always meets the grant dialect.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Mints a grant: `{"alg":"HS256","typ":"jit-grant+jwt","kid":...}`,
/// the claims, and the HMAC-SHA256 of both under `key`.
pub fn mint(claims: &GrantClaims, key: &SigningKey) -> Result<String, MintError> {
    claims.validate()?;
    let mut header = String::from(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"#);
    push_json_str(&mut header, key.kid());
    header.push('}');
    let mut token = BASE64URL.encode(header);
    token.push('.');
    token.push_str(&BASE64URL.encode(claims.to_json()));
    let mut mac = key.mac();
    mac.update(token.as_bytes());
    let signature = BASE64URL.encode(mac.finalize().into_bytes());
    token.push('.');
    token.push_str(&signature);
    if token.len() > MAX_TOKEN_LEN {
        return Err(MintError::TooLong);
    }
    Ok(token)
}
