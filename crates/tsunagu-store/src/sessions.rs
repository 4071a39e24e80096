//! Login sessions, stored by the SHA-256 of their token (the token itself lives only
//! in the browser's cookie), so they survive restarts and are shared by instances.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
    pub account_id: AccountId,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn create(
    c: &mut AnyConnection,
    token_hash: &str,
    account: AccountId,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(token_hash)
    .bind(account.0)
    .bind(now)
    .bind(expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// A live session, or `None` when unknown or expired.
pub async fn find_live(c: &mut AnyConnection, token_hash: &str, now: i64) -> Result<Option<Session>> {
    let row = sqlx::query(
        "SELECT token_hash, account_id, created_at, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| Session {
        token_hash: r.get(0),
        account_id: AccountId(r.get(1)),
        created_at: r.get(2),
        expires_at: r.get(3),
    }))
}

/// Slide the expiry forward (called at most once a minute per session by the app).
pub async fn touch(c: &mut AnyConnection, token_hash: &str, now: i64, expires_at: i64) -> Result<()> {
    sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE token_hash = $3")
        .bind(now)
        .bind(expires_at)
        .bind(token_hash)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn delete(c: &mut AnyConnection, token_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(c).await?;
    Ok(())
}

/// Log out everywhere else, e.g. after a password change.
pub async fn delete_others(c: &mut AnyConnection, account: AccountId, keep_token_hash: &str) -> Result<u64> {
    let res = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
        .bind(account.0)
        .bind(keep_token_hash)
        .execute(c)
        .await?;
    Ok(res.rows_affected())
}

pub async fn purge_expired(c: &mut AnyConnection, now: i64) -> Result<u64> {
    let res = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(c).await?;
    Ok(res.rows_affected())
}
