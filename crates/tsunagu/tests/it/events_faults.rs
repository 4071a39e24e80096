//! Applications through the public form while Zoom misbehaves: the sandbox answers about 20 % of
//! requests with 429, 5xx (some after doing the work) or a timeout, is down for a minute, and
//! the `serve` process is killed with SIGKILL half-way and started again. Every person ends
//! registered at Zoom exactly once and mailed exactly once. Run on SQLite with one process, and
//! on PostgreSQL with two `serve` processes (one of them killed).

use std::collections::HashMap;
use std::time::Duration;

use tsunagu_sandbox::zoom::{Faults, S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_store::{Store, StoreOptions};

use crate::helpers::{Client, Db, Process, TempDir, csrf, database_url, eventually};

const ACC: &str = "faults-acc";
const APPLICATIONS: usize = 200;

fn sandbox() -> ZoomSandbox {
    let sb = ZoomSandbox::new();
    sb.add_app(S2sApp {
        account_id: ACC.into(),
        client_id: "faults-cid".into(),
        client_secret: "faults-secret".into(),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: ACC.into(),
        id: "faults-owner".into(),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    sb
}

fn field(html: &str, name: &str) -> String {
    let key = format!(r#"name="{name}" value=""#);
    let at = html.find(&key).unwrap_or_else(|| panic!("{name} in the page")) + key.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// Apply once, sending the same form again after a lost answer (the process may be down).
async fn apply(bases: std::sync::Arc<tokio::sync::RwLock<Vec<String>>>, key: String, i: usize) {
    let mut form = None;
    for attempt in 0..600 {
        let list = bases.read().await.clone();
        let base = &list[(i + attempt) % list.len()];
        let c = Client::new(base);
        // The anonymous CSRF cookie belongs to the process's host: fetch the form there.
        let Some(page) = c.try_get(&format!("/e/{key}/apply")).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if page.status != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let (submit_key, ticket) =
            form.get_or_insert_with(|| (field(&page.text, "submit_key"), field(&page.text, "ticket"))).clone();
        let token = csrf(&page.text);
        let fields = [
            ("csrf_token", token.as_str()),
            ("submit_key", submit_key.as_str()),
            ("ticket", ticket.as_str()),
            ("companions", "1"),
            ("name_kanji_0", "山田 太郎"),
            ("name_kana_0", "ヤマダ タロウ"),
            ("email_0", &format!("rep{i}@example.com")),
            ("phone_0", "090-1234-5678"),
            ("name_kanji_1", "山田 花子"),
            ("email_1", &format!("comp{i}@example.com")),
        ];
        let r = c.try_post_form(&format!("/e/{key}/apply"), &fields).await;
        match r {
            Some(p) if p.status == 303 => return,
            Some(p) if p.status == 422 => panic!("refused: {}", p.text),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("application {i} never went through");
}

async fn zoom_faults_and_a_killed_process(db: Db, processes: usize) {
    let dir = TempDir::new("tsunagu-faults");
    let Some(url) = database_url(db, dir.path()).await else { return };
    let key_file = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&key_file).unwrap();
    let sb = sandbox();
    let (zoom, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let env: Vec<(&str, String)> = vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", url.clone()),
        ("TSUNAGU_SECRETS__MASTER_KEY_FILE", key_file.display().to_string()),
        ("TSUNAGU_JOBS__LEASE_SECONDS", "5".into()),
        ("TSUNAGU_JOBS__POLL_INTERVAL_MS", "50".into()),
        ("TSUNAGU_JOBS__BACKOFF_BASE_SECONDS", "1".into()),
        ("TSUNAGU_JOBS__MAX_ATTEMPTS", "12".into()),
        ("TSUNAGU_ZOOM__API_BASE_URL", format!("{zoom}/v2")),
        ("TSUNAGU_ZOOM__OAUTH_BASE_URL", zoom.clone()),
        ("TSUNAGU_ZOOM__TIMEOUT_SECONDS", "2".into()),
    ];
    let mut procs = Vec::new();
    for n in 0..processes {
        procs.push(Process::serve(&env, dir.path().join(format!("serve{n}-0.log"))).await);
    }
    let bases = std::sync::Arc::new(tokio::sync::RwLock::new(procs.iter().map(|p| p.base.clone()).collect::<Vec<_>>()));

    // The organizer: 基本設定, an event, its meeting with registration.
    let org = Client::new(&procs[0].base);
    let page = org.get("/signup").await;
    let token = csrf(&page.text);
    let pw = crate::helpers::PASSWORD;
    let r = org
        .post_form(
            "/signup",
            &[
                ("csrf_token", &token),
                ("name", "主催"),
                ("email", "faults@example.com"),
                ("password", pw),
                ("password_confirm", pw),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = org
        .submit(
            "/settings/basic",
            "/settings/basic",
            &[
                ("auth_method", "s2s"),
                ("zoom_account_id", ACC),
                ("client_id", "faults-cid"),
                ("client_secret", "faults-secret"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let mut form = crate::events::event_form("障害に強いセミナー", "1000", "0");
    form[5] = ("companions_max", "1");
    let id = crate::events::create(&org, &form).await;
    let zoom_page = format!("/events/{id}/zoom");
    let r = org
        .submit(
            &zoom_page,
            &zoom_page,
            &[
                ("use", "on"),
                ("kind", "meeting"),
                ("start", "2027-01-20T19:00"),
                ("duration", "120"),
                ("m_registration", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    eventually(60, "the meeting is created", || async { !sb.events().is_empty() }).await;
    let meeting = sb.events()[0].id;
    let page = org.get(&format!("/events/{id}")).await.text;
    let at = page.find("/e/").unwrap() + 3;
    let key = page[at..].split(['"', '<']).next().unwrap().to_string();

    // Zoom misbehaves from now on.
    sb.set_faults(Faults {
        rate_429: 0.07,
        rate_500: 0.07,
        rate_timeout: 0.06,
        timeout_hold: Duration::from_secs(3),
        seed: 12345,
    });
    let mut tasks = Vec::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..APPLICATIONS {
        let (shared, key, gate) = (bases.clone(), key.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            apply(shared, key, i).await;
        }));
        if i == APPLICATIONS / 2 {
            // Half-way: the first process is killed and started again; then Zoom goes down.
            procs[0].signal("KILL");
            let _ = procs[0].wait().await;
            let restarted = Process::serve(&env, dir.path().join("serve0-1.log")).await;
            bases.write().await[0] = restarted.base.clone();
            procs[0] = restarted;
            sb.set_down(true);
            let sb2 = sb.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                sb2.set_down(false);
            });
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let people = APPLICATIONS as i64 * 2;
    // Everyone ends registered and mailed, except people whose email spent Zoom's 3 adds of the
    // day on answers lost to the faults: they wait for the reset, and their row says so.
    let waiting = settle(&store, id, &procs, people, true).await;
    sb.set_faults(Faults::default());
    if !waiting.is_empty() {
        eprintln!("waiting for Zoom's daily reset: {waiting:?}");
        let page = org.carry_to(&procs[0].base).get(&format!("/events/{id}")).await.text;
        assert!(page.contains("同じメールアドレスの Zoom 登録は1日3回までです"), "the event page says why");
        // 00:00 UTC: Zoom's counters and ours start again, and the waiting jobs come due.
        sb.reset_daily();
        let mut c = store.conn().await.unwrap();
        let tomorrow = jiff::Timestamp::now().as_millisecond().div_euclid(86_400_000) + 1;
        tsunagu_store::rate::purge_daily(&mut c, tomorrow).await.unwrap();
        tsunagu_store::testing::make_due(&mut c, "events.register").await.unwrap();
        drop(c);
        assert!(settle(&store, id, &procs, people, false).await.is_empty());
    }

    // Exactly once at Zoom, exactly once by mail.
    let registrants = sb.registrants(meeting);
    let mut per_email: HashMap<String, usize> = HashMap::new();
    for r in &registrants {
        *per_email.entry(r.email.clone()).or_default() += 1;
    }
    assert_eq!(per_email.len(), people as usize, "everyone registered");
    assert!(per_email.values().all(|&n| n == 1), "nobody registered twice");
    assert!(registrants.iter().all(|r| r.status == "approved"));
    let mut c = store.read().await.unwrap();
    let account = tsunagu_store::accounts::credentials_by_email(
        &mut c,
        &tsunagu_core::Email::parse("faults@example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap()
    .account
    .id;
    let mails = tsunagu_store::mails::list_for_account(&mut c, account, 10_000).await.unwrap();
    let mut mailed: HashMap<&str, usize> = HashMap::new();
    for m in
        mails.iter().filter(|m| m.idempotency_key.starts_with("event-join:") && !m.idempotency_key.ends_with(":copy"))
    {
        *mailed.entry(m.to_address.as_str()).or_default() += 1;
    }
    assert_eq!(mailed.len(), people as usize, "everyone mailed");
    assert!(mailed.values().all(|&n| n == 1), "nobody mailed twice");
    let stats = sb.stats();
    assert!(
        stats.injected_429 > 0 && stats.injected_500_after > 0 && stats.injected_timeouts > 0,
        "the faults happened: {stats:?}"
    );
    eprintln!(
        "faults: {} requests, injected 429 {}, 500 before {} after {}, timeouts {}",
        stats.requests,
        stats.injected_429,
        stats.injected_500_before,
        stats.injected_500_after,
        stats.injected_timeouts
    );
    drop(procs);
}

/// Wait until every person is registered and mailed, or (when `allow_waiting`) waits for Zoom's
/// daily reset with the reason recorded. Returns those waiting. Fails saying what is stuck.
async fn settle(store: &Store, id: i64, procs: &[Process], people: i64, allow_waiting: bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(420);
    loop {
        let mut c = store.read().await.unwrap();
        let account = tsunagu_store::accounts::credentials_by_email(
            &mut c,
            &tsunagu_core::Email::parse("faults@example.com").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .account
        .id;
        let list = tsunagu_store::applications::for_event(&mut c, account, id, "").await.unwrap();
        let all: Vec<_> = list.iter().flat_map(|a| a.people.iter()).collect();
        let done = |p: &&tsunagu_store::applications::Person| p.zoom_state == "registered" && p.mailed_at.is_some();
        let waits =
            |p: &&tsunagu_store::applications::Person| allow_waiting && !done(p) && p.zoom_reason.contains("1日3回");
        if all.len() as i64 == people && all.iter().all(|p| done(p) || waits(p)) {
            return all.iter().filter(|p| waits(p)).map(|p| p.email.clone()).collect();
        }
        if tokio::time::Instant::now() > deadline {
            let stuck: Vec<_> = all
                .iter()
                .filter(|p| !done(p))
                .map(|p| (p.email.clone(), p.zoom_state.clone(), p.zoom_reason.clone(), p.mailed_at))
                .collect();
            let report = crate::helpers::stuck_report(&mut c, procs).await;
            panic!("not done: {} people of {people}\nstuck: {stuck:?}\n{report}", all.len());
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_faults_and_a_killed_process_sqlite() {
    zoom_faults_and_a_killed_process(Db::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_faults_and_a_killed_process_two_serve_on_postgres() {
    zoom_faults_and_a_killed_process(Db::Postgres, 2).await;
}
