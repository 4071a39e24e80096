//! Helpers for test suites and benchmarks that need a fresh database of their own.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique within this machine for this run.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{}_{}", std::process::id(), nanos, n)
}

/// Create an empty PostgreSQL database through `admin_url`; returns its URL.
pub async fn create_pg_database(admin_url: &str, prefix: &str) -> crate::Result<String> {
    sqlx::any::install_default_drivers();
    let db = unique_name(prefix);
    let mut conn = sqlx::AnyConnection::connect(admin_url).await?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await?;
    conn.close().await?;
    Ok(replace_db(admin_url, &db))
}

/// The same URL with another database name.
pub fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}
