//! `POST /line/webhook/{channel_id}`: signatures checked before anything is stored, events
//! stored once (redeliveries recognised), malformed bodies refused without harming others,
//! unknown event types kept, and follow/unfollow recorded in the friend list by the job. The
//! LINE sandbox plays LINE: its simulated users follow and block, which sends signed webhooks.

use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox, SimUser};
use tsunagu_store::line::{self as line_store, FriendStatus};

use crate::helpers::{Db, TempDir, TestApp, database_url, http, test_config};

const CHANNEL: &str = "2000000001";
const SECRET: &str = "8c570fa6dd201bb328f1c1eac23a96d8";

async fn account_id(t: &TestApp, email: &str) -> tsunagu_core::AccountId {
    let mut c = t.app.store.conn().await.unwrap();
    let email = tsunagu_core::Email::parse(email).unwrap();
    tsunagu_store::accounts::credentials_by_email(&mut c, &email).await.unwrap().unwrap().account.id
}

async fn app_with_channel() -> (TestApp, LineSandbox, String, String) {
    let t = TestApp::spawn().await;
    t.signup("teacher@example.com", "講師").await;
    let account = account_id(&t, "teacher@example.com").await;
    tsunagu::line::save_channel(&t.app, account, CHANNEL, SECRET, "Ubot").await.unwrap();
    let sb = LineSandbox::new();
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "b".repeat(32)),
        basic_id: "@course".into(),
        display_name: "講座".into(),
        monthly_quota: None,
        login: None,
    });
    let (line_base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    // The instructor's channel points its webhook at the app (as `tsunagu line check` will set).
    let client = tsunagu_line::LineClient::new(tsunagu_line::LineConfig::new(&line_base));
    let ch = tsunagu_line::Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: Default::default() };
    let endpoint = format!("{}/line/webhook/{CHANNEL}", t.addr);
    client.set_webhook_endpoint(&ch, &endpoint).await.unwrap();
    (t, sb, endpoint, line_base)
}

async fn stored(t: &TestApp) -> Vec<line_store::StoredEvent> {
    let mut c = t.app.store.read().await.unwrap();
    line_store::events_of(&mut c, CHANNEL).await.unwrap()
}

