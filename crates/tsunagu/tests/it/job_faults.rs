//! The job runner when things go wrong: the database refuses a job's result, a handler hangs
//! past its deadline, a recurring job failed for good, and workers are woken only once the
//! enqueueing transaction has committed.

use serde_json::json;
use tsunagu_store::{diagnostics, jobs};

use crate::helpers::{Db, TestApp, eventually, install_fault, set_fault};

async fn enqueue(t: &TestApp, payload: serde_json::Value, max_attempts: i64) -> i64 {
    let mut c = t.app.store.conn().await.unwrap();
    let job = jobs::NewJob { kind: "diagnostic.touch", payload: &payload, dedupe_key: None, run_at: 0, max_attempts };
    jobs::enqueue(&mut c, &job, t.app.now()).await.unwrap().unwrap()
}

async fn marks(t: &TestApp, phase: &str) -> usize {
    let mut c = t.app.store.read().await.unwrap();
    diagnostics::all(&mut c).await.unwrap().iter().filter(|(_, p, _)| p == phase).count()
}

async fn job(t: &TestApp, id: i64) -> Option<jobs::JobRow> {
    let mut c = t.app.store.read().await.unwrap();
    jobs::get(&mut c, id).await.unwrap()
}

/// The database refuses the write that records a finished job, once: the worker retries that
/// write (keeping the job's lease alive meanwhile) instead of dropping it, so the job is
/// recorded as done and never runs a second time.
async fn a_refused_result_write_is_retried_and_the_job_runs_once(db: Db) {
    let Some(t) = TestApp::spawn_on(db, |_| {}).await else { return };
    install_fault(&t.app.store, "finish", "jobs", "DELETE", "OLD.kind = 'diagnostic.touch'").await;
    let id = enqueue(&t, json!({"key": "once", "outcome": "done"}), 3).await;
    set_fault(&t.app.store, "finish", true).await;
    let worker = t.worker.clone();
    let drain = tokio::spawn(async move { worker.drain().await });
    eventually(20, "the refused write is retried", || async { t.app.metrics.counter("job_result_write_retried") >= 1 })
        .await;
    set_fault(&t.app.store, "finish", false).await;
    assert_eq!(drain.await.unwrap(), 1);
    assert_eq!(job(&t, id).await.map(|j| j.state), None, "recorded as done");
    assert_eq!(marks(&t, "start").await, 1);
    // Nothing comes back after the lease either.
    t.clock.advance(10 * 60 * 1000);
    assert_eq!(t.run_jobs().await, 0);
    assert_eq!(marks(&t, "start").await, 1, "ran exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_write_is_retried_and_the_job_runs_once_sqlite() {
    a_refused_result_write_is_retried_and_the_job_runs_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_write_is_retried_and_the_job_runs_once_postgres() {
    a_refused_result_write_is_retried_and_the_job_runs_once(Db::Postgres).await;
}

/// A handler still running at its kind's deadline is stopped and its job retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_deadline_is_stopped_and_retried() {
    let t = TestApp::spawn_with(|c| {
        c.jobs.deadline_seconds.insert("diagnostic.touch".into(), 1);
    })
    .await;
    // Would hang for a minute on its first attempt.
    let id = enqueue(&t, json!({"key": "slow", "hold_ms": 60_000, "hold_on_attempt": 1}), 3).await;
    assert_eq!(t.run_jobs().await, 1);
    let row = job(&t, id).await.expect("kept for another attempt");
    assert_eq!((row.state.as_str(), row.attempts), ("queued", 1));
    assert!(row.last_error.as_deref().unwrap_or("").contains("deadline"), "{:?}", row.last_error);
    assert_eq!(marks(&t, "held").await, 0, "the handler was stopped, not left running");
    t.clock.advance(60_000);
    assert_eq!(t.run_jobs().await, 1);
    assert_eq!(marks(&t, "finish").await, 1);
    assert_eq!(marks(&t, "held").await, 0);
    t.assert_no_jobs_left().await;
}

/// A recurring job (maintenance) that failed for good is scheduled again: the failed row
/// keeps no claim on its key, and the worker makes sure one is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_job_that_failed_for_good_comes_back() {
    let t = TestApp::spawn().await;
    t.worker.ensure_recurring().await;
    // Maintenance's schedule (Stripe's reconciliation is another recurring kind).
    let maintenance = |j: &jobs::JobRow| j.kind == tsunagu::jobs::kinds::MAINTENANCE_PURGE;
    let mut c = t.app.store.conn().await.unwrap();
    let queued: Vec<_> =
        jobs::list_by_state(&mut c, "queued", 10).await.unwrap().into_iter().filter(maintenance).collect();
    assert_eq!(queued.len(), 1);
    let first = queued[0].id;
    // Its every attempt failed: it ends `failed`, as the crash-loop rule or the worker leave it.
    sqlx::query("UPDATE jobs SET state = 'failed', last_error = 'boom' WHERE id = $1")
        .bind(first)
        .execute(&mut *c)
        .await
        .unwrap();
    drop(c);
    t.worker.ensure_recurring().await;
    let mut c = t.app.store.read().await.unwrap();
    let queued: Vec<_> =
        jobs::list_by_state(&mut c, "queued", 10).await.unwrap().into_iter().filter(maintenance).collect();
    assert_eq!(queued.len(), 1, "scheduled again");
    assert_eq!(queued[0].kind, tsunagu::jobs::kinds::MAINTENANCE_PURGE);
    assert_ne!(queued[0].id, first);
    assert_eq!(jobs::list_by_state(&mut c, "failed", 10).await.unwrap().len(), 1, "the failure stays visible");
    drop(c);
    // And it runs: due within a minute, it does its work and schedules its next run.
    t.clock.advance(61_000);
    assert!(t.run_jobs().await >= 1);
    let mut c = t.app.store.read().await.unwrap();
    let next: Vec<_> =
        jobs::list_by_state(&mut c, "queued", 10).await.unwrap().into_iter().filter(maintenance).collect();
    assert_eq!(next.len(), 1);
    assert!(next[0].run_at > t.app.now() + 59 * 60 * 1000, "an hour later");
}

