//! Media files for step messages and their conversion state (処理中 / 完了 / 失敗). Every
//! function takes the owning account where a person's request is behind it.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    Processing,
    Ready,
    Failed,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Processing => "processing",
            MediaStatus::Ready => "ready",
            MediaStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> MediaStatus {
        match s {
            "ready" => MediaStatus::Ready,
            "failed" => MediaStatus::Failed,
            _ => MediaStatus::Processing,
        }
    }

    /// As the instructor reads it.
    pub fn label_ja(self) -> &'static str {
        match self {
            MediaStatus::Processing => "処理中",
            MediaStatus::Ready => "完了",
            MediaStatus::Failed => "失敗",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub id: i64,
    pub account_id: AccountId,
    pub original_name: String,
    pub category: String,
    pub status: MediaStatus,
    pub reason: String,
    pub upload_path: String,
    pub file_name: String,
    pub preview_name: String,
    pub size: i64,
    pub duration_ms: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub notes: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewMedia<'a> {
    pub original_name: &'a str,
    pub category: &'a str,
    pub upload_path: &'a str,
    pub file_name: &'a str,
    pub preview_name: &'a str,
    pub size: i64,
}

/// A received upload, processing. Returns its id.
pub async fn insert(c: &mut AnyConnection, account: AccountId, m: &NewMedia<'_>, now: i64) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO media_files (account_id, original_name, category, status, upload_path, file_name, preview_name, size, created_at, updated_at)
         VALUES ($1, $2, $3, 'processing', $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(account.0)
    .bind(m.original_name)
    .bind(m.category)
    .bind(m.upload_path)
    .bind(m.file_name)
    .bind(m.preview_name)
    .bind(m.size)
    .bind(now)
    .fetch_one(c)
    .await?;
    Ok(row.try_get(0)?)
}

macro_rules! columns {
    () => {
        "id, account_id, original_name, category, status, reason, upload_path, file_name, preview_name, size, duration_ms, width, height, notes, created_at, updated_at"
    };
}

macro_rules! select {
    ($($rest:expr),+) => {
        concat!("SELECT ", columns!(), " FROM media_files ", $($rest),+)
    };
}

/// No conversion job for the row is queued or running (it will never run again).
macro_rules! no_live_job {
    () => {
        "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dedupe_key = 'media:' || CAST(media_files.id AS TEXT)
                     AND j.state IN ('queued', 'running'))"
    };
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<MediaFile> {
    let notes: String = r.try_get("notes")?;
    Ok(MediaFile {
        id: r.try_get("id")?,
        account_id: AccountId(r.try_get("account_id")?),
        original_name: r.try_get("original_name")?,
        category: r.try_get("category")?,
        status: MediaStatus::parse(&r.try_get::<String, _>("status")?),
        reason: r.try_get("reason")?,
        upload_path: r.try_get("upload_path")?,
        file_name: r.try_get("file_name")?,
        preview_name: r.try_get("preview_name")?,
        size: r.try_get("size")?,
        duration_ms: r.try_get("duration_ms")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        notes: serde_json::from_str(&notes).unwrap_or_default(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// By id, for the conversion job (no account: the job was enqueued for this row).
pub async fn by_id(c: &mut AnyConnection, id: i64) -> Result<Option<MediaFile>> {
    let row = sqlx::query(select!("WHERE id = $1")).bind(id).fetch_optional(c).await?;
    row.as_ref().map(from_row).transpose()
}

/// One of the account's files.
pub async fn get(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Option<MediaFile>> {
    let row =
        sqlx::query(select!("WHERE id = $1 AND account_id = $2")).bind(id).bind(account.0).fetch_optional(c).await?;
    row.as_ref().map(from_row).transpose()
}

/// The account's files, newest first.
pub async fn list(c: &mut AnyConnection, account: AccountId) -> Result<Vec<MediaFile>> {
    let rows = sqlx::query(select!("WHERE account_id = $1 ORDER BY id DESC")).bind(account.0).fetch_all(c).await?;
    rows.iter().map(from_row).collect()
}

/// What [`delete`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The row is gone; its stored files are the caller's to remove.
    Removed(Box<MediaFile>),
    /// Still 処理中: its conversion job would store files for a row that no longer exists.
    Processing,
    /// Not one of the account's files (or deleted already).
    NotFound,
    /// Step messages or lessons show it (how many): they would lose their file.
    InUse(i64),
}

/// Removes one of the account's files unless it is 処理中 or a step message or lesson shows it
/// (a deleted step lets go of its file). Of 処理中: a conversion settling at the same
/// moment either comes first, and the row is deleted as 完了/失敗, or finds no row and removes
/// what it stored). A conversion job of the file that ended for good goes with it, in the
/// same transaction: nothing is left for an administrator to retry, and its dedupe key
/// (`media:{id}`) is free. (Ids are never reused: migration 0004 on SQLite.)
pub async fn delete(c: &mut AnyConnection, account: AccountId, id: i64) -> Result<Deleted> {
    let mut tx = sqlx::Connection::begin(&mut *c).await?;
    let row = sqlx::query(concat!(
        "DELETE FROM media_files WHERE id = $1 AND account_id = $2 AND status <> 'processing'
           AND NOT EXISTS (SELECT 1 FROM course_steps s WHERE s.media_id = media_files.id)
           AND NOT EXISTS (SELECT 1 FROM course_lessons l WHERE l.media_id = media_files.id) RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(account.0)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = row {
        let m = from_row(&r)?;
        sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND state = 'failed'")
            .bind(format!("media:{id}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(Deleted::Removed(Box::new(m)));
    }
    drop(tx);
    Ok(match get(c, account, id).await? {
        Some(m) if m.status == MediaStatus::Processing => Deleted::Processing,
        Some(_) => {
            let users: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM course_steps WHERE media_id = $1)
                      + (SELECT COUNT(*) FROM course_lessons WHERE media_id = $1)",
            )
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
            Deleted::InUse(users)
        }
        None => Deleted::NotFound,
    })
}

pub struct Ready<'a> {
    /// What the job found the file to be (an MP4 with sound only is audio) and the names it
    /// stored it under.
    pub category: &'a str,
    pub file_name: &'a str,
    pub preview_name: &'a str,
    pub size: i64,
    pub duration_ms: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub notes: &'a [String],
}

/// Converted and stored: 完了. Only a processing row moves (a late retry changes nothing).
pub async fn set_ready(c: &mut AnyConnection, id: i64, r: &Ready<'_>, now: i64) -> Result<bool> {
    let notes = serde_json::to_string(r.notes).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query(
        "UPDATE media_files SET status = 'ready', reason = '', size = $2, duration_ms = $3, width = $4, height = $5, notes = $6, updated_at = $7,
            category = $8, file_name = $9, preview_name = $10
         WHERE id = $1 AND status = 'processing'",
    )
    .bind(id)
    .bind(r.size)
    .bind(r.duration_ms)
    .bind(r.width)
    .bind(r.height)
    .bind(notes)
    .bind(now)
    .bind(r.category)
    .bind(r.file_name)
    .bind(r.preview_name)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// 失敗, with the reason for the instructor.
pub async fn set_failed(c: &mut AnyConnection, id: i64, reason: &str, now: i64) -> Result<bool> {
    fail(c, FAIL, id, reason, now).await
}

const FAIL: &str =
    "UPDATE media_files SET status = 'failed', reason = $2, updated_at = $3 WHERE id = $1 AND status = 'processing'";

async fn fail(c: &mut AnyConnection, sql: &'static str, id: i64, reason: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(sql).bind(id).bind(reason).bind(now).execute(c).await?;
    Ok(done.rows_affected() == 1)
}

/// Files still 処理中 whose conversion job will never run again (it failed for good: the
/// worker died on its last attempt, the store was down, the handler panicked) — for
/// [`set_failed`]. `account` narrows it to one instructor's files.
pub async fn orphaned(c: &mut AnyConnection, account: Option<AccountId>) -> Result<Vec<MediaFile>> {
    let rows = sqlx::query(select!(
        "WHERE status = 'processing' AND ($1 IS NULL OR account_id = $1) AND ",
        no_live_job!(),
        " ORDER BY id"
    ))
    .bind(account.map(|a| a.0))
    .fetch_all(c)
    .await?;
    rows.iter().map(from_row).collect()
}

/// 失敗 with `reason` for an [`orphaned`] file, re-checked in the update itself: false when
/// it was settled meanwhile or a job for it was queued again.
pub async fn fail_orphan(c: &mut AnyConnection, id: i64, reason: &str, now: i64) -> Result<bool> {
    const FAIL_ORPHAN: &str = concat!(
        "UPDATE media_files SET status = 'failed', reason = $2, updated_at = $3 WHERE id = $1 AND status = 'processing' AND ",
        no_live_job!()
    );
    fail(c, FAIL_ORPHAN, id, reason, now).await
}

/// The 処理中 files and the intake files they still need (everything else there can go).
pub async fn pending_uploads(c: &mut AnyConnection) -> Result<Vec<(i64, String)>> {
    let rows = sqlx::query("SELECT id, upload_path FROM media_files WHERE status = 'processing'").fetch_all(c).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}
