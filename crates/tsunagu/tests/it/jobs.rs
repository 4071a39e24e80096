use std::collections::HashMap;

use serde_json::json;
use tsunagu_store::{Store, StoreOptions, diagnostics, jobs};

use crate::helpers::{Db, Process, TempDir, TestApp, csrf, database_url, eventually};

async fn enqueue_touch(store: &Store, keys: &[String], hold_ms: u64, hold_on_attempt: Option<i64>, record_start: bool) {
    let mut tx = store.begin().await.unwrap();
    for key in keys {
        let payload =
            json!({"key": key, "hold_ms": hold_ms, "hold_on_attempt": hold_on_attempt, "record_start": record_start});
        let job =
            jobs::NewJob { kind: "diagnostic.touch", payload: &payload, dedupe_key: None, run_at: 0, max_attempts: 5 };
        jobs::enqueue(&mut tx, &job, 0).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn runs(store: &Store) -> Vec<(String, String, String)> {
    let mut c = store.conn().await.unwrap();
    diagnostics::all(&mut c).await.unwrap()
}

/// Diagnostic jobs left (the hourly maintenance job of `serve` is not counted).
async fn phase_count(store: &Store, phase: &str) -> usize {
    runs(store).await.iter().filter(|(_, p, _)| p == phase).count()
}

async fn job_count(store: &Store) -> i64 {
    let mut c = store.conn().await.unwrap();
    let row =
        sqlx::query("SELECT COUNT(*) FROM jobs WHERE kind = 'diagnostic.touch'").fetch_one(&mut *c).await.unwrap();
    sqlx::Row::get(&row, 0)
}

fn serve_env(dir: &TempDir, url: &str, key_file: &std::path::Path, lease_seconds: u64) -> Vec<(&'static str, String)> {
    vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", url.to_string()),
        ("TSUNAGU_SECRETS__MASTER_KEY_FILE", key_file.display().to_string()),
        ("TSUNAGU_JOBS__LEASE_SECONDS", lease_seconds.to_string()),
        ("TSUNAGU_JOBS__POLL_INTERVAL_MS", "50".into()),
        ("TSUNAGU_JOBS__SHUTDOWN_GRACE_SECONDS", "20".into()),
    ]
}

fn write_key(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&path).unwrap();
    path
}

async fn sigkill_mid_job_runs_again_after_lease_exactly_once(db: Db) {
    let dir = TempDir::new("tsunagu-kill");
    let Some(url) = database_url(db, dir.path()).await else { return };
    let key = write_key(&dir);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let env = serve_env(&dir, &url, &key, 2);
    let mut a = Process::serve(&env, dir.path().join("a.log")).await;
    // Holds for a minute on its first attempt only: the first worker will be killed inside it.
    enqueue_touch(&store, &["victim".to_string()], 60_000, Some(1), true).await;
    eventually(20, "the first worker starts the job", || async { phase_count(&store, "start").await == 1 }).await;
    a.signal("KILL");
    let status = a.wait().await;
    assert!(!status.success(), "killed");
    let b = Process::serve(&env, dir.path().join("b.log")).await;
    eventually(30, "the job completes on the second worker", || async { job_count(&store).await == 0 }).await;
    let r = runs(&store).await;
    let starts: Vec<_> = r.iter().filter(|(_, p, _)| p == "start").collect();
    let finishes: Vec<_> = r.iter().filter(|(_, p, _)| p == "finish").collect();
    assert_eq!(starts.len(), 2, "started by the killed worker and again after its lease: {r:?}");
    assert_eq!(finishes.len(), 1, "completed exactly once: {r:?}");
    assert_ne!(starts[0].2, finishes[0].2, "the killed worker never finished it");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_sqlite() {
    sigkill_mid_job_runs_again_after_lease_exactly_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_postgres() {
    sigkill_mid_job_runs_again_after_lease_exactly_once(Db::Postgres).await;
}

/// Two `serve` processes on one PostgreSQL share 1,000 jobs: each job runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_a_thousand_jobs() {
    let dir = TempDir::new("tsunagu-two");
    let Some(url) = database_url(Db::Postgres, dir.path()).await else { return };
    let key = write_key(&dir);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let env = serve_env(&dir, &url, &key, 60);
    let a = Process::serve(&env, dir.path().join("a.log")).await;
    let b = Process::serve(&env, dir.path().join("b.log")).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("job-{i}")).collect();
    // A little work per job so that both processes are busy at the same time.
    enqueue_touch(&store, &keys, 5, None, true).await;
    eventually(120, "all 1,000 jobs done", || async { job_count(&store).await == 0 }).await;
    let r = runs(&store).await;
    let mut per_key: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut per_worker: HashMap<&str, usize> = HashMap::new();
    for (k, phase, worker) in &r {
        let e = per_key.entry(k).or_default();
        match phase.as_str() {
            "start" => e.0 += 1,
            "finish" => {
                e.1 += 1;
                *per_worker.entry(worker).or_default() += 1;
            }
            _ => {}
        }
    }
    assert_eq!(per_key.len(), 1000);
    let wrong: Vec<_> = per_key.iter().filter(|(_, (s, f))| (*s, *f) != (1, 1)).collect();
    assert!(wrong.is_empty(), "jobs that ran twice or not at all: {wrong:?}");
    assert_eq!(per_worker.len(), 2, "both processes took part: {per_worker:?}");
    assert!(per_worker.values().all(|&n| n >= 50), "work was shared: {per_worker:?}");
    drop((a, b));
}

