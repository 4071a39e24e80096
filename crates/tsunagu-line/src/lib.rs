//! LINE for Tsunagu: the Messaging API client ([`client`]: channel access tokens,
//! reply/push/multicast with retry keys, quota, bot info, profiles, webhook endpoint), message
//! objects validated against LINE's documented limits ([`message`]), webhook signatures
//! ([`signature`]), webhook bodies ([`webhook`]) and LINE Login v2.1 ([`login`]: authorize URL
//! with PKCE and `bot_prompt`, code exchange, ID token verification, friendship status).
//! Facts and sources: `../shared/specs/line/NOTES.md`.

pub mod client;
pub mod error;
pub mod login;
pub mod message;
pub mod signature;
pub mod webhook;

pub use client::{Channel, LineClient, LineConfig, RetryKey, Sent};
pub use error::LineError;
