//! Card payments through the real `tsunagu serve` while things go wrong, on SQLite with one
//! process and on PostgreSQL with two:
//! - the process that receives Stripe's webhooks is killed with SIGKILL after it stored a batch
//!   of events and before anything acted on them (its job workers were off);
//! - then, with workers on, Stripe's API answers some requests with 429, 500 or not in time, its
//!   webhooks come late and out of order, some twice and some never, and the receiving process
//!   is killed again half-way through a burst, as soon as an event is stored and not yet acted
//!   on, and started again;
//! - some payers come back to the return page at once, the others close the tab; every fourth
//!   takes a konbini voucher and pays it at once, so that its two events (the voucher, then the
//!   payment) race each other under the webhooks' jitter.
//!
//! In the end every application is complete, and each person is registered at Zoom once and
//! mailed their join URL once. Lost webhooks are found by the reconciliation sweep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::RwLock;
use tsunagu_sandbox::stripe::{Faults, StripeSandbox};
use tsunagu_store::{Store, StoreOptions};

use crate::helpers::{Client, Db, Process, TempDir, csrf, database_url, eventually, free_port};

const ORGANIZER: &str = "pay-faults@example.com";
/// Applications paid while the workers are off (stored, then the process is killed).
const BEFORE_KILL: usize = 8;
/// Of those, the first ones whose webhook Stripe never sends (only the reconciliation finds them).
const LOST: usize = 2;
/// The participant whose voucher's events arrive newest first.
const OUT_OF_ORDER: usize = 99;
/// Applications paid while Stripe misbehaves and the process is killed half-way.
const IN_BURST: usize = 24;

