-- Ids are never reused. Without AUTOINCREMENT, SQLite gives a deleted highest id to the next
-- row: a conversion still running for a deleted media file (or its job, keyed by the id) would
-- be taken for the new file's, and a finished (deleted) job's id would name the next job in
-- logs and on an administrator's stale 失敗したジョブ page. PostgreSQL's identity never reuses ids.

CREATE TABLE media_files_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    original_name TEXT NOT NULL,
    category TEXT NOT NULL,
    -- processing, ready or failed
    status TEXT NOT NULL,
    -- Japanese, for the instructor, when failed
    reason TEXT NOT NULL DEFAULT '',
    -- the upload as received, on local disk until converted
    upload_path TEXT NOT NULL,
    -- names in the media store, chosen at upload so a retried conversion overwrites, never duplicates
    file_name TEXT NOT NULL,
    preview_name TEXT NOT NULL DEFAULT '',
    size BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT,
    width BIGINT,
    height BIGINT,
    -- JSON array of Japanese notes (e.g. a GIF sent as its first frame)
    notes TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO media_files_new (id, account_id, original_name, category, status, reason, upload_path, file_name,
                             preview_name, size, duration_ms, width, height, notes, created_at, updated_at)
    SELECT id, account_id, original_name, category, status, reason, upload_path, file_name,
           preview_name, size, duration_ms, width, height, notes, created_at, updated_at
    FROM media_files;
DROP TABLE media_files;
ALTER TABLE media_files_new RENAME TO media_files;
CREATE INDEX media_files_account ON media_files (account_id, id);

CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
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
