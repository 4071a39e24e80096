//! The job queue's keys and leases on both backends, and SQLite's write path: writers queue
//! for the one writer connection instead of failing or sleeping on the lock, readers never
//! write, and the claim reads `jobs` through its indexes.

use std::time::Duration;

use sqlx::Row;
use tsunagu_store::jobs::{self, NewJob};
use tsunagu_store::{Backend, Store, StoreOptions, diagnostics};

use crate::harness::{TempDir, conformance};

conformance!(job_keys_hold_only_queued_jobs, heartbeat_extends_only_the_jobs_named);

fn keyed<'a>(p: &'a serde_json::Value, key: &'a str) -> NewJob<'a> {
    NewJob { kind: "test.kind", payload: p, dedupe_key: Some(key), run_at: 0, max_attempts: 3 }
}

async fn state(store: &Store, id: i64) -> Option<String> {
    let mut c = store.read().await.unwrap();
    jobs::get(&mut c, id).await.unwrap().map(|j| j.state)
}

async fn job_keys_hold_only_queued_jobs(store: Store) {
    let p = serde_json::json!({});
    let mut c = store.conn().await.unwrap();
    let first = jobs::enqueue(&mut c, &keyed(&p, "k"), 0).await.unwrap().unwrap();
    assert_eq!(jobs::enqueue(&mut c, &keyed(&p, "k"), 0).await.unwrap(), None, "one queued job per key");
    assert_eq!(jobs::claim(&mut c, store.backend(), "w", 10, 1, 1_000).await.unwrap()[0].id, first);
    // While it runs, the same work can be queued again (what arrived meanwhile is picked up).
    let second = jobs::enqueue(&mut c, &keyed(&p, "k"), 2).await.unwrap().expect("queued while the first runs");
    assert_eq!(jobs::ensure(&mut c, &keyed(&p, "k"), 2).await.unwrap(), None, "ensure: one is live already");
    // The first fails and would go back to the queue: its twin does the same work, so it goes.
    assert!(jobs::fail(&mut c, first, "w", "boom", 3, Some(4)).await.unwrap());
    assert_eq!(state(&store, first).await, None, "left to the queued twin");
    assert_eq!(state(&store, second).await.as_deref(), Some("queued"));
    // The second fails for good: a failed job does not hold its key.
    assert_eq!(jobs::claim(&mut c, store.backend(), "w", 10, 5, 1_000).await.unwrap()[0].id, second);
    assert!(jobs::fail(&mut c, second, "w", "boom", 6, None).await.unwrap());
    assert_eq!(state(&store, second).await.as_deref(), Some("failed"));
    let third = jobs::ensure(&mut c, &keyed(&p, "k"), 7).await.unwrap().expect("a failed job holds no key");
    // An administrator's retry of the failed one while the third is queued: the third does it.
    assert!(jobs::retry_failed(&mut c, second, 8).await.unwrap());
    assert_eq!(state(&store, second).await, None);
    assert_eq!(state(&store, third).await.as_deref(), Some("queued"));
    // Handing a job back (shutdown) while a twin is queued leaves the work to the twin too.
    assert_eq!(jobs::claim(&mut c, store.backend(), "w", 10, 9, 1_000).await.unwrap()[0].id, third);
    let fourth = jobs::enqueue(&mut c, &keyed(&p, "k"), 10).await.unwrap().unwrap();
    assert!(jobs::release(&mut c, third, "w", 11).await.unwrap());
    assert_eq!(state(&store, third).await, None);
    // Without a twin, a failed attempt goes back to the queue as before.
    assert_eq!(jobs::claim(&mut c, store.backend(), "w", 10, 12, 1_000).await.unwrap()[0].id, fourth);
    assert!(jobs::fail(&mut c, fourth, "w", "boom", 13, Some(14)).await.unwrap());
    assert_eq!(state(&store, fourth).await.as_deref(), Some("queued"));
}

