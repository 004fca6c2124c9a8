//! Signs checkpoints of the audit log's tree and publishes them to
//! witnesses outside the database: a background loop, never on the path of
//! an access decision.
//!
//! Every `checkpoint_every_records` new records, or once unsigned records
//! are `checkpoint_every_seconds` old, the loop reads the tree's root at the
//! chain head, checks with a consistency proof that it extends the last
//! checkpoint (so the service never signs a tree that forked from one it
//! signed before), signs it, stores it, and writes it to the witness
//! directory with the leaf hashes it adds, so that a verifier can name the
//! first record that disagrees; webhook targets that list `audit.checkpoint`
//! get it through the notification outbox (at least once, in the
//! transaction that stores it). The directory is append-only: a file is
//! never replaced, and finding a different one under the same name is
//! reported as a fork. A failure is counted, logged and shown by `/readyz`,
//! and retried on the next tick; access decisions never wait for it. After
//! a crash, the next checkpoint covers everything since the last one the
//! witness holds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::checkpoint::{CheckpointError, CheckpointSigner, TreeHead};
use crate::audit::merkle;
use crate::audit::tree::{self, TreeError};
use crate::store;
use crate::App;

/// Why a checkpoint was not signed or published; `code` is stable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The stored tree could not be read.
    #[error("audit tree: {0}")]
    Tree(#[from] TreeError),
    /// A stored checkpoint does not verify with our key.
    #[error("stored checkpoint of size {size} is not ours: {source}")]
    StoredCheckpoint {
        /// Its size.
        size: i64,
        /// Why.
        source: CheckpointError,
    },
    /// The tree no longer extends the last signed checkpoint.
    #[error("the audit tree of size {new} does not extend the signed checkpoint of size {old}: the log was rewritten")]
    Fork {
        /// The signed size.
        old: u64,
        /// The current size.
        new: u64,
    },
    /// The witness directory failed.
    #[error("witness directory {}: {message}", path.display())]
    Witness {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl PublishError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Db(_) => "database",
            PublishError::Tree(_) => "audit_tree_unreadable",
            PublishError::StoredCheckpoint { .. } => "stored_checkpoint_invalid",
            PublishError::Fork { .. } => "audit_log_forked",
            PublishError::Witness { .. } => "witness_publication_failed",
        }
    }
}

/// What the loop last did, for `/readyz` and tests.
#[derive(Debug, Default)]
pub struct PublishStatus {
    /// The last checkpoint signed and published here.
    pub last: Option<TreeHead>,
    /// The last failure, if the last attempt failed (code, message).
    pub failing: Option<(&'static str, String)>,
}

/// The publisher's shared state.
#[derive(Debug, Default, Clone)]
pub struct Publisher(Arc<Mutex<PublishStatus>>);

impl Publisher {
    /// A line for `/readyz`: checkpoints are informational there, never a
    /// reason to take the service out of rotation.
    pub fn readiness(&self, enabled: bool) -> String {
        if !enabled {
            return "audit checkpoints: disabled (no audit.signing_key)".to_owned();
        }
        let status = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match (&status.failing, &status.last) {
            (Some((code, message)), _) => format!("audit checkpoints: failing ({code}): {message}"),
            (None, Some(head)) => format!("audit checkpoints: ok (last size {})", head.size),
            (None, None) => "audit checkpoints: ok (none yet)".to_owned(),
        }
    }

    /// The current status.
    pub fn last(&self) -> Option<TreeHead> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).last
    }
}

/// Runs until aborted: one attempt per second.
pub async fn run(app: Arc<App>) {
    if app.cfg.audit.signer.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        publish_due(&app).await;
    }
}

/// One attempt: signs and publishes if a checkpoint is due; records the
/// outcome in the status and metrics. Returns the checkpoint signed.
pub async fn publish_due(app: &App) -> Option<TreeHead> {
    let result = try_publish(app, false).await;
    record(app, result)
}

/// Signs and publishes a checkpoint of everything appended so far, due or
/// not (tests, and `jitgate audit checkpoint` if added).
pub async fn publish_now(app: &App) -> Option<TreeHead> {
    let result = try_publish(app, true).await;
    record(app, result)
}

fn record(app: &App, result: Result<Option<TreeHead>, PublishError>) -> Option<TreeHead> {
    let mut status = app.checkpoints.0.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(signed) => {
            status.failing = None;
            if let Some(head) = signed {
                app.metrics.audit_checkpoints_signed.inc();
                status.last = Some(head);
            }
            signed
        }
        Err(e) => {
            app.metrics.audit_checkpoint_failures.inc();
            tracing::warn!(code = e.code(), error = %e, "audit checkpoint not published");
            status.failing = Some((e.code(), e.to_string()));
            None
        }
    }
}

/// The last checkpoint stored, verified with our key (a row an attacker
/// wrote is refused rather than extended), and when it was made.
async fn last_stored(app: &App, signer: &CheckpointSigner) -> Result<Option<(TreeHead, i64)>, PublishError> {
    let Some(stored) = store::audit::checkpoint(&app.db.pool, None).await? else {
        return Ok(None);
    };
    let (size, note) = (stored.size, &stored.note);
    let head = signer
        .verifier()
        .open(note)
        .map_err(|source| PublishError::StoredCheckpoint { size, source })?;
    if head.size as i64 != size {
        return Err(PublishError::StoredCheckpoint {
            size,
            source: CheckpointError::Malformed("stored under another size"),
        });
    }
    Ok(Some((head, stored.at)))
}

