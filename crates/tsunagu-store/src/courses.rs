//! Courses, their step messages, students' subscriptions and what was delivered (issue 13;
//! migration 0011). The step-delivery dispatcher claims due subscriptions here: on PostgreSQL
//! with `FOR UPDATE SKIP LOCKED`, so several `serve` processes never claim the same one; on
//! SQLite the claim is a single `UPDATE … RETURNING` under the one writer.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::{Backend, Result};

/// A new course (a draft).
pub async fn create_course(
    c: &mut AnyConnection,
    account: AccountId,
    public_key: &str,
    title: &str,
    time_zone: &str,
    now: i64,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO courses (account_id, public_key, title, state, time_zone, created_at, updated_at)
         VALUES ($1, $2, $3, 'draft', $4, $5, $5) RETURNING id",
    )
    .bind(account.0)
    .bind(public_key)
    .bind(title)
    .bind(time_zone)
    .bind(now)
    .fetch_one(c)
    .await
    .map_err(|e| crate::conflict(e, "course public key"))?;
    Ok(id)
}

/// A step message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub id: i64,
    pub course_id: i64,
    /// `text`, `image`, `audio` or `video`.
    pub kind: String,
    pub body: String,
    pub media_id: Option<i64>,
    /// `None`: 購読開始直後; else (day, minute of the day).
    pub timing: Option<(i64, i64)>,
    /// 通目.
    pub position: i64,
    /// Subscriptions started in `[valid_from, valid_until)` receive it.
    pub valid_from: i64,
    pub valid_until: Option<i64>,
}

/// A new step message.
#[derive(Debug, Clone)]
pub struct NewStep<'a> {
    pub kind: &'a str,
    pub body: &'a str,
    pub media_id: Option<i64>,
    pub timing: Option<(i64, i64)>,
    pub position: i64,
    /// Only subscriptions started at or after this receive it (0: everyone).
    pub valid_from: i64,
}

/// Add a step to the course (the caller checks the course is the account's).
pub async fn add_step(c: &mut AnyConnection, course_id: i64, s: &NewStep<'_>, now: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO course_steps (course_id, kind, body, media_id, timing_day, timing_minute, position, valid_from,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(course_id)
    .bind(s.kind)
    .bind(s.body)
    .bind(s.media_id)
    .bind(s.timing.map(|t| t.0))
    .bind(s.timing.map(|t| t.1))
    .bind(s.position)
    .bind(s.valid_from)
    .bind(now)
    .fetch_one(c)
    .await?)
}

/// Every step of the course, also those that ended (the dispatcher filters by each
/// subscription's start), in id order.
pub async fn steps(c: &mut AnyConnection, course_id: i64) -> Result<Vec<StepRow>> {
    let rows = sqlx::query(
        "SELECT id, course_id, kind, body, media_id, timing_day, timing_minute, position, valid_from, valid_until
         FROM course_steps WHERE course_id = $1 ORDER BY id",
    )
    .bind(course_id)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let day: Option<i64> = r.get(5);
            let minute: Option<i64> = r.get(6);
            StepRow {
                id: r.get(0),
                course_id: r.get(1),
                kind: r.get(2),
                body: r.get(3),
                media_id: r.get(4),
                timing: day.zip(minute),
                position: r.get(7),
                valid_from: r.get(8),
                valid_until: r.get(9),
            }
        })
        .collect())
}

