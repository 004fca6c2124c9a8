//! Reading validated text: decoding string escapes, comparing raw
//! strings, and a forward-only cursor over members and elements.

use super::validate::{hex4, Validated};

/// Decodes the raw contents of a validated JSON string into code points.
///
/// Only ever run on strings that [`validate_object`] accepted; on anything
/// else it stops early instead of panicking.
pub struct Chars<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Chars<'a> {
    /// Iterates over the characters of a raw (still escaped) string.
    pub fn new(raw: &'a [u8]) -> Self {
        Chars { s: raw, pos: 0 }
    }
}

impl Iterator for Chars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let rest = self.s.get(self.pos..)?;
        let first = *rest.first()?;
        if first != b'\\' {
            // Raw text is valid UTF-8 (checked by the validator); decode
            // one character of it.
            let len = match first {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let c = core::str::from_utf8(rest.get(..len)?).ok()?.chars().next()?;
            self.pos += len;
            return Some(c);
        }
        let esc = *rest.get(1)?;
        self.pos += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = hex4(rest.get(2..6)).ok()?;
                self.pos += 4;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = hex4(rest.get(8..12)).ok()?;
                    self.pos += 6;
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                } else {
                    char::from_u32(unit)?
                }
            }
            _ => return None,
        };
        Some(c)
    }
}

/// Whether two raw JSON strings decode to the same text.
pub fn raw_eq(a: &[u8], b: &[u8]) -> bool {
    if !a.contains(&b'\\') && !b.contains(&b'\\') {
        return a == b;
    }
    Chars::new(a).eq(Chars::new(b))
}

/// Whether a raw JSON string decodes to `text`.
pub fn raw_eq_str(raw: &[u8], text: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == text.as_bytes();
    }
    Chars::new(raw).eq(text.chars())
}

/// Length in bytes of the UTF-8 text a raw JSON string decodes to.
pub fn decoded_len(raw: &[u8]) -> usize {
    if !raw.contains(&b'\\') {
        return raw.len();
    }
    Chars::new(raw).map(char::len_utf8).sum()
}

/// A JSON value as the cursor sees it: scalars by their raw text, containers
/// by kind only (the cursor then walks into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// `{`: the cursor is now inside an object.
    Object,
    /// `[`: the cursor is now inside an array.
    Array,
    /// A string, raw contents between the quotes.
    Str(&'a [u8]),
    /// A number, raw text.
    Num(&'a [u8]),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// A forward-only reader over a text that [`validate_object`] accepted.
///
/// Each method returns `None` where the text does not have the expected
/// shape, so callers turn any surprise into "malformed" rather than a panic.
pub struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Starts reading at the beginning of a validated text.
    pub fn new(text: Validated<'a>) -> Self {
        Cursor {
            s: text.as_bytes(),
            pos: 0,
        }
    }

    /// Starts reading at byte `pos` of a validated text (a position an
    /// earlier cursor over the same text reported).
    pub fn at(text: Validated<'a>, pos: usize) -> Self {
        Cursor {
            s: text.as_bytes(),
            pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Reads the next value's opening token. Containers are entered;
    /// scalars are consumed whole.
    pub fn token(&mut self) -> Option<Token<'a>> {
        self.skip_ws();
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                Some(Token::Object)
            }
            b'[' => {
                self.pos += 1;
                Some(Token::Array)
            }
            b'"' => self.string().map(Token::Str),
            b't' => {
                self.pos += 4;
                Some(Token::Bool(true))
            }
            b'n' => {
                self.pos += 4;
                Some(Token::Null)
            }
            b'f' => {
                self.pos += 5;
                Some(Token::Bool(false))
            }
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.pos += 1;
                }
                let raw = self.s.get(start..self.pos)?;
                (!raw.is_empty()).then_some(Token::Num(raw))
            }
        }
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match *self.s.get(self.pos)? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        let raw = self.s.get(start..self.pos)?;
        self.pos += 1;
        Some(raw)
    }

    /// Inside an object: the next member's raw name, or `None` at the end
    /// of the object (which is then consumed).
    pub fn next_key(&mut self) -> Option<&'a [u8]> {
        self.skip_ws();
        if self.peek() == Some(b',') {
            self.pos += 1;
            self.skip_ws();
        }
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return None;
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return None;
        }
        self.pos += 1;
        Some(key)
    }

    /// Inside an array: whether another element follows (the cursor is then
    /// before it); at the end, consumes the `]` and returns false.
    pub fn next_element(&mut self) -> bool {
        self.skip_ws();
        if self.peek() == Some(b',') {
            self.pos += 1;
            self.skip_ws();
        }
        if self.peek() == Some(b']') {
            self.pos += 1;
            return false;
        }
        self.peek().is_some()
    }

    /// Skips the rest of a value whose opening token was just read.
    pub fn skip_rest(&mut self, token: Token<'a>) -> Option<()> {
        let mut depth = match token {
            Token::Object | Token::Array => 1usize,
            _ => return Some(()),
        };
        while depth > 0 {
            match *self.s.get(self.pos)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                b'}' | b']' => {
                    depth -= 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Some(())
    }

    /// Skips one whole value.
    pub fn skip_value(&mut self) -> Option<()> {
        let t = self.token()?;
        self.skip_rest(t)
    }

    /// Byte offset of the cursor in the text.
    pub fn position(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_decode_escapes_and_pairs() {
        let s: String = Chars::new(br#"a\n\u00e9\ud83d\ude00\/"#).collect();
        assert_eq!(s, "a\n\u{e9}\u{1F600}/");
        assert!(raw_eq_str(br"k\u0031", "k1"));
        assert_eq!(decoded_len(br"\u00e9"), 2);
    }
}
