//! 500 card checkouts completed within a minute, so Stripe's webhooks arrive in a burst (a
//! program, not a test). One process holds the app (HTTP and job workers, SQLite), the Zoom
//! sandbox (Pro plan) and the Stripe sandbox (test mode, its own thread), an organizer with a
//! priced meeting using registration and Stripe connected, then N applications with one
//! companion each, each sent to Stripe Checkout; then every checkout is paid at once and no one
//! comes back (the tab closed): the webhooks alone fulfil the orders. Reports:
//! - fulfilments per second (orders paid → application completed), and as a ratio of Stripe's
//!   test-mode limit (25 requests/s: each fulfilment re-reads its session once);
//! - the time from the first payment until the last Zoom registration and the last join mail;
//! - duplicates: registrants at Zoom per email, join mails per address (goal: exactly one each);
//! - Stripe and Zoom 429s, and the process's peak RSS.
//!
//! `cargo run --release -p tsunagu --example payments_burst` (N: `BENCH_CHECKOUTS`, 500).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tsunagu::clock::SystemClock;
use tsunagu::config::Config;
use tsunagu::startup::{Server, build_app};
use tsunagu_sandbox::stripe::{SandboxAccount, StripeSandbox};
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

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::var("BENCH_CHECKOUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
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
    let stripe_sb = StripeSandbox::new();
    stripe_sb.set_recording(false);
    let secret = stripe_sb.add_account(SandboxAccount {
        id: "acct_1Bench".into(),
        display_name: "ベンチマーク".into(),
        email: EMAIL.into(),
        konbini: true,
    });
    let stripe = tsunagu_sandbox::Detached::serve(stripe_sb.router())?;
    stripe_sb.set_base(&stripe.base);

    let dir = tsunagu_store::testing::TempDir::new("tsunagu-payments-bench");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cfg = Config::default();
    cfg.data.dir = dir.path().to_path_buf();
    cfg.database.url = format!("sqlite://{}/payments.db", dir.path().display());
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.http.public_url = format!("http://127.0.0.1:{port}");
    cfg.http.manager_url = cfg.http.public_url.clone();
    cfg.log.level = "warn".into();
    cfg.zoom.api_base_url = format!("{}/v2", zoom.base);
    cfg.zoom.oauth_base_url = zoom.base.clone();
    cfg.stripe.api_base_url = stripe.base.clone();
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

    // The organizer: Zoom, Stripe, the legal notice, a priced event and its meeting.
    let org = client();
    post(&org, &base, "/login", "/login", &[("email", EMAIL), ("password", PASSWORD)]).await;
    let basic = [
        ("auth_method", "s2s"),
        ("zoom_account_id", ACC),
        ("client_id", "bench-cid"),
        ("client_secret", "bench-secret"),
    ];
    post(&org, &base, "/settings/basic", "/settings/basic", &basic).await;
    let r = post(&org, &base, "/settings/payments", "/settings/payments", &[("secret_key", secret.as_str())]).await;
    assert_eq!(r.status(), 303, "Stripe connected");
    let legal: Vec<(&str, &str)> = tsunagu::payments::legal::FIELDS.iter().map(|(k, _, ex)| (*k, *ex)).collect();
    post(&org, &base, "/settings/legal", "/settings/legal", &legal).await;
    let capacity = (n * 2).to_string();
    let event = [
        ("title", "ベンチマーク有料説明会"),
        ("description", ""),
        ("starts_at", "2030-01-20T19:00"),
        ("ends_at", "2030-01-20T21:00"),
        ("capacity", capacity.as_str()),
        ("companions_max", "1"),
        ("apply_from", ""),
        ("apply_until", ""),
        ("state", "published"),
        ("payment_methods_shown", "1"),
        ("payment_methods", "card"),
        ("konbini_days", "3"),
        ("ticket_id_0", ""),
        ("ticket_name_0", "一般"),
        ("ticket_price_0", "3000"),
        ("ticket_limit_0", ""),
    ];
    let r = post(&org, &base, "/events/new", "/events/new", &event).await;
    assert_eq!(r.status(), 303, "event created");
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

    // N applications, each sent to Stripe Checkout.
    let shared = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (gate, base, key, c) = (gate.clone(), base.clone(), key.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let r = c.get(format!("{base}/e/{key}/apply")).send().await.unwrap();
            let cookies = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
                .collect::<Vec<_>>()
                .join("; ");
            let html = r.text().await.unwrap();
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
            let r = c.post(format!("{base}/e/{key}/apply")).header("cookie", cookies).form(&form).send().await.unwrap();
            assert_eq!(r.status(), 303, "application {i}");
            let to = r.headers()["location"].to_str().unwrap().to_string();
            to.rsplit('/').next().unwrap().to_string()
        }));
    }
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(t.await?);
    }
    assert!(sessions.iter().all(|s| s.starts_with("cs_test_")), "every application went to Stripe Checkout");

    // Everyone pays at once and closes the tab: the webhooks alone fulfil the orders.
    let started = Instant::now();
    for s in &sessions {
        stripe_sb.pay_card(s).map_err(|e| anyhow::anyhow!(e))?;
    }
    let paid_in = started.elapsed();
    let store = app.store.clone();
    let event_id: i64 = id.parse()?;
    let (mut fulfilled_at, mut last_count) = (Vec::new(), 0usize);
    let mailed_at = loop {
        let mut c = store.read().await?;
        let completed: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM applications WHERE event_id = $1 AND status = 'completed'")
                .bind(event_id)
                .fetch_one(&mut *c)
                .await?;
        for _ in last_count..completed as usize {
            fulfilled_at.push(started.elapsed().as_secs_f64());
        }
        last_count = completed as usize;
        let (_, _, mailed) = tsunagu_store::applications::progress(&mut c, event_id).await?;
        if mailed as usize >= n * 2 {
            break started.elapsed();
        }
        drop(c);
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("not everyone was mailed within 10 minutes ({last_count} fulfilled)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let registered_at = loop {
        if sb.registrants(meeting).len() >= n * 2 {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (lo, hi) = (fulfilled_at.len() / 10, (fulfilled_at.len() * 9 / 10).min(fulfilled_at.len() - 1));
    let rate = (hi - lo) as f64 / (fulfilled_at[hi] - fulfilled_at[lo]).max(1e-3);
    // Duplicates: registrants per email at Zoom, join mails per address.
    let mut per_email: HashMap<String, usize> = HashMap::new();
    for r in sb.registrants(meeting) {
        *per_email.entry(r.email.to_lowercase()).or_default() += 1;
    }
    let dup_registrants = per_email.values().filter(|v| **v > 1).count();
    let mails: Vec<(String, i64)> = {
        let mut c = store.read().await?;
        sqlx::query_as("SELECT to_address, COUNT(*) FROM mails GROUP BY to_address").fetch_all(&mut *c).await?
    };
    let people_mails: Vec<_> = mails.iter().filter(|(to, _)| to.starts_with("rep") || to.starts_with("comp")).collect();
    let dup_mails = people_mails.iter().filter(|(_, k)| *k > 1).count();
    let deliveries = stripe_sb.deliveries().len();
    let stored: i64 = {
        let mut c = store.read().await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events").fetch_one(&mut *c).await?
    };
    let ss = stripe_sb.stats();
    let zs = sb.stats();
    println!(
        "checkouts: {n} (each with one companion: {} people), all paid within {:.1} s",
        n * 2,
        paid_in.as_secs_f64()
    );
    println!("webhook deliveries: {deliveries}, events stored: {stored}");
    println!(
        "fulfilments: {rate:.1}/s over the middle 80 % = {:.2} of Stripe's test-mode limit (25 requests/s; one session read per fulfilment)",
        rate / 25.0
    );
    println!("last order fulfilled {:.1} s after the first payment", fulfilled_at.last().copied().unwrap_or(0.0));
    println!(
        "last Zoom registration {:.1} s, last join mail queued {:.1} s after the first payment",
        registered_at.as_secs_f64(),
        mailed_at.as_secs_f64()
    );
    println!(
        "duplicates: {dup_registrants} emails registered twice at Zoom, {dup_mails} addresses mailed twice ({} addresses mailed)",
        people_mails.len()
    );
    println!("Stripe 429s {}, Zoom 429s per-second {} daily {}", ss.rate_429, zs.qps_429, zs.daily_429);
    println!("peak RSS: {:.0} MiB (app, sandboxes and clients in one process)", peak_rss_mib());
    stop.cancel();
    let _ = running.await;
    Ok(())
}
