//! Events on Zoom (manual 000): the organizer's events with their tickets, 申込状況サマリー,
//! each event's page, and its public page for participants. Routes, pages and their reading of the forms live here; the data lives in
//! `tsunagu_store::events`.

pub mod console;
pub mod form;
pub mod public;
pub mod text;

/// The console's event pages.
pub fn routes() -> axum::Router<crate::app::SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/events", get(console::summary))
        .route("/events/new", get(console::new_form).post(console::create))
        .route("/events/{id}", get(console::show))
        .route("/events/{id}/edit", get(console::edit_form).post(console::update))
        .route("/events/{id}/copy", post(console::copy))
        .route("/events/{id}/delete", post(console::delete))
        .route("/e/{key}", get(public::page))
}
