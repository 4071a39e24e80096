use std::collections::HashSet;

use tsunagu_core::{AccountId, Email, Plan, Role};
use tsunagu_store::jobs::{self, NewJob};
use tsunagu_store::line::{self as line_store, FriendStatus, NewEvent};
use tsunagu_store::{Store, StoreError, accounts, events, mails, secrets, sessions, throttle};

use crate::harness::conformance;

conformance!(
    accounts_round_trip,
    sessions_expire_and_scope,
    throttle_counters,
    job_lifecycle,
    jobs_enqueued_together_keep_their_keys,
    job_leases_come_back,
    job_concurrent_claims_are_disjoint,
    enqueue_is_transactional,
    mails_are_idempotent_and_scoped,
    secrets_are_scoped_and_resealable,
    crash_looping_job_ends_failed,
    throttle_rows_lock_and_purge,
    line_events_deduplicate_and_friends_move_forward_in_time,
    media_files_are_scoped_and_settle_once,
    line_channels_stay_with_their_account,
    line_events_and_friends_are_paged,
    retention_purges_only_what_is_done,
    mails_are_paged_newest_first,
    events_hold_seats_exactly_and_stay_scoped,
    zoom_settings_keep_the_newest_save,
    events_racing_requests_keep_their_answers,
    course_subscriptions_are_claimed_once_and_steps_handled_once,
    a_changed_course_makes_held_subscriptions_due_again_and_a_reply_is_tried_once,
);

async fn account(store: &Store, email: &str) -> accounts::Account {
    let mut c = store.conn().await.unwrap();
    let email = Email::parse(email).unwrap();
    accounts::create(
        &mut c,
        &accounts::NewAccount {
            email: &email,
            display_name: "テスト 太郎",
            password_hash: "$argon2id$fake",
            plan: Plan::Free,
            role: Role::Member,
            time_zone: "Asia/Tokyo",
        },
        1_000,
    )
    .await
    .unwrap()
}

async fn accounts_round_trip(store: Store) {
    let a = account(&store, "Taro@Example.com").await;
    assert_eq!(a.email, "taro@example.com");
    assert_eq!(a.plan, Plan::Free);
    let mut c = store.conn().await.unwrap();
    let email = Email::parse("taro@example.com").unwrap();
    let dup = accounts::create(
        &mut c,
        &accounts::NewAccount {
            email: &email,
            display_name: "x",
            password_hash: "h",
            plan: Plan::Free,
            role: Role::Member,
            time_zone: "Asia/Tokyo",
        },
        2_000,
    )
    .await;
    assert!(matches!(dup, Err(StoreError::Conflict("email"))), "{dup:?}");
    let creds = accounts::credentials_by_email(&mut c, &email).await.unwrap().unwrap();
    assert_eq!(creds.password_hash, "$argon2id$fake");
    assert_eq!(creds.account.display_name, "テスト 太郎");
    assert!(accounts::set_plan(&mut c, a.id, Plan::Business, 3_000).await.unwrap());
    assert!(accounts::set_role(&mut c, a.id, Role::Admin, 3_000).await.unwrap());
    assert!(accounts::set_password_hash(&mut c, a.id, "new", 3_000).await.unwrap());
    let got = accounts::get(&mut c, a.id).await.unwrap().unwrap();
    assert_eq!((got.plan, got.role), (Plan::Business, Role::Admin));
    assert_eq!(accounts::password_hash(&mut c, a.id).await.unwrap().as_deref(), Some("new"));
    assert!(accounts::get(&mut c, AccountId(a.id.0 + 999)).await.unwrap().is_none());
    assert!(!accounts::set_plan(&mut c, AccountId(a.id.0 + 999), Plan::Free, 1).await.unwrap());
    assert_eq!(accounts::count(&mut c).await.unwrap(), 1);
    assert_eq!(accounts::list_all(&mut c).await.unwrap().len(), 1);
}

async fn sessions_expire_and_scope(store: Store) {
    let a = account(&store, "a@example.com").await;
    let b = account(&store, "b@example.com").await;
    let mut c = store.conn().await.unwrap();
    sessions::create(&mut c, "h1", a.id, 100, 1_000).await.unwrap();
    sessions::create(&mut c, "h2", a.id, 100, 1_000).await.unwrap();
    sessions::create(&mut c, "h3", b.id, 100, 1_000).await.unwrap();
    assert_eq!(sessions::find_live(&mut c, "h1", 999).await.unwrap().unwrap().account_id, a.id);
    assert!(sessions::find_live(&mut c, "h1", 1_000).await.unwrap().is_none(), "expired at expires_at");
    sessions::touch(&mut c, "h1", 900, 5_000).await.unwrap();
    assert!(sessions::find_live(&mut c, "h1", 4_000).await.unwrap().is_some());
    assert_eq!(sessions::delete_others(&mut c, a.id, "h1").await.unwrap(), 1);
    assert!(sessions::find_live(&mut c, "h2", 500).await.unwrap().is_none());
    assert!(sessions::find_live(&mut c, "h3", 500).await.unwrap().is_some(), "other account untouched");
    assert_eq!(sessions::purge_expired(&mut c, 2_000).await.unwrap(), 1);
    sessions::delete(&mut c, "h1").await.unwrap();
    assert!(sessions::find_live(&mut c, "h1", 500).await.unwrap().is_none());
}

async fn throttle_counters(store: Store) {
    let mut c = store.conn().await.unwrap();
    assert!(throttle::get(&mut c, "ip:127.0.0.1").await.unwrap().is_none());
    let s = throttle::ThrottleState { failures: 3, window_started_at: 10, blocked_until: 20 };
    throttle::put(&mut c, "ip:127.0.0.1", s).await.unwrap();
    let s2 = throttle::ThrottleState { failures: 4, ..s };
    throttle::put(&mut c, "ip:127.0.0.1", s2).await.unwrap();
    assert_eq!(throttle::get(&mut c, "ip:127.0.0.1").await.unwrap(), Some(s2));
    throttle::clear(&mut c, "ip:127.0.0.1").await.unwrap();
    assert!(throttle::get(&mut c, "ip:127.0.0.1").await.unwrap().is_none());
}

fn job<'a>(payload: &'a serde_json::Value, key: Option<&'a str>, run_at: i64) -> NewJob<'a> {
    NewJob { kind: "test.kind", payload, dedupe_key: key, run_at, max_attempts: 3 }
}

async fn job_lifecycle(store: Store) {
    let p = serde_json::json!({"n": 1, "名前": "太郎"});
    let mut c = store.conn().await.unwrap();
    let id = jobs::enqueue(&mut c, &job(&p, Some("k1"), 100), 50).await.unwrap().unwrap();
    assert_eq!(jobs::enqueue(&mut c, &job(&p, Some("k1"), 100), 50).await.unwrap(), None, "dedupe key");
    let later = jobs::enqueue(&mut c, &job(&p, None, 10_000), 50).await.unwrap().unwrap();
    assert_eq!(jobs::next_due(&mut c).await.unwrap(), Some(100));

    assert!(jobs::claim(&mut c, store.backend(), "w1", 10, 99, 1_000).await.unwrap().is_empty(), "not yet due");
    let claimed = jobs::claim(&mut c, store.backend(), "w1", 10, 100, 1_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].attempts), (id, 1));
    assert_eq!(claimed[0].payload, p);

    // Failure with a retry: back to queued at the retry instant.
    assert!(!jobs::fail(&mut c, id, "w2", "not mine", 200, Some(300)).await.unwrap(), "other worker");
    assert!(jobs::fail(&mut c, id, "w1", "boom", 200, Some(300)).await.unwrap());
    let row = jobs::get(&mut c, id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.run_at, row.last_error.as_deref()), ("queued", 300, Some("boom")));
    assert!(jobs::claim(&mut c, store.backend(), "w1", 10, 299, 1_000).await.unwrap().is_empty());
    let again = jobs::claim(&mut c, store.backend(), "w1", 10, 300, 1_000).await.unwrap();
    assert_eq!(again[0].attempts, 2);

    // Final failure, listed, retried by an administrator, then completed.
    assert!(jobs::fail(&mut c, id, "w1", "still broken", 400, None).await.unwrap());
    let failed = jobs::list_by_state(&mut c, "failed", 10).await.unwrap();
    assert_eq!(failed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    let counts = jobs::counts(&mut c).await.unwrap();
    assert!(counts.contains(&("failed".to_string(), 1)) && counts.contains(&("queued".to_string(), 1)), "{counts:?}");
    assert!(jobs::retry_failed(&mut c, id, 500).await.unwrap());
    assert!(!jobs::retry_failed(&mut c, id, 500).await.unwrap(), "only failed jobs");
    let third = jobs::claim(&mut c, store.backend(), "w3", 1, 500, 1_000).await.unwrap();
    assert_eq!((third[0].id, third[0].attempts), (id, 1));
    assert!(!jobs::complete(&mut c, id, "w1").await.unwrap(), "only the holder completes");
    assert!(jobs::complete(&mut c, id, "w3").await.unwrap());
    assert!(jobs::get(&mut c, id).await.unwrap().is_none());
    // The dedupe key is free again once its job is gone.
    let newest = jobs::enqueue(&mut c, &job(&p, Some("k1"), 100), 600).await.unwrap().unwrap();
    assert!(jobs::get(&mut c, later).await.unwrap().is_some());
    // A finished job's id is not given to the next one (logs and an administrator's page name
    // one job by it), even when it was the highest.
    let done = jobs::claim(&mut c, store.backend(), "w4", 1, 700, 1_000).await.unwrap();
    assert_eq!(done[0].id, newest);
    assert!(jobs::complete(&mut c, newest, "w4").await.unwrap());
    let next = jobs::enqueue(&mut c, &job(&p, None, 100), 800).await.unwrap().unwrap();
    assert!(next > newest, "{next} after {newest}");
}

