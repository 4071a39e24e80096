//! LINE: the channels instructors connect, webhook events as they arrived (deduplicated by
//! `webhookEventId`, so a redelivery is recognised and handled once), and each channel's friend
//! list as follow and unfollow events leave it. Events may arrive out of order, so a friend's
//! status only moves forward in event time.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineChannel {
    pub channel_id: String,
    pub account_id: AccountId,
    pub bot_user_id: String,
}

/// Connect a channel to `account`, or update it when the account already holds it. Returns
/// `false`, changing nothing, when another account holds the channel. The ownership check is
/// part of the one statement, so two accounts saving the same new channel at once cannot both
/// win: the later one meets the committed row and is refused.
pub async fn put_channel(
    c: &mut AnyConnection,
    account: AccountId,
    channel_id: &str,
    bot_user_id: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO line_channels (channel_id, account_id, bot_user_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (channel_id) DO UPDATE SET bot_user_id = $3, updated_at = $4
         WHERE line_channels.account_id = $2",
    )
    .bind(channel_id)
    .bind(account.0)
    .bind(bot_user_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn channel(c: &mut AnyConnection, channel_id: &str) -> Result<Option<LineChannel>> {
    let row = sqlx::query("SELECT channel_id, account_id, bot_user_id FROM line_channels WHERE channel_id = $1")
        .bind(channel_id)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| LineChannel { channel_id: r.get(0), account_id: AccountId(r.get(1)), bot_user_id: r.get(2) }))
}

pub async fn channels_of(c: &mut AnyConnection, account: AccountId) -> Result<Vec<LineChannel>> {
    let rows = sqlx::query(
        "SELECT channel_id, account_id, bot_user_id FROM line_channels WHERE account_id = $1 ORDER BY channel_id",
    )
    .bind(account.0)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| LineChannel { channel_id: r.get(0), account_id: AccountId(r.get(1)), bot_user_id: r.get(2) })
        .collect())
}

#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub webhook_event_id: &'a str,
    pub event_type: &'a str,
    pub user_id: Option<&'a str>,
    pub event_ts: i64,
    pub redelivery: bool,
    /// The event's JSON as received.
    pub body: &'a str,
    /// Stored as handled (at `now`): its effects are applied in the same transaction.
    pub handled: bool,
}

/// Store an event unless it is already stored (same channel and `webhookEventId`); returns
/// whether it was new.
pub async fn insert_event(c: &mut AnyConnection, channel_id: &str, e: &NewEvent<'_>, now: i64) -> Result<bool> {
    Ok(insert_events(c, &[(channel_id, e.clone())], now).await?[0])
}

/// Rows per statement in [`insert_events`]: 9 parameters each, well under SQLite's 32,766 and
/// PostgreSQL's 65,535.
const INSERT_ROWS: usize = 200;

/// Store many events (each with its channel) in as few statements as the batch allows, each
/// unless it is already stored (same channel and `webhookEventId`); returns, in order, whether each
/// was new. An event that occurs twice in `events` is new at most at its first occurrence.
/// Either every event is stored or, on an error, the caller's transaction must be rolled back.
pub async fn insert_events(c: &mut AnyConnection, events: &[(&str, NewEvent<'_>)], now: i64) -> Result<Vec<bool>> {
    let mut inserted: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    for chunk in events.chunks(INSERT_ROWS) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 1 + i * 9;
                let p: Vec<String> = (b..b + 9).map(|n| format!("${n}")).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO line_webhook_events (channel_id, webhook_event_id, event_type, user_id, event_ts, redelivery, body, received_at, handled_at)
             VALUES {} ON CONFLICT (channel_id, webhook_event_id) DO NOTHING RETURNING channel_id, webhook_event_id",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (channel_id, e) in chunk {
            q = q
                .bind(*channel_id)
                .bind(e.webhook_event_id)
                .bind(e.event_type)
                .bind(e.user_id)
                .bind(e.event_ts)
                .bind(i64::from(e.redelivery))
                .bind(e.body)
                .bind(now)
                .bind(e.handled.then_some(now));
        }
        for row in q.fetch_all(&mut *c).await? {
            inserted.insert((row.get(0), row.get(1)));
        }
    }
    // A key that occurs twice in one statement is inserted once and returned once: it counts as
    // new at its first occurrence (the occurrences are the same event, delivered twice).
    Ok(events
        .iter()
        .map(|(channel_id, e)| inserted.remove(&(channel_id.to_string(), e.webhook_event_id.to_string())))
        .collect())
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: i64,
    pub webhook_event_id: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub event_ts: i64,
    pub body: String,
    pub handled_at: Option<i64>,
}