/// Enqueueing does not wake workers (they would only wait for the enqueuer's transaction);
/// waking is done after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_woken_after_the_commit_not_before() {
    let t = TestApp::spawn().await;
    let woken = t.app.job_wakeup.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let mut tx = t.app.store.begin().await.unwrap();
    tsunagu::jobs::enqueue(&mut tx, &t.app, "diagnostic.touch", &json!({"key": "w"}), None, 0).await.unwrap();
    assert!(futures_util::FutureExt::now_or_never(woken.as_mut()).is_none(), "woken before the commit");
    tx.commit().await.unwrap();
    tsunagu::jobs::wake(&t.app);
    assert!(futures_util::FutureExt::now_or_never(woken.as_mut()).is_some());
    // The same holds for the app's own paths: a sign-up's mail wakes them after its commit.
    let woken = t.app.job_wakeup.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    t.signup("wake@example.com", "起床").await;
    assert!(futures_util::FutureExt::now_or_never(woken.as_mut()).is_some());
    assert_eq!(t.run_jobs().await, 2);
    t.assert_no_jobs_left().await;
}

/// A job waiting for an upstream allowance (a Zoom daily limit) goes back to the queue until
/// then without spending an attempt: with one attempt allowed, it still runs after the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_an_allowance_keeps_its_attempts() {
    let t = TestApp::spawn().await;
    let until = t.app.now() + 3_600_000;
    let id = enqueue(&t, json!({"key": "wait", "wait_until_ms": until}), 1).await;
    assert_eq!(t.run_jobs().await, 1);
    let row = job(&t, id).await.expect("still queued");
    assert_eq!((row.state.as_str(), row.attempts, row.run_at), ("queued", 0, until), "the attempt is not counted");
    assert!(row.last_error.as_deref().unwrap_or("").contains("allowance"));
    assert_eq!(t.run_jobs().await, 0, "not due before the allowance is back");
    t.clock.advance(3_600_000);
    t.run_jobs().await;
    assert_eq!(job(&t, id).await.map(|j| j.state), None, "done after the wait");
    assert_eq!(marks(&t, "finish").await, 1);
}
