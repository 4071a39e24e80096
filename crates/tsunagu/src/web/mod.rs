//! What every page shares: the router's frame (request context, CSRF, operation ids, error
//! pages, panics answered as errors), sessions, the console's chrome, health and metrics.
//! Features hand in their own routes at startup (`crate::features::routes`).

pub mod chrome;
pub mod console;
pub mod context;
pub mod error;
pub mod ops;
pub mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::SharedApp;

/// The whole router: what every page shares around the features' own routes.
pub fn router(app: SharedApp, features: Router<SharedApp>) -> Router {
    Router::new()
        .route("/home", get(console::home))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/assets/style.css", get(ops::style))
        .route("/assets/media.js", get(ops::media_script))
        .route("/assets/upload.js", get(|| async { ops::script(include_str!("../../assets/upload.js")) }))
        .route("/assets/message-media.js", get(|| async { ops::script(include_str!("../../assets/message-media.js")) }))
        .route("/assets/confirm.js", get(ops::confirm_script))
        .route("/assets/copy.js", get(ops::copy_script))
        .route("/assets/zoom-settings.js", get(ops::zoom_settings_script))
        .route("/assets/apply.js", get(ops::apply_script))
        .merge(features)
        .route_layer(middleware::from_fn(context::tag_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
        // A panicking handler answers the usual error page (with its operation id) instead
        // of a dropped connection.
        .layer(CatchPanicLayer::custom(|_| {
            error::AppError::Internal(anyhow::anyhow!("request handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(app.clone(), context::context))
        .with_state(app)
}

async fn not_found() -> error::AppError {
    error::AppError::NotFound
}
