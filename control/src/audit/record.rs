//! A record's canonical encoding, and the hashes over it: the chain hash
//! (previous hash + encoding) and the RFC 9162 Merkle leaf. Pure: the
//! appender, the tree builder and every verifier hash the same bytes here.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::merkle::{self, Hash};
use crate::store::audit::AuditRow;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The record's hash: SHA-256 over the previous hash and a JSON array of
/// the fields (an unambiguous encoding):
/// `[seq, at, actor, action, resource, request_id, grant_id, channel, details]`.
#[cfg(test)]
fn record_hash(prev_hash: &str, seq: i64, at: i64, e: &RecordFields<'_>) -> String {
    chain_hash(prev_hash, seq, &canonical_tail(at, e))
}

/// The canonical array of [`record_hash`] without its opening bracket and
/// first element (`seq`): `at,actor,...,details]`. It does not depend on
/// the chain, so appends prepare it before locking the head.
pub(crate) fn canonical_tail(at: i64, e: &RecordFields<'_>) -> String {
    let mut all = json!([
        at,
        e.actor,
        e.action,
        e.resource,
        e.request_id,
        e.grant_id,
        e.channel,
        e.details
    ])
    .to_string();
    all.remove(0);
    all
}

/// SHA-256 over the previous hash, a newline and the canonical array
/// `[seq,` + `tail`.
pub(crate) fn chain_hash(prev_hash: &str, seq: i64, tail: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n[");
    h.update(seq.to_string().as_bytes());
    h.update(b",");
    h.update(tail.as_bytes());
    hex(&h.finalize())
}

/// A stored record's chain hash from the previous hash and its leaf input
/// (`[seq,` + tail, as [`leaf_input`] gives it): the same bytes
/// [`chain_hash`] hashes.
pub fn chain_hash_of_input(prev_hash: &str, leaf_input: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(leaf_input.as_bytes());
    hex(&h.finalize())
}

/// A record's Merkle leaf hash: RFC 9162's SHA-256(0x00 || bytes) over
/// the record's canonical array `[seq,` + `tail` (the bytes [`chain_hash`]
/// hashes after the previous hash).
pub(crate) fn record_leaf(seq: i64, tail: &str) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(b"[");
    h.update(seq.to_string().as_bytes());
    h.update(b",");
    h.update(tail.as_bytes());
    h.finalize().into()
}

/// The canonical array a stored record's leaf hashes (the leaf input of
/// RFC 9162), from its row as stored.
pub fn leaf_input(row: &AuditRow) -> String {
    let fields = RecordFields {
        actor: &row.actor,
        action: &row.action,
        resource: row.resource.as_deref(),
        request_id: row.request_id.as_deref(),
        grant_id: row.grant_id.as_deref(),
        channel: row.channel.as_deref(),
        details: &row.details,
    };
    format!("[{},{}", row.seq, canonical_tail(row.at, &fields))
}

/// A stored record's Merkle leaf hash, recomputed from its fields.
pub fn leaf_of_row(row: &AuditRow) -> Hash {
    merkle::leaf_hash(leaf_input(row).as_bytes())
}

pub(crate) struct RecordFields<'a> {
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) resource: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) grant_id: Option<&'a str>,
    pub(crate) channel: Option<&'a str>,
    pub(crate) details: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known answer, worked out outside this crate (the pre-image written
    /// by hand, hashed with another SHA-256): any change to the canonical
    /// encoding (field order, separators, escaping, how `details` is
    /// embedded) changes this hash and fails here: such a change would make every
    /// chain already stored fail verification.
    #[test]
    fn the_hash_of_a_fixed_record_is_the_pinned_known_answer() {
        let fields = RecordFields {
            actor: "bob",
            action: "vote.approve",
            resource: Some("payments-api"),
            request_id: Some("req_1"),
            grant_id: None,
            channel: Some("api"),
            details: r#"{"comment":"ok \"quoted\""}"#,
        };
        assert_eq!(
            canonical_tail(1_700_000_000_000, &fields),
            r#"1700000000000,"bob","vote.approve","payments-api","req_1",null,"api","{\"comment\":\"ok \\\"quoted\\\"\"}"]"#
        );
        assert_eq!(
            record_hash("abc", 7, 1_700_000_000_000, &fields),
            "1aa286e3a9593229c6c8f9aa46ca8f243cf20c9328d62ab5f8ae4f97d18d8013"
        );
        // Verification hashes the stored row's leaf input: the same bytes.
        let input = format!("[7,{}", canonical_tail(1_700_000_000_000, &fields));
        assert_eq!(
            chain_hash_of_input("abc", &input),
            "1aa286e3a9593229c6c8f9aa46ca8f243cf20c9328d62ab5f8ae4f97d18d8013"
        );
    }
}
