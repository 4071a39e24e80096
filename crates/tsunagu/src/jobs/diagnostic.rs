//! `diagnostic.touch`: a job that records when its body starts and finishes. Operators use it
//! to check that workers run; the crash-recovery and multi-process tests and the queue
//! benchmark use it to count executions (marks: `start`, `held` after a hold, `finish`). Payload: `{"key": "…", "hold_ms": 0,
//! "hold_on_attempt": 1}` (hold only on that attempt; omit to hold on every attempt).
//! With `"outcome": "done"` the handler records no finish mark and leaves recording its end to
//! the worker (as most handlers do). With `"wait_until_ms": T` it waits (as for a spent upstream
//! allowance) until the clock reaches T, after recording its start.

use tsunagu_store::{diagnostics, jobs::ClaimedJob};

use super::{JobError, Outcome};
use crate::app::App;

pub async fn run(app: &App, worker: &str, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let key = job.payload.get("key").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let hold_ms = job.payload.get("hold_ms").and_then(|v| v.as_u64()).unwrap_or(0);
    let hold_on = job.payload.get("hold_on_attempt").and_then(|v| v.as_i64());
    let record_start = job.payload.get("record_start").and_then(|v| v.as_bool()).unwrap_or(true);
    if record_start {
        let mut c = app.store.conn().await?;
        diagnostics::record(&mut c, &key, "start", worker, app.now()).await?;
    }
    if let Some(at) = job.payload.get("wait_until_ms").and_then(|v| v.as_i64())
        && app.now() < at
    {
        return Err(JobError::WaitUntil { at_ms: at, reason: "waiting for the test's allowance".into() });
    }
    if hold_ms > 0 && hold_on.is_none_or(|a| a == job.attempts) {
        tokio::time::sleep(std::time::Duration::from_millis(hold_ms)).await;
        // Shows whether a handler kept running after it should have been stopped.
        let mut c = app.store.conn().await?;
        diagnostics::record(&mut c, &key, "held", worker, app.now()).await?;
    }
    if job.payload.get("outcome").and_then(|v| v.as_str()) == Some("done") {
        return Ok(Outcome::Done);
    }
    // The finish mark and the job's completion commit together: exactly one finish per job.
    let mut tx = app.store.begin().await?;
    if tsunagu_store::jobs::complete(&mut tx, job.id, worker).await? {
        diagnostics::record(&mut tx, &key, "finish", worker, app.now()).await?;
        tx.commit().await.map_err(|e| JobError::Retry(e.to_string()))?;
    } else {
        tracing::warn!(job_id = job.id, "lease lost before finishing; another worker owns the job");
    }
    Ok(Outcome::Completed)
}
