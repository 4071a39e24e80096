//! The durable job queue: one table, written in the caller's transaction.
//!
//! States: `queued` (waiting for `run_at`), `running` (claimed under a lease), `failed`
//! (out of attempts; shown to administrators with a retry button). A finished job is
//! deleted. A running job whose lease has passed is claimable again: that is how a job of
//! a process that died (even by SIGKILL) comes back. On PostgreSQL, claims use
//! `FOR UPDATE SKIP LOCKED`, so several processes never claim the same job; on SQLite
//! the claim is a single `UPDATE … RETURNING` under the database's one writer lock.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Backend, Result};

#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub payload: &'a serde_json::Value,
    /// At most one live job per key; a second enqueue with the same key is a no-op.
    pub dedupe_key: Option<&'a str>,
    pub run_at: i64,
    pub max_attempts: i64,
}

#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Including this run.
    pub attempts: i64,
    pub max_attempts: i64,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub dedupe_key: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub locked_by: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Returns the new job's id, or `None` when a live job with the same dedupe key exists.
pub async fn enqueue(c: &mut AnyConnection, job: &NewJob<'_>, now: i64) -> Result<Option<i64>> {
    let row = sqlx::query(
        "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $6)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(job.kind)
    .bind(job.payload.to_string())
    .bind(job.dedupe_key)
    .bind(job.max_attempts.max(1))
    .bind(job.run_at)
    .bind(now)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Claim up to `limit` due jobs for `worker` until `now + lease_ms`.
pub async fn claim(
    c: &mut AnyConnection,
    backend: Backend,
    worker: &str,
    limit: i64,
    now: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedJob>> {
    // A job whose lease ran out on its last allowed attempt killed or outlived its worker
    // every time: stop it here, or it would crash-loop every process and never be seen.
    sqlx::query(
        "UPDATE jobs SET state = 'failed', locked_by = NULL, lease_until = NULL, updated_at = $1,
            last_error = 'the worker stopped (crash, kill or lost lease) during the last allowed attempt'
         WHERE state = 'running' AND lease_until < $1 AND attempts >= max_attempts",
    )
    .bind(now)
    .execute(&mut *c)
    .await?;
    const DUE: &str = "(state = 'queued' AND run_at <= $3) OR (state = 'running' AND lease_until < $3)";
    let sql = match backend {
        // MATERIALIZED: the planner may not re-run the locking subquery and exceed the limit.
        Backend::Postgres => format!(
            "WITH c AS MATERIALIZED (SELECT id FROM jobs WHERE {DUE} ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE jobs SET state = 'running', locked_by = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
             FROM c WHERE jobs.id = c.id
             RETURNING jobs.id, jobs.kind, jobs.payload, jobs.attempts, jobs.max_attempts"
        ),
        Backend::Sqlite => format!(
            "UPDATE jobs SET state = 'running', locked_by = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM jobs WHERE {DUE} ORDER BY run_at, id LIMIT $4)
             RETURNING id, kind, payload, attempts, max_attempts"
        ),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(c)
        .await?;
    let mut jobs = rows
        .iter()
        .map(|r| {
            let payload: String = r.get(2);
            ClaimedJob {
                id: r.get(0),
                kind: r.get(1),
                payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                attempts: r.get(3),
                max_attempts: r.get(4),
            }
        })
        .collect::<Vec<_>>();
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Finish a job. `false` means this worker no longer holds it (its lease ran out and
/// another worker took it over).
pub async fn complete(c: &mut AnyConnection, id: i64, worker: &str) -> Result<bool> {
    let res = sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND state = 'running'")
        .bind(id)
        .bind(worker)
        .execute(c)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Record a failed attempt: back to `queued` at `retry_at`, or `failed` for good when `None`.
pub async fn fail(
    c: &mut AnyConnection,
    id: i64,
    worker: &str,
    error: &str,
    now: i64,
    retry_at: Option<i64>,
) -> Result<bool> {
    let error: String = error.chars().take(4000).collect();
    let res = match retry_at {
        Some(at) => {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = $1, locked_by = NULL, lease_until = NULL, last_error = $2, updated_at = $3
                 WHERE id = $4 AND locked_by = $5 AND state = 'running'",
            )
            .bind(at)
            .bind(&error)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE jobs SET state = 'failed', locked_by = NULL, lease_until = NULL, last_error = $1, updated_at = $2
                 WHERE id = $3 AND locked_by = $4 AND state = 'running'",
            )
            .bind(&error)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await?
        }
    };
    Ok(res.rows_affected() == 1)
}

/// Extend the lease of every job `worker` is running.
pub async fn heartbeat(c: &mut AnyConnection, worker: &str, lease_until: i64) -> Result<u64> {
    let res = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE locked_by = $2 AND state = 'running'")
        .bind(lease_until)
        .bind(worker)
        .execute(c)
        .await?;
    Ok(res.rows_affected())
}

/// Hand a job back unfinished (graceful shutdown): it is due at once and the attempt is not counted.
pub async fn release(c: &mut AnyConnection, id: i64, worker: &str, now: i64) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE jobs SET state = 'queued', locked_by = NULL, lease_until = NULL, attempts = attempts - 1, run_at = $1, updated_at = $1
         WHERE id = $2 AND locked_by = $3 AND state = 'running'",
    )
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(c)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Administrator's retry of a job that failed for good.
pub async fn retry_failed(c: &mut AnyConnection, id: i64, now: i64) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 WHERE id = $2 AND state = 'failed'",
    )
    .bind(now)
    .bind(id)
    .execute(c)
    .await?;
    Ok(res.rows_affected() == 1)
}

const COLUMNS: &str = "id, kind, payload, dedupe_key, state, attempts, max_attempts, run_at, locked_by, lease_until, last_error, created_at, updated_at";

fn from_row(r: &AnyRow) -> JobRow {
    JobRow {
        id: r.get(0),
        kind: r.get(1),
        payload: r.get(2),
        dedupe_key: r.get(3),
        state: r.get(4),
        attempts: r.get(5),
        max_attempts: r.get(6),
        run_at: r.get(7),
        locked_by: r.get(8),
        lease_until: r.get(9),
        last_error: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
    }
}

pub async fn get(c: &mut AnyConnection, id: i64) -> Result<Option<JobRow>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"));
    Ok(sqlx::query(sql).bind(id).fetch_optional(c).await?.as_ref().map(from_row))
}

pub async fn list_by_state(c: &mut AnyConnection, state: &str, limit: i64) -> Result<Vec<JobRow>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE state = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
    ));
    Ok(sqlx::query(sql).bind(state).bind(limit).fetch_all(c).await?.iter().map(from_row).collect())
}

/// Number of jobs per state, for `/metrics` and the console.
pub async fn counts(c: &mut AnyConnection) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state").fetch_all(c).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Earliest `run_at` of a queued job, so an idle worker knows how long it may sleep.
pub async fn next_due(c: &mut AnyConnection) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT MIN(run_at) FROM jobs WHERE state = 'queued'").fetch_one(c).await?;
    Ok(row.try_get::<Option<i64>, _>(0).unwrap_or(None))
}
