//! Server-to-Server OAuth tokens (NOTES §1.1): `POST {oauth_base}/oauth/token` with
//! `grant_type=account_credentials&account_id=…` and Basic auth. One token is cached per
//! organizer and renewed a minute before it expires; when many tasks need a token at the same
//! moment, one request is made and the others wait for it. The granted scopes are read from
//! the answer (a token keeps the scopes it was minted with).
//!
//! A cached token is only used for the credentials it was minted with: callers pass the
//! credentials as they read them from the database for each unit of work, so credentials saved
//! through any instance take effect on every instance at its next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ZoomError, classify};

/// Renew this long before expiry (Zoom's own SDK uses 60 s).
pub const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The three values of the manual's 基本設定 (the secret never appears in `Debug`).
#[derive(Clone)]
pub struct S2sCredentials {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for S2sCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sCredentials")
            .field("account_id", &self.account_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

#[derive(Clone)]
pub struct AccessToken {
    pub value: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("scopes", &self.scopes).field("expires_at", &self.expires_at).finish()
    }
}

impl AccessToken {
    fn fresh(&self, now: Instant) -> bool {
        now + RENEW_BEFORE < self.expires_at
    }

    /// The granted scopes as Zoom sends them, for [`crate::scopes::missing`].
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// A reqwest client that can talk to the real Zoom over TLS (rustls with the ring provider,
/// the one the rest of the workspace already uses) and to the sandbox over plain HTTP.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    // Installing twice is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("a TLS provider is installed")
}

impl S2sCredentials {
    /// Which credentials minted a token, without keeping another copy of the secret.
    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [&self.account_id, &self.client_id, &self.client_secret] {
            // Length-prefixed, so that moving characters between fields changes the digest.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }
}

/// A cached token and the fingerprint of the credentials that minted it.
type Slot = Arc<tokio::sync::Mutex<Option<([u8; 32], AccessToken)>>>;

/// Tokens per organizer (keyed by the caller, e.g. the Tsunagu account id).
pub struct TokenCache {
    http: reqwest::Client,
    oauth_base: String,
    slots: Mutex<HashMap<String, Slot>>,
}

impl TokenCache {
    pub fn new(http: reqwest::Client, oauth_base_url: &str) -> TokenCache {
        TokenCache { http, oauth_base: oauth_base_url.trim_end_matches('/').to_string(), slots: Mutex::default() }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().expect("token cache lock");
        slots.entry(key.to_string()).or_default().clone()
    }

    /// A token of these credentials that is valid for at least another minute. A token cached
    /// for other credentials (the organizer saved new ones) is never handed out.
    pub async fn token(&self, key: &str, creds: &S2sCredentials) -> Result<AccessToken, ZoomError> {
        let fingerprint = creds.fingerprint();
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        if let Some((_, t)) = held.as_ref().filter(|(f, t)| *f == fingerprint && t.fresh(Instant::now())) {
            return Ok(t.clone());
        }
        let t = self.fetch(creds).await?;
        *held = Some((fingerprint, t.clone()));
        Ok(t)
    }

    /// Drop the token Zoom refused (124) so the next call mints a new one; a token another task
    /// minted in the meantime is kept.
    pub async fn invalidate(&self, key: &str, refused: &str) {
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        if held.as_ref().is_some_and(|(_, t)| t.value == refused) {
            *held = None;
        }
    }

    async fn fetch(&self, creds: &S2sCredentials) -> Result<AccessToken, ZoomError> {
        let sent = Instant::now();
        // Zoom documents the parameters in the query string and its SDK sends a form body:
        // both are sent, so either reading works (nothing secret is in them).
        let params = [("grant_type", "account_credentials"), ("account_id", creds.account_id.as_str())];
        let t = post_token(&self.http, &self.oauth_base, (&creds.client_id, &creds.client_secret), &params, &params)
            .await?;
        Ok(AccessToken {
            value: t.access_token,
            scopes: t.scope.split_whitespace().map(str::to_string).collect(),
            expires_at: sent + Duration::from_secs(t.expires_in),
        })
    }
}

/// Zoom's token answer (S2S and OAuth apps; only OAuth apps get a refresh token).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// `POST {oauth_base}/oauth/token` with Basic auth and a form body; Zoom's error answers are
/// classified like any other.
pub(crate) async fn post_token(
    http: &reqwest::Client,
    oauth_base: &str,
    (client_id, client_secret): (&str, &str),
    query: &[(&str, &str)],
    form: &[(&str, &str)],
) -> Result<TokenResponse, ZoomError> {
    let resp = http
        .post(format!("{oauth_base}/oauth/token"))
        .basic_auth(client_id, Some(client_secret))
        .query(query)
        .form(form)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = resp.status().as_u16();
    let headers = header_pairs(resp.headers());
    let body = resp.text().await.map_err(|e| transport_error(&e))?;
    if !(200..300).contains(&status) {
        return Err(classify(status, &headers, &body));
    }
    serde_json::from_str(&body).map_err(|e| ZoomError::Other {
        status,
        code: None,
        message: format!("unreadable token answer: {e}"),
    })
}

pub(crate) fn transport_error(e: &reqwest::Error) -> ZoomError {
    if e.is_timeout() { ZoomError::Timeout } else { ZoomError::Server { status: 0 } }
}

pub(crate) fn header_pairs(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string()))).collect()
}
