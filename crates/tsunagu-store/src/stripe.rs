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

/// An application paid through Stripe Checkout (migration 0014).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub application_id: i64,
    pub account_id: AccountId,
    pub amount_yen: i64,
    /// `open`, `konbini`, `paid`, `expired`.
    pub state: String,
    pub session_id: Option<String>,
    pub checkout_url: Option<String>,
    pub payment_intent: Option<String>,
    pub method: Option<String>,
    pub konbini_expires_at: Option<i64>,
    pub konbini_voucher_url: Option<String>,
    pub refunded_yen: i64,
}

const ORDER_COLUMNS: &str = "application_id, account_id, amount_yen, state, session_id, checkout_url, payment_intent,
     method, konbini_expires_at, konbini_voucher_url, refunded_yen";

fn order_row(r: &sqlx::any::AnyRow) -> Order {
    Order {
        application_id: r.get(0),
        account_id: AccountId(r.get(1)),
        amount_yen: r.get(2),
        state: r.get(3),
        session_id: r.get(4),
        checkout_url: r.get(5),
        payment_intent: r.get(6),
        method: r.get(7),
        konbini_expires_at: r.get(8),
        konbini_voucher_url: r.get(9),
        refunded_yen: r.get(10),
    }
}

/// The order of a new application, in the transaction that stores it.
pub async fn create_order(
    c: &mut AnyConnection,
    application_id: i64,
    account: AccountId,
    amount_yen: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO stripe_orders (application_id, account_id, amount_yen, state, created_at, updated_at)
         VALUES ($1, $2, $3, 'open', $4, $4)",
    )
    .bind(application_id)
    .bind(account.0)
    .bind(amount_yen)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn order(c: &mut AnyConnection, application_id: i64) -> Result<Option<Order>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM stripe_orders WHERE application_id = $1");
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(application_id).fetch_optional(c).await?;
    Ok(r.as_ref().map(order_row))
}

/// The order, its row locked until the caller's transaction ends (PostgreSQL: a row lock every
/// process respects; SQLite: the transaction already holds the one writer): the one place where
/// an order changes state.
pub async fn lock_order(c: &mut AnyConnection, account: AccountId, application_id: i64) -> Result<Option<Order>> {
    let sql = format!(
        "UPDATE stripe_orders SET updated_at = updated_at WHERE application_id = $1 AND account_id = $2
         RETURNING {ORDER_COLUMNS}"
    );
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(application_id).bind(account.0).fetch_optional(c).await?;
    Ok(r.as_ref().map(order_row))
}

/// The checkout session made for an order (its id is kept once set: a session made again with
/// the same idempotency key is the same session).
pub async fn set_checkout(
    c: &mut AnyConnection,
    application_id: i64,
    session_id: &str,
    url: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE stripe_orders SET session_id = COALESCE(session_id, $2), checkout_url = $3, updated_at = $4
         WHERE application_id = $1",
    )
    .bind(application_id)
    .bind(session_id)
    .bind(url)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// A change of an order's state, decided under [`lock_order`].
#[derive(Debug, Clone, Default)]
pub struct OrderChange<'a> {
    pub state: &'a str,
    pub payment_intent: Option<&'a str>,
    pub method: Option<&'a str>,
    pub konbini_expires_at: Option<i64>,
    pub konbini_voucher_url: Option<&'a str>,
}

pub async fn set_order(c: &mut AnyConnection, application_id: i64, ch: &OrderChange<'_>, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE stripe_orders SET state = $2, payment_intent = COALESCE($3, payment_intent), method = COALESCE($4, method),
             konbini_expires_at = COALESCE($5, konbini_expires_at), konbini_voucher_url = COALESCE($6, konbini_voucher_url),
             updated_at = $7
         WHERE application_id = $1",
    )
    .bind(application_id)
    .bind(ch.state)
    .bind(ch.payment_intent)
    .bind(ch.method)
    .bind(ch.konbini_expires_at)
    .bind(ch.konbini_voucher_url)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// A stored event not yet acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub id: i64,
    pub event_type: String,
    pub object_id: String,
    pub body: String,
}

