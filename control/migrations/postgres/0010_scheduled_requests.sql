-- Scheduled access (issue 17): a request may name the time its window
-- starts (seconds since the epoch); its grant's `nbf` is that time. The
-- requester's groups as the identity provider gave them when the request
-- was made (a JSON array), shown to approvers as context. Both are NULL on
-- requests made before this migration.
ALTER TABLE access_requests ADD COLUMN starts_at_s BIGINT;
ALTER TABLE access_requests ADD COLUMN requester_groups TEXT;
-- When a grant's window opens (seconds); NULL on grants minted before
-- this migration, whose window opened when they were issued.
ALTER TABLE grants ADD COLUMN not_before_s BIGINT;
