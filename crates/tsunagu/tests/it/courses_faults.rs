//! 10,000 students due at once for the same messages, LINE answering some requests with 5xx
//! and limiting multicasts to a few a second, and the `serve` process killed with SIGKILL in
//! the middle of the fan-out and started again: every student gets each message exactly once.
//! On SQLite with one process; on PostgreSQL with two `serve` processes sharing the fan-out
//! (one of them killed).

use std::collections::HashMap;
use std::time::Duration;

use tsunagu_sandbox::line::{LineChannelSpec, LineFaults, LineSandbox};
use tsunagu_store::courses::{self, NewStep};
use tsunagu_store::{Store, StoreOptions};

use crate::helpers::{Db, Process, TempDir, TestApp, database_url, test_config};

const CHANNEL: &str = "2000000555";
const SECRET: &str = "55c0c0fdd1d2a3b4c5d6e7f8091a2b3c";
const STUDENTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_due_at_once_survive_a_killed_process_sqlite() {
    ten_thousand_due_at_once_survive_a_killed_process(Db::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_due_at_once_survive_a_killed_process_two_serve_on_postgres() {
    ten_thousand_due_at_once_survive_a_killed_process(Db::Postgres, 2).await;
}

async fn ten_thousand_due_at_once_survive_a_killed_process(db: Db, processes: usize) {
    let dir = TempDir::new("tsunagu-fanout");
    let Some(url) = database_url(db, dir.path()).await else { return };
    let key_file = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&key_file).unwrap();
    let sb = LineSandbox::new();
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "5".repeat(32)),
        basic_id: "@fanout".into(),
        display_name: "一斉配信".into(),
        monthly_quota: None,
        login: None,
    });
    let (line, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();

    // The course, its channel and 10,000 friends who started it, all due now: made by an app on
    // the same database and key, which is then stopped.
    let users: Vec<String> = (0..STUDENTS).map(|i| format!("U{:032x}", 0x5eed_0000_u64 + i as u64)).collect();
    {
        let mut config = test_config(dir.path(), &url);
        config.secrets.master_key_file = Some(key_file.clone());
        config.line.api_base_url = line.clone();
        let setup_dir = TempDir::new("tsunagu-fanout-setup");
        let t = TestApp::start(config, setup_dir).await;
        t.signup("fanout@example.com", "講師").await;
        let mut c = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("fanout@example.com").unwrap();
        let account = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::accounts::set_plan(&mut c, account, tsunagu_core::Plan::Business, 1).await.unwrap();
        drop(c);
        tsunagu::line::save_channel(&t.app, account, CHANNEL, SECRET, "Ubot").await.unwrap();
        let now = t.app.now();
        let mut tx = t.app.store.begin().await.unwrap();
        let course = courses::create_course(&mut tx, account, "fanout", "一斉講座", "Asia/Tokyo", 1).await.unwrap();
        courses::set_channel(&mut tx, course, Some(CHANNEL), 1).await.unwrap();
        for (body, position) in [("ようこそ", 1), ("資料です", 2)] {
            let s = NewStep { kind: "text", body, media_id: None, timing: None, position, valid_from: 0 };
            courses::add_step(&mut tx, course, &s, 1).await.unwrap();
        }
        for u in &users {
            let student = courses::create_student(&mut tx, account, None, None, "", 1).await.unwrap();
            let sub = courses::subscribe(&mut tx, course, student, 1).await.unwrap();
            courses::start(&mut tx, sub, u, now, Some(now), None).await.unwrap();
        }
        tsunagu::courses::dispatch::queue_in(&mut tx, &t.app).await.unwrap();
        tx.commit().await.unwrap();
        t.stop().await;
    }
    for u in &users {
        sb.set_friend(CHANNEL, u);
    }
    // LINE misbehaves: a tenth of requests fail with 5xx, and multicasts are held to 4 a second.
    sb.set_faults(LineFaults { rate_500: 0.1, rate_timeout: 0.0, timeout_hold: Duration::ZERO, seed: 4242 });
    sb.set_limit("multicast", 4);

    let env: Vec<(&str, String)> = vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", url.clone()),
        ("TSUNAGU_SECRETS__MASTER_KEY_FILE", key_file.display().to_string()),
        ("TSUNAGU_JOBS__LEASE_SECONDS", "5".into()),
        ("TSUNAGU_JOBS__POLL_INTERVAL_MS", "50".into()),
        ("TSUNAGU_JOBS__BACKOFF_BASE_SECONDS", "1".into()),
        ("TSUNAGU_LINE__API_BASE_URL", line.clone()),
    ];
    let mut procs = Vec::new();
    for n in 0..processes {
        procs.push(Process::serve(&env, dir.path().join(format!("serve{n}-0.log"))).await);
    }
    // Mid-fan-out: some students have their messages, most do not.
    let started = tokio::time::Instant::now();
    while sb.received().len() < 1000 {
        assert!(started.elapsed() < Duration::from_secs(120), "the fan-out never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = sb.received().len();
    procs[0].signal("KILL");
    let _ = procs[0].wait().await;
    assert!(at_kill < STUDENTS * 2, "killed mid-fan-out ({at_kill} messages delivered)");
    procs[0] = Process::serve(&env, dir.path().join("serve0-1.log")).await;

    // Everyone gets both messages, once.
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let mut c = store.read().await.unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM step_deliveries WHERE outcome = 'sent'")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        drop(c);
        if sent == (STUDENTS * 2) as i64 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> =
                procs.iter().map(|p| p.log_text().lines().rev().take(20).collect::<Vec<_>>().join("\n")).collect();
            panic!("{sent} of {} step deliveries sent; logs:\n{}", STUDENTS * 2, logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut per_user: HashMap<String, Vec<String>> = HashMap::new();
    for r in sb.received() {
        per_user.entry(r.user_id).or_default().push(r.message["text"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(per_user.len(), STUDENTS, "every student");
    for (u, got) in &per_user {
        assert_eq!(got, &vec!["ようこそ".to_string(), "資料です".to_string()], "{u}: each message once, in order");
    }
    let stats = sb.stats();
    eprintln!(
        "fan-out: {at_kill} messages delivered at the kill; {} requests, {} injected 5xx, {} rate-limit 429s",
        stats.requests,
        stats.injected_500_before + stats.injected_500_after,
        stats.rate_429
    );
    drop(procs);
}