/// SIGTERM lets a running job finish; one that outlasts the grace period is handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_hands_back_running_jobs() {
    let dir = TempDir::new("tsunagu-term");
    let url = database_url(Db::Sqlite, dir.path()).await.unwrap();
    let key = write_key(&dir);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();

    let env = serve_env(&dir, &url, &key, 60);
    let mut p = Process::serve(&env, dir.path().join("finish.log")).await;
    enqueue_touch(&store, &["short".to_string()], 1_500, None, true).await;
    eventually(20, "job started", || async { phase_count(&store, "start").await == 1 }).await;
    p.signal("TERM");
    assert!(p.wait().await.success());
    assert_eq!(phase_count(&store, "finish").await, 1, "finished before exit");
    assert_eq!(job_count(&store).await, 0);

    let mut env = serve_env(&dir, &url, &key, 60);
    env.push(("TSUNAGU_JOBS__SHUTDOWN_GRACE_SECONDS", "1".into()));
    let mut p = Process::serve(&env, dir.path().join("handback.log")).await;
    enqueue_touch(&store, &["long".to_string()], 120_000, None, true).await;
    eventually(20, "long job started", || async { phase_count(&store, "start").await == 2 }).await;
    p.signal("TERM");
    assert!(p.wait().await.success());
    let mut c = store.conn().await.unwrap();
    let queued: Vec<_> = jobs::list_by_state(&mut c, "queued", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "diagnostic.touch")
        .collect();
    assert_eq!(queued.len(), 1, "handed back, not lost");
    assert_eq!((queued[0].attempts, queued[0].locked_by.clone()), (0, None), "the interrupted attempt is not counted");
    assert!(p.log_text().contains("handed unfinished job back"));
}

/// Failures retry with backoff, end in `failed`, show in the console, and the retry button
/// queues them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_back_off_then_fail_and_can_be_retried_by_an_admin() {
    let port = crate::helpers::free_port(); // nothing listens here: SMTP is down
    let t = TestApp::spawn_with(|c| c.mail.smtp_url = tsunagu::config::Secret::new(format!("smtp://127.0.0.1:{port}")))
        .await;
    let admin = t.signup("ops@example.com", "運用").await;
    t.make_admin("ops@example.com").await;
    assert_eq!(t.run_jobs().await, 1, "first attempt");
    assert_eq!(t.run_jobs().await, 0, "not due before its backoff");
    t.clock.advance(1_200);
    assert_eq!(t.run_jobs().await, 1, "second attempt after ~1 s");
    t.clock.advance(1_200);
    assert_eq!(t.run_jobs().await, 0, "backoff doubled");
    t.clock.advance(1_200);
    assert_eq!(t.run_jobs().await, 1, "third and last attempt");
    assert_eq!(t.job_counts().await, vec![("failed".to_string(), 1)]);

    let mut c = t.app.store.read().await.unwrap();
    let mail = &tsunagu_store::mails::list_all(&mut c, 1).await.unwrap()[0];
    assert_eq!(mail.status, "failed");
    assert!(mail.last_error.as_deref().unwrap_or("").contains("SMTP"));

    let page = admin.get("/admin/jobs").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("mail.send") && page.text.contains("再実行する"), "{}", page.text);
    let job_id = jobs::list_by_state(&mut c, "failed", 1).await.unwrap()[0].id;
    let token = csrf(&page.text);
    let r = admin.post_form(&format!("/admin/jobs/{job_id}/retry"), &[("csrf_token", &token)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(t.job_counts().await, vec![("queued".to_string(), 1)]);
    assert!(admin.get("/admin/jobs").await.text.contains(&format!("ジョブ {job_id} を再実行します")));
    // Still down: it fails again and is retried later; nothing is dropped silently.
    assert_eq!(t.run_jobs().await, 1);
    assert_eq!(t.job_counts().await, vec![("queued".to_string(), 1)]);
    // Clean up for the leftover check: let it fail for good.
    for _ in 0..3 {
        t.clock.advance(10_000);
        t.run_jobs().await;
    }
    assert_eq!(t.job_counts().await, vec![("failed".to_string(), 1)]);
}

/// When the grace period runs out, the handler itself is stopped before its job is handed
/// back: it must not keep running (and, say, send a mail) while another worker takes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_back_handlers_are_really_stopped() {
    let t = TestApp::spawn_with(|c| {
        c.jobs.shutdown_grace_seconds = 1;
        c.jobs.concurrency = 2;
    })
    .await;
    enqueue_touch(&t.app.store, &["slow".to_string()], 2_500, None, true).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(tsunagu::jobs::worker::Worker::new(t.app.clone()).run(stop.clone()));
    eventually(10, "handler started", || async { phase_count(&t.app.store, "start").await == 1 }).await;
    stop.cancel();
    worker.await.unwrap();
    let mut c = t.app.store.read().await.unwrap();
    let queued: Vec<_> = jobs::list_by_state(&mut c, "queued", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == tsunagu::jobs::kinds::DIAGNOSTIC_TOUCH)
        .collect();
    assert_eq!((queued.len(), queued[0].attempts), (1, 0), "handed back uncounted");
    drop(c);
    // Past the end of the hold: an orphaned handler would have written its "held" mark.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(phase_count(&t.app.store, "held").await, 0, "the aborted handler kept running");
    t.assert_no_jobs_left().await;
}