/// Unhandled events of a channel, oldest event first, for handling in the caller's
/// transaction. On PostgreSQL each is locked (`FOR UPDATE SKIP LOCKED`): a second job of the
/// same channel running at once gets other events, never these. On SQLite the caller's
/// transaction holds the one write lock, which serialises such jobs.
pub async fn claim_unhandled(
    c: &mut AnyConnection,
    backend: crate::Backend,
    channel_id: &str,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    let lock = match backend {
        crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        crate::Backend::Sqlite => "",
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, webhook_event_id, event_type, user_id, event_ts, body, handled_at FROM line_webhook_events
         WHERE channel_id = $1 AND handled_at IS NULL ORDER BY event_ts, id LIMIT $2{lock}"
    )))
    .bind(channel_id)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(event_row).collect())
}

/// What the intake needs to know of a channel before it stores a batch, in one statement:
/// whether it has events stored unhandled (waiting for the `line.events` job), and whether any
/// course is attached to it (only then can a follow start a course).
pub async fn channel_state(c: &mut AnyConnection, channel_id: &str) -> Result<ChannelState> {
    let row = sqlx::query(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM line_webhook_events WHERE channel_id = $1 AND handled_at IS NULL) THEN 1 ELSE 0 END,
                CASE WHEN EXISTS (SELECT 1 FROM courses WHERE line_channel_id = $1) THEN 1 ELSE 0 END",
    )
    .bind(channel_id)
    .fetch_one(c)
    .await?;
    Ok(ChannelState { has_unhandled: row.get::<i64, _>(0) == 1, has_courses: row.get::<i64, _>(1) == 1 })
}

#[derive(Debug, Clone, Copy)]
pub struct ChannelState {
    pub has_unhandled: bool,
    pub has_courses: bool,
}

/// Unhandled events of a channel, oldest event first.
pub async fn unhandled(c: &mut AnyConnection, channel_id: &str, limit: i64) -> Result<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "SELECT id, webhook_event_id, event_type, user_id, event_ts, body, handled_at FROM line_webhook_events
         WHERE channel_id = $1 AND handled_at IS NULL ORDER BY event_ts, id LIMIT $2",
    )
    .bind(channel_id)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(event_row).collect())
}

fn event_row(r: &sqlx::any::AnyRow) -> StoredEvent {
    StoredEvent {
        id: r.get(0),
        webhook_event_id: r.get(1),
        event_type: r.get(2),
        user_id: r.get(3),
        event_ts: r.get(4),
        body: r.get(5),
        handled_at: r.get(6),
    }
}

/// Every stored event of a channel at once, for tests and tools on small channels; anything
/// that lists a channel's events for people or in bulk pages with [`events_page`].
pub async fn events_of(c: &mut AnyConnection, channel_id: &str) -> Result<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "SELECT id, webhook_event_id, event_type, user_id, event_ts, body, handled_at FROM line_webhook_events
         WHERE channel_id = $1 ORDER BY id",
    )
    .bind(channel_id)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(event_row).collect())
}

/// Up to `limit` of a channel's events with an id above `after_id` (0 for the first page), in
/// id order: the next page starts after the last id of this one.
pub async fn events_page(
    c: &mut AnyConnection,
    channel_id: &str,
    after_id: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "SELECT id, webhook_event_id, event_type, user_id, event_ts, body, handled_at FROM line_webhook_events
         WHERE channel_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(channel_id)
    .bind(after_id)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(event_row).collect())
}

