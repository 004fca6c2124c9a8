-- jitgate schema (SQLite). Times are milliseconds since the epoch unless
-- the column says _s (seconds, as in grant tokens).
CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    requester TEXT NOT NULL,
    requester_email TEXT,
    scope TEXT NOT NULL,
    duration_seconds INTEGER NOT NULL,
    reason TEXT NOT NULL,
    ticket TEXT,
    source_cidrs TEXT,
    state TEXT NOT NULL,
    approvals_required INTEGER NOT NULL,
    break_glass INTEGER NOT NULL DEFAULT 0,
    review_state TEXT,
    reviewed_by TEXT,
    reviewed_at INTEGER,
    auto_rule TEXT,
    extends_request TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    pending_until INTEGER NOT NULL,
    resolved_at INTEGER,
    lock_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_requests_state ON access_requests (state, resource);
CREATE INDEX access_requests_requester ON access_requests (requester);

CREATE TABLE votes (
    request_id TEXT NOT NULL REFERENCES access_requests (id),
    approver TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT,
    channel TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES access_requests (id),
    subject TEXT NOT NULL,
    resource TEXT NOT NULL,
    kid TEXT NOT NULL,
    token TEXT NOT NULL,
    issued_at_s INTEGER NOT NULL,
    expires_at_s INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT,
    revoke_reason TEXT,
    expiry_recorded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX grants_expiry ON grants (expires_at_s);
CREATE INDEX grants_revoked ON grants (revoked_at);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT,
    request_id TEXT,
    grant_id TEXT,
    channel TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_request ON audit_log (request_id);
CREATE INDEX audit_log_grant ON audit_log (grant_id);

-- Append-only: the database refuses edits; the hash chain detects anyone
-- who bypasses this with direct access.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
