//! Accounts (主催者/講師 share one type) and their plan and role.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tsunagu_core::{AccountId, Email, Plan, Role};

use crate::{Result, StoreError, conflict};

#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub display_name: String,
    pub plan: Plan,
    pub role: Role,
    pub time_zone: String,
    pub created_at: i64,
}

/// The password hash is kept apart from `Account` so it never travels into a page.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub account: Account,
    pub password_hash: String,
}

pub struct NewAccount<'a> {
    pub email: &'a Email,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub plan: Plan,
    pub role: Role,
    pub time_zone: &'a str,
}

const COLUMNS: &str = "id, email, display_name, plan, role, time_zone, created_at";

fn from_row(r: &AnyRow) -> Result<Account> {
    let plan: String = r.try_get("plan")?;
    let role: String = r.try_get("role")?;
    Ok(Account {
        id: AccountId(r.try_get("id")?),
        email: r.try_get("email")?,
        display_name: r.try_get("display_name")?,
        plan: Plan::from_code(&plan).ok_or_else(|| StoreError::Corrupt(format!("plan {plan}")))?,
        role: Role::from_code(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        time_zone: r.try_get("time_zone")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Fails with `Conflict("email")` when the address is taken.
pub async fn create(c: &mut AnyConnection, new: &NewAccount<'_>, now: i64) -> Result<Account> {
    let row = sqlx::query(
        "INSERT INTO accounts (email, display_name, password_hash, plan, role, time_zone, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         RETURNING id, email, display_name, plan, role, time_zone, created_at",
    )
    .bind(new.email.as_str())
    .bind(new.display_name)
    .bind(new.password_hash)
    .bind(new.plan.code())
    .bind(new.role.code())
    .bind(new.time_zone)
    .bind(now)
    .fetch_one(c)
    .await
    .map_err(|e| conflict(e, "email"))?;
    from_row(&row)
}

pub async fn get(c: &mut AnyConnection, id: AccountId) -> Result<Option<Account>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"));
    let row = sqlx::query(sql).bind(id.0).fetch_optional(c).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn credentials_by_email(c: &mut AnyConnection, email: &Email) -> Result<Option<Credentials>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}, password_hash FROM accounts WHERE email = $1"));
    let row = sqlx::query(sql).bind(email.as_str()).fetch_optional(c).await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(Credentials { account: from_row(&r)?, password_hash: r.try_get("password_hash")? })),
    }
}

pub async fn password_hash(c: &mut AnyConnection, id: AccountId) -> Result<Option<String>> {
    let row = sqlx::query("SELECT password_hash FROM accounts WHERE id = $1").bind(id.0).fetch_optional(c).await?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn set_password_hash(c: &mut AnyConnection, id: AccountId, hash: &str, now: i64) -> Result<bool> {
    let res = sqlx::query("UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(now)
        .bind(id.0)
        .execute(c)
        .await?;
    Ok(res.rows_affected() == 1)
}

pub async fn set_plan(c: &mut AnyConnection, id: AccountId, plan: Plan, now: i64) -> Result<bool> {
    let res = sqlx::query("UPDATE accounts SET plan = $1, updated_at = $2 WHERE id = $3")
        .bind(plan.code())
        .bind(now)
        .bind(id.0)
        .execute(c)
        .await?;
    Ok(res.rows_affected() == 1)
}

pub async fn set_role(c: &mut AnyConnection, id: AccountId, role: Role, now: i64) -> Result<bool> {
    let res = sqlx::query("UPDATE accounts SET role = $1, updated_at = $2 WHERE id = $3")
        .bind(role.code())
        .bind(now)
        .bind(id.0)
        .execute(c)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Platform-wide listing, for administrators only.
pub async fn list_all(c: &mut AnyConnection) -> Result<Vec<Account>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts ORDER BY id"));
    sqlx::query(sql).fetch_all(c).await?.iter().map(from_row).collect()
}

pub async fn count(c: &mut AnyConnection) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM accounts").fetch_one(c).await?.get(0))
}
