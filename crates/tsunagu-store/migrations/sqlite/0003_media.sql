-- Media for step messages (issue 5): each upload with its conversion state. The files
-- themselves live in the media store (local disk or S3) under unguessable names.

CREATE TABLE media_files (
    id INTEGER PRIMARY KEY,
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
CREATE INDEX media_files_account ON media_files (account_id, id);
