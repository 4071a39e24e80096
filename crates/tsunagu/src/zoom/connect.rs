//! Connecting Zoom through Tsunagu's OAuth app (the alternative to handing over a
//! Server-to-Server app's secret, NOTES §1.3): ［Zoom にログインして連携する］ sends the
//! browser to Zoom with a random `state` kept in a short-lived cookie; Zoom sends it back to
//! `/zoom/oauth/callback` with a code, which is exchanged for tokens that are sealed and stored.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::app::SharedApp;
use crate::crypto::{ct_eq, random_token};
use crate::web::context::{cookie, flash_redirect, set_cookie};
use crate::web::error::AppError;
use crate::web::session::Auth;

const STATE_COOKIE: &str = "zoom_oauth_state";
const SETTINGS: &str = "/settings/basic";

/// POST ［Zoom にログインして連携する］.
pub async fn start(State(app): State<SharedApp>, _auth: Auth) -> Result<Response, AppError> {
    let Some(oauth) = crate::zoom::oauth_app(&app.config) else {
        return Ok(flash_redirect(
            &app,
            SETTINGS,
            "error",
            "この環境では Zoom へのログインによる連携は設定されていません。Server-to-Server OAuth の情報を入力してください。",
        ));
    };
    let state = random_token(24);
    let url = tsunagu_zoom::oauth::authorize_url(&app.config.zoom.oauth_base_url, &oauth, &state);
    let mut resp = Redirect::to(&url).into_response();
    resp.headers_mut().append(SET_COOKIE, set_cookie(&app, STATE_COOKIE, &state, Some(600)));
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
}

/// GET `/zoom/oauth/callback?code=…&state=…` (or `?error=access_denied`).
pub async fn callback(
    State(app): State<SharedApp>,
    auth: Auth,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let expected = cookie(&headers, STATE_COOKIE).unwrap_or("").to_string();
    let fail = |msg: &str| {
        let mut r = flash_redirect(&app, SETTINGS, "error", msg);
        r.headers_mut().append(SET_COOKIE, set_cookie(&app, STATE_COOKIE, "", Some(0)));
        r
    };
    if !q.error.is_empty() {
        return Ok(fail(
            "Zoom での連携が許可されませんでした。もう一度［Zoom にログインして連携する］を押してください。",
        ));
    }
    if expected.is_empty() || q.state.is_empty() || !ct_eq(&q.state, &expected) || q.code.is_empty() {
        return Ok(fail(
            "連携の確認に失敗しました（時間が経ちすぎたか、別の画面から開かれました）。もう一度［Zoom にログインして連携する］を押してください。",
        ));
    }
    let Some(oauth) = crate::zoom::oauth_app(&app.config) else {
        return Err(AppError::NotFound);
    };
    let tokens =
        match tsunagu_zoom::oauth::exchange_code(app.zoom.http(), &app.config.zoom.oauth_base_url, &oauth, &q.code)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(account_id = %auth.account.id, error = %e, "zoom oauth code exchange failed");
                return Ok(fail(&e.message_ja()));
            }
        };
    // Which Zoom account was connected (shown on 基本設定).
    let probe = tsunagu_zoom::Organizer {
        key: format!("connect-{}", auth.account.id),
        auth: tsunagu_zoom::Auth::OAuth { app: oauth, tokens: tokens.clone() },
        plan: crate::zoom::plan(&app.config),
    };
    let zoom_account = match app.zoom.get_user(&probe, "me").await {
        Ok(u) => u.account_id,
        Err(e) => {
            tracing::warn!(account_id = %auth.account.id, error = %e, "zoom oauth user lookup failed");
            String::new()
        }
    };
    crate::zoom::save_oauth_connection(&app, auth.account.id, &zoom_account, &tokens).await?;
    tracing::info!(account_id = %auth.account.id, "zoom connected through the oauth app");
    let mut r = flash_redirect(&app, SETTINGS, "success", "Zoom と連携しました。");
    r.headers_mut().append(SET_COOKIE, set_cookie(&app, STATE_COOKIE, "", Some(0)));
    Ok(r)
}
