-- Exactly-once decision reports: each proxy reporter (a worker, named by
-- a random `instance`) numbers its batches 1, 2, ... and resends a batch
-- unchanged until it is acknowledged. The last `seq` written per reporter
-- is updated in the transaction that writes the batch's records, so a
-- batch sent again after a lost acknowledgement is recognised and not
-- written twice.
CREATE TABLE report_cursors (
    proxy TEXT NOT NULL,
    instance TEXT NOT NULL,
    last_seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (proxy, instance)
);
CREATE INDEX report_cursors_updated ON report_cursors (updated_at);
