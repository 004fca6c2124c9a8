//! Verification: from token bytes to a [`VerifiedGrant`] (spec: "Claims",
//! checks 3 to 10 of "Outcomes").
//!
//! The decoded parts live in stack buffers; the one heap allocation is the
//! grant's own compact copy of the claims it needs (decoded strings and the
//! scope rules), built after the MAC has been checked. Only a
//! `VerifiedGrant` can be asked whether it allows a request, so nothing
//! unchecked can reach that question.

use core::net::IpAddr;

use hmac::Mac;

use crate::cidr::Cidr;
use crate::json::{self, Chars, Cursor, Token, Validated};
use crate::key::KeySet;
use crate::scope::{self, MAX_RULES};
use crate::token;
use crate::Outcome;

/// Allowed clock skew in seconds when none is configured.
pub const DEFAULT_LEEWAY: u64 = 30;

/// Longest grant lifetime (`exp - iat`) in seconds when none is configured.
pub const DEFAULT_MAX_TTL: u64 = 43_200;

/// Longest `sub`, in bytes.
pub const MAX_SUB_LEN: usize = 256;

/// Longest `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 128;

/// Checks grant tokens against a key set, an issuer and time bounds.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    keys: KeySet,
    leeway: u64,
    max_ttl: u64,
}

impl Verifier {
    /// A verifier with the default leeway and maximum lifetime.
    pub fn new(issuer: &str, keys: KeySet) -> Self {
        Verifier {
            issuer: issuer.to_owned(),
            keys,
            leeway: DEFAULT_LEEWAY,
            max_ttl: DEFAULT_MAX_TTL,
        }
    }

    /// Sets the allowed clock skew in seconds.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Sets the longest grant lifetime in seconds.
    pub fn with_max_ttl(mut self, seconds: u64) -> Self {
        self.max_ttl = seconds;
        self
    }

    /// The issuer grants must name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The accepted keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The allowed clock skew in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// The longest grant lifetime in seconds.
    pub fn max_ttl(&self) -> u64 {
        self.max_ttl
    }

    /// Verifies a token at time `now` (seconds since the Unix epoch):
    /// form, header, key, MAC, claims, issuer, time window and lifetime.
    /// Audience, revocation, source, identity and scope depend on the
    /// request and are checked by [`crate::decide`].
    pub fn verify(&self, token: &[u8], now: u64) -> Result<VerifiedGrant, Outcome> {
        let grant = self.verify_untimed(token)?;
        self.check_time(&grant, now)?;
        Ok(grant)
    }

    /// Checks 3 to 7 alone (form, header, key, MAC, claims, issuer), for a
    /// grant kept to be used later: a proxy holding synced grants keeps one
    /// that is not valid yet and runs [`Verifier::check_time`] on each use.
    pub fn verify_untimed(&self, token: &[u8]) -> Result<VerifiedGrant, Outcome> {
        let parts = token::split(token)?;
        // Form first (every part must decode), then the header; the claims
        // are only read once the MAC has been checked.
        if ![parts.header, parts.claims, parts.signature]
            .iter()
            .all(|p| token::is_decodable(p))
        {
            return Err(Outcome::GrantMalformed);
        }
        // Headers are small; a stack buffer covers every sensible one.
        let mut small = [0u8; 384];
        let mut large = Vec::new();
        let header_room = token::decoded_len(parts.header.len());
        let header_buf: &mut [u8] = if header_room <= small.len() {
            &mut small
        } else {
            large.resize(header_room, 0);
            &mut large
        };
        let header = token::decode_part(parts.header, header_buf)?;
        let mut claims_buf = vec![0u8; token::decoded_len(parts.claims.len())];
        let claims = token::decode_part(parts.claims, &mut claims_buf)?;
        // A MAC is 32 bytes: anything longer cannot match, and is refused as
        // a bad signature (it decodes, so it is well-formed).
        let mut sig_buf = [0u8; 48];
        let signature: &[u8] = if parts.signature.len() <= 64 {
            token::decode_part(parts.signature, &mut sig_buf)?
        } else {
            &[]
        };

        let key = token::select_key(header, &self.keys)?;
        let mut mac = key.mac();
        mac.update(parts.signing_input);
        // Constant-time comparison, from the MAC library.
        mac.verify_slice(signature).map_err(|_| Outcome::GrantBadSignature)?;

        let grant = VerifiedGrant::from_claims(claims)?;
        if grant.iss() != self.issuer {
            return Err(Outcome::GrantWrongIssuer);
        }
        Ok(grant)
    }

