//! Which protected resource a request belongs to: by host and path prefix,
//! first match in configuration order.
//!
//! Routing compares the path after decoding percent-encoded *unreserved*
//! characters (RFC 3986 §2.3), which upstreams treat as identical to the
//! characters themselves; otherwise `/%70ayments` could slip past a
//! `/payments` prefix when unmatched traffic is allowed.
//!
//! An authority that is not a plain `host[:port]` (userinfo, an empty
//! label, two ports, two hosts joined by a comma) cannot be routed: an
//! upstream may read a different host from it than the filter would, so
//! the request is refused whatever `unmatched` says.

use crate::config::{HostPattern, Resource};

/// The request's authority is not a host name or IP literal with an
/// optional port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityRejected;

/// The index of the first resource that `authority` and `path` belong to,
/// or `None` if none; an error if the authority cannot be parsed.
pub fn route(resources: &[Resource], authority: &[u8], path: &[u8]) -> Result<Option<usize>, AuthorityRejected> {
    let host = host_of(authority).ok_or(AuthorityRejected)?;
    Ok(resources
        .iter()
        .position(|r| r.hosts.iter().any(|h| host_matches(h, host)) && prefix_matches(r.path_prefix.as_bytes(), path)))
}

/// Host without port and trailing dot, or `None` unless the authority is
/// `reg-name[:port]` or `[v6]:port` with non-empty labels of letters,
/// digits, `-` and `_`, at most one trailing dot and a decimal port.
/// Lower-casing happens in [`host_matches`], which compares
/// case-insensitively.
fn host_of(authority: &[u8]) -> Option<&[u8]> {
    let (host, port) = if authority.first() == Some(&b'[') {
        let end = authority.iter().position(|&b| b == b']')?;
        let literal = authority.get(1..end)?;
        let valid = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !valid {
            return None;
        }
        let rest = authority.get(end + 1..)?;
        let port = match rest {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return None,
        };
        (authority.get(..=end)?, port)
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(colon) => (authority.get(..colon)?, Some(authority.get(colon + 1..)?)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        let digits = !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
        if !digits {
            return None;
        }
    }
    if host.first() == Some(&b'[') {
        return Some(host);
    }
    let host = host.strip_suffix(b".").unwrap_or(host);
    let label_ok = |l: &[u8]| !l.is_empty() && l.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    host.split(|&b| b == b'.').all(label_ok).then_some(host)
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
        assert_eq!(route(&rs, b"pay.example.com", b"/v1/x"), Ok(Some(0)));
        assert_eq!(route(&rs, b"PAY.example.com.:8443", b"/v1?x"), Ok(Some(0)));
        assert_eq!(route(&rs, b"pay.example.com", b"/v1x"), Ok(Some(1)));
        assert_eq!(route(&rs, b"a.b.example.com", b"/z"), Ok(Some(1)));
        assert_eq!(route(&rs, b"example.com", b"/z"), Ok(None));
        assert_eq!(route(&rs, b"other", b"/admin/users"), Ok(Some(2)));
        assert_eq!(route(&rs, b"other", b"/z"), Ok(None));
    }

    #[test]
    fn unparsable_authorities_are_rejected_not_routed() {
        let rs = vec![res("pay", vec![HostPattern::Exact("payments.example".into())], "/")];
        for bad in [
            &b"payments.example.."[..],
            b"alice@payments.example",
            b"payments.example:443:443",
            b"payments.example,hr.example",
            b"payments.example:",
            b"payments.example:44x",
            b"payments.example:123456",
            b".payments.example",
            b"payments..example",
            b"payments.example ",
            b"pay%6dents.example",
            b"",
            b".",
            b"[::1",
            b"[::1]x",
            b"[]",
            b"[::1%25eth0]",
            b"[::1]:",
        ] {
            assert_eq!(
                route(&rs, bad, b"/"),
                Err(AuthorityRejected),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [&b"payments.example"[..], b"payments.example.", b"Payments.Example:443"] {
            assert_eq!(route(&rs, good, b"/"), Ok(Some(0)));
        }
        assert_eq!(route(&rs, b"svc_1.internal:8080", b"/"), Ok(None));
        assert_eq!(route(&rs, b"10.0.0.1:80", b"/"), Ok(None));
    }

    #[test]
    fn encoded_unreserved_characters_cannot_dodge_a_prefix() {
        let rs = vec![res("pay", vec![HostPattern::Any], "/payments")];
        assert_eq!(route(&rs, b"h", b"/%70ayments/x"), Ok(Some(0)));
        assert_eq!(route(&rs, b"h", b"/%70AYMENTS/x"), Ok(None));
        assert_eq!(route(&rs, b"h", b"/pay%6dents"), Ok(Some(0)));
        assert_eq!(route(&rs, b"h", b"/pay%2"), Ok(None));
    }

    #[test]
    fn ipv6_authorities_lose_only_their_port() {
        let rs = vec![res("v6", vec![HostPattern::Exact("[::1]".into())], "/")];
        assert_eq!(route(&rs, b"[::1]:10000", b"/"), Ok(Some(0)));
        assert_eq!(route(&rs, b"[::1]", b"/"), Ok(Some(0)));
    }
}
