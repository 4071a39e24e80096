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

const STEP_COLUMNS: &str =
    "id, course_id, kind, body, media_id, timing_day, timing_minute, position, valid_from, valid_until";

fn step_row(r: &sqlx::any::AnyRow) -> StepRow {
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
}

/// `$first, $first+1, …` for `n` bound values.
fn placeholders(first: usize, n: usize) -> String {
    (0..n).map(|i| format!("${}", first + i)).collect::<Vec<_>>().join(", ")
}

/// Every step of the course not deleted, also those that ended (the dispatcher filters by each
/// subscription's start), in id order.
pub async fn steps(c: &mut AnyConnection, course_id: i64) -> Result<Vec<StepRow>> {
    let sql =
        format!("SELECT {STEP_COLUMNS} FROM course_steps WHERE course_id = $1 AND deleted_at IS NULL ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(course_id).fetch_all(c).await?;
    Ok(rows.iter().map(step_row).collect())
}

/// [`steps`] of many courses at once, in id order (within each 500 courses).
pub async fn steps_of_courses(c: &mut AnyConnection, course_ids: &[i64]) -> Result<Vec<StepRow>> {
    steps_where(c, "course_id", course_ids).await
}

/// The steps with these ids that are not deleted (a stored request's steps), in id order
/// (within each 500 ids).
pub async fn steps_by_id(c: &mut AnyConnection, step_ids: &[i64]) -> Result<Vec<StepRow>> {
    steps_where(c, "id", step_ids).await
}

/// Steps not deleted whose `column` (`id` or `course_id`) is one of `values`, 500 per query.
async fn steps_where(c: &mut AnyConnection, column: &'static str, values: &[i64]) -> Result<Vec<StepRow>> {
    let mut out = Vec::new();
    for chunk in values.chunks(500) {
        let sql = format!(
            "SELECT {STEP_COLUMNS} FROM course_steps WHERE {column} IN ({}) AND deleted_at IS NULL ORDER BY id",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *c).await?.iter().map(step_row));
    }
    Ok(out)
}

/// What the dispatcher needs of a course: whose it is, their plan, its time zone and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchCourse {
    pub id: i64,
    pub account_id: AccountId,
    pub plan: Option<tsunagu_core::Plan>,
    pub time_zone: String,
    pub line_channel_id: Option<String>,
}

/// [`DispatchCourse`] of many courses in one query per 500; a course that no longer exists is
/// left out.
pub async fn dispatch_courses(c: &mut AnyConnection, course_ids: &[i64]) -> Result<Vec<DispatchCourse>> {
    let mut out = Vec::new();
    for chunk in course_ids.chunks(500) {
        let sql = format!(
            "SELECT co.id, a.id, a.plan, co.time_zone, co.line_channel_id
             FROM courses co JOIN accounts a ON a.id = co.account_id WHERE co.id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *c).await?.iter().map(|r| {
            let plan: String = r.get(2);
            DispatchCourse {
                id: r.get(0),
                account_id: AccountId(r.get(1)),
                plan: tsunagu_core::Plan::from_code(&plan),
                time_zone: r.get(3),
                line_channel_id: r.get(4),
            }
        }));
    }
    Ok(out)
}

