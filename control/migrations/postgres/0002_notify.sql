-- Notifications: an outbox written in the same transaction as the event,
-- delivered by a background sender; and the signatures of inbound
-- callbacks already used (replay protection).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

CREATE TABLE inbound_signatures (
    signature TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

ALTER TABLE grants ADD COLUMN expiring_notified BIGINT NOT NULL DEFAULT 0;