async fn heartbeat_extends_only_the_jobs_named(store: Store) {
    let p = serde_json::json!({});
    let mut c = store.conn().await.unwrap();
    let job = NewJob { kind: "test.kind", payload: &p, dedupe_key: None, run_at: 0, max_attempts: 3 };
    let a = jobs::enqueue(&mut c, &job, 0).await.unwrap().unwrap();
    let b = jobs::enqueue(&mut c, &job, 0).await.unwrap().unwrap();
    assert_eq!(jobs::claim(&mut c, store.backend(), "w", 10, 0, 1_000).await.unwrap().len(), 2);
    // The worker still holds `a` only (recording `b`'s result failed, say): `b` is not kept alive.
    assert_eq!(jobs::heartbeat(&mut c, "w", &[a], 5_000).await.unwrap(), 1);
    let taken = jobs::claim(&mut c, store.backend(), "other", 10, 1_001, 1_000).await.unwrap();
    assert_eq!(taken.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b], "b's lease ran out, a's did not");
    assert_eq!(jobs::heartbeat(&mut c, "w", &[], 9_000).await.unwrap(), 0);
}

async fn sqlite_with_busy_timeout(busy: Duration) -> (Store, TempDir) {
    let dir = TempDir::new("tsunagu-store-writers");
    let url = format!("sqlite://{}/test.db", dir.path().display());
    let opts = StoreOptions { max_connections: 8, busy_timeout: busy };
    (Store::open(&url, &opts).await.expect("open sqlite"), dir)
}

/// With SQLite's busy handler switched off, any writer that found the lock taken would fail
/// at once ("database is locked"): every write here succeeds because writers queue for the
/// one writer connection, in order, instead of meeting at the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_queue_for_the_lock() {
    let (store, _dir) = sqlite_with_busy_timeout(Duration::ZERO).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..40 {
                if (t + i) % 2 == 0 {
                    // A transaction that reads, yields, then writes.
                    let mut tx = store.begin().await?;
                    let _ = jobs::next_due(&mut tx).await?;
                    tokio::task::yield_now().await;
                    diagnostics::record(&mut tx, &format!("t{t}"), "tx", "w", i).await?;
                    tx.commit().await?;
                } else {
                    let mut c = store.conn().await?;
                    diagnostics::record(&mut c, &format!("t{t}"), "plain", "w", i).await?;
                }
                // Readers run beside the writers and never wait for them.
                let mut r = store.read().await?;
                let _ = diagnostics::all(&mut r).await?;
            }
            Ok::<_, tsunagu_store::StoreError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().expect("no writer met a locked database");
    }
    let mut r = store.read().await.unwrap();
    assert_eq!(diagnostics::all(&mut r).await.unwrap().len(), 8 * 40);
}

/// A reader cannot write (so no write can bypass the writer queue by mistake), and it reads
/// while the writer holds an open transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_readers_read_beside_the_writer_and_cannot_write() {
    let (store, _dir) = sqlite_with_busy_timeout(Duration::ZERO).await;
    let mut tx = store.begin().await.unwrap();
    diagnostics::record(&mut tx, "k", "held", "w", 1).await.unwrap();
    let mut r = store.read().await.unwrap();
    assert!(diagnostics::all(&mut r).await.unwrap().is_empty(), "uncommitted work is not seen");
    let refused = diagnostics::record(&mut r, "k", "reader", "w", 2).await.unwrap_err();
    assert!(refused.to_string().contains("readonly"), "{refused}");
    tx.commit().await.unwrap();
    assert_eq!(diagnostics::all(&mut r).await.unwrap().len(), 1);
}

/// The claim finds due jobs and expired leases through indexes: no full scan of `jobs` and no
/// sort of it (which ran under the write lock and took ~16 ms with 200k jobs queued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_claim_uses_the_job_indexes() {
    let (store, _dir) = crate::harness::sqlite().await;
    let mut tx = store.begin().await.unwrap();
    let p = serde_json::json!({});
    for i in 0..2_000 {
        let job = NewJob { kind: "test.kind", payload: &p, dedupe_key: None, run_at: i, max_attempts: 3 };
        jobs::enqueue(&mut tx, &job, 0).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut c = store.conn().await.unwrap();
    sqlx::query("ANALYZE").execute(&mut *c).await.unwrap();
    let q = explain(&jobs::claim_sql(Backend::Sqlite)).bind("w").bind(2_000i64).bind(1_000i64).bind(8i64);
    let plan = query_plan(&mut c, q).await;
    let text = plan.join("\n");
    assert!(plan.iter().any(|l| l.starts_with("SEARCH jobs") && l.contains("INDEX jobs_due_idx")), "{text}");
    assert!(plan.iter().any(|l| l.starts_with("SEARCH jobs") && l.contains("INDEX jobs_lease_idx")), "{text}");
    for line in &plan {
        assert!(!(line.starts_with("SCAN jobs") || line == "SCAN jobs"), "full scan of jobs: {text}");
        assert!(!line.contains("TEMP B-TREE"), "sorts jobs: {text}");
    }
    // And it claims the earliest due jobs.
    let claimed = jobs::claim(&mut c, Backend::Sqlite, "w", 8, 1_000, 1_000).await.unwrap();
    assert_eq!(claimed.len(), 8);
}