/// A new student of the instructor's account (email already lowercased by the caller; `None`
/// for LINE-only sign-in). An email is unique within the account.
pub async fn create_student(
    c: &mut AnyConnection,
    account: AccountId,
    email: Option<&str>,
    password_hash: Option<&str>,
    display_name: &str,
    now: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO students (account_id, email, password_hash, display_name, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(account.0)
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
        "UPDATE course_subscriptions SET locked_by = $1, lease_until = $2, replanned = 0
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

/// Whether `worker` still holds every one of `subscriptions` (its lease was not taken over
/// after running out), locking them for the rest of the caller's transaction (on PostgreSQL,
/// another dispatcher's claim skips them until it ends).
pub async fn still_held(c: &mut AnyConnection, worker: &str, subscriptions: &[i64]) -> Result<bool> {
    let ids: std::collections::BTreeSet<i64> = subscriptions.iter().copied().collect();
    let ids: Vec<i64> = ids.into_iter().collect();
    let mut held = 0;
    for chunk in ids.chunks(500) {
        let sql = format!(
            "UPDATE course_subscriptions SET locked_by = locked_by WHERE locked_by = $1 AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(worker);
        for id in chunk {
            q = q.bind(*id);
        }
        held += q.execute(&mut *c).await?.rows_affected() as usize;
    }
    Ok(held == ids.len())
}

/// Which of `subscriptions` have a step in a request not yet settled (`sending`).
pub async fn in_flight(c: &mut AnyConnection, subscriptions: &[i64]) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for chunk in subscriptions.chunks(500) {
        let sql = format!(
            "SELECT DISTINCT subscription_id FROM step_deliveries WHERE outcome = 'sending' AND subscription_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *c).await?);
    }
    Ok(out)
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
        "UPDATE course_subscriptions SET next_at = CASE WHEN replanned = 1 THEN $4 ELSE $3 END, replanned = 0,
             locked_by = NULL, lease_until = NULL, reply_token = NULL, reply_until = NULL, updated_at = $4
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

/// A request to store with [`insert_sends`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSend {
    pub channel_id: String,
    /// `reply`, `push` or `multicast`.
    pub method: &'static str,
    pub retry_key: Option<String>,
    pub body: String,
}

/// [`insert_send`] for many requests in multi-row statements; their ids, in the given order.
/// Each statement's rows have distinct bodies (a row's id is found by its body: the order of
/// `RETURNING` rows is not promised by either database).
pub async fn insert_sends(c: &mut AnyConnection, sends: &[NewSend], lease_until: i64, now: i64) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(sends.len());
    let mut start = 0;
    while start < sends.len() {
        // The next statement: up to 100 rows, none with a body seen earlier in it.
        let mut seen = std::collections::HashSet::new();
        let mut end = start;
        while end < sends.len() && end - start < 100 && seen.insert(sends[end].body.as_str()) {
            end += 1;
        }
        let chunk = &sends[start..end];
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${}, ${}, 'pending', $1, $2)", 3 + 4 * i, 4 + 4 * i, 5 + 4 * i, 6 + 4 * i))
            .collect();
        let sql = format!(
            "INSERT INTO line_sends (channel_id, method, retry_key, body, state, lease_until, created_at) VALUES {}
             RETURNING id, body",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(lease_until).bind(now);
        for s in chunk {
            q = q.bind(s.channel_id.as_str()).bind(s.method).bind(s.retry_key.as_deref()).bind(s.body.as_str());
        }
        let by_body: std::collections::HashMap<String, i64> =
            q.fetch_all(&mut *c).await?.iter().map(|r| (r.get::<String, _>(1), r.get::<i64, _>(0))).collect();
        for s in chunk {
            let id = by_body.get(&s.body).copied().ok_or_else(|| sqlx::Error::RowNotFound)?;
            ids.push(id);
        }
        start = end;
    }
    Ok(ids)
}

/// Record steps as `sending` in the request that carries them: `(subscription, step, request)`
/// rows in multi-row statements. A step already recorded for the subscription is left as it is.
pub async fn record_sending(c: &mut AnyConnection, rows: &[(i64, i64, i64)], now: i64) -> Result<u64> {
    let mut n = 0;
    for chunk in rows.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, 'sending', ${}, $1)", 2 + 3 * i, 3 + 3 * i, 4 + 3 * i))
            .collect();
        let sql = format!(
            "INSERT INTO step_deliveries (subscription_id, step_id, outcome, send_id, at) VALUES {}
             ON CONFLICT (subscription_id, step_id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for (sub, step, send) in chunk {
            q = q.bind(*sub).bind(*step).bind(*send);
        }
        n += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// Take a reply's one attempt before making it (a reply has no retry key: it is tried once).
/// `false`: the request is settled, or a dispatcher took its attempt already (it may have gone
/// out), so this one must not send it.
pub async fn take_reply_attempt(c: &mut AnyConnection, send_id: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE line_sends SET attempts = 1 WHERE id = $1 AND state = 'pending' AND attempts = 0")
        .bind(send_id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
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

/// [`settle_send`] as `sent` for many requests, in one statement each for the requests and
/// their deliveries per 500; returns how many were still pending.
pub async fn settle_sent_many(c: &mut AnyConnection, send_ids: &[i64], now: i64) -> Result<u64> {
    let mut n = 0;
    for chunk in send_ids.chunks(500) {
        let list = placeholders(2, chunk.len());
        let sql = format!(
            "UPDATE line_sends SET state = 'sent', reason = '', sent_at = $1 WHERE state = 'pending' AND id IN ({list})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        n += q.execute(&mut *c).await?.rows_affected();
        let sql = format!(
            "UPDATE step_deliveries SET outcome = 'sent', at = $1 WHERE outcome = 'sending' AND send_id IN ({list})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *c).await?;
    }
    Ok(n)
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

/// A reply LINE refused becomes a push with `retry_key` and `body`, due at `now`, keeping its
/// id; `false` when it is no longer pending (settled meanwhile).
pub async fn reply_to_push(c: &mut AnyConnection, send_id: i64, retry_key: &str, body: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE line_sends SET method = 'push', retry_key = $2, body = $3, lease_until = $4, created_at = $4
         WHERE id = $1 AND state = 'pending' AND method = 'reply'",
    )
    .bind(send_id)
    .bind(retry_key)
    .bind(body)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
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

/// How long after a follow arrives its reply token is tried (LINE: use it within a minute).
pub const REPLY_WINDOW_MS: i64 = 50_000;

/// A follow (or unfollow of a block) of `$1` on channel `$2` at event time `$3`, applied at
/// `$4` with the follow's reply token `$5` until `$6`. The channel's courses are checked per
/// subscription of the user (`EXISTS`, by the course's key), not listed: listed, SQLite probes
/// the user's index once per course of the channel, which made a follow on a channel with 20,000
/// courses take milliseconds under the intake's write lock.
pub const FOLLOWED_SQL: &str = "UPDATE course_subscriptions SET
         started_at = CASE WHEN state = 'waiting_friend' THEN $3 ELSE started_at END,
         resumed_at = CASE WHEN state = 'blocked' THEN $4 ELSE resumed_at END,
         reply_token = CASE WHEN state = 'waiting_friend' THEN $5 ELSE reply_token END,
         reply_until = CASE WHEN state = 'waiting_friend' THEN $6 ELSE reply_until END,
         state = 'active', next_at = $4, updated_at = $4
     WHERE line_user_id = $1 AND state IN ('waiting_friend', 'blocked')
         AND EXISTS (SELECT 1 FROM courses co WHERE co.id = course_subscriptions.course_id AND co.line_channel_id = $2)
         AND EXISTS (SELECT 1 FROM line_friends WHERE channel_id = $2 AND user_id = $1 AND status = 'following')";

/// A block of `$1` on channel `$2` at `$3` (see [`FOLLOWED_SQL`] on how the courses are checked).
pub const BLOCKED_SQL: &str = "UPDATE course_subscriptions SET state = 'blocked', updated_at = $3
     WHERE line_user_id = $1 AND state IN ('active', 'paused')
         AND EXISTS (SELECT 1 FROM courses co WHERE co.id = course_subscriptions.course_id AND co.line_channel_id = $2)
         AND EXISTS (SELECT 1 FROM line_friends WHERE channel_id = $2 AND user_id = $1 AND status = 'blocked')";

/// The channel's friend list moved (`changes`, at most one per user, as
/// [`crate::line::set_friends`] applies them): the subscriptions of those LINE users to the
/// channel's courses follow, in the caller's transaction. A follow starts a subscription that
/// waited for it (day 0 is the follow's time; its reply token, if any, is kept for the first
/// messages) or resumes a blocked one (what fell due while
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
            crate::line::FriendStatus::Following => sqlx::query(FOLLOWED_SQL)
                .bind(&ch.user_id)
                .bind(channel_id)
                .bind(ch.event_ts)
                .bind(now)
                .bind(ch.reply_token.as_deref())
                .bind(ch.reply_token.as_ref().map(|_| now + REPLY_WINDOW_MS))
                .execute(&mut *c)
                .await?
                .rows_affected(),
            crate::line::FriendStatus::Blocked => {
                sqlx::query(BLOCKED_SQL).bind(&ch.user_id).bind(channel_id).bind(now).execute(&mut *c).await?;
                0
            }
        };
        due += r;
    }
    Ok(due)
}

/// Link the student's LINE user to their subscription (LINE Login on the course). If that user
/// is already a friend of the course's channel (the follow arrived first), the subscription
/// starts now, with the follow's reply token while it is kept with the friend (the follow
/// arrived less than [`REPLY_WINDOW_MS`] ago: the add-friend screen of the same login);
/// otherwise it starts with the follow. Returns whether it became due now.
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
        "UPDATE course_subscriptions SET state = 'active', started_at = $3, next_at = $3,
             reply_token = (SELECT f.follow_reply_token FROM courses co JOIN line_friends f ON f.channel_id = co.line_channel_id
                 WHERE co.id = course_subscriptions.course_id AND f.user_id = $2 AND f.follow_reply_until >= $3),
             reply_until = (SELECT f.follow_reply_until FROM courses co JOIN line_friends f ON f.channel_id = co.line_channel_id
                 WHERE co.id = course_subscriptions.course_id AND f.user_id = $2 AND f.follow_reply_until >= $3),
             updated_at = $3
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

/// A course as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    pub id: i64,
    pub account_id: AccountId,
    pub public_key: String,
    pub title: String,
    pub description: String,
    /// `draft` or `published`.
    pub state: String,
    pub time_zone: String,
    /// The Messaging API channel that delivers its steps (LINEステップ配信設定).
    pub line_channel_id: Option<String>,
    /// The LINE Login channel its students sign in with (公式LINE連携): LINE-linked when set.
    pub line_login_id: Option<i64>,
    pub created_at: i64,
}

macro_rules! course_columns {
    () => {
        "id, account_id, public_key, title, description, state, time_zone, line_channel_id, line_login_id, created_at"
    };
}

fn course_of(r: &sqlx::any::AnyRow) -> Course {
    Course {
        id: r.get(0),
        account_id: AccountId(r.get(1)),
        public_key: r.get(2),
        title: r.get(3),
        description: r.get(4),
        state: r.get(5),
        time_zone: r.get(6),
        line_channel_id: r.get(7),
        line_login_id: r.get(8),
        created_at: r.get(9),
    }
}

/// One of the account's courses.
pub async fn course(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Option<Course>> {
    let row = sqlx::query(concat!("SELECT ", course_columns!(), " FROM courses WHERE id = $1 AND account_id = $2"))
        .bind(id)
        .bind(account.0)
        .fetch_optional(c)
        .await?;
    Ok(row.as_ref().map(course_of))
}

/// A course by its public key (the course page), whoever holds it.
pub async fn course_by_key(c: &mut AnyConnection, key: &str) -> Result<Option<Course>> {
    let row = sqlx::query(concat!("SELECT ", course_columns!(), " FROM courses WHERE public_key = $1"))
        .bind(key)
        .fetch_optional(c)
        .await?;
    Ok(row.as_ref().map(course_of))
}

/// A course in the console's list, with its messages and students counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseSummary {
    pub course: Course,
    /// Step messages in use (not ended, not deleted).
    pub steps: i64,
    /// Subscriptions in any state.
    pub students: i64,
}

/// The account's courses, newest first.
pub async fn courses_of(c: &mut AnyConnection, account: AccountId) -> Result<Vec<CourseSummary>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        course_columns!(),
        ",
             (SELECT COUNT(*) FROM course_steps s WHERE s.course_id = courses.id
                  AND s.valid_until IS NULL AND s.deleted_at IS NULL),
             (SELECT COUNT(*) FROM course_subscriptions u WHERE u.course_id = courses.id)
         FROM courses WHERE account_id = $1 ORDER BY id DESC"
    ))
    .bind(account.0)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(|r| CourseSummary { course: course_of(r), steps: r.get(10), students: r.get(11) }).collect())
}

/// Save a course's title, description and state (`draft`/`published`); `false` when it is not
/// the account's.
pub async fn update_course(
    c: &mut AnyConnection,
    account: AccountId,
    id: i64,
    title: &str,
    description: &str,
    state: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE courses SET title = $3, description = $4, state = $5, updated_at = $6 WHERE id = $1 AND account_id = $2",
    )
    .bind(id)
    .bind(account.0)
    .bind(title)
    .bind(description)
    .bind(state)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Write the course's description at creation (the title and zone are [`create_course`]'s).
