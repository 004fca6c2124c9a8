-- Where verifications of the log ended with every link intact: the record
-- reached and its hash. `GET /v1/audit/verify` starts from the last one
-- (after checking that record still has that hash), so its cost grows with
-- new records, not with history; `full=true` ignores this table. It is a
-- convenience in the database, not evidence: witness verification keeps
-- its own state outside the database.
CREATE TABLE audit_verified (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL
);