/// Delete up to `limit` events handled before `handled_before` (their bodies hold users'
/// messages); returns how many went. Unhandled events are never deleted. The newest row of the
/// table is kept whatever its age, so SQLite (which numbers a new row after the highest id)
/// never hands a purged id to a new event.
pub async fn purge_handled_events(c: &mut AnyConnection, handled_before: i64, limit: i64) -> Result<u64> {
    let r = sqlx::query(
        "DELETE FROM line_webhook_events WHERE id IN (
             SELECT id FROM line_webhook_events
             WHERE handled_at < $1 AND id < (SELECT MAX(id) FROM line_webhook_events)
             LIMIT $2)",
    )
    .bind(handled_before)
    .bind(limit)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Mark an event handled; `false` when it already was.
pub async fn mark_handled(c: &mut AnyConnection, id: i64, now: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE line_webhook_events SET handled_at = $2 WHERE id = $1 AND handled_at IS NULL")
        .bind(id)
        .bind(now)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Mark events handled, in one statement; returns the ids that were not handled before (the
/// caller applies only those).
pub async fn mark_handled_many(c: &mut AnyConnection, ids: &[i64], now: i64) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Integers only, so the list is safe to write into the statement.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE line_webhook_events SET handled_at = $1 WHERE id IN ({list}) AND handled_at IS NULL RETURNING id"
    )))
    .bind(now)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One friend's newest follow/unfollow among a batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendChange {
    pub user_id: String,
    pub status: FriendStatus,
    /// The event time of `status`.
    pub event_ts: i64,
    /// The newest follow in the batch, if any (kept as `followed_at`).
    pub followed_at: Option<i64>,
    /// The reply token of the follow that is `status`, when it came with the webhook just now
    /// (worth a try for about a minute: LINE NOTES §2).
    pub reply_token: Option<String>,
}

/// Apply friend changes (at most one per user) in one statement, with [`set_friend`]'s rule:
/// a change older than what was last applied to that friend changes nothing. A follow's reply
/// token is kept with the friend until [`crate::courses::REPLY_WINDOW_MS`] from `now`.
pub async fn set_friends(c: &mut AnyConnection, channel_id: &str, changes: &[FriendChange], now: i64) -> Result<()> {
    for chunk in changes.chunks(500) {
        let mut values = Vec::with_capacity(chunk.len());
        for i in 0..chunk.len() {
            let b = 4 + i * 5;
            values.push(format!("($1, ${}, ${}, ${}, ${}, $2, ${}, $3)", b, b + 1, b + 2, b + 3, b + 4));
        }
        let sql = format!(
            "INSERT INTO line_friends (channel_id, user_id, status, followed_at, status_event_ts, updated_at,
                 follow_reply_token, follow_reply_until)
             VALUES {}
             ON CONFLICT (channel_id, user_id) DO UPDATE SET status = excluded.status,
                 followed_at = COALESCE(excluded.followed_at, line_friends.followed_at),
                 status_event_ts = excluded.status_event_ts, updated_at = excluded.updated_at,
                 follow_reply_token = excluded.follow_reply_token, follow_reply_until = excluded.follow_reply_until
             WHERE line_friends.status_event_ts <= excluded.status_event_ts",
            values.join(", ")
        );
        let until = now + crate::courses::REPLY_WINDOW_MS;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(channel_id).bind(now).bind(until);
        for ch in chunk {
            q = q
                .bind(ch.user_id.as_str())
                .bind(ch.status.code())
                .bind(ch.followed_at)
                .bind(ch.event_ts)
                .bind(ch.reply_token.as_deref());
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendStatus {
    Following,
    Blocked,
}

impl FriendStatus {
    fn code(self) -> &'static str {
        match self {
            FriendStatus::Following => "following",
            FriendStatus::Blocked => "blocked",
        }
    }
}

/// Record a follow or unfollow at `event_ts`; an event older than the last one applied to
/// this friend changes nothing.
pub async fn set_friend(
    c: &mut AnyConnection,
    channel_id: &str,
    user_id: &str,
    status: FriendStatus,
    event_ts: i64,
    now: i64,
) -> Result<()> {
    let followed_at = (status == FriendStatus::Following).then_some(event_ts);
    sqlx::query(
        "INSERT INTO line_friends (channel_id, user_id, status, followed_at, status_event_ts, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (channel_id, user_id) DO UPDATE SET status = $3,
             followed_at = COALESCE($4, line_friends.followed_at), status_event_ts = $5, updated_at = $6
         WHERE line_friends.status_event_ts <= $5",
    )
    .bind(channel_id)
    .bind(user_id)
    .bind(status.code())
    .bind(followed_at)
    .bind(event_ts)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    pub user_id: String,
    pub status: FriendStatus,
    pub followed_at: Option<i64>,
}

/// Every friend of a channel at once, for tests and tools on small channels; anything that
/// lists friends for people or in bulk pages with [`friends_page`].
pub async fn friends(c: &mut AnyConnection, channel_id: &str) -> Result<Vec<Friend>> {
    let rows =
        sqlx::query("SELECT user_id, status, followed_at FROM line_friends WHERE channel_id = $1 ORDER BY user_id")
            .bind(channel_id)
            .fetch_all(c)
            .await?;
    Ok(rows.iter().map(friend_row).collect())
}

/// Up to `limit` friends of a channel whose user id sorts after `after_user_id` ("" for the
/// first page), in user id order: the next page starts after the last user id of this one.
pub async fn friends_page(
    c: &mut AnyConnection,
    channel_id: &str,
    after_user_id: &str,
    limit: i64,
) -> Result<Vec<Friend>> {
    let rows = sqlx::query(
        "SELECT user_id, status, followed_at FROM line_friends WHERE channel_id = $1 AND user_id > $2
         ORDER BY user_id LIMIT $3",
    )
    .bind(channel_id)
    .bind(after_user_id)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(friend_row).collect())
}

