//! Webhook-scheme and Slack v0 signature parsing and verification over
//! arbitrary headers and bodies: never panic, never accept a forgery.
#![no_main]

use control::signature::{hex_hmac, parse_webhook_header, sign_webhook, verify_slack_v0, verify_webhook};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or(&[]);
    let _ = parse_webhook_header(&header);
    if verify_webhook(SECRET, &header, body, 1_700_000_000).is_ok() {
        // Only a correct MAC over this body verifies.
        let (t, v1) = parse_webhook_header(&header).unwrap();
        assert_eq!(v1, hex_hmac(SECRET, &[t.to_string().as_bytes(), b".", body]));
    }
    let own = sign_webhook(SECRET, 1_700_000_000, body);
    assert!(verify_webhook(SECRET, &own, body, 1_700_000_000).is_ok());
    let _ = verify_slack_v0(SECRET, &header, body, &header, 1_700_000_000);
});
