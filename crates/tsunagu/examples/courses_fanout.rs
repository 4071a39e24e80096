//! Step-delivery benchmarks (a program, not a test), against the LINE sandbox in a process of its
//! own (this program started again with `TSUNAGU_BENCH_ROLE=sandbox`), so that the peak RSS is
//! the app's alone:
//!
//! 1. 100,000 students due at one instant for the same step: the time until LINE (the sandbox)
//!    has accepted every message, as a ratio of LINE's own floor (multicast 200 requests/s × 500
//!    recipients ⇒ 1 s), with duplicates, 429s and the app process's peak RSS.
//! 2. 10,000 students each due a message of their own (their own course): per-student pushes,
//!    as a ratio of LINE's 2,000 requests/s.
//! 3. Quota spent per student for a 5-step sequence (2 「購読開始直後」, 3 due together on day 1),
//!    with and without the follow's reply token, against one message per step.
//! 4. The webhook intake's p50/p99 while the dispatcher sends 10,000 pushes at full speed, and
//!    with the same paced load (~3,000 signed follow events/s) while it is idle, in one run.
//!
//!   cargo run --release -p tsunagu --example courses_fanout
//!
//! Sizes: TSUNAGU_BENCH_MULTICAST (default 100000), TSUNAGU_BENCH_PUSHES (default 10000).
//! With TSUNAGU_BENCH_PEER_URL (the LINE SDK peer's `/callback`, the peer started with
//! `LINE_CHANNEL_SECRET=bench-fanout-secret`), part 4 puts the same load on the peer too.
//! The dispatcher runs as the `courses.dispatch` job would, in this process, on SQLite.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tsunagu::clock::OffsetClock;
use tsunagu::config::Config;
use tsunagu::startup::build_app;
use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox};
use tsunagu_store::courses::{self, NewStep};

const CHANNEL: &str = "2000000999";
const SECRET: &str = "bench-fanout-secret";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    peak_rss_of("/proc/self/status")
}

