//! `maintenance.purge`: removes expired sessions and stale log-in counters, settles media whose
//! conversion job ended without a result, removes media intake files nobody needs, then schedules
//! itself an hour later. One dedupe key means one schedule however many instances run
//! (no in-process cron that every instance would run at once).

use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{sessions, throttle};

use super::{JobError, Outcome, kinds};
use crate::app::App;

pub const KEY: &str = "maintenance.purge";
pub const EVERY_MS: i64 = 60 * 60 * 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

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
    tracing::info!(
        expired_sessions = gone,
        intake_files_removed = intake,
        stale_login_counters = counters,
        unfinished_media = media,
        "maintenance done"
    );
    Ok(Outcome::Completed)
}
