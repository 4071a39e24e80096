//! `stripe.reconcile`: a webhook can be lost (our outage longer than Stripe's retries, an
//! endpoint deleted by mistake). Every 10 minutes, each connected organizer's events of the last
//! 3 days are listed (`GET /v1/events`, NOTES §1) and any not yet stored is stored as if it had
//! been delivered; the `stripe.events` job then acts on it like on any other.

use serde_json::json;
use tsunagu_core::AccountId;
use tsunagu_store::StoreError;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::stripe::{self as store, NewEvent};

use super::checkout::{FulfilError, queue_events};
use crate::app::App;
use crate::jobs::{JobError, Outcome};

pub const RECONCILE: &str = "stripe.reconcile";
pub const EVERY_MS: i64 = 10 * 60 * 1000;
/// How far back each sweep looks: Stripe retries a delivery for 3 days.
const WINDOW_S: i64 = 3 * 86_400;

/// Store the organizer's recent events that no webhook brought. Returns how many were new.
pub async fn account(app: &App, account: AccountId) -> Result<usize, FulfilError> {
    let Some(caller) = super::caller(app, account).await.map_err(FulfilError::Other)? else { return Ok(0) };
    let since = app.now() / 1000 - WINDOW_S;
    let mut after: Option<String> = None;
    let mut fresh = 0;
    loop {
        let page = app.stripe.events(&caller, since, after.as_deref()).await.map_err(FulfilError::Stripe)?;
        let mut tx = app.store.begin().await?;
        let mut new_here = 0;
        for e in &page.data {
            let body = json!({
                "id": e.id, "object": "event", "type": e.kind, "created": e.created, "livemode": e.livemode,
                "api_version": e.api_version, "data": {"object": e.data.object},
            })
            .to_string();
            let new = NewEvent {
                event_id: &e.id,
                event_type: &e.kind,
                object_id: e.data.object["id"].as_str().unwrap_or_default(),
                livemode: e.livemode,
                created: e.created,
                body: &body,
                received_at: app.now(),
            };
            if store::insert_event(&mut tx, account, &new).await? {
                new_here += 1;
            }
        }
        if new_here > 0 {
            queue_events(&mut tx, app, account).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        fresh += new_here;
        match (page.has_more, page.data.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => break,
        }
    }
    if fresh > 0 {
        crate::jobs::wake(app);
        tracing::warn!(account_id = %account, events = fresh, "stripe events found that no webhook brought");
    }
    Ok(fresh)
}

/// The recurring sweep over every connected organizer. One organizer's failure (a revoked key)
/// does not stop the others; it is logged, and the next sweep tries again.
pub async fn run(app: &App, worker: &str, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let accounts = {
        let mut c = app.store.read().await?;
        store::connected_accounts(&mut c).await?
    };
    for a in accounts {
        if let Err(e) = account(app, a).await {
            tracing::warn!(account_id = %a, error = ?e, "stripe reconciliation failed for an organizer");
        }
    }
    let mut tx = app.store.begin().await?;
    if tsunagu_store::jobs::complete(&mut tx, job.id, worker).await? {
        crate::jobs::enqueue(&mut tx, app, RECONCILE, &json!({}), Some(RECONCILE), EVERY_MS).await?;
    }
    tx.commit().await.map_err(|e| JobError::Retry(e.to_string()))?;
    Ok(Outcome::Completed)
}