async fn jobs_enqueued_together_keep_their_keys(store: Store) {
    let p = serde_json::json!({"n": 1});
    let mut c = store.conn().await.unwrap();
    jobs::enqueue(&mut c, &job(&p, Some("held"), 100), 50).await.unwrap().unwrap();
    let keys: Vec<String> = (0..1200).map(|i| format!("k{i}")).collect();
    let mut batch: Vec<NewJob> = keys.iter().map(|k| job(&p, Some(k), 100)).collect();
    // A key already queued, the same key twice in one batch, and jobs without a key.
    batch.push(job(&p, Some("held"), 100));
    batch.push(job(&p, Some("k7"), 100));
    batch.push(job(&p, None, 100));
    batch.push(job(&p, None, 100));
    assert_eq!(jobs::enqueue_all(&mut c, &batch, 50).await.unwrap(), 1202, "1,200 keys and 2 without");
    assert_eq!(jobs::enqueue_all(&mut c, &[], 50).await.unwrap(), 0);
    let claimed = jobs::claim(&mut c, store.backend(), "w1", 2000, 100, 1_000).await.unwrap();
    assert_eq!(claimed.len(), 1203);
    assert!(claimed.iter().all(|j| j.kind == "test.kind" && j.payload == p && j.max_attempts == 3));
}

async fn job_leases_come_back(store: Store) {
    let p = serde_json::json!({});
    let mut c = store.conn().await.unwrap();
    let id = jobs::enqueue(&mut c, &job(&p, None, 0), 0).await.unwrap().unwrap();
    let first = jobs::claim(&mut c, store.backend(), "dead", 10, 0, 1_000).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(jobs::claim(&mut c, store.backend(), "alive", 10, 999, 1_000).await.unwrap().is_empty(), "leased");
    // A heartbeat keeps it.
    assert_eq!(jobs::heartbeat(&mut c, "dead", &[id], 1_500).await.unwrap(), 1);
    assert!(jobs::claim(&mut c, store.backend(), "alive", 10, 1_200, 1_000).await.unwrap().is_empty());
    // Past the lease, another worker takes it; the dead one can no longer finish it.
    let taken = jobs::claim(&mut c, store.backend(), "alive", 10, 1_501, 1_000).await.unwrap();
    assert_eq!((taken[0].id, taken[0].attempts), (id, 2));
    assert!(!jobs::complete(&mut c, id, "dead").await.unwrap());
    // Handing back on shutdown does not count as an attempt.
    assert!(jobs::release(&mut c, id, "alive", 1_600).await.unwrap());
    let row = jobs::get(&mut c, id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts, row.locked_by), ("queued", 1, None));
}

