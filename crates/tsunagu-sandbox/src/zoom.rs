//! The Zoom sandbox. So far: `POST /oauth/token` with `grant_type=account_credentials`
//! (NOTES §1.1–1.2): Basic auth with the app's Client ID and Secret, the account ID as a query
//! or form parameter, tokens that expire, the app's scopes in the answer, and Zoom's error
//! shapes for bad credentials and grant types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

/// A Server-to-Server OAuth app registered in the sandbox.
#[derive(Debug, Clone)]
pub struct S2sApp {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Issued {
    account_id: String,
    scopes: Vec<String>,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    apps: Vec<S2sApp>,
    tokens: HashMap<String, Issued>,
    token_requests: u64,
    ttl: Option<Duration>,
    counter: u64,
}

/// Shared handle: tests configure it and read what happened.
#[derive(Clone, Default)]
pub struct ZoomSandbox {
    inner: Arc<Mutex<Inner>>,
}

impl ZoomSandbox {
    pub fn new() -> ZoomSandbox {
        ZoomSandbox::default()
    }

    pub fn add_app(&self, app: S2sApp) {
        self.inner.lock().expect("sandbox lock").apps.push(app);
    }

    /// Token lifetime (Zoom: one hour).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.inner.lock().expect("sandbox lock").ttl = Some(ttl);
    }

    /// Change an app's scopes; like Zoom, only tokens minted afterwards carry them.
    pub fn set_scopes(&self, client_id: &str, scopes: Vec<String>) {
        let mut g = self.inner.lock().expect("sandbox lock");
        if let Some(app) = g.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.scopes = scopes;
        }
    }

    pub fn token_requests(&self) -> u64 {
        self.inner.lock().expect("sandbox lock").token_requests
    }

    /// The scopes of a live token, or `None` when it is unknown or expired (for API routes).
    pub fn token_scopes(&self, access_token: &str) -> Option<(String, Vec<String>)> {
        let g = self.inner.lock().expect("sandbox lock");
        g.tokens
            .get(access_token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| (t.account_id.clone(), t.scopes.clone()))
    }

    pub fn router(&self) -> Router {
        Router::new().route("/oauth/token", post(token)).with_state(self.clone())
    }
}

#[derive(Deserialize, Default)]
struct TokenParams {
    grant_type: Option<String>,
    account_id: Option<String>,
}

fn oauth_error(status: StatusCode, reason: &str, error: &str) -> Response {
    (status, axum::Json(json!({"reason": reason, "error": error}))).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(
    State(sb): State<ZoomSandbox>,
    Query(query): Query<TokenParams>,
    headers: HeaderMap,
    body: String,
) -> Response {
    // Zoom documents the parameters in the query; its SDK sends them as a form body.
    let form: TokenParams = serde_urlencoded::from_str(&body).unwrap_or_default();
    let grant = query.grant_type.or(form.grant_type);
    let account = query.account_id.or(form.account_id);
    let mut g = sb.inner.lock().expect("sandbox lock");
    g.token_requests += 1;
    let Some((client_id, secret)) = basic_credentials(&headers) else {
        return oauth_error(StatusCode::BAD_REQUEST, "Invalid client_id or client_secret", "invalid_client");
    };
    let Some(app) = g.apps.iter().find(|a| a.client_id == client_id && a.client_secret == secret).cloned() else {
        return oauth_error(StatusCode::BAD_REQUEST, "Invalid client_id or client_secret", "invalid_client");
    };
    if grant.as_deref() != Some("account_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported grant type", "unsupported_grant_type");
    }
    if account.as_deref() != Some(app.account_id.as_str()) {
        return oauth_error(StatusCode::BAD_REQUEST, "Invalid account_id", "invalid_request");
    }
    g.counter += 1;
    let access_token = format!("sbx-zoom-{}-{}", g.counter, std::process::id());
    let ttl = g.ttl.unwrap_or(Duration::from_secs(3600));
    g.tokens.insert(
        access_token.clone(),
        Issued { account_id: app.account_id.clone(), scopes: app.scopes.clone(), expires: Instant::now() + ttl },
    );
    axum::Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
        "scope": app.scopes.join(" "),
        "api_url": "https://api.zoom.us"
    }))
    .into_response()
}
