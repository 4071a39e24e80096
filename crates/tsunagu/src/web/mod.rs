//! The web layer: server-rendered console (askama), health and metrics.

pub mod admin;
pub mod auth;
pub mod chrome;
pub mod console;
pub mod context;
pub mod error;
pub mod media;
pub mod ops;
pub mod session;
pub mod settings;
pub mod zoom_oauth;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::SharedApp;

pub fn router(app: SharedApp) -> Router {
    Router::new()
        .route("/", get(auth::root))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/signup", get(auth::signup_form).post(auth::signup))
        .route("/logout", post(auth::logout))
        .route("/home", get(console::home))
        .route("/events", get(console::events))
        .route("/settings/basic", get(settings::show).post(settings::save))
        .route("/settings/zoom/connect", post(zoom_oauth::start))
        .route(crate::zoom::OAUTH_CALLBACK_PATH, get(zoom_oauth::callback))
        .route("/line/webhook/{channel_id}", post(crate::line::webhook::receive))
        .route("/media/{name}", get(crate::media::store::serve).head(crate::media::store::serve))
        .route("/mail-templates", get(console::mail_templates))
        .route("/courses", get(console::courses))
        .route("/settings/line", get(console::line_link))
        .route("/mails", get(console::mails_list))
        .route("/mails/{id}", get(console::mail_detail))
        .route("/account/password", get(auth::password_form).post(auth::change_password))
        .route("/admin/accounts", get(admin::accounts_list))
        .route("/admin/accounts/{id}/plan", post(admin::set_plan))
        .route("/admin/jobs", get(admin::failed_jobs))
        .route("/admin/jobs/{id}/retry", post(admin::retry_job))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/assets/style.css", get(ops::style))
        .route("/assets/media.js", get(ops::media_script))
        .route("/courses/media", get(media::page))
        .route("/courses/media/upload", put(media::upload).layer(DefaultBodyLimit::disable()))
        .route("/courses/media/{id}/delete", post(media::delete))
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
