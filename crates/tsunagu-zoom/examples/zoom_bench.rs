//! Registrant adds per second through the client against the Zoom sandbox, as a ratio of the
//! configured Light limit (the goal: ≥ 0.9 with zero 429s).
//!
//! `cargo run --release -p tsunagu-zoom --example zoom_bench [adds-per-plan]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use tsunagu_sandbox::zoom::{Plan, S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::limits::{Label, ZoomPlan};
use tsunagu_zoom::model::{EventRef, NewRegistrant};
use tsunagu_zoom::settings::{self, MeetingOptions, Schedule, UrlSender};
use tsunagu_zoom::{Auth, ClientConfig, Organizer, ZoomClient, scopes};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let per_plan: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    println!("plan          limit/s  adds   seconds  adds/s  steady   ratio  429s  peak/s");
    println!(
        "(ratio = steady adds/s ÷ limit; steady = middle 80 % of completions; peak = most requests the sandbox admitted in any 1000 ms)"
    );
    for (plan, sandbox_plan, name) in
        [(ZoomPlan::Pro, Plan::Pro, "Pro"), (ZoomPlan::BusinessPlus, Plan::BusinessPlus, "Business+")]
    {
        let limit = plan.rate(Label::Light).max as usize;
        // About 20 seconds of adds per plan unless told otherwise.
        let adds = if per_plan > 0 { per_plan } else { limit * 20 };
        run(plan, sandbox_plan, name, limit, adds).await;
    }
}

async fn run(plan: ZoomPlan, sandbox_plan: Plan, name: &str, limit: usize, adds: usize) {
    let sb = ZoomSandbox::new();
    sb.set_recording(false);
    let account = format!("bench-{name}");
    sb.add_app(S2sApp {
        account_id: account.clone(),
        client_id: "bench-cid".into(),
        client_secret: "bench-secret".into(),
        scopes: scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: account.clone(),
        id: "bench-owner".into(),
        email: "owner@example.com".into(),
        first_name: "Bench".into(),
        last_name: "Owner".into(),
        licensed: true,
        webinar_license: true,
    });
    sb.set_plan(&account, sandbox_plan);
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.expect("sandbox");
    let mut cfg = ClientConfig::new(&format!("{base}/v2"), &base);
    // ZOOM_BENCH_MARGIN_MS overrides the client's safety margin on each window (default 50).
    if let Some(ms) = std::env::var("ZOOM_BENCH_MARGIN_MS").ok().and_then(|v| v.parse().ok()) {
        cfg.limit_margin_ms = ms;
    }
    let client = Arc::new(ZoomClient::new(cfg));
    let org = Arc::new(Organizer {
        key: "bench".into(),
        auth: Auth::S2s(S2sCredentials {
            account_id: account.clone(),
            client_id: "bench-cid".into(),
            client_secret: "bench-secret".into(),
        }),
        plan,
    });
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
    let m = client.create_meeting(&org, "owner@example.com", &body).await.expect("meeting");
    // Let the Light window of the create's neighbours pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(adds);
    for i in 0..adds {
        let (client, org, gate) = (client.clone(), org.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            let p = NewRegistrant {
                first_name: format!("bench{i}"),
                last_name: String::new(),
                email: format!("bench{i}@example.com"),
                custom_questions: vec![],
                auto_approve: None,
            };
            let r = client.add_registrant(&org, EventRef::Meeting(m.id), &p, false).await;
            (r, Instant::now())
        }));
    }
    let mut failed = 0;
    let mut done = Vec::with_capacity(adds);
    for t in tasks {
        let (r, at) = t.await.expect("task");
        if r.is_err() {
            failed += 1;
        }
        done.push(at);
    }
    let secs = started.elapsed().as_secs_f64();
    // Steady state: the middle 80 % of completions, so the first window's burst does not count.
    done.sort();
    let (lo, hi) = (adds / 10, adds * 9 / 10);
    let steady = (hi - lo) as f64 / done[hi].duration_since(done[lo]).as_secs_f64();
    let stats = sb.stats();
    let rate = adds as f64 / secs;
    let peak = stats.max_in_any_second.get(&(account.clone(), "Light".to_string())).copied().unwrap_or(0);
    println!(
        "{name:<13} {limit:>7}  {adds:>5}  {secs:>7.2}  {rate:>6.1}  {steady:>6.1}  {:>6.3}  {:>4}  {peak:>6}{}",
        steady / limit as f64,
        stats.qps_429,
        if failed > 0 { format!("  ({failed} failed)") } else { String::new() }
    );
}