pub async fn set_description(c: &mut AnyConnection, id: i64, description: &str) -> Result<()> {
    sqlx::query("UPDATE courses SET description = $2 WHERE id = $1").bind(id).bind(description).execute(c).await?;
    Ok(())
}

/// What deleting a course did.
#[derive(Debug, PartialEq, Eq)]
pub enum CourseDeleted {
    Yes,
    NotFound,
    /// Students have started it: their history would go with it. Nothing was changed.
    HasStudents(i64),
}

/// Delete one of the account's courses that no student has started.
pub async fn delete_course(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<CourseDeleted> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM course_subscriptions u WHERE u.course_id = courses.id) FROM courses
         WHERE id = $1 AND account_id = $2",
    )
    .bind(id)
    .bind(account.0)
    .fetch_optional(&mut *c)
    .await?;
    match n {
        None => Ok(CourseDeleted::NotFound),
        Some(n) if n > 0 => Ok(CourseDeleted::HasStudents(n)),
        Some(_) => {
            // The condition is repeated: a student starting meanwhile keeps the course.
            let r = sqlx::query(
                "DELETE FROM courses WHERE id = $1 AND account_id = $2
                 AND NOT EXISTS (SELECT 1 FROM course_subscriptions u WHERE u.course_id = courses.id)",
            )
            .bind(id)
            .bind(account.0)
            .execute(c)
            .await?;
            Ok(if r.rows_affected() == 1 { CourseDeleted::Yes } else { CourseDeleted::HasStudents(1) })
        }
    }
}

