//! Outgoing mail. Each mail has an idempotency key naming its cause (e.g.
//! "password-changed:42:1700000000000"); the unique key makes a second enqueue for the same
//! cause a no-op, so a mail is never sent twice for one cause.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub account_id: Option<AccountId>,
    pub idempotency_key: &'a str,
    pub message_id: &'a str,
    pub to_address: &'a str,
    pub subject: &'a str,
    pub body_text: &'a str,
    /// An iCalendar entry to attach (`""`: none).
    pub calendar: &'a str,
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub id: i64,
    pub account_id: Option<AccountId>,
    pub idempotency_key: String,
    pub message_id: String,
    pub to_address: String,
    pub subject: String,
    pub body_text: String,
    /// `queued`, `sent` (handed to SMTP), `stored` (kept in the database only), `failed`.
    pub status: String,
    pub transport: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// An iCalendar entry to attach (`""`: none).
    pub calendar: String,
}

const COLUMNS: &str = "id, account_id, idempotency_key, message_id, to_address, subject, body_text, status, transport, last_error, created_at, sent_at, calendar";

fn from_row(r: &AnyRow) -> Mail {
    Mail {
        id: r.get(0),
        account_id: r.get::<Option<i64>, _>(1).map(AccountId),
        idempotency_key: r.get(2),
        message_id: r.get(3),
        to_address: r.get(4),
        subject: r.get(5),
        body_text: r.get(6),
        status: r.get(7),
        transport: r.get(8),
        last_error: r.get(9),
        created_at: r.get(10),
        sent_at: r.get(11),
        calendar: r.get(12),
    }
}

/// Returns the new mail's id, or `None` when a mail for this cause already exists.
pub async fn insert(c: &mut AnyConnection, m: &NewMail<'_>, now: i64) -> Result<Option<i64>> {
    let row = sqlx::query(
        "INSERT INTO mails (account_id, idempotency_key, message_id, to_address, subject, body_text, status, created_at,
             calendar)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(m.account_id.map(|a| a.0))
    .bind(m.idempotency_key)
    .bind(m.message_id)
    .bind(m.to_address)
    .bind(m.subject)
    .bind(m.body_text)
    .bind(now)
    .bind(m.calendar)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// For the mail job: any mail by id (the job is not acting for an account).
pub async fn get_for_delivery(c: &mut AnyConnection, id: i64) -> Result<Option<Mail>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM mails WHERE id = $1"));
    Ok(sqlx::query(sql).bind(id).fetch_optional(c).await?.as_ref().map(from_row))
}

pub async fn mark_delivered(c: &mut AnyConnection, id: i64, status: &str, transport: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE mails SET status = $1, transport = $2, sent_at = $3, last_error = NULL WHERE id = $4")
        .bind(status)
        .bind(transport)
        .bind(now)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn mark_error(c: &mut AnyConnection, id: i64, error: &str, final_failure: bool) -> Result<()> {
    let status = if final_failure { "failed" } else { "queued" };
    sqlx::query("UPDATE mails SET status = $1, last_error = $2 WHERE id = $3")
        .bind(status)
        .bind(error)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// An account's own mails, newest first.
pub async fn list_for_account(c: &mut AnyConnection, account: AccountId, limit: i64) -> Result<Vec<Mail>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM mails WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ));
    Ok(sqlx::query(sql).bind(account.0).bind(limit).fetch_all(c).await?.iter().map(from_row).collect())
}

/// A mail's place in the newest-first order of [`page_for_account`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailKey {
    pub created_at: i64,
    pub id: i64,
}

impl MailKey {
    pub fn of(m: &Mail) -> MailKey {
        MailKey { created_at: m.created_at, id: m.id }
    }
}

/// Where a page of mails starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAt {
    Newest,
    /// The mails listed after this one (older).
    OlderThan(MailKey),
    /// The mails listed before this one (newer).
    NewerThan(MailKey),
}

/// One page of an account's mails, newest first, and whether there are mails on either side.
#[derive(Debug, Clone)]
pub struct MailPage {
    pub mails: Vec<Mail>,
    pub has_newer: bool,
    pub has_older: bool,
}

