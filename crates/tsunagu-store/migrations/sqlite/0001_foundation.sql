-- Foundation schema (SQLite). Keep in step with ../postgres/0001_foundation.sql;
-- the schema comparison test fails when they drift.
-- Instants are BIGINT milliseconds since the Unix epoch, UTC.

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    plan TEXT NOT NULL,
    role TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions(account_id);

CREATE TABLE login_throttle (
    throttle_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
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
CREATE INDEX jobs_due_idx ON jobs(state, run_at);

CREATE TABLE mails (
    id INTEGER PRIMARY KEY,
    account_id BIGINT REFERENCES accounts(id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    status TEXT NOT NULL,
    transport TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX mails_account_idx ON mails(account_id, created_at);

CREATE TABLE encrypted_secrets (
    id INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, purpose)
);

CREATE TABLE zoom_credentials (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    auth_method TEXT NOT NULL,
    zoom_account_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE diagnostic_runs (
    id INTEGER PRIMARY KEY,
    job_key TEXT NOT NULL,
    phase TEXT NOT NULL,
    worker TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX diagnostic_runs_key_idx ON diagnostic_runs(job_key);