/// A course's student as the console lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentRow {
    pub subscription_id: i64,
    pub student_id: i64,
    pub display_name: String,
    pub email: Option<String>,
    /// `waiting_friend`, `active`, `blocked` or `paused`.
    pub state: String,
    pub line_user_id: Option<String>,
    /// When the student pressed ［受講を開始する］.
    pub applied_at: i64,
    /// When the subscription started (became a friend).
    pub started_at: Option<i64>,
    pub next_at: Option<i64>,
}

/// The course's students, newest first (the caller checks the course is the account's).
pub async fn students_of(c: &mut AnyConnection, course_id: i64) -> Result<Vec<StudentRow>> {
    let rows = sqlx::query(
        "SELECT u.id, s.id, s.display_name, s.email, u.state, u.line_user_id, u.created_at, u.started_at, u.next_at
         FROM course_subscriptions u JOIN students s ON s.id = u.student_id
         WHERE u.course_id = $1 ORDER BY u.id DESC",
    )
    .bind(course_id)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| StudentRow {
            subscription_id: r.get(0),
            student_id: r.get(1),
            display_name: r.get(2),
            email: r.get(3),
            state: r.get(4),
            line_user_id: r.get(5),
            applied_at: r.get(6),
            started_at: r.get(7),
            next_at: r.get(8),
        })
        .collect())
}

