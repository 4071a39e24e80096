//! `POST /stripe/webhook/{account_key}`: Stripe's events for one organizer (the key is the
//! account's id). Each delivery's `Stripe-Signature` is checked over the raw body with the
//! endpoint's signing secret, sealed when Tsunagu created the endpoint (NOTES §2: 300 s
//! tolerance, any `v1`, constant time). An event of a type Tsunagu subscribes to is stored once
//! per Stripe event id before the 200; a failure to store answers 5xx, so that Stripe sends it
//! again. The organizer's `stripe.events` job, queued in the same transaction, acts on it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tsunagu_core::AccountId;
use tsunagu_store::StoreError;
use tsunagu_store::stripe::{self as store, NewEvent};
use tsunagu_stripe::model::Event;

use super::STRIPE_WEBHOOK_SECRET;
use crate::app::SharedApp;
use crate::web::error::AppError;

pub async fn receive(
    State(app): State<SharedApp>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let Ok(account) = key.parse::<i64>().map(AccountId) else { return Ok(StatusCode::NOT_FOUND.into_response()) };
    let Some(secret) = app.open_secret(account, STRIPE_WEBHOOK_SECRET).await.map_err(AppError::Internal)? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = tsunagu_stripe::webhook::verify(header, &body, &[secret.as_str()], app.now() / 1000) {
        tracing::warn!(account_id = %account, error = %e, "stripe webhook refused");
        return Ok(StatusCode::BAD_REQUEST.into_response());
    }
    let Ok(text) = std::str::from_utf8(&body) else { return Ok(StatusCode::BAD_REQUEST.into_response()) };
    let event: Event = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(account_id = %account, error = %e, "stripe webhook is not an event");
            return Ok(StatusCode::BAD_REQUEST.into_response());
        }
    };
    if !tsunagu_stripe::EVENTS.contains(&event.kind.as_str()) {
        // Signed by this endpoint but not one Tsunagu asked for (the endpoint was edited in
        // Stripe's dashboard): acknowledged so that Stripe stops, and not stored.
        tracing::info!(account_id = %account, event_type = %event.kind, "stripe event type ignored");
        return Ok(StatusCode::OK.into_response());
    }
    let object_id = event.data.object["id"].as_str().unwrap_or_default();
    let new = NewEvent {
        event_id: &event.id,
        event_type: &event.kind,
        object_id,
        livemode: event.livemode,
        created: event.created,
        body: text,
        received_at: app.now(),
    };
    let mut tx = app.store.begin().await?;
    let fresh = store::insert_event(&mut tx, account, &new).await?;
    if fresh {
        super::checkout::queue_events(&mut tx, &app, account).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    if fresh {
        crate::jobs::wake(&app);
    }
    tracing::info!(account_id = %account, event_id = %event.id, event_type = %event.kind, fresh, "stripe event stored");
    Ok(StatusCode::OK.into_response())
}
