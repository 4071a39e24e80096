//! The LINE webhook intake under load and faults: every event is applied exactly once, by the
//! intake in the transaction that stores it (also when the same event arrives twice at once), or
//! after a refused batch by `line.events` jobs, several of which may run at once; and a request
//! the database refuses fails alone (its batch-mates from any channel are stored, answered 200
//! and applied).

use serde_json::json;
use tsunagu_store::jobs::ClaimedJob;
use tsunagu_store::line::{self as line_store, FriendStatus, NewEvent};

use crate::helpers::{Db, TestApp, http, install_fault, set_fault};

const CHANNELS: [(&str, &str); 2] =
    [("2000000101", "8c570fa6dd201bb328f1c1eac23a96d8"), ("2000000102", "0f1e2d3c4b5a69788796a5b4c3d2e1f0")];

async fn app_with_two_channels(db: Db) -> Option<TestApp> {
    let t = TestApp::spawn_on(db, |_| {}).await?;
    for (i, (channel, secret)) in CHANNELS.iter().enumerate() {
        let email = format!("teacher{i}@example.com");
        t.signup(&email, "講師").await;
        let mut c = t.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse(&email).unwrap();
        let account = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id;
        drop(c);
        tsunagu::line::save_channel(&t.app, account, channel, secret, "Ubot").await.unwrap();
    }
    Some(t)
}

fn follow(event_id: &str, user: &str) -> String {
    json!({"destination": "Ubot", "events": [{
        "type": "follow", "mode": "active", "timestamp": 1_700_000_000_000i64,
        "source": {"type": "user", "userId": user},
        "webhookEventId": event_id, "deliveryContext": {"isRedelivery": false},
        "replyToken": "r", "follow": {"isUnblocked": false}
    }]})
    .to_string()
}

