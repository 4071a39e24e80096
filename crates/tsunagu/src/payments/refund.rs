//! Refunds. The organizer's cancellation of a paid application (or of one companion's seat)
//! queues a refund of what was paid for it, less an optional キャンセル料, in the transaction that
//! cancels; `stripe.refund` sends it with the refund row's id in its idempotency key, so it is
//! made once however often the job runs. A refund made in Stripe's own dashboard arrives as
//! `charge.refunded` / `charge.refund.updated`: [`sync_charge`] records it, and when the payment
//! is refunded whole, cancels the application the same way (seats back, Zoom registrations
//! removed, each person mailed). A partial refund in the dashboard cancels nothing (NOTES §5.5).
//! A konbini refund waits in `requires_action` while Stripe asks the buyer for bank details.

use tsunagu_core::AccountId;
use tsunagu_store::StoreError;
use tsunagu_store::applications as apps;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::stripe as store;
use tsunagu_stripe::client::RefundRequest;

use super::checkout::FulfilError;
use crate::app::App;
use crate::jobs::{JobError, Outcome};

pub const REFUND_JOB: &str = "stripe.refund";
pub const EXPIRE_JOB: &str = "stripe.expire";

/// What the organizer's cancellation refunds: `None` when the application was not paid online
/// (or nothing of it is left to refund).
pub struct Refundable {
    pub account: AccountId,
    /// What was paid for the seats being cancelled and is not yet refunded.
    pub amount: i64,
}

/// What is refundable when `person` (a companion) or the whole application is cancelled: what
/// was paid less what is already refunded or on its way (queued refunds included), and less the
/// キャンセル料 kept by earlier cancellations of the same application. A companion's seat is worth
/// the order's amount divided among everyone it was paid for. `None` when the application or the
/// person is cancelled already, or nothing is left.
pub async fn refundable(
    c: &mut tsunagu_store::AnyConnection,
    application_id: i64,
    person: Option<i64>,
) -> Result<Option<Refundable>, StoreError> {
    let Some(order) = store::order(c, application_id).await? else { return Ok(None) };
    if order.state != "paid" {
        return Ok(None);
    }
    let Some(a) = apps::by_id(c, application_id).await? else { return Ok(None) };
    if a.status == "cancelled" || person.is_some_and(|p| a.people.iter().any(|x| x.id == p && x.cancelled)) {
        return Ok(None);
    }
    let left = left(&order, &store::refunds_of(c, application_id).await?);
    let whole = person.is_none_or(|p| a.people.iter().any(|x| x.id == p && x.position == 0));
    let each = order.amount_yen / (a.people.len() as i64).max(1);
    let amount = if whole { left } else { each.min(left) };
    Ok((amount > 0).then_some(Refundable { account: order.account_id, amount }))
}

/// What a paid order has left to refund: its amount, less what is refunded or on its way, and
/// less the キャンセル料 kept by cancellations.
pub fn left(order: &store::Order, refunds: &[store::RefundRow]) -> i64 {
    let live = refunds.iter().filter(|r| !matches!(r.state.as_str(), "failed" | "canceled"));
    let committed = live.clone().map(|r| r.amount_yen).sum::<i64>().max(order.refunded_yen);
    order.amount_yen - committed - live.map(|r| r.fee_yen).sum::<i64>()
}

/// Queue the refund on the caller's transaction (which cancels the seats). A キャンセル料 that
/// keeps all of it is recorded as `kept`, with nothing sent to Stripe, so that a later
/// cancellation of the same application does not refund it.
pub async fn queue(
    c: &mut tsunagu_store::AnyConnection,
    app: &App,
    application_id: i64,
    account: AccountId,
    amount: i64,
    fee: i64,
) -> Result<i64, StoreError> {
    let id = store::queue_refund(c, application_id, account, amount, fee, app.now()).await?;
    if amount <= 0 {
        store::set_refund(c, id, "", "kept", app.now()).await?;
        return Ok(id);
    }
    let payload = serde_json::json!({ "refund_id": id });
    crate::jobs::enqueue(c, app, REFUND_JOB, &payload, Some(&format!("{REFUND_JOB}:{id}")), 0).await?;
    Ok(id)
}

/// Close an unpaid order's checkout session (an application cancelled before it was paid), so
/// that it can no longer be paid; queued on the caller's transaction.
pub async fn queue_expire(
    c: &mut tsunagu_store::AnyConnection,
    app: &App,
    application_id: i64,
) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "application_id": application_id });
    crate::jobs::enqueue(c, app, EXPIRE_JOB, &payload, Some(&format!("{EXPIRE_JOB}:{application_id}")), 0).await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct RefundPayload {
    refund_id: i64,
}

fn job_error(e: tsunagu_stripe::StripeError) -> JobError {
    if e.retryable() { JobError::Retry(e.to_string()) } else { JobError::Permanent(e.to_string()) }
}

