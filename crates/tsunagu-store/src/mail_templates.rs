//! 自動配信メール: each account's own version of an event mail (subject, body, whether it is
//! sent, whether the organizer gets a copy). A kind the account never saved has no row; the
//! app then uses its default.

use sqlx::{AnyConnection, Row};
use tsunagu_core::AccountId;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTemplate {
    pub kind: String,
    pub enabled: bool,
    pub admin_copy: bool,
    pub subject: String,
    pub body: String,
    pub updated_at: i64,
}

fn row(r: &sqlx::any::AnyRow) -> SavedTemplate {
    SavedTemplate {
        kind: r.get(0),
        enabled: r.get::<i64, _>(1) != 0,
        admin_copy: r.get::<i64, _>(2) != 0,
        subject: r.get(3),
        body: r.get(4),
        updated_at: r.get(5),
    }
}

/// The account's saved templates.
pub async fn list(c: &mut AnyConnection, account: AccountId) -> Result<Vec<SavedTemplate>> {
    let rows = sqlx::query(
        "SELECT kind, enabled, admin_copy, subject, body, updated_at FROM mail_templates WHERE account_id = $1",
    )
    .bind(account.0)
    .fetch_all(c)
    .await?;
    Ok(rows.iter().map(row).collect())
}

/// The account's saved template of `kind`, if any.
pub async fn get(c: &mut AnyConnection, account: AccountId, kind: &str) -> Result<Option<SavedTemplate>> {
    let r = sqlx::query(
        "SELECT kind, enabled, admin_copy, subject, body, updated_at FROM mail_templates
         WHERE account_id = $1 AND kind = $2",
    )
    .bind(account.0)
    .bind(kind)
    .fetch_optional(c)
    .await?;
    Ok(r.as_ref().map(row))
}

/// Save (replace) the account's template of `kind`.
pub async fn put(c: &mut AnyConnection, account: AccountId, t: &SavedTemplate, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO mail_templates (account_id, kind, enabled, admin_copy, subject, body, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (account_id, kind) DO UPDATE SET enabled = excluded.enabled, admin_copy = excluded.admin_copy,
             subject = excluded.subject, body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(account.0)
    .bind(&t.kind)
    .bind(i64::from(t.enabled))
    .bind(i64::from(t.admin_copy))
    .bind(&t.subject)
    .bind(&t.body)
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

/// Forget the account's own version of `kind` (its default applies again). Returns whether
/// there was one.
pub async fn reset(c: &mut AnyConnection, account: AccountId, kind: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM mail_templates WHERE account_id = $1 AND kind = $2")
        .bind(account.0)
        .bind(kind)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}