async fn job_concurrent_claims_are_disjoint(store: Store) {
    let p = serde_json::json!({});
    {
        let mut tx = store.begin().await.unwrap();
        for _ in 0..200 {
            jobs::enqueue(&mut tx, &job(&p, None, 0), 0).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut handles = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut c = store.conn().await.unwrap();
                let got = jobs::claim(&mut c, store.backend(), &format!("w{w}"), 7, 10, 60_000).await.unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every job claimed");
    assert_eq!(unique.len(), 200, "no job claimed twice");
}

async fn enqueue_is_transactional(store: Store) {
    let p = serde_json::json!({});
    let mut tx = store.begin().await.unwrap();
    jobs::enqueue(&mut tx, &job(&p, Some("rolled-back"), 0), 0).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    jobs::enqueue(&mut tx, &job(&p, Some("committed"), 0), 0).await.unwrap();
    tx.commit().await.unwrap();
    let mut c = store.conn().await.unwrap();
    let queued = jobs::list_by_state(&mut c, "queued", 10).await.unwrap();
    let keys: Vec<_> = queued.iter().filter_map(|j| j.dedupe_key.clone()).collect();
    assert_eq!(keys, vec!["committed".to_string()]);
}

async fn mails_are_idempotent_and_scoped(store: Store) {
    let a = account(&store, "a@example.com").await;
    let b = account(&store, "b@example.com").await;
    let mut c = store.conn().await.unwrap();
    let m = mails::NewMail {
        account_id: Some(a.id),
        idempotency_key: "cause-1",
        message_id: "<cause-1@tsunagu>",
        to_address: "p@example.com",
        subject: "イベント参加URLのお知らせ",
        body_text: "本文です",
        calendar: "",
    };
    let id = mails::insert(&mut c, &m, 10).await.unwrap().unwrap();
    assert_eq!(mails::insert(&mut c, &m, 11).await.unwrap(), None, "same cause, no second mail");
    assert_eq!(mails::get_for_account(&mut c, a.id, id).await.unwrap().unwrap().subject, "イベント参加URLのお知らせ");
    assert!(mails::get_for_account(&mut c, b.id, id).await.unwrap().is_none(), "other account sees nothing");
    assert!(mails::list_for_account(&mut c, b.id, 10).await.unwrap().is_empty());
    mails::mark_delivered(&mut c, id, "sent", "smtp", 20).await.unwrap();
    let got = mails::get_for_delivery(&mut c, id).await.unwrap().unwrap();
    assert_eq!((got.status.as_str(), got.sent_at), ("sent", Some(20)));
    mails::mark_error(&mut c, id, "down", true).await.unwrap();
    assert_eq!(mails::list_all(&mut c, 10).await.unwrap()[0].status, "failed");
}

async fn secrets_are_scoped_and_resealable(store: Store) {
    let a = account(&store, "a@example.com").await;
    let b = account(&store, "b@example.com").await;
    let mut c = store.conn().await.unwrap();
    secrets::put(&mut c, a.id, "zoom.client_secret", "k1", "sealed-a", 1).await.unwrap();
    secrets::put(&mut c, a.id, "zoom.client_secret", "k1", "sealed-a2", 2).await.unwrap();
    assert_eq!(secrets::get(&mut c, a.id, "zoom.client_secret").await.unwrap().unwrap().sealed, "sealed-a2");
    assert!(secrets::get(&mut c, b.id, "zoom.client_secret").await.unwrap().is_none());
    let all = secrets::all_for_rotation(&mut c).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(secrets::count_not_under(&mut c, "k2").await.unwrap(), 1);
    secrets::reseal(&mut c, all[0].id, "k2", "sealed-k2", 3).await.unwrap();
    let s = secrets::get(&mut c, a.id, "zoom.client_secret").await.unwrap().unwrap();
    assert_eq!((s.key_id.as_str(), s.sealed.as_str()), ("k2", "sealed-k2"));
    assert_eq!(secrets::count_not_under(&mut c, "k2").await.unwrap(), 0);
    let z = secrets::ZoomCredentials {
        auth_method: "s2s".into(),
        zoom_account_id: "acc".into(),
        client_id: "cid".into(),
        updated_at: 5,
    };
    secrets::put_zoom(&mut c, a.id, &z).await.unwrap();
    assert_eq!(secrets::get_zoom(&mut c, a.id).await.unwrap(), Some(z));
    assert_eq!(secrets::get_zoom(&mut c, b.id).await.unwrap(), None);
}

async fn crash_looping_job_ends_failed(store: Store) {
    let p = serde_json::json!({});
    let mut c = store.conn().await.unwrap();
    let job = NewJob { kind: "test.kind", payload: &p, dedupe_key: None, run_at: 0, max_attempts: 2 };
    let id = jobs::enqueue(&mut c, &job, 0).await.unwrap().unwrap();
    // Two workers die inside it, one after the other.
    assert_eq!(jobs::claim(&mut c, store.backend(), "w1", 1, 0, 100).await.unwrap().len(), 1);
    assert_eq!(jobs::claim(&mut c, store.backend(), "w2", 1, 200, 100).await.unwrap()[0].attempts, 2);
    // The third claim finds it out of attempts: failed, visible, not run again.
    assert!(jobs::claim(&mut c, store.backend(), "w3", 1, 400, 100).await.unwrap().is_empty());
    let row = jobs::get(&mut c, id).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert!(row.last_error.unwrap().contains("last allowed attempt"));
}

async fn throttle_rows_lock_and_purge(store: Store) {
    let mut tx = store.begin().await.unwrap();
    let s = throttle::lock(&mut tx, store.backend(), "email:x@example.com", 50).await.unwrap();
    assert_eq!((s.failures, s.window_started_at, s.blocked_until), (0, 50, 0));
    throttle::put(&mut tx, "email:x@example.com", throttle::ThrottleState { failures: 2, ..s }).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(throttle::lock(&mut tx, store.backend(), "email:x@example.com", 99).await.unwrap().failures, 2);
    tx.commit().await.unwrap();
    let mut c = store.conn().await.unwrap();
    assert_eq!(throttle::purge(&mut c, 51).await.unwrap(), 1);
    assert!(throttle::get(&mut c, "email:x@example.com").await.unwrap().is_none());
}

async fn line_events_deduplicate_and_friends_move_forward_in_time(store: Store) {
    let a = account(&store, "teacher@example.com").await;
    let mut c = store.conn().await.unwrap();
    line_store::put_channel(&mut c, a.id, "2000000001", "Ubot", 1).await.unwrap();
    assert_eq!(line_store::channel(&mut c, "2000000001").await.unwrap().unwrap().account_id, a.id);
    assert!(line_store::channel(&mut c, "nope").await.unwrap().is_none());
    let e = |id: &'static str, ts: i64| NewEvent {
        webhook_event_id: id,
        event_type: "follow",
        user_id: Some("U1"),
        event_ts: ts,
        redelivery: false,
        body: "{}",
        handled: false,
    };
    assert!(line_store::insert_event(&mut c, "2000000001", &e("01A", 10), 100).await.unwrap());
    assert!(!line_store::insert_event(&mut c, "2000000001", &e("01A", 10), 101).await.unwrap(), "a redelivery");
    assert!(line_store::insert_event(&mut c, "2000000002", &e("01A", 10), 101).await.unwrap(), "per channel");
    // Many at once: one already stored, one twice in the same call, the same id on two channels,
    // and more rows than one statement takes.
    let mut many = vec![
        ("2000000001", e("01A", 10)),
        ("2000000001", e("01B", 11)),
        ("2000000001", e("01B", 11)),
        ("2000000003", e("01B", 11)),
    ];
    let ids: Vec<String> = (0..450).map(|i| format!("02{i:04}")).collect();
    many.extend(ids.iter().map(|id| ("2000000004", NewEvent { webhook_event_id: id, ..e("x", 12) })));
    let fresh = line_store::insert_events(&mut c, &many, 102).await.unwrap();
    assert_eq!(fresh[..4], [false, true, false, true]);
    assert!(fresh[4..].iter().all(|new| *new));
    assert_eq!(line_store::events_of(&mut c, "2000000004").await.unwrap().len(), 450);
    assert_eq!(line_store::insert_events(&mut c, &many, 103).await.unwrap(), vec![false; many.len()], "redelivered");
    assert_eq!(line_store::unhandled(&mut c, "2000000003", 10).await.unwrap().len(), 1);
    assert!(line_store::channel_state(&mut c, "2000000003").await.unwrap().has_unhandled);
    assert!(!line_store::channel_state(&mut c, "2000000003").await.unwrap().has_courses);
    for (_, ev) in &mut many {
        ev.handled = true;
    }
    many[1].1.webhook_event_id = "01C";
    assert_eq!(line_store::insert_events(&mut c, &many[1..2], 104).await.unwrap(), [true]);
    let stored = line_store::events_of(&mut c, "2000000001").await.unwrap();
    assert_eq!(stored.iter().find(|s| s.webhook_event_id == "01C").unwrap().handled_at, Some(104));
    let pending = line_store::unhandled(&mut c, "2000000001", 100).await.unwrap();
    assert_eq!(pending.len(), 2);
    for p in &pending {
        line_store::mark_handled(&mut c, p.id, 200).await.unwrap();
    }
    assert!(line_store::unhandled(&mut c, "2000000001", 100).await.unwrap().is_empty());
    let pending = line_store::unhandled(&mut c, "2000000002", 100).await.unwrap();
    assert_eq!(pending.len(), 1);
    line_store::mark_handled(&mut c, pending[0].id, 200).await.unwrap();
    assert!(line_store::unhandled(&mut c, "2000000001", 100).await.unwrap().is_empty());

    line_store::set_friend(&mut c, "2000000001", "U1", FriendStatus::Following, 10, 1).await.unwrap();
    line_store::set_friend(&mut c, "2000000001", "U1", FriendStatus::Blocked, 30, 2).await.unwrap();
    // An older follow arriving late changes nothing.
    line_store::set_friend(&mut c, "2000000001", "U1", FriendStatus::Following, 20, 3).await.unwrap();
    let f = line_store::friends(&mut c, "2000000001").await.unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, FriendStatus::Blocked);
    assert_eq!(f[0].followed_at, Some(10));
    line_store::set_friend(&mut c, "2000000001", "U1", FriendStatus::Following, 40, 4).await.unwrap();
    let f = line_store::friends(&mut c, "2000000001").await.unwrap();
    assert_eq!((f[0].status, f[0].followed_at), (FriendStatus::Following, Some(40)));
}