fn friend_row(r: &sqlx::any::AnyRow) -> Friend {
    Friend {
        user_id: r.get(0),
        status: if r.get::<String, _>(1) == "blocked" { FriendStatus::Blocked } else { FriendStatus::Following },
        followed_at: r.get(2),
    }
}

/// What LINE said about a channel's bot when LINEステップ配信設定 was saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotProfile {
    pub name: String,
    pub picture_url: Option<String>,
    pub basic_id: String,
}

/// Record the bot's profile on the account's channel (no row changes for another account's).
pub async fn set_bot_profile(
    c: &mut AnyConnection,
    account: AccountId,
    channel_id: &str,
    bot: &BotProfile,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE line_channels SET bot_name = $3, bot_picture_url = $4, bot_basic_id = $5, updated_at = $6
         WHERE channel_id = $1 AND account_id = $2",
    )
    .bind(channel_id)
    .bind(account.0)
    .bind(&bot.name)
    .bind(&bot.picture_url)
    .bind(&bot.basic_id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The bot's profile as last recorded, when the channel is the account's.
pub async fn bot_profile(c: &mut AnyConnection, account: AccountId, channel_id: &str) -> Result<Option<BotProfile>> {
    let row = sqlx::query(
        "SELECT bot_name, bot_picture_url, bot_basic_id FROM line_channels WHERE channel_id = $1 AND account_id = $2",
    )
    .bind(channel_id)
    .bind(account.0)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| BotProfile { name: r.get(0), picture_url: r.get(1), basic_id: r.get(2) }))
}

/// A LINE Login channel (公式LINE連携) and the courses it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginChannel {
    pub id: i64,
    pub account_id: AccountId,
    pub channel_id: String,
    pub courses: Vec<(i64, String)>,
}

