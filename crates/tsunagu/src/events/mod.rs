//! Events on Zoom (manual 000): the organizer's events with their tickets, 申込状況サマリー,
//! each event's page, and its public page for participants. Routes, pages and their reading of the forms live here; the data lives in
//! `tsunagu_store::events`.

pub mod applications;
pub mod apply;
pub mod cancel;
pub mod companions;
pub mod console;
pub mod form;
pub mod ics;
pub mod mails;
pub mod moved;
pub mod public;
pub mod register;
pub mod sample;
pub mod templates;
pub mod text;
pub mod zoom;

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
        .route("/events/{id}/zoom", get(zoom::show).post(zoom::save))
        .route("/events/{id}/zoom/start", get(zoom::start))
        .route("/events/{id}/companions", get(companions::show).post(companions::save))
        .route("/events/{id}/applications/{application}/confirm-payment", post(applications::confirm_payment))
        .route("/events/{id}/people/{person}/retry", post(applications::retry))
        .route("/events/{id}/applications.csv", get(applications::csv))
        .route("/events/{id}/applications/{application}/cancel", post(cancel::application))
        .route("/events/{id}/applications/{application}/people/{person}/cancel", post(cancel::person))
        .route("/mail-templates", get(templates::list))
        .route("/mail-templates/{code}", get(templates::edit).post(templates::submit))
        .route("/e/{key}", get(public::page))
        .route("/e/{key}/apply", get(apply::show).post(apply::submit))
        .route("/a/{access}", get(apply::mine))
        .route("/a/{access}/cancel", post(cancel::mine))
}

/// The events feature's jobs.
pub fn job_kinds() -> Vec<crate::jobs::JobKind> {
    use std::time::Duration;
    // A create, a delete and an update, each bounded by the client's own timeouts and retries.
    vec![
        crate::jobs::JobKind::new(zoom::SYNC, Duration::from_secs(300), |app, _worker, job| async move {
            zoom::sync(&app, &job).await
        }),
        // One person: a look-up, an add and an approval at most, each bounded by the client.
        crate::jobs::JobKind::new(register::REGISTER, Duration::from_secs(300), |app, _worker, job| async move {
            register::run(&app, &job).await
        }),
        crate::jobs::JobKind::new(register::RECEIVED, Duration::from_secs(60), |app, _worker, job| async move {
            register::run_received(&app, &job).await
        }),
        crate::jobs::JobKind::new(cancel::UNREGISTER, Duration::from_secs(300), |app, _worker, job| async move {
            cancel::run(&app, &job).await
        }),
        // One transaction of mails for the event's people.
        crate::jobs::JobKind::new(moved::MOVED, Duration::from_secs(300), |app, _worker, job| async move {
            moved::run(&app, &job).await
        }),
    ]
}