async fn media_files_are_scoped_and_settle_once(store: Store) {
    use tsunagu_store::media::{self, MediaStatus, NewMedia, Ready};
    let a = account(&store, "media-a@example.com").await;
    let b = account(&store, "media-b@example.com").await;
    let mut c = store.conn().await.unwrap();
    let new = |name| NewMedia {
        original_name: name,
        category: "video",
        upload_path: "/tmp/x.part",
        file_name: "abc.mp4",
        preview_name: "abc.jpg",
        size: 10,
    };
    let id = media::insert(&mut c, a.id, &new("講義1.mov"), 1).await.unwrap();
    let id2 = media::insert(&mut c, a.id, &new("講義2.mov"), 2).await.unwrap();
    let m = media::get(&mut c, a.id, id).await.unwrap().unwrap();
    assert_eq!((m.status, m.original_name.as_str(), m.notes.len()), (MediaStatus::Processing, "講義1.mov", 0));
    assert!(media::get(&mut c, b.id, id).await.unwrap().is_none(), "another account sees nothing");
    assert!(media::list(&mut c, b.id).await.unwrap().is_empty());
    assert_eq!(media::list(&mut c, a.id).await.unwrap().iter().map(|m| m.id).collect::<Vec<_>>(), vec![id2, id]);
    let notes = vec!["MOV は MP4 に変換して送ります。".to_string()];
    // The job found sound only: the row becomes audio, under the names it stored.
    let ready = Ready {
        category: "audio",
        file_name: "abc.m4a",
        preview_name: "",
        size: 99,
        duration_ms: Some(2000),
        width: None,
        height: None,
        notes: &notes,
    };
    assert!(media::set_ready(&mut c, id, &ready, 3).await.unwrap());
    assert!(!media::set_failed(&mut c, id, "遅れて届いた失敗", 4).await.unwrap(), "a settled file stays settled");
    let m = media::by_id(&mut c, id).await.unwrap().unwrap();
    assert_eq!((m.status, m.size, m.duration_ms, m.notes), (MediaStatus::Ready, 99, Some(2000), notes.clone()));
    assert_eq!((m.category.as_str(), m.file_name.as_str(), m.preview_name.as_str()), ("audio", "abc.m4a", ""));
    assert!(media::set_failed(&mut c, id2, "壊れています", 5).await.unwrap());
    let m2 = media::get(&mut c, a.id, id2).await.unwrap().unwrap();
    assert_eq!((m2.status, m2.reason.as_str(), m2.status.label_ja()), (MediaStatus::Failed, "壊れています", "失敗"));

    // Processing rows whose job is gone for good are found; those with a live job are not.
    let live = media::insert(&mut c, a.id, &new("講義3.mov"), 6).await.unwrap();
    let dead = media::insert(&mut c, a.id, &new("講義4.mov"), 7).await.unwrap();
    let other = media::insert(&mut c, b.id, &new("他の人.mov"), 8).await.unwrap();
    for m in [live, dead, other] {
        let key = format!("media:{m}");
        let job = NewJob {
            kind: "media.convert",
            payload: &serde_json::json!({"media_id": m}),
            dedupe_key: Some(&key),
            run_at: 0,
            max_attempts: 1,
        };
        jobs::enqueue(&mut c, &job, 9).await.unwrap().unwrap();
    }
    let ids = |v: Vec<media::MediaFile>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert!(media::orphaned(&mut c, None).await.unwrap().is_empty(), "every processing file has its job");
    sqlx::query("UPDATE jobs SET state = 'failed' WHERE dedupe_key IN ($1, $2)")
        .bind(format!("media:{dead}"))
        .bind(format!("media:{other}"))
        .execute(&mut *c)
        .await
        .unwrap();
    assert_eq!(ids(media::orphaned(&mut c, None).await.unwrap()), vec![dead, other]);
    assert_eq!(ids(media::orphaned(&mut c, Some(a.id)).await.unwrap()), vec![dead], "one account's only");
    let pending = media::pending_uploads(&mut c).await.unwrap();
    assert_eq!(pending.len(), 3, "{pending:?}");
    // Settling re-checks in the update: a file with a live job, or already settled, is left.
    assert!(!media::fail_orphan(&mut c, live, "止まりました", 10).await.unwrap(), "its job is still queued");
    assert!(!media::fail_orphan(&mut c, id, "止まりました", 10).await.unwrap(), "already 完了");
    assert!(media::fail_orphan(&mut c, dead, "止まりました", 10).await.unwrap());
    assert!(!media::fail_orphan(&mut c, dead, "止まりました", 11).await.unwrap(), "once");
    let m = media::by_id(&mut c, dead).await.unwrap().unwrap();
    assert_eq!((m.status, m.reason.as_str()), (MediaStatus::Failed, "止まりました"));
    assert_eq!(media::by_id(&mut c, live).await.unwrap().unwrap().status, MediaStatus::Processing);

    // Deleting: only the owner's, never one still 処理中, and once.
    use media::Deleted;
    assert_eq!(media::delete(&mut c, b.id, id).await.unwrap(), Deleted::NotFound, "not another account's");
    assert_eq!(media::delete(&mut c, a.id, live).await.unwrap(), Deleted::Processing);
    assert!(media::by_id(&mut c, live).await.unwrap().is_some());
    match media::delete(&mut c, a.id, id).await.unwrap() {
        Deleted::Removed(m) => assert_eq!((m.id, m.status, m.file_name.as_str()), (id, MediaStatus::Ready, "abc.m4a")),
        other => panic!("{other:?}"),
    }
    assert!(media::by_id(&mut c, id).await.unwrap().is_none());
    assert_eq!(media::delete(&mut c, a.id, id).await.unwrap(), Deleted::NotFound, "once");
    assert!(matches!(media::delete(&mut c, a.id, dead).await.unwrap(), Deleted::Removed(_)), "失敗 files too");
    // Its job that ended for good goes too: a new file given the same id (SQLite reuses the
    // highest) gets its own conversion job, not a "duplicate" of the old one.
    let left: Vec<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE dedupe_key LIKE 'media:%' ORDER BY dedupe_key")
            .fetch_all(&mut *c)
            .await
            .unwrap();
    let mut want = vec![format!("media:{live}"), format!("media:{other}")];
    want.sort();
    assert_eq!(left, want);
    // Ids are never reused (SQLite would give a deleted highest id to the next row, and a
    // conversion still running for the deleted file would settle the new one).
    let newest = media::insert(&mut c, a.id, &new("講義5.mov"), 12).await.unwrap();
    assert!(media::set_failed(&mut c, newest, "壊れています", 13).await.unwrap());
    assert!(matches!(media::delete(&mut c, a.id, newest).await.unwrap(), Deleted::Removed(_)));
    let next = media::insert(&mut c, a.id, &new("講義6.mov"), 14).await.unwrap();
    assert!(next > newest, "{next} after {newest}");
    assert!(!media::set_ready(&mut c, newest, &ready, 15).await.unwrap(), "a late conversion finds no row");
    assert_eq!(media::get(&mut c, a.id, next).await.unwrap().unwrap().status, MediaStatus::Processing);
    assert!(matches!(media::delete(&mut c, a.id, next).await.unwrap(), Deleted::Processing));
    sqlx::query("DELETE FROM media_files WHERE id = $1").bind(next).execute(&mut *c).await.unwrap();
    assert_eq!(ids(media::list(&mut c, a.id).await.unwrap()), vec![live, id2]);
}

async fn line_channels_stay_with_their_account(store: Store) {
    let a = account(&store, "owner@example.com").await;
    let b = account(&store, "other@example.com").await;
    let mut c = store.conn().await.unwrap();
    assert!(line_store::put_channel(&mut c, a.id, "2000000001", "Ubot", 1).await.unwrap());
    assert!(!line_store::put_channel(&mut c, b.id, "2000000001", "Uother", 2).await.unwrap(), "refused");
    let ch = line_store::channel(&mut c, "2000000001").await.unwrap().unwrap();
    assert_eq!((ch.account_id, ch.bot_user_id.as_str()), (a.id, "Ubot"), "nothing changed");
    assert!(line_store::channels_of(&mut c, b.id).await.unwrap().is_empty());
    assert!(line_store::put_channel(&mut c, a.id, "2000000001", "Ubot2", 3).await.unwrap(), "the owner updates");
    assert_eq!(line_store::channel(&mut c, "2000000001").await.unwrap().unwrap().bot_user_id, "Ubot2");
    drop(c);

    // Two accounts save the same new channel at once: the second meets the first's row (it
    // waits for it inside its statement) and is refused, not handed the channel.
    let mut first = store.begin().await.unwrap();
    assert!(line_store::put_channel(&mut first, a.id, "2000000002", "Ua", 4).await.unwrap());
    let s2 = store.clone();
    let second = tokio::spawn(async move {
        let mut tx = s2.begin().await.unwrap();
        let saved = line_store::put_channel(&mut tx, b.id, "2000000002", "Ub", 5).await.unwrap();
        tx.commit().await.unwrap();
        saved
    });
    if store.backend() == tsunagu_store::Backend::Postgres {
        wait_for_lock_wait(&store).await;
    }
    first.commit().await.unwrap();
    assert!(!second.await.unwrap(), "the second account is refused");
    let mut c = store.read().await.unwrap();
    assert_eq!(line_store::channel(&mut c, "2000000002").await.unwrap().unwrap().account_id, a.id);
}

/// Until some session of this database waits for a lock (PostgreSQL).
async fn wait_for_lock_wait(store: &Store) {
    let mut c = store.conn().await.unwrap();
    for _ in 0..2000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the second transaction never waited for the first");
}

fn event(id: &str, ts: i64) -> NewEvent<'_> {
    NewEvent {
        webhook_event_id: id,
        event_type: "message",
        user_id: Some("U1"),
        event_ts: ts,
        redelivery: false,
        body: "{}",
        handled: false,
    }
}

