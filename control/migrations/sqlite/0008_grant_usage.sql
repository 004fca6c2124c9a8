-- What each grant was used for (issue 18): one row per grant, method,
-- operation (the API document's path template, or the request path where
-- the resource has no document) and decision outcome, with counts and the
-- first and last time seen. Written in the same transaction as the proxy
-- decisions' audit records.
CREATE TABLE grant_usage (
    grant_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    method TEXT NOT NULL,
    operation TEXT NOT NULL,
    outcome TEXT NOT NULL,
    calls BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (grant_id, method, operation, outcome)
);
CREATE INDEX grant_usage_resource ON grant_usage (resource, last_at);
