-- A dedupe key now means "jobs with this key do the same work; at most one of them waits in
-- the queue" (see the SQLite tree for why). Expired leases are found through their own index.
ALTER TABLE jobs DROP CONSTRAINT jobs_dedupe_key_key;
CREATE INDEX jobs_lease_idx ON jobs(state, lease_until);
CREATE INDEX jobs_key_idx ON jobs(dedupe_key);
CREATE UNIQUE INDEX jobs_queued_key ON jobs(dedupe_key) WHERE state = 'queued';
