//! Proofs as the API gives them (one record in a signed checkpoint, one
//! checkpoint extending another), and exports of a range of the audit log
//! for archives made of them, verifiable offline with the public key alone:
//! the records' canonical bytes, each with its inclusion proof in one
//! signed checkpoint.
//!
//! The format is JSON lines. The first line is the header
//! `{"format":"jitgate-audit-export/1","from":F,"to":T,"checkpoint":"<note>"}`;
//! each next line is one record, `{"seq":S,"leaf_input":"[S,...]","proof":["<hex>",...]}`,
//! for every seq from F to T in order. [`verify`] opens the note with the
//! key, and checks that the records are exactly F..=T and that each one's
//! leaf (RFC 9162, over `leaf_input`) is in the signed tree.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::checkpoint::{CheckpointError, CheckpointVerifier};
use crate::audit::merkle::{self, Hash};

/// An inclusion proof of one record in a signed checkpoint
/// (`GET /v1/audit/{seq}/proof`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The record.
    pub seq: u64,
    /// Its leaf index (seq - 1).
    pub leaf_index: u64,
    /// The record's canonical bytes (RFC 9162 leaf input): the JSON array
    /// `[seq,at,actor,action,resource,request_id,grant_id,channel,details]`.
    pub leaf_input: String,
    /// SHA-256(0x00 || leaf_input), hex.
    pub leaf_hash: String,
    /// The tree size of the checkpoint.
    pub tree_size: u64,
    /// The audit path, hex, leaf to root.
    pub proof: Vec<String>,
    /// The signed checkpoint note (C2SP tlog-checkpoint).
    pub checkpoint: String,
}

/// A consistency proof between two signed checkpoints
/// (`GET /v1/audit/consistency`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The earlier size.
    pub from: u64,
    /// The later size.
    pub to: u64,
    /// The proof, hex.
    pub proof: Vec<String>,
    /// The earlier signed checkpoint note.
    pub from_checkpoint: String,
    /// The later signed checkpoint note.
    pub to_checkpoint: String,
}

/// The format name in the header.
pub const FORMAT: &str = "jitgate-audit-export/1";

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The first record.
    pub from: u64,
    /// The last record.
    pub to: u64,
    /// The signed checkpoint note every proof is relative to.
    pub checkpoint: String,
}

/// One record with its proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedRecord {
    /// Its seq.
    pub seq: u64,
    /// Its canonical bytes (the JSON array the leaf hashes).
    pub leaf_input: String,
    /// Its inclusion proof, hex.
    pub proof: Vec<String>,
}

/// Why an export does not verify; `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Not an export of this format.
    #[error("line {line}: {message}")]
    Malformed {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint does not verify with the key.
    #[error("the export's checkpoint is refused: {0}")]
    Checkpoint(CheckpointError),
    /// A record is missing, extra, or not in the signed tree.
    #[error("record {seq}: {message}")]
    Record {
        /// The record.
        seq: u64,
        /// What is wrong.
        message: String,
    },
}

impl ExportError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::Malformed { .. } => "export_malformed",
            ExportError::Checkpoint(_) => "export_checkpoint_refused",
            ExportError::Record { .. } => "export_record_unproven",
        }
    }
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The first record.
    pub from: u64,
    /// The last record.
    pub to: u64,
    /// The size of the signed checkpoint.
    pub tree_size: u64,
}

fn malformed(line: usize, message: impl ToString) -> ExportError {
    ExportError::Malformed {
        line,
        message: message.to_string(),
    }
}

