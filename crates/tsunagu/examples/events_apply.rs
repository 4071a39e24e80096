//! Applications through the public form at full speed (a program, not a test): the app (HTTP
//! and job workers) and the Zoom sandbox in one process, an organizer with a meeting using
//! registration, then N applications with one companion each, sent by concurrent clients.
//! Reports:
//! - registrant adds per second at Zoom, over the middle 80 % of them, as a ratio of the Pro
//!   plan's Light limit (30/s), and the sandbox's 429s (goal: ratio ≥ 0.9, no 429);
//! - the time from the first application until the last join mail is queued;
//! - the application form page's and the application POST's p50/p99 while the burst runs
//!   (goal: p99 < 50 ms), and how much CPU the hypervisor took meanwhile (steal);
//! - the process's peak RSS (app, sandbox and clients together).
//!
//! `cargo run --release -p tsunagu --example events_apply` (N: `BENCH_APPLICATIONS`, 1000;
//! clients sending at once: `BENCH_CLIENTS`, 16).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tsunagu::clock::SystemClock;
use tsunagu::config::Config;
use tsunagu::startup::{Server, build_app};
use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};

const ACC: &str = "bench-zoom-account";
const EMAIL: &str = "organizer@example.com";
const PASSWORD: &str = "benchmark-password";