/// The account's events not yet acted on, oldest first.
pub async fn pending_events(c: &mut AnyConnection, account: AccountId, limit: i64) -> Result<Vec<PendingEvent>> {
    let rows = sqlx::query(
        "SELECT id, event_type, object_id, body FROM stripe_events WHERE account_id = $1 AND handled_at IS NULL
         ORDER BY id LIMIT $2",
    )
    .bind(account.0)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows
        .iter()
        .map(|r| PendingEvent { id: r.get(0), event_type: r.get(1), object_id: r.get(2), body: r.get(3) })
        .collect())
}

pub async fn mark_handled(c: &mut AnyConnection, id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE stripe_events SET handled_at = $2 WHERE id = $1 AND handled_at IS NULL")
        .bind(id)
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}

/// Every account connected to Stripe.
pub async fn connected_accounts(c: &mut AnyConnection) -> Result<Vec<AccountId>> {
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT account_id FROM stripe_connections ORDER BY account_id").fetch_all(c).await?;
    Ok(ids.into_iter().map(AccountId).collect())
}

/// The paid order whose payment is `payment_intent` (a refund event names only the payment).
pub async fn order_by_payment(
    c: &mut AnyConnection,
    account: AccountId,
    payment_intent: &str,
) -> Result<Option<Order>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM stripe_orders WHERE account_id = $1 AND payment_intent = $2");
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.0).bind(payment_intent).fetch_optional(c).await?;
    Ok(r.as_ref().map(order_row))
}

/// What Stripe says has been refunded of an order's payment (succeeded, pending or waiting).
pub async fn set_refunded(c: &mut AnyConnection, application_id: i64, refunded_yen: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE stripe_orders SET refunded_yen = $2, updated_at = $3 WHERE application_id = $1")
        .bind(application_id)
        .bind(refunded_yen)
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    pub id: i64,
    pub application_id: i64,
    pub account_id: AccountId,
    pub amount_yen: i64,
    pub fee_yen: i64,
    pub state: String,
    pub stripe_refund_id: Option<String>,
}

const REFUND_COLUMNS: &str = "id, application_id, account_id, amount_yen, fee_yen, state, stripe_refund_id";

fn refund_row(r: &sqlx::any::AnyRow) -> RefundRow {
    RefundRow {
        id: r.get(0),
        application_id: r.get(1),
        account_id: AccountId(r.get(2)),
        amount_yen: r.get(3),
        fee_yen: r.get(4),
        state: r.get(5),
        stripe_refund_id: r.get(6),
    }
}

/// A refund the organizer asked for, queued for the job that sends it. Returns its id.
pub async fn queue_refund(
    c: &mut AnyConnection,
    application_id: i64,
    account: AccountId,
    amount_yen: i64,
    fee_yen: i64,
    now: i64,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO stripe_refunds (application_id, account_id, amount_yen, fee_yen, state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, $5) RETURNING id",
    )
    .bind(application_id)
    .bind(account.0)
    .bind(amount_yen)
    .bind(fee_yen)
    .bind(now)
    .fetch_one(c)
    .await?;
    Ok(id)
}

pub async fn refund(c: &mut AnyConnection, id: i64) -> Result<Option<RefundRow>> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM stripe_refunds WHERE id = $1");
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await?;
    Ok(r.as_ref().map(refund_row))
}

pub async fn refunds_of(c: &mut AnyConnection, application_id: i64) -> Result<Vec<RefundRow>> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM stripe_refunds WHERE application_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(application_id).fetch_all(c).await?;
    Ok(rows.iter().map(refund_row).collect())
}

