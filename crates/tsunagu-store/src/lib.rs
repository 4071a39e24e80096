//! The `Store`: Tsunagu's data over SQLite or PostgreSQL (sqlx `Any`), chosen by the
//! database URL's scheme. SQL is written once in the subset both engines share
//! (`$N` placeholders, BIGINT milliseconds for instants, TEXT for enums); the few
//! statements that must differ branch on [`Backend`].
//!
//! Functions take `&mut AnyConnection`, so the same call works on a pooled connection
//! ([`Store::conn`]) or inside a transaction ([`Store::begin`]); that is how a request
//! writes its state and enqueues its jobs atomically. Functions about an account's own
//! data take the [`AccountId`] as a required argument and always filter by it: there is
//! no way to fetch another account's row through them.

pub mod accounts;
pub mod applications;
pub mod courses;
mod db;
pub mod diagnostics;
pub mod events;
pub mod jobs;
pub mod line;
pub mod mail_templates;
pub mod mails;
pub mod media;
mod migrate;
pub mod rate;
pub mod schema;
pub mod secrets;
pub mod sessions;
pub mod stripe;
pub mod students;
pub mod testing;
pub mod throttle;

pub use db::{Backend, Conn, Store, StoreOptions, Tx, redact_url};
pub use sqlx::AnyConnection;
pub use tsunagu_core::AccountId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unique constraint violated: {0}")]
    Conflict(&'static str),
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("migration {version} failed: {source}")]
    Migration { version: i64, source: sqlx::Error },
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Map a unique violation to `Conflict(what)`, leaving other errors as they are.
pub(crate) fn conflict(err: sqlx::Error, what: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        return StoreError::Conflict(what);
    }
    StoreError::Db(err)
}