    /// The time checks alone (8 to 10), for a grant verified earlier and
    /// kept: a proxy that holds synced grants re-checks their window on
    /// every use without recomputing the MAC.
    pub fn check_time(&self, grant: &VerifiedGrant, now: u64) -> Result<(), Outcome> {
        let latest = now.saturating_add(self.leeway);
        if grant.nbf > latest || grant.iat > latest {
            return Err(Outcome::GrantNotYetValid);
        }
        if now >= grant.exp.saturating_add(self.leeway) {
            return Err(Outcome::GrantExpired);
        }
        if grant.exp.saturating_sub(grant.iat) > self.max_ttl {
            return Err(Outcome::GrantTtlTooLong);
        }
        Ok(())
    }
}

/// Offset and length of a decoded string in [`VerifiedGrant::text`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// A grant whose MAC, claims, issuer and time window have been checked.
///
/// The identity strings are stored decoded, back to back, in one `String`
/// (checked as UTF-8 once, so reading a claim is a slice); the scope rules
/// and source blocks sit in a compact length-prefixed form that matching
/// walks without parsing JSON again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGrant {
    text: String,
    data: Vec<u8>,
    iss: Span,
    sub: Span,
    aud: Span,
    jti: Span,
    req: Option<Span>,
    iat: u64,
    nbf: u64,
    exp: u64,
    scope_at: usize,
    src_at: Option<usize>,
    /// The `x5t#S256` of `cnf`: SHA-256 of the DER certificate the grant is
    /// bound to.
    cnf: Option<[u8; 32]>,
}

/// Raw (still escaped) claim values found in one pass over the claims.
#[derive(Default)]
struct RawClaims<'a> {
    iss: Option<&'a [u8]>,
    sub: Option<&'a [u8]>,
    aud: Option<&'a [u8]>,
    jti: Option<&'a [u8]>,
    req: Option<&'a [u8]>,
    iat: Option<u64>,
    nbf: Option<u64>,
    exp: Option<u64>,
    /// Position just inside the `[` of `scope`.
    scope: Option<usize>,
    /// Position just inside the `[` of `src`.
    src: Option<usize>,
    /// Position just inside the `{` of `cnf`.
    cnf: Option<usize>,
}

const MALFORMED: Outcome = Outcome::GrantMalformed;

fn string(t: Token<'_>) -> Result<&[u8], Outcome> {
    match t {
        Token::Str(raw) => Ok(raw),
        _ => Err(MALFORMED),
    }
}

fn time(t: Token<'_>) -> Result<u64, Outcome> {
    match t {
        Token::Num(raw) => json::parse_time_integer(raw).ok_or(MALFORMED),
        _ => Err(MALFORMED),
    }
}

impl VerifiedGrant {
    fn from_claims(claims: &[u8]) -> Result<Self, Outcome> {
        let claims = json::validate_object(claims).map_err(|_| MALFORMED)?;
        let raw = read_claims(claims)?;
        let (Some(iss), Some(sub), Some(aud), Some(jti)) = (raw.iss, raw.sub, raw.aud, raw.jti) else {
            return Err(MALFORMED);
        };
        let (Some(iat), Some(nbf), Some(exp), Some(scope_pos)) = (raw.iat, raw.nbf, raw.exp, raw.scope) else {
            return Err(MALFORMED);
        };
        if exp <= nbf {
            return Err(MALFORMED);
        }

        // Decoded text is never longer than its escaped form, so each
        // buffer is allocated once.
        let raw_len = iss.len() + sub.len() + aud.len() + jti.len() + raw.req.map_or(0, <[u8]>::len);
        let mut text = String::with_capacity(raw_len);
        let iss = push_text(&mut text, iss)?;
        let sub = push_text(&mut text, sub)?;
        let aud = push_text(&mut text, aud)?;
        let jti = push_text(&mut text, jti)?;
        let req = raw.req.map(|r| push_text(&mut text, r)).transpose()?;
        let mut data = Vec::with_capacity(claims.as_bytes().len().saturating_sub(raw_len) + 2 * MAX_RULES + 16);
        if sub.len == 0 || sub.len as usize > MAX_SUB_LEN || jti.len == 0 || jti.len as usize > MAX_JTI_LEN {
            return Err(MALFORMED);
        }
        let scope_at = data.len();
        compact_scope(claims, scope_pos, &mut data)?;
        let src_at = match raw.src {
            Some(pos) => {
                let at = data.len();
                compact_src(claims, pos, &mut data)?;
                Some(at)
            }
            None => None,
        };
        let cnf = raw.cnf.map(|pos| read_cnf(claims, pos)).transpose()?;
        Ok(VerifiedGrant {
            text,
            data,
            iss,
            sub,
            aud,
            jti,
            req,
            iat,
            nbf,
            exp,
            scope_at,
            src_at,
            cnf,
        })
    }

