-- The RFC 9162 Merkle tree over the audit log: the hash of every complete
-- subtree (level, idx) covering leaves [idx * 2^level, (idx + 1) * 2^level),
-- written in the append's transaction as it completes (about two rows per
-- record). The root at any size and every proof read O(log n) of them.
-- Nothing here is trusted by a verifier: it recomputes from the records and
-- compares with checkpoints signed by a key the database never holds.
CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit_tree is append-only'); END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit_tree is append-only'); END;

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per signed size, as
-- the service published them; the copies that count are the witnesses'.
CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    root TEXT NOT NULL,
    at INTEGER NOT NULL,
    note TEXT NOT NULL
);
