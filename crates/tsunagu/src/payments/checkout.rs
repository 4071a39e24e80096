//! Paying an application through Stripe Checkout, and the one fulfilment function.
//!
//! - [`start`] makes (or finds) the checkout session of an application's order. Its idempotency
//!   key comes from the order, so a retry, a reload or a second process gets the same session.
//! - [`fulfil`] decides an order from the session as Stripe holds it (re-read, never taken from
//!   an event's body): paid → the application completes (Zoom registration and mails hang off
//!   that one transition); a konbini voucher issued → the seat stays held until it expires; the
//!   session expired or the voucher lapsed → the application is cancelled, its seats return, and
//!   each person is mailed. It runs under a row lock on the order, so the return page, a webhook
//!   and a second delivery of it, in any order and at once, complete an application once.
//! - [`run_events`] is the `stripe.events` job: it acts on the events the webhook stored.

use tsunagu_core::AccountId;
use tsunagu_store::StoreError;
use tsunagu_store::applications as apps;
use tsunagu_store::events as events_store;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::stripe::{self as store, OrderChange};
use tsunagu_stripe::StripeError;
use tsunagu_stripe::client::{CheckoutRequest, LineItem};
use tsunagu_stripe::model::CheckoutSession;

use crate::app::App;
use crate::jobs::{JobError, Outcome};

/// The job kind that acts on stored webhook events, one queued per organizer.
pub const EVENTS_JOB: &str = "stripe.events";

/// Queue the organizer's `stripe.events` job on the caller's transaction.
pub async fn queue_events(
    c: &mut tsunagu_store::AnyConnection,
    app: &App,
    account: AccountId,
) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "account_id": account.0 });
    crate::jobs::enqueue(c, app, EVENTS_JOB, &payload, Some(&format!("{EVENTS_JOB}:{}", account.0)), 0).await?;
    Ok(())
}

/// Why a checkout could not be started, for the participant.
#[derive(Debug)]
pub enum NotStarted {
    /// Stripe refused or did not answer: say so; the participant may try again.
    Stripe(StripeError),
    /// The order is no longer open (paid, expired, cancelled).
    Closed,
    Missing,
}

const DAY_MS: i64 = 86_400_000;
const JST_MS: i64 = 9 * 3_600_000;

/// Days a konbini voucher may run for an order made at `now`: the event's setting, cut so that
/// its deadline (23:59:59 JST of the last day) falls before `limit` (the end of applications or
/// the start, whichever comes first). `None`: too close to offer konbini at all.
pub fn konbini_days(setting: i64, now: i64, limit: i64) -> Option<i64> {
    let today = (now + JST_MS).div_euclid(DAY_MS);
    // The deadline of d days is the end of day today + d, which must not pass `limit`.
    let max = (limit + JST_MS + 1).div_euclid(DAY_MS) - today - 1;
    let d = setting.min(max).min(60);
    (d >= 1).then_some(d)
}

/// The checkout URL of an application's order, making the session if needed.
pub async fn start(app: &App, application_id: i64, access: &str) -> Result<Result<String, NotStarted>, StoreError> {
    let (order, application, event) = {
        let mut c = app.store.read().await?;
        let Some(order) = store::order(&mut c, application_id).await? else { return Ok(Err(NotStarted::Missing)) };
        let Some(a) = apps::by_id(&mut c, application_id).await? else { return Ok(Err(NotStarted::Missing)) };
        let Some(e) = events_store::get_for_job(&mut c, a.event_id).await? else {
            return Ok(Err(NotStarted::Missing));
        };
        (order, a, e)
    };
    if order.state != "open" || application.status != "awaiting_payment" {
        return Ok(Err(NotStarted::Closed));
    }
    if let (Some(_), Some(url)) = (&order.session_id, &order.checkout_url) {
        return Ok(Ok(url.clone()));
    }
    let caller = match super::caller(app, order.account_id).await {
        Ok(Some(c)) => c,
        _ => return Ok(Err(NotStarted::Missing)),
    };
    let people = application.people.iter().filter(|p| !p.cancelled).count().max(1) as i64;
    let now = app.now();
    let mut methods: Vec<String> =
        event.payment_methods.iter().filter(|m| *m == "card" || *m == "konbini").cloned().collect();
    let days = konbini_days(event.konbini_days, now, event.apply_until.min(event.starts_at));
    if days.is_none() {
        methods.retain(|m| m != "konbini");
    }
    if methods.is_empty() {
        return Ok(Err(NotStarted::Closed));
    }
    let base = app.config.http.public_url.trim_end_matches('/');
    let representative = application.people.iter().find(|p| p.position == 0);
    let req = CheckoutRequest {
        order_ref: application_id.to_string(),
        metadata: vec![("event_id".into(), event.id.to_string())],
        line_items: vec![LineItem {
            name: format!("{}（{}）", event.title.chars().take(200).collect::<String>(), application.ticket_name),
            unit_amount: order.amount_yen / people,
            quantity: people as u32,
        }],
        konbini_expires_after_days: days.filter(|_| methods.iter().any(|m| m == "konbini")).map(|d| d as u32),
        methods,
        customer_email: representative.map(|p| p.email.clone()),
        success_url: format!("{base}/a/{access}/paid?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("{base}/a/{access}"),
        expires_at: None,
    };
    let session =
        match app.stripe.create_checkout_session(&caller, &req, &format!("tsunagu-order-{application_id}")).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(application_id, error = e.code(), "checkout session not made");
                return Ok(Err(NotStarted::Stripe(e)));
            }
        };
    let Some(url) = session.url.clone() else { return Ok(Err(NotStarted::Closed)) };
    let mut tx = app.store.begin().await?;
    store::set_checkout(&mut tx, application_id, &session.id, &url, now).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Ok(url))
}

