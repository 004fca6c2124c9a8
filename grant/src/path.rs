//! Request paths the verifier refuses outright (spec: "Request paths the
//! verifier refuses outright").
//!
//! Matching works on the path exactly as received, undecoded. That is only
//! safe if no two spellings of a path can mean different things to the
//! proxy and the upstream, so every form that upstreams are known to
//! interpret differently (dot segments, encoded separators, `..;` as Tomcat
//! reads it, empty segments) is refused before any matching.

/// A request path (without its query) that passed
/// [`check_request_path`]: only this type can be matched against a scope,
/// so an unchecked path cannot reach a scope rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedPath<'a>(&'a [u8]);

impl<'a> CheckedPath<'a> {
    /// The path's bytes, without the query.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// The path is refused (outcome `path_rejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request path is refused")]
pub struct PathRejected;

/// Splits off the query and checks the path part.
///
/// Returns the path without its query (from the first `?`), or
/// [`PathRejected`] when the path must be refused.
pub fn check_request_path(raw: &[u8]) -> Result<CheckedPath<'_>, PathRejected> {
    check(raw).map(CheckedPath).map_err(|()| PathRejected)
}

fn check(raw: &[u8]) -> Result<&[u8], ()> {
    let path = match raw.iter().position(|&b| b == b'?') {
        Some(q) => raw.get(..q).ok_or(())?,
        None => raw,
    };
    if path.first() != Some(&b'/') {
        return Err(());
    }
    // One pass for the bytes refused anywhere and the escapes refused
    // anywhere; escapes are rare, so each is looked at only where a `%` is.
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'\\' | b'#' | 0 => return Err(()),
            b'%' if is_forbidden_escape(path.get(i + 1..i + 3)) => return Err(()),
            _ => {}
        }
    }
    if path == b"/" {
        return Ok(path);
    }
    for segment in path.get(1..).ok_or(())?.split(|&b| b == b'/') {
        if segment.is_empty() {
            return Err(());
        }
        // Each form below begins with a dot: any other segment is fine.
        if segment.first() != Some(&b'.') {
            continue;
        }
        // `..;x` is `..` to servlet containers, which drop path parameters.
        let before_params = segment.split(|&b| b == b';').next().unwrap_or(segment);
        if is_dot_segment(segment) || is_dot_segment(before_params) || is_dot_segment(before_encoded_semicolon(segment))
        {
            return Err(());
        }
    }
    Ok(path)
}

/// The part of a segment before an encoded `;` (`%3B`). Envoy forwards
/// `..%3B` untouched and a servlet upstream decodes it to `..;`, which it
/// reads as `..`: the spec's `..;` rule must cover the encoded form too.
fn before_encoded_semicolon(segment: &[u8]) -> &[u8] {
    let at = segment
        .windows(3)
        .position(|w| matches!(w, [b'%', b'3', b'b' | b'B']))
        .unwrap_or(segment.len());
    segment.get(..at).unwrap_or(segment)
}

fn is_dot_segment(s: &[u8]) -> bool {
    s == b"." || s == b".."
}

/// `%2F`, `%5C`, `%2E` or `%00`, in any case.
/// Whether the two characters after a `%` spell an encoded `/`, `\`, `.`
/// or NUL (any case).
fn is_forbidden_escape(hex: Option<&[u8]>) -> bool {
    matches!(
        hex,
        Some([b'2', b'F' | b'f' | b'E' | b'e'] | [b'5', b'C' | b'c'] | [b'0', b'0'])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &[u8]) -> Option<&[u8]> {
        check_request_path(path).ok().map(|p| p.as_bytes())
    }

    #[test]
    fn ordinary_paths_pass_and_lose_their_query() {
        assert_eq!(ok(b"/"), Some(&b"/"[..]));
        assert_eq!(ok(b"/v1/x?a=/../b"), Some(&b"/v1/x"[..]));
        assert_eq!(ok(b"/v1/INV%20X"), Some(&b"/v1/INV%20X"[..]));
        assert_eq!(ok(b"/a/...;b"), Some(&b"/a/...;b"[..]));
        assert_eq!(ok(b"/?x"), Some(&b"/"[..]));
    }

    #[test]
    fn tricky_paths_are_refused() {
        for p in [
            &b""[..],
            b"v1/x",
            b"http://host/v1",
            b"*",
            b"//",
            b"/v1//x",
            b"/v1/x/",
            b"/v1/./x",
            b"/v1/../x",
            b"/..",
            b"/v1/..;a=b/x",
            b"/v1/..%3bx/y",
            b"/v1/.%3B",
            b"/v1/.;x",
            b"/v1/%2e%2e/x",
            b"/v1/%2E",
            b"/v1/a%2Fb",
            b"/v1/a%2fb",
            b"/v1/a%5cb",
            b"/v1/a%00",
            b"/v1/a\\b",
            b"/v1/a#b",
            b"/v1/a\0b",
        ] {
            assert_eq!(
                check_request_path(p),
                Err(PathRejected),
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn non_utf8_paths_do_not_panic() {
        assert!(check_request_path(b"/\xff\xfe/x").is_ok());
        assert!(check_request_path(b"/%").is_ok());
        assert!(check_request_path(b"/%2").is_ok());
    }
}
