//! What a channel's webhook events do, and the `line.events` job that applies it to events
//! stored without being applied.
//!
//! Follow (new or unblocked) and unfollow (blocked) move the channel's friend list; other types
//! are kept and marked handled (the course issue builds on them). The intake applies these
//! rules in the transaction that stores the events ([`super::webhook`]); when the database
//! refused part of a batch, or the channel still has events waiting, they are stored unapplied
//! and left to this job, which claims them so that each is applied once however many of its
//! jobs run.

use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::line::{self as store, FriendStatus};

use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// Events handled per transaction (three statements whatever the size: the claim, the marks and
/// the friend list), small enough that webhook writes never wait long for the SQLite write lock.
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
        // One statement marks the batch; only what it marked is applied (never twice).
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let marked: std::collections::HashSet<i64> =
            store::mark_handled_many(&mut tx, &ids, now).await?.into_iter().collect();
        if marked.len() < events.len() {
            // Cannot happen while events are claimed; said loudly should it ever.
            tracing::error!(
                channel_id,
                skipped = events.len() - marked.len(),
                "line events were handled already; skipped"
            );
        }
        let applied = marked.len() as u64;
        let (changes, follows, unfollows) = friend_changes(events.iter().filter(|e| marked.contains(&e.id)).map(|e| {
            Facts { event_type: &e.event_type, user_id: e.user_id.as_deref(), event_ts: e.event_ts, reply_token: None }
        }));
        store::set_friends(&mut tx, &channel_id, &changes, now).await?;
        let due = tsunagu_store::courses::follow_friend_changes(&mut tx, &channel_id, &changes, now).await?;
        if due > 0 {
            crate::courses::dispatch::queue_in(&mut tx, app).await?;
        }
        tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
        if due > 0 {
            crate::jobs::wake(app);
        }
        // One line per batch, written after the commit (not per event under the write lock).
        app.metrics.add("line_events_applied", applied);
        tracing::info!(channel_id, events = applied, follows, unfollows, "line events handled");
        if (events.len() as i64) < BATCH {
            return Ok(Outcome::Done);
        }
    }
}

/// What the rules read of an event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub event_type: &'a str,
    pub user_id: Option<&'a str>,
    pub event_ts: i64,
    /// A follow's reply token, when the event is handled as it arrives (not later by a job,
    /// when it would most likely have lapsed).
    pub reply_token: Option<&'a str>,
}

/// Each user's newest follow or unfollow among `events` (event time decides; between events of
/// the same millisecond, the later in `events`), with the newest follow kept as `followed_at`;
/// and how many follows and unfollows there were.
pub(crate) fn friend_changes<'a>(events: impl Iterator<Item = Facts<'a>>) -> (Vec<store::FriendChange>, u64, u64) {
    let mut by_user: std::collections::HashMap<&str, store::FriendChange> = std::collections::HashMap::new();
    let (mut follows, mut unfollows) = (0, 0);
    for e in events {
        let status = match e.event_type {
            "follow" => FriendStatus::Following,
            "unfollow" => FriendStatus::Blocked,
            _ => continue,
        };
        let Some(user) = e.user_id else { continue };
        if status == FriendStatus::Following {
            follows += 1;
        } else {
            unfollows += 1;
        }
        let entry = by_user.entry(user).or_insert_with(|| store::FriendChange {
            user_id: user.to_string(),
            status,
            event_ts: e.event_ts,
            followed_at: None,
            reply_token: None,
        });
        if e.event_ts >= entry.event_ts {
            entry.status = status;
            entry.event_ts = e.event_ts;
            entry.reply_token = e.reply_token.filter(|_| status == FriendStatus::Following).map(str::to_string);
        }
        if status == FriendStatus::Following {
            entry.followed_at = Some(entry.followed_at.map_or(e.event_ts, |t| t.max(e.event_ts)));
        }
    }
    let mut changes: Vec<_> = by_user.into_values().collect();
    changes.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    (changes, follows, unfollows)
}
