-- A dedupe key now means "jobs with this key do the same work; at most one of them waits in
-- the queue". It used to be unique over every row, so a job that failed for good kept its key
-- and a recurring job (maintenance.purge) could never be scheduled again; and a coalescing
-- job (line.events of one channel) could not be queued again while one was running.
-- The claim reads queued jobs by (state, run_at) and expired leases by (state, lease_until),
-- each through an index (no full scan and sort under the write lock).

CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    dedupe_key TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    locked_by TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO jobs_new (id, kind, payload, dedupe_key, state, attempts, max_attempts, run_at, locked_by, lease_until,
                      last_error, created_at, updated_at)
    SELECT id, kind, payload, dedupe_key, state, attempts, max_attempts, run_at, locked_by, lease_until,
           last_error, created_at, updated_at
    FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_due_idx ON jobs(state, run_at);
CREATE INDEX jobs_lease_idx ON jobs(state, lease_until);
CREATE INDEX jobs_key_idx ON jobs(dedupe_key);
CREATE UNIQUE INDEX jobs_queued_key ON jobs(dedupe_key) WHERE state = 'queued';
