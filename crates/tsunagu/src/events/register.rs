//! `events.register`: one job per person of a completed application. It registers the person
//! at Zoom (when 参加者登録利用 is on), then queues their join mail (and the organizer's copy),
//! so a person is registered once and mailed once however often the job runs:
//! - before the POST that adds them, the person is marked `adding`; a run that finds that mark
//!   (or any run after the first attempt) looks the email up at Zoom before adding;
//! - the mail is queued in the transaction that marks the person mailed (only if they were not,
//!   and are not cancelled), and its cause names the person and the meeting (one mail per cause).

use serde::Deserialize;
use tsunagu_store::applications::{self as people, Person};
use tsunagu_store::events::{self as store, ZoomSettings};
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::{AnyConnection, StoreError};
use tsunagu_zoom::model::{EventRef, NewRegistrant};
use tsunagu_zoom::{Retry, ZoomError};

use super::mails::{self, JoinContext};
use super::zoom::Options;
use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// The job kind.
pub const REGISTER: &str = "events.register";

/// Complete an application that waits (a ¥0 one just made, a bank transfer confirmed, later a
/// payment): the one transition to completed, with each person's registration and mail queued
/// in the caller's transaction (wake the workers after commit). Returns whether it completed
/// now (false: it was not waiting).
pub async fn complete(c: &mut AnyConnection, app: &App, application_id: i64) -> Result<bool, StoreError> {
    match people::complete(c, application_id, app.now()).await? {
        Some(ids) => {
            queue(c, app, &ids).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Queue the job for each person, on the caller's transaction (wake the workers after commit).
pub async fn queue(c: &mut AnyConnection, app: &App, people: &[i64]) -> Result<(), StoreError> {
    let items: Vec<_> =
        people.iter().map(|id| (serde_json::json!({ "person_id": id }), Some(format!("{REGISTER}:{id}")))).collect();
    crate::jobs::enqueue_all(c, app, REGISTER, &items).await?;
    Ok(())
}

#[derive(Deserialize)]
struct Payload {
    person_id: i64,
}

pub async fn run(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: Payload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("events.register payload: {e}")))?;
    let (person, event, zoom, account, group) = {
        let mut c = app.store.read().await?;
        let Some(person) = people::person_for_job(&mut c, p.person_id).await? else { return Ok(Outcome::Done) };
        let Some(event) = store::get_for_job(&mut c, person.event_id).await? else { return Ok(Outcome::Done) };
        let zoom = store::zoom_settings_for_job(&mut c, person.event_id).await?;
        let account = tsunagu_store::accounts::get(&mut c, event.account_id).await?;
        let group = people::people(&mut c, person.application_id).await?;
        (person, event, zoom, account, group)
    };
    let Some(account) = account else { return Ok(Outcome::Done) };
    if person.cancelled || person.status != "completed" {
        return Ok(Outcome::Done);
    }
    let zoom = zoom.filter(|z| z.enabled);
    let options = zoom.as_ref().map(|z| Options::parse(&z.options)).unwrap_or_default();
    let registration = zoom.is_some() && options.registration;

    // The person's join URL: their own (registration), the event's shared one, or none.
    let mut join_url = person.join_url.clone();
    if person.zoom_state != "registered" {
        match &zoom {
            Some(z) if z.zoom_id.is_none() || (z.state == "pending" && z.applied_revision == 0) => {
                if z.state == "failed" {
                    return fail(app, &person, &z.reason).await;
                }
                // The meeting is being created: come back later (an attempt each time, so a
                // meeting that never comes ends in a failure the organizer sees).
                if job.attempts >= job.max_attempts {
                    return fail(app, &person, "Zoom のミーティング／ウェビナーが作成されないため登録できませんでした。Zoom設定の状態を確認し、［再試行］を押してください。").await;
                }
                return Err(JobError::Retry("waiting for the zoom meeting to be created".into()));
            }
            Some(z) if registration => match register(app, job, &person, z, &event.account_id).await {
                Ok(Some(url)) => join_url = url,
                Ok(None) => return Ok(Outcome::Done),
                Err(e) => return zoom_failure(app, job, &person, e).await,
            },
            Some(z) => {
                join_url = z.join_url.clone();
                let mut c = app.store.conn().await?;
                people::record_registered(&mut c, person.id, "", &join_url).await?;
            }
            None => {
                let mut c = app.store.conn().await?;
                people::record_no_zoom(&mut c, person.id).await?;
            }
        }
    }
    if person.mailed_at.is_some() {
        return Ok(Outcome::Done);
    }
    // Zoom sends the join mail itself when the organizer chose ［Zoomから送信］; Tsunagu then
    // sends the representative the application-received mail only.
    let zoom_sends = registration && options.url_sender == "zoom";
    let representative = group.iter().find(|p| p.position == 0).map(|p| p.name_kanji.clone()).unwrap_or_default();
    let ctx = JoinContext {
        name: person.name_kanji.clone(),
        event_title: event.title.clone(),
        event_date: super::form::span(event.starts_at, event.ends_at, &account.time_zone),
        join_url: if zoom_sends { String::new() } else { join_url.clone() },
        meeting_id: zoom.as_ref().and_then(|z| z.zoom_id).map(super::zoom::format_zoom_id).unwrap_or_default(),
        passcode: zoom.as_ref().map(|z| z.passcode.clone()).unwrap_or_default(),
        personal: registration,
        zoom_sends,
        representative,
        companions: if person.position == 0 {
            group.iter().filter(|p| p.position > 0 && !p.cancelled).map(|p| p.name_kanji.clone()).collect()
        } else {
            Vec::new()
        },
        application_url: format!("{}/a/{}", app.config.http.public_url.trim_end_matches('/'), person.access_key),
        ..JoinContext::default()
    };
    let kind = match (zoom_sends, person.position == 0) {
        (true, true) => Some(mails::RECEIVED),
        (true, false) => None,
        (false, true) => Some(mails::JOIN_REPRESENTATIVE),
        (false, false) => Some(mails::JOIN_COMPANION),
    };
    let mut tx = app.store.begin().await?;
    // Marked first, in the same transaction: a person mailed already, or cancelled meanwhile,
    // gets nothing.
    if !people::mark_mailed(&mut tx, person.id, app.now()).await? {
        tx.rollback().await.map_err(StoreError::from)?;
        return Ok(Outcome::Done);
    }
    if let Some(kind) = kind {
        // The cause names the meeting too: people registered again in a new meeting get a new mail.
        let cause = format!("event-join:{}:{}", person.id, zoom.as_ref().and_then(|z| z.zoom_id).unwrap_or(0));
        let ics = super::ics::for_person(app, &event, zoom.as_ref(), person.id, &ctx.join_url, 0);
        let to = mails::Delivery { to: &person.email, cause: &cause, calendar: Some(&ics) };
        mails::queue(&mut tx, app, &account, kind, &ctx, to).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    tracing::info!(person_id = person.id, event_id = event.id, "join mail queued");
    Ok(Outcome::Done)
}

/// Add the person at Zoom (approved), recording the registration. Returns their join URL, or
/// `None` when they were cancelled meanwhile (their removal is queued).
async fn register(
    app: &App,
    job: &ClaimedJob,
    person: &Person,
    z: &ZoomSettings,
    account: &tsunagu_core::AccountId,
) -> Result<Option<String>, ZoomError> {
    let Some(org) = crate::zoom::organizer(app, *account)
        .await
        .map_err(|e| ZoomError::LimitsUnavailable { detail: format!("{e:#}") })?
    else {
        return Err(ZoomError::BadCredentials);
    };
    let zoom_id = z.zoom_id.unwrap_or_default();
    let event = if z.zoom_kind == "webinar" { EventRef::Webinar(zoom_id) } else { EventRef::Meeting(zoom_id) };
    // A run after one that may have reached Zoom looks the email up first.
    let maybe_added = person.zoom_state == "adding" || job.attempts > 1;
    {
        let mut c = app.store.conn().await.map_err(store_down)?;
        people::mark_adding(&mut c, person.id).await.map_err(store_down)?;
    }
    let (first, last) = split_name(&person.name_kanji);
    let who = NewRegistrant {
        first_name: first,
        last_name: last,
        email: person.email.trim().to_string(),
        custom_questions: Vec::new(),
        auto_approve: None,
    };
    let r = app.zoom.add_registrant(&org, event, &who, maybe_added).await?;
    let url = r.join_url.unwrap_or_default();
    let mut tx = app.store.begin().await.map_err(store_down)?;
    if !people::record_registered_if_live(&mut tx, person.id, &r.registrant_id, &url).await.map_err(store_down)? {
        // Cancelled while Zoom answered: take the registration back off.
        super::cancel::queue(&mut tx, app, &[person.id]).await.map_err(store_down)?;
        tx.commit().await.map_err(StoreError::from).map_err(store_down)?;
        crate::jobs::wake(app);
        return Ok(None);
    }
    tx.commit().await.map_err(StoreError::from).map_err(store_down)?;
    tracing::info!(person_id = person.id, zoom_id, already = r.already_registered, "registered at zoom");
    Ok(Some(url))
}

fn store_down(e: StoreError) -> ZoomError {
    ZoomError::LimitsUnavailable { detail: e.to_string() }
}

/// Zoom's `first_name` (≤ 64) and `last_name`: a name written with a space is split at the
/// first one (family name first, as Japanese names are written), so Zoom shows it whole.
fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    let cut = |s: &str| s.chars().take(64).collect::<String>();
    match name.split_once([' ', '\u{3000}']) {
        Some((family, given)) if !given.trim().is_empty() => (cut(given.trim()), cut(family.trim())),
        _ => (cut(name), String::new()),
    }
}

async fn zoom_failure(app: &App, job: &ClaimedJob, person: &Person, e: ZoomError) -> Result<Outcome, JobError> {
    let reason = e.message_ja();
    match e.retry() {
        Retry::NotBefore { retry_after } => {
            let at = super::zoom::reset_time(retry_after.as_deref(), app.now());
            let mut c = app.store.conn().await?;
            people::record_zoom_problem(&mut c, person.id, &reason, false).await?;
            Err(JobError::WaitUntil { at_ms: at, reason: e.to_string() })
        }
        Retry::No => {
            tracing::warn!(person_id = person.id, error = %e, "zoom refused the registration");
            fail(app, person, &reason).await
        }
        _ if job.attempts >= job.max_attempts => {
            tracing::error!(person_id = person.id, error = %e, "zoom did not answer; registration failed");
            fail(app, person, &reason).await
        }
        _ => Err(JobError::Retry(e.to_string())),
    }
}

/// A failure the organizer resolves (［再試行］ on the event page).
async fn fail(app: &App, person: &Person, reason: &str) -> Result<Outcome, JobError> {
    let mut c = app.store.conn().await?;
    people::record_zoom_problem(&mut c, person.id, reason, true).await?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn names_are_split_family_first() {
        assert_eq!(split_name("山田 太郎"), ("太郎".into(), "山田".into()));
        assert_eq!(split_name("山田\u{3000}花子"), ("花子".into(), "山田".into()));
        assert_eq!(split_name("やまだたろう"), ("やまだたろう".into(), String::new()));
        assert_eq!(split_name(&"長".repeat(100)).0.chars().count(), 64);
    }
}

/// The job kind of the application-received mail (a priced application waiting for payment).
pub const RECEIVED: &str = "events.received";

/// Queue the application-received mail of an application, on the caller's transaction.
pub async fn queue_received(c: &mut AnyConnection, app: &App, application_id: i64) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "application_id": application_id });
    crate::jobs::enqueue(c, app, RECEIVED, &payload, Some(&format!("{RECEIVED}:{application_id}")), 0).await?;
    Ok(())
}

