//! Per-second limits shared through PostgreSQL (a program, not a test): one and then two
//! "processes" (each its own store pool, `SharedRate` and client, as `serve` processes have)
//! push LINE messages and add Zoom registrants against the sandboxes, each on its own thread.
//! Reports the steady rate of all of them together as a ratio of the limit, the sandboxes'
//! 429s and the most requests they saw in any second.
//!
//! `eval "$(scripts/pg-start /tmp/bench-pg 55433)"; cargo run --release -p tsunagu --example shared_limits`

use std::sync::Arc;
use std::time::Instant;

use tsunagu::limits::SharedRate;
use tsunagu_line::client::{RetryKey, TokenKind};
use tsunagu_line::message::Message;
use tsunagu_line::{Channel, LineClient, LineConfig};
use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox};
use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_store::{Store, StoreOptions};
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::model::{EventRef, NewRegistrant};
use tsunagu_zoom::settings::{self, MeetingOptions, Schedule, UrlSender};
use tsunagu_zoom::{Auth, ClientConfig, Organizer, ZoomClient};

const CHANNEL: &str = "2000000001";
const SECRET: &str = "bench-secret";
const ACCOUNT: &str = "bench-account";

fn steady(mut done: Vec<Instant>) -> f64 {
    done.sort();
    let (lo, hi) = (done.len() / 10, done.len() * 9 / 10);
    (hi - lo) as f64 / done[hi].duration_since(done[lo]).as_secs_f64()
}

async fn stores(url: &str, n: usize) -> Vec<Store> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Store::open(url, &StoreOptions::default()).await.expect("open the database"));
    }
    out
}

async fn line(url: &str, processes: usize, pushes: usize) {
    let sb = LineSandbox::new();
    sb.set_recording(false);
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "b".repeat(32)),
        basic_id: "@bench".into(),
        display_name: "bench".into(),
        monthly_quota: None,
        login: None,
    });
    let users: Vec<String> = (0..pushes).map(|_| sb.new_user_id()).collect();
    for u in &users {
        sb.set_friend(CHANNEL, u);
    }
    let detached = tsunagu_sandbox::Detached::serve(sb.router()).expect("sandbox");
    let ch = Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: TokenKind::Stateless };
    let mut clients = Vec::new();
    for store in stores(url, processes).await {
        let client =
            LineClient::new(LineConfig::new(&detached.base)).with_rate_budget(Arc::new(SharedRate::new(store)));
        client.token(&ch).await.expect("token");
        clients.push(Arc::new(client));
    }
    let gate: Vec<_> = (0..processes).map(|_| Arc::new(tokio::sync::Semaphore::new(256))).collect();
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let p = i % processes;
        let (client, ch, gate, u) = (clients[p].clone(), ch.clone(), gate[p].clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            client.push(&ch, &u, &[Message::text("bench")], &RetryKey::new(client.now_ms())).await.expect("push");
            Instant::now()
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.expect("task"));
    }
    let rate = steady(done);
    let s = sb.stats();
    let peak = s.max_in_any_second.get(&(CHANNEL.to_string(), "push".to_string())).copied().unwrap_or(0);
    println!(
        "| LINE push | 2000/s | {processes} | {pushes} | {rate:.0} | {:.3} | {} | {peak} |",
        rate / 2000.0,
        s.rate_429
    );
}

async fn zoom(url: &str, processes: usize, adds: usize) {
    let sb = ZoomSandbox::new();
    sb.set_recording(false);
    sb.add_app(S2sApp {
        account_id: ACCOUNT.into(),
        client_id: "bench-cid".into(),
        client_secret: "bench-secret".into(),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: ACCOUNT.into(),
        id: "bench-owner".into(),
        email: "owner@example.com".into(),
        first_name: "Bench".into(),
        last_name: "Owner".into(),
        licensed: true,
        webinar_license: true,
    });
    let detached = tsunagu_sandbox::Detached::serve(sb.router()).expect("sandbox");
    let org = Arc::new(Organizer {
        key: "bench".into(),
        auth: Auth::S2s(S2sCredentials {
            account_id: ACCOUNT.into(),
            client_id: "bench-cid".into(),
            client_secret: "bench-secret".into(),
        }),
        plan: ZoomPlan::Pro,
    });
    let mut clients = Vec::new();
    for store in stores(url, processes).await {
        let cfg = ClientConfig::new(&format!("{}/v2", detached.base), &detached.base);
        clients.push(Arc::new(ZoomClient::new(cfg).with_rate_budget(Arc::new(SharedRate::new(store)))));
    }
    let (body, _) = settings::meeting(
        &Schedule {
            topic: "bench",
            start: jiff::civil::date(2030, 1, 1).at(10, 0, 0, 0),
            time_zone: "Asia/Tokyo",
            duration_minutes: 60,
        },
        &MeetingOptions {
            waiting_room: false,
            join_before_host: false,
            registration: true,
            url_sender: UrlSender::Tsunagu,
            participant_video: false,
            participant_mic: false,
        },
    )
    .expect("settings");
    let m = clients[0].create_meeting(&org, "owner@example.com", &body).await.expect("meeting");
    let gate: Vec<_> = (0..processes).map(|_| Arc::new(tokio::sync::Semaphore::new(32))).collect();
    let mut tasks = Vec::new();
    for i in 0..adds {
        let p = i % processes;
        let (client, org, gate) = (clients[p].clone(), org.clone(), gate[p].clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            let who = NewRegistrant {
                first_name: format!("bench{i}"),
                last_name: String::new(),
                email: format!("bench{i}@example.com"),
                custom_questions: vec![],
                auto_approve: None,
            };
            client.add_registrant(&org, EventRef::Meeting(m.id), &who, false).await.expect("add");
            Instant::now()
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.expect("task"));
    }
    let rate = steady(done);
    let s = sb.stats();
    let peak = s.max_in_any_second.get(&(ACCOUNT.to_string(), "Light".to_string())).copied().unwrap_or(0);
    println!(
        "| Zoom add (Pro, Light) | 30/s | {processes} | {adds} | {rate:.1} | {:.3} | {} | {peak} |",
        rate / 30.0,
        s.qps_429
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(admin) = tsunagu_store::testing::pg_admin_url() else {
        eprintln!("set TSUNAGU_TEST_PG_URL (scripts/pg-start prints it)");
        std::process::exit(2);
    };
    println!("| calls | limit | processes | sent | steady/s together | ratio | 429 | most in any second |");
    println!("|---|---|---|---|---|---|---|---|");
    for processes in [1, 2] {
        let url = tsunagu_store::testing::create_pg_database(&admin, "shared_limits").await.expect("database");
        line(&url, processes, 10_000).await;
        zoom(&url, processes, 600).await;
    }
}
