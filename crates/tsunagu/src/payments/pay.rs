//! The participant's way to Stripe and back, on the public host: ［お支払いに進む］ on their
//! application page (`POST /a/{access}/pay`), and Stripe's return (`GET /a/{access}/paid`), which
//! decides the order at once when Stripe already knows the outcome. Closing the tab instead
//! loses nothing: the webhook decides the order the same way.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tsunagu_store::applications as apps;

use super::checkout::{self, NotStarted};
use crate::app::SharedApp;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;

async fn application(app: &SharedApp, access: &str) -> Result<(i64, tsunagu_core::AccountId), AppError> {
    let mut c = app.store.read().await?;
    let a = apps::by_access_key(&mut c, access).await?.ok_or(AppError::NotFound)?;
    let order = tsunagu_store::stripe::order(&mut c, a.id).await?.ok_or(AppError::NotFound)?;
    Ok((a.id, order.account_id))
}

/// ［お支払いに進む］: to Stripe's checkout page.
pub async fn pay(State(app): State<SharedApp>, Path(access): Path<String>) -> Result<Response, AppError> {
    let (id, _) = application(&app, &access).await?;
    match checkout::start(&app, id, &access).await? {
        Ok(url) => Ok(Redirect::to(&url).into_response()),
        Err(NotStarted::Stripe(e)) => Ok(flash_redirect(
            &app,
            &format!("/a/{access}"),
            "error",
            &format!(
                "決済ページを開けませんでした。少し待ってから［お支払いに進む］をもう一度押してください。（{}）",
                e.message_ja()
            ),
        )),
        Err(NotStarted::Closed | NotStarted::Missing) => Ok(Redirect::to(&format!("/a/{access}")).into_response()),
    }
}

#[derive(Deserialize)]
pub struct Returned {
    #[serde(default)]
    session_id: String,
}

/// Back from Stripe: decide the order now if Stripe knows, then show the application page (which
/// says 決済を確認しています while the payment is not known yet).
pub async fn returned(
    State(app): State<SharedApp>,
    Path(access): Path<String>,
    Query(q): Query<Returned>,
) -> Result<Response, AppError> {
    let (id, account) = application(&app, &access).await?;
    let session = {
        let mut c = app.store.read().await?;
        tsunagu_store::stripe::order(&mut c, id).await?.and_then(|o| o.session_id)
    };
    // Only the order's own session; the query is a hint, never trusted for another order.
    if let Some(s) = session.filter(|s| q.session_id.is_empty() || *s == q.session_id)
        && let Err(e) = checkout::fulfil(&app, account, &s).await
    {
        // The webhook will decide it; the page says the payment is being confirmed.
        tracing::warn!(application_id = id, error = ?e, "payment not confirmed on return");
    }
    Ok(Redirect::to(&format!("/a/{access}?confirming=1")).into_response())
}
