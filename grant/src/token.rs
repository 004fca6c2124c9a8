//! The token's form and header (spec: "Form" and "Header").
//!
//! Splits a token into its three parts, checks the alphabet and length
//! limits, decodes the parts into caller-provided buffers and reads the
//! header just far enough to choose the key. Nothing here is trusted: the
//! MAC is checked by [`crate::verify`] before any claim is read.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use crate::json::{self, Cursor, Token};
use crate::key::{is_valid_kid, KeySet, SigningKey, MAX_KID_LEN};
use crate::Outcome;

/// Longest token accepted, checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Largest decoded part: three bytes for every four characters.
pub const MAX_PART_LEN: usize = MAX_TOKEN_LEN / 4 * 3;

/// Unpadded URL-safe base64. The spec's form rules (alphabet, no padding)
/// are checked explicitly by [`split`]; the engine decodes, and refuses a
/// last character whose unused bits are set: such a part is another
/// spelling of the same bytes, which no encoder writes, and a token must
/// have one spelling (caches and logs key on its bytes). RFC 4648 3.5
/// allows this refusal; the spec's "form, base64url" covers it.
pub(crate) const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A token split into its three base64url parts, form-checked, borrowing
/// from the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'t> {
    /// `BASE64URL(header) "." BASE64URL(claims)`: the bytes the MAC covers.
    pub signing_input: &'t [u8],
    /// The encoded header.
    pub header: &'t [u8],
    /// The encoded claims.
    pub claims: &'t [u8],
    /// The encoded MAC.
    pub signature: &'t [u8],
}

/// What a token byte is: in the base64url alphabet, the part separator, or
/// neither. A table lets [`split`] check the form in one branch-light pass.
// Indexing runs at compile time only: a bad index fails the build.
#[allow(clippy::indexing_slicing)]
const CLASS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut b: u8 = 0;
    loop {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            t[b as usize] = ALPHABET;
        }
        if b == b'.' {
            t[b as usize] = DOT;
        }
        if b == u8::MAX {
            break;
        }
        b += 1;
    }
    t
};
const INVALID: u8 = 0;
const ALPHABET: u8 = 1;
const DOT: u8 = 2;

/// Checks the token's form: length, three parts, base64url alphabet.
pub(crate) fn split(token: &[u8]) -> Result<Parts<'_>, Outcome> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Outcome::GrantMalformed);
    }
    // One pass over the token: any byte outside the alphabet, and where the
    // first two dots are (a third makes the count wrong).
    let (mut dots, mut first, mut second, mut invalid) = (0usize, 0usize, 0usize, false);
    for (i, &b) in token.iter().enumerate() {
        let class = CLASS.get(usize::from(b)).copied().unwrap_or(INVALID);
        invalid |= class == INVALID;
        if class == DOT {
            match dots {
                0 => first = i,
                1 => second = i,
                _ => {}
            }
            dots += 1;
        }
    }
    if invalid || dots != 2 {
        return Err(Outcome::GrantMalformed);
    }
    let header = token.get(..first).ok_or(Outcome::GrantMalformed)?;
    let claims = token.get(first + 1..second).ok_or(Outcome::GrantMalformed)?;
    let signature = token.get(second + 1..).ok_or(Outcome::GrantMalformed)?;
    let signing_input = token.get(..second).ok_or(Outcome::GrantMalformed)?;
    Ok(Parts {
        signing_input,
        header,
        claims,
        signature,
    })
}

/// Decodes one part into `out` (at least [`decoded_len`] bytes long),
/// returning the decoded bytes.
pub(crate) fn decode_part<'b>(part: &[u8], out: &'b mut [u8]) -> Result<&'b [u8], Outcome> {
    let n = BASE64URL.decode_slice(part, out).map_err(|_| Outcome::GrantMalformed)?;
    out.get(..n).ok_or(Outcome::GrantMalformed)
}

/// Room needed to decode a part of `len` characters.
pub(crate) fn decoded_len(len: usize) -> usize {
    len.div_ceil(4) * 3
}

/// Whether a part in the base64url alphabet can be decoded at all: unpadded
/// base64 never leaves a single character in the last group.
pub(crate) fn is_decodable(part: &[u8]) -> bool {
    part.len() % 4 != 1
}

