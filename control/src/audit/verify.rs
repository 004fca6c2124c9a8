//! Checking the log as the database holds it (`GET /v1/audit/verify`,
//! `jitgate audit verify` without `--witness`): every chain link, the chain
//! head, that the stored decision counts are those their records hold
//! ([`super::counts`]), and, when the service signs checkpoints, that the
//! records up to each signed checkpoint hash to its signed root.
//!
//! By default a verification starts where the last one that found
//! everything intact ended (`audit_verified`, migration 0005), after
//! checking that the record there still has the hash it had: the cost grows
//! with the records appended since, not with history. The tree is resumed
//! from its stored frontier there (O(log n) nodes), and the first signed
//! checkpoint after it checks that frontier too, so an older record edited
//! together with the tree is found at that checkpoint. An older record
//! edited without recomputing anything is found only by [`Scope::Full`].
//! Where the last verification ended is kept in the database: someone who
//! can write it can move it; witness verification
//! ([`crate::audit::witness`]) keeps its state outside.

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use std::collections::VecDeque;

use super::checkpoint::CheckpointVerifier;
use super::counts;
use super::merkle::{self, Appender};
use super::record;
use super::tree::{self, TreeError};
use crate::store::counts::StoredCount;
use crate::store::{self, Db};

/// How much of the log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// From where the last intact verification ended.
    Incremental,
    /// Every record from the first.
    Full,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// Whether every link (and every signed root checked) holds.
    pub ok: bool,
    /// Records read and checked by this verification.
    pub records: i64,
    /// The record where an earlier intact verification ended and this one
    /// started (its hash is checked, the records before it are not read);
    /// 0 when every record was read.
    #[serde(default)]
    pub from: i64,
    /// Signed checkpoints whose root was recomputed from the records.
    #[serde(default)]
    pub checkpoints: i64,
    /// The first broken link, if any.
    pub first_broken: Option<BrokenLink>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BrokenLink {
    /// The sequence number where the chain breaks.
    pub seq: i64,
    /// What is wrong there.
    pub reason: String,
}

/// Where a verification starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// Before the first record.
    Genesis,
    /// After a record an earlier verification found intact, with its hash.
    After { seq: i64, hash: String },
    /// The log is shorter than an earlier verification found it.
    Shrunk { verified: i64 },
}

/// The starting point, from the scope, the last intact verification
/// remembered (seq, hash) and the chain head's seq.
fn start_from(scope: Scope, remembered: Option<(i64, String)>, head_seq: i64) -> Start {
    match (scope, remembered) {
        (Scope::Full, _) | (Scope::Incremental, None) => Start::Genesis,
        (Scope::Incremental, Some((seq, _))) if seq > head_seq => Start::Shrunk { verified: seq },
        (Scope::Incremental, Some((seq, hash))) => Start::After { seq, hash },
    }
}

/// A verification under way: what has been checked so far.
struct Progress {
    from: i64,
    records: i64,
    checkpoints: i64,
}

