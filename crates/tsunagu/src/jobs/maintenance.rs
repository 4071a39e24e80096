//! `maintenance.purge`: removes expired sessions and stale log-in counters, settles media whose
//! conversion job ended without a result, removes media intake files nobody needs, purges
//! handled LINE webhook events and finished mails past their retention (`[retention]`), then
//! schedules itself an hour later. One dedupe key means one schedule however many instances run
//! (no in-process cron that every instance would run at once).

use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{StoreError, line, mails, sessions, throttle};

use super::{JobError, Outcome, kinds};
use crate::app::App;

pub const KEY: &str = "maintenance.purge";
pub const EVERY_MS: i64 = 60 * 60 * 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Rows deleted per statement: each batch is its own short write, so a large backlog never
/// holds SQLite's write lock for long.
const PURGE_BATCH: i64 = 500;

/// Make sure the schedule exists (a no-op when another instance created it).
pub async fn schedule(app: &App) -> Result<(), tsunagu_store::StoreError> {
    let mut c = app.store.conn().await?;
    super::enqueue(&mut c, app, kinds::MAINTENANCE_PURGE, &serde_json::json!({}), Some(KEY), 60_000).await?;
    Ok(())
}

pub async fn run(app: &App, worker: &str, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let gone = sessions::purge_expired(&mut tx, now).await?;
    let counters = throttle::purge(&mut tx, now - DAY_MS).await?;
    if tsunagu_store::jobs::complete(&mut tx, job.id, worker).await? {
        super::enqueue(&mut tx, app, kinds::MAINTENANCE_PURGE, &serde_json::json!({}), Some(KEY), EVERY_MS).await?;
    }
    tx.commit().await.map_err(|e| JobError::Retry(e.to_string()))?;
    // Media whose conversion job ended for good without settling it: 失敗, upload removed.
    let media = match crate::media::library::settle_orphans(app, None).await {
        Ok(settled) => {
            let n = settled.len();
            settled.clean_up(app).await;
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "settling unfinished media failed");
            0
        }
    };
    let intake =
        crate::media::library::clean_intake(app, crate::media::library::INTAKE_STALE).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cleaning the media intake failed");
            0
        });
    let retention = &app.config.retention;
    let line_events = purge(app, Retained::LineEvents, now - retention.line_events_ms()).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "purging old LINE webhook events failed");
        0
    });
    let old_mails = purge(app, Retained::Mails, now - retention.mails_ms()).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "purging old mails failed");
        0
    });
    tracing::info!(
        expired_sessions = gone,
        intake_files_removed = intake,
        stale_login_counters = counters,
        unfinished_media = media,
        line_events_purged = line_events,
        mails_purged = old_mails,
        "maintenance done"
    );
    Ok(Outcome::Completed)
}

enum Retained {
    LineEvents,
    Mails,
}

/// Delete what is past its retention (`before`), batch by batch until none is left.
async fn purge(app: &App, what: Retained, before: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let mut c = app.store.conn().await?;
        let n = match what {
            Retained::LineEvents => line::purge_handled_events(&mut c, before, PURGE_BATCH).await?,
            Retained::Mails => mails::purge_finished(&mut c, before, PURGE_BATCH).await?,
        };
        drop(c);
        total += n;
        if n < PURGE_BATCH as u64 {
            return Ok(total);
        }
        // Each batch has committed: other writers can take the lock before the next one.
        tokio::task::yield_now().await;
    }
}