/// A page of at most `limit` of the account's own mails, newest first, by keyset (so a page
/// costs the same however far back it is, and mails arriving meanwhile shift nothing). A key
/// with nothing beyond it (say its mails were purged) gives the newest page.
pub async fn page_for_account(c: &mut AnyConnection, account: AccountId, at: PageAt, limit: i64) -> Result<MailPage> {
    let limit = limit.max(1);
    // One row more than the page, to know whether the list goes on in that direction.
    let mut mails = match at {
        PageAt::Newest => Vec::new(),
        PageAt::OlderThan(k) => older_than(c, account, k, limit + 1).await?,
        PageAt::NewerThan(k) => newer_than(c, account, k, limit + 1).await?,
    };
    let at = if mails.is_empty() { PageAt::Newest } else { at };
    if at == PageAt::Newest {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mails WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        ));
        let rows = sqlx::query(sql).bind(account.0).bind(limit + 1).fetch_all(&mut *c).await?;
        mails = rows.iter().map(from_row).collect();
    }
    let overflow = mails.len() as i64 > limit;
    mails.truncate(limit as usize);
    let (has_newer, has_older) = match at {
        PageAt::Newest => (false, overflow),
        PageAt::OlderThan(_) => {
            let first = MailKey::of(&mails[0]);
            (!newer_than(c, account, first, 1).await?.is_empty(), overflow)
        }
        PageAt::NewerThan(_) => {
            // These came nearest first (oldest first); the page is shown newest first.
            mails.reverse();
            let last = MailKey::of(&mails[mails.len() - 1]);
            (overflow, !older_than(c, account, last, 1).await?.is_empty())
        }
    };
    Ok(MailPage { mails, has_newer, has_older })
}

/// Mails listed after `k` (older), newest first.
async fn older_than(c: &mut AnyConnection, account: AccountId, k: MailKey, limit: i64) -> Result<Vec<Mail>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM mails WHERE account_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ));
    let rows = sqlx::query(sql).bind(account.0).bind(k.created_at).bind(k.id).bind(limit).fetch_all(c).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Mails listed before `k` (newer), nearest first (oldest first).
async fn newer_than(c: &mut AnyConnection, account: AccountId, k: MailKey, limit: i64) -> Result<Vec<Mail>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM mails WHERE account_id = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3))
         ORDER BY created_at, id LIMIT $4"
    ));
    let rows = sqlx::query(sql).bind(account.0).bind(k.created_at).bind(k.id).bind(limit).fetch_all(c).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Delete up to `limit` mails created before `created_before` that are done with: sent,
/// stored, or failed for good (a failure is final, and its row holds the same personal data).
/// Queued mails are never deleted: their job still needs them. Returns how many went. The
/// newest row of the table is kept whatever its age, so SQLite (which numbers a new row after
/// the highest id) never hands a purged mail's id, which links and jobs name, to a new mail.
pub async fn purge_finished(c: &mut AnyConnection, created_before: i64, limit: i64) -> Result<u64> {
    let r = sqlx::query(
        "DELETE FROM mails WHERE id IN (
             SELECT id FROM mails
             WHERE created_at < $1 AND status IN ('sent', 'stored', 'failed') AND id < (SELECT MAX(id) FROM mails)
             LIMIT $2)",
    )
    .bind(created_before)
    .bind(limit)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// One of the account's own mails; another account's mail is `None`.
pub async fn get_for_account(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Option<Mail>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM mails WHERE id = $1 AND account_id = $2"));
    Ok(sqlx::query(sql).bind(id).bind(account.0).fetch_optional(c).await?.as_ref().map(from_row))
}

/// Every mail, for administrators (includes platform mails with no account).
pub async fn list_all(c: &mut AnyConnection, limit: i64) -> Result<Vec<Mail>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM mails ORDER BY created_at DESC, id DESC LIMIT $1"));
    Ok(sqlx::query(sql).bind(limit).fetch_all(c).await?.iter().map(from_row).collect())
}
