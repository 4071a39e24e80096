//! Zoom OAuth apps (authorization code with refresh-token rotation). Zoom's developer support
//! says a service should not collect its customers' Server-to-Server secrets (NOTES §1.3), so an
//! organizer may instead authorize Tsunagu's OAuth app: the browser goes to
//! [`authorize_url`], Zoom redirects back with a code, [`exchange_code`] turns it into tokens,
//! and [`refresh`] renews them. Every refresh returns a new refresh token and the old one stops
//! working, so renewing is a read-modify-write of the stored pair: the client does it under the
//! [`TokenStore`]'s lock, which every instance sharing the database respects.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::auth::post_token;
use crate::error::ZoomError;

/// Tsunagu's own Marketplace OAuth app (one per installation).
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// An organizer's tokens, as stored (encrypted) by the app.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OAuthTokens {
    /// Valid for at least another [`crate::auth::RENEW_BEFORE`].
    pub fn fresh(&self, now_ms: i64) -> bool {
        now_ms + (crate::auth::RENEW_BEFORE.as_millis() as i64) < self.expires_at_ms
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where organizers' OAuth tokens are kept, shared by every instance (the app seals them into
/// its database). Renewing spends the stored refresh token, so two instances must never renew
/// from the same stored pair: the client renews only while holding [`TokenStore::lock`].
pub trait TokenStore: Send + Sync {
    /// Lock the organizer's stored tokens against every other `lock` of the same key (in any
    /// process) until the guard is saved or dropped, and read them.
    fn lock(&self, key: String) -> BoxFuture<Result<Box<dyn LockedTokens>, String>>;
}

/// An organizer's stored tokens, held under the store's lock.
pub trait LockedTokens: Send {
    /// As stored when the lock was taken; `None` when the organizer has none (disconnected).
    fn tokens(&self) -> Option<&OAuthTokens>;
    /// Store `tokens` in place of the locked pair and release the lock. Dropping the guard
    /// instead releases it with nothing changed.
    fn save(self: Box<Self>, tokens: OAuthTokens) -> BoxFuture<Result<(), String>>;
}

/// Where the organizer's browser is sent to authorize the app.
pub fn authorize_url(oauth_base: &str, app: &OAuthApp, state: &str) -> String {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", app.client_id.as_str()),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("state", state),
    ])
    .expect("strings always encode");
    format!("{}/oauth/authorize?{query}", oauth_base.trim_end_matches('/'))
}

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

async fn grant(
    http: &reqwest::Client,
    oauth_base: &str,
    app: &OAuthApp,
    form: &[(&str, &str)],
) -> Result<OAuthTokens, ZoomError> {
    let sent = now_ms();
    // The grant type also in the query (as Zoom documents it); codes and refresh tokens only in
    // the body, where proxies do not log them.
    let query: Vec<(&str, &str)> = form.iter().filter(|(k, _)| *k == "grant_type").copied().collect();
    let t =
        post_token(http, oauth_base.trim_end_matches('/'), (&app.client_id, &app.client_secret), &query, form).await;
    let t = match t {
        Ok(t) => t,
        // A code or refresh token that is used, expired or revoked: the organizer has to
        // connect again. Wrong app credentials stay an operator's problem.
        Err(ZoomError::Other { status: 400 | 401, .. }) => return Err(ZoomError::ReconnectNeeded),
        Err(e) => return Err(e),
    };
    let refresh_token = t.refresh_token.ok_or_else(|| ZoomError::Other {
        status: 200,
        code: None,
        message: "token answer without refresh_token".into(),
    })?;
    Ok(OAuthTokens {
        access_token: t.access_token,
        refresh_token,
        expires_at_ms: sent + (t.expires_in as i64) * 1000,
        scopes: t.scope.split_whitespace().map(str::to_string).collect(),
    })
}

/// The callback's `code` → tokens.
pub async fn exchange_code(
    http: &reqwest::Client,
    oauth_base: &str,
    app: &OAuthApp,
    code: &str,
) -> Result<OAuthTokens, ZoomError> {
    grant(
        http,
        oauth_base,
        app,
        &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", app.redirect_uri.as_str())],
    )
    .await
}

/// A new token pair; the old refresh token is dead once this returns.
pub async fn refresh(
    http: &reqwest::Client,
    oauth_base: &str,
    app: &OAuthApp,
    refresh_token: &str,
) -> Result<OAuthTokens, ZoomError> {
    grant(http, oauth_base, app, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_is_encoded_and_secrets_are_hidden() {
        let app = OAuthApp {
            client_id: "cid".into(),
            client_secret: "very-secret".into(),
            redirect_uri: "https://t.example/zoom/callback?x=1".into(),
        };
        let url = authorize_url("https://zoom.us/", &app, "s t");
        assert_eq!(
            url,
            "https://zoom.us/oauth/authorize?response_type=code&client_id=cid&redirect_uri=https%3A%2F%2Ft.example%2Fzoom%2Fcallback%3Fx%3D1&state=s+t"
        );
        assert!(!format!("{app:?}").contains("very-secret"));
        let t = OAuthTokens {
            access_token: "at-secret".into(),
            refresh_token: "rt-secret".into(),
            expires_at_ms: 10_000_000,
            scopes: vec![],
        };
        assert!(!format!("{t:?}").contains("secret"));
        assert!(t.fresh(10_000_000 - 61_000) && !t.fresh(10_000_000 - 59_000));
    }
}
