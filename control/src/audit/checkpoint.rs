//! Signed checkpoints of the audit log's Merkle tree, in the C2SP
//! `tlog-checkpoint` format inside a C2SP `signed-note`, signed with
//! Ed25519: the text witnesses keep and outsiders verify. Pure: no I/O.
//!
//! A checkpoint's body is three lines: the origin (this log's name, which
//! is also the key's name), the tree size in decimal, and the root hash in
//! standard base64. The note appends a blank line and one signature line,
//! `— <name> <base64(key id || signature)>`, where the key id is the first
//! four bytes of SHA-256(name || 0x0A || 0x01 || public key) and the
//! signature covers the body. Keys are written as `golang.org/x/mod/sumdb/note`
//! writes them (`PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>` and
//! `<name>+<id>+<base64(0x01 || public key)>`), so existing tooling and
//! witnesses read both the keys and the notes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::audit::merkle::Hash;

/// The Ed25519 algorithm byte of signed-note keys.
const ED25519: u8 = 0x01;

/// The signature line's prefix: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a key or a checkpoint is refused; `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The key text is not a note key of this kind.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// The note is not a signed note with a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// No signature by the expected key verifies (forged, or another key).
    #[error("no valid signature by key {0}")]
    BadSignature(String),
    /// Signed by the key, but for another log.
    #[error("checkpoint origin {found:?} is not {expected:?}")]
    WrongOrigin {
        /// What the note says.
        found: String,
        /// The key's name.
        expected: String,
    },
}

impl CheckpointError {
    /// A stable code for reports and problem documents.
    pub fn code(&self) -> &'static str {
        match self {
            CheckpointError::MalformedKey(_) => "checkpoint_key_malformed",
            CheckpointError::Malformed(_) => "checkpoint_malformed",
            CheckpointError::BadSignature(_) => "checkpoint_signature_invalid",
            CheckpointError::WrongOrigin { .. } => "checkpoint_origin_mismatch",
        }
    }
}

/// A tree head: this log's tree of `size` records has root `root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of records.
    pub size: u64,
    /// RFC 9162 root hash.
    pub root: Hash,
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A key name must be non-empty and contain no space, `+` or newline
/// (the note format's separators).
fn check_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(CheckpointError::MalformedKey(
            "the name must be non-empty, without spaces or '+'",
        ));
    }
    Ok(())
}

/// Splits `<name>+<hex id>+<base64(0x01 || 32 bytes)>`.
fn parse_key_fields(text: &str) -> Result<(String, [u8; 4], [u8; 32]), CheckpointError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::MalformedKey("expected <name>+<id>+<key>"));
    };
    check_name(name)?;
    let id: [u8; 4] = hex::decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(CheckpointError::MalformedKey("the key id is not 8 hex digits"))?;
    let bytes = STANDARD
        .decode(key)
        .map_err(|_| CheckpointError::MalformedKey("the key is not base64"))?;
    match bytes.split_first() {
        Some((&ED25519, rest)) => {
            let key: [u8; 32] = rest
                .try_into()
                .map_err(|_| CheckpointError::MalformedKey("an Ed25519 key is 32 bytes"))?;
            Ok((name.to_owned(), id, key))
        }
        _ => Err(CheckpointError::MalformedKey(
            "not an Ed25519 key (algorithm byte 0x01)",
        )),
    }
}

/// The key that signs checkpoints (the service's; never in the database).
#[derive(Clone)]
pub struct CheckpointSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner({})", self.name)
    }
}