    fn text(&self, span: Span) -> &str {
        let start = span.start as usize;
        self.text.get(start..start + span.len as usize).unwrap_or("")
    }

    /// The issuer.
    pub fn iss(&self) -> &str {
        self.text(self.iss)
    }

    /// The identity the grant was issued to.
    pub fn sub(&self) -> &str {
        self.text(self.sub)
    }

    /// The protected resource the grant is for.
    pub fn aud(&self) -> &str {
        self.text(self.aud)
    }

    /// The grant id, the key of revocation.
    pub fn jti(&self) -> &str {
        self.text(self.jti)
    }

    /// The access-request id the grant came from, if any.
    pub fn req(&self) -> Option<&str> {
        self.req.map(|s| self.text(s))
    }

    /// Issued-at, seconds since the Unix epoch.
    pub fn iat(&self) -> u64 {
        self.iat
    }

    /// Not-before, seconds since the Unix epoch.
    pub fn nbf(&self) -> u64 {
        self.nbf
    }

    /// Expiry, seconds since the Unix epoch.
    pub fn exp(&self) -> u64 {
        self.exp
    }

    /// Whether the grant restricts client addresses (`src` present).
    pub fn has_source_restriction(&self) -> bool {
        self.src_at.is_some()
    }

    /// Whether a client address satisfies `src` (always true without `src`;
    /// never true for an unknown address when `src` is present).
    pub fn source_allowed(&self, source: Option<IpAddr>) -> bool {
        let Some(at) = self.src_at else {
            return true;
        };
        let Some(ip) = source else {
            return false;
        };
        let mut r = Compact::at(&self.data, at);
        let count = r.u16().unwrap_or(0);
        (0..count).any(|_| r.str().and_then(Cidr::parse).is_some_and(|cidr| cidr.contains(ip)))
    }

    /// The certificate thumbprint (`cnf.x5t#S256`, SHA-256 of the DER
    /// certificate) the grant is bound to, if any.
    pub fn bound_certificate(&self) -> Option<&[u8; 32]> {
        self.cnf.as_ref()
    }

    /// Whether the client certificate presented on the connection (its
    /// SHA-256 thumbprint) satisfies `cnf`: always true for an unbound
    /// grant, never true without a certificate for a bound one. The
    /// thumbprint is public, so a plain comparison is enough.
    pub fn device_allowed(&self, client_cert: Option<&[u8]>) -> bool {
        match (&self.cnf, client_cert) {
            (None, _) => true,
            (Some(bound), Some(presented)) => bound.as_slice() == presented,
            (Some(_), None) => false,
        }
    }

    /// Whether some scope rule allows `method` on `path`. `path` must have
    /// passed [`crate::path::check_request_path`].
    pub fn allows(&self, method: &[u8], path: &[u8]) -> bool {
        self.allowing_rule(method, path).is_some()
    }

    /// The index (from 0) of the first scope rule that allows `method` on
    /// `path`, if any: what a proxy counts allowed requests under.
    pub fn allowing_rule(&self, method: &[u8], path: &[u8]) -> Option<usize> {
        self.rules().position(|rule| {
            let mut r = rule;
            let methods = r.u16().unwrap_or(0);
            let mut method_ok = false;
            for _ in 0..methods {
                method_ok |= r.bytes().is_some_and(|m| scope::method_matches(m, method));
            }
            let paths = r.u16().unwrap_or(0);
            let mut path_ok = false;
            for _ in 0..paths {
                path_ok |= method_ok && r.bytes().is_some_and(|p| scope::pattern_matches(p, path));
            }
            method_ok && path_ok
        })
    }

    /// The scope rules, decoded, for display and audit.
    pub fn scope(&self) -> Vec<scope::ScopeRule> {
        self.rules()
            .map(|mut r| {
                let mut list = || {
                    let n = r.u16().unwrap_or(0);
                    (0..n).filter_map(|_| r.str().map(str::to_owned)).collect::<Vec<_>>()
                };
                let methods = list();
                let paths = list();
                scope::ScopeRule { methods, paths }
            })
            .collect()
    }