/// Record Stripe's answer for a refund we sent (its id and status).
pub async fn set_refund(c: &mut AnyConnection, id: i64, stripe_refund_id: &str, state: &str, now: i64) -> Result<()> {
    sqlx::query(
        // An empty id (nothing made at Stripe: kept, or refused) stays NULL, as the column is
        // unique.
        "UPDATE stripe_refunds SET stripe_refund_id = COALESCE(stripe_refund_id, NULLIF($2, '')), state = $3, updated_at = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(stripe_refund_id)
    .bind(state)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// What an application's refunds at Stripe add up to: those made, on their way, or waiting for the
/// buyer's bank details.
pub async fn refunds_committed(c: &mut AnyConnection, application_id: i64) -> Result<i64> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(amount_yen) AS BIGINT) FROM stripe_refunds
         WHERE application_id = $1 AND state IN ('pending', 'succeeded', 'requires_action')",
    )
    .bind(application_id)
    .fetch_one(c)
    .await?;
    Ok(n.unwrap_or(0))
}

/// A refund as Stripe reports it (an event): its state updated; or, when it is one Tsunagu made
/// (`ours`: the row id in its metadata) whose answer was not recorded yet, that row given its
/// Stripe id; or, when Tsunagu did not make it (Stripe's dashboard), recorded.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_refund(
    c: &mut AnyConnection,
    application_id: i64,
    account: AccountId,
    stripe_refund_id: &str,
    ours: Option<i64>,
    amount_yen: i64,
    state: &str,
    now: i64,
) -> Result<()> {
    let mut r = sqlx::query("UPDATE stripe_refunds SET state = $2, updated_at = $3 WHERE stripe_refund_id = $1")
        .bind(stripe_refund_id)
        .bind(state)
        .bind(now)
        .execute(&mut *c)
        .await?;
    if r.rows_affected() == 0
        && let Some(id) = ours
    {
        r = sqlx::query(
            "UPDATE stripe_refunds SET stripe_refund_id = $2, state = $3, updated_at = $4
             WHERE id = $1 AND application_id = $5 AND stripe_refund_id IS NULL",
        )
        .bind(id)
        .bind(stripe_refund_id)
        .bind(state)
        .bind(now)
        .bind(application_id)
        .execute(&mut *c)
        .await?;
    }
    if r.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO stripe_refunds (application_id, account_id, amount_yen, fee_yen, state, stripe_refund_id, created_at, updated_at)
             VALUES ($1, $2, $3, 0, $4, $5, $6, $6) ON CONFLICT (stripe_refund_id) DO UPDATE SET state = $4, updated_at = $6",
        )
        .bind(application_id)
        .bind(account.0)
        .bind(amount_yen)
        .bind(state)
        .bind(stripe_refund_id)
        .bind(now)
        .execute(c)
        .await?;
    }
    Ok(())
}

/// The orders of an event's applications.
pub async fn orders_of_event(c: &mut AnyConnection, event_id: i64) -> Result<Vec<Order>> {
    let cols = ORDER_COLUMNS.split(',').map(|c| format!("o.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {cols} FROM stripe_orders o JOIN applications a ON a.id = o.application_id WHERE a.event_id = $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_all(&mut *c).await?;
    Ok(rows.iter().map(order_row).collect())
}

/// The refunds of an event's applications, oldest first.
pub async fn refunds_of_event(c: &mut AnyConnection, event_id: i64) -> Result<Vec<RefundRow>> {
    let cols = REFUND_COLUMNS.split(',').map(|c| format!("r.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {cols} FROM stripe_refunds r JOIN applications a ON a.id = r.application_id WHERE a.event_id = $1 ORDER BY r.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_all(&mut *c).await?;
    Ok(rows.iter().map(refund_row).collect())
}

/// 特定商取引法に基づく表記 as stored: the fields (JSON object) and the invoice number.
pub async fn legal_notice(c: &mut AnyConnection, account: AccountId) -> Result<Option<(String, String)>> {
    let r = sqlx::query("SELECT fields, invoice_number FROM legal_notices WHERE account_id = $1")
        .bind(account.0)
        .fetch_optional(c)
        .await?;
    Ok(r.map(|r| (r.get(0), r.get(1))))
}

pub async fn put_legal_notice(
    c: &mut AnyConnection,
    account: AccountId,
    fields: &str,
    invoice_number: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO legal_notices (account_id, fields, invoice_number, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id) DO UPDATE SET fields = $2, invoice_number = $3, updated_at = $4",
    )
    .bind(account.0)
    .bind(fields)
    .bind(invoice_number)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}
