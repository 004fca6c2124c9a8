//! Writing JSON strings by hand: deny bodies and decision reports are
//! small and fixed in shape, and a serializer would double the module size.

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' || c == '\u{7f}' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX.get(n >> 4).copied().unwrap_or(b'0')));
                out.push(char::from(HEX.get(n & 15).copied().unwrap_or(b'0')));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends bytes as a JSON string, invalid UTF-8 replaced.
pub fn push_bytes(out: &mut String, b: &[u8]) {
    push_str(out, &String::from_utf8_lossy(b));
}

/// Appends `"name":` (name must need no escaping).
pub fn push_key(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_requires() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n\u{1}\u{7f}é");
        assert_eq!(s, r#""a\"b\\c\u000a\u0001\u007fé""#);
        let v: String = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}\u{7f}é");
        let mut s = String::new();
        push_bytes(&mut s, b"/x\xff");
        assert_eq!(s, "\"/x\u{fffd}\"");
    }
}
