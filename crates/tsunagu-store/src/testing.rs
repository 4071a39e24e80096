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

/// A temporary directory, removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&p).expect("create a temporary directory");
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PostgreSQL admin URL for tests (`TSUNAGU_TEST_PG_URL`). Without it a local run skips
/// the PostgreSQL half; under CI (`CI` set) its absence is a failure, so that half cannot
/// silently vanish.
pub fn pg_admin_url() -> Option<String> {
    match std::env::var("TSUNAGU_TEST_PG_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "TSUNAGU_TEST_PG_URL is not set under CI: run the suite through ./scripts/test"
            );
            eprintln!("TSUNAGU_TEST_PG_URL not set: skipping a PostgreSQL test");
            None
        }
    }
}

/// Tests only: make every queued job of `kind` due now (as if the time it waits for had come).
pub async fn make_due(c: &mut sqlx::AnyConnection, kind: &str) -> crate::Result<u64> {
    let r =
        sqlx::query("UPDATE jobs SET run_at = 0 WHERE kind = $1 AND state = 'queued'").bind(kind).execute(c).await?;
    Ok(r.rows_affected())
}

/// Apply the migrations up to `last` only: the database as an older release left it, for a
/// test of the upgrade that follows.
pub async fn migrate_up_to(store: &crate::Store, last: i64) -> crate::Result<Vec<i64>> {
    crate::migrate::run_up_to(store, last).await
}