/// A new student (email already lowercased by the caller; `None` for LINE-only sign-in).
pub async fn create_student(
    c: &mut AnyConnection,
    email: Option<&str>,
    password_hash: Option<&str>,
    display_name: &str,
    now: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO students (email, password_hash, display_name, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .bind(display_name)
    .bind(now)
    .fetch_one(c)
    .await
    .map_err(|e| crate::conflict(e, "student email"))
}

/// The student starts the course (［受講を開始する］): waiting to befriend the official account.
/// Starting again keeps the subscription as it is. Returns its id.
pub async fn subscribe(c: &mut AnyConnection, course_id: i64, student_id: i64, now: i64) -> Result<i64> {
    sqlx::query(
        "INSERT INTO course_subscriptions (course_id, student_id, state, created_at, updated_at)
         VALUES ($1, $2, 'waiting_friend', $3, $3) ON CONFLICT (course_id, student_id) DO NOTHING",
    )
    .bind(course_id)
    .bind(student_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(sqlx::query_scalar("SELECT id FROM course_subscriptions WHERE course_id = $1 AND student_id = $2")
        .bind(course_id)
        .bind(student_id)
        .fetch_one(c)
        .await?)
}

/// The student became a friend: the subscription starts at `started_at` (once; a later call
/// changes nothing) with its first delivery due at `next_at`. Returns whether it started now.
pub async fn start(
    c: &mut AnyConnection,
    subscription_id: i64,
    line_user_id: &str,
    started_at: i64,
    next_at: Option<i64>,
    reply: Option<(&str, i64)>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE course_subscriptions SET state = 'active', line_user_id = $2, started_at = $3, next_at = $4,
             reply_token = $5, reply_until = $6, updated_at = $3
         WHERE id = $1 AND state = 'waiting_friend'",
    )
    .bind(subscription_id)
    .bind(line_user_id)
    .bind(started_at)
    .bind(next_at)
    .bind(reply.map(|r| r.0))
    .bind(reply.map(|r| r.1))
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A subscription claimed by the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSubscription {
    pub id: i64,
    pub course_id: i64,
    pub line_user_id: String,
    pub started_at: i64,
    pub resumed_at: Option<i64>,
    /// The follow event's reply token while it is worth trying.
    pub reply_token: Option<String>,
}

/// Claim up to `limit` active subscriptions due at `now` (not held by another dispatcher) for
/// `worker` until `now + lease_ms`, oldest due first.
pub async fn claim_due(
    c: &mut AnyConnection,
    backend: Backend,
    worker: &str,
    limit: i64,
    now: i64,
    lease_ms: i64,
) -> Result<Vec<DueSubscription>> {
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE course_subscriptions SET locked_by = $1, lease_until = $2
         WHERE id IN (
             SELECT id FROM course_subscriptions
             WHERE state = 'active' AND next_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
             ORDER BY next_at, id LIMIT $4 {lock})
         RETURNING id, course_id, line_user_id, started_at, resumed_at,
             CASE WHEN reply_until >= $3 THEN reply_token END"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(c)
        .await?;
    let mut due: Vec<DueSubscription> = rows
        .iter()
        .map(|r| DueSubscription {
            id: r.get(0),
            course_id: r.get(1),
            line_user_id: r.get::<Option<String>, _>(2).unwrap_or_default(),
            started_at: r.get::<Option<i64>, _>(3).unwrap_or_default(),
            resumed_at: r.get(4),
            reply_token: r.get(5),
        })
        .collect();
    due.sort_by_key(|d| d.id);
    Ok(due)
}

/// The steps already handled (sent, sending, skipped or failed) for each of `subscriptions`.
pub async fn handled(c: &mut AnyConnection, subscriptions: &[i64]) -> Result<Vec<(i64, i64)>> {
    if subscriptions.is_empty() {
        return Ok(Vec::new());
    }
    let list = (1..=subscriptions.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT subscription_id, step_id FROM step_deliveries WHERE subscription_id IN ({list})");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in subscriptions {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(c).await?.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Record steps as handled for a subscription, each at most once: a step already recorded
/// keeps its first record. Returns how many were recorded now.
pub async fn record_handled(
    c: &mut AnyConnection,
    subscription_id: i64,
    steps: &[i64],
    outcome: &str,
    send_id: Option<i64>,
    now: i64,
) -> Result<u64> {
    let mut n = 0;
    for step in steps {
        n += sqlx::query(
            "INSERT INTO step_deliveries (subscription_id, step_id, outcome, send_id, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (subscription_id, step_id) DO NOTHING",
        )
        .bind(subscription_id)
        .bind(step)
        .bind(outcome)
        .bind(send_id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// The dispatcher is done with a subscription for now: its next delivery is due at `next_at`
/// (`None`: nothing left), the reply token is spent, and the lease is released. Only the
/// holder's release counts.
pub async fn release(
    c: &mut AnyConnection,
    subscription_id: i64,
    worker: &str,
    next_at: Option<i64>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE course_subscriptions SET next_at = $3, locked_by = NULL, lease_until = NULL, reply_token = NULL,
             reply_until = NULL, updated_at = $4
         WHERE id = $1 AND locked_by = $2",
    )
    .bind(subscription_id)
    .bind(worker)
    .bind(next_at)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What the dispatcher needs of a course: its time zone and its Messaging API channel.
pub async fn course_for_dispatch(c: &mut AnyConnection, course_id: i64) -> Result<Option<(String, Option<String>)>> {
    let row = sqlx::query("SELECT time_zone, line_channel_id FROM courses WHERE id = $1")
        .bind(course_id)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Link the course to its Messaging API channel (LINEステップ配信設定).
pub async fn set_channel(c: &mut AnyConnection, course_id: i64, channel_id: Option<&str>, now: i64) -> Result<()> {
    sqlx::query("UPDATE courses SET line_channel_id = $2, updated_at = $3 WHERE id = $1")
        .bind(course_id)
        .bind(channel_id)
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}

/// A request to LINE as stored before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRow {
    pub id: i64,
    pub channel_id: String,
    /// `reply`, `push` or `multicast`.
    pub method: String,
    pub retry_key: Option<String>,
    /// JSON: `{"to": [...], "reply_token"?: "...", "steps": [...]}`.
    pub body: String,
    pub attempts: i64,
    pub created_at: i64,
}

/// Store a request before it is sent, held by its writer until `lease_until`.
pub async fn insert_send(
    c: &mut AnyConnection,
    channel_id: &str,
    method: &str,
    retry_key: Option<&str>,
    body: &str,
    lease_until: i64,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO line_sends (channel_id, method, retry_key, body, state, lease_until, created_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING id",
    )
    .bind(channel_id)
    .bind(method)
    .bind(retry_key)
    .bind(body)
    .bind(lease_until)
    .bind(now)
    .fetch_one(c)
    .await?)
}

/// Count an attempt before making it (a reply, which has no retry key, is tried once).
pub async fn count_attempt(c: &mut AnyConnection, send_id: i64) -> Result<()> {
    sqlx::query("UPDATE line_sends SET attempts = attempts + 1 WHERE id = $1").bind(send_id).execute(c).await?;
    Ok(())
}

/// Settle a pending request as `sent` or `failed` (with a Japanese reason), and its steps with
/// it. Returns whether it was pending.
pub async fn settle_send(c: &mut AnyConnection, send_id: i64, state: &str, reason: &str, now: i64) -> Result<bool> {
    let r =
        sqlx::query("UPDATE line_sends SET state = $2, reason = $3, sent_at = $4 WHERE id = $1 AND state = 'pending'")
            .bind(send_id)
            .bind(state)
            .bind(reason)
            .bind(now)
            .execute(&mut *c)
            .await?;
    sqlx::query("UPDATE step_deliveries SET outcome = $2, at = $3 WHERE send_id = $1 AND outcome = 'sending'")
        .bind(send_id)
        .bind(state)
        .bind(now)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Claim up to `limit` pending requests whose writer's lease ran out (it crashed, or the
/// request failed in a way worth retrying), oldest first, until `now + lease_ms`.
pub async fn claim_stale_sends(
    c: &mut AnyConnection,
    backend: Backend,
    limit: i64,
    now: i64,
    lease_ms: i64,
) -> Result<Vec<SendRow>> {
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE line_sends SET lease_until = $1
         WHERE id IN (
             SELECT id FROM line_sends WHERE state = 'pending' AND lease_until < $2 ORDER BY lease_until, id LIMIT $3 {lock})
         RETURNING id, channel_id, method, retry_key, body, attempts, created_at"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now + lease_ms).bind(now).bind(limit).fetch_all(c).await?;
    let mut sends: Vec<SendRow> = rows
        .iter()
        .map(|r| SendRow {
            id: r.get(0),
            channel_id: r.get(1),
            method: r.get(2),
            retry_key: r.get(3),
            body: r.get(4),
            attempts: r.get(5),
            created_at: r.get(6),
        })
        .collect();
    sends.sort_by_key(|s| s.id);
    Ok(sends)
}

/// Hand a pending request back for a later attempt at `at` (a retryable failure).
pub async fn retry_send_at(c: &mut AnyConnection, send_id: i64, at: i64) -> Result<()> {
    sqlx::query("UPDATE line_sends SET lease_until = $2 WHERE id = $1 AND state = 'pending'")
        .bind(send_id)
        .bind(at)
        .execute(c)
        .await?;
    Ok(())
}

/// The earliest instant anything of the dispatcher's falls due: an active subscription's next
/// delivery, or a pending request's lease. `None` when nothing waits.
pub async fn next_due(c: &mut AnyConnection) -> Result<Option<i64>> {
    let subs: Option<i64> = sqlx::query_scalar("SELECT MIN(next_at) FROM course_subscriptions WHERE state = 'active'")
        .fetch_one(&mut *c)
        .await?;
    let sends: Option<i64> =
        sqlx::query_scalar("SELECT MIN(lease_until) FROM line_sends WHERE state = 'pending'").fetch_one(c).await?;
    Ok(match (subs, sends) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// The channel's friend list moved (`changes`, at most one per user, as
/// [`crate::line::set_friends`] applies them): the subscriptions of those LINE users to the
/// channel's courses follow, in the caller's transaction. A follow starts a subscription that
/// waited for it (day 0 is the follow's time) or resumes a blocked one (what fell due while
/// blocked is skipped); an unfollow pauses an active one. Returns how many became due now (the
/// caller queues a dispatch run after commit).
pub async fn follow_friend_changes(
    c: &mut AnyConnection,
    channel_id: &str,
    changes: &[crate::line::FriendChange],
    now: i64,
) -> Result<u64> {
    if changes.is_empty() {
        return Ok(0);
    }
    let has_courses: Option<i64> = sqlx::query_scalar("SELECT 1 FROM courses WHERE line_channel_id = $1 LIMIT 1")
        .bind(channel_id)
        .fetch_optional(&mut *c)
        .await?;
    if has_courses.is_none() {
        return Ok(0);
    }
    let mut due = 0;
    // Each statement also reads the friend list as it now stands, so a change older than what
    // was applied there (which `set_friends` ignored) changes nothing here either.
    for ch in changes {
        let r = match ch.status {
            crate::line::FriendStatus::Following => sqlx::query(
                "UPDATE course_subscriptions SET
                         started_at = CASE WHEN state = 'waiting_friend' THEN $3 ELSE started_at END,
                         resumed_at = CASE WHEN state = 'blocked' THEN $4 ELSE resumed_at END,
                         state = 'active', next_at = $4, updated_at = $4
                     WHERE line_user_id = $1 AND state IN ('waiting_friend', 'blocked')
                         AND course_id IN (SELECT id FROM courses WHERE line_channel_id = $2)
                         AND EXISTS (SELECT 1 FROM line_friends
                             WHERE channel_id = $2 AND user_id = $1 AND status = 'following')",
            )
            .bind(&ch.user_id)
            .bind(channel_id)
            .bind(ch.event_ts)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected(),
            crate::line::FriendStatus::Blocked => {
                sqlx::query(
                    "UPDATE course_subscriptions SET state = 'blocked', updated_at = $3
                     WHERE line_user_id = $1 AND state = 'active'
                         AND course_id IN (SELECT id FROM courses WHERE line_channel_id = $2)
                         AND EXISTS (SELECT 1 FROM line_friends
                             WHERE channel_id = $2 AND user_id = $1 AND status = 'blocked')",
                )
                .bind(&ch.user_id)
                .bind(channel_id)
                .bind(now)
                .execute(&mut *c)
                .await?;
                0
            }
        };
        due += r;
    }
    Ok(due)
}

/// Link the student's LINE user to their subscription (LINE Login on the course). If that user
/// is already a friend of the course's channel (the follow arrived first), the subscription
/// starts now; otherwise it starts with the follow. Returns whether it became due now.
pub async fn link_line_user(c: &mut AnyConnection, subscription_id: i64, line_user_id: &str, now: i64) -> Result<bool> {
    sqlx::query(
        "UPDATE course_subscriptions SET line_user_id = $2, updated_at = $3 WHERE id = $1 AND state = 'waiting_friend'",
    )
    .bind(subscription_id)
    .bind(line_user_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    let r = sqlx::query(
        "UPDATE course_subscriptions SET state = 'active', started_at = $3, next_at = $3, updated_at = $3
         WHERE id = $1 AND state = 'waiting_friend' AND line_user_id = $2 AND EXISTS (
             SELECT 1 FROM courses co JOIN line_friends f ON f.channel_id = co.line_channel_id
             WHERE co.id = course_subscriptions.course_id AND f.user_id = $2 AND f.status = 'following')",
    )
    .bind(subscription_id)
    .bind(line_user_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}
