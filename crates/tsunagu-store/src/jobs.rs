//! The durable job queue: one table, written in the caller's transaction.
//!
//! States: `queued` (waiting for `run_at`), `running` (claimed under a lease), `failed`
//! (out of attempts; shown to administrators with a retry button). A finished job is
//! deleted. A running job whose lease has passed is claimable again: that is how a job of
//! a process that died (even by SIGKILL) comes back. On PostgreSQL, claims use
//! `FOR UPDATE SKIP LOCKED`, so several processes never claim the same job; on SQLite
//! the claim is a single `UPDATE … RETURNING` under the database's one writer lock.
//!
//! A dedupe key names the work a job does: jobs with one key are interchangeable, and at most
//! one of them waits in the queue (a unique index over queued rows). Enqueueing a key that is
//! already queued is a no-op; one that is only running queues a second job, which is how a
//! coalescing job (a channel's `line.events`) picks up what arrived while the first ran. A job
//! that failed for good does not hold its key, so a recurring job can be scheduled again.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Backend, Result};

#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub payload: &'a serde_json::Value,
    /// At most one queued job per key; enqueueing a key that is already queued is a no-op.
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

/// Returns the new job's id, or `None` when a job with the same dedupe key is already queued.
pub async fn enqueue(c: &mut AnyConnection, job: &NewJob<'_>, now: i64) -> Result<Option<i64>> {
    insert(c, job, now, "VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $6)").await
}

/// Enqueue several jobs in one statement (one round trip to the writer), each as [`enqueue`]
/// would: a job whose dedupe key is already queued is skipped. Returns how many were queued.
pub async fn enqueue_all(c: &mut AnyConnection, batch: &[NewJob<'_>], now: i64) -> Result<u64> {
    let mut queued = 0;
    // 500 rows of 5 parameters each stay far below either database's limit on parameters.
    for chunk in batch.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, run_at, created_at, updated_at)
             VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 5 + 2;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${b}, ${}, ${}, 'queued', 0, ${}, ${}, $1, $1)", b + 1, b + 2, b + 3, b + 4));
        }
        sql.push_str(" ON CONFLICT (dedupe_key) WHERE state = 'queued' DO NOTHING");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for job in chunk {
            q = q
                .bind(job.kind)
                .bind(job.payload.to_string())
                .bind(job.dedupe_key)
                .bind(job.max_attempts.max(1))
                .bind(job.run_at);
        }
        queued += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(queued)
}

/// Enqueue `job` unless a job with its dedupe key is queued or running (recurring jobs).
/// Returns the new job's id, if one was queued.
pub async fn ensure(c: &mut AnyConnection, job: &NewJob<'_>, now: i64) -> Result<Option<i64>> {
    let rows = "SELECT $1, $2, $3, 'queued', 0, $4, $5, $6, $6
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE dedupe_key = $3 AND state IN ('queued', 'running'))";
    insert(c, job, now, rows).await
}

/// The insert both share: `rows` is a `VALUES` or `SELECT` over $1 kind, $2 payload, $3 key,
/// $4 max attempts, $5 run at, $6 now.
async fn insert(c: &mut AnyConnection, job: &NewJob<'_>, now: i64, rows: &str) -> Result<Option<i64>> {
    let sql = format!(
        "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, run_at, created_at, updated_at)
         {rows}
         ON CONFLICT (dedupe_key) WHERE state = 'queued' DO NOTHING
         RETURNING id"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
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
    let rows = sqlx::query(sqlx::AssertSqlSafe(claim_sql(backend)))
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

/// The claim statement: $1 worker, $2 lease end, $3 now, $4 limit. Queued jobs that are due
/// and running jobs whose lease ran out are each read through their own index, in two
/// queries (an `OR` of the two would make the planner scan and sort the whole table, which
/// on SQLite happens under the write lock).
#[doc(hidden)]
pub fn claim_sql(backend: Backend) -> String {
    const QUEUED: &str = "SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $3 ORDER BY run_at, id LIMIT $4";
    const EXPIRED: &str =
        "SELECT id FROM jobs WHERE state = 'running' AND lease_until < $3 ORDER BY lease_until, id LIMIT $4";
    const SET: &str =
        "SET state = 'running', locked_by = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3";
    match backend {
        // MATERIALIZED: the planner may not re-run a locking subquery and exceed the limit.
        // (PostgreSQL allows no FOR UPDATE in a UNION's inputs, hence two CTEs.)
        Backend::Postgres => format!(
            "WITH q AS MATERIALIZED ({QUEUED} FOR UPDATE SKIP LOCKED),
                  e AS MATERIALIZED ({EXPIRED} FOR UPDATE SKIP LOCKED),
                  c AS (SELECT id FROM q UNION ALL SELECT id FROM e LIMIT $4)
             UPDATE jobs {SET} FROM c WHERE jobs.id = c.id
             RETURNING jobs.id, jobs.kind, jobs.payload, jobs.attempts, jobs.max_attempts"
        ),
        Backend::Sqlite => format!(
            "UPDATE jobs {SET}
             WHERE id IN (SELECT id FROM ({QUEUED}) UNION ALL SELECT id FROM ({EXPIRED}) LIMIT $4)
             RETURNING id, kind, payload, attempts, max_attempts"
        ),
    }
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
            let requeue = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs SET state = 'queued', run_at = $1, locked_by = NULL, lease_until = NULL, last_error = $2, updated_at = $3
                 WHERE id = $4 AND locked_by = $5 AND state = 'running' AND {NO_QUEUED_TWIN}"
            )))
            .bind(at)
            .bind(&error)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&mut *c)
            .await;
            return requeue_or_leave_to_twin(c, requeue, id, worker).await;
        }
        None => sqlx::query(
            "UPDATE jobs SET state = 'failed', locked_by = NULL, lease_until = NULL, last_error = $1, updated_at = $2
                 WHERE id = $3 AND locked_by = $4 AND state = 'running'",
        )
        .bind(&error)
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(c)
        .await?,
    };
    Ok(res.rows_affected() == 1)
}