fn peak_rss_of(status: &str) -> f64 {
    let s = std::fs::read_to_string(status).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The sandbox process's side: serve the LINE sandbox, print its base URL, then answer one
/// command per line on stdin (see [`Remote`]).
fn sandbox_main() -> anyhow::Result<()> {
    let sb = LineSandbox::new();
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "9".repeat(32)),
        basic_id: "@bench".into(),
        display_name: "ベンチ講座".into(),
        monthly_quota: None,
        login: None,
    });
    sb.set_recording(false);
    let detached = tsunagu_sandbox::Detached::serve(sb.router())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", detached.base)?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split(' ');
        let answer = match words.next().unwrap_or("") {
            "friends" => {
                let channel = words.next().unwrap_or("");
                words.for_each(|u| sb.set_friend(channel, u));
                "ok".to_string()
            }
            "token" => sb.reply_token_for(words.next().unwrap_or(""), words.next().unwrap_or("")),
            "usage" => sb.usage(words.next().unwrap_or("")).to_string(),
            "stats" => {
                let s = sb.stats();
                format!("{} {}", s.requests, s.rate_429)
            }
            "received" => {
                let mut got: HashMap<String, usize> = HashMap::new();
                for r in sb.received() {
                    *got.entry(r.user_id).or_default() += 1;
                }
                serde_json::to_string(&got)?
            }
            other => anyhow::bail!("unknown command {other:?}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

/// The sandbox process, driven over its stdin and stdout.
struct Remote {
    child: Child,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    base: String,
}

impl Remote {
    fn start() -> anyhow::Result<Remote> {
        let mut child = Command::new(std::env::current_exe()?)
            .env("TSUNAGU_BENCH_ROLE", "sandbox")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut base = String::new();
        stdout.read_line(&mut base)?;
        Ok(Remote { child, io: Mutex::new((stdin, stdout)), base: base.trim().to_string() })
    }

    fn ask(&self, command: &str) -> String {
        let mut io = self.io.lock().unwrap();
        writeln!(io.0, "{command}").expect("sandbox process");
        io.0.flush().expect("sandbox process");
        let mut answer = String::new();
        io.1.read_line(&mut answer).expect("sandbox process");
        answer.trim_end().to_string()
    }

    fn set_friends(&self, users: &[String]) {
        self.ask(&format!("friends {CHANNEL} {}", users.join(" ")));
    }

    fn reply_token_for(&self, user: &str) -> String {
        self.ask(&format!("token {CHANNEL} {user}"))
    }

    fn usage(&self) -> i64 {
        self.ask(&format!("usage {CHANNEL}")).parse().unwrap_or(0)
    }

    /// Requests and real 429s so far.
    fn stats(&self) -> (u64, u64) {
        let a = self.ask("stats");
        let mut n = a.split(' ').map(|x| x.parse().unwrap_or(0));
        (n.next().unwrap_or(0), n.next().unwrap_or(0))
    }

    fn received(&self) -> HashMap<String, usize> {
        serde_json::from_str(&self.ask("received")).unwrap_or_default()
    }

    fn peak_rss_mib(&self) -> f64 {
        peak_rss_of(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    app: tsunagu::app::SharedApp,
    clock: Arc<OffsetClock>,
    sb: Remote,
    account: tsunagu_core::AccountId,
    _dir: tsunagu_store::testing::TempDir,
}

async fn world() -> anyhow::Result<World> {
    let sb = Remote::start()?;
    let dir = tsunagu_store::testing::TempDir::new("tsunagu-fanout-bench");
    let mut cfg = Config::default();
    cfg.data.dir = dir.path().to_path_buf();
    cfg.database.url = format!("sqlite://{}/bench.db", dir.path().display());
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.jobs.enabled = false;
    cfg.log.level = "warn".into();
    cfg.line.api_base_url = sb.base.clone();
    let clock = Arc::new(OffsetClock::default());
    let app = build_app(cfg, clock.clone()).await?;
    let input = tsunagu::accounts::SignupInput {
        email: "teacher@example.com",
        name: "講師",
        password: "benchmark-password",
        password_confirm: "benchmark-password",
        plan: tsunagu_core::Plan::Business,
        role: tsunagu_core::Role::Member,
    };
    let account = tsunagu::accounts::sign_up(&app, &input).await.map_err(|e| anyhow::anyhow!("{e}"))?.id;
    tsunagu::line::save_channel(&app, account, CHANNEL, SECRET, "Ubot").await?;
    Ok(World { app, clock, sb, account, _dir: dir })
}

fn user(i: usize, salt: u64) -> String {
    format!("U{:032x}", (salt << 32) + i as u64)
}

/// `n` friends who started `course` at `now` (due then); their LINE user ids.
async fn students(w: &World, course: impl Fn(usize) -> i64, n: usize, salt: u64) -> anyhow::Result<Vec<String>> {
    let now = w.app.now();
    let mut users = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut tx = w.app.store.begin().await?;
        for &i in chunk {
            let u = user(i, salt);
            let student = courses::create_student(&mut tx, w.account, None, None, "", now).await?;
            let sub = courses::subscribe(&mut tx, course(i), student, now).await?;
            courses::start(&mut tx, sub, &u, now, Some(now), None).await?;
            users.push(u);
        }
        tx.commit().await?;
        w.sb.set_friends(&users[users.len() - chunk.len()..]);
    }
    Ok(users)
}

/// A step: its text, its timing (`None`: 購読開始直後; else day and minute) and its 通目.
type StepSpec<'a> = (&'a str, Option<(i64, i64)>, i64);

async fn new_course(w: &World, steps: &[StepSpec<'_>]) -> anyhow::Result<i64> {
    let mut tx = w.app.store.begin().await?;
    let key = tsunagu::crypto::random_token(12);
    let id = courses::create_course(&mut tx, w.account, &key, "ベンチ", "Asia/Tokyo", 1).await?;
    courses::set_channel(&mut tx, id, Some(CHANNEL), 1).await?;
    for (body, timing, position) in steps {
        let s = NewStep { kind: "text", body, media_id: None, timing: *timing, position: *position, valid_from: 0 };
        courses::add_step(&mut tx, id, &s, 1).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Run the dispatcher until nothing is due now; seconds taken.
async fn dispatch(w: &World) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    loop {
        tsunagu::courses::dispatch::run(&w.app, "bench").await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut c = w.app.store.read().await?;
        let next = courses::next_due(&mut c).await?;
        if next.is_none_or(|n| n > w.app.now()) {
            return Ok(t0.elapsed().as_secs_f64());
        }
    }
}

fn duplicates(sb: &Remote, users: &[String], per_user: usize) -> usize {
    let got = sb.received();
    users.iter().map(|u| got.get(u).copied().unwrap_or(0).saturating_sub(per_user)).sum::<usize>()
        + users.iter().filter(|u| got.get(*u).copied().unwrap_or(0) < per_user).count()
}

fn main() -> anyhow::Result<()> {
    if std::env::var("TSUNAGU_BENCH_ROLE").as_deref() == Ok("sandbox") {
        return sandbox_main();
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let multicast_n = env_num("TSUNAGU_BENCH_MULTICAST", 100_000);
    let push_n = env_num("TSUNAGU_BENCH_PUSHES", 10_000);
    let w = world().await?;

    // 1. One step, everyone due at once.
    let course = new_course(&w, &[("ようこそ", None, 1)]).await?;
    let t0 = Instant::now();
    let users = students(&w, |_| course, multicast_n, 1).await?;
    eprintln!("{multicast_n} students made in {:.1} s", t0.elapsed().as_secs_f64());
    let secs = dispatch(&w).await?;
    let (requests, rate_429) = w.sb.stats();
    let floor = (multicast_n as f64 / 500.0).ceil() / 200.0;
    println!(
        "multicast: {multicast_n} students, {:.2} s until all accepted (LINE's floor {floor:.2} s, ratio {:.2}); missing or duplicated {}, 429s {}, requests {}, peak RSS {:.0} MiB (the sandbox process: {:.0} MiB)",
        secs,
        secs / floor,
        duplicates(&w.sb, &users, 1),
        rate_429,
        requests,
        peak_rss_mib(),
        w.sb.peak_rss_mib()
    );

    // 2. Each student a message of their own: one course each.
    let mut own = Vec::with_capacity(push_n);
    for i in 0..push_n {
        own.push(new_course(&w, &[(&format!("あなた専用のメッセージ {i}"), None, 1)]).await?);
    }
    let (before, before_429) = w.sb.stats();
    let users2 = students(&w, |i| own[i], push_n, 2).await?;
    let secs = dispatch(&w).await?;
    let (requests, rate_429) = w.sb.stats();
    let floor = push_n as f64 / 2000.0;
    println!(
        "pushes: {push_n} students, {:.2} s until all accepted (LINE's floor {floor:.2} s at 2,000 requests/s, ratio {:.2}); missing or duplicated {}, 429s {}, requests {}, peak RSS {:.0} MiB",
        secs,
        secs / floor,
        duplicates(&w.sb, &users2, 1),
        rate_429 - before_429,
        requests - before,
        peak_rss_mib()
    );

    // 3. Quota per student: 2 at the start, 3 together on day 1 at 09:00.
    let seq = new_course(
        &w,
        &[("1", None, 1), ("2", None, 2), ("3", Some((1, 540)), 1), ("4", Some((1, 540)), 2), ("5", Some((1, 540)), 3)],
    )
    .await?;
    for (label, reply, salt) in [("with the follow's reply token", true, 3u64), ("without it", false, 4)] {
        let used_before = w.sb.usage();
        let n = 100;
        let now = w.app.now();
        let mut tx = w.app.store.begin().await?;
        for i in 0..n {
            let u = user(i, salt);
            w.sb.set_friends(std::slice::from_ref(&u));
            let token = w.sb.reply_token_for(&u);
            let student = courses::create_student(&mut tx, w.account, None, None, "", now).await?;
            let sub = courses::subscribe(&mut tx, seq, student, now).await?;
            let r = reply.then(|| (token.as_str(), now + 50_000));
            courses::start(&mut tx, sub, &u, now, Some(now), r).await?;
        }
        tx.commit().await?;
        dispatch(&w).await?;
        w.clock.advance(2 * 86_400_000);
        dispatch(&w).await?;
        let used = w.sb.usage() - used_before;
        println!(
            "quota ({label}): {:.2} messages per student for 5 steps (one message per step: 5.00)",
            used as f64 / n as f64
        );
    }

    // 4. The intake while the dispatcher runs.
    intake_while_dispatching(&w, push_n).await?;
    Ok(())
}

/// Paced signed follow events (`clients` connections, each waiting 10 ms between requests, as
/// `scripts/bench-intake` paces its load) to the app's webhook until `stop`; latencies in ms.
async fn paced_webhooks(
    url: String,
    clients: usize,
    salt: u64,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<f64>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, next, stop) = (client.clone(), url.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.is_cancelled() {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = serde_json::json!({"destination": "Ubot", "events": [{
                    "type": "follow", "mode": "active", "timestamp": 1_700_000_000_000_i64 + i as i64,
                    "source": {"type": "user", "userId": format!("U{:032x}", (salt << 40) + i)},
                    "webhookEventId": format!("01FAN{salt:02}{i:019}"), "deliveryContext": {"isRedelivery": false},
                    "replyToken": format!("{:032x}", i), "follow": {"isUnblocked": false}
                }]})
                .to_string();
                let sig = tsunagu_line::signature::sign(SECRET, body.as_bytes());
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("x-line-signature", sig)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{url}: {e} (is it listening?)"))?;
                anyhow::ensure!(r.status().as_u16() == 200, "{url}: event {i} answered {}", r.status());
                r.bytes().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(all)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0)
}

async fn intake_while_dispatching(w: &World, n: usize) -> anyhow::Result<()> {
    let server = tsunagu::startup::Server::bind(w.app.clone()).await?;
    let url = format!("http://{}/line/webhook/{CHANNEL}", server.local_addr());
    let stop_server = tokio_util::sync::CancellationToken::new();
    let s = stop_server.clone();
    let task = tokio::spawn(async move { server.run(s).await });
    let clients = 32;
    let mut own = Vec::with_capacity(n);
    for i in 0..n {
        own.push(new_course(w, &[(&format!("受講生ごとのメッセージ {i}"), None, 1)]).await?);
    }
    let users = students(w, |i| own[i], n, 5).await?;
    // Idle: the same load for as long as the dispatch below takes (measured first, then idle).
    let (before, _) = w.sb.stats();
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(paced_webhooks(url.clone(), clients, 6, stop.clone()));
    let secs = dispatch(w).await?;
    stop.cancel();
    let busy = load.await??;
    let (after, _) = w.sb.stats();
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(paced_webhooks(url, clients, 7, stop.clone()));
    tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
    stop.cancel();
    let idle = load.await??;
    // The LINE SDK peer (`../shared/bench-peers/line-webhook-sdk`, started with this program's
    // channel secret) under the same load from the same client, when its URL is given.
    let mut runs = vec![("while the dispatcher sends", busy), ("with the dispatcher idle", idle)];
    if let Ok(peer) = std::env::var("TSUNAGU_BENCH_PEER_URL") {
        let stop = tokio_util::sync::CancellationToken::new();
        let load = tokio::spawn(paced_webhooks(peer, clients, 8, stop.clone()));
        tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
        stop.cancel();
        runs.push(("the LINE SDK peer, same load", load.await??));
    }
    for (label, lat) in &runs {
        println!(
            "intake ({label}; {clients} clients, 10 ms apart, {secs:.1} s): {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            lat.len() as f64 / secs,
            percentile(lat, 0.5),
            percentile(lat, 0.99)
        );
    }
    println!(
        "… meanwhile the dispatcher: {} pushes in {secs:.2} s, missing or duplicated {}",
        after - before,
        duplicates(&w.sb, &users, 1)
    );
    stop_server.cancel();
    let _ = task.await;
    Ok(())
}
