//! Which protected resource a request belongs to: by host and path prefix,
//! first match in configuration order.
//!
//! Routing compares the path after decoding percent-encoded *unreserved*
//! characters (RFC 3986 §2.3), which upstreams treat as identical to the
//! characters themselves; otherwise `/%70ayments` could slip past a
//! `/payments` prefix when unmatched traffic is allowed.

use crate::config::{HostPattern, Resource};

/// The index of the first resource that `authority` and `path` belong to.
pub fn route(resources: &[Resource], authority: &[u8], path: &[u8]) -> Option<usize> {
    let host = normalize_host(authority);
    resources
        .iter()
        .position(|r| r.hosts.iter().any(|h| host_matches(h, host)) && prefix_matches(r.path_prefix.as_bytes(), path))
}

/// Host without port and trailing dot. Lower-casing happens in
/// [`host_matches`], which compares case-insensitively.
fn normalize_host(authority: &[u8]) -> &[u8] {
    let host = if authority.first() == Some(&b'[') {
        // [v6]:port
        match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => authority.get(..colon).unwrap_or(authority),
            None => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

fn host_matches(pattern: &HostPattern, host: &[u8]) -> bool {
    match pattern {
        HostPattern::Any => true,
        HostPattern::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
        HostPattern::Suffix(s) => {
            host.len() > s.len()
                && host
                    .get(host.len() - s.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(s.as_bytes()))
        }
    }
}

/// Decodes `%XX` where it encodes an unreserved character; leaves every
/// other byte (and other escapes) as it stands.
fn unreserved_decoded(path: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let b = *path.get(i)?;
        if b == b'%' {
            let hex = |k: usize| path.get(k).and_then(|c| (*c as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                let c = u8::try_from(hi * 16 + lo).unwrap_or(0);
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    i += 3;
                    return Some(c);
                }
            }
        }
        i += 1;
        Some(b)
    })
}

/// Segment-aligned prefix match: `/v1` matches `/v1` and `/v1/x`, not `/v1x`.
fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    if prefix == b"/" {
        return true;
    }
    let path = path.split(|&b| b == b'?').next().unwrap_or(path);
    let mut decoded = unreserved_decoded(path);
    for &p in prefix {
        if decoded.next() != Some(p) {
            return false;
        }
    }
    matches!(decoded.next(), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str, hosts: Vec<HostPattern>, prefix: &str) -> Resource {
        Resource {
            id: id.into(),
            hosts,
            path_prefix: prefix.into(),
        }
    }

    #[test]
    fn first_matching_resource_wins() {
        let rs = vec![
            res("pay", vec![HostPattern::Exact("pay.example.com".into())], "/v1"),
            res("wild", vec![HostPattern::Suffix(".example.com".into())], "/"),
            res("any", vec![HostPattern::Any], "/admin"),
        ];
        assert_eq!(route(&rs, b"pay.example.com", b"/v1/x"), Some(0));
        assert_eq!(route(&rs, b"PAY.example.com.:8443", b"/v1?x"), Some(0));
        assert_eq!(route(&rs, b"pay.example.com", b"/v1x"), Some(1));
        assert_eq!(route(&rs, b"a.b.example.com", b"/z"), Some(1));
        assert_eq!(route(&rs, b"example.com", b"/z"), None);
        assert_eq!(route(&rs, b"other", b"/admin/users"), Some(2));
        assert_eq!(route(&rs, b"other", b"/z"), None);
    }

    #[test]
    fn encoded_unreserved_characters_cannot_dodge_a_prefix() {
        let rs = vec![res("pay", vec![HostPattern::Any], "/payments")];
        assert_eq!(route(&rs, b"h", b"/%70ayments/x"), Some(0));
        assert_eq!(route(&rs, b"h", b"/%70AYMENTS/x"), None);
        assert_eq!(route(&rs, b"h", b"/pay%6dents"), Some(0));
        assert_eq!(route(&rs, b"h", b"/pay%2"), None);
    }

    #[test]
    fn ipv6_authorities_lose_only_their_port() {
        let rs = vec![res("v6", vec![HostPattern::Exact("[::1]".into())], "/")];
        assert_eq!(route(&rs, b"[::1]:10000", b"/"), Some(0));
        assert_eq!(route(&rs, b"[::1]", b"/"), Some(0));
    }
}