impl CheckpointSigner {
    /// A new key named `name` from 32 random bytes.
    pub fn generate(name: &str, seed: [u8; 32]) -> Result<CheckpointSigner, CheckpointError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, &key.verifying_key());
        Ok(CheckpointSigner {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`; refuses a
    /// key whose id does not match its name and public key.
    pub fn parse(text: &str) -> Result<CheckpointSigner, CheckpointError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CheckpointError::MalformedKey("expected PRIVATE+KEY+<name>+<id>+<key>"))?;
        let (name, id, seed) = parse_key_fields(rest)?;
        let signer = CheckpointSigner::generate(&name, seed)?;
        if signer.id != id {
            return Err(CheckpointError::MalformedKey("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// The private key in note form (for `jitgate audit keygen`).
    pub fn private_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(bytes)
        )
    }

    /// The matching verifier.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The log's origin line (the key's name).
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The signed note of `head`.
    pub fn sign(&self, head: &TreeHead) -> String {
        let body = body(&self.name, head);
        let signature = self.key.sign(body.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

fn body(origin: &str, head: &TreeHead) -> String {
    format!("{origin}\n{}\n{}\n", head.size, STANDARD.encode(head.root))
}

/// A public key that checks checkpoints (what auditors and witnesses hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    name: String,
    key: VerifyingKey,
    id: [u8; 4],
}

impl CheckpointVerifier {
    /// Reads `<name>+<id>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<CheckpointVerifier, CheckpointError> {
        let (name, id, bytes) = parse_key_fields(text)?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CheckpointError::MalformedKey("not a valid Ed25519 public key"))?;
        if key_id(&name, &key) != id {
            return Err(CheckpointError::MalformedKey("the key id does not match the key"));
        }
        Ok(CheckpointVerifier { name, key, id })
    }

    /// The key in note form.
    pub fn text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), STANDARD.encode(bytes))
    }

    /// The key's (and the log's) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a signed checkpoint: the tree head, if a signature line by
    /// this key verifies over the body and the origin is this key's name.
    /// Signatures by other keys (witness cosignatures) are ignored.
    pub fn open(&self, note: &str) -> Result<TreeHead, CheckpointError> {
        let Some(split) = note.find("\n\n") else {
            return Err(CheckpointError::Malformed("no blank line before the signatures"));
        };
        let (body, signatures) = (&note[..=split], &note[split + 2..]);
        if !signatures.ends_with('\n') || signatures.is_empty() {
            return Err(CheckpointError::Malformed(
                "the signature block does not end with a newline",
            ));
        }
        let signed = signatures.lines().any(|line| {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return false;
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return false;
            };
            let Ok(blob) = STANDARD.decode(blob) else {
                return false;
            };
            let Some((id, signature)) = blob.split_at_checked(4) else {
                return false;
            };
            let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                return false;
            };
            name == self.name && id == self.id && self.key.verify(body.as_bytes(), &signature).is_ok()
        });
        if !signed {
            return Err(CheckpointError::BadSignature(self.name.clone()));
        }
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(CheckpointError::Malformed(
                "a checkpoint has an origin, a size and a root",
            ));
        };
        if origin != self.name {
            return Err(CheckpointError::WrongOrigin {
                found: origin.to_owned(),
                expected: self.name.clone(),
            });
        }
        let size: u64 = size
            .parse()
            .ok()
            .filter(|n: &u64| n.to_string() == size)
            .ok_or(CheckpointError::Malformed("the size is not a canonical decimal"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::Malformed("the root is not 32 bytes of base64"))?;
        Ok(TreeHead { size, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, byte: u8) -> CheckpointSigner {
        CheckpointSigner::generate(name, [byte; 32]).unwrap()
    }

    /// RFC 8032's first Ed25519 test vector (secret key 9d61..7f60): its
    /// public key (from the RFC) and the key id the note format derives
    /// (SHA-256(name || 0x0A || 0x01 || key), computed with Python's
    /// hashlib) in the verifier key text.
    #[test]
    fn a_checkpoint_is_the_c2sp_text_signed_with_the_known_answer() {
        let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let signer = CheckpointSigner::generate("example.com/log", seed).unwrap();
        assert_eq!(
            signer.verifier().text(),
            "example.com/log+cc714670+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
        );
        let head = TreeHead { size: 8, root: [7; 32] };
        let note = signer.sign(&head);
        assert!(note.starts_with(
            "example.com/log\n8\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} example.com/log "
        ));
        assert_eq!(signer.verifier().open(&note), Ok(head));
        let reparsed = CheckpointSigner::parse(&signer.private_text()).unwrap();
        assert_eq!(reparsed.sign(&head), note);
        assert_eq!(
            CheckpointVerifier::parse(&signer.verifier().text()),
            Ok(signer.verifier())
        );
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_or_edited_is_refused() {
        let ours = signer("jitgate", 1);
        let theirs = signer("jitgate", 2);
        let head = TreeHead { size: 3, root: [9; 32] };
        let forged = theirs.sign(&head);
        assert_eq!(
            ours.verifier().open(&forged),
            Err(CheckpointError::BadSignature("jitgate".into()))
        );
        let edited = ours.sign(&head).replacen("\n3\n", "\n4\n", 1);
        assert_eq!(
            ours.verifier().open(&edited).unwrap_err().code(),
            "checkpoint_signature_invalid"
        );
        let other_log = signer("other", 1).sign(&head);
        assert!(ours.verifier().open(&other_log).is_err());
        assert!(ours.verifier().open("jitgate\n3\nAAAA\n").is_err());
        // A cosignature by a witness beside ours is ignored, not refused.
        let cosigned = format!("{}\u{2014} witness AAAA\n", ours.sign(&head));
        assert_eq!(ours.verifier().open(&cosigned), Ok(head));
    }

    #[test]
    fn keys_with_a_wrong_id_or_name_are_refused() {
        let key = signer("jitgate", 1);
        let text = key.verifier().text();
        let wrong_id = text.replacen(&hex::encode(key.id), "00000000", 1);
        assert!(CheckpointVerifier::parse(&wrong_id).is_err());
        assert!(CheckpointSigner::generate("has space", [1; 32]).is_err());
        assert!(CheckpointSigner::parse(&text).is_err());
    }
}