/// Verifies an export with the public key alone.
pub fn verify(text: &str, key: &CheckpointVerifier) -> Result<Verified, ExportError> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or_else(|| malformed(1, "empty"))?;
    let header: Header = serde_json::from_str(first).map_err(|e| malformed(1, e))?;
    if header.format != FORMAT || header.from == 0 || header.from > header.to {
        return Err(malformed(1, format!("not a {FORMAT} header with 1 <= from <= to")));
    }
    let head = key.open(&header.checkpoint).map_err(ExportError::Checkpoint)?;
    if header.to > head.size {
        return Err(ExportError::Record {
            seq: header.to,
            message: format!("beyond the checkpoint's {} records", head.size),
        });
    }
    let mut expected = header.from;
    for (index, line) in lines {
        let record: ExportedRecord = serde_json::from_str(line).map_err(|e| malformed(index + 1, e))?;
        let unproven = |message: &str| ExportError::Record {
            seq: expected,
            message: message.to_owned(),
        };
        if record.seq != expected || expected > header.to {
            return Err(unproven("missing or out of order"));
        }
        // The bytes must be the record they claim to be.
        let claimed: Option<u64> = serde_json::from_str::<Vec<serde_json::Value>>(&record.leaf_input)
            .ok()
            .and_then(|a| a.first().and_then(serde_json::Value::as_u64));
        if claimed != Some(record.seq) {
            return Err(unproven("its bytes are not a record with this seq"));
        }
        let proof = record
            .proof
            .iter()
            .map(|h| hex::decode(h).ok().and_then(|b| Hash::try_from(b).ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| malformed(index + 1, "a proof hash is not 32 bytes of hex"))?;
        let leaf = merkle::leaf_hash(record.leaf_input.as_bytes());
        if !merkle::verify_inclusion(record.seq - 1, head.size, &leaf, &proof, &head.root) {
            return Err(unproven("not in the signed tree (edited?)"));
        }
        expected += 1;
    }
    if expected != header.to + 1 {
        return Err(ExportError::Record {
            seq: expected,
            message: "missing (the export ends early)".into(),
        });
    }
    Ok(Verified {
        from: header.from,
        to: header.to,
        tree_size: head.size,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::audit::checkpoint::{CheckpointSigner, TreeHead};

    /// An export of records 3..=6 of a tree of 9, built here.
    fn export(signer: &CheckpointSigner) -> String {
        let inputs: Vec<String> = (1..=9)
            .map(|s| format!("[{s},1,\"a\",\"b\",null,null,null,null,\"{{}}\"]"))
            .collect();
        let mut nodes = HashMap::new();
        let mut appender = merkle::Appender::new(0, Vec::new()).unwrap();
        for input in &inputs {
            let mut done = Vec::new();
            appender.push(merkle::leaf_hash(input.as_bytes()), &mut done);
            nodes.extend(done);
        }
        let head = TreeHead {
            size: 9,
            root: appender.root(),
        };
        let mut out = serde_json::to_string(&Header {
            format: FORMAT.into(),
            from: 3,
            to: 6,
            checkpoint: signer.sign(&head),
        })
        .unwrap();
        for seq in 3..=6u64 {
            let proof = merkle::inclusion_proof(&nodes, seq - 1, 9).unwrap();
            let record = ExportedRecord {
                seq,
                leaf_input: inputs[seq as usize - 1].clone(),
                proof: proof.iter().map(hex::encode).collect(),
            };
            out.push('\n');
            out.push_str(&serde_json::to_string(&record).unwrap());
        }
        out
    }

    #[test]
    fn an_export_verifies_with_the_public_key_alone() {
        let signer = CheckpointSigner::generate("jit.test/audit", [4; 32]).unwrap();
        assert_eq!(
            verify(&export(&signer), &signer.verifier()),
            Ok(Verified {
                from: 3,
                to: 6,
                tree_size: 9
            })
        );
    }

    #[test]
    fn an_edited_missing_or_foreign_record_and_another_key_are_refused() {
        let signer = CheckpointSigner::generate("jit.test/audit", [4; 32]).unwrap();
        let key = signer.verifier();
        let good = export(&signer);
        let edited = good.replacen("[5,1,\\\"a\\\"", "[5,2,\\\"a\\\"", 1);
        assert_ne!(edited, good);
        assert_eq!(
            verify(&edited, &key).unwrap_err(),
            ExportError::Record {
                seq: 5,
                message: "not in the signed tree (edited?)".into()
            }
        );
        let lines: Vec<&str> = good.lines().collect();
        let dropped = [&lines[..2], &lines[3..]].concat().join("\n");
        assert_eq!(verify(&dropped, &key).unwrap_err().code(), "export_record_unproven");
        let truncated = lines[..4].join("\n");
        assert!(matches!(
            verify(&truncated, &key),
            Err(ExportError::Record { seq: 6, .. })
        ));
        let other = CheckpointSigner::generate("jit.test/audit", [5; 32]).unwrap();
        assert_eq!(
            verify(&good, &other.verifier()).unwrap_err().code(),
            "export_checkpoint_refused"
        );
    }
}
