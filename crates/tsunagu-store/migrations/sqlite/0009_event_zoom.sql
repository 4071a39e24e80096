-- ［Zoom設定］ of an event (issue 12): what the organizer chose, and what Zoom holds. A save
-- bumps `revision`; the job that talks to Zoom records the revision it applied, so a save made
-- while it ran is applied by the next run, never lost.

CREATE TABLE event_zoom (
    event_id BIGINT PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    -- 利用する (1) / 利用しない (0)
    enabled BIGINT NOT NULL,
    -- meeting or webinar
    kind TEXT NOT NULL,
    -- 開催日時 and 所要時間
    starts_at BIGINT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    -- the screen's on/off options and choices, as JSON
    options TEXT NOT NULL,
    -- none, pending, created, failed or deleted
    state TEXT NOT NULL,
    -- Japanese, for the organizer, when failed
    reason TEXT NOT NULL DEFAULT '',
    -- the meeting or webinar at Zoom, once created
    zoom_id BIGINT,
    zoom_kind TEXT NOT NULL DEFAULT '',
    join_url TEXT NOT NULL DEFAULT '',
    passcode TEXT NOT NULL DEFAULT '',
    revision BIGINT NOT NULL DEFAULT 1,
    applied_revision BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