async fn try_publish(app: &App, force: bool) -> Result<Option<TreeHead>, PublishError> {
    let Some(signer) = &app.cfg.audit.signer else {
        return Ok(None);
    };
    let now = app.clock.now_ms();
    let size = {
        let mut conn = app.db.pool.acquire().await?;
        store::audit::head(&mut conn).await?.0 as u64
    };
    let stored = last_stored(app, signer).await?;
    // What this process signed, and what the witness directory holds, are
    // known even if the table was rolled back (a restored backup): the
    // tree must extend the largest of them, or nothing is signed.
    let witnessed = match &app.cfg.audit.witness_dir {
        Some(dir) => last_witnessed(dir, signer)?,
        None => None,
    };
    let mut last = stored;
    for known in [app.checkpoints.last(), witnessed].into_iter().flatten() {
        if last.is_none_or(|(h, _)| known.size > h.size) {
            last = Some((known, last.map_or(0, |(_, at)| at)));
        }
    }
    let (last_size, last_at) = last.map_or((0, 0), |(h, at)| (h.size, at));
    if size < last_size {
        return Err(PublishError::Fork {
            old: last_size,
            new: size,
        });
    }
    let pending = size - last_size;
    let due = pending > 0
        && (force
            || pending >= app.cfg.audit.every_records
            || now - last_at >= app.cfg.audit.every_seconds as i64 * 1000);
    if !due {
        return Ok(None);
    }
    let root = tree::root(&app.db, size).await?;
    if let Some((old, _)) = last {
        let proof = tree::consistency_proof(&app.db, old.size, size).await?;
        if !merkle::verify_consistency(old.size, size, &old.root, &root, &proof) {
            return Err(PublishError::Fork {
                old: old.size,
                new: size,
            });
        }
    }
    let head = TreeHead { size, root };
    let note = signer.sign(&head);
    // The checkpoint and its webhook deliveries in one transaction; a
    // replica that signed the same size first has queued them already.
    let mut tx = app.db.pool.begin().await?;
    if store::audit::insert_checkpoint(&mut tx, size as i64, &hex::encode(root), now, &note).await? {
        crate::notify::enqueue_checkpoint(app, &mut tx, size, &note, now).await?;
    }
    tx.commit().await?;
    if let Some(dir) = &app.cfg.audit.witness_dir {
        publish_to_dir(app, dir, &head, &note).await?;
    }
    Ok(Some(head))
}

/// The file names of the witness directory.
pub fn checkpoint_file(size: u64) -> String {
    format!("{size:020}.checkpoint")
}

/// The leaf hashes of records `from + 1 ..= to`, one hex line each.
pub fn leaves_file(from: u64, to: u64) -> String {
    format!("{from:020}-{to:020}.leaves")
}

/// The largest checkpoint size in the directory (0 if none): the leaves
/// published next start there, so a checkpoint lost in a crash leaves no
/// gap in the leaves.
fn last_in_dir(dir: &Path) -> Result<u64, PublishError> {
    let entries = std::fs::read_dir(dir).map_err(|e| witness_err(dir, e))?;
    let mut last = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(size) = name.to_str().and_then(|n| n.strip_suffix(".checkpoint")) else {
            continue;
        };
        if let Ok(size) = size.parse::<u64>() {
            last = last.max(size);
        }
    }
    Ok(last)
}

/// The largest checkpoint in the witness directory, verified with our key.
fn last_witnessed(dir: &Path, signer: &CheckpointSigner) -> Result<Option<TreeHead>, PublishError> {
    if !dir.exists() {
        return Ok(None);
    }
    let size = last_in_dir(dir)?;
    if size == 0 {
        return Ok(None);
    }
    let path = dir.join(checkpoint_file(size));
    let note = std::fs::read_to_string(&path).map_err(|e| witness_err(&path, e))?;
    let head = signer
        .verifier()
        .open(&note)
        .map_err(|e| witness_err(&path, format!("refused: {e}")))?;
    Ok(Some(head))
}

fn witness_err(path: &Path, e: impl std::fmt::Display) -> PublishError {
    PublishError::Witness {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes `contents` to `path` unless it exists; an existing file with
/// other contents is an error (the directory is append-only). Written to a
/// temporary name and linked into place, so a reader never sees half a file.
fn write_once(path: &Path, contents: &str) -> Result<(), PublishError> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return if existing == contents {
            Ok(())
        } else {
            Err(witness_err(path, "exists with other contents (a fork?)"))
        };
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, contents).map_err(|e| witness_err(&tmp, e))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        // Another replica published the same file meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => write_once(path, contents),
        Err(e) => Err(witness_err(path, e)),
    }
}

async fn publish_to_dir(app: &App, dir: &Path, head: &TreeHead, note: &str) -> Result<(), PublishError> {
    std::fs::create_dir_all(dir).map_err(|e| witness_err(dir, e))?;
    let from = last_in_dir(dir)?;
    if from < head.size {
        let leaves = store::audit::tree_leaves(&app.db, from, head.size).await?;
        if leaves.len() as u64 != head.size - from {
            return Err(PublishError::Tree(TreeError::Missing(merkle::MissingNode((0, from)))));
        }
        let mut text = String::with_capacity(leaves.len() * 65);
        for leaf in &leaves {
            text.push_str(leaf);
            text.push('\n');
        }
        write_once(&dir.join(leaves_file(from, head.size)), &text)?;
    }
    write_once(&dir.join(checkpoint_file(head.size)), note)
}
