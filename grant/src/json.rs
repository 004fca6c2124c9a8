//! The strict JSON dialect of grant tokens (spec: "JSON").
//!
//! Header and claims are RFC 8259 JSON with extra rules that make every
//! implementation read a token the same way: UTF-8 without BOM, no lone
//! surrogates, no duplicate member names anywhere, nesting at most 16 deep,
//! finite numbers. General-purpose parsers accept some of these (serde_json
//! lets the last duplicate win), so the grant crate validates with its own
//! small, allocation-free parser and then reads the members it needs with a
//! cursor over the already-validated text.
//!
//! Everything here works on byte slices, indexes only through `get`, and
//! bounds its recursion by the depth limit, so no input can make it panic.

/// Maximum nesting of arrays and objects; the top-level value counts as 1.
pub const MAX_DEPTH: usize = 16;

/// Most member names that can be open at once across nested objects. A token
/// is at most 4096 bytes, so its claims are at most 3072 bytes and cannot
/// hold more members than this; the bound keeps the duplicate check (which
/// is quadratic per object) cheap on any other input.
const MAX_OPEN_KEYS: usize = 768;

/// Largest integer allowed for `iat`, `nbf` and `exp`: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The text breaks a rule of the strict dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

type Result<T> = core::result::Result<T, Malformed>;

/// Checks that `input` is one JSON text whose top-level value is an object
/// and that it follows every rule of the grant dialect.
pub fn validate_object(input: &[u8]) -> Result<()> {
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
    Ok(())
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

/// 2^1024 - 2^970, the midpoint between the largest double and 2^1024:
/// a decimal at or above it rounds to infinity (ties go to the even
/// neighbour, 2^1024), anything below rounds to a finite double.
const OVERFLOW_DIGITS: &[u8] = b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// Whether a number that matched the JSON grammar is finite as an IEEE 754
/// double, decided exactly on its decimal digits (no float parsing, which
/// would cost the WebAssembly module its tables).
pub fn is_finite_double(number: &[u8]) -> bool {
    let unsigned = number.strip_prefix(b"-").unwrap_or(number);
    let (mantissa, exponent) = match unsigned.iter().position(|&b| b == b'e' || b == b'E') {
        Some(e) => (unsigned.get(..e).unwrap_or(&[]), unsigned.get(e + 1..).unwrap_or(&[])),
        None => (unsigned, &b""[..]),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&b| b == b'.') {
        Some(d) => (mantissa.get(..d).unwrap_or(&[]), mantissa.get(d + 1..).unwrap_or(&[])),
        None => (mantissa, &b""[..]),
    };
    // Decimal exponent, saturating: anything past ±10^9 is decided anyway.
    let (negative, exp_digits) = match exponent.first() {
        Some(b'-') => (true, exponent.get(1..).unwrap_or(&[])),
        Some(b'+') => (false, exponent.get(1..).unwrap_or(&[])),
        _ => (false, exponent),
    };
    let mut exp: i64 = 0;
    for &d in exp_digits {
        exp = (exp * 10 + i64::from(d - b'0')).min(1_000_000_000);
    }
    if negative {
        exp = -exp;
    }
    // Significant digits, and the power of ten of the first one.
    let digits = int_part
        .iter()
        .chain(frac_part.iter())
        .copied()
        .skip_while(|&d| d == b'0');
    let leading_zeros = int_part
        .iter()
        .chain(frac_part.iter())
        .take_while(|&&d| d == b'0')
        .count();
    let total = int_part.len() + frac_part.len();
    if leading_zeros == total {
        return true; // zero
    }
    let first_power = int_part.len() as i64 - 1 - leading_zeros as i64 + exp;
    let overflow_power = OVERFLOW_DIGITS.len() as i64 - 1;
    if first_power != overflow_power {
        return first_power < overflow_power;
    }
    // Same magnitude: compare digit by digit, the shorter padded with zeros.
    let mut digits = digits.chain(core::iter::repeat(b'0'));
    for &t in OVERFLOW_DIGITS {
        let d = digits.next().unwrap_or(b'0');
        if d != t {
            return d < t;
        }
    }
    // At or above the midpoint: rounds to infinity.
    false
}

fn key_raw(s: &[u8], (start, end): (u32, u32)) -> Result<&[u8]> {
    s.get(start as usize..end as usize).ok_or(Malformed)
}

fn hex4(bytes: Option<&[u8]>) -> Result<u32> {
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
    /// Starts reading at the beginning of `s`.
    pub fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
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

/// Reads a JSON number as an integer in `0..=2^53-1`: digits only, no sign,
/// fraction or exponent.
pub fn parse_time_integer(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 16 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in raw {
        n = n * 10 + u64::from(d - b'0');
    }
    (n <= MAX_SAFE_INTEGER).then_some(n)
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
    fn finiteness_is_exact_at_the_overflow_boundary() {
        let max = "1.7976931348623157e308";
        let below = "1.797693134862315807937289714053034150799341327100378269361737789804449682927647509466490179775872070963302864166928879109465555478519404026306574886715058206819089020007083836762738548458177115317644757302700698555713669596228429148198608349364752927190741684443655107043427115596995080930428801779041744977919999e308";
        let at = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";
        for (n, finite) in [
            ("0", true),
            ("-0.0e99999", true),
            ("1e308", true),
            ("1e309", false),
            ("1e400", false),
            ("-1e400", false),
            ("0.0000001e309", true),
            ("1e-99999999999999999999", true),
            ("1e99999999999999999999", false),
            (max, true),
            (below, true),
            (at, false),
            ("1.8e308", false),
            ("17976931348623157e292", true),
            ("179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.99", true),
        ] {
            assert_eq!(is_finite_double(n.as_bytes()), finite, "{n}");
            assert_eq!(n.parse::<f64>().unwrap().is_finite(), finite, "std agrees on {n}");
        }
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

    #[test]
    fn chars_decode_escapes_and_pairs() {
        let s: String = Chars::new(br#"a\n\u00e9\ud83d\ude00\/"#).collect();
        assert_eq!(s, "a\n\u{e9}\u{1F600}/");
        assert!(raw_eq_str(br"k\u0031", "k1"));
        assert_eq!(decoded_len(br"\u00e9"), 2);
    }

    #[test]
    fn time_integers_are_plain_digits_in_range() {
        assert_eq!(parse_time_integer(b"0"), Some(0));
        assert_eq!(parse_time_integer(b"9007199254740991"), Some(MAX_SAFE_INTEGER));
        assert_eq!(parse_time_integer(b"9007199254740992"), None);
        assert_eq!(parse_time_integer(b"-1"), None);
        assert_eq!(parse_time_integer(b"1e3"), None);
        assert_eq!(parse_time_integer(b"1.0"), None);
    }
}
