//! Verifies the audit log as stored against what a witness kept: the signed
//! checkpoints (and leaf hashes) the service published to a directory
//! outside the database, checked with the public key alone.
//!
//! Nothing the database holds is trusted here except the records
//! themselves: each record's leaf hash is recomputed from its fields, the
//! tree over them is rebuilt, and its root is compared with every signed
//! checkpoint. The witness's leaf files are first authenticated against
//! the same signed roots, so that a record that differs is named exactly;
//! where a witness holds only checkpoints, the report names the range the
//! first disagreeing checkpoint covers. A checkpoint that does not verify
//! with the key makes the whole witness refused: a verifier must not
//! choose which of a witness's files to believe.
//!
//! Incremental verification starts at a checkpoint verified before: the
//! stored tree's frontier at that size must hash to its signed root (so it
//! is the genuine one), and only the records and leaf files after it are
//! read (the checkpoint notes are all read: one small file each). It finds
//! any change to those records; a change to records before it is found by
//! a full verification (`--full`) or by an inclusion proof of the record.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::AnyPool;

use crate::audit::checkpoint::{CheckpointError, CheckpointVerifier, TreeHead};
use crate::audit::merkle::{self, Hash};
use crate::audit::publish::{checkpoint_file, leaves_file};
use crate::audit::record;
use crate::audit::tree;
use crate::store;

/// Why a witness directory cannot be used; `code` is stable.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// A file could not be read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A checkpoint does not verify with the public key.
    #[error("{}: refused: {source}", path.display())]
    Forged {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: CheckpointError,
    },
    /// The key signed two different trees of one size: the log forked.
    #[error("two checkpoints of size {size} with different roots are both signed: the log forked")]
    Fork {
        /// The size.
        size: u64,
    },
    /// The witness's leaf files do not hash to its signed checkpoints.
    #[error("the witness's leaf hashes do not match its signed checkpoint of size {size}")]
    LeavesDisagree {
        /// The checkpoint.
        size: u64,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The incremental start is not one of the witness's checkpoints.
    #[error("no witness checkpoint of size {size} to start from (use --full)")]
    NoSuchCheckpoint {
        /// The size asked for.
        size: u64,
    },
}

