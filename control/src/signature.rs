//! Request signatures: the webhook scheme jitgate signs its notifications
//! with (and accepts on signed callbacks), and Slack's `v0` scheme. Pure
//! functions over the raw bytes; comparisons are constant-time.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Oldest signed timestamp accepted, in seconds.
pub const REPLAY_WINDOW_S: i64 = 300;

/// Why a signature was refused (stable codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The header is missing or not in the expected form.
    Malformed,
    /// The timestamp is outside the replay window.
    Stale,
    /// The MAC does not match.
    Mismatch,
}

/// Hex HMAC-SHA256 over the concatenation of `parts`.
pub fn hex_hmac(secret: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two signatures (their length aside).
pub fn same_signature(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Whether `presented_hex` is the hex HMAC-SHA256 of `parts` under
/// `secret`; the comparison is the MAC library's own constant-time one.
fn hex_hmac_matches(secret: &[u8], parts: &[&[u8]], presented_hex: &str) -> bool {
    let (Ok(presented), Ok(mut mac)) = (hex::decode(presented_hex), Hmac::<sha2::Sha256>::new_from_slice(secret))
    else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(&presented).is_ok()
}

/// The `x-jitgate-signature` value for a body: `t=<unix s>,v1=<hex>` with
/// `v1 = HMAC-SHA256(secret, "<t>.<body>")`.
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex_hmac(secret, &[timestamp.to_string().as_bytes(), b".", body])
    )
}

/// Parses `t=<unix s>,v1=<hex>` (in any order; other fields ignored).
pub fn parse_webhook_header(header: &str) -> Option<(i64, &str)> {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) if !v.is_empty() => v1 = Some(v),
            _ => {}
        }
    }
    Some((t?, v1?))
}

/// Verifies a webhook-scheme signature; returns the `v1` value (the key of
/// replay protection) when it holds.
pub fn verify_webhook<'h>(secret: &[u8], header: &'h str, body: &[u8], now_s: i64) -> Result<&'h str, Refusal> {
    let (t, v1) = parse_webhook_header(header).ok_or(Refusal::Malformed)?;
    if (now_s - t).abs() > REPLAY_WINDOW_S {
        return Err(Refusal::Stale);
    }
    if hex_hmac_matches(secret, &[t.to_string().as_bytes(), b".", body], v1) {
        Ok(v1)
    } else {
        Err(Refusal::Mismatch)
    }
}

/// Verifies Slack's `v0` signature: `v0=` + hex HMAC-SHA256 of
/// `v0:<timestamp>:<raw body>` under the signing secret.
pub fn verify_slack_v0(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_s: i64,
) -> Result<(), Refusal> {
    let ts: i64 = timestamp.parse().map_err(|_| Refusal::Malformed)?;
    if (now_s - ts).abs() > REPLAY_WINDOW_S {
        return Err(Refusal::Stale);
    }
    let presented = signature.strip_prefix("v0=").ok_or(Refusal::Mismatch)?;
    if hex_hmac_matches(secret, &[b"v0:", timestamp.as_bytes(), b":", body], presented) {
        Ok(())
    } else {
        Err(Refusal::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_round_trip_and_refuse_tampering() {
        let header = sign_webhook(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}");
        assert!(verify_webhook(b"0123456789abcdef", &header, b"{\"a\":1}", 1_700_000_100).is_ok());
        assert_eq!(
            verify_webhook(b"0123456789abcdef", &header, b"{\"a\":2}", 1_700_000_100),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"0123456789abcdef", &header, b"{\"a\":1}", 1_700_000_400),
            Err(Refusal::Stale)
        );
        assert_eq!(verify_webhook(b"x", "nonsense", b"", 0), Err(Refusal::Malformed));
        assert!(!same_signature("abc", "abd"));
        assert!(!same_signature("abc", "ab"));
        assert!(same_signature("abc", "abc"));
        let (t, v1) = parse_webhook_header(&header).unwrap();
        let upper = format!("t={t},v1={}", v1.to_uppercase());
        assert!(verify_webhook(b"0123456789abcdef", &upper, b"{\"a\":1}", 1_700_000_100).is_ok());
        let short = format!("t={t},v1={}", &v1[..62]);
        assert_eq!(
            verify_webhook(b"0123456789abcdef", &short, b"{\"a\":1}", 1_700_000_100),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn slack_v0_signatures_verify() {
        let sig = format!(
            "v0={}",
            hex_hmac(b"s3cret-s3cret-123", &[b"v0:", b"1700000000", b":", b"payload=x"])
        );
        assert_eq!(
            verify_slack_v0(b"s3cret-s3cret-123", "1700000000", b"payload=x", &sig, 1_700_000_010),
            Ok(())
        );
        assert_eq!(
            verify_slack_v0(b"s3cret-s3cret-123", "1700000000", b"payload=y", &sig, 1_700_000_010),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify_slack_v0(b"s3cret-s3cret-123", "1699999000", b"payload=x", &sig, 1_700_000_010),
            Err(Refusal::Stale)
        );
        assert_eq!(verify_slack_v0(b"k", "soon", b"", "", 0), Err(Refusal::Malformed));
    }
}