/// The earliest next delivery among the course's active subscriptions.
pub async fn course_next_due(c: &mut AnyConnection, course_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MIN(next_at) FROM course_subscriptions WHERE course_id = $1 AND state = 'active'")
        .bind(course_id)
        .fetch_one(c)
        .await?)
}

/// One step of the course, if it is in use (not ended, not deleted).
pub async fn current_step(c: &mut AnyConnection, course_id: i64, step_id: i64) -> Result<Option<StepRow>> {
    Ok(current_steps(c, course_id).await?.into_iter().find(|s| s.id == step_id))
}

/// The steps a student who subscribes now receives (not ended, not deleted), in id order.
pub async fn current_steps(c: &mut AnyConnection, course_id: i64) -> Result<Vec<StepRow>> {
    Ok(steps(c, course_id).await?.into_iter().filter(|s| s.valid_until.is_none()).collect())
}

/// Students already in the sequence whom a change of the step reaches: started, not yet
/// handed the step, and started while the step applies.
pub async fn affected_by(c: &mut AnyConnection, step: &StepRow) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM course_subscriptions u
         WHERE u.course_id = $1 AND u.started_at IS NOT NULL AND u.started_at >= $2
           AND NOT EXISTS (SELECT 1 FROM step_deliveries d WHERE d.subscription_id = u.id AND d.step_id = $3)",
    )
    .bind(step.course_id)
    .bind(step.valid_from)
    .bind(step.id)
    .fetch_one(c)
    .await?)
}

/// Students already in the sequence (a new step reaches each one who has not finished…
/// the dispatcher decides what is due).
pub async fn started_count(c: &mut AnyConnection, course_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM course_subscriptions WHERE course_id = $1 AND started_at IS NOT NULL")
        .bind(course_id)
        .fetch_one(c)
        .await?)
}

/// Whether a request carrying the step is written and not yet settled (送信中).
pub async fn step_in_flight(c: &mut AnyConnection, step_id: i64) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM step_deliveries WHERE step_id = $1 AND outcome = 'sending'")
        .bind(step_id)
        .fetch_one(c)
        .await?;
    Ok(n > 0)
}

/// Who a change of the course's steps applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Also the future deliveries of students already in the sequence.
    Everyone,
    /// Students who start from now on; those already in keep the step as it was.
    NewOnly,
}

/// Change a step. `Everyone`: the row changes in place. `NewOnly`: the row ends at `now` and a
/// new one starts there. Active subscriptions are due again at `now`, so the dispatcher
/// re-plans them with the change. Returns the step's id from now on (`None`: not in use).
pub async fn update_step(
    c: &mut AnyConnection,
    course_id: i64,
    step_id: i64,
    s: &NewStep<'_>,
    applies: Applies,
    now: i64,
) -> Result<Option<i64>> {
    let id = match applies {
        Applies::Everyone => {
            let r = sqlx::query(
                "UPDATE course_steps SET kind = $3, body = $4, media_id = $5, timing_day = $6, timing_minute = $7,
                     position = $8, updated_at = $9
                 WHERE id = $1 AND course_id = $2 AND valid_until IS NULL AND deleted_at IS NULL",
            )
            .bind(step_id)
            .bind(course_id)
            .bind(s.kind)
            .bind(s.body)
            .bind(s.media_id)
            .bind(s.timing.map(|t| t.0))
            .bind(s.timing.map(|t| t.1))
            .bind(s.position)
            .bind(now)
            .execute(&mut *c)
            .await?;
            if r.rows_affected() != 1 {
                return Ok(None);
            }
            step_id
        }
        Applies::NewOnly => {
            let r = sqlx::query(
                "UPDATE course_steps SET valid_until = $3, updated_at = $3
                 WHERE id = $1 AND course_id = $2 AND valid_until IS NULL AND deleted_at IS NULL",
            )
            .bind(step_id)
            .bind(course_id)
            .bind(now)
            .execute(&mut *c)
            .await?;
            if r.rows_affected() != 1 {
                return Ok(None);
            }
            add_step(&mut *c, course_id, &NewStep { valid_from: now, ..s.clone() }, now).await?
        }
    };
    replan(c, course_id, now).await?;
    Ok(Some(id))
}