impl WitnessError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WitnessError::Io { .. } => "witness_unreadable",
            WitnessError::Forged { .. } => "checkpoint_forged",
            WitnessError::Fork { .. } => "checkpoints_fork",
            WitnessError::LeavesDisagree { .. } => "witness_leaves_disagree",
            WitnessError::Db(_) => "database",
            WitnessError::NoSuchCheckpoint { .. } => "no_such_checkpoint",
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> WitnessError {
    WitnessError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A witness directory, read: its checkpoints verified with the key, its
/// leaf hashes not yet (see [`Witness::authenticate`]).
#[derive(Debug, Clone)]
pub struct Witness {
    /// Signed tree heads, by size.
    pub checkpoints: BTreeMap<u64, Hash>,
    /// The leaves below this many records were not read.
    pub leaves_from: u64,
    /// Leaf hashes of records `leaves_from + 1 ..`, as the files say.
    pub leaves: Vec<Hash>,
}

impl Witness {
    /// Reads every `*.checkpoint` (each must verify with `key`) and the
    /// `*.leaves` files of records after `from` (an incremental
    /// verification reads no older leaf file, so its cost does not grow
    /// with history).
    pub fn load(dir: &Path, key: &CheckpointVerifier, from: u64) -> Result<Witness, WitnessError> {
        let mut checkpoints = BTreeMap::new();
        let mut ranges: BTreeMap<u64, (u64, PathBuf)> = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let path = entry.map_err(|e| io_err(dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".checkpoint") {
                let note = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
                let head = key.open(&note).map_err(|source| WitnessError::Forged {
                    path: path.clone(),
                    source,
                })?;
                if checkpoint_file(head.size) != name {
                    return Err(WitnessError::Forged {
                        path,
                        source: CheckpointError::Malformed("stored under another size"),
                    });
                }
                if checkpoints.insert(head.size, head.root).is_some_and(|r| r != head.root) {
                    return Err(WitnessError::Fork { size: head.size });
                }
            } else if let Some((from, to)) = name
                .strip_suffix(".leaves")
                .and_then(|r| r.split_once('-'))
                .and_then(|(f, t)| Some((f.parse::<u64>().ok()?, t.parse::<u64>().ok()?)))
                .filter(|(f, t)| f < t && leaves_file(*f, *t) == name)
            {
                // Overlapping ranges (replicas) carry the same hashes; the
                // widest from each start is enough.
                if ranges.get(&from).is_none_or(|(t, _)| *t < to) {
                    ranges.insert(from, (to, path));
                }
            }
        }
        let start = from;
        let mut leaves: Vec<Hash> = Vec::new();
        for (from, (to, path)) in ranges {
            let end = start + leaves.len() as u64;
            if to <= start {
                continue;
            }
            if from > end {
                break;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
            let hashes = text
                .lines()
                .map(|l| hex::decode(l).ok().and_then(|b| Hash::try_from(b).ok()))
                .collect::<Option<Vec<Hash>>>()
                .filter(|h| h.len() as u64 == to - from)
                .ok_or_else(|| io_err(&path, "not one 32-byte hex hash per record"))?;
            // Keep what is at or after `start`, replacing any overlap.
            let skip = start.saturating_sub(from) as usize;
            leaves.truncate(from.saturating_sub(start) as usize);
            leaves.extend_from_slice(hashes.get(skip..).unwrap_or_default());
        }
        Ok(Witness {
            checkpoints,
            leaves_from: start,
            leaves,
        })
    }

    /// The leaves that hash to signed roots, from a tree of `leaves_from`
    /// leaves whose root is signed (`start`, whose root the caller checked):
    /// leaves up to the last checkpoint they reach; leaves that disagree
    /// with a signed root make the witness unusable.
    pub fn authenticate(&self, mut start: merkle::Appender) -> Result<Vec<Hash>, WitnessError> {
        let end = self.leaves_from + self.leaves.len() as u64;
        let mut authenticated = 0;
        for (size, root) in self
            .checkpoints
            .range(self.leaves_from + 1..=end.max(self.leaves_from + 1))
        {
            if *size > end {
                break;
            }
            while start.size() < *size {
                start.push(self.leaves[(start.size() - self.leaves_from) as usize], &mut Vec::new());
            }
            if start.root() != *root {
                return Err(WitnessError::LeavesDisagree { size: *size });
            }
            authenticated = (*size - self.leaves_from) as usize;
        }
        Ok(self.leaves[..authenticated].to_vec())
    }

    /// The largest signed size.
    pub fn signed_size(&self) -> u64 {
        self.checkpoints.keys().next_back().copied().unwrap_or(0)
    }
}

/// The first record that disagrees with what the witness signed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Disagreement {
    /// The record's seq (for a range, its first record).
    pub seq: u64,
    /// The signed checkpoint it disagrees with.
    pub checkpoint: u64,
    /// What is wrong.
    pub reason: String,
}

/// The outcome of a verification against a witness.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether every record checked agrees with every signed checkpoint.
    pub ok: bool,
    /// Signed checkpoints the witness holds.
    pub checkpoints: usize,
    /// The largest signed size.
    pub signed_size: u64,
    /// The checkpoint size verification started from (0: full).
    pub verified_from: u64,
    /// Records read and checked.
    pub records_checked: u64,
    /// Records after the last signed checkpoint (not yet covered).
    pub unsigned_records: u64,
    /// The first disagreement, if any.
    pub first_disagreement: Option<Disagreement>,
}

