//! 基本設定: the organizer's Zoom API credentials (Server-to-Server OAuth, as manual 000 sets
//! it up). The Client Secret is sealed before it reaches the database and never rendered back.
//! Saving runs the live check of `tsunagu zoom check` (a token, the scopes, the host user) and
//! shows what is missing and where to add it.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tsunagu_store::secrets::{self, ZoomCredentials};

use crate::app::SharedApp;
use crate::crypto::secret_aad;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

pub use crate::zoom::ZOOM_CLIENT_SECRET;

#[derive(Template)]
#[template(path = "basic_settings.html")]
struct BasicSettingsPage {
    chrome: Chrome,
    error: Option<String>,
    zoom_account_id: String,
    client_id: String,
    secret_saved: bool,
    /// Tsunagu's Zoom OAuth app is configured: offer ［Zoom にログインして連携する］.
    oauth_available: bool,
    /// How Zoom is connected now: "s2s", "oauth" or "".
    connected: String,
    connected_zoom_account: String,
    /// The live check's result, after saving or ［接続テスト］.
    check: Option<CheckView>,
    /// Where Zoom's event notifications go, and whether their Secret Token is saved.
    webhook_url: String,
    webhook_secret_saved: bool,
}

/// The live check as the page shows it.
struct CheckView {
    ok: bool,
    token_problem: Option<String>,
    missing_manual: Vec<String>,
    missing_more: Vec<String>,
    host: Option<String>,
    host_problem: Option<String>,
}