/// Active subscriptions of the course fall due at `now` (or earlier, as they were), so the
/// dispatcher plans them again with the course's steps as they are now.
pub async fn replan(c: &mut AnyConnection, course_id: i64, now: i64) -> Result<()> {
    // `replanned` reaches the subscriptions a dispatcher holds now: it planned them with the
    // steps as they were, and its release makes them due again instead of keeping that plan.
    sqlx::query(
        "UPDATE course_subscriptions SET replanned = 1,
             next_at = CASE WHEN next_at IS NULL OR next_at > $2 THEN $2 ELSE next_at END
         WHERE course_id = $1 AND state = 'active'",
    )
    .bind(course_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// What deleting a step did.
#[derive(Debug, PartialEq, Eq)]
pub enum StepDeleted {
    Yes,
    NotFound,
    /// A request carrying it is being sent: deleting now could not stop it.
    Sending,
}

/// Delete a step: nothing more of it is sent; the delivery log keeps what was (its kind and
/// text; it lets go of its media file, which the library may then delete).
pub async fn delete_step(c: &mut AnyConnection, course_id: i64, step_id: i64, now: i64) -> Result<StepDeleted> {
    let r = sqlx::query(
        "UPDATE course_steps SET deleted_at = $3, media_id = NULL, updated_at = $3
         WHERE id = $1 AND course_id = $2 AND deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM step_deliveries d WHERE d.step_id = $1 AND d.outcome = 'sending')",
    )
    .bind(step_id)
    .bind(course_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    if r.rows_affected() == 1 {
        return Ok(StepDeleted::Yes);
    }
    Ok(if current_step(c, course_id, step_id).await?.is_some() { StepDeleted::Sending } else { StepDeleted::NotFound })
}

/// Steps in use (not deleted) that show a media file: the media library keeps it.
pub async fn steps_using_media(c: &mut AnyConnection, media_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM course_steps WHERE media_id = $1 AND deleted_at IS NULL")
        .bind(media_id)
        .fetch_one(c)
        .await?)
}

/// A lesson of a course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lesson {
    pub id: i64,
    pub course_id: i64,
    pub position: i64,
    pub title: String,
    pub body: String,
    pub media_id: Option<i64>,
}

/// The course's lessons in order.
pub async fn lessons(c: &mut AnyConnection, course_id: i64) -> Result<Vec<Lesson>> {
    let rows = sqlx::query(
        "SELECT id, course_id, position, title, body, media_id FROM course_lessons WHERE course_id = $1
         ORDER BY position, id",
    )
    .bind(course_id)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Lesson {
            id: r.get(0),
            course_id: r.get(1),
            position: r.get(2),
            title: r.get(3),
            body: r.get(4),
            media_id: r.get(5),
        })
        .collect())
}

/// Add a lesson at the end (the caller checks the course is the account's).
pub async fn add_lesson(
    c: &mut AnyConnection,
    course_id: i64,
    title: &str,
    body: &str,
    media_id: Option<i64>,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO course_lessons (course_id, position, title, body, media_id, created_at, updated_at)
         VALUES ($1, (SELECT COALESCE(MAX(position), 0) + 1 FROM course_lessons WHERE course_id = $1), $2, $3, $4, $5, $5)
         RETURNING id",
    )
    .bind(course_id)
    .bind(title)
    .bind(body)
    .bind(media_id)
    .bind(now)
    .fetch_one(c)
    .await?)
}

/// Change a lesson of the course.
pub async fn update_lesson(
    c: &mut AnyConnection,
    course_id: i64,
    id: i64,
    title: &str,
    body: &str,
    media_id: Option<i64>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE course_lessons SET title = $3, body = $4, media_id = $5, updated_at = $6 WHERE id = $1 AND course_id = $2",
    )
    .bind(id)
    .bind(course_id)
    .bind(title)
    .bind(body)
    .bind(media_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove a lesson of the course.
pub async fn delete_lesson(c: &mut AnyConnection, course_id: i64, id: i64) -> Result<bool> {
    let r = sqlx::query("DELETE FROM course_lessons WHERE id = $1 AND course_id = $2")
        .bind(id)
        .bind(course_id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Lessons that show a media file: the media library keeps it.
pub async fn lessons_using_media(c: &mut AnyConnection, media_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM course_lessons WHERE media_id = $1")
        .bind(media_id)
        .fetch_one(c)
        .await?)
}

/// Store a テスト配信 push from the course, due at once (any dispatcher sends it, with its key).
pub async fn insert_test_send(
    c: &mut AnyConnection,
    course_id: i64,
    channel_id: &str,
    retry_key: &str,
    body: &str,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO line_sends (channel_id, method, retry_key, body, state, lease_until, test, course_id, created_at)
         VALUES ($1, 'push', $2, $3, 'pending', $4, 1, $5, $4) RETURNING id",
    )
    .bind(channel_id)
    .bind(retry_key)
    .bind(body)
    .bind(now)
    .bind(course_id)
    .fetch_one(c)
    .await?)
}

