//! Health, readiness, metrics and the embedded static assets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

use crate::app::SharedApp;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<SharedApp>) -> impl IntoResponse {
    match (app.store.ping().await, app.store.is_migrated().await) {
        (Ok(()), Ok(true)) => (StatusCode::OK, "ready"),
        (Ok(()), _) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending"),
        (Err(e), _) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

pub async fn metrics(State(app): State<SharedApp>, headers: axum::http::HeaderMap) -> axum::response::Response {
    let token = &app.config.http.metrics_token;
    if !token.is_empty() {
        let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let expected = format!("Bearer {}", token.expose());
        if !crate::crypto::ct_eq(given, &expected) {
            return (StatusCode::UNAUTHORIZED, "metrics token required").into_response();
        }
    }
    let states = match app.store.read().await {
        Ok(mut c) => tsunagu_store::jobs::counts(&mut c).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render(&states)).into_response()
}

/// A script from `assets/`, cached for an hour.
pub fn script(source: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")], source)
}

pub async fn media_script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/media.js"),
    )
}

/// Asks before a form with `data-confirm` is sent.
pub async fn copy_script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/copy.js"),
    )
}

pub async fn confirm_script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/confirm.js"),
    )
}

pub async fn zoom_settings_script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/zoom-settings.js"),
    )
}

pub async fn apply_script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/apply.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/style.css"),
    )
}