fn field(html: &str, name: &str) -> String {
    let key = format!(r#"name="{name}" value=""#);
    let at = html.find(&key).unwrap_or_else(|| panic!("{name} in the page")) + key.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// The path and query of an absolute URL on one of our processes.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').map(|at| rest[at..].to_string()).unwrap_or_else(|| "/".into())
}

/// Apply with one companion and get to Stripe's checkout page, sending the form again after a
/// lost answer and pressing ［お支払いに進む］ when Stripe did not answer at first.
async fn apply(bases: Arc<RwLock<Vec<String>>>, key: &str, i: usize) -> String {
    let mut form = None;
    for attempt in 0..600 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let list = bases.read().await.clone();
        let c = Client::new(&list[(i + attempt) % list.len()]);
        let Some(page) = c.try_get(&format!("/e/{key}/apply")).await else { continue };
        if page.status != 200 {
            continue;
        }
        let (submit_key, ticket) = form
            .get_or_insert_with(|| {
                let tickets: Vec<String> = page
                    .text
                    .split(r#"name="ticket" value=""#)
                    .skip(1)
                    .map(|s| s.split('"').next().unwrap().to_string())
                    .collect();
                (field(&page.text, "submit_key"), tickets[1].clone())
            })
            .clone();
        let token = csrf(&page.text);
        let rep = format!("rep{i}@example.com");
        let comp = format!("comp{i}@example.com");
        let fields = [
            ("csrf_token", token.as_str()),
            ("submit_key", submit_key.as_str()),
            ("ticket", ticket.as_str()),
            ("companions", "1"),
            ("name_kanji_0", "山田 太郎"),
            ("name_kana_0", "ヤマダ タロウ"),
            ("email_0", rep.as_str()),
            ("phone_0", "090-1234-5678"),
            ("name_kanji_1", "山田 花子"),
            ("email_1", comp.as_str()),
        ];
        let Some(r) = c.try_post_form(&format!("/e/{key}/apply"), &fields).await else { continue };
        match (r.status, r.location) {
            (303, Some(to)) if to.contains("/c/pay/") => return to,
            // Stripe did not answer: the application page offers ［お支払いに進む］.
            (303, Some(to)) if to.starts_with("/a/") => {
                let Some(mine) = c.try_get(&to).await else { continue };
                if !mine.text.contains("/pay\"") {
                    continue;
                }
                let access = to.trim_start_matches("/a/").split(['?', '/']).next().unwrap().to_string();
                let token = csrf(&mine.text);
                if let Some(p) = c.try_post_form(&format!("/a/{access}/pay"), &[("csrf_token", &token)]).await
                    && let Some(to) = p.location
                    && to.contains("/c/pay/")
                {
                    return to;
                }
            }
            (422, _) => panic!("refused: {}", r.text),
            _ => {}
        }
    }
    panic!("application {i} never reached Stripe");
}

/// Pay on Stripe's page by card; returns where Stripe sends the person back.
async fn pay(checkout_url: &str, email: &str) -> String {
    pay_with(checkout_url, &[("method", "card"), ("card", "4242 4242 4242 4242"), ("email", email)]).await
}

async fn pay_with(checkout_url: &str, form: &[(&str, &str)]) -> String {
    let raw = crate::helpers::http().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = raw.post(checkout_url).form(form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "paid");
    r.headers()["location"].to_str().unwrap().to_string()
}

/// One participant: apply, pay (every fourth takes a konbini voucher and pays it at the store at
/// once), and (for even `i`) come back to the return page.
async fn participant(stripe: StripeSandbox, bases: Arc<RwLock<Vec<String>>>, key: String, i: usize) {
    let checkout = apply(bases.clone(), &key, i).await;
    let email = format!("rep{i}@example.com");
    let back = if i % 4 == 3 {
        let back = pay_with(&checkout, &[("method", "konbini"), ("email", &email)]).await;
        let session = checkout.rsplit('/').next().unwrap().split('?').next().unwrap();
        let pi = stripe.payment_intent_of(session).expect("the voucher's payment");
        assert!(stripe.paid_at_store(&pi), "paid at the store");
        back
    } else {
        pay(&checkout, &email).await
    };
    if i.is_multiple_of(2) {
        // Back from Stripe on the public URL; the process may be down (then the webhook decides).
        let list = bases.read().await.clone();
        let _ = Client::new(&list[0]).try_get(&path_of(&back)).await;
    }
}

async fn organizer_account(store: &Store) -> tsunagu_core::AccountId {
    let mut c = store.read().await.unwrap();
    let e = tsunagu_core::Email::parse(ORGANIZER).unwrap();
    tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
}

async fn unhandled_events(store: &Store, account: tsunagu_core::AccountId) -> usize {
    let mut c = store.read().await.unwrap();
    tsunagu_store::stripe::pending_events(&mut c, account, 1000).await.unwrap().len()
}

async fn stored_events(store: &Store, account: tsunagu_core::AccountId) -> usize {
    let mut c = store.read().await.unwrap();
    tsunagu_store::stripe::events(&mut c, account).await.unwrap().len()
}

/// Start `serve` on `port` (the webhook endpoint's process keeps its port across restarts).
async fn serve(env: &[(&str, String)], port: u16, jobs: bool, log: std::path::PathBuf) -> Process {
    let mut env = env.to_vec();
    env.push(("TSUNAGU_HTTP__LISTEN", format!("127.0.0.1:{port}")));
    env.push(("TSUNAGU_JOBS__ENABLED", jobs.to_string()));
    Process::start(&["serve"], &env, port, log).await
}

async fn payments_faults_and_killed_processes(db: Db, processes: usize) {
    let dir = TempDir::new("tsunagu-pay-faults");
    let Some(url) = database_url(db, dir.path()).await else { return };
    let key_file = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&key_file).unwrap();
    let stripe = StripeSandbox::new();
    let secret = stripe.add_account(crate::payments::account("acct_1Faults", true));
    let (stripe_base, _task) = tsunagu_sandbox::serve(stripe.router()).await.unwrap();
    stripe.set_base(&stripe_base);
    // A delivery that fails (the process is down) is sent again 1, 2, 4 … s later.
    stripe.set_webhook_retry(Duration::from_secs(1), 8);
    let zoom = crate::payments::zoom_sandbox("pay-faults-zoom", "pay-faults-cid");
    let (zoom_base, _task) = tsunagu_sandbox::serve(zoom.router()).await.unwrap();
    let ports: Vec<u16> = (0..processes).map(|_| free_port()).collect();
    let env: Vec<(&str, String)> = vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", url.clone()),
        ("TSUNAGU_SECRETS__MASTER_KEY_FILE", key_file.display().to_string()),
        ("TSUNAGU_HTTP__PUBLIC_URL", format!("http://127.0.0.1:{}", ports[0])),
        ("TSUNAGU_HTTP__MANAGER_URL", format!("http://127.0.0.1:{}", ports[0])),
        ("TSUNAGU_JOBS__LEASE_SECONDS", "5".into()),
        ("TSUNAGU_JOBS__POLL_INTERVAL_MS", "50".into()),
        ("TSUNAGU_JOBS__BACKOFF_BASE_SECONDS", "1".into()),
        ("TSUNAGU_JOBS__MAX_ATTEMPTS", "12".into()),
        ("TSUNAGU_ZOOM__API_BASE_URL", format!("{zoom_base}/v2")),
        ("TSUNAGU_ZOOM__OAUTH_BASE_URL", zoom_base.clone()),
        ("TSUNAGU_STRIPE__API_BASE_URL", stripe_base.clone()),
        ("TSUNAGU_STRIPE__TIMEOUT_SECONDS", "2".into()),
    ];
    let log = |n: usize, run: usize| dir.path().join(format!("serve{n}-{run}.log"));
    let mut procs = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        procs.push(serve(&env, *port, true, log(n, 0)).await);
    }

    // The organizer: Zoom, Stripe, the 特定商取引法に基づく表記, a priced event with a meeting.
    let org = Client::new(&procs[0].base);
    let page = org.get("/signup").await;
    let pw = crate::helpers::PASSWORD;
    let token = csrf(&page.text);
    let signup = [
        ("csrf_token", token.as_str()),
        ("name", "主催"),
        ("email", ORGANIZER),
        ("password", pw),
        ("password_confirm", pw),
    ];
    assert_eq!(org.post_form("/signup", &signup).await.status, 303);
    org.connect_zoom("pay-faults-zoom", "pay-faults-cid", "pay-faults-cid-secret").await;
    let r = org.submit("/settings/payments", "/settings/payments", &[("secret_key", &secret)]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let r = org.submit("/settings/legal", "/settings/legal", &crate::payments::legal_form("")).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let mut form = crate::events::event_form("決済と障害のセミナー", "1000", "3000");
    form[5] = ("companions_max", "1");
    form[16] = ("ticket_limit_1", "");
    form.extend([
        ("payment_methods_shown", "1"),
        ("payment_methods", "card"),
        ("payment_methods", "konbini"),
        ("konbini_days", "3"),
    ]);
    let id = crate::events::create(&org, &form).await;
    let zoom_page = format!("/events/{id}/zoom");
    assert_eq!(org.submit(&zoom_page, &zoom_page, crate::payments::MEETING_FORM).await.status, 303);
    eventually(60, "the meeting is created", || async { !zoom.events().is_empty() }).await;
    let meeting = zoom.events()[0].id;
    let key = crate::events_apply::public_key(&org, id).await;
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let account = organizer_account(&store).await;

    // 1. Workers off: the payments' events are stored and nothing acts on them; then SIGKILL.
    for p in &mut procs {
        p.signal("KILL");
        let _ = p.wait().await;
    }
    procs.clear();
    for (n, port) in ports.iter().enumerate() {
        procs.push(serve(&env, *port, false, log(n, 1)).await);
    }
    let bases = Arc::new(RwLock::new(procs.iter().map(|p| p.base.clone()).collect::<Vec<_>>()));
    for i in 0..BEFORE_KILL {
        // Nobody comes back: only the webhooks know, and for the first ones not even they.
        if i < LOST {
            stripe.hold_webhooks();
        }
        let checkout = apply(bases.clone(), &key, i).await;
        pay(&checkout, &format!("rep{i}@example.com")).await;
        if i < LOST {
            assert_eq!(stripe.drop_held_webhooks(), 1, "the webhook is lost");
        }
    }
    eventually(30, "the first payments' events stored", || async {
        stored_events(&store, account).await == BEFORE_KILL - LOST
    })
    .await;
    {
        let mut c = store.read().await.unwrap();
        let list = tsunagu_store::applications::for_event(&mut c, account, id, "").await.unwrap();
        assert!(list.iter().all(|a| a.status == "awaiting_payment"), "nothing acted on yet");
    }
    for p in &mut procs {
        p.signal("KILL");
        let _ = p.wait().await;
    }
    procs.clear();

    // 2. Workers on; Stripe misbehaves; the webhook's process is killed half-way.
    for (n, port) in ports.iter().enumerate() {
        procs.push(serve(&env, *port, true, log(n, 2)).await);
    }
    // A konbini voucher paid at once, its two events delivered newest first: the payment before
    // the voucher.
    stripe.hold_webhooks();
    let checkout = apply(bases.clone(), &key, OUT_OF_ORDER).await;
    pay_with(&checkout, &[("method", "konbini"), ("email", &format!("rep{OUT_OF_ORDER}@example.com"))]).await;
    let session = checkout.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    assert!(stripe.paid_at_store(&stripe.payment_intent_of(&session).unwrap()));
    stripe.release_webhooks_newest_first();
    stripe.set_faults(Faults {
        rate_429: 0.06,
        rate_500: 0.06,
        rate_timeout: 0.05,
        timeout_hold: Duration::from_secs(3),
        webhook_lost: 0.1,
        webhook_duplicate: 0.25,
        webhook_jitter: Duration::from_secs(2),
        seed: 20261203,
    });
    let gate = Arc::new(tokio::sync::Semaphore::new(6));
    let mut tasks = Vec::new();
    for i in BEFORE_KILL..BEFORE_KILL + IN_BURST {
        let (bases, key, gate, sb) = (bases.clone(), key.clone(), gate.clone(), stripe.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            participant(sb, bases, key, i).await;
        }));
        if i == BEFORE_KILL + IN_BURST / 2 {
            // Killed as soon as an event is stored and not acted on yet.
            eventually(30, "an event stored and not yet acted on", || async {
                unhandled_events(&store, account).await > 0
            })
            .await;
            procs[0].signal("KILL");
            let _ = procs[0].wait().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            procs[0] = serve(&env, ports[0], true, log(0, 3)).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Let the webhooks that are still coming (late, retried) arrive; then the sweep finds the
    // ones Stripe never delivered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stripe.set_faults(Faults::default());
    // Before the sweep, the payments whose webhook was lost wait (nobody came back for them).
    eventually(60, "the others' webhooks acted on", || async {
        let mut c = store.read().await.unwrap();
        let list = tsunagu_store::applications::for_event(&mut c, account, id, "").await.unwrap();
        let waiting: Vec<String> =
            list.iter().filter(|a| a.status == "awaiting_payment").map(|a| a.people[0].email.clone()).collect();
        (0..LOST).all(|i| waiting.contains(&format!("rep{i}@example.com")))
            && list.iter().filter(|a| a.status == "completed").count() >= BEFORE_KILL - LOST
    })
    .await;
    {
        let mut c = store.conn().await.unwrap();
        tsunagu_store::testing::make_due(&mut c, "stripe.reconcile").await.unwrap();
    }
    let people = (BEFORE_KILL + IN_BURST + 1) * 2;
    settle(&store, account, id, &procs, people).await;

    // Exactly once at Zoom and by mail.
    let mut at_zoom: HashMap<String, usize> = HashMap::new();
    for r in zoom.registrants(meeting) {
        assert_eq!(r.status, "approved");
        *at_zoom.entry(r.email).or_default() += 1;
    }
    assert_eq!(at_zoom.len(), people, "everyone registered at Zoom");
    assert!(at_zoom.values().all(|&n| n == 1), "nobody registered twice: {at_zoom:?}");
    let mut c = store.read().await.unwrap();
    let mails = tsunagu_store::mails::list_for_account(&mut c, account, 10_000).await.unwrap();
    let mut mailed: HashMap<&str, usize> = HashMap::new();
    for m in
        mails.iter().filter(|m| m.idempotency_key.starts_with("event-join:") && !m.idempotency_key.ends_with(":copy"))
    {
        *mailed.entry(m.to_address.as_str()).or_default() += 1;
    }
    assert_eq!(mailed.len(), people, "everyone mailed their URL");
    assert!(mailed.values().all(|&n| n == 1), "nobody mailed twice: {mailed:?}");
    // Each Stripe event stored once; the faults happened.
    let events = stripe.events_of("acct_1Faults");
    let stored = tsunagu_store::stripe::events(&mut c, account).await.unwrap();
    let subscribed = events.iter().filter(|(_, kind)| tsunagu_stripe::EVENTS.contains(&kind.as_str())).count();
    assert_eq!(stored.len(), subscribed, "every event stored once");
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for d in stripe.deliveries().iter().filter(|d| d.status.is_some_and(|s| (200..300).contains(&s))) {
        *delivered.entry(d.event_id.clone()).or_default() += 1;
    }
    let twice = delivered.values().filter(|&&n| n > 1).count();
    let never = events.iter().filter(|(e, _)| !delivered.contains_key(e)).count();
    let stats = stripe.stats();
    eprintln!(
        "stripe: {} requests, injected 429 {}, 500 {}, timeouts {}; {} events, {twice} delivered more than once, {never} never delivered",
        stats.requests,
        stats.injected_429,
        stats.injected_500,
        stats.injected_timeouts,
        events.len()
    );
    assert!(twice > 0 && never > 0, "webhooks were duplicated and lost");
    // The out-of-order pair: the payment's event reached Tsunagu before the voucher's.
    let firsts: Vec<String> = stripe
        .deliveries()
        .iter()
        .filter(|d| d.body.contains(&session) && d.status.is_some_and(|s| (200..300).contains(&s)))
        .map(|d| d.event_type.clone())
        .collect();
    assert_eq!(
        firsts.first().map(String::as_str),
        Some("checkout.session.async_payment_succeeded"),
        "delivered newest first: {firsts:?}"
    );
    assert!(stats.injected_429 > 0 && stats.injected_500 > 0 && stats.injected_timeouts > 0, "{stats:?}");
    drop(procs);
}