/// Reads a decoded header: checks `alg`, `typ` and `crit`, then finds the
/// key named by `kid`.
pub(crate) fn select_key<'k>(header: &[u8], keys: &'k KeySet) -> Result<&'k SigningKey, Outcome> {
    let header = json::validate_object(header).map_err(|_| Outcome::GrantMalformed)?;
    let mut cursor = Cursor::new(header);
    if cursor.token() != Some(Token::Object) {
        return Err(Outcome::GrantMalformed);
    }
    let (mut alg_ok, mut typ_ok, mut crit) = (false, false, false);
    let mut kid: Option<&[u8]> = None;
    while let Some(name) = cursor.next_key() {
        let value = cursor.token().ok_or(Outcome::GrantMalformed)?;
        match value {
            Token::Str(v) if json::raw_eq_str(name, "alg") => alg_ok = json::raw_eq_str(v, "HS256"),
            Token::Str(v) if json::raw_eq_str(name, "typ") => typ_ok = json::raw_eq_str(v, "jit-grant+jwt"),
            Token::Str(v) if json::raw_eq_str(name, "kid") => kid = Some(v),
            _ if json::raw_eq_str(name, "crit") => crit = true,
            _ => {}
        }
        cursor.skip_rest(value).ok_or(Outcome::GrantMalformed)?;
    }
    if !alg_ok || !typ_ok || crit {
        return Err(Outcome::GrantUnsupported);
    }
    let raw_kid = kid.ok_or(Outcome::GrantUnknownKey)?;
    // A kid may legally be spelled with escapes; decode it into a small
    // buffer so the lookup compares what the JSON means.
    let mut buf = [0u8; MAX_KID_LEN];
    let mut len = 0;
    for c in json::Chars::new(raw_kid) {
        let slot = buf.get_mut(len).ok_or(Outcome::GrantUnknownKey)?;
        *slot = u8::try_from(u32::from(c))
            .ok()
            .filter(u8::is_ascii)
            .ok_or(Outcome::GrantUnknownKey)?;
        len += 1;
    }
    let kid = buf.get(..len).ok_or(Outcome::GrantUnknownKey)?;
    if !is_valid_kid(kid) {
        return Err(Outcome::GrantUnknownKey);
    }
    keys.get(kid).ok_or(Outcome::GrantUnknownKey)
}

/// A token's header and claims, decoded but NOT verified: for people
/// inspecting a token, never for access decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header JSON (invalid UTF-8 replaced).
    pub header_json: String,
    /// The claims JSON (invalid UTF-8 replaced).
    pub claims_json: String,
    /// Length of the decoded MAC in bytes.
    pub signature_len: usize,
}

/// Decodes a token without verifying it.
pub fn decode_unverified(token: &str) -> Result<Unverified, Outcome> {
    let parts = split(token.trim().as_bytes())?;
    let mut buf = vec![0u8; MAX_PART_LEN];
    let header_json = String::from_utf8_lossy(decode_part(parts.header, &mut buf)?).into_owned();
    let claims_json = String::from_utf8_lossy(decode_part(parts.claims, &mut buf)?).into_owned();
    let signature_len = decode_part(parts.signature, &mut buf)?.len();
    Ok(Unverified {
        header_json,
        claims_json,
        signature_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_three_parts_in_the_alphabet() {
        assert!(split(b"a.b.c").is_ok());
        assert!(split(b"a.b.").is_ok());
        assert_eq!(split(b"a.b").err(), Some(Outcome::GrantMalformed));
        assert_eq!(split(b"a.b.c.d").err(), Some(Outcome::GrantMalformed));
        assert_eq!(split(b"a.b.c=").err(), Some(Outcome::GrantMalformed));
        assert_eq!(split(b"a+.b.c").err(), Some(Outcome::GrantMalformed));
        assert_eq!(split(b"a/.b.c").err(), Some(Outcome::GrantMalformed));
        assert_eq!(split(b"a .b.c").err(), Some(Outcome::GrantMalformed));
        assert_eq!(split(&[b'a'; MAX_TOKEN_LEN + 1]).err(), Some(Outcome::GrantMalformed));
    }

    #[test]
    fn header_needs_hs256_typ_and_no_crit() {
        let mut keys = KeySet::new();
        keys.insert("k1", &[1; 32]).unwrap();
        let sel = |h: &str| select_key(h.as_bytes(), &keys).map(|k| k.kid().to_owned());
        assert_eq!(
            sel(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1"}"#),
            Ok("k1".into())
        );
        assert_eq!(
            sel(r#"{"alg":"HS\u0032\u00356","typ":"jit-grant+jwt","kid":"k\u0031"}"#),
            Ok("k1".into())
        );
        assert_eq!(
            sel(r#"{"alg":"none","typ":"jit-grant+jwt","kid":"k1"}"#),
            Err(Outcome::GrantUnsupported)
        );
        assert_eq!(
            sel(r#"{"alg":["HS256"],"typ":"jit-grant+jwt","kid":"k1"}"#),
            Err(Outcome::GrantUnsupported)
        );
        assert_eq!(
            sel(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1","crit":[]}"#),
            Err(Outcome::GrantUnsupported)
        );
        assert_eq!(
            sel(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"\u00e9"}"#),
            Err(Outcome::GrantUnknownKey)
        );
        assert_eq!(
            sel(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":""}"#),
            Err(Outcome::GrantUnknownKey)
        );
        assert_eq!(
            sel(r#"{"alg":"HS256","typ":"jit-grant+jwt","kid":"k1","kid":"k1"}"#),
            Err(Outcome::GrantMalformed)
        );
    }
}
