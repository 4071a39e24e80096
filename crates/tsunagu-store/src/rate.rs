//! Upstream limits shared by every process on this database: rate budgets (a schedule of
//! slots per key, reserved in chunks; `tsunagu_core::rate::SharedPlan` is its arithmetic) and
//! daily allowances (uses per key and day). Each change is one atomic statement, so processes
//! never see each other's half-done work and need no transaction. The policy (which keys,
//! what limits) is the caller's.

use sqlx::{AnyConnection, Row};

use crate::{Backend, Result};

/// The database's clock in microseconds since the Unix epoch, read when the statement runs (on
/// PostgreSQL after the row lock is granted). Every process reserves on this one clock, so
/// their own clocks may differ.
fn now_us(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
    }
}

/// Slots reserved on a rate budget, on the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// The first reserved slot; the others follow it `interval` apart.
    pub first_us: i64,
    /// The database's clock when it answered (at or after the reservation).
    pub now_us: i64,
}

impl Reservation {
    /// Microseconds from the answer until the first slot (negative: already due).
    pub fn wait_us(&self) -> i64 {
        self.first_us - self.now_us
    }
}

/// Reserve `units` consecutive slots `interval_us` apart on `key`'s schedule: from its next
/// free slot, or from now when that has passed, or from now when it lies more than
/// `horizon_us` ahead (only a clock that stepped back puts it there).
pub async fn reserve(
    c: &mut AnyConnection,
    backend: Backend,
    key: &str,
    units: u32,
    interval_us: u64,
    horizon_us: u64,
) -> Result<Reservation> {
    let now = now_us(backend);
    let max = match backend {
        Backend::Sqlite => "MAX",
        Backend::Postgres => "GREATEST",
    };
    // The same arithmetic as `tsunagu_core::rate::reserve_slots`.
    let sql = format!(
        "INSERT INTO rate_budgets (budget_key, next_slot_us) VALUES ($1, {now} + $2)
         ON CONFLICT (budget_key) DO UPDATE SET next_slot_us = CASE
             WHEN rate_budgets.next_slot_us > {now} + $3 THEN {now}
             ELSE {max}(rate_budgets.next_slot_us, {now}) END + $2
         RETURNING next_slot_us, {now}"
    );
    let span = i64::from(units) * interval_us as i64;
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key).bind(span).bind(horizon_us as i64).fetch_one(c).await?;
    let next: i64 = r.get(0);
    Ok(Reservation { first_us: next - span, now_us: r.get(1) })
}

/// Count one use of `key` on `day` unless `limit` are counted already: the new count, or
/// `None` when the allowance is spent (nothing changed).
pub async fn charge_daily(c: &mut AnyConnection, key: &str, day: i64, limit: u32) -> Result<Option<u32>> {
    if limit == 0 {
        return Ok(None);
    }
    let row = sqlx::query(
        "INSERT INTO daily_allowances (allowance_key, day, used) VALUES ($1, $2, 1)
         ON CONFLICT (allowance_key, day) DO UPDATE SET used = daily_allowances.used + 1
             WHERE daily_allowances.used < $3
         RETURNING used",
    )
    .bind(key)
    .bind(day)
    .bind(i64::from(limit))
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| r.get::<i64, _>(0) as u32))
}

/// Uses of `key` counted on `day`.
pub async fn used_daily(c: &mut AnyConnection, key: &str, day: i64) -> Result<u32> {
    let row = sqlx::query("SELECT used FROM daily_allowances WHERE allowance_key = $1 AND day = $2")
        .bind(key)
        .bind(day)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| r.get::<i64, _>(0) as u32).unwrap_or(0))
}

/// Forget the counts of days before `day`.
pub async fn purge_daily(c: &mut AnyConnection, day: i64) -> Result<u64> {
    let res = sqlx::query("DELETE FROM daily_allowances WHERE day < $1").bind(day).execute(c).await?;
    Ok(res.rows_affected())
}