/// Register or update the account's LINE Login channel and the courses it serves; `id` is the
/// row being edited (`None` for 新規公式 LINE 登録). `None` back: the channel id is another
/// row's (this account's or another's), or `id` is not the account's; nothing was changed.
/// Courses not the account's are ignored; a course moves here from any other login channel.
pub async fn put_login_channel(
    c: &mut AnyConnection,
    account: AccountId,
    id: Option<i64>,
    channel_id: &str,
    courses: &[i64],
    now: i64,
) -> Result<Option<i64>> {
    let id = match id {
        Some(id) => {
            let r = sqlx::query(
                "UPDATE line_login_channels SET channel_id = $3, updated_at = $4 WHERE id = $1 AND account_id = $2
                 AND NOT EXISTS (SELECT 1 FROM line_login_channels o WHERE o.channel_id = $3 AND o.id <> $1)",
            )
            .bind(id)
            .bind(account.0)
            .bind(channel_id)
            .bind(now)
            .execute(&mut *c)
            .await?;
            if r.rows_affected() != 1 {
                return Ok(None);
            }
            id
        }
        None => {
            let row: Option<i64> = sqlx::query_scalar(
                "INSERT INTO line_login_channels (account_id, channel_id, created_at, updated_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (channel_id) DO NOTHING RETURNING id",
            )
            .bind(account.0)
            .bind(channel_id)
            .bind(now)
            .fetch_optional(&mut *c)
            .await?;
            match row {
                Some(id) => id,
                None => return Ok(None),
            }
        }
    };
    sqlx::query(
        "UPDATE courses SET line_login_id = NULL, updated_at = $3 WHERE line_login_id = $1 AND account_id = $2",
    )
    .bind(id)
    .bind(account.0)
    .bind(now)
    .execute(&mut *c)
    .await?;
    for course in courses {
        sqlx::query("UPDATE courses SET line_login_id = $1, updated_at = $4 WHERE id = $2 AND account_id = $3")
            .bind(id)
            .bind(course)
            .bind(account.0)
            .bind(now)
            .execute(&mut *c)
            .await?;
    }
    Ok(Some(id))
}

/// The account's LINE Login channels with their courses, in registration order.
pub async fn login_channels(c: &mut AnyConnection, account: AccountId) -> Result<Vec<LoginChannel>> {
    let rows = sqlx::query(
        "SELECT l.id, l.channel_id, co.id, co.title FROM line_login_channels l
         LEFT JOIN courses co ON co.line_login_id = l.id
         WHERE l.account_id = $1 ORDER BY l.id, co.id",
    )
    .bind(account.0)
    .fetch_all(c)
    .await?;
    let mut out: Vec<LoginChannel> = Vec::new();
    for r in &rows {
        let id: i64 = r.get(0);
        if out.last().is_none_or(|l| l.id != id) {
            out.push(LoginChannel { id, account_id: account, channel_id: r.get(1), courses: Vec::new() });
        }
        let course: Option<i64> = r.get(2);
        if let (Some(course), Some(l)) = (course, out.last_mut()) {
            l.courses.push((course, r.get(3)));
        }
    }
    Ok(out)
}

/// One of the account's LINE Login channels.
pub async fn login_channel(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Option<LoginChannel>> {
    Ok(login_channels(c, account).await?.into_iter().find(|l| l.id == id))
}

/// A LINE Login channel by its LINE channel id (the callback's), whoever holds it.
pub async fn login_channel_by_channel_id(c: &mut AnyConnection, channel_id: &str) -> Result<Option<(i64, AccountId)>> {
    let row = sqlx::query("SELECT id, account_id FROM line_login_channels WHERE channel_id = $1")
        .bind(channel_id)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| (r.get(0), AccountId(r.get(1)))))
}

/// Remove the account's LINE Login channel; its courses are no longer LINE-linked. Returns its
/// channel id (for the caller to drop the sealed secret), `None` when not the account's.
pub async fn delete_login_channel(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("DELETE FROM line_login_channels WHERE id = $1 AND account_id = $2 RETURNING channel_id")
        .bind(id)
        .bind(account.0)
        .fetch_optional(c)
        .await?)
}

/// A LINE account registered as テスト配信先.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecipient {
    pub id: i64,
    pub channel_id: String,
    pub line_user_id: String,
    pub display_name: String,
}

