//! Embedded, numbered migrations, one tree per backend. Applied in a transaction each;
//! concurrent starters on PostgreSQL serialise on an advisory lock (taken in each one).

use sqlx::{Executor, Row};

use crate::db::Backend;
use crate::{Result, Store, StoreError};

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "line",
        sqlite: include_str!("../migrations/sqlite/0002_line.sql"),
        postgres: include_str!("../migrations/postgres/0002_line.sql"),
    },
    Migration {
        version: 3,
        name: "media",
        sqlite: include_str!("../migrations/sqlite/0003_media.sql"),
        postgres: include_str!("../migrations/postgres/0003_media.sql"),
    },
    Migration {
        version: 4,
        name: "stable_ids",
        sqlite: include_str!("../migrations/sqlite/0004_stable_ids.sql"),
        postgres: include_str!("../migrations/postgres/0004_stable_ids.sql"),
    },
    Migration {
        version: 5,
        name: "job_keys",
        sqlite: include_str!("../migrations/sqlite/0005_job_keys.sql"),
        postgres: include_str!("../migrations/postgres/0005_job_keys.sql"),
    },
    Migration {
        version: 6,
        name: "retention",
        sqlite: include_str!("../migrations/sqlite/0006_retention.sql"),
        postgres: include_str!("../migrations/postgres/0006_retention.sql"),
    },
    Migration {
        version: 7,
        name: "upstream_limits",
        sqlite: include_str!("../migrations/sqlite/0007_upstream_limits.sql"),
        postgres: include_str!("../migrations/postgres/0007_upstream_limits.sql"),
    },
    Migration {
        version: 8,
        name: "events",
        sqlite: include_str!("../migrations/sqlite/0008_events.sql"),
        postgres: include_str!("../migrations/postgres/0008_events.sql"),
    },
    Migration {
        version: 9,
        name: "event_zoom",
        sqlite: include_str!("../migrations/sqlite/0009_event_zoom.sql"),
        postgres: include_str!("../migrations/postgres/0009_event_zoom.sql"),
    },
    Migration {
        version: 10,
        name: "attendee_zoom",
        sqlite: include_str!("../migrations/sqlite/0010_attendee_zoom.sql"),
        postgres: include_str!("../migrations/postgres/0010_attendee_zoom.sql"),
    },
    Migration {
        version: 11,
        name: "courses",
        sqlite: include_str!("../migrations/sqlite/0011_courses.sql"),
        postgres: include_str!("../migrations/postgres/0011_courses.sql"),
    },
    Migration {
        version: 12,
        name: "course_console",
        sqlite: include_str!("../migrations/sqlite/0012_course_console.sql"),
        postgres: include_str!("../migrations/postgres/0012_course_console.sql"),
    },
    Migration {
        version: 13,
        name: "stripe",
        sqlite: include_str!("../migrations/sqlite/0013_stripe.sql"),
        postgres: include_str!("../migrations/postgres/0013_stripe.sql"),
    },
    Migration {
        version: 14,
        name: "checkout",
        sqlite: include_str!("../migrations/sqlite/0014_checkout.sql"),
        postgres: include_str!("../migrations/postgres/0014_checkout.sql"),
    },
    Migration {
        version: 15,
        name: "unhandled_partial",
        sqlite: include_str!("../migrations/sqlite/0015_unhandled_partial.sql"),
        postgres: include_str!("../migrations/postgres/0015_unhandled_partial.sql"),
    },
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

pub(crate) async fn run(store: &Store) -> Result<Vec<i64>> {
    run_up_to(store, i64::MAX).await
}

/// SQLite migrations that rebuild a table others refer to. SQLite cannot alter a constraint in
/// place; its documented procedure (create, copy, drop, rename) needs foreign keys off, or the
/// drop cascades to the rows that refer to the old table. Such a migration runs with foreign
/// keys off on the one writer connection, and commits only if `PRAGMA foreign_key_check`
/// finds nothing.
const SQLITE_REBUILDS: &[i64] = &[12];

/// Apply the migrations not applied yet, up to `last` (tests of an upgrade stop earlier), each
/// in its own transaction.
pub(crate) async fn run_up_to(store: &Store, last: i64) -> Result<Vec<i64>> {
    let mut conn = store.conn().await?;
    let mut done = Vec::new();
    loop {
        // Which migration comes next, as far as can be seen before the lock (none of the table
        // yet: the first); read again under it, since another process may have applied it.
        let next =
            next_pending(&mut conn, last).await.unwrap_or_else(|_| MIGRATIONS.iter().find(|m| m.version <= last));
        let Some(next) = next else { return Ok(done) };
        let rebuild = store.backend() == Backend::Sqlite && SQLITE_REBUILDS.contains(&next.version);
        if rebuild {
            conn.execute("PRAGMA foreign_keys = OFF").await?;
        }
        let applied = apply_next(store, &mut conn, last, rebuild).await;
        if rebuild {
            // Foreign keys are set when a connection opens: a connection that could not have
            // them back is not returned to the pool.
            if conn.execute("PRAGMA foreign_keys = ON").await.is_err() {
                conn.close_on_drop();
            }
        }
        match applied? {
            Applied::Version(version) => done.push(version),
            Applied::Again => {}
            Applied::Nothing => return Ok(done),
        }
    }
}

enum Applied {
    Version(i64),
    /// Another process moved ahead: look again (with foreign keys as the next one needs).
    Again,
    Nothing,
}

async fn next_pending(conn: &mut sqlx::AnyConnection, last: i64) -> Result<Option<&'static Migration>> {
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
    Ok(MIGRATIONS.iter().find(|m| m.version <= last && !applied.contains(&m.version)))
}

/// Apply the first migration not applied yet, under the lock.
async fn apply_next(store: &Store, conn: &mut sqlx::AnyConnection, last: i64, rebuild: bool) -> Result<Applied> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    if store.backend() == Backend::Postgres {
        // Any constant works; it only has to be the same for every Tsunagu process.
        tx.execute("SELECT pg_advisory_xact_lock(7311041)").await?;
    }
    tx.execute(CREATE_TABLE).await?;
    let Some(m) = next_pending(&mut tx, last).await? else {
        tx.commit().await?;
        return Ok(Applied::Nothing);
    };
    let wants_rebuild = store.backend() == Backend::Sqlite && SQLITE_REBUILDS.contains(&m.version);
    if rebuild != wants_rebuild {
        drop(tx);
        return Ok(Applied::Again);
    }
    let sql = match store.backend() {
        Backend::Sqlite => m.sqlite,
        Backend::Postgres => m.postgres,
    };
    tx.execute(sql).await.map_err(|source| StoreError::Migration { version: m.version, source })?;
    if rebuild {
        let broken = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut *tx).await?;
        if !broken.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "migration {} would leave {} rows referring to missing rows; nothing was changed",
                m.version,
                broken.len()
            )));
        }
    }
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(m.version)
        .bind(m.name)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(version = m.version, name = m.name, "applied migration");
    Ok(Applied::Version(m.version))
}

pub(crate) async fn is_current(store: &Store) -> Result<bool> {
    let mut c = store.conn().await?;
    let rows = match sqlx::query("SELECT version FROM schema_migrations").fetch_all(&mut *c).await {
        Ok(rows) => rows,
        Err(_) => return Ok(false),
    };
    let applied: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
    Ok(MIGRATIONS.iter().all(|m| applied.contains(&m.version)))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