async fn line_events_and_friends_are_paged(store: Store) {
    let mut c = store.conn().await.unwrap();
    let ids: Vec<String> = (0..7).map(|i| format!("01E{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        line_store::insert_event(&mut c, "2000000001", &event(id, i as i64), 10).await.unwrap();
        // Another channel's events interleave and never show up.
        line_store::insert_event(&mut c, "2000000009", &event(id, i as i64), 10).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = line_store::events_page(&mut c, "2000000001", after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().id;
        seen.extend(page.into_iter().map(|e| e.webhook_event_id));
        pages += 1;
    }
    assert_eq!((seen, pages), (ids, 3), "every event once, in order, over three pages");

    let users: Vec<String> = (0..7).map(|i| format!("U{i:032x}")).collect();
    for u in users.iter().rev() {
        line_store::set_friend(&mut c, "2000000001", u, FriendStatus::Following, 1, 1).await.unwrap();
        line_store::set_friend(&mut c, "2000000009", u, FriendStatus::Following, 1, 1).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = line_store::friends_page(&mut c, "2000000001", &after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().user_id.clone();
        seen.extend(page.into_iter().map(|f| f.user_id));
    }
    assert_eq!(seen, users, "every friend once, in user id order");
}

async fn retention_purges_only_what_is_done(store: Store) {
    let mut c = store.conn().await.unwrap();
    // (webhookEventId, handled at): old handled ones, an old unhandled one, a recent one, and
    // an old handled one that is the newest row of the table.
    let rows = [
        ("01OLD1", Some(100)),
        ("01OLD2", Some(150)),
        ("01PENDING", None),
        ("01RECENT", Some(900)),
        ("01LAST", Some(100)),
    ];
    for (id, handled) in rows {
        line_store::insert_event(&mut c, "2000000001", &event(id, 1), 50).await.unwrap();
        if let Some(at) = handled {
            let e = line_store::events_of(&mut c, "2000000001").await.unwrap().pop().unwrap();
            line_store::mark_handled(&mut c, e.id, at).await.unwrap();
        }
    }
    // Batches are bounded: one row per call here.
    assert_eq!(line_store::purge_handled_events(&mut c, 500, 1).await.unwrap(), 1);
    assert_eq!(line_store::purge_handled_events(&mut c, 500, 1).await.unwrap(), 1);
    assert_eq!(line_store::purge_handled_events(&mut c, 500, 100).await.unwrap(), 0);
    let left: Vec<_> =
        line_store::events_of(&mut c, "2000000001").await.unwrap().into_iter().map(|e| e.webhook_event_id).collect();
    assert_eq!(left, ["01PENDING", "01RECENT", "01LAST"]);
    drop(c);

    let a = account(&store, "mails@example.com").await;
    let mut c = store.conn().await.unwrap();
    // (cause, status, created at); the last is the newest row of the table.
    let rows = [
        ("sent-old", "sent", 100),
        ("stored-old", "stored", 100),
        ("failed-old", "failed", 100),
        ("queued-old", "queued", 100),
        ("sent-recent", "sent", 900),
        ("sent-last", "sent", 100),
    ];
    for (cause, status, at) in rows {
        let m = mails::NewMail {
            account_id: Some(a.id),
            idempotency_key: cause,
            message_id: cause,
            to_address: "p@example.com",
            subject: "件名",
            body_text: "本文",
            calendar: "",
        };
        let id = mails::insert(&mut c, &m, at).await.unwrap().unwrap();
        match status {
            "queued" => {}
            "failed" => mails::mark_error(&mut c, id, "down", true).await.unwrap(),
            s => mails::mark_delivered(&mut c, id, s, "test", at).await.unwrap(),
        }
    }
    assert_eq!(mails::purge_finished(&mut c, 500, 2).await.unwrap(), 2);
    assert_eq!(mails::purge_finished(&mut c, 500, 2).await.unwrap(), 1);
    assert_eq!(mails::purge_finished(&mut c, 500, 2).await.unwrap(), 0);
    let mut left: Vec<_> = mails::list_all(&mut c, 100).await.unwrap().into_iter().map(|m| m.idempotency_key).collect();
    left.sort();
    assert_eq!(left, ["queued-old", "sent-last", "sent-recent"]);
}

async fn mails_are_paged_newest_first(store: Store) {
    use mails::{MailKey, PageAt};
    let a = account(&store, "pages@example.com").await;
    let b = account(&store, "others@example.com").await;
    let mut c = store.conn().await.unwrap();
    // Seven mails of a, two created at the same instant across a page boundary; b's interleave.
    let times = [10, 20, 30, 40, 40, 50, 60];
    let mut ids = Vec::new();
    for (i, t) in times.iter().enumerate() {
        for (acc, tag) in [(a.id, "a"), (b.id, "b")] {
            let key = format!("{tag}-{i}");
            let m = mails::NewMail {
                account_id: Some(acc),
                idempotency_key: &key,
                message_id: &key,
                to_address: "p@example.com",
                subject: "件名",
                body_text: "本文",
                calendar: "",
            };
            let id = mails::insert(&mut c, &m, *t).await.unwrap().unwrap();
            if acc == a.id {
                ids.push(id);
            }
        }
    }
    ids.reverse();
    let page = |p: &mails::MailPage| p.mails.iter().map(|m| m.id).collect::<Vec<_>>();
    let first = mails::page_for_account(&mut c, a.id, PageAt::Newest, 3).await.unwrap();
    assert_eq!((page(&first), first.has_newer, first.has_older), (ids[0..3].to_vec(), false, true));
    let second =
        mails::page_for_account(&mut c, a.id, PageAt::OlderThan(MailKey::of(&first.mails[2])), 3).await.unwrap();
    assert_eq!((page(&second), second.has_newer, second.has_older), (ids[3..6].to_vec(), true, true));
    let third =
        mails::page_for_account(&mut c, a.id, PageAt::OlderThan(MailKey::of(&second.mails[2])), 3).await.unwrap();
    assert_eq!((page(&third), third.has_newer, third.has_older), (ids[6..].to_vec(), true, false));
    // And back.
    let back = mails::page_for_account(&mut c, a.id, PageAt::NewerThan(MailKey::of(&third.mails[0])), 3).await.unwrap();
    assert_eq!((page(&back), back.has_newer, back.has_older), (ids[3..6].to_vec(), true, true));
    let back = mails::page_for_account(&mut c, a.id, PageAt::NewerThan(MailKey::of(&back.mails[0])), 3).await.unwrap();
    assert_eq!((page(&back), back.has_newer, back.has_older), (ids[0..3].to_vec(), false, true));
    // Past the end (say its mails were purged): the newest page.
    let past =
        mails::page_for_account(&mut c, a.id, PageAt::OlderThan(MailKey { created_at: 0, id: 0 }), 3).await.unwrap();
    assert_eq!(page(&past), ids[0..3].to_vec());
    let none = mails::page_for_account(&mut c, AccountId(i64::MAX), PageAt::Newest, 3).await.unwrap();
    assert!(none.mails.is_empty() && !none.has_newer && !none.has_older);
}

async fn events_hold_seats_exactly_and_stay_scoped(store: Store) {
    use events::{Applied, EventInput, EventState, NewApplication, NewPerson, NewTicket};
    let a = account(&store, "organizer@example.com").await;
    let b = account(&store, "other-organizer@example.com").await;
    let input = |capacity| EventInput {
        title: "Zoomセミナー",
        description: "説明\n二行目",
        starts_at: 10_000,
        ends_at: 20_000,
        capacity,
        apply_from: 0,
        apply_until: 9_000,
        cancel_until: None,
        payment_note: "",
        companions_max: 2,
        payment_methods: "bank_transfer",
        konbini_days: 3,
        state: EventState::Published,
    };
    let tickets = [
        NewTicket { name: "無料席", price_yen: 0, limit_count: None },
        NewTicket { name: "懇親会つき", price_yen: 3000, limit_count: Some(3) },
    ];
    let mut c = store.conn().await.unwrap();
    let id = events::create(&mut c, a.id, "pub-key-1", &input(10), &tickets, 1).await.unwrap();
    let event = events::get(&mut c, a.id, id).await.unwrap().unwrap();
    assert_eq!(
        (event.tickets.len(), event.tickets[1].price_yen, event.description.as_str()),
        (2, 3000, "説明\n二行目")
    );
    assert!(events::get(&mut c, b.id, id).await.unwrap().is_none(), "another account's event");
    assert!(events::summaries(&mut c, b.id).await.unwrap().is_empty());
    assert_eq!(events::public(&mut c, "pub-key-1").await.unwrap().map(|e| e.id), Some(id));
    let free = event.tickets[0].id;
    let priced = event.tickets[1].id;
    drop(c);

    // 50 people race for the last 10 seats: exactly 10 get one.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        racers.spawn(async move {
            let email = format!("p{i}@example.com");
            let people = [NewPerson { name_kanji: "参加 者", name_kana: "", email: &email, phone: "", company: "" }];
            let key = format!("form-{i}");
            let access = format!("access-{i}");
            let app = NewApplication {
                event_id: id,
                ticket_type_id: free,
                submit_key: &key,
                access_key: &access,
                people: &people,
                unique_emails: true,
                status: "completed",
            };
            let mut tx = store.begin().await.unwrap();
            let r = events::apply(&mut tx, &app, 2).await.unwrap();
            if let Applied::Created { id: made, free } = r {
                assert!(free, "a ¥0 ticket");
                // The one transition to completed, in the applying transaction.
                let people = tsunagu_store::applications::complete(&mut tx, made, 2).await.unwrap().unwrap();
                assert_eq!(people.len(), 1);
                assert!(tsunagu_store::applications::complete(&mut tx, made, 2).await.unwrap().is_none(), "once");
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            r
        });
    }
    let mut created = 0;
    while let Some(r) = racers.join_next().await {
        match r.unwrap() {
            Applied::Created { .. } => created += 1,
            Applied::Full { seats_left } => assert_eq!(seats_left, 0),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 10);
    let mut c = store.conn().await.unwrap();
    let s = events::summaries(&mut c, a.id).await.unwrap();
    assert_eq!((s[0].completed, s[0].seats_left()), (10, 0));
    drop(c);

    // A second event: the same form again, a taken email (any case), a ticket's own limit.
    let mut c = store.conn().await.unwrap();
    let id2 = events::create(&mut c, a.id, "pub-key-2", &input(100), &tickets, 1).await.unwrap();
    let e2 = events::get(&mut c, a.id, id2).await.unwrap().unwrap();
    drop(c);
    let try_apply = |key: &'static str, ticket: i64, emails: &'static [&'static str]| {
        let store = store.clone();
        async move {
            let people: Vec<NewPerson> = emails
                .iter()
                .map(|e| NewPerson { name_kanji: "名前", name_kana: "ナマエ", email: e, phone: "", company: "" })
                .collect();
            let access = format!("access2-{key}");
            let app = NewApplication {
                event_id: id2,
                ticket_type_id: ticket,
                submit_key: key,
                access_key: &access,
                people: &people,
                unique_emails: true,
                status: "awaiting_payment",
            };
            let mut tx = store.begin().await.unwrap();
            let r = events::apply(&mut tx, &app, 3).await.unwrap();
            if matches!(r, Applied::Created { .. }) {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            r
        }
    };
    let (free2, priced2) = (e2.tickets[0].id, e2.tickets[1].id);
    let Applied::Created { id: first, .. } = try_apply("f1", priced2, &["x@example.com", "y@example.com"]).await else {
        panic!("first application")
    };
    assert_eq!(try_apply("f1", priced2, &["x@example.com", "y@example.com"]).await, Applied::Again { id: first });
    assert_eq!(
        try_apply("f2", free2, &["z@example.com", "X@Example.com"]).await,
        Applied::EmailTaken { email: "X@Example.com".into() }
    );
    assert_eq!(try_apply("f3", priced2, &["w@example.com", "v@example.com"]).await, Applied::TicketFull { left: 1 });
    assert_eq!(try_apply("f4", priced, &["w@example.com"]).await, Applied::NoSuchTicket, "not this event's ticket");
    let mut c = store.conn().await.unwrap();
    let e2 = events::get(&mut c, a.id, id2).await.unwrap().unwrap();
    assert_eq!((e2.seats_taken, e2.tickets[1].taken), (2, 2), "refused applications hold nothing");
    let s = events::summaries(&mut c, a.id).await.unwrap();
    assert_eq!((s[1].awaiting_payment, s[1].seats_left()), (1, 98));

    // Edits that would undo what people hold are refused; the rest apply.
    use events::{Deleted, EditRefused, TicketEdit};
    let keep = |id: i64, name: &'static str, price_yen: i64, limit_count: Option<i64>| TicketEdit {
        id: Some(id),
        ticket: NewTicket { name, price_yen, limit_count },
    };
    let edits = [keep(free2, "無料席", 0, None), keep(priced2, "懇親会つき", 3000, Some(3))];
    let r = events::update(&mut c, a.id, id2, &input(1), &edits, 5).await.unwrap();
    assert_eq!(r, Some(Err(EditRefused::CapacityBelowTaken { taken: 2 })));
    let r = events::update(&mut c, a.id, id2, &input(50), &edits[..1], 5).await.unwrap();
    assert_eq!(r, Some(Err(EditRefused::TicketInUse { name: "懇親会つき".into(), taken: 2 })));
    let tight = [keep(free2, "無料席", 0, None), keep(priced2, "懇親会つき", 3000, Some(1))];
    let r = events::update(&mut c, a.id, id2, &input(50), &tight, 5).await.unwrap();
    assert_eq!(r, Some(Err(EditRefused::TicketLimitBelowTaken { name: "懇親会つき".into(), taken: 2 })));
    assert_eq!(events::update(&mut c, b.id, id2, &input(50), &edits, 5).await.unwrap(), None, "another account's");
    // (SQLite has one writer: the connection is given back before the transaction begins.)
    drop(c);
    let mut tx = store.begin().await.unwrap();
    let reordered = [
        keep(priced2, "懇親会つき（軽食）", 3500, Some(5)),
        TicketEdit { id: None, ticket: NewTicket { name: "学生", price_yen: 1000, limit_count: None } },
    ];
    let r = events::update(&mut tx, a.id, id2, &input(50), &reordered, 5).await.unwrap();
    assert_eq!(r, Some(Ok(events::Updated { moved: false, zoom_revision: None })), "no Zoom in use");
    tx.commit().await.unwrap();
    let mut c = store.conn().await.unwrap();
    let e2 = events::get(&mut c, a.id, id2).await.unwrap().unwrap();
    let names: Vec<_> = e2.tickets.iter().map(|t| (t.name.as_str(), t.price_yen, t.taken)).collect();
    assert_eq!(names, vec![("懇親会つき（軽食）", 3500, 2), ("学生", 1000, 0)], "the unused free ticket removed");
    assert_eq!((e2.capacity, e2.seats_taken), (50, 2));

    // A copy is a draft without applications; an event with live applications stays.
    let copy = events::copy(&mut c, a.id, id2, "pub-key-3", "コピー Zoomセミナー", 6).await.unwrap().unwrap();
    let e3 = events::get(&mut c, a.id, copy).await.unwrap().unwrap();
    assert_eq!((e3.state, e3.seats_taken, e3.tickets.len(), e3.tickets[0].taken), (EventState::Draft, 0, 2, 0));
    assert_eq!(events::copy(&mut c, b.id, id2, "pub-key-4", "x", 6).await.unwrap(), None);
    assert!(events::public(&mut c, "pub-key-3").await.unwrap().is_none(), "a draft is not public");
    assert_eq!(events::delete(&mut c, a.id, id2).await.unwrap(), Deleted::HasApplications(1));
    assert_eq!(events::delete(&mut c, b.id, copy).await.unwrap(), Deleted::NotFound);
    assert_eq!(events::delete(&mut c, a.id, copy).await.unwrap(), Deleted::Yes);
    assert!(events::get(&mut c, a.id, copy).await.unwrap().is_none());

    // The same form sent again after it took a ticket's last place is that application, not
    // 売り切れ; one person's taken email refuses the whole application, naming that email.
    let one = [NewTicket { name: "残り1枚", price_yen: 500, limit_count: Some(1) }];
    let id5 = events::create(&mut c, a.id, "pub-key-5", &input(10), &one, 7).await.unwrap();
    let t5 = events::get(&mut c, a.id, id5).await.unwrap().unwrap().tickets[0].id;
    drop(c);
    let apply5 = |key: &'static str, emails: &'static [&'static str]| {
        let store = store.clone();
        async move {
            let people: Vec<NewPerson> = emails
                .iter()
                .map(|e| NewPerson { name_kanji: "名前", name_kana: "", email: e, phone: "", company: "" })
                .collect();
            let access = format!("access5-{key}");
            let new = NewApplication {
                event_id: id5,
                ticket_type_id: t5,
                submit_key: key,
                access_key: &access,
                people: &people,
                unique_emails: true,
                status: "awaiting_payment",
            };
            let mut tx = store.begin().await.unwrap();
            let r = events::apply(&mut tx, &new, 8).await.unwrap();
            if matches!(r, Applied::Created { .. }) {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            r
        }
    };
    let Applied::Created { id: last, .. } = apply5("g1", &["last@example.com"]).await else { panic!("the last place") };
    assert_eq!(apply5("g1", &["last@example.com"]).await, Applied::Again { id: last });
    assert_eq!(apply5("g2", &["new@example.com"]).await, Applied::TicketFull { left: 0 });
    let mut c = store.conn().await.unwrap();
    let one_more = [NewTicket { name: "残り1枚", price_yen: 500, limit_count: Some(3) }];
    let edit = [events::TicketEdit { id: Some(t5), ticket: one_more[0].clone() }];
    assert!(matches!(events::update(&mut c, a.id, id5, &input(10), &edit, 9).await.unwrap(), Some(Ok(_))));
    drop(c);
    assert_eq!(
        apply5("g3", &["first@example.com", "LAST@example.com"]).await,
        Applied::EmailTaken { email: "LAST@example.com".into() },
        "the companion's email is the taken one"
    );
    let mut c = store.conn().await.unwrap();
    let e5 = events::get(&mut c, a.id, id5).await.unwrap().unwrap();
    assert_eq!((e5.seats_taken, e5.tickets[0].taken), (1, 1), "refused applications hold nothing");

    // The public form's one read: the event, the organizer's time zone, 同伴者入力設定, and no
    // Zoom while the event does not use it.
    let f = events::public_form(&mut c, "pub-key-5").await.unwrap().expect("published");
    assert_eq!((f.event.id, f.time_zone.as_str(), f.zoom_options, f.host_emails.len()), (id5, "Asia/Tokyo", None, 0));
    assert_eq!(f.event.tickets.len(), 1);
    assert!(events::public_form(&mut c, "pub-key-3").await.unwrap().is_none(), "a deleted draft");
}

async fn zoom_settings_keep_the_newest_save(store: Store) {
    use events::{EventInput, EventState, NewTicket, ZoomChoice, ZoomOutcome};
    let a = account(&store, "zoom-organizer@example.com").await;
    let b = account(&store, "zoom-other@example.com").await;
    let mut c = store.conn().await.unwrap();
    let input = EventInput {
        title: "ウェビナー",
        description: "",
        starts_at: 10_000,
        ends_at: 20_000,
        capacity: 100,
        apply_from: 0,
        apply_until: 9_000,
        cancel_until: None,
        payment_note: "",
        companions_max: 0,
        payment_methods: "bank_transfer",
        konbini_days: 3,
        state: EventState::Draft,
    };
    let tickets = [NewTicket { name: "一般", price_yen: 0, limit_count: None }];
    let id = events::create(&mut c, a.id, "zoom-key", &input, &tickets, 1).await.unwrap();
    let ticket = events::get(&mut c, a.id, id).await.unwrap().unwrap().tickets[0].id;
    let same_tickets = [events::TicketEdit { id: Some(ticket), ticket: tickets[0].clone() }];
    let choice = |kind, duration| ZoomChoice {
        enabled: true,
        kind,
        starts_at: 10_000,
        duration_minutes: duration,
        options: r#"{"registration":true}"#,
    };
    assert!(events::zoom_settings(&mut c, a.id, id).await.unwrap().is_none(), "never saved");
    assert_eq!(events::save_zoom_settings(&mut c, b.id, id, &choice("meeting", 60), 2).await.unwrap(), None);
    assert_eq!(events::save_zoom_settings(&mut c, a.id, id, &choice("meeting", 60), 2).await.unwrap(), Some(1));
    assert!(events::zoom_settings(&mut c, b.id, id).await.unwrap().is_none(), "another account's");
    // A second save while the first one's job runs: the first job records what Zoom holds,
    // but the state waits for the second.
    assert_eq!(events::save_zoom_settings(&mut c, a.id, id, &choice("meeting", 90), 3).await.unwrap(), Some(2));
    let created = ZoomOutcome {
        state: "created",
        reason: "",
        zoom_id: Some(85_000_000_001),
        zoom_kind: "meeting",
        join_url: "https://zoom.us/j/85000000001",
        passcode: "",
    };
    assert!(!events::record_zoom_outcome(&mut c, id, 1, &created, 4).await.unwrap());
    let z = events::zoom_settings(&mut c, a.id, id).await.unwrap().unwrap();
    assert_eq!(
        (z.state.as_str(), z.zoom_id, z.duration_minutes, z.applied_revision),
        ("pending", Some(85_000_000_001), 90, 0)
    );
    assert!(events::record_zoom_outcome(&mut c, id, 2, &created, 5).await.unwrap());
    let z = events::zoom_settings(&mut c, a.id, id).await.unwrap().unwrap();
    assert_eq!(
        (z.state.as_str(), z.applied_revision, z.join_url.as_str()),
        ("created", 2, "https://zoom.us/j/85000000001")
    );
    // Moving the event an hour later moves Zoom's start with it, as a new revision; an edit
    // Zoom does not show (the capacity) leaves Zoom alone.
    let later = EventInput { starts_at: 10_000 + 3_600_000, ends_at: 20_000 + 3_600_000, ..input.clone() };
    let r = events::update(&mut c, a.id, id, &later, &same_tickets, 6).await.unwrap();
    assert_eq!(r, Some(Ok(events::Updated { moved: true, zoom_revision: Some(3) })));
    let z = events::zoom_settings(&mut c, a.id, id).await.unwrap().unwrap();
    assert_eq!((z.state.as_str(), z.starts_at, z.duration_minutes), ("pending", 10_000 + 3_600_000, 90));
    let bigger = EventInput { capacity: 200, ..later.clone() };
    let r = events::update(&mut c, a.id, id, &bigger, &same_tickets, 7).await.unwrap();
    assert_eq!(r, Some(Ok(events::Updated { moved: false, zoom_revision: None })));
    // Deleting the event takes its settings with it.
    assert_eq!(events::delete(&mut c, a.id, id).await.unwrap(), events::Deleted::Yes);
    assert!(events::zoom_settings_for_job(&mut c, id).await.unwrap().is_none());
}

/// Requests that wait for an application in flight: the same form sent again when it took the
/// last seat is `Again` (not `Full`), and a delete waiting for it counts it and keeps the event.
async fn events_racing_requests_keep_their_answers(store: Store) {
    use events::{Applied, Deleted, EventInput, EventState, NewApplication, NewPerson, NewTicket};
    let a = account(&store, "race@example.com").await;
    let input = EventInput {
        title: "最後の1席",
        description: "",
        starts_at: 10_000,
        ends_at: 20_000,
        capacity: 2,
        apply_from: 0,
        apply_until: 9_000,
        cancel_until: None,
        payment_note: "",
        companions_max: 1,
        payment_methods: "bank_transfer",
        konbini_days: 3,
        state: EventState::Published,
    };
    let mut c = store.conn().await.unwrap();
    let id = events::create(
        &mut c,
        a.id,
        "race-key",
        &input,
        &[NewTicket { name: "一般", price_yen: 0, limit_count: None }],
        1,
    )
    .await
    .unwrap();
    let ticket = events::get(&mut c, a.id, id).await.unwrap().unwrap().tickets[0].id;
    drop(c);
    // Two people, one without an email: no clash between "no email"s.
    let people = [
        NewPerson { name_kanji: "代表 者", name_kana: "", email: "rep@example.com", phone: "", company: "" },
        NewPerson { name_kanji: "同伴 者", name_kana: "", email: "", phone: "", company: "" },
    ];
    let app = |key: &'static str| NewApplication {
        event_id: id,
        ticket_type_id: ticket,
        submit_key: key,
        access_key: key,
        people: &people,
        unique_emails: true,
        status: "completed",
    };
    let mut first = store.begin().await.unwrap();
    let Applied::Created { id: made, .. } = events::apply(&mut first, &app("form-1"), 2).await.unwrap() else {
        panic!("first")
    };
    let (again, delete) = {
        let s1 = store.clone();
        let again = tokio::spawn(async move {
            let people = [
                NewPerson { name_kanji: "代表 者", name_kana: "", email: "rep@example.com", phone: "", company: "" },
                NewPerson { name_kanji: "同伴 者", name_kana: "", email: "", phone: "", company: "" },
            ];
            let a2 = NewApplication {
                event_id: id,
                ticket_type_id: ticket,
                submit_key: "form-1",
                access_key: "form-1-again",
                people: &people,
                unique_emails: true,
                status: "completed",
            };
            let mut tx = s1.begin().await.unwrap();
            let r = events::apply(&mut tx, &a2, 3).await.unwrap();
            tx.rollback().await.unwrap();
            r
        });
        let s2 = store.clone();
        let account = a.id;
        let delete = tokio::spawn(async move {
            let mut tx = s2.begin().await.unwrap();
            let r = events::delete(&mut tx, account, id).await.unwrap();
            tx.commit().await.unwrap();
            r
        });
        (again, delete)
    };
    // Both are waiting for the first transaction (PostgreSQL: its row lock; SQLite: the writer).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    first.commit().await.unwrap();
    assert_eq!(again.await.unwrap(), Applied::Again { id: made }, "the same form, not 満席");
    assert_eq!(delete.await.unwrap(), Deleted::HasApplications(1), "the application is counted");
    let mut c = store.conn().await.unwrap();
    let e = events::get(&mut c, a.id, id).await.unwrap().expect("the event is kept");
    assert_eq!(e.seats_taken, 2);
}

async fn course_subscriptions_are_claimed_once_and_steps_handled_once(store: Store) {
    use tsunagu_store::courses;
    let a = account(&store, "instructor@example.com").await;
    let mut c = store.conn().await.unwrap();
    let course =
        courses::create_course(&mut c, a.id, "course-key", "はじめてのLINE講座", "Asia/Tokyo", 1).await.unwrap();
    assert!(courses::create_course(&mut c, a.id, "course-key", "x", "Asia/Tokyo", 1).await.is_err(), "key taken");
    let step = |body, timing, position| courses::NewStep {
        kind: "text",
        body,
        media_id: None,
        timing,
        position,
        valid_from: 0,
    };
    let first = courses::add_step(&mut c, course, &step("ようこそ", None, 1), 2).await.unwrap();
    let second = courses::add_step(&mut c, course, &step("1日目", Some((1, 540)), 1), 2).await.unwrap();
    let steps = courses::steps(&mut c, course).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| (s.id, s.timing)).collect::<Vec<_>>(),
        vec![(first, None), (second, Some((1, 540)))]
    );
    // 300 students started at 1,000; 20 more are due later, 5 are not friends yet.
    // (SQLite has one writer: the connection is given back before the transaction begins.)
    drop(c);
    let mut tx = store.begin().await.unwrap();
    for i in 0..325 {
        let student =
            courses::create_student(&mut tx, a.id, Some(&format!("s{i}@example.com")), None, "", 3).await.unwrap();
        let sub = courses::subscribe(&mut tx, course, student, 4).await.unwrap();
        assert_eq!(courses::subscribe(&mut tx, course, student, 5).await.unwrap(), sub, "starting again");
        if i < 320 {
            let due = if i < 300 { 1_000 } else { 50_000 };
            let reply = (i == 0).then_some(("reply-token", 3_000));
            assert!(courses::start(&mut tx, sub, &format!("U{i}"), 1_000, Some(due), reply).await.unwrap());
            assert!(!courses::start(&mut tx, sub, &format!("U{i}"), 9_000, Some(9_000), None).await.unwrap(), "once");
        }
    }
    tx.commit().await.unwrap();

    // Two dispatchers claim in batches at once: each due subscription exactly once.
    let claim = |worker: &'static str| {
        let store = store.clone();
        async move {
            let mut got = Vec::new();
            loop {
                let mut tx = store.begin().await.unwrap();
                let batch = courses::claim_due(&mut tx, store.backend(), worker, 40, 2_000, 60_000).await.unwrap();
                tx.commit().await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch);
            }
        }
    };
    let (one, two) = tokio::join!(claim("w1"), claim("w2"));
    let ids: HashSet<i64> = one.iter().chain(&two).map(|d| d.id).collect();
    assert_eq!((one.len() + two.len(), ids.len()), (300, 300), "disjoint and complete");
    let with_token: Vec<_> = one.iter().chain(&two).filter(|d| d.reply_token.is_some()).collect();
    assert_eq!(with_token.len(), 1, "the fresh reply token comes with its subscription");
    assert!(one.iter().chain(&two).all(|d| d.started_at == 1_000 && d.line_user_id.starts_with('U')));

    // Handled once: recording a step again keeps the first record.
    let mut c = store.conn().await.unwrap();
    let d = &one.first().or(two.first()).unwrap().clone();
    let worker = if one.iter().any(|x| x.id == d.id) { "w1" } else { "w2" };
    assert_eq!(courses::record_handled(&mut c, d.id, &[first], "sent", None, 2_001).await.unwrap(), 1);
    assert_eq!(courses::record_handled(&mut c, d.id, &[first, second], "skipped", None, 2_002).await.unwrap(), 1);
    assert_eq!(courses::handled(&mut c, &[d.id]).await.unwrap().len(), 2);
    let other = one.iter().chain(&two).find(|x| x.id != d.id).unwrap().id;
    assert!(courses::still_held(&mut c, worker, &[d.id, d.id]).await.unwrap());
    let was: String = sqlx::query_scalar("SELECT locked_by FROM course_subscriptions WHERE id = $1")
        .bind(other)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    sqlx::query("UPDATE course_subscriptions SET locked_by = $1 WHERE id = $2")
        .bind(worker)
        .bind(other)
        .execute(&mut *c)
        .await
        .unwrap();
    assert!(courses::still_held(&mut c, worker, &[d.id, other]).await.unwrap());
    sqlx::query("UPDATE course_subscriptions SET locked_by = 'taken-over' WHERE id = $1")
        .bind(other)
        .execute(&mut *c)
        .await
        .unwrap();
    assert!(!courses::still_held(&mut c, worker, &[d.id, other]).await.unwrap(), "one was taken over");
    sqlx::query("UPDATE course_subscriptions SET locked_by = $1 WHERE id = $2")
        .bind(&was)
        .bind(other)
        .execute(&mut *c)
        .await
        .unwrap();
    assert!(!courses::still_held(&mut c, "someone-else", &[d.id]).await.unwrap());
    assert!(!courses::release(&mut c, d.id, "someone-else", Some(3_000), 2_003).await.unwrap(), "not the holder");
    assert!(courses::release(&mut c, d.id, worker, Some(90_000), 2_003).await.unwrap());
    // Leases: nothing is claimable until they run out; then the 299 unreleased come back, and
    // at 50,000 the 20 later ones too (the released one is due at 90,000).
    assert!(courses::claim_due(&mut c, store.backend(), "w3", 1000, 2_004, 60_000).await.unwrap().is_empty());
    let back = courses::claim_due(&mut c, store.backend(), "w3", 1000, 62_001, 60_000).await.unwrap();
    assert_eq!(back.len(), 299 + 20);
    assert!(back.iter().all(|b| b.id != d.id && b.reply_token.is_none()));

    // Requests: stored before they are sent; a pending one comes back once its lease passed,
    // to one claimer; settling one settles its steps.
    let first_send = courses::insert_send(&mut c, "ch", "push", Some("key-1"), "{}", 70_000, 62_002).await.unwrap();
    let second = courses::insert_send(&mut c, "ch", "multicast", Some("key-2"), "{}", 80_000, 62_002).await.unwrap();
    assert!(courses::insert_send(&mut c, "ch", "push", Some("key-1"), "{}", 1, 1).await.is_err(), "one row per key");
    assert!(courses::insert_send(&mut c, "ch", "reply", None, "{}", 1, 1).await.is_ok(), "replies have no key");
    let sub = back[0].id;
    courses::record_handled(&mut c, sub, &[first], "sending", Some(first_send), 62_002).await.unwrap();
    let reply_send: i64 =
        sqlx::query_scalar("SELECT id FROM line_sends WHERE method = 'reply'").fetch_one(&mut *c).await.unwrap();
    assert!(courses::settle_send(&mut c, reply_send, "sent", "", 62_003).await.unwrap());
    // The claimed subscriptions are still due at 1,000 until their holder releases them.
    assert_eq!(courses::next_due(&mut c).await.unwrap(), Some(1_000));
    assert!(courses::claim_stale_sends(&mut c, store.backend(), 10, 69_999, 5_000).await.unwrap().is_empty());
    let stale = courses::claim_stale_sends(&mut c, store.backend(), 10, 75_000, 5_000).await.unwrap();
    assert_eq!(stale.iter().map(|s| s.id).collect::<Vec<_>>(), vec![first_send]);
    assert!(courses::claim_stale_sends(&mut c, store.backend(), 10, 79_999, 5_000).await.unwrap().is_empty(), "leased");
    assert!(courses::settle_send(&mut c, first_send, "sent", "", 76_000).await.unwrap());
    assert!(!courses::settle_send(&mut c, first_send, "failed", "x", 76_001).await.unwrap(), "settled once");
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM step_deliveries WHERE send_id = $1")
        .bind(first_send)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(outcome, "sent");
    let got = courses::claim_stale_sends(&mut c, store.backend(), 10, 90_000, 5_000).await.unwrap();
    assert_eq!(got.iter().map(|s| s.id).collect::<Vec<_>>(), vec![second]);
}