/// Wait until every application is complete and every person registered and mailed; fail
/// saying what is stuck. The reconciliation sweep is made due every few seconds, as if its
/// 10 minutes passed, so that one sweep that ran early (a restarted process schedules one for a
/// minute after its start) is not the only chance.
async fn settle(store: &Store, account: tsunagu_core::AccountId, id: i64, procs: &[Process], people: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut round = 0u32;
    loop {
        round += 1;
        if round.is_multiple_of(10) {
            let mut c = store.conn().await.unwrap();
            tsunagu_store::testing::make_due(&mut c, "stripe.reconcile").await.unwrap();
        }
        let mut c = store.read().await.unwrap();
        let list = tsunagu_store::applications::for_event(&mut c, account, id, "").await.unwrap();
        let all: Vec<_> = list.iter().flat_map(|a| a.people.iter()).collect();
        let done = |p: &&tsunagu_store::applications::Person| {
            p.status == "completed" && p.zoom_state == "registered" && p.mailed_at.is_some()
        };
        if all.len() == people && all.iter().all(done) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let stuck: Vec<_> = all
                .iter()
                .filter(|p| !done(p))
                .map(|p| (p.email.clone(), p.status.clone(), p.zoom_state.clone(), p.zoom_reason.clone()))
                .collect();
            let report = crate::helpers::stuck_report(&mut c, procs).await;
            panic!("not done: {} people of {people}\nstuck: {stuck:?}\n{report}", all.len());
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_with_stripe_faults_and_a_killed_process_sqlite() {
    payments_faults_and_killed_processes(Db::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_with_stripe_faults_and_killed_processes_two_serve_on_postgres() {
    payments_faults_and_killed_processes(Db::Postgres, 2).await;
}
