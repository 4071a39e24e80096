use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, ConnectOptions, Executor};

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A URL with any password replaced, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_connections: 10, busy_timeout: Duration::from_secs(10) }
    }
}

/// On SQLite, `writer` is a pool of exactly one connection, and every connection that may
/// write ([`Store::conn`], [`Store::begin`]) comes from it: the pool hands it out to waiting
/// tasks in the order they asked (sqlx's pool is fair), so writers of this process queue
/// instead of sleeping in SQLite's busy handler, which polls in steps of up to 100 ms.
/// Readers ([`Store::read`]) come from `pool`, opened `query_only`, and in WAL mode never
/// wait for the writer. On PostgreSQL both are the same pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    /// SQLite only: the connection that copies the write-ahead log into the database
    /// ([`Store::checkpoint`]), so that the writer's commits do not.
    checkpointer: Option<AnyPool>,
    backend: Backend,
}

pub type Conn = PoolConnection<Any>;
pub type Tx = sqlx::Transaction<'static, Any>;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Store {
    /// Connect without migrating. A SQLite file (and its directory) is created when missing.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let connect_opts = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let busy_ms = opts.busy_timeout.as_millis();
        // SQLite's own checkpoint runs inside a commit once the log passes this many pages
        // (default 1,000), as `serve` checkpoints in the background every 250 ms. Under a steady
        // stream of commits that background checkpoint never finds the whole log copied when
        // a writer starts, so the log starts over only after this in-commit checkpoint: it
        // flushes the log and the database to disk, and the next commit flushes the new log
        // header, while every writer waits (7 to 80 ms measured on this project's machines). At
        // about 2,800 webhooks/s (`scripts/bench-intake`) the log grew by some 12,000 pages a
        // second: 10,000 pages made that stall about every 0.8 s, 40,000 pages (about 160 MB)
        // make it about every 3 s. The log can grow past this while a long read still uses it,
        // and the file keeps the largest size it reached.
        const AUTO_CHECKPOINT_PAGES: u32 = 40_000;
        let pool_options = |max: u32, query_only: bool| {
            AnyPoolOptions::new().max_connections(max).acquire_timeout(Duration::from_secs(30)).after_connect(
                move |conn, _meta| {
                    Box::pin(async move {
                        if conn.backend_name() == "SQLite" {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            // Only other processes (an operator's CLI command) can still make
                            // this process's writer wait; readers never wait in WAL mode.
                            let busy = format!("PRAGMA busy_timeout = {busy_ms}");
                            conn.execute(sqlx::AssertSqlSafe(busy)).await?;
                            if query_only {
                                conn.execute("PRAGMA query_only = ON").await?;
                            } else {
                                conn.execute("PRAGMA cache_size = -65536").await?;
                            }
                            let auto = format!("PRAGMA wal_autocheckpoint = {AUTO_CHECKPOINT_PAGES}");
                            conn.execute(sqlx::AssertSqlSafe(auto)).await?;
                        }
                        Ok(())
                    })
                },
            )
        };
        let in_memory = url.contains(":memory:");
        let (pool, writer, checkpointer) = match backend {
            // Each connection of an in-memory database would be a database of its own.
            Backend::Sqlite if in_memory => {
                let writer = pool_options(1, false).connect_with(connect_opts).await?;
                (writer.clone(), writer, None)
            }
            Backend::Sqlite => {
                // The writer first: it creates the file and switches it to WAL.
                let writer = pool_options(1, false).connect_with(connect_opts.clone()).await?;
                let pool = pool_options(opts.max_connections.max(1), true).connect_with(connect_opts.clone()).await?;
                let checkpointer = pool_options(1, false).min_connections(0).connect_lazy_with(connect_opts);
                (pool, writer, Some(checkpointer))
            }
            Backend::Postgres => {
                let pool = pool_options(opts.max_connections, false).connect_with(connect_opts).await?;
                (pool.clone(), pool, None)
            }
        };
        Ok(Store { pool, writer, checkpointer, backend })
    }

    /// Connect and apply pending migrations.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Store> {
        let store = Store::connect(url, opts).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<Vec<i64>> {
        crate::migrate::run(self).await
    }

    /// True when every known migration is applied (used by `/readyz`).
    pub async fn is_migrated(&self) -> Result<bool> {
        crate::migrate::is_current(self).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection that may write. On SQLite this is the one writer connection: hold it
    /// briefly, and never across a call to anything slow (an upstream, ffmpeg, SMTP).
    pub async fn conn(&self) -> Result<Conn> {
        Ok(self.writer.acquire().await?)
    }

    /// A read-only connection (on SQLite, writes through it fail with "readonly database").
    /// Pages and lookups that only read use it, so they never queue behind writers.
    pub async fn read(&self) -> Result<Conn> {
        Ok(self.pool.acquire().await?)
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`),
    /// so a transaction that reads before it writes cannot fail on lock upgrade.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// SQLite: copy what the write-ahead log holds into the database without waiting for
    /// anyone (`PASSIVE`), on a connection of its own, so the writer's commits rarely have to
    /// (their automatic checkpoint, with its disk flush, is what made slow commits). No-op on
    /// PostgreSQL.
    pub async fn checkpoint(&self) -> Result<()> {
        if let Some(c) = &self.checkpointer {
            let mut conn = c.acquire().await?;
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await?;
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        let mut c = self.conn().await?;
        c.execute("SELECT 1").await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
        if let Some(c) = &self.checkpointer {
            c.close().await;
        }
    }
}

fn prepare_sqlite_url(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && !path.is_empty()
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("mode=")) {
        params.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", params.join("&")))
}
