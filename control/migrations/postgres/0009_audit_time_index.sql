-- The audit log filtered by time (`GET /v1/audit?from_ms=&until_ms=`, the
-- console's audit page and exports): an index on the record's time, so a
-- period is found without reading the log from its first record.
CREATE INDEX audit_log_at ON audit_log (at);