impl Progress {
    fn broken(&self, seq: i64, reason: impl Into<String>) -> Verification {
        Verification {
            ok: false,
            records: self.records,
            from: self.from,
            checkpoints: self.checkpoints,
            first_broken: Some(BrokenLink {
                seq,
                reason: reason.into(),
            }),
        }
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Checks the log: every link from the starting point to the head, the
/// head, and with `key` every signed checkpoint in that range. An intact
/// result is remembered (at `now_ms`) as the next starting point.
pub async fn verify(
    db: &Db,
    scope: Scope,
    key: Option<&CheckpointVerifier>,
    now_ms: i64,
) -> Result<Verification, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    // The head first: every record up to its seq was committed with it, and
    // records appended while we read (seq beyond it) are left for the next
    // check. Reading it last would race concurrent appends.
    let (head_seq, head_hash) = store::audit::head(&mut conn).await?;
    let remembered = store::audit::last_verified(&mut conn).await?;
    let start = start_from(scope, remembered, head_seq);
    let from = match &start {
        Start::After { seq, .. } => *seq,
        _ => 0,
    };
    let mut progress = Progress {
        from,
        records: 0,
        checkpoints: 0,
    };
    let (mut prev, mut appender) = match start {
        Start::Shrunk { verified } => {
            return Ok(progress.broken(
                head_seq + 1,
                format!(
                    "the log holds {head_seq} records but held {verified} when last verified \
                     (truncated, or restored from an older backup?)"
                ),
            ))
        }
        Start::Genesis => (GENESIS.to_owned(), Appender::empty()),
        Start::After { seq, hash } => {
            if let Some(reason) = check_resumed_record(&mut conn, seq, &hash).await? {
                return Ok(progress.broken(seq, reason));
            }
            match tree::appender_at(&mut conn, seq as u64).await {
                Ok(appender) => (hash, appender),
                Err(TreeError::Db(e)) => return Err(e),
                Err(e) => return Ok(progress.broken(seq, format!("the stored Merkle tree is damaged: {e}"))),
            }
        }
    };
    let checkpoints = if key.is_some() {
        store::audit::checkpoints_between(&mut conn, from, head_seq).await?
    } else {
        vec![]
    };
    let mut due = checkpoints.iter().peekable();
    let mut expected_seq = from + 1;
    let mut scratch = Vec::new();
    let mut counted = CountCursor::new(from, head_seq);
    while expected_seq <= head_seq {
        let rows = store::audit::range(&mut *conn, expected_seq, head_seq, 5000).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let (seq, input) = (row.seq, record::leaf_input(&row));
            if seq != expected_seq {
                return Ok(progress.broken(expected_seq, "record missing (deleted?)"));
            }
            if row.prev_hash != prev {
                return Ok(progress.broken(seq, "previous-hash link does not match"));
            }
            if record::chain_hash_of_input(&prev, &input) != row.hash {
                return Ok(progress.broken(seq, "record content does not match its hash (edited?)"));
            }
            let stored = match counted.of(&mut conn, seq).await? {
                Ok(stored) => stored,
                Err(reason) => return Ok(progress.broken(seq, reason)),
            };
            if let Some(reason) = counts::mismatch(&row.action, &row.details, &stored) {
                return Ok(progress.broken(seq, reason));
            }
            scratch.clear();
            appender.push(merkle::leaf_hash(input.as_bytes()), &mut scratch);
            if let (Some(checkpoint), Some(key)) = (due.peek(), key) {
                if checkpoint.size == seq {
                    if let Some(reason) = check_checkpoint(key, seq, &checkpoint.note, &appender) {
                        return Ok(progress.broken(seq, reason));
                    }
                    progress.checkpoints += 1;
                    due.next();
                }
            }
            prev = row.hash;
            expected_seq += 1;
            progress.records += 1;
        }
    }
    if from + progress.records != head_seq {
        return Ok(progress.broken(
            from + progress.records + 1,
            "records up to the chain head are missing (deleted or truncated?)",
        ));
    }
    if head_hash != prev {
        return Ok(progress.broken(head_seq, "the chain head does not match the last record"));
    }
    if head_seq > from {
        store::audit::mark_verified(db, head_seq, &head_hash, now_ms).await?;
    }
    Ok(Verification {
        ok: true,
        records: progress.records,
        from,
        checkpoints: progress.checkpoints,
        first_broken: None,
    })
}

/// The stored decision counts, read in chunks alongside the records they
/// belong to, so that memory stays bounded whatever a page of records
/// holds (one record's counts at most, and a chunk).
struct CountCursor {
    buffered: VecDeque<StoredCount>,
    /// The last (`batch_seq`, `position`) read.
    read: (i64, i64),
    /// The last record whose counts are read (the head at the start).
    to: i64,
    exhausted: bool,
}

impl CountCursor {
    const CHUNK: i64 = 10_000;