/// `stripe.refund`: send one queued refund.
pub async fn run_refund(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: RefundPayload =
        serde_json::from_value(job.payload.clone()).map_err(|e| JobError::Permanent(e.to_string()))?;
    let (row, order) = {
        let mut c = app.store.read().await?;
        let Some(row) = store::refund(&mut c, p.refund_id).await? else { return Ok(Outcome::Done) };
        let Some(order) = store::order(&mut c, row.application_id).await? else { return Ok(Outcome::Done) };
        (row, order)
    };
    if row.state != "queued" {
        return Ok(Outcome::Done);
    }
    let Some(pi) = order.payment_intent.clone() else {
        return Err(JobError::Permanent("the order has no payment to refund".into()));
    };
    let caller = super::caller(app, row.account_id)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?
        .ok_or_else(|| JobError::Permanent("Stripe is no longer connected".into()))?;
    let req = RefundRequest {
        payment_intent: pi,
        amount: Some(row.amount_yen),
        reason: Some("requested_by_customer".into()),
        metadata: vec![
            ("tsunagu_order".into(), row.application_id.to_string()),
            ("tsunagu_refund".into(), row.id.to_string()),
        ],
    };
    let refund = match app.stripe.create_refund(&caller, &req, &format!("tsunagu-refund-{}", row.id)).await {
        Ok(r) => r,
        Err(e) if !e.retryable() || job.attempts >= job.max_attempts => {
            let mut c = app.store.conn().await?;
            store::set_refund(&mut c, row.id, "", "failed", app.now()).await?;
            tracing::warn!(refund_id = row.id, error = %e, "refund refused by Stripe");
            return Err(job_error(e));
        }
        Err(e) => return Err(job_error(e)),
    };
    let mut tx = app.store.begin().await?;
    // Under the order's lock, the total from the rows (another refund of the order may have been
    // recorded meanwhile).
    store::lock_order(&mut tx, row.account_id, row.application_id).await?;
    store::set_refund(&mut tx, row.id, &refund.id, refund.status.as_deref().unwrap_or("pending"), app.now()).await?;
    let total = store::refunds_committed(&mut tx, row.application_id).await?;
    store::set_refunded(&mut tx, row.application_id, total, app.now()).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(refund_id = row.id, amount = row.amount_yen, status = ?refund.status, "refund sent");
    Ok(Outcome::Done)
}

#[derive(serde::Deserialize)]
struct ExpirePayload {
    application_id: i64,
}

/// `stripe.expire`: close the session of an order cancelled unpaid.
pub async fn run_expire(app: &App, job: &ClaimedJob) -> Result<Outcome, JobError> {
    let p: ExpirePayload =
        serde_json::from_value(job.payload.clone()).map_err(|e| JobError::Permanent(e.to_string()))?;
    let order = {
        let mut c = app.store.read().await?;
        store::order(&mut c, p.application_id).await?
    };
    let Some(order) = order.filter(|o| o.state == "open") else { return Ok(Outcome::Done) };
    let Some(session) = order.session_id else { return Ok(Outcome::Done) };
    let Some(caller) = super::caller(app, order.account_id).await.map_err(|e| JobError::Retry(e.to_string()))? else {
        return Ok(Outcome::Done);
    };
    match app.stripe.expire_checkout_session(&caller, &session, &format!("tsunagu-expire-{}", p.application_id)).await {
        // Already paid or expired: the session's own event decides the order.
        Ok(_) | Err(tsunagu_stripe::StripeError::Invalid { .. }) => Ok(Outcome::Done),
        Err(e) => Err(job_error(e)),
    }
}

/// A charge's refunds as Stripe holds them now: each recorded, the order's refunded total set,
/// and the application cancelled when the payment is refunded whole.
pub async fn sync_charge(app: &App, account: AccountId, charge_id: &str) -> Result<(), FulfilError> {
    let Some(caller) = super::caller(app, account).await.map_err(FulfilError::Other)? else { return Ok(()) };
    let charge = app.stripe.charge(&caller, charge_id).await.map_err(FulfilError::Stripe)?;
    let Some(pi) = charge.payment_intent.clone() else { return Ok(()) };
    let order = {
        let mut c = app.store.read().await?;
        store::order_by_payment(&mut c, account, &pi).await?
    };
    let Some(order) = order else { return Ok(()) };
    let now = app.now();
    let mut tx = app.store.begin().await?;
    store::lock_order(&mut tx, account, order.application_id).await?;
    let mut committed = 0;
    for r in charge.refunds.as_ref().map(|l| l.data.as_slice()).unwrap_or_default() {
        let state = r.status.as_deref().unwrap_or("pending");
        let ours = r.metadata.get("tsunagu_refund").and_then(|id| id.parse::<i64>().ok());
        store::upsert_refund(&mut tx, order.application_id, account, &r.id, ours, r.amount, state, now).await?;
        if matches!(state, "succeeded" | "pending" | "requires_action") {
            committed += r.amount;
        }
    }
    store::set_refunded(&mut tx, order.application_id, committed, now).await?;
    if charge.refunded {
        store::set_order(
            &mut tx,
            order.application_id,
            &store::OrderChange { state: "refunded", ..Default::default() },
            now,
        )
        .await?;
        if let apps::Cancelled::Done { people, .. } = apps::cancel(&mut tx, order.application_id, None, now).await? {
            crate::events::cancel::queue(&mut tx, app, &people).await?;
            tracing::info!(application_id = order.application_id, "refunded in full at Stripe: application cancelled");
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(app);
    Ok(())
}