    /// Iterates over readers positioned at the start of each rule.
    fn rules(&self) -> impl Iterator<Item = Compact<'_>> {
        let mut r = Compact::at(&self.data, self.scope_at);
        let count = r.u16().unwrap_or(0);
        (0..count).map_while(move |_| {
            let start = r.clone();
            for _ in 0..2 {
                let n = r.u16()?;
                for _ in 0..n {
                    r.bytes()?;
                }
            }
            Some(start)
        })
    }
}

fn read_claims(claims: Validated<'_>) -> Result<RawClaims<'_>, Outcome> {
    let mut c = Cursor::new(claims);
    if c.token() != Some(Token::Object) {
        return Err(MALFORMED);
    }
    let mut raw = RawClaims::default();
    while let Some(name) = c.next_key() {
        let value = c.token().ok_or(MALFORMED)?;
        // Names are nearly always plain; decode only the rare escaped one.
        let mut decoded = [0u8; 8];
        let name: &[u8] = if name.contains(&b'\\') {
            let mut len = 0;
            for ch in json::Chars::new(name) {
                match (decoded.get_mut(len), u8::try_from(u32::from(ch))) {
                    (Some(slot), Ok(b)) => *slot = b,
                    _ => {
                        len = 0;
                        break;
                    }
                }
                len += 1;
            }
            decoded.get(..len).unwrap_or(&[])
        } else {
            name
        };
        match name {
            b"iss" => raw.iss = Some(string(value)?),
            b"sub" => raw.sub = Some(string(value)?),
            b"aud" => raw.aud = Some(string(value)?),
            b"jti" => raw.jti = Some(string(value)?),
            b"req" => raw.req = Some(string(value)?),
            b"iat" => raw.iat = Some(time(value)?),
            b"nbf" => raw.nbf = Some(time(value)?),
            b"exp" => raw.exp = Some(time(value)?),
            b"cnf" => {
                if value != Token::Object {
                    return Err(MALFORMED);
                }
                raw.cnf = Some(c.position());
            }
            b"scope" | b"src" => {
                if value != Token::Array {
                    return Err(MALFORMED);
                }
                if name == b"scope" {
                    raw.scope = Some(c.position());
                } else {
                    raw.src = Some(c.position());
                }
            }
            _ => {}
        }
        c.skip_rest(value).ok_or(MALFORMED)?;
    }
    Ok(raw)
}

fn to_u16(n: usize) -> Result<[u8; 2], Outcome> {
    u16::try_from(n).map(u16::to_le_bytes).map_err(|_| MALFORMED)
}

/// Appends the decoded text of a raw JSON string.
/// Appends a decoded claim string to the grant's text.
fn push_text(text: &mut String, raw: &[u8]) -> Result<Span, Outcome> {
    let start = text.len();
    if raw.contains(&b'\\') {
        text.extend(Chars::new(raw));
    } else {
        text.push_str(core::str::from_utf8(raw).map_err(|_| MALFORMED)?);
    }
    let as_u32 = |n: usize| u32::try_from(n).map_err(|_| MALFORMED);
    Ok(Span {
        start: as_u32(start)?,
        len: as_u32(text.len() - start)?,
    })
}

/// Appends a decoded string to the compact rule data.
fn push_str(data: &mut Vec<u8>, raw: &[u8]) -> Result<Span, Outcome> {
    let start = data.len();
    if raw.contains(&b'\\') {
        let mut utf8 = [0u8; 4];
        for ch in Chars::new(raw) {
            data.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        }
    } else {
        data.extend_from_slice(raw);
    }
    let as_u32 = |n: usize| u32::try_from(n).map_err(|_| MALFORMED);
    Ok(Span {
        start: as_u32(start)?,
        len: as_u32(data.len() - start)?,
    })
}

/// Appends a length-prefixed decoded string.
fn push_prefixed(data: &mut Vec<u8>, raw: &[u8]) -> Result<(), Outcome> {
    let at = data.len();
    data.extend_from_slice(&[0, 0]);
    let span = push_str(data, raw)?;
    let len = to_u16(span.len as usize)?;
    data.get_mut(at..at + 2).ok_or(MALFORMED)?.copy_from_slice(&len);
    Ok(())
}

/// Reads a JSON array of strings at the cursor (just past `[`), appending
/// `count` then each string; `check` validates each decoded entry.
fn compact_strings(c: &mut Cursor<'_>, data: &mut Vec<u8>, check: fn(&[u8]) -> bool) -> Result<usize, Outcome> {
    let count_at = data.len();
    data.extend_from_slice(&[0, 0]);
    let mut count = 0;
    while c.next_element() {
        let raw = string(c.token().ok_or(MALFORMED)?)?;
        let entry_at = data.len() + 2;
        push_prefixed(data, raw)?;
        if !check(data.get(entry_at..).ok_or(MALFORMED)?) {
            return Err(MALFORMED);
        }
        count += 1;
    }
    data.get_mut(count_at..count_at + 2)
        .ok_or(MALFORMED)?
        .copy_from_slice(&to_u16(count)?);
    Ok(count)
}

fn compact_scope(claims: Validated<'_>, pos: usize, data: &mut Vec<u8>) -> Result<(), Outcome> {
    let mut c = Cursor::at(claims, pos);
    let count_at = data.len();
    data.extend_from_slice(&[0, 0]);
    let mut rules = 0;
    while c.next_element() {
        rules += 1;
        if rules > MAX_RULES || c.token() != Some(Token::Object) {
            return Err(MALFORMED);
        }
        // Members may come in any order, but the compact form puts methods
        // first: remember where each list starts and read them afterwards.
        let (mut methods, mut paths) = (None::<usize>, None::<usize>);
        while let Some(name) = c.next_key() {
            let value = c.token().ok_or(MALFORMED)?;
            if json::raw_eq_str(name, "methods") || json::raw_eq_str(name, "paths") {
                if value != Token::Array {
                    return Err(MALFORMED);
                }
                if json::raw_eq_str(name, "methods") {
                    methods = Some(c.position());
                } else {
                    paths = Some(c.position());
                }
            }
            c.skip_rest(value).ok_or(MALFORMED)?;
        }
        let (Some(mpos), Some(ppos)) = (methods, paths) else {
            return Err(MALFORMED);
        };
        let mut mc = Cursor::at(claims, mpos);
        if compact_strings(&mut mc, data, scope::is_valid_method)? == 0 {
            return Err(MALFORMED);
        }
        let mut pc = Cursor::at(claims, ppos);
        if compact_strings(&mut pc, data, scope::is_valid_pattern)? == 0 {
            return Err(MALFORMED);
        }
    }
    if rules == 0 {
        return Err(MALFORMED);
    }
    data.get_mut(count_at..count_at + 2)
        .ok_or(MALFORMED)?
        .copy_from_slice(&to_u16(rules)?);
    Ok(())
}

/// Reads `cnf` (cursor just inside its `{`): exactly one member,
/// `x5t#S256`, a string of 43 base64url characters decoding to 32 bytes.
/// Anything else is malformed: a binding that cannot be checked must never
/// be ignored.
fn read_cnf(claims: Validated<'_>, pos: usize) -> Result<[u8; 32], Outcome> {
    let mut c = Cursor::at(claims, pos);
    let mut thumbprint = None;
    while let Some(name) = c.next_key() {
        let value = c.token().ok_or(MALFORMED)?;
        if thumbprint.is_some() || !json::raw_eq_str(name, "x5t#S256") {
            return Err(MALFORMED);
        }
        thumbprint = Some(decode_thumbprint(string(value)?)?);
    }
    thumbprint.ok_or(MALFORMED)
}

fn decode_thumbprint(raw: &[u8]) -> Result<[u8; 32], Outcome> {
    use base64::Engine;
    // 43 characters, whatever JSON escapes spelled them.
    let mut text = [0u8; 43];
    let mut len = 0;
    for ch in Chars::new(raw) {
        let slot = text.get_mut(len).ok_or(MALFORMED)?;
        *slot = u8::try_from(u32::from(ch)).map_err(|_| MALFORMED)?;
        len += 1;
    }
    if len != text.len() {
        return Err(MALFORMED);
    }
    let mut out = [0u8; 32];
    match crate::token::BASE64URL.decode_slice(text, &mut out) {
        Ok(32) => Ok(out),
        _ => Err(MALFORMED),
    }
}

fn compact_src(claims: Validated<'_>, pos: usize, data: &mut Vec<u8>) -> Result<(), Outcome> {
    let mut c = Cursor::at(claims, pos);
    let is_cidr = |b: &[u8]| core::str::from_utf8(b).ok().and_then(Cidr::parse).is_some();
    compact_strings(&mut c, data, is_cidr).map(|_| ())
}

/// Reader over the compact form; `None` on anything unexpected.
#[derive(Clone)]
struct Compact<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Compact<'a> {
    fn at(s: &'a [u8], pos: usize) -> Self {
        Compact { s, pos }
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.s.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.u16()?);
        let b = self.s.get(self.pos..self.pos + len)?;
        self.pos += len;
        Some(b)
    }

    fn str(&mut self) -> Option<&'a str> {
        core::str::from_utf8(self.bytes()?).ok()
    }
}