#[derive(Deserialize)]
struct ReceivedPayload {
    application_id: i64,
}

/// `events.received`: tell the representative the application is received, with how to pay.
pub async fn run_received(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: ReceivedPayload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("events.received payload: {e}")))?;
    let (a, event, account, order) = {
        let mut c = app.store.read().await?;
        let Some(a) = people::by_id(&mut c, p.application_id).await? else { return Ok(Outcome::Done) };
        let Some(event) = store::get_for_job(&mut c, a.event_id).await? else { return Ok(Outcome::Done) };
        let account = tsunagu_store::accounts::get(&mut c, event.account_id).await?;
        let order = tsunagu_store::stripe::order(&mut c, a.id).await?;
        (a, event, account, order)
    };
    let Some(account) = account else { return Ok(Outcome::Done) };
    let Some(rep) = a.people.iter().find(|p| p.position == 0) else { return Ok(Outcome::Done) };
    if a.status != "awaiting_payment" || order.as_ref().is_some_and(|o| o.state != "konbini") {
        return Ok(Outcome::Done);
    }
    let ctx = JoinContext {
        name: rep.name_kanji.clone(),
        event_title: event.title.clone(),
        event_date: super::form::span(event.starts_at, event.ends_at, &account.time_zone),
        application_url: format!("{}/a/{}", app.config.http.public_url.trim_end_matches('/'), rep.access_key),
        amount: format!("{}円", super::form::group(a.amount_yen)),
        payment_note: match &order {
            // A konbini voucher: where and by when to pay, and the voucher's own page.
            Some(o) => format!(
                "コンビニ（ファミリーマート・ローソン・ミニストップ・セイコーマート）のレジでお支払いください。\nお支払い期限: {}\nお支払い番号と確認番号: {}\n期限までにお支払いがない場合、お申し込みは取り消されます。",
                o.konbini_expires_at.map(|t| crate::clock::format_local(t, &account.time_zone)).unwrap_or_default(),
                o.konbini_voucher_url.clone().unwrap_or_default()
            ),
            None if event.payment_note.is_empty() => "お支払い方法は主催者からご連絡します。".into(),
            None => event.payment_note.clone(),
        },
        ticket: a.ticket_name.clone(),
        ..JoinContext::default()
    };
    let mut tx = app.store.begin().await?;
    let cause = format!("event-received:{}", a.id);
    let to = mails::Delivery { to: &rep.email, cause: &cause, calendar: None };
    mails::queue(&mut tx, app, &account, mails::RECEIVED, &ctx, to).await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    Ok(Outcome::Done)
}
