//! The dialect's numbers: finite as IEEE 754 doubles (decided exactly on
//! the decimal text), and the plain integers of the time claims.

/// Largest integer allowed for `iat`, `nbf` and `exp`: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

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
    fn time_integers_are_plain_digits_in_range() {
        assert_eq!(parse_time_integer(b"0"), Some(0));
        assert_eq!(parse_time_integer(b"9007199254740991"), Some(MAX_SAFE_INTEGER));
        assert_eq!(parse_time_integer(b"9007199254740992"), None);
        assert_eq!(parse_time_integer(b"-1"), None);
        assert_eq!(parse_time_integer(b"1e3"), None);
        assert_eq!(parse_time_integer(b"1.0"), None);
    }
}