async fn friends(t: &TestApp) -> Vec<line_store::Friend> {
    let mut c = t.app.store.read().await.unwrap();
    line_store::friends(&mut c, CHANNEL).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_and_block_reach_the_friend_list_once() {
    let (t, sb, endpoint, _) = app_with_channel().await;
    let user = sb.new_user_id();
    sb.add_user(SimUser { user_id: user.clone(), display_name: "受講生".into() });

    assert_eq!(sb.follow(CHANNEL, &user).await.unwrap(), 200);
    assert_eq!(stored(&t).await.len(), 1);
    // Applied in the transaction that stored it: a friend by the 200, and no job to wait for.
    let f = friends(&t).await;
    assert_eq!((f.len(), f[0].status), (1, FriendStatus::Following));
    assert!(stored(&t).await[0].handled_at.is_some());
    assert_eq!(t.jobs_of("line.events").await, 0, "no job queued");
    assert_eq!(t.app.metrics.counter("line_events_applied"), 1);

    // The same event delivered again (LINE's redelivery): recognised, handled once.
    let event = serde_json::from_str::<serde_json::Value>(&stored(&t).await[0].body).unwrap();
    let mut again = event.clone();
    again["deliveryContext"]["isRedelivery"] = serde_json::json!(true);
    let body = serde_json::json!({"destination": format!("U{}", "b".repeat(32)), "events": [again]}).to_string();
    assert_eq!(sb.post_signed(&endpoint, SECRET, body).await.unwrap(), 200);
    assert_eq!(stored(&t).await.len(), 1, "one row for one webhookEventId");
    assert_eq!(t.jobs_of("line.events").await, 0, "no job");
    assert_eq!(t.app.metrics.counter("line_events_applied"), 1, "a redelivery is not applied again");

    assert_eq!(sb.block(CHANNEL, &user).await.unwrap(), 200);
    assert_eq!(friends(&t).await[0].status, FriendStatus::Blocked);
    // Unblocking is a follow with isUnblocked.
    sb.follow(CHANNEL, &user).await.unwrap();
    assert_eq!(friends(&t).await[0].status, FriendStatus::Following);
    let last = stored(&t).await.pop().unwrap();
    assert!(last.body.contains("\"isUnblocked\":true"));
    t.assert_no_jobs_left().await;
    assert_webhooks_match_the_official_schema(&sb, 4);
}

/// Every webhook the sandbox sent (recorded as `POST /callback`) is a `CallbackRequest` of
/// LINE's webhook.yml.
fn assert_webhooks_match_the_official_schema(sb: &LineSandbox, at_least: usize) {
    let spec: serde_json::Value =
        serde_json::from_str(include_str!("../../../tsunagu-line/tests/spec/line-openapi.json")).unwrap();
    let doc = spec["documents"]["webhook.yml"].clone();
    let webhook = tsunagu_contract::Spec::new(vec![("webhook.yml".into(), doc)]);
    let sent: Vec<_> = sb.exchanges().into_iter().filter(|e| e.path == "/callback").collect();
    assert!(sent.len() >= at_least, "{} webhooks recorded", sent.len());
    for e in sent {
        let body: serde_json::Value = serde_json::from_str(&e.request_body).unwrap();
        let errors = webhook.errors("callback", tsunagu_contract::Body::Request, &body).unwrap();
        assert!(errors.is_empty(), "{errors:?}\n{}", e.request_body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_malformed_bodies_store_nothing() {
    let (t, sb, endpoint, _) = app_with_channel().await;
    let client = http().build().unwrap();
    let body = r#"{"destination":"Ubot","events":[{"type":"follow","mode":"active","timestamp":1,"source":{"type":"user","userId":"U0123456789abcdef0123456789abcdef"},"webhookEventId":"01BAD","deliveryContext":{"isRedelivery":false},"replyToken":"r"}]}"#;
    // No signature, a wrong one, one made with another secret.
    let none = client.post(&endpoint).body(body).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = client.post(&endpoint).header("x-line-signature", "AAAA").body(body).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let other = tsunagu_line::signature::sign("another-secret", body.as_bytes());
    let r = client.post(&endpoint).header("x-line-signature", other).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A body changed after signing (re-serialised JSON breaks the signature: NOTES §7).
    let sig = tsunagu_line::signature::sign(SECRET, body.as_bytes());
    let respaced = body.replace("\"events\":", "\"events\" :");
    let r = client.post(&endpoint).header("x-line-signature", &sig).body(respaced).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(stored(&t).await.is_empty(), "nothing stored");

    // Malformed JSON with a valid signature: 400, and the requests around it are unharmed.
    let ok_before = sb.post_signed(&endpoint, SECRET, body.to_string()).await.unwrap();
    let broken = sb.post_signed(&endpoint, SECRET, "{\"destination\":\"Ubot\",\"events\":[".into()).await.unwrap();
    let body2 = body.replace("01BAD", "01GOOD");
    let ok_after = sb.post_signed(&endpoint, SECRET, body2).await.unwrap();
    assert_eq!((ok_before, broken, ok_after), (200, 400, 200));
    assert_eq!(stored(&t).await.len(), 2);

    // Unknown channels and LINE's empty connectivity check.
    let r = client
        .post(format!("{}/line/webhook/999", t.addr))
        .header("x-line-signature", &sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let empty = r#"{"destination":"Ubot","events":[]}"#;
    assert_eq!(sb.post_signed(&endpoint, SECRET, empty.into()).await.unwrap(), 200);

    // An event type this code does not know: kept, handled, not an error.
    let novel = r#"{"destination":"Ubot","events":[{"type":"membershipPurchased","mode":"active","timestamp":5,"source":{"type":"user","userId":"U0123456789abcdef0123456789abcdef"},"webhookEventId":"01NEW","deliveryContext":{"isRedelivery":false}}]}"#;
    assert_eq!(sb.post_signed(&endpoint, SECRET, novel.into()).await.unwrap(), 200);
    t.run_jobs().await;
    let all = stored(&t).await;
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|e| e.handled_at.is_some()));
    assert!(all.iter().any(|e| e.event_type == "membershipPurchased"));
    t.assert_no_jobs_left().await;
}

async fn line_check(args: &[&str], env: Vec<(&'static str, String)>) -> (bool, String) {
    let mut all = vec!["line".to_string(), "check".to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"));
        cmd.args(&all).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `tsunagu line check` against the sandbox, with LINE's webhook test reaching the running app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_check_reports_token_bot_webhook_and_quota() {
    let (t, _sb, endpoint, line_base) = app_with_channel().await;
    let dir = t.dir.as_ref().unwrap().path().display().to_string();
    let env = vec![
        ("TSUNAGU_DATA__DIR", dir.clone()),
        ("TSUNAGU_DATABASE__URL", format!("sqlite://{dir}/tsunagu.db")),
        ("TSUNAGU_LINE__API_BASE_URL", line_base.clone()),
        ("TSUNAGU_HTTP__PUBLIC_URL", t.addr.clone()),
    ];
    let (ok, out) = line_check(&["--account", "teacher@example.com"], env.clone()).await;
    assert!(ok, "{out}");
    assert!(out.contains("チャネルアクセストークン: 取得できました"), "{out}");
    assert!(out.contains("公式アカウント: 講座 (@course)"), "{out}");
    assert!(out.contains(&format!("Webhook URL（LINE に登録済み）: {endpoint}")), "{out}");
    assert!(out.contains("Webhook の疎通テスト: 成功"), "{out}");
    assert!(out.contains("結果: OK"), "{out}");
    assert!(!out.contains(SECRET));

    // The webhook points elsewhere: named, with this installation's URL; exit status 1.
    let client = tsunagu_line::LineClient::new(tsunagu_line::LineConfig::new(&line_base));
    let ch = tsunagu_line::Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: Default::default() };
    client.set_webhook_endpoint(&ch, "https://old.example/webhook").await.unwrap();
    let (ok, out) = line_check(&["--account", "teacher@example.com"], env.clone()).await;
    assert!(!ok);
    assert!(out.contains(&format!("この Tsunagu の Webhook URL は {endpoint} です")), "{out}");

    // Wrong secret given on the command line.
    let mut wrong = env.clone();
    wrong.push(("LINE_CHANNEL_SECRET", "not-the-secret".into()));
    let (ok, out) = line_check(&["--channel-id", CHANNEL], wrong).await;
    assert!(!ok);
    assert!(out.contains("[line.bad_channel_credentials]"), "{out}");
    t.stop().await;
}

/// LINE's connectivity check (no events) signed with `secret`: 200 when the app takes `secret`
/// for the channel's, 401 when not, 404 for a channel it does not know. Nothing is stored.
async fn ping(base: &str, channel_id: &str, secret: &str) -> u16 {
    let body = r#"{"destination":"Ubot","events":[]}"#;
    let r = http()
        .build()
        .unwrap()
        .post(format!("{base}/line/webhook/{channel_id}"))
        .header("x-line-signature", tsunagu_line::signature::sign(secret, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_stays_with_the_account_that_holds_it() {
    let (t, _sb, _endpoint, _) = app_with_channel().await;
    let owner = account_id(&t, "teacher@example.com").await;
    t.signup("other@example.com", "別の講師").await;
    let other = account_id(&t, "other@example.com").await;

    let err = tsunagu::line::save_channel(&t.app, other, CHANNEL, "other-secret", "Uother").await.unwrap_err();
    assert!(matches!(err, tsunagu::line::ChannelError::Taken), "{err}");
    assert_eq!(err.code(), "line.channel_taken");
    assert!(err.message_ja().starts_with("このチャネルはすでに別のアカウントで使われています。"), "{err}");
    assert!(err.to_string().contains("[line.channel_taken]"), "{err}");
    // Nothing changed, also once this instance reads the channel again.
    t.clock.advance(tsunagu::line::CHANNEL_TTL_MS);
    assert_eq!(ping(&t.addr, CHANNEL, SECRET).await, 200);
    assert_eq!(ping(&t.addr, CHANNEL, "other-secret").await, 401);
    let ch = {
        let mut c = t.app.store.conn().await.unwrap();
        line_store::channel(&mut c, CHANNEL).await.unwrap().unwrap()
    };
    assert_eq!((ch.account_id, ch.bot_user_id.as_str()), (owner, "Ubot"));

    // The owner may still update it; the new secret counts at once on this instance.
    tsunagu::line::save_channel(&t.app, owner, CHANNEL, "renewed-secret", "Ubot").await.unwrap();
    assert_eq!(ping(&t.addr, CHANNEL, "renewed-secret").await, 200);
    assert_eq!(ping(&t.addr, CHANNEL, SECRET).await, 401);

    // Two accounts saving the same new channel at the same time: one keeps it.
    let (a, b) = tokio::join!(
        tsunagu::line::save_channel(&t.app, owner, "2000000777", "secret-a", "Ua"),
        tsunagu::line::save_channel(&t.app, other, "2000000777", "secret-b", "Ub"),
    );
    let (winner, secret) = match (&a, &b) {
        (Ok(()), Err(tsunagu::line::ChannelError::Taken)) => (owner, "secret-a"),
        (Err(tsunagu::line::ChannelError::Taken), Ok(())) => (other, "secret-b"),
        _ => panic!("exactly one may save it: {a:?} {b:?}"),
    };
    let mut c = t.app.store.read().await.unwrap();
    assert_eq!(line_store::channel(&mut c, "2000000777").await.unwrap().unwrap().account_id, winner);
    assert_eq!(ping(&t.addr, "2000000777", secret).await, 200);

    let bad = tsunagu::line::save_channel(&t.app, owner, "../2000000001", "s", "U").await.unwrap_err();
    assert_eq!(bad.code(), "line.bad_channel_id");
    t.assert_no_jobs_left().await;
}

/// Two app instances (as two `serve` processes) on one database and master key.
async fn two_instances(db: Db) -> Option<(TestApp, TestApp)> {
    let dir = TempDir::new("tsunagu-two-line");
    let url = database_url(db, dir.path()).await?;
    let path = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&path).unwrap();
    let config = test_config(dir.path(), &url);
    let first = TestApp::start(config.clone(), dir).await;
    let second = TestApp::start(config, TempDir::new("tsunagu-two-line-b")).await;
    first.signup("teacher@example.com", "講師").await;
    Some((first, second))
}

async fn secret_changes_reach_every_instance_within_the_bound(db: Db) {
    let Some((a, b)) = two_instances(db).await else { return };
    let teacher = account_id(&a, "teacher@example.com").await;
    tsunagu::line::save_channel(&a.app, teacher, CHANNEL, "old-secret", "Ubot").await.unwrap();
    assert_eq!(ping(&b.addr, CHANNEL, "old-secret").await, 200, "b opened the secret and keeps it");

    tsunagu::line::save_channel(&a.app, teacher, CHANNEL, "new-secret", "Ubot").await.unwrap();
    assert_eq!(ping(&a.addr, CHANNEL, "new-secret").await, 200, "at once where it was saved");
    assert_eq!(ping(&a.addr, CHANNEL, "old-secret").await, 401);
    let lookups = tsunagu::line::channels(&b.app).database_lookups();
    assert_eq!(ping(&b.addr, CHANNEL, "old-secret").await, 200, "b has not read it again yet");
    assert_eq!(tsunagu::line::channels(&b.app).database_lookups(), lookups, "answered from b's cache");

    // Within the bound b reads the channel again: the old secret is refused, the new one taken.
    b.clock.advance(tsunagu::line::CHANNEL_TTL_MS);
    assert_eq!(ping(&b.addr, CHANNEL, "old-secret").await, 401);
    assert_eq!(ping(&b.addr, CHANNEL, "new-secret").await, 200);

    // A channel removed through a (no screen does it yet: its row goes) is unknown to b within the bound.
    {
        let mut c = a.app.store.conn().await.unwrap();
        sqlx::query("DELETE FROM line_channels WHERE channel_id = $1").bind(CHANNEL).execute(&mut *c).await.unwrap();
    }
    b.clock.advance(tsunagu::line::CHANNEL_TTL_MS);
    assert_eq!(ping(&b.addr, CHANNEL, "new-secret").await, 404);
    a.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_changes_reach_every_instance_within_the_bound_sqlite() {
    secret_changes_reach_every_instance_within_the_bound(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_changes_reach_every_instance_within_the_bound_postgres() {
    secret_changes_reach_every_instance_within_the_bound(Db::Postgres).await;
}

async fn unknown_channels_are_remembered_briefly(db: Db) {
    let Some((a, b)) = two_instances(db).await else { return };
    let teacher = account_id(&a, "teacher@example.com").await;
    let before = tsunagu::line::channels(&b.app).database_lookups();
    for _ in 0..5 {
        assert_eq!(ping(&b.addr, CHANNEL, SECRET).await, 404);
    }
    assert_eq!(tsunagu::line::channels(&b.app).database_lookups(), before + 1, "one lookup for five requests");
    // Ids no channel can have are answered without a lookup, and not remembered.
    let long = "9".repeat(65);
    for id in [long.as_str(), "x%20y", "%E3%81%82"] {
        assert_eq!(ping(&b.addr, id, SECRET).await, 404, "{id}");
    }
    assert_eq!(tsunagu::line::channels(&b.app).database_lookups(), before + 1);
    assert_eq!(tsunagu::line::channels(&b.app).remembered_misses(), 1);

    // Connected on a: found there at once (a had remembered the miss too), on b once the miss expires.
    assert_eq!(ping(&a.addr, CHANNEL, SECRET).await, 404);
    tsunagu::line::save_channel(&a.app, teacher, CHANNEL, SECRET, "Ubot").await.unwrap();
    assert_eq!(ping(&a.addr, CHANNEL, SECRET).await, 200);
    assert_eq!(ping(&b.addr, CHANNEL, SECRET).await, 404, "b still remembers the miss");
    b.clock.advance(tsunagu::line::MISS_TTL_MS);
    assert_eq!(ping(&b.addr, CHANNEL, SECRET).await, 200);
    assert_eq!(tsunagu::line::channels(&b.app).database_lookups(), before + 2);
    a.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channels_are_remembered_briefly_sqlite() {
    unknown_channels_are_remembered_briefly(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channels_are_remembered_briefly_postgres() {
    unknown_channels_are_remembered_briefly(Db::Postgres).await;
}
