-- The chain head's hash follows the last record appended, in the same
-- statement as the insert: an append is one locking update of the head
-- (seq) and the inserts, with no separate write of the head's hash.
-- Only the row whose seq is the head's (the last of an append) matches.
CREATE TRIGGER audit_log_head_follows AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1 AND seq = NEW.seq;
END;
