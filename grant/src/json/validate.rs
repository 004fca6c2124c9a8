//! Validation of a whole text against the grant dialect: one pass, no
//! allocation beyond the open member names, bounded recursion.

use super::number::is_finite_double;
use super::read::raw_eq;
use super::{Malformed, Result, MAX_DEPTH};

/// Most member names that can be open at once across nested objects. A token
/// is at most 4096 bytes, so its claims are at most 3072 bytes and cannot
/// hold more members than this; the bound keeps the duplicate check (which
/// is quadratic per object) cheap on any other input.
const MAX_OPEN_KEYS: usize = 768;

/// A text that [`validate_object`] accepted: the only thing a
/// [`super::Cursor`] reads, so no reader ever sees unchecked JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated<'a>(&'a [u8]);

impl<'a> Validated<'a> {
    /// The text.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// Checks that `input` is one JSON text whose top-level value is an object
/// and that it follows every rule of the grant dialect.
pub fn validate_object(input: &[u8]) -> Result<Validated<'_>> {
    // Checking UTF-8 once up front lets the parser treat string contents as
    // opaque bytes apart from escapes.
    let text = core::str::from_utf8(input).map_err(|_| Malformed)?;
    if text.starts_with('\u{feff}') {
        return Err(Malformed);
    }
    let mut v = Validator {
        s: input,
        pos: 0,
        keys: Vec::with_capacity(16),
    };
    v.skip_ws();
    if v.peek() != Some(b'{') {
        return Err(Malformed);
    }
    v.value(1)?;
    v.skip_ws();
    if v.pos != input.len() {
        return Err(Malformed);
    }
    Ok(Validated(input))
}

struct Validator<'a> {
    s: &'a [u8],
    pos: usize,
    /// Raw spans (start, end) of member names of the objects currently open,
    /// innermost last.
    keys: Vec<(u32, u32)>,
}

impl Validator<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.bump() == Some(b) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let end = self.pos + word.len();
        if self.s.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn value(&mut self, depth: usize) -> Result<()> {
        match self.peek().ok_or(Malformed)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    fn object(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.expect(b'{')?;
        let first_key = self.keys.len();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            for &(start, end) in self.keys.get(first_key..).ok_or(Malformed)? {
                let other = self.s.get(start as usize..end as usize).ok_or(Malformed)?;
                if raw_eq(other, key_raw(self.s, key)?) {
                    return Err(Malformed);
                }
            }
            if self.keys.len() >= MAX_OPEN_KEYS {
                return Err(Malformed);
            }
            self.keys.push(key);
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(Malformed),
            }
        }
        self.keys.truncate(first_key);
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.expect(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                _ => return Err(Malformed),
            }
        }
    }

    /// Validates a string and returns the span of its raw contents (between
    /// the quotes, escapes not decoded).
    fn string(&mut self) -> Result<(u32, u32)> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            // Plain runs are the common case: skip them in one pass.
            let rest = self.s.get(self.pos..).ok_or(Malformed)?;
            self.pos += rest
                .iter()
                .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
                .count();
            match self.bump().ok_or(Malformed)? {
                b'"' => break,
                b'\\' => match self.bump().ok_or(Malformed)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let unit = hex4(self.s.get(self.pos..self.pos + 4))?;
                        self.pos += 4;
                        if (0xDC00..0xE000).contains(&unit) {
                            return Err(Malformed);
                        }
                        if (0xD800..0xDC00).contains(&unit) {
                            self.literal(b"\\u")?;
                            let low = hex4(self.s.get(self.pos..self.pos + 4))?;
                            self.pos += 4;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err(Malformed);
                            }
                        }
                    }
                    _ => return Err(Malformed),
                },
                0x00..=0x1F => return Err(Malformed),
                _ => {}
            }
        }
        let end = self.pos - 1;
        let as_u32 = |n: usize| u32::try_from(n).map_err(|_| Malformed);
        Ok((as_u32(start)?, as_u32(end)?))
    }

    fn number(&mut self) -> Result<()> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.bump() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Malformed),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        let text = self.s.get(start..self.pos).ok_or(Malformed)?;
        if is_finite_double(text) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(Malformed);
        }
        self.digits();
        Ok(())
    }
}

fn key_raw(s: &[u8], (start, end): (u32, u32)) -> Result<&[u8]> {
    s.get(start as usize..end as usize).ok_or(Malformed)
}

pub(super) fn hex4(bytes: Option<&[u8]>) -> Result<u32> {
    let bytes = bytes.ok_or(Malformed)?;
    let mut n = 0u32;
    for &b in bytes {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Malformed),
        };
        n = (n << 4) | u32::from(d);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        validate_object(s.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_ordinary_objects() {
        assert!(ok(r#"{}"#));
        assert!(ok(r#" { "a" : [1, 2.5, -3e2, true, false, null, "x\n\u00e9"] } "#));
        assert!(ok(r#"{"a":{"b":{"c":[]}}}"#));
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert!(!ok("[]"));
        assert!(!ok("\"x\""));
        assert!(!ok("1"));
        assert!(!ok(""));
    }

    #[test]
    fn rejects_duplicate_names_even_when_escaped_differently() {
        assert!(!ok(r#"{"exp":1,"exp":2}"#));
        assert!(!ok(r#"{"exp":1,"\u0065xp":2}"#));
        assert!(ok(r#"{"a":{"x":1},"b":{"x":1}}"#));
        assert!(!ok(r#"{"a":[{"x":1,"x":1}]}"#));
    }

    #[test]
    fn depth_limit_counts_the_top_level() {
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(ok(&deep(16)));
        assert!(!ok(&deep(17)));
        assert!(!ok(&format!("{{\"a\":{}", "[".repeat(100_000))));
    }

    #[test]
    fn rejects_non_finite_and_bad_numbers() {
        assert!(!ok(r#"{"x":1e400}"#));
        assert!(!ok(r#"{"x":NaN}"#));
        assert!(!ok(r#"{"x":Infinity}"#));
        assert!(!ok(r#"{"x":01}"#));
        assert!(!ok(r#"{"x":1.}"#));
        assert!(!ok(r#"{"x":+1}"#));
        assert!(ok(r#"{"x":1e300}"#));
    }

    #[test]
    fn rejects_bad_strings() {
        assert!(!ok(r#"{"x":"\ud800"}"#));
        assert!(!ok(r#"{"x":"\udc00"}"#));
        assert!(!ok(r#"{"x":"\ud800\u0041"}"#));
        assert!(ok(r#"{"x":"\ud83d\ude00"}"#));
        assert!(!ok("{\"x\":\"a\u{1}\"}"));
        assert!(!ok(r#"{"x":"\q"}"#));
        assert!(validate_object(b"{\"x\":\"\xff\"}").is_err());
        assert!(validate_object("\u{feff}{}".as_bytes()).is_err());
    }

    #[test]
    fn rejects_trailing_garbage() {
        assert!(!ok("{} {}"));
        assert!(!ok("{},"));
    }
}
