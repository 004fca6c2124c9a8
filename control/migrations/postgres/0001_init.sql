-- jitgate schema (PostgreSQL). Times are milliseconds since the epoch unless
-- the column says _s (seconds, as in grant tokens).
CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    requester TEXT NOT NULL,
    requester_email TEXT,
    scope TEXT NOT NULL,
    duration_seconds BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ticket TEXT,
    source_cidrs TEXT,
    state TEXT NOT NULL,
    approvals_required BIGINT NOT NULL,
    break_glass BIGINT NOT NULL DEFAULT 0,
    review_state TEXT,
    reviewed_by TEXT,
    reviewed_at BIGINT,
    auto_rule TEXT,
    extends_request TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    pending_until BIGINT NOT NULL,
    resolved_at BIGINT,
    lock_version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX access_requests_state ON access_requests (state, resource);
CREATE INDEX access_requests_requester ON access_requests (requester);

CREATE TABLE votes (
    request_id TEXT NOT NULL REFERENCES access_requests (id),
    approver TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT,
    channel TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES access_requests (id),
    subject TEXT NOT NULL,
    resource TEXT NOT NULL,
    kid TEXT NOT NULL,
    token TEXT NOT NULL,
    issued_at_s BIGINT NOT NULL,
    expires_at_s BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT,
    revoke_reason TEXT,
    expiry_recorded BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX grants_expiry ON grants (expires_at_s);
CREATE INDEX grants_revoked ON grants (revoked_at);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
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
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