/// Put a held job back in the queue until `at` without counting this attempt: the job could
/// not run because an upstream allowance is spent until a known time (Zoom's daily limits),
/// and waiting for it is not a failure. `note` is kept as the last error, for the console.
pub async fn postpone(c: &mut AnyConnection, id: i64, worker: &str, note: &str, now: i64, at: i64) -> Result<bool> {
    let note: String = note.chars().take(4000).collect();
    let requeue = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET state = 'queued', run_at = $1, locked_by = NULL, lease_until = NULL, last_error = $2,
             updated_at = $3, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
         WHERE id = $4 AND locked_by = $5 AND state = 'running' AND {NO_QUEUED_TWIN}"
    )))
    .bind(at)
    .bind(&note)
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(&mut *c)
    .await;
    requeue_or_leave_to_twin(c, requeue, id, worker).await
}

/// A job may go back to the queue only when no job with its key is queued already.
const NO_QUEUED_TWIN: &str = "(dedupe_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs t WHERE t.dedupe_key = jobs.dedupe_key AND t.state = 'queued'))";

/// After trying to put a held job back in the queue: when a job with the same key is queued
/// already (found by the update's condition, or by the unique index when it was queued
/// meanwhile), that twin does the same work, so this one is deleted instead.
async fn requeue_or_leave_to_twin(
    c: &mut AnyConnection,
    requeue: std::result::Result<sqlx::any::AnyQueryResult, sqlx::Error>,
    id: i64,
    worker: &str,
) -> Result<bool> {
    match requeue {
        Ok(r) if r.rows_affected() == 1 => return Ok(true),
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
        Err(e) => return Err(e.into()),
    }
    let res = sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND state = 'running'")
        .bind(id)
        .bind(worker)
        .execute(c)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Extend the leases of the given jobs, those that `worker` still holds. Returns how many.
pub async fn heartbeat(c: &mut AnyConnection, worker: &str, ids: &[i64], lease_until: i64) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    // Integers only, so the list is safe to write into the statement.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let res = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET lease_until = $1 WHERE locked_by = $2 AND state = 'running' AND id IN ({list})"
    )))
    .bind(lease_until)
    .bind(worker)
    .execute(c)
    .await?;
    Ok(res.rows_affected())
}

/// Hand a job back unfinished (graceful shutdown): it is due at once and the attempt is not
/// counted (or, when a job with its key is queued already, it is left to that one).
pub async fn release(c: &mut AnyConnection, id: i64, worker: &str, now: i64) -> Result<bool> {
    let requeue = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET state = 'queued', locked_by = NULL, lease_until = NULL, attempts = attempts - 1, run_at = $1, updated_at = $1
         WHERE id = $2 AND locked_by = $3 AND state = 'running' AND {NO_QUEUED_TWIN}"
    )))
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(&mut *c)
    .await;
    requeue_or_leave_to_twin(c, requeue, id, worker).await
}

/// Administrator's retry of a job that failed for good. When a job with its key is queued
/// already, that one will do the work and the failed row is removed.
pub async fn retry_failed(c: &mut AnyConnection, id: i64, now: i64) -> Result<bool> {
    let res = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 WHERE id = $2 AND state = 'failed'
         AND {NO_QUEUED_TWIN}"
    )))
    .bind(now)
    .bind(id)
    .execute(&mut *c)
    .await;
    match res {
        Ok(r) if r.rows_affected() == 1 => return Ok(true),
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
        Err(e) => return Err(e.into()),
    }
    let res = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'failed'").bind(id).execute(c).await?;
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