async fn good_and_bad_requests_fail_alone(db: Db) {
    let Some(t) = app_with_two_channels(db).await else { return };
    // The database refuses some events, as PostgreSQL refuses a text with `\u0000` in it.
    install_fault(&t.app.store, "poison", "line_webhook_events", "INSERT", "NEW.webhook_event_id LIKE 'poison%'").await;
    set_fault(&t.app.store, "poison", true).await;
    let client = http().build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..240usize {
        let (channel, secret) = CHANNELS[i % 2];
        let kind = if i % 6 == 5 {
            "poison"
        } else if db == Db::Postgres && i % 6 == 2 {
            "nul"
        } else {
            "good"
        };
        let event_id = match kind {
            "poison" => format!("poison{i:05}"),
            "nul" => format!("nul{i:05}\u{0}"),
            _ => format!("01GOOD{i:05}"),
        };
        let body = follow(&event_id, &format!("U{i:032}"));
        let signature = tsunagu_line::signature::sign(secret, body.as_bytes());
        let url = format!("{}/line/webhook/{channel}", t.addr);
        let client = client.clone();
        tasks.spawn(async move {
            let r = client.post(url).header("x-line-signature", signature).body(body).send().await.unwrap();
            (kind, event_id, r.status().as_u16())
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    let mut c = t.app.store.read().await.unwrap();
    let mut stored = Vec::new();
    for (channel, _) in CHANNELS {
        stored.extend(line_store::events_of(&mut c, channel).await.unwrap().into_iter().map(|e| e.webhook_event_id));
    }
    drop(c);
    for (kind, id, status) in &answers {
        match *kind {
            "good" => {
                assert_eq!(*status, 200, "{id}");
                assert!(stored.contains(id), "{id} answered 200 but not stored");
            }
            "nul" => assert_eq!(*status, 400, "{id:?}: refused data is a client error"),
            _ => assert_eq!(*status, 503, "{id}: the database refused it, LINE may redeliver"),
        }
    }
    let good = answers.iter().filter(|a| a.0 == "good").count();
    assert_eq!(stored.len(), good, "every good event stored, nothing else");
    // What a refused batch left unapplied, its channel's job applies: each good follow once.
    t.run_jobs().await;
    assert_eq!(t.app.metrics.counter("line_events_applied"), good as u64, "each good event applied once");
    let mut c = t.app.store.read().await.unwrap();
    for (i, (channel, _)) in CHANNELS.iter().enumerate() {
        assert!(line_store::unhandled(&mut c, channel, 10).await.unwrap().is_empty());
        let mut users: Vec<String> =
            line_store::friends(&mut c, channel).await.unwrap().into_iter().map(|f| f.user_id).collect();
        users.sort();
        let mut expected: Vec<String> = (0..240usize)
            .filter(|n| n % 2 == i && answers.iter().any(|a| a.0 == "good" && a.1 == format!("01GOOD{n:05}")))
            .map(|n| format!("U{n:032}"))
            .collect();
        expected.sort();
        assert_eq!(users, expected, "channel {channel}: exactly the good followers");
    }
    drop(c);
    t.assert_no_jobs_left().await;
}

/// The same events delivered twice at once (LINE's redelivery crossing the original, or two
/// processes), with some users' later unfollow arriving before or beside their follow: each
/// event is stored and applied once at the intake, event time decides each friend's state, and
/// no job is needed.
async fn each_event_is_applied_once_at_the_intake(db: Db) {
    let Some(t) = app_with_two_channels(db).await else { return };
    let client = http().build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let mut requests = Vec::new();
    for i in 0..300usize {
        let (channel, secret) = CHANNELS[i % 2];
        let user = format!("U{i:032}");
        requests.push((channel, secret, follow(&format!("01FOLLOW{i:05}"), &user)));
        if i % 3 == 0 {
            let unfollow = json!({"destination": "Ubot", "events": [{
                "type": "unfollow", "mode": "active", "timestamp": 1_700_000_000_001i64,
                "source": {"type": "user", "userId": user},
                "webhookEventId": format!("01UNFOLLOW{i:05}"), "deliveryContext": {"isRedelivery": false}
            }]});
            requests.push((channel, secret, unfollow.to_string()));
        }
    }
    // Every request twice, unfollows first.
    requests.reverse();
    for (channel, secret, body) in requests.iter().chain(requests.iter()) {
        let signature = tsunagu_line::signature::sign(secret, body.as_bytes());
        let url = format!("{}/line/webhook/{channel}", t.addr);
        let (client, body) = (client.clone(), body.clone());
        tasks.spawn(async move {
            client.post(url).header("x-line-signature", signature).body(body).send().await.unwrap().status().as_u16()
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), 200);
    }
    assert_eq!(t.app.metrics.counter("line_events_applied"), requests.len() as u64, "each event applied once");
    assert_eq!(t.jobs_of("line.events").await, 0, "nothing left for a job");
    let mut c = t.app.store.read().await.unwrap();
    for (channel, _) in CHANNELS {
        assert!(line_store::unhandled(&mut c, channel, 10).await.unwrap().is_empty());
        assert_eq!(line_store::events_of(&mut c, channel).await.unwrap().len(), 200, "150 follows, 50 unfollows");
        let friends = line_store::friends(&mut c, channel).await.unwrap();
        assert_eq!(friends.len(), 150);
        for f in friends {
            let n: usize = f.user_id[1..].parse().unwrap();
            let expected = if n.is_multiple_of(3) { FriendStatus::Blocked } else { FriendStatus::Following };
            assert_eq!(f.status, expected, "{}", f.user_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_applied_once_at_the_intake_sqlite() {
    each_event_is_applied_once_at_the_intake(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_applied_once_at_the_intake_postgres() {
    each_event_is_applied_once_at_the_intake(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_and_bad_requests_fail_alone_sqlite() {
    good_and_bad_requests_fail_alone(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_and_bad_requests_fail_alone_postgres() {
    good_and_bad_requests_fail_alone(Db::Postgres).await;
}

/// Several `line.events` jobs of one channel at once (a queued one is claimed while another
/// runs, or two processes): each of 10,000 events is applied exactly once.
async fn concurrent_event_jobs_apply_each_event_once(db: Db) {
    let Some(t) = app_with_two_channels(db).await else { return };
    let channel = CHANNELS[0].0;
    let mut tx = t.app.store.begin().await.unwrap();
    let bodies: Vec<(String, String)> = (0..10_000).map(|i| (format!("01EV{i:06}"), format!("U{i:032}"))).collect();
    for (i, (id, user)) in bodies.iter().enumerate() {
        let e = NewEvent {
            webhook_event_id: id,
            event_type: "follow",
            user_id: Some(user),
            event_ts: 1_700_000_000_000 + i as i64,
            redelivery: false,
            body: "{}",
            handled: false,
        };
        line_store::insert_event(&mut tx, channel, &e, 1).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut runs = tokio::task::JoinSet::new();
    for n in 0..4 {
        let app = t.app.clone();
        runs.spawn(async move {
            let job = ClaimedJob {
                id: n,
                kind: "line.events".into(),
                payload: json!({"channel_id": channel}),
                attempts: 1,
                max_attempts: 3,
            };
            tsunagu::line::events::run(&app, &job).await.map(|_| ()).map_err(|e| e.to_string())
        });
    }
    while let Some(r) = runs.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(t.app.metrics.counter("line_events_applied"), 10_000, "each event applied exactly once");
    let mut c = t.app.store.read().await.unwrap();
    assert!(line_store::unhandled(&mut c, channel, 10).await.unwrap().is_empty());
    assert_eq!(line_store::friends(&mut c, channel).await.unwrap().len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_event_jobs_apply_each_event_once_sqlite() {
    concurrent_event_jobs_apply_each_event_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_event_jobs_apply_each_event_once_postgres() {
    concurrent_event_jobs_apply_each_event_once(Db::Postgres).await;
}

/// A channel with events still waiting for its job (a job that failed for good, or events from
/// before this version): new events join the job's order instead of overtaking them, and each
/// new webhook queues the job again, so none is stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_events_wait_behind_events_the_job_has_not_applied() {
    let Some(t) = app_with_two_channels(Db::Sqlite).await else { return };
    let (channel, secret) = CHANNELS[0];
    let user = format!("U{:032}", 7);
    // A follow waiting unapplied, and the same user's later unfollow arriving at the intake.
    let mut tx = t.app.store.begin().await.unwrap();
    let waiting = NewEvent {
        webhook_event_id: "01WAITING",
        event_type: "follow",
        user_id: Some(&user),
        event_ts: 1_700_000_000_000,
        redelivery: false,
        body: "{}",
        handled: false,
    };
    line_store::insert_event(&mut tx, channel, &waiting, 1).await.unwrap();
    tx.commit().await.unwrap();
    let unfollow = json!({"destination": "Ubot", "events": [{
        "type": "unfollow", "mode": "active", "timestamp": 1_700_000_000_000i64,
        "source": {"type": "user", "userId": user},
        "webhookEventId": "01LATER", "deliveryContext": {"isRedelivery": false}
    }]})
    .to_string();
    let signature = tsunagu_line::signature::sign(secret, unfollow.as_bytes());
    let r = http()
        .build()
        .unwrap()
        .post(format!("{}/line/webhook/{channel}", t.addr))
        .header("x-line-signature", signature)
        .body(unfollow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.jobs_of("line.events").await, 1, "the job is queued again");
    {
        let mut c = t.app.store.read().await.unwrap();
        assert_eq!(line_store::unhandled(&mut c, channel, 10).await.unwrap().len(), 2, "both wait for the job");
    }
    t.run_jobs().await;
    let mut c = t.app.store.read().await.unwrap();
    let friends = line_store::friends(&mut c, channel).await.unwrap();
    assert_eq!((friends.len(), friends[0].status), (1, FriendStatus::Blocked), "the later arrival wins the tie");
    assert!(line_store::unhandled(&mut c, channel, 10).await.unwrap().is_empty());
    drop(c);
    t.assert_no_jobs_left().await;
}
