//! Payments through the organizer's own Stripe account (migration 0013): the connection made in
//! 基本設定 > 決済（Stripe）, and the webhook events received.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

/// The connection as the settings screen shows it. The key and the signing secret are sealed
/// apart, in `encrypted_secrets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeConnection {
    /// `test` or `live`.
    pub mode: String,
    /// `sk_test_…abcd`.
    pub key_hint: String,
    pub restricted: bool,
    pub stripe_account_id: String,
    pub endpoint_id: String,
    pub endpoint_url: String,
    /// Active payment methods (`card`, `konbini`); empty when the key may not read the account.
    pub methods: Vec<String>,
    pub updated_at: i64,
}

pub async fn put_connection(c: &mut AnyConnection, account: AccountId, s: &StripeConnection) -> Result<()> {
    sqlx::query(
        "INSERT INTO stripe_connections (account_id, mode, key_hint, restricted, stripe_account_id, endpoint_id, endpoint_url, methods, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (account_id) DO UPDATE SET mode = $2, key_hint = $3, restricted = $4, stripe_account_id = $5,
             endpoint_id = $6, endpoint_url = $7, methods = $8, updated_at = $9",
    )
    .bind(account.0)
    .bind(&s.mode)
    .bind(&s.key_hint)
    .bind(i64::from(s.restricted))
    .bind(&s.stripe_account_id)
    .bind(&s.endpoint_id)
    .bind(&s.endpoint_url)
    .bind(s.methods.join(","))
    .bind(s.updated_at)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get_connection(c: &mut AnyConnection, account: AccountId) -> Result<Option<StripeConnection>> {
    let row = sqlx::query(
        "SELECT mode, key_hint, restricted, stripe_account_id, endpoint_id, endpoint_url, methods, updated_at
         FROM stripe_connections WHERE account_id = $1",
    )
    .bind(account.0)
    .fetch_optional(c)
    .await?;
    Ok(row.map(|r| {
        let methods: String = r.get(6);
        StripeConnection {
            mode: r.get(0),
            key_hint: r.get(1),
            restricted: r.get::<i64, _>(2) != 0,
            stripe_account_id: r.get(3),
            endpoint_id: r.get(4),
            endpoint_url: r.get(5),
            methods: methods.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect(),
            updated_at: r.get(7),
        }
    }))
}

pub async fn delete_connection(c: &mut AnyConnection, account: AccountId) -> Result<()> {
    sqlx::query("DELETE FROM stripe_connections WHERE account_id = $1").bind(account.0).execute(c).await?;
    Ok(())
}

/// A webhook event as received, after its signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub object_id: &'a str,
    pub livemode: bool,
    pub created: i64,
    pub body: &'a str,
    pub received_at: i64,
}

/// Store an event once: `true` when it is new, `false` when this account already has it (Stripe
/// sends an event again until it gets a 2xx, and sometimes twice anyway).
pub async fn insert_event(c: &mut AnyConnection, account: AccountId, e: &NewEvent<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO stripe_events (account_id, event_id, event_type, object_id, livemode, created, body, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (account_id, event_id) DO NOTHING",
    )
    .bind(account.0)
    .bind(e.event_id)
    .bind(e.event_type)
    .bind(e.object_id)
    .bind(i64::from(e.livemode))
    .bind(e.created)
    .bind(e.body)
    .bind(e.received_at)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An account's stored events as `(event id, type)`, in the order they were received.
pub async fn events(c: &mut AnyConnection, account: AccountId) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT event_id, event_type FROM stripe_events WHERE account_id = $1 ORDER BY id")
        .bind(account.0)
        .fetch_all(c)
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
