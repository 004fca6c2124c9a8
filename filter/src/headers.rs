//! The request's header map as one borrowed buffer, and the encoding of
//! the identity header values the filter adds.
//!
//! The host hands over all headers (pseudo-headers included) in its
//! serialized map format. The SDK's own decoder turns every name into a
//! `String` and panics on invalid UTF-8; this one keeps names and values as
//! byte ranges into the host's buffer, checks every length, and costs two
//! allocations per request whatever the header count.

use core::ops::Range;
use std::borrow::Cow;

/// Most headers considered; a larger map is treated as unreadable (deny).
pub const MAX_HEADERS: usize = 1024;

/// Headers in host order, names lower case as the host provides them.
#[derive(Debug, Default)]
pub struct HeaderMap {
    buf: Vec<u8>,
    entries: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderMap {
    /// Decodes the proxy-wasm serialized map: a `u32` count, `count` pairs
    /// of `u32` lengths, then each name and value followed by a NUL.
    /// `None` if the buffer is not in that format.
    pub fn from_serialized(buf: Vec<u8>) -> Option<HeaderMap> {
        if buf.is_empty() {
            return Some(HeaderMap::default());
        }
        let u32_at = |at: usize| -> Option<usize> {
            let b = buf.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]) as usize)
        };
        let count = u32_at(0)?;
        if count > MAX_HEADERS {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        let mut p = 4usize.checked_add(count.checked_mul(8)?)?;
        for n in 0..count {
            let name_len = u32_at(4 + n * 8)?;
            let value_len = u32_at(8 + n * 8)?;
            let name = p..p.checked_add(name_len)?;
            p = name.end.checked_add(1)?;
            let value = p..p.checked_add(value_len)?;
            p = value.end.checked_add(1)?;
            if p > buf.len() {
                return None;
            }
            entries.push((name, value));
        }
        Some(HeaderMap { buf, entries })
    }

    /// A map from pairs, for tests and hosts without the serialized form.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> HeaderMap {
        let mut map = HeaderMap::default();
        for (n, v) in pairs {
            let start = map.buf.len();
            map.buf.extend_from_slice(n.as_ref());
            let mid = map.buf.len();
            map.buf.extend_from_slice(v.as_ref());
            map.entries.push((start..mid, mid..map.buf.len()));
        }
        map
    }

    /// All `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entries.iter().map(|(n, v)| {
            (
                self.buf.get(n.clone()).unwrap_or(&[]),
                self.buf.get(v.clone()).unwrap_or(&[]),
            )
        })
    }

    /// Every value of `name` (lower case).
    pub fn all<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of `name` if it appears exactly once.
    pub fn single(&self, name: &[u8]) -> Option<&[u8]> {
        let mut found = None;
        for (n, v) in self.iter() {
            if n == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
        found
    }
}

/// Whether `value[at]` starts a C1 control character (U+0080 to U+009F,
/// UTF-8 `C2 80` to `C2 9F`).
fn c1_at(value: &[u8], at: usize) -> bool {
    value.get(at) == Some(&0xC2) && value.get(at + 1).is_some_and(|b| (0x80..=0x9F).contains(b))
}

/// Percent-encodes what an upstream could read differently from what the
/// grant says: C0 and C1 control characters (U+0085 is a line break to some
/// parsers), DEL, `%` (so the encoding stays reversible) and leading or
/// trailing spaces (which HTTP parsers trim, so ` alice` would arrive as
/// `alice`). Borrows the value when there is nothing to encode (the usual
/// case).
pub fn header_safe(value: &[u8]) -> Cow<'_, [u8]> {
    // Branch-free scan: claims are short and nearly always plain. `C2` also
    // starts printable Latin-1 characters; those take the slow path and
    // come out unchanged.
    let edges = value.first() == Some(&b' ') || value.last() == Some(&b' ');
    let needs_encoding = value.iter().fold(edges, |acc, &b| {
        acc | (b < 0x20) | (b == 0x7F) | (b == b'%') | (b == 0xC2)
    });
    if !needs_encoding {
        return Cow::Borrowed(value);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let lead = value.iter().take_while(|&&b| b == b' ').count();
    let trail = value.len() - value.iter().rev().take_while(|&&b| b == b' ').count();
    let mut out = Vec::with_capacity(value.len() + 8);
    let hex = |n: u8| HEX.get(usize::from(n & 0xF)).copied().unwrap_or(b'0');
    let encode = |out: &mut Vec<u8>, b: u8| out.extend_from_slice(&[b'%', hex(b >> 4), hex(b)]);
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if c1_at(value, i) {
            encode(&mut out, b);
            encode(&mut out, value.get(i + 1).copied().unwrap_or(0));
            i += 2;
            continue;
        }
        if b < 0x20 || b == 0x7F || b == b'%' || (b == b' ' && (i < lead || i >= trail)) {
            encode(&mut out, b);
        } else {
            out.push(b);
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_claims_cannot_break_header_lines() {
        assert!(matches!(header_safe(b"alice"), Cow::Borrowed(b"alice")));
        assert_eq!(header_safe(b"a\r\nx-evil: 1").as_ref(), b"a%0D%0Ax-evil: 1");
        assert_eq!(header_safe(b"50%").as_ref(), b"50%25");
    }

    #[test]
    fn c1_controls_and_edge_spaces_are_encoded_like_c0() {
        // U+0085 (NEL) is a line break to some parsers; U+009F the last C1.
        assert_eq!(header_safe("a\u{85}b".as_bytes()).as_ref(), b"a%C2%85b");
        assert_eq!(header_safe("\u{9f}".as_bytes()).as_ref(), b"%C2%9F");
        // Leading and trailing spaces would be trimmed upstream.
        assert_eq!(header_safe(b" alice ").as_ref(), b"%20alice%20");
        assert_eq!(header_safe(b"  ").as_ref(), b"%20%20");
        // Inner spaces and printable Latin-1 (also starting with C2) stay.
        assert_eq!(
            header_safe("Al ice \u{a9}".as_bytes()).as_ref(),
            "Al ice \u{a9}".as_bytes()
        );
        assert_eq!(header_safe("\u{a0}".as_bytes()).as_ref(), "\u{a0}".as_bytes());
        // A lone C2 at the end is not a C1 character.
        assert_eq!(header_safe(b"x\xC2").as_ref(), b"x\xC2");
    }

    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend_from_slice(n);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_non_utf8_names_and_values() {
        let buf = serialize(&[(b":path", b"/x"), (b"x-\xff", b"\xfe\x00v"), (b"a", b"1"), (b"a", b"2")]);
        let map = HeaderMap::from_serialized(buf).unwrap();
        assert_eq!(map.single(b":path"), Some(&b"/x"[..]));
        assert_eq!(map.single(b"x-\xff"), Some(&b"\xfe\x00v"[..]));
        assert_eq!(map.single(b"a"), None);
        assert_eq!(map.all(b"a").count(), 2);
    }

    #[test]
    fn truncated_or_lying_buffers_are_refused_without_panic() {
        let buf = serialize(&[(b"name", b"value")]);
        for cut in 1..buf.len() {
            assert!(HeaderMap::from_serialized(buf[..cut].to_vec()).is_none(), "cut {cut}");
        }
        let mut lying = buf.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::from_serialized(lying).is_none());
        assert!(HeaderMap::from_serialized(u32::MAX.to_le_bytes().to_vec()).is_none());
        assert_eq!(HeaderMap::from_serialized(Vec::new()).unwrap().iter().count(), 0);
    }
}
