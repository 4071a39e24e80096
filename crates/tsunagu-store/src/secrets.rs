//! Sealed upstream credentials (Zoom client secrets, later LINE channel secrets and tokens).
//! The store only ever sees ciphertext: sealing and opening happen in the app, under the
//! master key named by `key_id`. Zoom's non-secret identifiers live beside them.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::{Backend, Result};

#[derive(Debug, Clone)]
pub struct SealedSecret {
    pub id: i64,
    pub account_id: AccountId,
    pub purpose: String,
    pub key_id: String,
    pub sealed: String,
}

pub async fn put(
    c: &mut AnyConnection,
    account: AccountId,
    purpose: &str,
    key_id: &str,
    sealed: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO encrypted_secrets (account_id, purpose, key_id, sealed, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id, purpose) DO UPDATE SET key_id = $3, sealed = $4, updated_at = $5",
    )
    .bind(account.0)
    .bind(purpose)
    .bind(key_id)
    .bind(sealed)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get(c: &mut AnyConnection, account: AccountId, purpose: &str) -> Result<Option<SealedSecret>> {
    let row = sqlx::query(
        "SELECT id, account_id, purpose, key_id, sealed FROM encrypted_secrets WHERE account_id = $1 AND purpose = $2",
    )
    .bind(account.0)
    .bind(purpose)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| SealedSecret {
        id: r.get(0),
        account_id: AccountId(r.get(1)),
        purpose: r.get(2),
        key_id: r.get(3),
        sealed: r.get(4),
    }))
}

/// [`get`] that also locks the row until the caller's transaction ends, so that a
/// read-modify-write of the secret (a rotating OAuth refresh token) runs in one process at a
/// time. Call it inside [`crate::Store::begin`]: on PostgreSQL it is `SELECT … FOR UPDATE`
/// (other lockers of the row wait); on SQLite that transaction already holds the database's
/// write lock (`BEGIN IMMEDIATE`), which every other writer waits for.
pub async fn get_for_update(
    c: &mut AnyConnection,
    backend: Backend,
    account: AccountId,
    purpose: &str,
) -> Result<Option<SealedSecret>> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT id, account_id, purpose, key_id, sealed FROM encrypted_secrets WHERE account_id = $1 AND purpose = $2 FOR UPDATE"
        }
        Backend::Sqlite => {
            "SELECT id, account_id, purpose, key_id, sealed FROM encrypted_secrets WHERE account_id = $1 AND purpose = $2"
        }
    };
    let row = sqlx::query(sql).bind(account.0).bind(purpose).fetch_optional(c).await?;
    Ok(row.map(|r| SealedSecret {
        id: r.get(0),
        account_id: AccountId(r.get(1)),
        purpose: r.get(2),
        key_id: r.get(3),
        sealed: r.get(4),
    }))
}

/// Every sealed secret of every account, for key rotation only.
pub async fn all_for_rotation(c: &mut AnyConnection) -> Result<Vec<SealedSecret>> {
    let rows = sqlx::query("SELECT id, account_id, purpose, key_id, sealed FROM encrypted_secrets ORDER BY id")
        .fetch_all(c)
        .await?;
    Ok(rows
        .iter()
        .map(|r| SealedSecret {
            id: r.get(0),
            account_id: AccountId(r.get(1)),
            purpose: r.get(2),
            key_id: r.get(3),
            sealed: r.get(4),
        })
        .collect())
}

/// How many sealed secrets use a key other than `key_id` (rotation must not drop a key in use).
pub async fn count_not_under(c: &mut AnyConnection, key_id: &str) -> Result<i64> {
    let row =
        sqlx::query("SELECT COUNT(*) FROM encrypted_secrets WHERE key_id <> $1").bind(key_id).fetch_one(c).await?;
    Ok(row.get(0))
}

pub async fn reseal(c: &mut AnyConnection, id: i64, key_id: &str, sealed: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE encrypted_secrets SET key_id = $1, sealed = $2, updated_at = $3 WHERE id = $4")
        .bind(key_id)
        .bind(sealed)
        .bind(now)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoomCredentials {
    pub auth_method: String,
    pub zoom_account_id: String,
    pub client_id: String,
    pub updated_at: i64,
}

pub async fn put_zoom(c: &mut AnyConnection, account: AccountId, z: &ZoomCredentials) -> Result<()> {
    sqlx::query(
        "INSERT INTO zoom_credentials (account_id, auth_method, zoom_account_id, client_id, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account_id) DO UPDATE SET auth_method = $2, zoom_account_id = $3, client_id = $4, updated_at = $5",
    )
    .bind(account.0)
    .bind(&z.auth_method)
    .bind(&z.zoom_account_id)
    .bind(&z.client_id)
    .bind(z.updated_at)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get_zoom(c: &mut AnyConnection, account: AccountId) -> Result<Option<ZoomCredentials>> {
    let row = sqlx::query(
        "SELECT auth_method, zoom_account_id, client_id, updated_at FROM zoom_credentials WHERE account_id = $1",
    )
    .bind(account.0)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| ZoomCredentials {
        auth_method: r.get(0),
        zoom_account_id: r.get(1),
        client_id: r.get(2),
        updated_at: r.get(3),
    }))
}

/// Remove the account's secret sealed for `purpose` (nothing when there is none).
pub async fn delete(c: &mut AnyConnection, account: AccountId, purpose: &str) -> Result<()> {
    sqlx::query("DELETE FROM encrypted_secrets WHERE account_id = $1 AND purpose = $2")
        .bind(account.0)
        .bind(purpose)
        .execute(c)
        .await?;
    Ok(())
}