/// A step added while a dispatcher holds a subscription (planned with the old steps): its
/// release makes it due again instead of keeping that plan. A reply (no retry key) is taken for
/// its one attempt by one dispatcher only.
async fn a_changed_course_makes_held_subscriptions_due_again_and_a_reply_is_tried_once(store: Store) {
    use tsunagu_store::courses;
    let a = account(&store, "replan@example.com").await;
    let mut tx = store.begin().await.unwrap();
    let course = courses::create_course(&mut tx, a.id, "replan-key", "講座", "Asia/Tokyo", 1).await.unwrap();
    let step = courses::NewStep { kind: "text", body: "1", media_id: None, timing: None, position: 1, valid_from: 0 };
    courses::add_step(&mut tx, course, &step, 1).await.unwrap();
    let mut subs = Vec::new();
    for i in 0..2 {
        let student = courses::create_student(&mut tx, a.id, None, None, "", 1).await.unwrap();
        let sub = courses::subscribe(&mut tx, course, student, 1).await.unwrap();
        courses::start(&mut tx, sub, &format!("U{i:032x}"), 10, Some(10), None).await.unwrap();
        subs.push(sub);
    }
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let claimed = courses::claim_due(&mut tx, store.backend(), "w1", 10, 100, 1_000).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 2);
    // The instructor adds a step while w1 plans with the old ones (which left nothing to come).
    let mut c = store.conn().await.unwrap();
    courses::add_step(&mut c, course, &courses::NewStep { body: "2", position: 2, ..step.clone() }, 150).await.unwrap();
    courses::replan(&mut c, course, 150).await.unwrap();
    courses::release_many(&mut c, &[subs[0]], "w1", None, 200).await.unwrap();
    courses::release(&mut c, subs[1], "w1", None, 200).await.unwrap();
    let next: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT next_at FROM course_subscriptions ORDER BY id").fetch_all(&mut *c).await.unwrap();
    assert_eq!(next, vec![Some(200), Some(200)], "due again, not finished");
    // A later round plans and releases as it decides.
    drop(c);
    let mut tx = store.begin().await.unwrap();
    let claimed = courses::claim_due(&mut tx, store.backend(), "w2", 10, 300, 1_000).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mut c = store.conn().await.unwrap();
    courses::release_many(&mut c, &subs, "w2", None, 300).await.unwrap();
    let next: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT next_at FROM course_subscriptions ORDER BY id").fetch_all(&mut *c).await.unwrap();
    assert_eq!(next, vec![None, None]);

    // A reply's one attempt goes to one dispatcher.
    let id = courses::insert_send(&mut c, "2000000001", "reply", None, "{}", 1_000, 1).await.unwrap();
    assert!(courses::take_reply_attempt(&mut c, id).await.unwrap());
    assert!(!courses::take_reply_attempt(&mut c, id).await.unwrap(), "taken already");
}