/// What [`fulfil`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfilled {
    /// Paid now: the application completed.
    Completed,
    /// A konbini voucher waits to be paid.
    Voucher,
    /// Expired or lapsed: the application was cancelled.
    Released,
    /// Nothing changed (already decided, or still open).
    Unchanged,
    /// Not an order of this organizer.
    Unknown,
}

/// Decide an order from its checkout session as Stripe holds it now.
pub async fn fulfil(app: &App, account: AccountId, session_id: &str) -> Result<Fulfilled, FulfilError> {
    let Some(caller) = super::caller(app, account).await.map_err(FulfilError::Other)? else {
        return Ok(Fulfilled::Unknown);
    };
    let session = app.stripe.checkout_session(&caller, session_id).await.map_err(FulfilError::Stripe)?;
    let Some(application_id) = session.client_reference_id.as_deref().and_then(|r| r.parse::<i64>().ok()) else {
        return Ok(Fulfilled::Unknown);
    };
    // A voucher's deadline and page, read from the payment before the transaction.
    let voucher = if session.status.as_deref() == Some("complete") && session.payment_status == "unpaid" {
        match &session.payment_intent {
            Some(pi) => {
                let intent = app.stripe.payment_intent(&caller, pi).await.map_err(FulfilError::Stripe)?;
                Some(intent)
            }
            None => None,
        }
    } else {
        None
    };
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let Some(order) = store::lock_order(&mut tx, account, application_id).await? else {
        tx.rollback().await.map_err(StoreError::from)?;
        return Ok(Fulfilled::Unknown);
    };
    if order.session_id.as_deref().is_some_and(|s| s != session.id) {
        // Another session of the same order (none is made, but never act on a stranger).
        tx.rollback().await.map_err(StoreError::from)?;
        return Ok(Fulfilled::Unknown);
    }
    let outcome = decide(&order.state, &session, voucher.as_ref());
    match &outcome {
        Fulfilled::Completed => {
            let method = voucher
                .as_ref()
                .map(|_| "konbini")
                .or(order.method.as_deref())
                .unwrap_or(if order.state == "konbini" { "konbini" } else { "card" });
            let change = OrderChange {
                state: "paid",
                payment_intent: session.payment_intent.as_deref(),
                method: Some(method),
                ..OrderChange::default()
            };
            store::set_order(&mut tx, application_id, &change, now).await?;
            if !crate::events::register::complete(&mut tx, app, application_id).await? {
                let cancelled = apps::by_id(&mut tx, application_id).await?.is_some_and(|a| a.status == "cancelled");
                let left = order.amount_yen - order.refunded_yen;
                if cancelled && left > 0 {
                    // Cancelled before the payment arrived (a konbini voucher paid afterwards, or
                    // a second tab that paid as the session was being closed): the person gets
                    // no seat, so all of it goes back, through the same refund job as the
                    // console's.
                    super::refund::queue(&mut tx, app, application_id, account, left, 0).await?;
                    let konbini = voucher.is_some() || order.state == "konbini";
                    let news = crate::events::cancel::RefundNews::Late { amount: left };
                    let cause = format!("event-late-refund:{application_id}");
                    crate::events::cancel::queue_refund_mail(&mut tx, app, application_id, &cause, news, konbini)
                        .await
                        .map_err(|e| FulfilError::Other(anyhow::anyhow!("late refund mail: {e:?}")))?;
                    tracing::warn!(application_id, amount = left, "paid after the application was cancelled: refunded");
                } else {
                    tracing::warn!(application_id, cancelled, "paid, but the application was not waiting");
                }
            }
        }
        Fulfilled::Voucher => {
            let details =
                voucher.as_ref().and_then(|i| i.next_action.as_ref()).and_then(|n| n.konbini_display_details.as_ref());
            let change = OrderChange {
                state: "konbini",
                payment_intent: session.payment_intent.as_deref(),
                method: Some("konbini"),
                konbini_expires_at: details.map(|d| d.expires_at * 1000),
                konbini_voucher_url: details.and_then(|d| d.hosted_voucher_url.as_deref()),
            };
            store::set_order(&mut tx, application_id, &change, now).await?;
            // The application-received mail, with where and by when to pay.
            crate::events::register::queue_received(&mut tx, app, application_id).await?;
        }
        Fulfilled::Released => {
            store::set_order(&mut tx, application_id, &OrderChange { state: "expired", ..OrderChange::default() }, now)
                .await?;
            if let apps::Cancelled::Done { people, .. } = apps::cancel(&mut tx, application_id, None, now).await? {
                crate::events::cancel::queue(&mut tx, app, &people).await?;
            }
        }
        Fulfilled::Unchanged | Fulfilled::Unknown => {}
    }
    tx.commit().await.map_err(StoreError::from)?;
    if outcome != Fulfilled::Unchanged {
        crate::jobs::wake(app);
        tracing::info!(application_id, outcome = ?outcome, "stripe order decided");
    }
    Ok(outcome)
}

