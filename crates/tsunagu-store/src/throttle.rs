//! Failed-login counters keyed by "ip:…" or "email:…", kept in the database so that every
//! instance sees the same counts. The policy (how many, how long) is the caller's.

use sqlx::{AnyConnection, Row};

use crate::Result;

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

pub async fn clear(c: &mut AnyConnection, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE throttle_key = $1").bind(key).execute(c).await?;
    Ok(())
}
