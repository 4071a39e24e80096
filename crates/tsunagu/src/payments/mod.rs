//! Payments through each organizer's own Stripe account (issue 14, ARCHITECTURE "Payments").
//! 基本設定 > 決済（Stripe） ([`settings`]), where a pasted key is checked and Tsunagu creates its
//! webhook endpoint at Stripe; the webhook intake ([`webhook`]), which checks each delivery's
//! signature and stores each event once before answering 200; checkout and the one fulfilment
//! function ([`checkout`]); the participant's way to Stripe and back ([`pay`]).

pub mod check;
pub mod checkout;
pub mod legal;
pub mod pay;
pub mod receipt;
pub mod reconcile;
pub mod refund;
pub mod settings;
pub mod webhook;

use tsunagu_core::AccountId;
use tsunagu_store::Store;
use tsunagu_stripe::client::Caller;
use tsunagu_stripe::{ApiKey, ClientConfig, StripeClient};

use crate::app::{App, SharedApp};
use crate::config::Config;

/// `encrypted_secrets` purposes: the organizer's key, and the endpoint's signing secret.
pub const STRIPE_SECRET_KEY: &str = "stripe.secret_key";
pub const STRIPE_WEBHOOK_SECRET: &str = "stripe.webhook_secret";

/// The Stripe client of this process. Its rate budget is kept in the database on PostgreSQL,
/// so that several `serve` processes together stay under an organizer's limit.
pub fn client(config: &Config, store: &Store) -> StripeClient {
    let mut cfg = ClientConfig::new(&config.stripe.api_base_url);
    cfg.timeout = std::time::Duration::from_secs(config.stripe.timeout_seconds.max(1));
    let client = StripeClient::new(cfg);
    match crate::limits::rate_budget(store) {
        Some(rate) => client.with_rate_budget(rate),
        None => client,
    }
}

/// The budget name of an organizer's Stripe account.
pub fn owner(account: AccountId) -> String {
    account.0.to_string()
}

/// The organizer's key, unsealed, as a caller; `None` when they have not connected Stripe.
pub async fn caller(app: &App, account: AccountId) -> anyhow::Result<Option<Caller>> {
    let Some(plain) = app.open_secret(account, STRIPE_SECRET_KEY).await? else { return Ok(None) };
    let key = ApiKey::parse(&plain).map_err(|e| anyhow::anyhow!("stored stripe key is malformed: {e}"))?;
    Ok(Some(Caller { key, owner: owner(account) }))
}

/// The Content-Security-Policy of a page whose form leads to Stripe's checkout page: like every
/// page's, but its forms may also go to Stripe (Chromium applies `form-action` to the redirect
/// that follows a submission). Stripe's hosted checkout, and the origin of `stripe.api_base_url`
/// when that is not Stripe's own (the sandbox).
pub fn checkout_csp(config: &Config) -> axum::http::HeaderValue {
    let base = config.stripe.api_base_url.trim_end_matches('/');
    let origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
    let mut allowed = String::from("'self' https://checkout.stripe.com");
    if origin != "https://api.stripe.com" && !origin.contains(' ') && !origin.contains(';') {
        allowed.push(' ');
        allowed.push_str(&origin);
    }
    let policy = format!(
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; form-action {allowed}; frame-ancestors 'none'"
    );
    axum::http::HeaderValue::from_str(&policy).unwrap_or(axum::http::HeaderValue::from_static(
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    ))
}

/// Where Stripe posts an organizer's events.
pub fn webhook_url(config: &Config, account: AccountId) -> String {
    format!("{}/stripe/webhook/{}", config.http.public_url.trim_end_matches('/'), account.0)
}

pub fn routes() -> axum::Router<SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/settings/payments", get(settings::show).post(settings::save))
        .route("/stripe/webhook/{account_key}", post(webhook::receive))
        .route("/a/{access}/pay", post(pay::pay))
        .route("/a/{access}/paid", get(pay::returned))
        .route("/a/{access}/receipt", get(receipt::show))
        .route("/settings/legal", get(legal::show).post(legal::save))
        .route("/e/{key}/legal", get(legal::public))
}

/// The payments feature's jobs.
pub fn job_kinds() -> Vec<crate::jobs::JobKind> {
    use std::time::Duration;
    // Up to 50 events a round, each a read or two at Stripe bounded by the client's timeouts.
    vec![
        crate::jobs::JobKind::new(checkout::EVENTS_JOB, Duration::from_secs(600), |app, _worker, job| async move {
            checkout::run_events(&app, &job).await
        }),
        // One refund or one session closed: a POST bounded by the client's timeouts and retries.
        crate::jobs::JobKind::new(refund::REFUND_JOB, Duration::from_secs(300), |app, _worker, job| async move {
            refund::run_refund(&app, &job).await
        }),
        crate::jobs::JobKind::new(refund::EXPIRE_JOB, Duration::from_secs(300), |app, _worker, job| async move {
            refund::run_expire(&app, &job).await
        }),
        crate::jobs::JobKind::new(reconcile::RECONCILE, Duration::from_secs(1800), |app, worker, job| async move {
            reconcile::run(&app, &worker, &job).await
        })
        .recurring(Duration::from_millis(reconcile::EVERY_MS as u64)),
    ]
}