/// Register (or rename) a test recipient of the account's channel.
pub async fn put_test_recipient(
    c: &mut AnyConnection,
    account: AccountId,
    channel_id: &str,
    line_user_id: &str,
    display_name: &str,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO line_test_recipients (account_id, channel_id, line_user_id, display_name, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id, channel_id, line_user_id) DO UPDATE SET display_name = $4
         RETURNING id",
    )
    .bind(account.0)
    .bind(channel_id)
    .bind(line_user_id)
    .bind(display_name)
    .bind(now)
    .fetch_one(c)
    .await?)
}

/// The account's test recipients on a channel, in registration order.
pub async fn test_recipients(
    c: &mut AnyConnection,
    account: AccountId,
    channel_id: &str,
) -> Result<Vec<TestRecipient>> {
    let rows = sqlx::query(
        "SELECT id, channel_id, line_user_id, display_name FROM line_test_recipients
         WHERE account_id = $1 AND channel_id = $2 ORDER BY id",
    )
    .bind(account.0)
    .bind(channel_id)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| TestRecipient { id: r.get(0), channel_id: r.get(1), line_user_id: r.get(2), display_name: r.get(3) })
        .collect())
}

/// Remove one of the account's test recipients.
pub async fn delete_test_recipient(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<bool> {
    let r = sqlx::query("DELETE FROM line_test_recipients WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(account.0)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// A LINE Login under way (see migration 0012).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    pub state: String,
    pub purpose: String,
    pub account_id: AccountId,
    pub course_id: i64,
    pub student_id: Option<i64>,
    pub browser_hash: String,
    pub nonce: String,
    pub key_id: String,
    pub sealed_verifier: String,
    pub redirect_uri: String,
    pub expires_at: i64,
}

/// Store a login under way; attempts that expired before `now` go (a bounded number).
pub async fn put_login_attempt(c: &mut AnyConnection, a: &LoginAttempt, now: i64) -> Result<()> {
    sqlx::query(
        "DELETE FROM line_login_attempts WHERE state IN
             (SELECT state FROM line_login_attempts WHERE expires_at < $1 ORDER BY expires_at LIMIT 100)",
    )
    .bind(now)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "INSERT INTO line_login_attempts (state, purpose, account_id, course_id, student_id, browser_hash, nonce,
             key_id, sealed_verifier, redirect_uri, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&a.state)
    .bind(&a.purpose)
    .bind(a.account_id.0)
    .bind(a.course_id)
    .bind(a.student_id)
    .bind(&a.browser_hash)
    .bind(&a.nonce)
    .bind(&a.key_id)
    .bind(&a.sealed_verifier)
    .bind(&a.redirect_uri)
    .bind(a.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Take the login for `state` started by the browser whose cookie hashes to `browser_hash`
/// (once: a second callback with the same state finds nothing; another browser's callback
/// finds nothing and leaves the login to its own browser).
pub async fn take_login_attempt(
    c: &mut AnyConnection,
    state: &str,
    browser_hash: &str,
) -> Result<Option<LoginAttempt>> {
    let row = sqlx::query(
        "DELETE FROM line_login_attempts WHERE state = $1 AND browser_hash = $2
         RETURNING state, purpose, account_id, course_id, student_id, browser_hash, nonce, key_id, sealed_verifier,
             redirect_uri, expires_at",
    )
    .bind(state)
    .bind(browser_hash)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| LoginAttempt {
        state: r.get(0),
        purpose: r.get(1),
        account_id: AccountId(r.get(2)),
        course_id: r.get(3),
        student_id: r.get(4),
        browser_hash: r.get(5),
        nonce: r.get(6),
        key_id: r.get(7),
        sealed_verifier: r.get(8),
        redirect_uri: r.get(9),
        expires_at: r.get(10),
    }))
}

/// A course's LINE Login channel id (when it is LINE-linked) and its Messaging API channel.
pub async fn course_login(c: &mut AnyConnection, course_id: i64) -> Result<Option<(String, Option<String>)>> {
    let row = sqlx::query(
        "SELECT l.channel_id, co.line_channel_id FROM courses co JOIN line_login_channels l ON l.id = co.line_login_id
         WHERE co.id = $1",
    )
    .bind(course_id)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
