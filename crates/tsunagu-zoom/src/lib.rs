//! Zoom for Tsunagu. This crate will hold the REST client (issue 3); so far it holds the parts
//! that need no network: which scopes the manual's app must have ([`scopes`]), how the
//! organizer's Zoom設定 screen maps to Zoom's fields ([`settings`]), what Zoom's error answers
//! mean and whether to retry ([`error`]), rate limits by plan and label ([`limits`]), and webhook
//! verification ([`webhook`]). Facts and sources: `../shared/specs/zoom/NOTES.md`.

pub mod auth;
pub mod error;
pub mod limits;
pub mod scopes;
pub mod settings;
pub mod webhook;
