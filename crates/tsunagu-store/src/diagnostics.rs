//! Marks written by the `diagnostic.touch` job, used by the crash-recovery and
//! multi-process tests and the queue benchmark to count how often a job body ran.

use sqlx::{AnyConnection, Row};

use crate::Result;

pub async fn record(c: &mut AnyConnection, job_key: &str, phase: &str, worker: &str, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO diagnostic_runs (job_key, phase, worker, at) VALUES ($1, $2, $3, $4)")
        .bind(job_key)
        .bind(phase)
        .bind(worker)
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}

/// (job_key, phase, worker) rows, oldest first.
pub async fn all(c: &mut AnyConnection) -> Result<Vec<(String, String, String)>> {
    let rows = sqlx::query("SELECT job_key, phase, worker FROM diagnostic_runs ORDER BY id").fetch_all(c).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}