impl CheckView {
    fn of(r: &crate::zoom::check::Report) -> CheckView {
        let (manual, more): (Vec<_>, Vec<_>) = r.missing.iter().partition(|m| m.scope.in_manual);
        CheckView {
            ok: r.ok(),
            token_problem: r.token.as_ref().err().map(|e| e.message_ja()),
            missing_manual: manual.into_iter().map(|m| m.message.clone()).collect(),
            missing_more: more.into_iter().map(|m| m.message.clone()).collect(),
            host: match &r.host {
                Some(Ok(u)) => Some(u.email.clone()),
                _ => None,
            },
            host_problem: match &r.host {
                Some(Err(e)) => Some(e.message_ja()),
                _ => None,
            },
        }
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    /// Run the live check (after a save, or ［接続テスト］).
    #[serde(default)]
    check: Option<String>,
}

async fn live_check(app: &SharedApp, account: tsunagu_core::AccountId) -> Result<Option<CheckView>, AppError> {
    let Some(org) = crate::zoom::organizer(app, account).await.map_err(AppError::Internal)? else {
        return Ok(None);
    };
    let report = crate::zoom::check::run(&app.zoom, &org, "me").await;
    tracing::info!(account_id = %account, ok = report.ok(), missing = report.missing.len(), "zoom connection checked");
    Ok(Some(CheckView::of(&report)))
}

pub async fn show(
    State(app): State<SharedApp>,
    auth: Auth,
    Query(q): Query<ShowQuery>,
) -> Result<Html<String>, AppError> {
    let (creds, secret_saved, webhook_secret_saved) = {
        let mut c = app.store.read().await?;
        let creds = secrets::get_zoom(&mut c, auth.account.id).await?;
        let webhook = secrets::get(&mut c, auth.account.id, super::webhook::ZOOM_WEBHOOK_SECRET).await?.is_some();
        (creds, secrets::get(&mut c, auth.account.id, ZOOM_CLIENT_SECRET).await?.is_some(), webhook)
    };
    let check = if q.check.is_some() && creds.is_some() { live_check(&app, auth.account.id).await? } else { None };
    let connected = creds.as_ref().map(|z| z.auth_method.clone()).unwrap_or_default();
    let s2s = creds.as_ref().filter(|z| z.auth_method == "s2s");
    let page = BasicSettingsPage {
        chrome: Chrome::console(&auth, "basic", "基本設定"),
        error: None,
        zoom_account_id: s2s.map(|z| z.zoom_account_id.clone()).unwrap_or_default(),
        client_id: s2s.map(|z| z.client_id.clone()).unwrap_or_default(),
        secret_saved,
        oauth_available: crate::zoom::oauth_app(&app.config).is_some(),
        connected_zoom_account: creds.map(|z| z.zoom_account_id).unwrap_or_default(),
        connected,
        check,
        webhook_url: super::webhook::url(&app.config, auth.account.id),
        webhook_secret_saved,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
pub struct BasicSettingsForm {
    #[serde(default)]
    auth_method: String,
    #[serde(default)]
    zoom_account_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    webhook_secret: String,
}

fn clean_id(s: &str) -> String {
    s.trim().to_string()
}

pub async fn save(
    State(app): State<SharedApp>,
    auth: Auth,
    Form(form): Form<BasicSettingsForm>,
) -> Result<Response, AppError> {
    let account = auth.account.id;
    let zoom_account_id = clean_id(&form.zoom_account_id);
    let client_id = clean_id(&form.client_id);
    let secret = form.client_secret.trim();
    let secret_saved = {
        let mut c = app.store.read().await?;
        secrets::get(&mut c, account, ZOOM_CLIENT_SECRET).await?.is_some()
    };
    let problem = if form.auth_method != "s2s" {
        Some(
            "［Zoom API認証方式］で［Server-to-Server OAuth］をチェックしてください。チェックしないと設定が完了しません。",
        )
    } else if zoom_account_id.is_empty() {
        Some(
            "［zoom (Account Id)］を入力してください。Zoom Marketplace のアプリの「App Credentials」に表示されている Account ID です。",
        )
    } else if client_id.is_empty() {
        Some(
            "［zoom (Client Id)］を入力してください。Zoom Marketplace のアプリの「App Credentials」に表示されている Client ID です。",
        )
    } else if secret.is_empty() && !secret_saved {
        Some(
            "［zoom(Client Secret)］を入力してください。Zoom Marketplace のアプリの「App Credentials」に表示されている Client Secret です。",
        )
    } else if [&zoom_account_id, &client_id].iter().any(|v| v.chars().any(char::is_whitespace))
        || secret.chars().any(char::is_whitespace)
    {
        Some("空白を含まない値を入力してください。コピーした値の前後や途中に空白が入っていないかご確認ください。")
    } else {
        None
    };
    if let Some(msg) = problem {
        // Keep what was typed, except the secret, which is never echoed back: say so.
        let msg = if secret.is_empty() {
            msg.to_string()
        } else {
            format!("{msg}（安全のため、入力した Client Secret はもう一度入力してください。）")
        };
        let page = BasicSettingsPage {
            chrome: Chrome::console(&auth, "basic", "基本設定"),
            error: Some(msg),
            zoom_account_id,
            client_id,
            secret_saved,
            oauth_available: crate::zoom::oauth_app(&app.config).is_some(),
            connected: String::new(),
            connected_zoom_account: String::new(),
            check: None,
            webhook_url: super::webhook::url(&app.config, account),
            webhook_secret_saved: false,
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    }
    let now = app.now();
    let mut tx = app.store.begin().await?;
    secrets::put_zoom(
        &mut tx,
        account,
        &ZoomCredentials { auth_method: "s2s".into(), zoom_account_id, client_id, updated_at: now },
    )
    .await?;
    if !secret.is_empty() {
        let (key_id, sealed) = app.keys.seal(secret, &secret_aad(account, ZOOM_CLIENT_SECRET));
        secrets::put(&mut tx, account, ZOOM_CLIENT_SECRET, &key_id, &sealed, now).await?;
    }
    let webhook_secret = form.webhook_secret.trim();
    if !webhook_secret.is_empty() {
        let purpose = super::webhook::ZOOM_WEBHOOK_SECRET;
        let (key_id, sealed) = app.keys.seal(webhook_secret, &secret_aad(account, purpose));
        secrets::put(&mut tx, account, purpose, &key_id, &sealed, now).await?;
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    tracing::info!(account_id = %account, secret_changed = !secret.is_empty(), "zoom credentials saved");
    // The page runs the live check on the way back and shows what it found.
    Ok(flash_redirect(
        &app,
        "/settings/basic?check=1",
        "success",
        "保存しました。Zoom との接続を確認しました（結果は下のとおりです）。",
    ))
}
