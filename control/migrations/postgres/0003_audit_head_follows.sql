-- The chain head's hash follows the last record appended, in the same
-- statement as the insert: an append is one locking update of the head
-- (seq) and the inserts, with no separate write of the head's hash. Once
-- per statement, from the rows it inserted.
CREATE FUNCTION audit_head_follows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head SET hash = last.hash
    FROM (SELECT seq, hash FROM appended ORDER BY seq DESC LIMIT 1) AS last
    WHERE audit_head.id = 1 AND audit_head.seq = last.seq;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_log_head_follows AFTER INSERT ON audit_log
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT EXECUTE FUNCTION audit_head_follows();
