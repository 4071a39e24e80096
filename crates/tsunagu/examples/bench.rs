//! Benchmarks (a program, not a test): job queue throughput on SQLite and PostgreSQL, and the
//! latency of a logged-in console page under concurrent load.
//!
//!   cargo run --release -p tsunagu --example bench
//!
//! PostgreSQL is measured when TSUNAGU_TEST_PG_URL (an admin URL) is set, e.g. by
//! `eval "$(scripts/pg-start /tmp/bench-pg 55433)"`. Sizes: TSUNAGU_BENCH_JOBS (default
//! 5000), TSUNAGU_BENCH_REQUESTS (default 4000), TSUNAGU_BENCH_CONCURRENCY (default 16).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tsunagu::clock::SystemClock;
use tsunagu::config::Config;
use tsunagu::jobs::worker::Worker;
use tsunagu::startup::{Server, build_app};
use tsunagu_store::jobs;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(dir: &std::path::Path, url: String) -> Config {
    let mut c = Config::default();
    c.data.dir = dir.to_path_buf();
    c.database.url = url;
    c.database.max_connections = 20;
    c.http.listen = "127.0.0.1:0".into();
    c.jobs.enabled = false;
    c.jobs.poll_interval_ms = 20;
    c.log.level = "warn".into();
    c
}

async fn queue_bench(label: &str, cfg: Config, n: usize, concurrency: usize) -> anyhow::Result<(f64, f64)> {
    let mut cfg = cfg;
    cfg.jobs.concurrency = concurrency;
    let app = build_app(cfg, Arc::new(SystemClock)).await?;
    let payloads: Vec<_> = (0..n).map(|i| json!({"key": format!("b{i}"), "record_start": false})).collect();
    let t0 = Instant::now();
    let mut tx = app.store.begin().await?;
    for p in &payloads {
        let job = jobs::NewJob { kind: "diagnostic.touch", payload: p, dedupe_key: None, run_at: 0, max_attempts: 3 };
        jobs::enqueue(&mut tx, &job, 0).await?;
    }
    tx.commit().await?;
    let enqueue_rate = n as f64 / t0.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(app.clone()).run(stop.clone()));
    let t1 = Instant::now();
    loop {
        let mut c = app.store.conn().await?;
        let left: i64 = jobs::counts(&mut c).await?.iter().map(|(_, n)| n).sum();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run_rate = n as f64 / t1.elapsed().as_secs_f64();
    stop.cancel();
    worker.await?;
    eprintln!("{label}: enqueue {enqueue_rate:.0}/s, run {run_rate:.0}/s");
    Ok((enqueue_rate, run_rate))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn page_bench(cfg: Config, requests: usize, concurrency: usize) -> anyhow::Result<(f64, f64, f64, f64)> {
    let app = build_app(cfg, Arc::new(SystemClock)).await?;
    let server = Server::bind(app.clone()).await?;
    let base = format!("http://{}", server.local_addr());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { server.run(s).await });
    let input = tsunagu::accounts::SignupInput {
        email: "bench@example.com",
        name: "計測",
        password: "benchmark-password",
        password_confirm: "benchmark-password",
        plan: tsunagu_core::Plan::Business,
        role: tsunagu_core::Role::Member,
    };
    tsunagu::accounts::sign_up(&app, &input).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let login = client.get(format!("{base}/login")).send().await?.text().await?;
    let marker = "name=\"csrf_token\" value=\"";
    let start = login.find(marker).ok_or_else(|| anyhow::anyhow!("no csrf"))? + marker.len();
    let token = &login[start..start + login[start..].find('"').unwrap_or(0)];
    let r = client
        .post(format!("{base}/login"))
        .form(&[("csrf_token", token), ("email", "bench@example.com"), ("password", "benchmark-password")])
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 303, "login failed");
    // Warm up.
    for _ in 0..50 {
        client.get(format!("{base}/mails")).send().await?.bytes().await?;
    }
    let per_task = requests / concurrency;
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = format!("{base}/mails");
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let r = client.get(&url).send().await.expect("request");
                assert_eq!(r.status().as_u16(), 200);
                r.bytes().await.expect("body");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await?);
    }
    let secs = t0.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    stop.cancel();
    let _ = task.await;
    Ok((all.len() as f64 / secs, percentile(&all, 0.5), percentile(&all, 0.99), percentile(&all, 1.0)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_num("TSUNAGU_BENCH_JOBS", 5000);
    let requests = env_num("TSUNAGU_BENCH_REQUESTS", 4000);
    let concurrency = env_num("TSUNAGU_BENCH_CONCURRENCY", 16);
    let dir = std::env::temp_dir().join(tsunagu_store::testing::unique_name("tsunagu-bench"));
    std::fs::create_dir_all(&dir)?;
    let sqlite_url = |name: &str| format!("sqlite://{}/{name}.db", dir.display());
    let pg_admin = std::env::var("TSUNAGU_TEST_PG_URL").ok();

    println!("| measurement | SQLite | PostgreSQL |");
    println!("|---|---|---|");
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for workers in [1usize, 4] {
        let (le, lr) = queue_bench("sqlite", config(&dir, sqlite_url(&format!("q{workers}"))), n, workers).await?;
        let (pe, pr) = match &pg_admin {
            Some(admin) => {
                let url = tsunagu_store::testing::create_pg_database(admin, "tsunagu_bench").await?;
                let (e, r) = queue_bench("postgres", config(&dir, url), n, workers).await?;
                (format!("{e:.0}"), format!("{r:.0}"))
            }
            None => ("-".into(), "-".into()),
        };
        if workers == 1 {
            rows.push((format!("jobs enqueued/s ({n} in one transaction)"), format!("{le:.0}"), pe));
        }
        rows.push((format!("jobs run/s, one process, concurrency {workers}"), format!("{lr:.0}"), pr));
    }
    let (lrps, l50, l99, lmax) = page_bench(config(&dir, sqlite_url("page")), requests, concurrency).await?;
    let pg_page = match &pg_admin {
        Some(admin) => {
            let url = tsunagu_store::testing::create_pg_database(admin, "tsunagu_bench").await?;
            Some(page_bench(config(&dir, url), requests, concurrency).await?)
        }
        None => None,
    };
    let fmt = |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "-".into());
    rows.push((
        format!("GET /mails logged in, {concurrency} concurrent clients: requests/s"),
        format!("{lrps:.0}"),
        fmt(pg_page.map(|p| p.0), 0),
    ));
    rows.push(("  latency p50 (ms)".into(), format!("{l50:.2}"), fmt(pg_page.map(|p| p.1), 2)));
    rows.push(("  latency p99 (ms)".into(), format!("{l99:.2}"), fmt(pg_page.map(|p| p.2), 2)));
    rows.push(("  latency max (ms)".into(), format!("{lmax:.2}"), fmt(pg_page.map(|p| p.3), 2)));
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