/// Checks the records of `pool` against `witness`: all of them (`from` is
/// 0), or those after the witness checkpoint of size `from`.
pub async fn verify(pool: &AnyPool, witness: &Witness, from: u64) -> Result<Report, WitnessError> {
    let mut report = Report {
        ok: true,
        checkpoints: witness.checkpoints.len(),
        signed_size: witness.signed_size(),
        verified_from: from,
        records_checked: 0,
        unsigned_records: 0,
        first_disagreement: None,
    };
    let mut appender = if from == 0 {
        merkle::Appender::new(0, Vec::new()).map_err(|_| WitnessError::NoSuchCheckpoint { size: 0 })?
    } else {
        let Some(root) = witness.checkpoints.get(&from) else {
            return Err(WitnessError::NoSuchCheckpoint { size: from });
        };
        // The stored frontier is believed only if it hashes to the signed
        // root: then it is the genuine one, and new leaves extend it.
        let frontier = stored_frontier(pool, from).await?;
        match frontier.filter(|a| a.root() == *root) {
            Some(appender) => appender,
            None => {
                report.ok = false;
                report.first_disagreement = Some(Disagreement {
                    seq: 1,
                    checkpoint: from,
                    reason: format!(
                        "the stored tree no longer matches signed checkpoint {from}: records up to it were changed (run a full verification to name the first)"
                    ),
                });
                return Ok(report);
            }
        }
    };
    // The witness's leaves are believed once they hash to signed roots,
    // starting from the same verified tree.
    let leaves = match witness.leaves_from {
        0 => witness.authenticate(
            merkle::Appender::new(0, Vec::new()).map_err(|_| WitnessError::NoSuchCheckpoint { size: 0 })?,
        )?,
        start if start == from => witness.authenticate(appender.clone())?,
        start => return Err(WitnessError::NoSuchCheckpoint { size: start }),
    };
    let mut previous_checkpoint = witness.checkpoints.range(..=from).next_back().map_or(0, |(s, _)| *s);
    let mut last = from;
    loop {
        let rows = store::audit::range(pool, last as i64 + 1, i64::MAX, 5000).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let (seq, leaf) = (row.seq, record::leaf_of_row(row));
            let seq = seq as u64;
            let expected = last + 1;
            let signed_over = |seq: u64| witness.checkpoints.range(seq..).next().map(|(s, _)| *s);
            if seq != expected {
                if let Some(checkpoint) = signed_over(expected) {
                    return Ok(disagree(
                        report,
                        expected,
                        checkpoint,
                        "record is missing (deleted?)".to_owned(),
                    ));
                }
                break;
            }
            if let Some(witnessed) = seq
                .checked_sub(witness.leaves_from + 1)
                .and_then(|i| leaves.get(i as usize))
            {
                if *witnessed != leaf {
                    let checkpoint = signed_over(seq).unwrap_or(seq);
                    return Ok(disagree(
                        report,
                        seq,
                        checkpoint,
                        "record differs from the one the witness holds (edited, inserted, reordered or replaced)"
                            .to_owned(),
                    ));
                }
            }
            appender.push(leaf, &mut Vec::new());
            report.records_checked += 1;
            last = seq;
            if let Some(root) = witness.checkpoints.get(&seq) {
                if appender.root() != *root {
                    return Ok(disagree(
                        report,
                        previous_checkpoint + 1,
                        seq,
                        format!(
                            "records {}..={seq} do not hash to signed checkpoint {seq} (the witness holds no leaf hashes for them; one of them was changed)",
                            previous_checkpoint + 1
                        ),
                    ));
                }
                previous_checkpoint = seq;
            }
        }
    }
    if last < report.signed_size {
        let checkpoint = report.signed_size;
        return Ok(disagree(
            report,
            last + 1,
            checkpoint,
            format!("record is missing: the witness holds a signed checkpoint of {checkpoint} records and the log ends at {last} (truncated, or an older copy restored)"),
        ));
    }
    report.unsigned_records = last.saturating_sub(report.signed_size);
    Ok(report)
}

fn disagree(mut report: Report, seq: u64, checkpoint: u64, reason: String) -> Report {
    report.ok = false;
    report.first_disagreement = Some(Disagreement {
        seq,
        checkpoint,
        reason,
    });
    report
}

/// The stored frontier of the tree of `size` leaves, if all of it is there.
async fn stored_frontier(pool: &AnyPool, size: u64) -> Result<Option<merkle::Appender>, WitnessError> {
    let ids = merkle::frontier(size);
    let mut conn = pool.acquire().await?;
    let stored: HashMap<_, _> = store::audit::tree_nodes(&mut conn, &ids).await?.into_iter().collect();
    let mut hashes = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(hash) = stored.get(&id).and_then(|text| tree::decode_hash(id, text).ok()) else {
            return Ok(None);
        };
        hashes.push(hash);
    }
    Ok(merkle::Appender::new(size, hashes).ok())
}

/// Where incremental verification resumes: the size of the last checkpoint
/// verified, kept in a small file (absent: 0, a full verification).
pub fn read_state(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Records that everything up to the last signed checkpoint checked holds.
pub fn write_state(path: &Path, report: &Report) -> Result<(), WitnessError> {
    if !report.ok {
        return Ok(());
    }
    let verified = report.signed_size.min(report.verified_from + report.records_checked);
    std::fs::write(path, format!("{verified}\n")).map_err(|e| io_err(path, e))
}

/// Opens a database for verification only (SQLite read-only; no
/// migrations run).
pub async fn connect_read_only(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
        format!("{url}{}mode=ro", if url.contains('?') { '&' } else { '?' })
    } else {
        url.to_owned()
    };
    AnyPool::connect(&url).await
}

/// The head a checkpoint note in `dir` carries (for tests and reports).
pub fn read_checkpoint(dir: &Path, size: u64, key: &CheckpointVerifier) -> Result<TreeHead, WitnessError> {
    let path = dir.join(checkpoint_file(size));
    let note = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    key.open(&note).map_err(|source| WitnessError::Forged { path, source })
}
