//! Failed-login counters keyed by "ip:…" or "email:…", kept in the database so that every
//! instance sees the same counts. The policy (how many, how long) is the caller's.

use sqlx::{AnyConnection, Row};

use crate::{Backend, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: i64,
    pub window_started_at: i64,
    pub blocked_until: i64,
}

pub async fn get(c: &mut AnyConnection, key: &str) -> Result<Option<ThrottleState>> {
    let row =
        sqlx::query("SELECT failures, window_started_at, blocked_until FROM login_throttle WHERE throttle_key = $1")
            .bind(key)
            .fetch_optional(c)
            .await?;
    Ok(row.map(|r| ThrottleState { failures: r.get(0), window_started_at: r.get(1), blocked_until: r.get(2) }))
}

pub async fn put(c: &mut AnyConnection, key: &str, s: ThrottleState) -> Result<()> {
    sqlx::query(
        "INSERT INTO login_throttle (throttle_key, failures, window_started_at, blocked_until) VALUES ($1, $2, $3, $4)
         ON CONFLICT (throttle_key) DO UPDATE SET failures = $2, window_started_at = $3, blocked_until = $4",
    )
    .bind(key)
    .bind(s.failures)
    .bind(s.window_started_at)
    .bind(s.blocked_until)
    .execute(c)
    .await?;
    Ok(())
}

/// Make sure the row exists and hold it for the rest of the transaction (PostgreSQL row lock;
/// on SQLite the transaction's `BEGIN IMMEDIATE` already serialises writers). Concurrent
/// log-in attempts for the same key therefore see each other's counts.
pub async fn lock(c: &mut AnyConnection, backend: Backend, key: &str, now: i64) -> Result<ThrottleState> {
    sqlx::query(
        "INSERT INTO login_throttle (throttle_key, failures, window_started_at, blocked_until) VALUES ($1, 0, $2, 0)
         ON CONFLICT (throttle_key) DO NOTHING",
    )
    .bind(key)
    .bind(now)
    .execute(&mut *c)
    .await?;
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    let sql =
        format!("SELECT failures, window_started_at, blocked_until FROM login_throttle WHERE throttle_key = $1{lock}");
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key).fetch_one(c).await?;
    Ok(ThrottleState { failures: r.get(0), window_started_at: r.get(1), blocked_until: r.get(2) })
}

/// Forget counters whose window ended and whose block expired before `before`.
pub async fn purge(c: &mut AnyConnection, before: i64) -> Result<u64> {
    let res = sqlx::query("DELETE FROM login_throttle WHERE window_started_at < $1 AND blocked_until < $1")
        .bind(before)
        .execute(c)
        .await?;
    Ok(res.rows_affected())
}

pub async fn clear(c: &mut AnyConnection, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE throttle_key = $1").bind(key).execute(c).await?;
    Ok(())
}
