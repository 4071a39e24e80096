//! 日時変更のお知らせ: when an event's 開催日時 changes, everyone already sent their join mail
//! gets this mail with their own, unchanged link. Zoom is moved by `events.zoom`; people not yet
//! mailed get their join mail with the new date. One job per change; each mail's cause names the
//! person and the change, so a rerun sends nothing twice and a later change mails again. (A join
//! mail being rendered while the edit commits can still carry the old date: that person is not
//! yet among the mailed and gets no notice. Not handled yet.)

use serde::Deserialize;
use tsunagu_store::applications as apps;
use tsunagu_store::events as store;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{AnyConnection, StoreError};

use super::mails::{self, JoinContext};
use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// The job kind.
pub const MOVED: &str = "events.moved";

/// Queue the mails for the event's new start, on the caller's transaction. `changed_at` (the
/// edit's time) tells changes apart, so a date moved away and back is told both times.
pub async fn queue(
    c: &mut AnyConnection,
    app: &App,
    event_id: i64,
    starts_at: i64,
    changed_at: i64,
) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "event_id": event_id, "starts_at": starts_at, "changed_at": changed_at });
    crate::jobs::enqueue(c, app, MOVED, &payload, Some(&format!("{MOVED}:{event_id}:{changed_at}")), 0).await?;
    Ok(())
}

#[derive(Deserialize)]
struct Payload {
    event_id: i64,
    starts_at: i64,
    #[serde(default)]
    changed_at: i64,
}

pub async fn run(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: Payload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("events.moved payload: {e}")))?;
    let (event, people, account) = {
        let mut c = app.store.read().await?;
        let Some(event) = store::get_for_job(&mut c, p.event_id).await? else { return Ok(Outcome::Done) };
        let people = apps::mailed_people(&mut c, p.event_id).await?;
        let account = tsunagu_store::accounts::get(&mut c, event.account_id).await?;
        (event, people, account)
    };
    let Some(account) = account else { return Ok(Outcome::Done) };
    // Moved again since: the later change's job tells people the latest date.
    if event.starts_at != p.starts_at {
        return Ok(Outcome::Done);
    }
    let date = super::form::span(event.starts_at, event.ends_at, &account.time_zone);
    let base = app.config.http.public_url.trim_end_matches('/').to_string();
    let zoom = {
        let mut c = app.store.read().await?;
        store::zoom_settings_for_job(&mut c, event.id).await?
    };
    let personal = zoom.as_ref().is_some_and(|z| z.enabled && super::zoom::Options::parse(&z.options).registration);
    let mut tx = app.store.begin().await?;
    let mut queued = 0;
    for person in &people {
        let ctx = JoinContext {
            name: person.name_kanji.clone(),
            event_title: event.title.clone(),
            event_date: date.clone(),
            join_url: person.join_url.clone(),
            personal,
            application_url: if person.position == 0 {
                format!("{base}/a/{}", person.access_key)
            } else {
                String::new()
            },
            ..JoinContext::default()
        };
        let cause = format!("event-moved:{}:{}:{}", person.id, p.starts_at, p.changed_at);
        // The same entry as the join mail's, a later version of it.
        let ics = super::ics::for_person(app, &event, zoom.as_ref(), person.id, &person.join_url, p.changed_at / 1000);
        let to = mails::Delivery { to: &person.email, cause: &cause, calendar: Some(&ics) };
        let made = mails::queue(&mut tx, app, &account, mails::MOVED, &ctx, to).await?;
        queued += usize::from(made);
    }
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    tracing::info!(event_id = event.id, queued, "date change mails queued");
    Ok(Outcome::Done)
}