/// A request in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub send_id: i64,
    /// reply, push or multicast.
    pub method: String,
    /// pending, sent or failed.
    pub state: String,
    pub reason: String,
    pub test: bool,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// The request's JSON body (who, which steps).
    pub body: String,
}

/// The course's テスト配信, newest first (at most `limit`).
pub async fn test_sends(c: &mut AnyConnection, course_id: i64, limit: i64) -> Result<Vec<LogEntry>> {
    let rows = sqlx::query(
        "SELECT id, method, state, reason, test, created_at, sent_at, body FROM line_sends
         WHERE course_id = $1 AND test = 1 ORDER BY id DESC LIMIT $2",
    )
    .bind(course_id)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(log_entry).collect())
}

fn log_entry(r: &sqlx::any::AnyRow) -> LogEntry {
    let test: i64 = r.get(4);
    LogEntry {
        send_id: r.get(0),
        method: r.get(1),
        state: r.get(2),
        reason: r.get(3),
        test: test != 0,
        created_at: r.get(5),
        sent_at: r.get(6),
        body: r.get(7),
    }
}

/// One step handled for one student, for the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub subscription_id: i64,
    pub student_name: String,
    pub step_id: i64,
    pub step_kind: String,
    pub step_body: String,
    pub step_position: i64,
    pub step_timing: Option<(i64, i64)>,
    /// sending, sent, skipped or failed.
    pub outcome: String,
    pub at: i64,
    /// How it went (reply, push, multicast) and why it failed, when a request carried it.
    pub method: Option<String>,
    pub reason: String,
}

/// The course's deliveries, newest first (at most `limit`); `subscription`: one student's.
pub async fn deliveries(
    c: &mut AnyConnection,
    course_id: i64,
    subscription: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    let rows = sqlx::query(
        "SELECT d.subscription_id, s.display_name, d.step_id, st.kind, st.body, st.position, st.timing_day,
                st.timing_minute, d.outcome, d.at, ls.method, COALESCE(ls.reason, '')
         FROM step_deliveries d
         JOIN course_subscriptions u ON u.id = d.subscription_id
         JOIN students s ON s.id = u.student_id
         JOIN course_steps st ON st.id = d.step_id
         LEFT JOIN line_sends ls ON ls.id = d.send_id
         WHERE u.course_id = $1 AND ($2 = 0 OR d.subscription_id = $2)
         ORDER BY d.at DESC, d.subscription_id, st.position LIMIT $3",
    )
    .bind(course_id)
    .bind(subscription.unwrap_or(0))
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let day: Option<i64> = r.get(6);
            let minute: Option<i64> = r.get(7);
            DeliveryRow {
                subscription_id: r.get(0),
                student_name: r.get(1),
                step_id: r.get(2),
                step_kind: r.get(3),
                step_body: r.get(4),
                step_position: r.get(5),
                step_timing: day.zip(minute),
                outcome: r.get(8),
                at: r.get(9),
                method: r.get(10),
                reason: r.get(11),
            }
        })
        .collect())
}

