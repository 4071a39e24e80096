//! The job runner: claims due jobs under a lease, runs up to `jobs.concurrency` at once,
//! keeps their leases alive with a heartbeat, and on shutdown lets running jobs finish for
//! `jobs.shutdown_grace_seconds` before handing the rest back to the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tsunagu_store::jobs::{self, ClaimedJob};

use super::{JobError, Outcome, backoff_ms, kinds};
use crate::app::SharedApp;

#[derive(Clone)]
pub struct Worker {
    app: SharedApp,
    id: Arc<str>,
    /// Jobs this worker holds, with the handle of each running handler task.
    running: Arc<Mutex<HashMap<i64, Option<AbortHandle>>>>,
}

impl Worker {
    pub fn new(app: SharedApp) -> Worker {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let id = format!("{}:{}:{}", host.trim(), std::process::id(), crate::crypto::random_hex(4));
        Worker { app, id: id.into(), running: Arc::default() }
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
        loop {
            while set.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
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
            let busy = self.running.lock().map(|r| !r.is_empty()).unwrap_or(false);
            if !busy {
                continue;
            }
            let until = self.app.now() + self.lease_ms();
            match self.app.store.conn().await {
                Ok(mut c) => {
                    if let Err(e) = jobs::heartbeat(&mut c, &self.id, until).await {
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
        let app = self.app.clone();
        let worker = self.id.clone();
        let job_for_task = job.clone();
        // The handler runs in its own task: a panic becomes a failed attempt instead of
        // killing the worker, and shutdown can abort it.
        let handler = tokio::spawn(tracing::Instrument::instrument(
            async move { execute(&app, &worker, &job_for_task).await },
            span,
        ));
        if let Ok(mut r) = self.running.lock() {
            r.insert(job.id, Some(handler.abort_handle()));
        }
        let result = match handler.await {
            Ok(r) => r,
            // Aborted by shutdown: the job stays in `running` for `hand_back`.
            Err(e) if e.is_cancelled() => return,
            Err(e) => Err(JobError::Retry(format!("job handler panicked: {e}"))),
        };
        self.finish(&job, result).await;
        if let Ok(mut r) = self.running.lock() {
            r.remove(&job.id);
        }
    }

    async fn finish(&self, job: &ClaimedJob, result: Result<Outcome, JobError>) {
        let app = &self.app;
        let now = app.now();
        let mut c = match app.store.conn().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(job_id = job.id, error = %e, "cannot record job result; it will run again after its lease");
                return;
            }
        };
        let outcome = match result {
            Ok(Outcome::Done) => match jobs::complete(&mut c, job.id, &self.id).await {
                Ok(true) => "done",
                Ok(false) => {
                    tracing::warn!(job_id = job.id, "finished after losing the lease; another worker may run it again");
                    "lease_lost"
                }
                Err(e) => {
                    tracing::error!(job_id = job.id, error = %e, "could not mark job done");
                    "error"
                }
            },
            Ok(Outcome::Completed) => "done",
            Err(JobError::Retry(msg)) if job.attempts < job.max_attempts => {
                let at = now + backoff_ms(app.config.jobs.backoff_base_seconds, job.attempts);
                tracing::warn!(job_id = job.id, kind = %job.kind, attempt = job.attempts, error = %msg, retry_in_ms = at - now, "job failed; will retry");
                let _ = jobs::fail(&mut c, job.id, &self.id, &msg, now, Some(at)).await;
                "retry"
            }
            Err(e) => {
                tracing::error!(job_id = job.id, kind = %job.kind, attempt = job.attempts, error = %e, "job failed for good");
                let _ = jobs::fail(&mut c, job.id, &self.id, &e.to_string(), now, None).await;
                "failed"
            }
        };
        app.metrics.observe_job(&job.kind, outcome);
    }
}

async fn execute(app: &crate::app::App, worker: &str, job: &ClaimedJob) -> Result<Outcome, JobError> {
    match job.kind.as_str() {
        kinds::MAIL_SEND => crate::mail::send::run(app, job).await,
        kinds::DIAGNOSTIC_TOUCH => super::diagnostic::run(app, worker, job).await,
        kinds::MAINTENANCE_PURGE => super::maintenance::run(app, worker, job).await,
        kinds::LINE_EVENTS => crate::line::events::run(app, job).await,
        kinds::MEDIA_CONVERT => crate::media::library::run(app, job).await,
        kinds::MEDIA_REMOVE => crate::media::library::remove_stored(app, job).await,
        other => Err(JobError::Permanent(format!("unknown job kind {other:?}"))),
    }
}
