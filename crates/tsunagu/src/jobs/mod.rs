//! Durable background jobs. A request enqueues in its own transaction
//! ([`enqueue`] takes the caller's connection); workers ([`worker::Worker`]) claim due jobs
//! under a lease, run them, and retry failures with exponential backoff until a final
//! `failed` state that administrators see in the console (失敗したジョブ).

pub mod diagnostic;
pub mod maintenance;
pub mod worker;

use tsunagu_store::{AnyConnection, StoreError, jobs};

use crate::app::App;

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
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Retry(e.to_string())
    }
}

/// Enqueue on the caller's connection or transaction; the job exists only if the caller commits.
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
    let id = jobs::enqueue(c, &job, now).await?;
    app.job_wakeup.notify_waiters();
    Ok(id)
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
