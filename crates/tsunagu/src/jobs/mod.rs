//! Durable background jobs. A request enqueues in its own transaction
//! ([`enqueue`] takes the caller's connection); workers ([`worker::Worker`]) claim due jobs
//! under a lease, run them, and retry failures with exponential backoff until a final
//! `failed` state that administrators see in the console (失敗したジョブ).

pub mod diagnostic;
pub mod maintenance;
pub mod web;
pub mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{AnyConnection, StoreError, jobs};

use crate::app::{App, SharedApp};

pub mod kinds {
    pub const MAIL_SEND: &str = "mail.send";
    pub const DIAGNOSTIC_TOUCH: &str = "diagnostic.touch";
    pub const MAINTENANCE_PURGE: &str = "maintenance.purge";
    pub const LINE_EVENTS: &str = "line.events";
    pub const MEDIA_CONVERT: &str = "media.convert";
    pub const MEDIA_REMOVE: &str = "media.remove";
}

/// What a job handler reports.
#[derive(Debug)]
pub enum Outcome {
    /// The runner deletes the job.
    Done,
    /// The handler already completed the job inside its own transaction.
    Completed,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (upstream down, timeout, database busy).
    #[error("{0}")]
    Retry(String),
    /// Another attempt would fail the same way.
    #[error("{0}")]
    Permanent(String),
    /// Nothing can be done before `at_ms` (an upstream daily allowance is spent until its
    /// reset): the job waits until then, and the attempt is not counted.
    #[error("{reason}")]
    WaitUntil { at_ms: i64, reason: String },
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Retry(e.to_string())
    }
}

/// What a worker hands a handler: the app, the worker's id (as stored in `locked_by`) and the job.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outcome, JobError>> + Send>>;
pub type Handler = Arc<dyn Fn(SharedApp, Arc<str>, ClaimedJob) -> HandlerFuture + Send + Sync>;

/// A job kind as a feature hands it in at startup: the worker runs jobs by looking their
/// kind up here, and knows no feature by name.
#[derive(Clone)]
pub struct JobKind {
    pub name: &'static str,
    pub run: Handler,
    /// A handler still running after this long is stopped and the job retried (or failed
    /// on its last attempt), so a hung upstream cannot hold a worker and its lease for ever.
    pub deadline: Duration,
    /// A recurring job: the worker makes sure one is queued or running, under the kind's
    /// name as dedupe key, and re-checks this often (so a run that failed for good is
    /// followed by a new one).
    pub every: Option<Duration>,
}

impl JobKind {
    pub fn new<F, Fut>(name: &'static str, deadline: Duration, run: F) -> JobKind
    where
        F: Fn(SharedApp, Arc<str>, ClaimedJob) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, JobError>> + Send + 'static,
    {
        JobKind { name, run: Arc::new(move |app, worker, job| Box::pin(run(app, worker, job))), deadline, every: None }
    }

    pub fn recurring(mut self, every: Duration) -> JobKind {
        self.every = Some(every);
        self
    }
}

/// Every job kind of this build, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, JobKind>,
}

impl Registry {
    pub fn new(kinds: impl IntoIterator<Item = JobKind>) -> Registry {
        let mut r = Registry::default();
        for k in kinds {
            let dup = r.kinds.insert(k.name, k);
            assert!(dup.is_none(), "job kind registered twice");
        }
        r
    }

    pub fn get(&self, name: &str) -> Option<&JobKind> {
        self.kinds.get(name)
    }

    pub fn recurring(&self) -> impl Iterator<Item = &JobKind> {
        self.kinds.values().filter(|k| k.every.is_some())
    }

    /// The kind's deadline, or the operator's override from `jobs.deadline_seconds`.
    pub fn deadline(&self, app: &App, name: &str) -> Duration {
        if let Some(s) = app.config.jobs.deadline_seconds.get(name) {
            return Duration::from_secs((*s).max(1));
        }
        self.get(name).map(|k| k.deadline).unwrap_or(Duration::from_secs(600))
    }
}

/// The job kinds of the foundation itself (diagnostics and maintenance).
pub fn own_kinds() -> Vec<JobKind> {
    vec![
        JobKind::new(kinds::DIAGNOSTIC_TOUCH, Duration::from_secs(600), |app, worker, job| async move {
            diagnostic::run(&app, &worker, &job).await
        }),
        JobKind::new(kinds::MAINTENANCE_PURGE, Duration::from_secs(1800), |app, worker, job| async move {
            maintenance::run(&app, &worker, &job).await
        })
        .recurring(Duration::from_millis(maintenance::EVERY_MS as u64)),
    ]
}

/// Wake this process's idle workers. Call it after the transaction that enqueued commits:
/// woken earlier, they would only wait for that transaction's lock (or find nothing yet).
pub fn wake(app: &App) {
    app.job_wakeup.notify_waiters();
}

/// Enqueue on the caller's connection or transaction; the job exists only if the caller
/// commits. Call [`wake`] after the commit.
pub async fn enqueue(
    c: &mut AnyConnection,
    app: &App,
    kind: &str,
    payload: &serde_json::Value,
    dedupe_key: Option<&str>,
    delay_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let now = app.now();
    let job = jobs::NewJob {
        kind,
        payload,
        dedupe_key,
        run_at: now + delay_ms.max(0),
        max_attempts: app.config.jobs.max_attempts,
    };
    jobs::enqueue(c, &job, now).await
}

/// Enqueue one job of `kind` per `(payload, dedupe key)`, due now, in one statement on the
/// caller's transaction (wake the workers after commit).
pub async fn enqueue_all(
    c: &mut AnyConnection,
    app: &App,
    kind: &str,
    items: &[(serde_json::Value, Option<String>)],
) -> Result<u64, StoreError> {
    let now = app.now();
    let batch: Vec<jobs::NewJob<'_>> = items
        .iter()
        .map(|(payload, key)| jobs::NewJob {
            kind,
            payload,
            dedupe_key: key.as_deref(),
            run_at: now,
            max_attempts: app.config.jobs.max_attempts,
        })
        .collect();
    jobs::enqueue_all(c, &batch, now).await
}

/// Delay before attempt `attempts + 1`: base·2^(attempts-1), at most an hour, with jitter.
pub fn backoff_ms(base_seconds: u64, attempts: i64) -> i64 {
    let exp = (attempts.clamp(1, 20) - 1) as u32;
    let base = (base_seconds.max(1) as i64 * 1000).saturating_mul(1i64 << exp.min(16));
    let capped = base.min(3_600_000);
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    let jitter = capped / 10 * i64::from(u16::from_le_bytes(b)) / i64::from(u16::MAX);
    capped + jitter
}

/// 失敗したジョブ for administrators.
pub fn routes() -> axum::Router<SharedApp> {
    web::routes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_and_caps() {
        let a1 = super::backoff_ms(5, 1);
        let a3 = super::backoff_ms(5, 3);
        assert!((5_000..=5_500).contains(&a1), "{a1}");
        assert!((20_000..=22_000).contains(&a3), "{a3}");
        assert!(super::backoff_ms(5, 30) <= 3_960_000);
    }
}
