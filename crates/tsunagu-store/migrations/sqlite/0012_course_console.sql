-- The course console (issue 13): what LINEステップ配信設定 learned about a channel's bot, the
-- instructor's LINE Login channels (公式LINE連携; secrets sealed in encrypted_secrets) and the
-- courses each serves, LINE accounts registered as テスト配信先, a course's lessons, and step
-- messages deleted from the console (kept for the delivery log).

ALTER TABLE line_channels ADD COLUMN bot_name TEXT NOT NULL DEFAULT '';
ALTER TABLE line_channels ADD COLUMN bot_picture_url TEXT;
ALTER TABLE line_channels ADD COLUMN bot_basic_id TEXT NOT NULL DEFAULT '';

CREATE TABLE line_login_channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    channel_id TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX line_login_channels_account ON line_login_channels (account_id);

-- the LINE Login channel a LINE-linked course signs its students in with
ALTER TABLE courses ADD COLUMN line_login_id BIGINT REFERENCES line_login_channels(id) ON DELETE SET NULL;

-- A LINE account an instructor registered as テスト配信先, by LINE Login on a course's Login
-- channel. Its user id is the one the course's Messaging API channel knows (same provider).
CREATE TABLE line_test_recipients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    channel_id TEXT NOT NULL,
    line_user_id TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, channel_id, line_user_id)
);

CREATE TABLE course_lessons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id BIGINT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    media_id BIGINT REFERENCES media_files(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX course_lessons_course ON course_lessons (course_id, position);

-- set when the instructor deletes the message: nothing more is sent, the log keeps it
ALTER TABLE course_steps ADD COLUMN deleted_at BIGINT;
CREATE INDEX course_steps_media ON course_steps (media_id);

-- A LINE Login under way: made when the browser leaves for LINE, taken (once) when LINE sends
-- it back to /line/callback. The PKCE verifier is sealed under the app's keys.
CREATE TABLE line_login_attempts (
    state TEXT PRIMARY KEY,
    -- test (an instructor registers a テスト配信先) or student
    purpose TEXT NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    course_id BIGINT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    student_id BIGINT REFERENCES students(id) ON DELETE CASCADE,
    -- SHA-256 of the cookie the starting browser holds
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed_verifier TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX line_login_attempts_expiry ON line_login_attempts (expires_at);

-- the course a テスト配信 was sent from (student deliveries name theirs through step_deliveries)
ALTER TABLE line_sends ADD COLUMN course_id BIGINT REFERENCES courses(id) ON DELETE SET NULL;