fn field(html: &str, name: &str) -> String {
    let key = format!(r#"name="{name}" value=""#);
    let at = html.find(&key).unwrap_or_else(|| panic!("{name} in the page")) + key.len();
    html[at..].split('"').next().unwrap_or_default().to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

async fn post(c: &reqwest::Client, base: &str, page: &str, action: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let html = c.get(format!("{base}{page}")).send().await.unwrap().text().await.unwrap();
    let token = field(&html, "csrf_token");
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(form);
    c.post(format!("{base}{action}")).form(&all).send().await.unwrap()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// (this process's user+system ticks, the machine's total and steal ticks) from /proc.
fn cpu_ticks() -> (f64, f64, f64) {
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = me.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    let own = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    let all = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> =
        all.lines().next().unwrap_or_default().split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0.0)).collect();
    (own, cpu.iter().take(8).sum(), cpu.get(7).copied().unwrap_or(0.0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::var("BENCH_APPLICATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let sb = ZoomSandbox::new();
    sb.set_recording(false);
    sb.add_app(S2sApp {
        account_id: ACC.into(),
        client_id: "bench-cid".into(),
        client_secret: "bench-secret".into(),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: ACC.into(),
        id: "bench-owner".into(),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    let zoom = tsunagu_sandbox::Detached::serve(sb.router())?;

    let dir = tsunagu_store::testing::TempDir::new("tsunagu-events-bench");
    let mut cfg = Config::default();
    cfg.data.dir = dir.path().to_path_buf();
    cfg.database.url = format!("sqlite://{}/events.db", dir.path().display());
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.log.level = "warn".into();
    cfg.zoom.api_base_url = format!("{}/v2", zoom.base);
    cfg.zoom.oauth_base_url = zoom.base.clone();
    tsunagu::telemetry::init(&cfg.log);
    let app = build_app(cfg, Arc::new(SystemClock)).await?;
    let input = tsunagu::accounts::SignupInput {
        email: EMAIL,
        name: "主催者",
        password: PASSWORD,
        password_confirm: PASSWORD,
        plan: tsunagu_core::Plan::Business,
        role: tsunagu_core::Role::Member,
    };
    tsunagu::accounts::sign_up(&app, &input).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let server = Server::bind(app.clone()).await?;
    let base = format!("http://{}", server.local_addr());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let running = tokio::spawn(async move { server.run(s).await });

    // The organizer: log in, 基本設定, an event for everyone, its meeting with registration.
    let org = client();
    post(&org, &base, "/login", "/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    let basic = [
        ("auth_method", "s2s"),
        ("zoom_account_id", ACC),
        ("client_id", "bench-cid"),
        ("client_secret", "bench-secret"),
    ];
    post(&org, &base, "/settings/basic", "/settings/basic", &basic).await;
    let capacity = (n * 2).to_string();
    let event = [
        ("title", "ベンチマーク説明会"),
        ("description", ""),
        ("starts_at", "2030-01-20T19:00"),
        ("ends_at", "2030-01-20T21:00"),
        ("capacity", capacity.as_str()),
        ("companions_max", "1"),
        ("apply_from", ""),
        ("apply_until", ""),
        ("state", "published"),
        ("ticket_id_0", ""),
        ("ticket_name_0", "一般"),
        ("ticket_price_0", "0"),
        ("ticket_limit_0", ""),
    ];
    let r = post(&org, &base, "/events/new", "/events/new", &event).await;
    let id = r.headers()["location"].to_str()?.trim_start_matches("/events/").to_string();
    let zoom_page = format!("/events/{id}/zoom");
    let settings = [
        ("use", "on"),
        ("kind", "meeting"),
        ("start", "2030-01-20T19:00"),
        ("duration", "120"),
        ("m_registration", "on"),
    ];
    post(&org, &base, &zoom_page, &zoom_page, &settings).await;
    while sb.events().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let meeting = sb.events()[0].id;
    let page = org.get(format!("{base}/events/{id}")).send().await?.text().await?;
    let at = page.find("/e/").expect("a public URL") + 3;
    let key = page[at..].split(['"', '<']).next().unwrap_or_default().to_string();

    // The burst, and a watcher that notes when each registrant appears at Zoom.
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    let watch_sb = sb.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = 0;
        while last < n * 2 {
            let now = watch_sb.registrants(meeting).len();
            for _ in last..now {
                seen.push(started.elapsed().as_secs_f64());
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    });
    let clients: usize = std::env::var("BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let gate = Arc::new(tokio::sync::Semaphore::new(clients));
    let shared = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (gate, base, key, c) = (gate.clone(), base.clone(), key.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            // Each participant has their own cookies, carried by hand over one shared pool of
            // connections: a client of its own per participant would load the system's root
            // certificates each time, which took 40 % of this machine's CPU from the server.
            let t = Instant::now();
            let r = c.get(format!("{base}/e/{key}/apply")).send().await.unwrap();
            let cookies = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
                .collect::<Vec<_>>()
                .join("; ");
            let html = r.text().await.unwrap();
            let page_ms = t.elapsed().as_secs_f64() * 1000.0;
            let (token, submit, ticket) =
                (field(&html, "csrf_token"), field(&html, "submit_key"), field(&html, "ticket"));
            let (rep, comp) = (format!("rep{i}@example.com"), format!("comp{i}@example.com"));
            let form = [
                ("csrf_token", token.as_str()),
                ("submit_key", submit.as_str()),
                ("ticket", ticket.as_str()),
                ("companions", "1"),
                ("name_kanji_0", "山田 太郎"),
                ("name_kana_0", "ヤマダ タロウ"),
                ("email_0", rep.as_str()),
                ("phone_0", "090-1234-5678"),
                ("name_kanji_1", "山田 花子"),
                ("email_1", comp.as_str()),
            ];
            let t = Instant::now();
            let r = c.post(format!("{base}/e/{key}/apply")).header("cookie", cookies).form(&form).send().await.unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(r.status(), 303, "application {i}");
            (page_ms, ms)
        }));
    }
    let (mut pages, mut latencies) = (Vec::new(), Vec::new());
    for t in tasks {
        let (page, post) = t.await?;
        pages.push(page);
        latencies.push(post);
    }
    let applied = started.elapsed();
    let cpu_after = cpu_ticks();
    let store = app.store.clone();
    let event_id: i64 = id.parse()?;
    let mailed_at = loop {
        let mut c = store.read().await?;
        let (_, _, mailed) = tsunagu_store::applications::progress(&mut c, event_id).await?;
        if mailed as usize >= n * 2 {
            break started.elapsed();
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seen = watcher.await?;
    let (lo, hi) = (seen.len() / 10, seen.len() * 9 / 10);
    let rate = (hi - lo) as f64 / (seen[hi] - seen[lo]);
    latencies.sort_by(f64::total_cmp);
    pages.sort_by(f64::total_cmp);
    let stats = sb.stats();
    println!("applications: {n} (each with one companion: {} people)", n * 2);
    println!("all applications answered after {:.1} s", applied.as_secs_f64());
    println!(
        "application form page (GET): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&pages, 0.5),
        percentile(&pages, 0.99)
    );
    println!(
        "application POST: p50 {:.1} ms, p99 {:.1} ms (during the burst, {clients} clients at once, {:.0} applications/s)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        n as f64 / applied.as_secs_f64()
    );
    let (own, all, steal) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1, cpu_after.2 - cpu_before.2);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    println!(
        "during the burst: this process used {:.0} % of the machine's {cores} cores; the hypervisor took {:.0} % (steal)",
        own / all.max(1.0) * 100.0,
        steal / all.max(1.0) * 100.0
    );
    println!(
        "registrant adds at Zoom: {rate:.1}/s over the middle 80 % = {:.2} of the Pro Light limit (30/s)",
        rate / 30.0
    );
    println!("Zoom 429s: per-second {}, daily {}", stats.qps_429, stats.daily_429);
    println!("last join mail queued {:.1} s after the first application", mailed_at.as_secs_f64());
    println!("peak RSS: {:.0} MiB (app, sandbox and clients in one process)", peak_rss_mib());
    stop.cancel();
    let _ = running.await;
    Ok(())
}
