//! Retention and paging: the hourly maintenance job purges handled LINE webhook events and
//! finished mails past `[retention]` (never unhandled events nor queued mails), and the
//! console's 送信済みメール list is paged.

use std::collections::HashSet;

use tsunagu_core::AccountId;
use tsunagu_store::line::{self as line_store, NewEvent};
use tsunagu_store::mails;

use crate::helpers::{Db, TempDir, TestApp, database_url, test_config};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

async fn app_on(db: Db, tweak: impl FnOnce(&mut tsunagu::config::Config)) -> Option<TestApp> {
    let dir = TempDir::new("tsunagu-retention");
    let url = database_url(db, dir.path()).await?;
    let key = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&key).unwrap();
    let mut config = test_config(dir.path(), &url);
    tweak(&mut config);
    Some(TestApp::start(config, dir).await)
}

async fn account_id(t: &TestApp, email: &str) -> AccountId {
    let mut c = t.app.store.conn().await.unwrap();
    let email = tsunagu_core::Email::parse(email).unwrap();
    tsunagu_store::accounts::credentials_by_email(&mut c, &email).await.unwrap().unwrap().account.id
}

/// Store `n` events of the channel received now; the handled ones are marked handled now.
async fn events(t: &TestApp, prefix: &str, n: usize, handled: bool) {
    let now = t.app.now();
    let mut tx = t.app.store.begin().await.unwrap();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let e = NewEvent {
            webhook_event_id: &id,
            event_type: "message",
            user_id: Some("U1"),
            event_ts: now,
            redelivery: false,
            body: r#"{"message":{"text":"個人的なメッセージ"}}"#,
            handled: false,
        };
        assert!(line_store::insert_event(&mut tx, "2000000001", &e, now).await.unwrap());
    }
    if handled {
        for e in line_store::unhandled(&mut tx, "2000000001", 10_000).await.unwrap() {
            if e.webhook_event_id.starts_with(prefix) {
                line_store::mark_handled(&mut tx, e.id, now).await.unwrap();
            }
        }
    }
    tx.commit().await.unwrap();
}

/// Store a mail of the account created now, in `status`.
async fn mail(t: &TestApp, account: AccountId, key: &str, status: &str) {
    let mut c = t.app.store.conn().await.unwrap();
    let m = mails::NewMail {
        account_id: Some(account),
        idempotency_key: key,
        message_id: key,
        to_address: "student@example.com",
        subject: key,
        body_text: "本文",
        calendar: "",
    };
    let id = mails::insert(&mut c, &m, t.app.now()).await.unwrap().unwrap();
    match status {
        "queued" => {}
        "failed" => mails::mark_error(&mut c, id, "smtp down", true).await.unwrap(),
        s => mails::mark_delivered(&mut c, id, s, "test", t.app.now()).await.unwrap(),
    }
}

/// Run the hourly maintenance job once (it is due a minute after scheduling).
async fn maintenance(t: &TestApp) {
    tsunagu::jobs::maintenance::schedule(&t.app).await.unwrap();
    t.clock.advance(61_000);
    assert!(t.run_jobs().await >= 1);
}

async fn assert_events_left(t: &TestApp, expected: &[&str], why: &str) {
    let mut c = t.app.store.conn().await.unwrap();
    let left: HashSet<String> =
        line_store::events_of(&mut c, "2000000001").await.unwrap().into_iter().map(|e| e.webhook_event_id).collect();
    let sample: Vec<_> = left.iter().take(5).collect();
    assert!(left == set(expected), "{why}: {} events left, e.g. {sample:?}; expected {expected:?}", left.len());
}

