//! The `line.events` job: handle a channel's stored webhook events in event-time order.
//! Follow (new or unblocked) and unfollow (blocked) move the channel's friend list; other
//! types are kept and marked handled (the course issue builds on them).

use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::line::{self as store, FriendStatus};

use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// Events handled per transaction: small enough that webhook writes never wait long for the
/// (SQLite) write lock this holds.
const BATCH: i64 = 100;

pub async fn run(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let channel_id = job
        .payload
        .get("channel_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| JobError::Permanent("line.events job without channel_id".into()))?
        .to_string();
    loop {
        let mut tx = app.store.begin().await?;
        // Claimed: another job of this channel running at once skips these.
        let events = store::claim_unhandled(&mut tx, app.store.backend(), &channel_id, BATCH).await?;
        if events.is_empty() {
            return Ok(Outcome::Done);
        }
        let now = app.now();
        let (mut applied, mut follows, mut unfollows) = (0u64, 0u64, 0u64);
        for e in &events {
            if !store::mark_handled(&mut tx, e.id, now).await? {
                // Cannot happen while events are claimed; said loudly should it ever.
                tracing::error!(channel_id, event_id = %e.webhook_event_id, "line event was handled already; skipped");
                continue;
            }
            applied += 1;
            match (e.event_type.as_str(), e.user_id.as_deref()) {
                ("follow", Some(user)) => {
                    store::set_friend(&mut tx, &channel_id, user, FriendStatus::Following, e.event_ts, now).await?;
                    follows += 1;
                }
                ("unfollow", Some(user)) => {
                    store::set_friend(&mut tx, &channel_id, user, FriendStatus::Blocked, e.event_ts, now).await?;
                    unfollows += 1;
                }
                (other, _) => {
                    tracing::debug!(channel_id, event_type = other, "line event kept, nothing to do yet");
                }
            }
        }
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        // One line per batch, written after the commit (not per event under the write lock).
        app.metrics.add("line_events_applied", applied);
        tracing::info!(channel_id, events = applied, follows, unfollows, "line events handled");
        if (events.len() as i64) < BATCH {
            return Ok(Outcome::Done);
        }
    }
}