/// LINE refused a request because the channel's monthly limit is reached, so nothing of it was
/// sent: the request fails with `reason` (a test send, which nothing sends again, with
/// `test_reason`), its steps go back to waiting (sent after the pause, in order, once), and the
/// channel's active subscriptions pause until `until`. Returns
/// whether the channel was not paused before (the caller tells the instructor then).
pub async fn pause_for_quota(
    c: &mut AnyConnection,
    channel_id: &str,
    send_id: i64,
    reason: &str,
    test_reason: &str,
    until: i64,
    now: i64,
) -> Result<bool> {
    let refused = sqlx::query(
        "UPDATE line_sends SET state = 'failed', reason = CASE WHEN test = 1 THEN $4 ELSE $2 END, sent_at = $3
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(send_id)
    .bind(reason)
    .bind(now)
    .bind(test_reason)
    .execute(&mut *c)
    .await?
    .rows_affected();
    // Only a request still pending goes back to waiting: one settled meanwhile (another
    // dispatcher sent it again with its key, and LINE took it) keeps its deliveries.
    if refused == 1 {
        sqlx::query("DELETE FROM step_deliveries WHERE send_id = $1 AND outcome = 'sending'")
            .bind(send_id)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query(
        "UPDATE course_subscriptions SET state = 'paused', next_at = $2, updated_at = $3
         WHERE state = 'active' AND course_id IN (SELECT id FROM courses WHERE line_channel_id = $1)",
    )
    .bind(channel_id)
    .bind(until)
    .bind(now)
    .execute(&mut *c)
    .await?;
    let r = sqlx::query(
        "UPDATE line_channels SET quota_paused_until = $2, updated_at = $3
         WHERE channel_id = $1 AND (quota_paused_until IS NULL OR quota_paused_until < $3)",
    )
    .bind(channel_id)
    .bind(until)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Resume a channel paused for its quota: its paused subscriptions are due now. Returns how
/// many resumed.
pub async fn resume_after_quota(c: &mut AnyConnection, channel_id: &str, now: i64) -> Result<u64> {
    sqlx::query("UPDATE line_channels SET quota_paused_until = NULL, updated_at = $2 WHERE channel_id = $1")
        .bind(channel_id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    let r = sqlx::query(
        "UPDATE course_subscriptions SET state = 'active', next_at = $2, updated_at = $2
         WHERE state = 'paused' AND course_id IN (SELECT id FROM courses WHERE line_channel_id = $1)",
    )
    .bind(channel_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Until when the channel's deliveries are paused for its quota, if they are.
pub async fn quota_paused_until(c: &mut AnyConnection, channel_id: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT quota_paused_until FROM line_channels WHERE channel_id = $1")
        .bind(channel_id)
        .fetch_optional(c)
        .await?
        .flatten())
}

/// Up to `limit` active subscriptions to the channel's courses (id, course, start), and how
/// many there are in all: what a forecast of the month's deliveries reads.
pub async fn active_on_channel(
    c: &mut AnyConnection,
    channel_id: &str,
    limit: i64,
) -> Result<(Vec<(i64, i64, i64)>, i64)> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM course_subscriptions WHERE state = 'active' AND started_at IS NOT NULL
             AND course_id IN (SELECT id FROM courses WHERE line_channel_id = $1)",
    )
    .bind(channel_id)
    .fetch_one(&mut *c)
    .await?;
    let rows = sqlx::query(
        "SELECT id, course_id, started_at FROM course_subscriptions WHERE state = 'active' AND started_at IS NOT NULL
             AND course_id IN (SELECT id FROM courses WHERE line_channel_id = $1) ORDER BY id LIMIT $2",
    )
    .bind(channel_id)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok((rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect(), total))
}

/// Bring the next delivery of the course's active students forward, for the demo (nobody waits
/// a day): each start moves back by as many whole days as it takes for the next step to be due
/// by `now` (時刻指定 is a day and a time of day, so only whole days keep it at its time); a
/// step that has come due is sent at once, the rest of the schedule keeps its spacing.
pub async fn bring_next_forward(c: &mut AnyConnection, course_id: i64, now: i64) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE course_subscriptions SET started_at = started_at - ((next_at - $2 + 86399999) / 86400000) * 86400000,
             next_at = $2, replanned = 1, updated_at = $2
         WHERE course_id = $1 AND state = 'active' AND next_at > $2 AND started_at IS NOT NULL",
    )
    .bind(course_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// [`record_handled`] for many subscriptions at once (the same steps, outcome and request), in
/// statements of at most 1,000 rows.
pub async fn record_handled_many(
    c: &mut AnyConnection,
    subscriptions: &[i64],
    steps: &[i64],
    outcome: &str,
    send_id: Option<i64>,
    now: i64,
) -> Result<u64> {
    let pairs: Vec<(i64, i64)> = subscriptions.iter().flat_map(|s| steps.iter().map(move |t| (*s, *t))).collect();
    let mut n = 0;
    for chunk in pairs.chunks(1_000) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("(${}, ${}, $1, $2, $3)", 4 + 2 * i, 5 + 2 * i)).collect();
        let sql = format!(
            "INSERT INTO step_deliveries (subscription_id, step_id, outcome, send_id, at) VALUES {}
             ON CONFLICT (subscription_id, step_id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(outcome).bind(send_id).bind(now);
        for (s, t) in chunk {
            q = q.bind(*s).bind(*t);
        }
        n += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// [`release`] for many subscriptions held by `worker` with the same next delivery; one whose
/// course's steps changed while it was held ([`replan`]) is due again at `now` instead.
pub async fn release_many(
    c: &mut AnyConnection,
    subscriptions: &[i64],
    worker: &str,
    next_at: Option<i64>,
    now: i64,
) -> Result<u64> {
    let mut n = 0;
    for chunk in subscriptions.chunks(1_000) {
        let ids: Vec<String> = (0..chunk.len()).map(|i| format!("${}", 4 + i)).collect();
        let sql = format!(
            "UPDATE course_subscriptions SET next_at = CASE WHEN replanned = 1 THEN $3 ELSE $1 END, replanned = 0,
                 locked_by = NULL, lease_until = NULL, reply_token = NULL, reply_until = NULL, updated_at = $3
             WHERE locked_by = $2 AND id IN ({})",
            ids.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(next_at).bind(worker).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        n += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}
