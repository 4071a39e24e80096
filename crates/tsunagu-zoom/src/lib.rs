//! Zoom for Tsunagu: the REST client ([`client`]) with Server-to-Server and OAuth-app tokens
//! ([`auth`], [`oauth`]), typed calls ([`model`]), which scopes the manual's app must have
//! ([`scopes`]), how the organizer's Zoom設定 screen maps to Zoom's fields ([`settings`]), what
//! Zoom's error answers mean and whether to retry ([`error`]), rate limits by plan and label
//! ([`limits`]), and webhook verification ([`webhook`]). Facts and sources:
//! `../shared/specs/zoom/NOTES.md`.

pub mod auth;
pub mod client;
pub mod error;
pub mod limits;
pub mod model;
pub mod oauth;
pub mod scopes;
pub mod settings;
pub mod webhook;

pub use client::{Auth, ClientConfig, Organizer, Registration, ZoomClient};
pub use error::{Retry, ZoomError};
