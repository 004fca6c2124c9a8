-- Web console sessions, kept server-side: the browser holds only a random
-- session id in an HttpOnly cookie; the table keys rows by the id's
-- SHA-256, so a read of the database does not yield usable cookies.
-- Signing out or expiry deletes the row, which ends the session at once on
-- every replica. The CSRF token of the session's forms lives here too.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    email TEXT,
    groups_json TEXT NOT NULL,
    method TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- When the approvers of a request pending for long were reminded (one
-- `request.reminder` through the outbox per request).
ALTER TABLE access_requests ADD COLUMN reminded_at BIGINT;

-- The console's audit page filters by actor ("what did this person do");
-- without an index that is a scan of the whole log.
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
