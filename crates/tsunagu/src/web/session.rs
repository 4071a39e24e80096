//! Who is logged in. `Auth` loads the account behind the session cookie or sends the browser
//! to the log-in page; `AdminAuth` also requires the platform administrator role.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use tsunagu_core::Role;
use tsunagu_store::accounts::{self, Account};
use tsunagu_store::sessions;

use super::context::{RequestContext, SESSION_COOKIE, set_cookie};
use super::error::AppError;
use crate::app::SharedApp;
use crate::crypto::{random_token, sha256_hex};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct Auth {
    pub account: Account,
    pub session_hash: String,
    pub ctx: RequestContext,
}

pub struct AdminAuth(pub Auth);

pub enum AuthRejection {
    Login(String),
    Error(AppError),
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Login(next) => {
                let encoded: String = url_encode(&next);
                Redirect::to(&format!("/login?next={encoded}")).into_response()
            }
            AuthRejection::Error(e) => e.into_response(),
        }
    }
}

fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|v| v.trim_start_matches('=').to_string()).unwrap_or_default()
}

impl FromRequestParts<SharedApp> for Auth {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        let ctx = RequestContext::from_request_parts(parts, app).await.map_err(AuthRejection::Error)?;
        let next = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let Some(hash) = ctx.session_hash.clone() else {
            return Err(AuthRejection::Login(next));
        };
        let now = app.now();
        // Read on a reader: every console request passes here and must not queue behind writers.
        let mut c = app.store.read().await.map_err(|e| AuthRejection::Error(e.into()))?;
        let Some(session) =
            sessions::find_live(&mut c, &hash, now).await.map_err(|e| AuthRejection::Error(e.into()))?
        else {
            return Err(AuthRejection::Login(next));
        };
        let Some(account) =
            accounts::get(&mut c, session.account_id).await.map_err(|e| AuthRejection::Error(e.into()))?
        else {
            return Err(AuthRejection::Login(next));
        };
        // Sliding expiry, written at most about once an hour per session.
        let lifetime = app.config.http.session_days as i64 * DAY_MS;
        if session.expires_at - now < lifetime - 60 * 60 * 1000 {
            drop(c);
            let touched = match app.store.conn().await {
                Ok(mut w) => sessions::touch(&mut w, &hash, now, now + lifetime).await,
                Err(e) => Err(e),
            };
            if let Err(e) = touched {
                tracing::warn!(error = %e, "could not extend the session; it is extended on a later request");
            }
        }
        Ok(Auth { account, session_hash: hash, ctx })
    }
}

impl FromRequestParts<SharedApp> for AdminAuth {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, app).await?;
        if auth.account.role != Role::Admin {
            return Err(AuthRejection::Error(AppError::Forbidden));
        }
        Ok(AdminAuth(auth))
    }
}

/// Start a session for `account`; returns the Set-Cookie header value.
pub async fn start(app: &SharedApp, account: &Account) -> Result<axum::http::HeaderValue, AppError> {
    let token = random_token(32);
    let now = app.now();
    let lifetime = app.config.http.session_days as i64 * DAY_MS;
    let mut c = app.store.conn().await?;
    sessions::create(&mut c, &sha256_hex(&token), account.id, now, now + lifetime).await?;
    Ok(set_cookie(app, SESSION_COOKIE, &token, Some(lifetime / 1000)))
}

/// End the current session; returns the Set-Cookie header that clears the cookie.
pub async fn end(app: &SharedApp, session_hash: &str) -> Result<axum::http::HeaderValue, AppError> {
    let mut c = app.store.conn().await?;
    sessions::delete(&mut c, session_hash).await?;
    Ok(set_cookie(app, SESSION_COOKIE, "", Some(0)))
}

pub fn with_cookie(mut resp: Response, cookie: axum::http::HeaderValue) -> Response {
    resp.headers_mut().append(SET_COOKIE, cookie);
    resp
}
