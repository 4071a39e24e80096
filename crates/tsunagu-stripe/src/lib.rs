//! Stripe for Tsunagu: a thin client over reqwest for the few calls paid tickets need
//! ([`client`]), the form encoding of Stripe's nested parameters ([`form`]), the organizer's key
//! ([`key`]), what Stripe's error answers mean and whether to retry ([`error`]), the objects we
//! read ([`model`]) and webhook signatures ([`webhook`]). Every request pins the API version
//! whose official schema the contract tests cover ([`API_VERSION`]). Facts and sources:
//! `../shared/specs/stripe/NOTES.md`.

pub mod client;
pub mod error;
pub mod form;
pub mod key;
pub mod model;
pub mod webhook;

pub use client::{ClientConfig, StripeClient};
pub use error::StripeError;
pub use form::Form;
pub use key::{ApiKey, Mode};

/// The API version of `spec3.json` (NOTES §0), sent as `Stripe-Version` on every request and
/// given to the webhook endpoint Tsunagu creates, so answers and events have its shapes.
pub const API_VERSION: &str = "2020-08-27";

/// The events Tsunagu's webhook endpoint subscribes to (NOTES §3). Version 2020-08-27 has no
/// `refund.*` events; refunds arrive as `charge.refunded` and `charge.refund.updated`.
pub const EVENTS: [&str; 6] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "charge.refund.updated",
];