async fn mail_keys(t: &TestApp, account: AccountId) -> HashSet<String> {
    let mut c = t.app.store.conn().await.unwrap();
    let page = mails::page_for_account(&mut c, account, mails::PageAt::Newest, 1000).await.unwrap();
    page.mails.into_iter().map(|m| m.idempotency_key).filter(|k| !k.starts_with("welcome:")).collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn maintenance_purges_what_is_past_retention(db: Db) {
    let Some(t) = app_on(db, |c| {
        c.retention.line_events_days = 2;
        c.retention.mails_days = 5;
    })
    .await
    else {
        return;
    };
    t.signup("teacher@example.com", "講師").await;
    t.run_jobs().await;
    let account = account_id(&t, "teacher@example.com").await;

    // Day 0: more handled events than one purge batch, one left unhandled, finished and queued mails.
    events(&t, "old-", 1_200, true).await;
    events(&t, "pending-", 1, false).await;
    for (key, status) in [("sent", "sent"), ("stored", "stored"), ("failed", "failed"), ("queued", "queued")] {
        mail(&t, account, key, status).await;
    }
    // Day 3: the day-0 events are past 2 days, the mails not yet past 5.
    t.clock.advance(3 * DAY_MS);
    events(&t, "day3-", 1, true).await;
    mail(&t, account, "sent-day3", "sent").await;
    maintenance(&t).await;
    assert_events_left(&t, &["pending-0", "day3-0"], "all 1,200 old handled events go").await;
    assert_eq!(mail_keys(&t, account).await, set(&["sent", "stored", "failed", "queued", "sent-day3"]));

    // Day 6: the day-0 mails are past 5 days (except the queued one), day 3's event past 2.
    t.clock.advance(3 * DAY_MS);
    events(&t, "day6-", 1, true).await;
    maintenance(&t).await;
    assert_events_left(&t, &["pending-0", "day6-0"], "unhandled events are never purged").await;
    assert_eq!(mail_keys(&t, account).await, set(&["queued", "sent-day3"]), "queued mails are never purged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_purges_what_is_past_retention_sqlite() {
    maintenance_purges_what_is_past_retention(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_purges_what_is_past_retention_postgres() {
    maintenance_purges_what_is_past_retention(Db::Postgres).await;
}

/// The link in a page whose text contains `label`, if any.
fn link(html: &str, label: &str) -> Option<String> {
    let at = html.find(label)?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&"))
}

/// The subjects listed on a 送信済みメール page, top to bottom.
fn subjects(html: &str) -> Vec<String> {
    html.match_indices("<td><a href=\"/mails/")
        .filter_map(|(i, _)| {
            let rest = &html[i..];
            let start = rest.find("\">")? + 2;
            let end = rest.find("</a>")?;
            Some(rest[start..end].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_mails_are_listed_page_by_page() {
    let t = TestApp::spawn().await;
    let alice = t.signup("alice@example.com", "アリス").await;
    t.signup("bob@example.com", "ボブ").await;
    t.run_jobs().await;
    let (a, b) = (account_id(&t, "alice@example.com").await, account_id(&t, "bob@example.com").await);
    // 120 mails of Alice (plus her welcome mail), Bob's in between.
    for i in 0..120 {
        mail(&t, a, &format!("alice-{i:03}"), "stored").await;
        if i % 10 == 0 {
            mail(&t, b, &format!("bob-{i:03}"), "stored").await;
        }
        t.clock.advance(1_000);
    }
    let page_size = tsunagu::mail::web::MAILS_PAGE as usize;
    let first = alice.get("/mails").await;
    assert_eq!(first.status, 200);
    assert!(first.text.contains("作成から 365 日を過ぎたメールは自動的に削除されます"), "{}", first.text);
    assert!(link(&first.text, "前へ").is_none(), "the first page has nothing newer");

    // Forward with 「次へ」 to the end, then back with 「前へ」.
    let mut pages = vec![subjects(&first.text)];
    let mut next = link(&first.text, "次へ");
    while let Some(href) = next {
        let page = alice.get(&href).await;
        assert_eq!(page.status, 200);
        pages.push(subjects(&page.text));
        next = link(&page.text, "次へ");
        if next.is_none() {
            let mut back = Vec::new();
            let mut prev = link(&page.text, "前へ");
            while let Some(href) = prev {
                let p = alice.get(&href).await;
                back.push(subjects(&p.text));
                prev = link(&p.text, "前へ");
            }
            back.reverse();
            assert_eq!(back, pages[..pages.len() - 1], "back through the same pages");
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [page_size, page_size, 121 - 2 * page_size]);
    let listed: Vec<String> = pages.concat();
    let mut expected: Vec<String> = (0..120).rev().map(|i| format!("alice-{i:03}")).collect();
    expected.push("【Tsunagu】アカウントを作成しました".into());
    assert_eq!(listed, expected, "every mail once, newest first, only Alice's");

    // An edited key shows the first page rather than an error.
    for odd in ["/mails?older=not-a-key", "/mails?older=1.2&older=3.4", "/mails?newer=%FF"] {
        let page = alice.get(odd).await;
        assert_eq!((page.status, subjects(&page.text)), (200, pages[0].clone()), "{odd}");
    }
    t.assert_no_jobs_left().await;
}
