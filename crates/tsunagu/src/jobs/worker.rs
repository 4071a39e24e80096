//! The job runner: claims due jobs under a lease, runs up to `jobs.concurrency` at once
//! (each handler stopped at its kind's deadline), keeps the leases of the jobs it still holds
//! alive with a heartbeat, records each result (retrying that write while the database
//! refuses it), keeps recurring jobs scheduled, and on shutdown lets running jobs finish for
//! `jobs.shutdown_grace_seconds` before handing the rest back to the queue. Job kinds come
//! from the [`Registry`] the features handed in at startup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tsunagu_store::jobs::{self, ClaimedJob};

use super::{JobError, Outcome, Registry, backoff_ms};
use crate::app::SharedApp;

#[derive(Clone)]
pub struct Worker {
    app: SharedApp,
    registry: Arc<Registry>,
    id: Arc<str>,
    /// Jobs this worker holds (claimed and not yet recorded as finished), with the handle of
    /// each running handler task. Only these have their lease extended.
    running: Arc<Mutex<HashMap<i64, Option<AbortHandle>>>>,
}

/// How often recurring jobs are checked for (one queued or running each).
const RECURRING_CHECK: Duration = Duration::from_secs(60);

impl Worker {
    /// A worker for every job kind of this build ([`crate::features::job_registry`]).
    pub fn new(app: SharedApp) -> Worker {
        Worker::with_registry(app, crate::features::job_registry())
    }

