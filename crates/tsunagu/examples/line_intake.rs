//! LINE webhook intake benchmark (a program, not a test): signed follow events POSTed to
//! `/line/webhook/{channel_id}` by concurrent keep-alive clients; requests per second, p50/p99
//! latency, and a count of stored events afterwards (nothing may be lost).
//!
//!   cargo run --release -p tsunagu --example line_intake
//!
//! PostgreSQL is measured too when TSUNAGU_TEST_PG_URL is set (`eval "$(scripts/pg-start …)"`).
//! Sizes: TSUNAGU_BENCH_EVENTS (default 20000), TSUNAGU_BENCH_CONCURRENCY (default 32).
//! Job workers run, as in `serve` (the intake applies follows itself; `line.events` jobs run only
//! for what a refused batch left). In serve mode it waits at the end until no event is unhandled.
//!
//! With `TSUNAGU_BENCH_SERVE=127.0.0.1:PORT` it only starts the app there (SQLite, jobs on, the
//! channel connected), prints `READY <webhook URL> <channel secret>` and runs until its standard
//! input closes: `scripts/bench-intake` drives it and the LINE SDK peer with wrk in one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tsunagu::clock::SystemClock;
use tsunagu::config::Config;
use tsunagu::startup::{Server, build_app};

const CHANNEL: &str = "2000000001";
const SECRET: &str = "bench-channel-secret";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(dir: &std::path::Path, url: String) -> Config {
    let mut c = Config::default();
    c.data.dir = dir.to_path_buf();
    c.database.url = url;
    c.database.max_connections = 20;
    c.http.listen = "127.0.0.1:0".into();
    c.jobs.enabled = std::env::var("TSUNAGU_BENCH_JOBS").map(|v| v != "0").unwrap_or(true);
    c.log.level = "warn".into();
    c
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Result {
    rps: f64,
    p50: f64,
    p99: f64,
    stored: usize,
}

/// The app with the benchmark's instructor and channel, bound and ready to run.
async fn prepare(cfg: Config) -> anyhow::Result<(tsunagu::app::SharedApp, Server)> {
    let app = build_app(cfg, Arc::new(SystemClock)).await?;
    let input = tsunagu::accounts::SignupInput {
        email: "teacher@example.com",
        name: "講師",
        password: "benchmark-password",
        password_confirm: "benchmark-password",
        plan: tsunagu_core::Plan::Business,
        role: tsunagu_core::Role::Member,
    };
    let account = tsunagu::accounts::sign_up(&app, &input).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    tsunagu::line::save_channel(&app, account.id, CHANNEL, SECRET, "Ubot").await?;
    let server = Server::bind(app.clone()).await?;
    Ok((app, server))
}

async fn serve_until_stdin_closes(dir: &std::path::Path, listen: String) -> anyhow::Result<()> {
    let mut cfg = config(dir, format!("sqlite://{}/line.db", dir.display()));
    cfg.http.listen = listen;
    // Warnings and errors go to stderr (the script keeps them in its log).
    tsunagu::telemetry::init(&cfg.log);
    let (app, server) = prepare(cfg).await?;
    println!("READY http://{}/line/webhook/{CHANNEL} {SECRET}", server.local_addr());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { server.run(s).await });
    let _ = tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())).await;
    // Counted before the server stops (stopping closes the store): how many events are stored,
    // and how long the line.events job took to handle what was left (at most two minutes).
    let started = std::time::Instant::now();
    let (stored, unhandled) = loop {
        let mut c = app.store.read().await?;
        let (stored, unhandled): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN handled_at IS NULL THEN 1 ELSE 0 END), 0)
             FROM line_webhook_events WHERE channel_id = $1",
        )
        .bind(CHANNEL)
        .fetch_one(&mut *c)
        .await?;
        drop(c);
        if unhandled == 0 || started.elapsed() > Duration::from_secs(120) {
            break (stored, unhandled);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("STORED {stored} UNHANDLED {unhandled} AFTER {:.1}s", started.elapsed().as_secs_f64());
    stop.cancel();
    let _ = task.await;
    Ok(())
}

async fn run(cfg: Config, events: usize, concurrency: usize) -> anyhow::Result<Result> {
    let (app, server) = prepare(cfg).await?;
    let url = format!("http://{}/line/webhook/{CHANNEL}", server.local_addr());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { server.run(s).await });
    // Bodies and signatures are made before the clock starts.
    let bodies: Vec<(String, String)> = (0..events)
        .map(|i| {
            let body = serde_json::json!({"destination": "Ubot", "events": [{
                "type": "follow", "mode": "active", "timestamp": 1_700_000_000_000_i64 + i as i64,
                "source": {"type": "user", "userId": format!("U{:032x}", i)},
                "webhookEventId": format!("01BENCH{i:019}"), "deliveryContext": {"isRedelivery": false},
                "replyToken": format!("{:032x}", i), "follow": {"isUnblocked": false}
            }]})
            .to_string();
            let sig = tsunagu_line::signature::sign(SECRET, body.as_bytes());
            (body, sig)
        })
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, sig)) = bodies.get(i) else { break };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("x-line-signature", sig)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status().as_u16(), 200, "event {i}");
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
    let stored = {
        let mut c = app.store.read().await?;
        tsunagu_store::line::events_of(&mut c, CHANNEL).await?.len()
    };
    stop.cancel();
    let _ = task.await;
    Ok(Result { rps: all.len() as f64 / secs, p50: percentile(&all, 0.5), p99: percentile(&all, 0.99), stored })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events = env_num("TSUNAGU_BENCH_EVENTS", 20000);
    let concurrency = env_num("TSUNAGU_BENCH_CONCURRENCY", 32);
    let dir = std::env::temp_dir().join(tsunagu_store::testing::unique_name("tsunagu-line-bench"));
    std::fs::create_dir_all(&dir)?;
    if let Ok(listen) = std::env::var("TSUNAGU_BENCH_SERVE") {
        let r = serve_until_stdin_closes(&dir, listen).await;
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    println!("{events} signed follow events, {concurrency} concurrent clients");
    println!("| backend | requests/s | p50 ms | p99 ms | stored |");
    println!("|---|---|---|---|---|");
    let sqlite = run(config(&dir, format!("sqlite://{}/line.db", dir.display())), events, concurrency).await?;
    println!("| SQLite | {:.0} | {:.2} | {:.2} | {} |", sqlite.rps, sqlite.p50, sqlite.p99, sqlite.stored);
    if let Ok(admin) = std::env::var("TSUNAGU_TEST_PG_URL") {
        let url = tsunagu_store::testing::create_pg_database(&admin, "tsunagu_line_bench").await?;
        let pg = run(config(&dir, url), events, concurrency).await?;
        println!("| PostgreSQL | {:.0} | {:.2} | {:.2} | {} |", pg.rps, pg.p50, pg.p99, pg.stored);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