/// The decision, from the order's state and the session (and its payment, for a voucher).
fn decide(state: &str, s: &CheckoutSession, intent: Option<&tsunagu_stripe::model::PaymentIntent>) -> Fulfilled {
    let decided = matches!(state, "paid" | "expired");
    if decided {
        return Fulfilled::Unchanged;
    }
    if s.payment_status == "paid" {
        return Fulfilled::Completed;
    }
    match (s.status.as_deref(), intent.map(|i| i.status.as_str())) {
        (Some("expired"), _) => Fulfilled::Released,
        (Some("complete"), Some("canceled")) => Fulfilled::Released,
        (Some("complete"), Some("requires_action")) if state == "open" => Fulfilled::Voucher,
        _ => Fulfilled::Unchanged,
    }
}

#[derive(Debug)]
pub enum FulfilError {
    Stripe(StripeError),
    Store(StoreError),
    Other(anyhow::Error),
}

impl From<StoreError> for FulfilError {
    fn from(e: StoreError) -> Self {
        FulfilError::Store(e)
    }
}

impl From<FulfilError> for JobError {
    fn from(e: FulfilError) -> JobError {
        match e {
            FulfilError::Stripe(e) if e.retryable() => JobError::Retry(e.to_string()),
            FulfilError::Stripe(e) => JobError::Permanent(e.to_string()),
            FulfilError::Store(e) => JobError::Retry(e.to_string()),
            FulfilError::Other(e) => JobError::Retry(e.to_string()),
        }
    }
}

#[derive(serde::Deserialize)]
struct Payload {
    account_id: i64,
}

/// `stripe.events`: act on the organizer's stored events, oldest first. Each decides by
/// re-reading what it names at Stripe: a checkout event its session, a refund event its charge.
pub async fn run_events(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: Payload = serde_json::from_value(job.payload.clone()).map_err(|e| JobError::Permanent(e.to_string()))?;
    let account = AccountId(p.account_id);
    loop {
        let batch = {
            let mut c = app.store.read().await?;
            store::pending_events(&mut c, account, 50).await?
        };
        if batch.is_empty() {
            return Ok(Outcome::Done);
        }
        for e in batch {
            match e.event_type.as_str() {
                t if t.starts_with("checkout.session.") => {
                    fulfil(app, account, &e.object_id).await?;
                }
                "charge.refunded" => super::refund::sync_charge(app, account, &e.object_id).await?,
                "charge.refund.updated" => {
                    let refund: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
                    if let Some(charge) = refund.pointer("/data/object/charge").and_then(|c| c.as_str()) {
                        super::refund::sync_charge(app, account, charge).await?;
                    }
                }
                _ => {}
            }
            let mut c = app.store.conn().await?;
            store::mark_handled(&mut c, e.id, app.now()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voucher_never_runs_past_the_end_of_applications() {
        // 2026-12-03 10:00 JST.
        let now = 1_796_259_600_000;
        let day = DAY_MS;
        // Applications close 2026-12-10 00:00 JST: 3 days fit, 7 would end 12-10 23:59.
        let close = now - 10 * 3_600_000 + 7 * day;
        assert_eq!(konbini_days(3, now, close), Some(3));
        assert_eq!(konbini_days(10, now, close), Some(6), "the last full day before the close");
        // Closing tomorrow 12:00 JST: today's 23:59 is the only deadline left, and 0 days is none.
        assert_eq!(konbini_days(3, now, now + day + 2 * 3_600_000), None);
        assert_eq!(konbini_days(3, now, now + 2 * day), Some(1));
    }
}