    /// Counts of the records after `from`; from the first record, also any
    /// stored under no record at all (a seq below 1).
    fn new(from: i64, to: i64) -> Self {
        let read = if from == 0 {
            (i64::MIN, i64::MIN)
        } else {
            (from, i64::MAX)
        };
        CountCursor {
            buffered: VecDeque::new(),
            read,
            to,
            exhausted: false,
        }
    }

    /// The counts stored under record `seq` (records are visited in order);
    /// `Err` if counts are stored under a seq that no record was visited
    /// for (below 1).
    async fn of(
        &mut self,
        conn: &mut AnyConnection,
        seq: i64,
    ) -> Result<Result<Vec<StoredCount>, &'static str>, sqlx::Error> {
        let mut out = Vec::new();
        loop {
            if self.buffered.is_empty() && !self.exhausted {
                let chunk = store::counts::after(conn, self.read, self.to, Self::CHUNK).await?;
                self.exhausted = (chunk.len() as i64) < Self::CHUNK;
                if let Some(last) = chunk.last() {
                    self.read = (last.batch_seq, last.position);
                }
                self.buffered.extend(chunk);
            }
            match self.buffered.front() {
                Some(c) if c.batch_seq < seq => return Ok(Err("counts are stored under no record (added?)")),
                Some(c) if c.batch_seq == seq => out.extend(self.buffered.pop_front()),
                _ => return Ok(Ok(out)),
            }
        }
    }
}

/// The record an earlier verification ended on must still be there, with
/// the hash it had and content that hashes to it; `Some(reason)` if not.
async fn check_resumed_record(conn: &mut AnyConnection, seq: i64, hash: &str) -> Result<Option<String>, sqlx::Error> {
    let Some(row) = store::audit::by_seq(&mut *conn, seq).await? else {
        return Ok(Some("record missing (deleted?)".into()));
    };
    let input = record::leaf_input(&row);
    let (prev_hash, stored) = (&row.prev_hash, &row.hash);
    if stored != hash {
        return Ok(Some(
            "its hash changed since it was last verified (rewritten?); a full verification finds the first change"
                .into(),
        ));
    }
    if record::chain_hash_of_input(prev_hash, &input) != *stored {
        return Ok(Some("record content does not match its hash (edited?)".into()));
    }
    Ok(None)
}

/// A signed checkpoint of `size` against the tree recomputed up to it;
/// `Some(reason)` if the note does not verify or its root differs.
fn check_checkpoint(key: &CheckpointVerifier, size: i64, note: &str, tree: &Appender) -> Option<String> {
    match key.open(note) {
        Err(e) => Some(format!("the signed checkpoint of {size} records is refused: {e}")),
        Ok(head) if head.size != size as u64 => Some(format!(
            "the checkpoint stored for {size} records is signed for {}",
            head.size
        )),
        Ok(head) if head.root != tree.root() => Some(format!(
            "the records up to {size} do not hash to the root of its signed checkpoint \
             (a record or the stored tree was changed at or before it)"
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_verification_starts_at_the_first_record_whatever_was_verified() {
        assert_eq!(start_from(Scope::Full, Some((5, "h".into())), 9), Start::Genesis);
        assert_eq!(start_from(Scope::Full, None, 9), Start::Genesis);
    }

    #[test]
    fn an_incremental_one_starts_after_the_last_intact_verification() {
        assert_eq!(start_from(Scope::Incremental, None, 9), Start::Genesis);
        assert_eq!(
            start_from(Scope::Incremental, Some((5, "h".into())), 9),
            Start::After {
                seq: 5,
                hash: "h".into()
            }
        );
        assert_eq!(
            start_from(Scope::Incremental, Some((9, "h".into())), 9),
            Start::After {
                seq: 9,
                hash: "h".into()
            }
        );
    }

    #[test]
    fn a_log_shorter_than_last_verified_is_a_break_not_a_start() {
        assert_eq!(
            start_from(Scope::Incremental, Some((10, "h".into())), 9),
            Start::Shrunk { verified: 10 }
        );
    }
}
