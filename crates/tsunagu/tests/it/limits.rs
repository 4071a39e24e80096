//! Upstream limits hold across instances and restarts (issue 11 §5). Two app instances on one
//! PostgreSQL database, each with its own Zoom and LINE clients exactly as two `serve`
//! processes have, add Zoom registrants, update the meeting and push LINE messages at once,
//! as fast as their limiters let them; the sandboxes (each on its own thread, counting per
//! account and channel per sliding second, and per host and email per day) see no 429 and no
//! limit exceeded, and all the work is done. And a restarted instance still refuses what the
//! day's counts no longer allow, without sending it.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tsunagu_line::client::{RetryKey, TokenKind};
use tsunagu_line::message::Message;
use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox};
use tsunagu_sandbox::zoom::{Plan, S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_zoom::auth::S2sCredentials;
use tsunagu_zoom::model::{EventRef, NewRegistrant};
use tsunagu_zoom::settings::{self, MeetingOptions, Schedule, UrlSender};
use tsunagu_zoom::{Auth, Organizer, ZoomError};

use crate::helpers::{Db, TempDir, TestApp, database_url, test_config};

const ZOOM_ACCOUNT: &str = "zoom-limits-1";
const OWNER: &str = "owner@example.com";
const CHANNEL: &str = "2000000501";
const SECRET: &str = "limits-channel-secret";
const DAY_MS: i64 = 86_400_000;

struct Upstreams {
    zoom: ZoomSandbox,
    line: LineSandbox,
    zoom_base: String,
    line_base: String,
    _running: Vec<tsunagu_sandbox::Detached>,
}

/// The Zoom and LINE sandboxes, each on its own thread (see [`tsunagu_sandbox::Detached`]).
fn upstreams(plan: Plan) -> Upstreams {
    let zoom = ZoomSandbox::new();
    zoom.add_app(S2sApp {
        account_id: ZOOM_ACCOUNT.into(),
        client_id: "limits-cid".into(),
        client_secret: "limits-secret".into(),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    zoom.add_user(SandboxUser {
        account_id: ZOOM_ACCOUNT.into(),
        id: "owner-id".into(),
        email: OWNER.into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    zoom.set_plan(ZOOM_ACCOUNT, plan);
    let line = LineSandbox::new();
    line.set_recording(false);
    line.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "b".repeat(32)),
        basic_id: "@limits".into(),
        display_name: "上限テスト講座".into(),
        monthly_quota: None,
        login: None,
    });
    let z = tsunagu_sandbox::Detached::serve(zoom.router()).expect("zoom sandbox");
    let l = tsunagu_sandbox::Detached::serve(line.router()).expect("line sandbox");
    Upstreams { zoom, line, zoom_base: z.base.clone(), line_base: l.base.clone(), _running: vec![z, l] }
}

fn point_at(config: &mut tsunagu::config::Config, up: &Upstreams, plan: &str) {
    config.zoom.api_base_url = format!("{}/v2", up.zoom_base);
    config.zoom.oauth_base_url = up.zoom_base.clone();
    config.zoom.plan = plan.into();
    config.line.api_base_url = up.line_base.clone();
}

/// The organizer as `tsunagu::zoom::organizer` reads it (the key is the account id).
fn organizer(t: &TestApp) -> Organizer {
    Organizer {
        key: "1".into(),
        auth: Auth::S2s(S2sCredentials {
            account_id: ZOOM_ACCOUNT.into(),
            client_id: "limits-cid".into(),
            client_secret: "limits-secret".into(),
        }),
        plan: tsunagu::zoom::plan(&t.app.config),
    }
}

fn channel() -> tsunagu_line::Channel {
    tsunagu_line::Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: TokenKind::Stateless }
}

fn person(i: usize) -> NewRegistrant {
    NewRegistrant {
        first_name: format!("参加者{i}"),
        last_name: "テスト".into(),
        email: format!("person{i}@example.com"),
        custom_questions: vec![],
        auto_approve: None,
    }
}

async fn create_meeting(t: &TestApp, org: &Organizer) -> Result<i64, ZoomError> {
    let (body, _) = settings::meeting(
        &Schedule {
            topic: "上限テスト",
            start: jiff::civil::date(2030, 12, 5).at(19, 30, 0, 0),
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
    .expect("valid settings");
    Ok(t.app.zoom.create_meeting(org, OWNER, &body).await?.id)
}

async fn update(t: &TestApp, org: &Organizer, meeting: i64, n: usize) -> Result<(), ZoomError> {
    let patch = serde_json::json!({ "agenda": format!("更新 {n}") });
    t.app.zoom.update_event(org, EventRef::Meeting(meeting), OWNER, &patch).await
}

/// Everything one instance does in the shared-limits test, as fast as its clients allow.
struct Work {
    people: Vec<usize>,
    /// Emails each added twice by each instance: four adds, of which Zoom allows three a day.
    repeated: Vec<usize>,
    updates: usize,
    users: Vec<String>,
}

/// What one Zoom call of the workload ended with.
enum Call {
    Add(usize, Result<tsunagu_zoom::Registration, ZoomError>),
    Update(Result<(), ZoomError>),
}

#[derive(Default, Debug)]
struct Outcome {
    added: usize,
    repeated_added: HashMap<usize, usize>,
    repeated_refused: HashMap<usize, usize>,
    updated: usize,
    updates_refused: usize,
    pushed: usize,
}

async fn run(t: Arc<TestApp>, meeting: i64, work: Work) -> Outcome {
    let Work { people, repeated, updates, users } = work;
    let org = Arc::new(organizer(&t));
    let zoom = {
        let (t, org, repeated) = (t.clone(), org.clone(), repeated.clone());
        tokio::spawn(async move {
            let gate = Arc::new(Semaphore::new(16));
            let mut tasks = tokio::task::JoinSet::new();
            for i in people.into_iter().chain(repeated.iter().flat_map(|&i| [i, i])) {
                let (t, org, gate) = (t.clone(), org.clone(), gate.clone());
                tasks.spawn(async move {
                    let _p = gate.acquire_owned().await.unwrap();
                    Call::Add(i, t.app.zoom.add_registrant(&org, EventRef::Meeting(meeting), &person(i), false).await)
                });
            }
            for n in 0..updates {
                let (t, org, gate) = (t.clone(), org.clone(), gate.clone());
                tasks.spawn(async move {
                    let _p = gate.acquire_owned().await.unwrap();
                    Call::Update(update(&t, &org, meeting, n).await)
                });
            }
            tasks.join_all().await
        })
    };
    let line = {
        let t = t.clone();
        tokio::spawn(async move {
            let gate = Arc::new(Semaphore::new(64));
            let mut tasks = tokio::task::JoinSet::new();
            for user in users {
                let (t, gate) = (t.clone(), gate.clone());
                tasks.spawn(async move {
                    let _p = gate.acquire_owned().await.unwrap();
                    let key = RetryKey::new(t.app.line.now_ms());
                    t.app.line.push(&channel(), &user, &[Message::text("今日のレッスンです")], &key).await
                });
            }
            tasks.join_all().await
        })
    };
    let mut out = Outcome::default();
    for call in zoom.await.unwrap() {
        match call {
            Call::Add(i, Ok(_)) if repeated.contains(&i) => *out.repeated_added.entry(i).or_default() += 1,
            Call::Add(_, Ok(_)) => out.added += 1,
            Call::Add(i, Err(ZoomError::RegistrantDailyLimit)) if repeated.contains(&i) => {
                *out.repeated_refused.entry(i).or_default() += 1
            }
            Call::Add(i, Err(e)) => panic!("person {i}: {e:?}"),
            Call::Update(Ok(())) => out.updated += 1,
            Call::Update(Err(ZoomError::DailyLimit { .. })) => out.updates_refused += 1,
            Call::Update(Err(e)) => panic!("update: {e:?}"),
        }
    }
    for r in line.await.unwrap() {
        r.expect("every push is sent");
        out.pushed += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_zoom_and_line_limits_postgres() {
    let up = upstreams(Plan::Pro);
    let dir = TempDir::new("tsunagu-limits");
    let Some(url) = database_url(Db::Postgres, dir.path()).await else { return };
    let key = dir.path().join("master.key");
    tsunagu::crypto::Keyring::new(tsunagu::crypto::MasterKey::generate()).write_file(&key).unwrap();
    let mut config = test_config(dir.path(), &url);
    config.secrets.master_key_file = Some(key);
    point_at(&mut config, &up, "pro");
    let a = Arc::new(TestApp::start(config.clone(), dir).await);
    let b_dir = TempDir::new("tsunagu-limits-b");
    config.data.dir = b_dir.path().to_path_buf();
    let b = Arc::new(TestApp::start(config, b_dir).await);

    // The host's allowance: the create is the first of its 100 creates+updates today.
    let meeting = create_meeting(&a, &organizer(&a)).await.unwrap();
    let users: Vec<String> = (0..6000).map(|_| up.line.new_user_id()).collect();
    for u in &users {
        up.line.set_friend(CHANNEL, u);
    }
    let (people, repeated, updates) = (120, [1000, 1001, 1002, 1003], 55);
    let work = |half: usize| Work {
        people: (0..people).filter(|i| i % 2 == half).collect(),
        repeated: repeated.to_vec(),
        updates,
        users: users.iter().skip(half).step_by(2).cloned().collect(),
    };
    let started = std::time::Instant::now();
    let (x, y) = tokio::join!(run(a.clone(), meeting, work(0)), run(b.clone(), meeting, work(1)));
    let seconds = started.elapsed().as_secs_f64();

    let zoom = up.zoom.stats();
    let line = up.line.stats();
    eprintln!(
        "two instances: {} Zoom requests ({} per-second and {} daily 429s) and {} LINE pushes ({} 429s) in \
         {seconds:.1} s; most in any second: {:?} {:?}",
        zoom.requests,
        zoom.qps_429,
        zoom.daily_429,
        line.requests,
        line.rate_429,
        zoom.max_in_any_second,
        line.max_in_any_second
    );
    // No limit was exceeded anywhere.
    assert_eq!(zoom.qps_429, 0, "Zoom's per-second limit per account");
    assert_eq!(zoom.daily_429, 0, "Zoom's daily limits per host and per email");
    assert!(zoom.max_in_any_second[&(ZOOM_ACCOUNT.to_string(), "Light".to_string())] <= 30);
    assert_eq!(line.rate_429, 0, "LINE's per-channel limit");
    assert!(line.max_in_any_second[&(CHANNEL.to_string(), "push".to_string())] <= 2000);
    // The work was done: every person registered once, every user messaged once.
    assert_eq!(x.added + y.added, people);
    assert_eq!(up.zoom.registrants(meeting).len(), people + repeated.len());
    for i in repeated {
        let sent = x.repeated_added.get(&i).unwrap_or(&0) + y.repeated_added.get(&i).unwrap_or(&0);
        let refused = x.repeated_refused.get(&i).unwrap_or(&0) + y.repeated_refused.get(&i).unwrap_or(&0);
        assert_eq!((sent, refused), (3, 1), "person {i}: three adds a day, the fourth refused here");
        assert_eq!(up.zoom.add_calls_for(&person(i).email), 3);
    }
    // One create and 99 updates fill the host's 100; the other 11 updates were refused here.
    assert_eq!((x.updated + y.updated, x.updates_refused + y.updates_refused), (99, 11));
    assert_eq!(x.pushed + y.pushed, users.len());
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for r in up.line.received() {
        *per_user.entry(r.user_id).or_default() += 1;
    }
    assert_eq!(per_user.len(), users.len());
    assert!(per_user.values().all(|&n| n == 1), "each user exactly once");
    a.assert_no_jobs_left().await;
}

/// A day's counts survive a restart: the new instance refuses the 101st create/update for the
/// host and the 4th add for an email without asking Zoom, and allows them again the next UTC
/// day.
async fn daily_counts_survive_a_restart(db: Db) {
    let up = upstreams(Plan::BusinessPlus);
    let Some(t) = TestApp::spawn_on(db, |c| point_at(c, &up, "business")).await else { return };
    let org = organizer(&t);
    let meeting = create_meeting(&t, &org).await.unwrap();
    for n in 0..99 {
        update(&t, &org, meeting, n).await.unwrap();
    }
    for _ in 0..3 {
        t.app.zoom.add_registrant(&org, EventRef::Meeting(meeting), &person(1), false).await.unwrap();
    }
    let config = t.app.config.clone();
    let dir = t.stop().await;

    let t = TestApp::start(config, dir).await;
    let sent = up.zoom.exchanges().len();
    assert!(matches!(update(&t, &org, meeting, 100).await, Err(ZoomError::DailyLimit { .. })));
    assert!(matches!(create_meeting(&t, &org).await, Err(ZoomError::DailyLimit { .. })));
    let add = t.app.zoom.add_registrant(&org, EventRef::Meeting(meeting), &person(1), false).await;
    assert_eq!(add.unwrap_err(), ZoomError::RegistrantDailyLimit);
    assert_eq!(t.app.zoom.registrant_adds_today(&org, &person(1).email).await, Ok(3));
    assert_eq!(up.zoom.exchanges().len(), sent, "refused here, nothing sent to Zoom");
    assert_eq!(up.zoom.stats().daily_429, 0);

    // 00:00 UTC: Zoom's counters and ours start again.
    t.clock.advance(DAY_MS);
    up.zoom.reset_daily();
    update(&t, &org, meeting, 101).await.unwrap();
    let again = t.app.zoom.add_registrant(&org, EventRef::Meeting(meeting), &person(1), false).await.unwrap();
    assert_eq!(up.zoom.registrants(meeting).len(), 1, "the same person, registered once");
    assert_eq!(again.registrant_id, up.zoom.registrants(meeting)[0].id);
    assert_eq!(up.zoom.stats().daily_429, 0);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_counts_survive_a_restart_sqlite() {
    daily_counts_survive_a_restart(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_counts_survive_a_restart_postgres() {
    daily_counts_survive_a_restart(Db::Postgres).await;
}

/// With the database gone, nothing is sent: the limits cannot be consulted, so the calls end
/// with `limits_unavailable` (retried later) instead of going out uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_when_the_limits_cannot_be_consulted_postgres() {
    let up = upstreams(Plan::Pro);
    let Some(t) = TestApp::spawn_on(Db::Postgres, |c| point_at(c, &up, "pro")).await else { return };
    let org = organizer(&t);
    let meeting = create_meeting(&t, &org).await.unwrap();
    let user = up.line.new_user_id();
    up.line.set_friend(CHANNEL, &user);
    let mut cfg = tsunagu_line::LineConfig::new(&up.line_base);
    cfg.backoff_base = std::time::Duration::from_millis(1);
    let rate = tsunagu::limits::rate_budget(&t.app.store).expect("shared on PostgreSQL");
    let line = tsunagu_line::LineClient::new(cfg).with_rate_budget(rate);
    let (zoom_before, line_before) = (up.zoom.stats().requests, up.line.stats().requests);

    t.app.store.close().await;
    let add = t.app.zoom.add_registrant(&org, EventRef::Meeting(meeting), &person(1), false).await;
    assert!(matches!(add, Err(ZoomError::LimitsUnavailable { .. })), "{add:?}");
    let push = line.push(&channel(), &user, &[Message::text("届かない")], &RetryKey::new(line.now_ms())).await;
    let err = push.unwrap_err();
    assert_eq!(err.code(), "line.limits_unavailable");
    assert!(err.retryable(), "nothing was sent, so it may be sent later");
    assert_eq!(up.zoom.stats().requests, zoom_before, "no Zoom request");
    assert_eq!(up.line.stats().requests, line_before, "no LINE request");
    assert!(up.line.received().is_empty());
}
