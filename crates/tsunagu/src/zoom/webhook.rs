//! `POST /zoom/webhook/{account_key}`: Zoom's event notifications for one organizer (the key is
//! the account's id; the organizer's own Secret Token signs each delivery, so a request that is
//! not from their Zoom app is refused). It answers Zoom's URL validation, and records what the
//! organizer did in Zoom's own screens: a meeting or webinar deleted there, or moved to another
//! time. The event page then shows it, and the organizer gets a mail. Zoom waits 3 s for the
//! answer, so the work here is a few writes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::Value;
use tsunagu_core::AccountId;
use tsunagu_store::{StoreError, events as store};

use crate::app::SharedApp;
use crate::web::error::AppError;

/// Sealed purpose of the Secret Token of the organizer's Zoom app (its event subscription).
pub const ZOOM_WEBHOOK_SECRET: &str = "zoom.webhook_secret";

/// The address to paste into the Zoom app's event subscription.
pub fn url(config: &crate::config::Config, account: AccountId) -> String {
    format!("{}/zoom/webhook/{}", config.http.public_url.trim_end_matches('/'), account.0)
}

pub async fn receive(
    State(app): State<SharedApp>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let Ok(account) = key.parse::<i64>().map(AccountId) else { return Ok(StatusCode::NOT_FOUND.into_response()) };
    let Some(secret) = app.open_secret(account, ZOOM_WEBHOOK_SECRET).await.map_err(AppError::Internal)? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Err(e) = tsunagu_zoom::webhook::verify(
        &secret,
        header("x-zm-request-timestamp"),
        header("x-zm-signature"),
        &body,
        app.now() / 1000,
    ) {
        tracing::warn!(account_id = %account, error = %e, "zoom webhook refused");
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return Ok(StatusCode::BAD_REQUEST.into_response()),
    };
    let event = v["event"].as_str().unwrap_or("");
    if event == "endpoint.url_validation" {
        let plain = v["payload"]["plainToken"].as_str().unwrap_or("");
        return Ok(Json(tsunagu_zoom::webhook::url_validation_response(&secret, plain)).into_response());
    }
    let object = &v["payload"]["object"];
    let Some(zoom_id) = object["id"].as_i64().or_else(|| object["id"].as_str().and_then(|s| s.parse().ok())) else {
        return Ok(StatusCode::OK.into_response());
    };
    let found = {
        let mut c = app.store.read().await?;
        store::event_by_zoom_id(&mut c, account, zoom_id).await?
    };
    let Some((event_id, our_start)) = found else {
        // Not one of Tsunagu's (a meeting the organizer made in Zoom): nothing to do.
        return Ok(StatusCode::OK.into_response());
    };
    let kind = if event.starts_with("webinar.") { "ウェビナー" } else { "ミーティング" };
    let notice = match event {
        "meeting.deleted" | "webinar.deleted" => Some((
            true,
            format!(
                "Zoom の管理画面でこの{kind}が削除されました。参加者の参加URLは使えません。Zoom設定で［保存する］を押すと作り直し、申込完了の方を登録し直して新しい参加URLをお送りします。"
            ),
        )),
        "meeting.updated" | "webinar.updated" => {
            let start = object["start_time"].as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
            match start.map(|t| t.as_millisecond()) {
                // Ours (Tsunagu's own update comes back as this event) or not a time change.
                Some(t) if t != our_start => {
                    let tz = {
                        let mut c = app.store.read().await?;
                        tsunagu_store::accounts::get(&mut c, account).await?.map(|a| a.time_zone)
                    }
                    .unwrap_or_else(|| "Asia/Tokyo".into());
                    Some((
                        false,
                        format!(
                            "Zoom の管理画面でこの{kind}の開催日時が {} に変更されました。イベントの開催日時も変える場合は、イベントを編集してください（参加者に日時変更のお知らせが届きます）。",
                            crate::clock::format_local(t, &tz)
                        ),
                    ))
                }
                _ => None,
            }
        }
        _ => None,
    };
    let Some((deleted, reason)) = notice else { return Ok(StatusCode::OK.into_response()) };
    let organizer = {
        let mut c = app.store.read().await?;
        tsunagu_store::accounts::get(&mut c, account).await?
    };
    let mut tx = app.store.begin().await?;
    store::record_change_at_zoom(&mut tx, event_id, deleted, &reason, app.now()).await?;
    if let Some(o) = organizer {
        let base = app.config.http.manager_url.trim_end_matches('/');
        let body = format!("{} 様\n\n{reason}\n\nイベントのページ: {base}/events/{event_id}\n", o.display_name);
        // Zoom retries a delivery it thinks failed: one mail per Zoom event.
        let cause = format!("zoom-webhook:{}:{zoom_id}:{}", event, v["event_ts"].as_i64().unwrap_or(0));
        crate::mail::enqueue(
            &mut tx,
            &app,
            &crate::mail::OutgoingMail {
                account_id: Some(account),
                cause: &cause,
                to: &o.email,
                subject: &format!("Zoom で{kind}が{}されました", if deleted { "削除" } else { "変更" }),
                body: &body,
                calendar: None,
            },
        )
        .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    crate::jobs::wake(&app);
    tracing::info!(account_id = %account, event_id, zoom_id, event, "zoom change recorded");
    Ok(StatusCode::OK.into_response())
}