/// A follow or block finds the user's subscriptions by their index and checks each one's course
/// by its key: it does not list the channel's courses, which on a channel with many courses
/// made SQLite probe the index once per course for every follow, under the intake's write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_follow_and_block_look_up_the_user_not_the_channels_courses() {
    use tsunagu_store::courses;
    let (store, _dir) = crate::harness::sqlite().await;
    let mut c = store.conn().await.unwrap();
    for (name, sql) in [("follow", courses::FOLLOWED_SQL), ("block", courses::BLOCKED_SQL)] {
        let q = explain(sql).bind("U1").bind("2000000001").bind(1i64).bind(2i64).bind(None::<String>).bind(None::<i64>);
        let plan = query_plan(&mut c, q).await;
        let text = plan.join("\n");
        assert!(
            plan.iter().any(|l| l.starts_with("SEARCH course_subscriptions") && l.contains("(line_user_id=?)")),
            "{name}: {text}"
        );
        assert!(!plan.iter().any(|l| l.contains("LIST SUBQUERY")), "{name} lists the channel's courses: {text}");
        assert!(!plan.iter().any(|l| l.starts_with("SCAN")), "{name} scans a table: {text}");
    }
}

/// The index of unhandled LINE events holds only those: the intake stores nearly every event
/// handled, and such an event adds nothing to it (one page fewer per commit). The intake's and
/// the job's lookups still read it, without a scan or a sort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unhandled_line_events_index_holds_only_the_unhandled() {
    use tsunagu_store::line::{self as line_store, NewEvent};
    let (store, _dir) = crate::harness::sqlite().await;
    let mut c = store.conn().await.unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("01E{i:05}")).collect();
    let events: Vec<(&str, NewEvent<'_>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let e = NewEvent {
                webhook_event_id: id,
                event_type: "follow",
                user_id: Some("U1"),
                event_ts: i as i64,
                redelivery: false,
                body: "{}",
                handled: i != 7,
            };
            ("2000000001", e)
        })
        .collect();
    line_store::insert_events(&mut c, &events, 10).await.unwrap();
    let cells: i64 = sqlx::query_scalar(
        "SELECT SUM(ncell) FROM dbstat WHERE name = 'line_webhook_events_unhandled' AND pagetype = 'leaf'",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    assert_eq!(cells, 1, "only the unhandled event is in the index");
    for sql in [
        "SELECT 1 FROM line_webhook_events WHERE channel_id = $1 AND handled_at IS NULL",
        "SELECT id FROM line_webhook_events WHERE channel_id = $1 AND handled_at IS NULL ORDER BY event_ts, id LIMIT 100",
    ] {
        let plan = query_plan(&mut c, explain(sql).bind("2000000001")).await;
        let text = plan.join("\n");
        assert!(plan.iter().any(|l| l.contains("USING INDEX line_webhook_events_unhandled")), "{sql}: {text}");
        assert!(!plan.iter().any(|l| l.starts_with("SCAN") || l.contains("TEMP B-TREE")), "{sql}: {text}");
    }
    assert_eq!(line_store::unhandled(&mut c, "2000000001", 10).await.unwrap()[0].webhook_event_id, "01E00007");
}

/// `EXPLAIN QUERY PLAN` of `sql`, for the caller to bind its parameters.
fn explain(sql: &str) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
}

/// SQLite's plan for a query made by [`explain`], one line per step ("SEARCH …", "SCAN …").
async fn query_plan(
    c: &mut sqlx::AnyConnection,
    q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
) -> Vec<String> {
    q.fetch_all(c).await.unwrap().iter().map(|r| r.get::<String, _>(3)).collect()
}
