-- Device-bound grants (issue 16): the thumbprint (x5t#S256) a request asks
-- its grant to be bound to, and which proxies serve each resource with
-- which grant-spec version, as their sync calls report it. One row per
-- proxy and resource, updated in place, so the table grows with the fleet,
-- not with the number of polls.
ALTER TABLE access_requests ADD COLUMN cnf_x5t_s256 TEXT;

CREATE TABLE proxy_sightings (
    proxy TEXT NOT NULL,
    resource TEXT NOT NULL,
    grant_spec TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (proxy, resource)
);
CREATE INDEX proxy_sightings_resource ON proxy_sightings (resource, seen_at);
