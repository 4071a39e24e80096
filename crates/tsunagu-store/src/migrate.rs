//! Embedded, numbered migrations, one tree per backend. Applied in a transaction each;
//! concurrent starters on PostgreSQL serialise on an advisory lock.

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
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

pub(crate) async fn run(store: &Store) -> Result<Vec<i64>> {
    let mut tx = store.begin().await?;
    if store.backend() == Backend::Postgres {
        // Any constant works; it only has to be the same for every Tsunagu process.
        tx.execute("SELECT pg_advisory_xact_lock(7311041)").await?;
    }
    tx.execute(CREATE_TABLE).await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
    let mut done = Vec::new();
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let sql = match store.backend() {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        tx.execute(sql).await.map_err(|source| StoreError::Migration { version: m.version, source })?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    tx.commit().await?;
    Ok(done)
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
