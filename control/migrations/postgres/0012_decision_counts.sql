-- Allowed requests counted at the proxies (`report_allowed: aggregate`):
-- one row per grant, method, scope rule and status that a reporter counted
-- over one interval, with how many calls and the first and last one's
-- time. A batch's counts are also the content of one
-- `proxy.decisions_counted` audit record (`batch_seq`, and `position` in
-- its list), so the hash chain and the Merkle tree cover them: this table
-- is what the service reads by grant; verification compares it with the
-- records (a row edited, added or removed is a broken link).
CREATE TABLE decision_counts (
    batch_seq BIGINT NOT NULL,
    position BIGINT NOT NULL,
    grant_id TEXT NOT NULL,
    resource TEXT,
    method TEXT NOT NULL,
    rule BIGINT NOT NULL,
    status BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (batch_seq, position)
);
CREATE INDEX decision_counts_grant ON decision_counts (grant_id, batch_seq);
-- Append-only, like the records that hold them.
CREATE FUNCTION decision_counts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decision_counts is append-only';
END;
$$;
CREATE TRIGGER decision_counts_no_update BEFORE UPDATE OR DELETE ON decision_counts
FOR EACH ROW EXECUTE FUNCTION decision_counts_append_only();