    pub fn with_registry(app: SharedApp, registry: Arc<Registry>) -> Worker {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let id = format!("{}:{}:{}", host.trim(), std::process::id(), crate::crypto::random_hex(4));
        Worker { app, registry, id: id.into(), running: Arc::default() }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn lease_ms(&self) -> i64 {
        self.app.config.jobs.lease_seconds as i64 * 1000
    }

    /// Run until `shutdown` is cancelled, then drain gracefully.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(worker = %self.id, concurrency = self.app.config.jobs.concurrency, "job worker started");
        let heartbeat_stop = CancellationToken::new();
        let hb = tokio::spawn(self.clone().heartbeat(heartbeat_stop.clone()));
        let mut set: JoinSet<()> = JoinSet::new();
        let poll = Duration::from_millis(self.app.config.jobs.poll_interval_ms.max(10));
        let concurrency = self.app.config.jobs.concurrency.max(1);
        let mut recurring_checked: Option<tokio::time::Instant> = None;
        loop {
            while set.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
            }
            if recurring_checked.is_none_or(|t| t.elapsed() >= RECURRING_CHECK) {
                self.ensure_recurring().await;
                recurring_checked = Some(tokio::time::Instant::now());
            }
            let free = concurrency.saturating_sub(set.len());
            let mut claimed = 0;
            if free > 0 {
                match self.claim(free as i64).await {
                    Ok(batch) => {
                        claimed = batch.len();
                        for job in batch {
                            let w = self.clone();
                            set.spawn(async move { w.run_job(job).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed; will retry"),
                }
            }
            if claimed > 0 && claimed == free {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(_) = set.join_next(), if !set.is_empty() => {}
                _ = self.app.job_wakeup.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        let grace = Duration::from_secs(self.app.config.jobs.shutdown_grace_seconds);
        if !set.is_empty() {
            tracing::info!(running = set.len(), "waiting for running jobs before shutdown");
        }
        let drained = tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            // Stop the handlers themselves (not just the tasks awaiting them) before the jobs
            // are handed back, so that no handler keeps running while another process
            // picks its job up.
            let handles: Vec<AbortHandle> =
                self.running.lock().map(|r| r.values().flatten().cloned().collect()).unwrap_or_default();
            for h in handles {
                h.abort();
            }
            while set.join_next().await.is_some() {}
            self.hand_back().await;
        }
        heartbeat_stop.cancel();
        let _ = hb.await;
        tracing::info!(worker = %self.id, "job worker stopped");
    }

    /// Claim and run every job due now, one batch after another, until none is due.
    /// Tests and benchmarks use this to step the queue instead of sleeping.
    pub async fn drain(&self) -> usize {
        let mut n = 0;
        loop {
            let batch = match self.claim(self.app.config.jobs.concurrency.max(1) as i64).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed during drain");
                    return n;
                }
            };
            if batch.is_empty() {
                return n;
            }
            n += batch.len();
            let mut set = JoinSet::new();
            for job in batch {
                let w = self.clone();
                set.spawn(async move { w.run_job(job).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    /// Make sure every recurring job kind has a job queued or running.
    pub async fn ensure_recurring(&self) {
        for kind in self.registry.recurring() {
            let every = kind.every.map(|d| d.as_millis() as i64).unwrap_or(0);
            let result = async {
                let mut c = self.app.store.conn().await?;
                let job = jobs::NewJob {
                    kind: kind.name,
                    payload: &serde_json::json!({}),
                    dedupe_key: Some(kind.name),
                    // The first run soon after start; later ones at the kind's interval.
                    run_at: self.app.now() + every.min(60_000),
                    max_attempts: self.app.config.jobs.max_attempts,
                };
                jobs::ensure(&mut c, &job, self.app.now()).await
            }
            .await;
            match result {
                Ok(Some(id)) => tracing::info!(job_id = id, kind = kind.name, "recurring job scheduled"),
                Ok(None) => {}
                Err(e) => tracing::warn!(kind = kind.name, error = %e, "could not check a recurring job; will retry"),
            }
        }
    }

    async fn claim(&self, limit: i64) -> Result<Vec<ClaimedJob>, tsunagu_store::StoreError> {
        let mut c = self.app.store.conn().await?;
        let jobs =
            jobs::claim(&mut c, self.app.store.backend(), &self.id, limit, self.app.now(), self.lease_ms()).await?;
        if let Ok(mut r) = self.running.lock() {
            r.extend(jobs.iter().map(|j| (j.id, None)));
        }
        Ok(jobs)
    }

    async fn heartbeat(self, stop: CancellationToken) {
        let every = Duration::from_millis((self.lease_ms() / 3).max(100) as u64);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let held: Vec<i64> = self.running.lock().map(|r| r.keys().copied().collect()).unwrap_or_default();
            if held.is_empty() {
                continue;
            }
            let until = self.app.now() + self.lease_ms();
            match self.app.store.conn().await {
                Ok(mut c) => {
                    if let Err(e) = jobs::heartbeat(&mut c, &self.id, &held, until).await {
                        tracing::warn!(error = %e, "lease heartbeat failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease heartbeat could not reach the database"),
            }
        }
    }

    async fn hand_back(&self) {
        let ids: Vec<i64> = self.running.lock().map(|r| r.keys().copied().collect()).unwrap_or_default();
        let Ok(mut c) = self.app.store.conn().await else {
            tracing::warn!("could not hand jobs back; they return after their lease");
            return;
        };
        for id in ids {
            match jobs::release(&mut c, id, &self.id, self.app.now()).await {
                Ok(true) => tracing::info!(job_id = id, "handed unfinished job back to the queue"),
                Ok(false) => {}
                Err(e) => tracing::warn!(job_id = id, error = %e, "hand-back failed; the job returns after its lease"),
            }
        }
    }

    async fn run_job(self, job: ClaimedJob) {
        let span = tracing::info_span!("job", job_id = job.id, kind = %job.kind, attempt = job.attempts);
        let Some(kind) = self.registry.get(&job.kind).cloned() else {
            let msg = format!("unknown job kind {:?}", job.kind);
            self.finish(&job, Err(JobError::Permanent(msg))).await;
            return;
        };
        let deadline = self.registry.deadline(&self.app, &job.kind);
        // The handler runs in its own task: a panic becomes a failed attempt instead of
        // killing the worker, and shutdown or the deadline can abort it.
        let handler = tokio::spawn(tracing::Instrument::instrument(
            (kind.run)(self.app.clone(), self.id.clone(), job.clone()),
            span,
        ));
        let abort = handler.abort_handle();
        if let Ok(mut r) = self.running.lock() {
            r.insert(job.id, Some(abort.clone()));
        }
        let result = match tokio::time::timeout(deadline, handler).await {
            Ok(Ok(r)) => r,
            // Aborted by shutdown: the job stays in `running` for `hand_back`.
            Ok(Err(e)) if e.is_cancelled() => return,
            Ok(Err(e)) => Err(JobError::Retry(format!("job handler panicked: {e}"))),
            Err(_) => {
                abort.abort();
                tracing::warn!(job_id = job.id, kind = %job.kind, deadline_s = deadline.as_secs(), "job handler stopped at its deadline");
                Err(JobError::Retry(format!("stopped after its deadline of {} s", deadline.as_secs())))
            }
        };
        self.finish(&job, result).await;
    }

    /// Record a job's result. The write is retried while the database refuses it (the job
    /// stays held, so its lease is kept alive meanwhile): given up only after a lease's
    /// length, when the job will simply run again. The job is released from this worker's
    /// hold once recorded.
    async fn finish(&self, job: &ClaimedJob, result: Result<Outcome, JobError>) {
        let app = &self.app;
        let now = app.now();
        enum Write {
            Complete,
            Fail { message: String, retry_at: Option<i64> },
            Postpone { message: String, at: i64 },
            Nothing,
        }
        let (write, outcome) = match result {
            Ok(Outcome::Done) => (Write::Complete, "done"),
            Ok(Outcome::Completed) => (Write::Nothing, "done"),
            Err(JobError::WaitUntil { at_ms, reason }) => {
                tracing::info!(job_id = job.id, kind = %job.kind, reason = %reason, wait_ms = at_ms - now, "job waits for an upstream allowance");
                (Write::Postpone { message: reason, at: at_ms.max(now) }, "postponed")
            }
            Err(JobError::Retry(msg)) if job.attempts < job.max_attempts => {
                let at = now + backoff_ms(app.config.jobs.backoff_base_seconds, job.attempts);
                tracing::warn!(job_id = job.id, kind = %job.kind, attempt = job.attempts, error = %msg, retry_in_ms = at - now, "job failed; will retry");
                (Write::Fail { message: msg, retry_at: Some(at) }, "retry")
            }
            Err(e) => {
                tracing::error!(job_id = job.id, kind = %job.kind, attempt = job.attempts, error = %e, "job failed for good");
                (Write::Fail { message: e.to_string(), retry_at: None }, "failed")
            }
        };
        let mut outcome = outcome;
        if !matches!(write, Write::Nothing) {
            let give_up = tokio::time::Instant::now() + Duration::from_millis(self.lease_ms().max(1) as u64);
            let mut pause = Duration::from_millis(50);
            loop {
                let attempt = async {
                    let mut c = app.store.conn().await?;
                    match &write {
                        Write::Complete => jobs::complete(&mut c, job.id, &self.id).await,
                        Write::Fail { message, retry_at } => {
                            jobs::fail(&mut c, job.id, &self.id, message, now, *retry_at).await
                        }
                        Write::Postpone { message, at } => {
                            jobs::postpone(&mut c, job.id, &self.id, message, now, *at).await
                        }
                        Write::Nothing => Ok(true),
                    }
                }
                .await;
                match attempt {
                    Ok(true) => break,
                    Ok(false) => {
                        tracing::warn!(
                            job_id = job.id,
                            "finished after losing the lease; another worker may run it again"
                        );
                        outcome = "lease_lost";
                        break;
                    }
                    Err(e) if tokio::time::Instant::now() + pause < give_up => {
                        app.metrics.count("job_result_write_retried");
                        tracing::warn!(job_id = job.id, error = %e, retry_in_ms = pause.as_millis() as u64, "could not record the job's result; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => {
                        tracing::error!(job_id = job.id, error = %e, "could not record the job's result; it will run again after its lease");
                        outcome = "error";
                        break;
                    }
                }
            }
        }
        if let Ok(mut r) = self.running.lock() {
            r.remove(&job.id);
        }
        app.metrics.observe_job(&job.kind, outcome);
    }
}
