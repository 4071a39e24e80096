-- LINE: instructors' Messaging API channels, webhook events as received, and each channel's
-- friend list (issue 4). Channel secrets live sealed in encrypted_secrets.

CREATE TABLE line_channels (
    channel_id TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    bot_user_id TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX line_channels_account ON line_channels (account_id);

CREATE TABLE line_webhook_events (
    id INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    webhook_event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    user_id TEXT,
    event_ts BIGINT NOT NULL,
    redelivery BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    handled_at BIGINT,
    UNIQUE (channel_id, webhook_event_id)
);
CREATE INDEX line_webhook_events_unhandled ON line_webhook_events (channel_id, handled_at, event_ts);

CREATE TABLE line_friends (
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    followed_at BIGINT,
    status_event_ts BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
