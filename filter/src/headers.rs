//! The request's header map as one borrowed buffer.
//!
//! The host hands over all headers (pseudo-headers included) in its
//! serialized map format. The SDK's own decoder turns every name into a
//! `String` and panics on invalid UTF-8; this one keeps names and values as
//! byte ranges into the host's buffer, checks every length, and costs two
//! allocations per request whatever the header count.

use core::ops::Range;

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

#[cfg(test)]
mod tests {
    use super::*;

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
