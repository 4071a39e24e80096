-- The course console (issue 13): what LINEステップ配信設定 learned about a channel's bot, the
-- instructor's LINE Login channels (公式LINE連携; secrets sealed in encrypted_secrets) and the
-- courses each serves, LINE accounts registered as テスト配信先, a course's lessons, and step
-- messages deleted from the console (kept for the delivery log); students scoped to an account.

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

-- Students belong to the instructor's account (ARCHITECTURE "Who logs in where"): one email
-- may study with two instructors, as two students. SQLite cannot change a table's UNIQUE
-- constraint in place, so the table is rebuilt as SQLite documents it: this migration runs
-- with foreign keys off and is checked with foreign_key_check before it commits
-- (migrate.rs, SQLITE_REBUILDS). A student's account is that of the first course they started.
CREATE TABLE students_v12 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- lowercase; NULL for a student who signed in with LINE only
    email TEXT,
    password_hash TEXT,
    display_name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- the instructor's account the student signed up with
    account_id BIGINT REFERENCES accounts(id) ON DELETE CASCADE,
    UNIQUE (account_id, email)
);
INSERT INTO students_v12 (id, email, password_hash, display_name, created_at, updated_at, account_id)
SELECT s.id, s.email, s.password_hash, s.display_name, s.created_at, s.updated_at,
    (SELECT co.account_id FROM course_subscriptions u JOIN courses co ON co.id = u.course_id
     WHERE u.student_id = s.id ORDER BY u.id LIMIT 1)
FROM students s;
-- Ids are never reused (migration 0004): the new table continues the old one's sequence.
DELETE FROM sqlite_sequence WHERE name = 'students_v12';
INSERT INTO sqlite_sequence (name, seq) SELECT 'students_v12', seq FROM sqlite_sequence WHERE name = 'students';
DROP TABLE students;
ALTER TABLE students_v12 RENAME TO students;

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

-- A student's session on the public host (the console's sessions are accounts' only).
CREATE TABLE student_sessions (
    token_hash TEXT PRIMARY KEY,
    student_id BIGINT NOT NULL REFERENCES students(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX student_sessions_student ON student_sessions (student_id);

-- A student's LINE user on a LINE Login channel: one LINE user is one student per channel.
CREATE TABLE student_line_links (
    student_id BIGINT NOT NULL REFERENCES students(id) ON DELETE CASCADE,
    login_channel_id TEXT NOT NULL,
    line_user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (student_id, login_channel_id),
    UNIQUE (login_channel_id, line_user_id)
);

-- A follow's reply token, kept with the friend for about a minute: a student whose follow
-- (the add-friend screen of LINE Login) arrived before the login came back gets the first
-- messages by reply, which is free.
ALTER TABLE line_friends ADD COLUMN follow_reply_token TEXT;
ALTER TABLE line_friends ADD COLUMN follow_reply_until BIGINT;

-- LINE answered that the channel's monthly limit is reached: its deliveries pause until this
-- instant (the next month in Japan), or until the instructor resumes them.
ALTER TABLE line_channels ADD COLUMN quota_paused_until BIGINT;

-- The course's steps changed while a dispatcher held the subscription: its release makes the
-- subscription due again rather than keeping the plan made with the old steps.
ALTER TABLE course_subscriptions ADD COLUMN replanned BIGINT NOT NULL DEFAULT 0;
