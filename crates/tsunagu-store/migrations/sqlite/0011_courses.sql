-- Courses on LINE (issue 13): an instructor's course and its step messages, students, each
-- student's subscription to a course with the instant of its next delivery, each step handled
-- for a subscription (sent or skipped, at most once), and each request to LINE with the retry
-- key written before it is sent. Instants are UTC milliseconds.

CREATE TABLE courses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- the unguessable part of the course page's URL
    public_key TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- draft or published
    state TEXT NOT NULL,
    -- IANA zone in which 時刻指定 is read
    time_zone TEXT NOT NULL,
    -- the Messaging API channel that delivers the steps (LINEステップ配信設定)
    line_channel_id TEXT REFERENCES line_channels(channel_id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX courses_account ON courses (account_id, id);
CREATE INDEX courses_line_channel ON courses (line_channel_id);

CREATE TABLE course_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id BIGINT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    -- text, image, audio or video
    kind TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    media_id BIGINT REFERENCES media_files(id),
    -- 配信タイミング: NULL day = 購読開始直後; else day N after the start at minute of the day
    timing_day BIGINT,
    timing_minute BIGINT,
    -- 通目
    position BIGINT NOT NULL,
    -- subscriptions that started in [valid_from, valid_until) receive this step (an edit for
    -- new students only ends the old version and starts a new one)
    valid_from BIGINT NOT NULL DEFAULT 0,
    valid_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((timing_day IS NULL AND timing_minute IS NULL)
        OR (timing_day >= 0 AND timing_minute >= 0 AND timing_minute < 1440))
);
CREATE INDEX course_steps_course ON course_steps (course_id);

CREATE TABLE students (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- lowercase; NULL for a student who signed in with LINE only
    email TEXT UNIQUE,
    password_hash TEXT,
    display_name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE course_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id BIGINT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    student_id BIGINT NOT NULL REFERENCES students(id) ON DELETE CASCADE,
    -- the student's LINE user on the course's Messaging API channel, once linked
    line_user_id TEXT,
    -- waiting_friend (started, not yet a friend), active, blocked, or paused (the channel's
    -- monthly quota, or the account's plan)
    state TEXT NOT NULL,
    -- when the subscription started (became a friend): day 0 of 時刻指定
    started_at BIGINT,
    -- when the next step not yet handled falls due; NULL when none is left
    next_at BIGINT,
    -- the last unblock: steps that fell due before it and were not handled are skipped
    resumed_at BIGINT,
    -- the follow event's reply token and until when it is worth trying
    reply_token TEXT,
    reply_until BIGINT,
    -- the dispatcher holding it
    locked_by TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (course_id, student_id)
);
CREATE INDEX course_subscriptions_due ON course_subscriptions (next_at) WHERE state = 'active';
CREATE INDEX course_subscriptions_line ON course_subscriptions (line_user_id, course_id);

-- One request to LINE: written with its retry key before it is sent; a retry sends the same key.
CREATE TABLE line_sends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT NOT NULL,
    -- reply, push or multicast
    method TEXT NOT NULL,
    -- UUID sent as X-Line-Retry-Key (none for reply, which LINE refuses it on)
    retry_key TEXT UNIQUE,
    -- the request's JSON body
    body TEXT NOT NULL,
    -- pending, sent or failed
    state TEXT NOT NULL,
    -- a pending request is another dispatcher's to send (again) once this has passed
    lease_until BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- Japanese, for the delivery log
    reason TEXT NOT NULL DEFAULT '',
    test BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX line_sends_pending ON line_sends (lease_until) WHERE state = 'pending';

-- A step handled for a subscription: at most once.
CREATE TABLE step_deliveries (
    subscription_id BIGINT NOT NULL REFERENCES course_subscriptions(id) ON DELETE CASCADE,
    step_id BIGINT NOT NULL REFERENCES course_steps(id) ON DELETE CASCADE,
    -- sending (its request is written), sent, skipped (blocked), failed
    outcome TEXT NOT NULL,
    send_id BIGINT REFERENCES line_sends(id),
    at BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, step_id)
);
CREATE INDEX step_deliveries_send ON step_deliveries (send_id);
