//! Step delivery against the LINE sandbox: a course's steps reach each student exactly once, in
//! 通目 order, at their timings in the course's time zone (the injected clock moves through two
//! days); a crowd due together goes by multicast, a fresh reply token carries the first
//! messages for free, and running the dispatcher again sends nothing twice.

use tsunagu_sandbox::line::{LineChannelSpec, LineFaults, LineSandbox, SimUser};
use tsunagu_store::courses::{self, NewStep};

use crate::helpers::TestApp;

const CHANNEL: &str = "2000000077";
const SECRET: &str = "0c570fa6dd201bb328f1c1eac23a96d7";
const H: i64 = 3_600_000;

/// The next 15:00 in Tokyo after `now`.
fn next_three_pm_tokyo(now: i64) -> i64 {
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    let z = jiff::Timestamp::from_millisecond(now).unwrap().to_zoned(tz.clone());
    let mut day = z.date();
    if z.time() >= jiff::civil::time(15, 0, 0, 0) {
        day = day.tomorrow().unwrap();
    }
    day.at(15, 0, 0, 0).to_zoned(tz).unwrap().timestamp().as_millisecond()
}

fn texts(sb: &LineSandbox, user: &str) -> Vec<(String, &'static str)> {
    sb.received_by(user)
        .into_iter()
        .map(|r| (r.message["text"].as_str().unwrap_or_default().to_string(), r.via))
        .collect()
}

/// The sandbox with the instructor's channel, and the app with that channel saved.
async fn setup() -> (LineSandbox, TestApp, tsunagu_core::AccountId) {
    let sb = LineSandbox::new();
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "c".repeat(32)),
        basic_id: "@steps".into(),
        display_name: "ステップ講座".into(),
        monthly_quota: None,
        login: None,
    });
    let (line_base, task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    std::mem::forget(task);
    let t = TestApp::spawn_with(|c| {
        c.line.api_base_url = line_base.clone();
        c.line.access_base_url = line_base.clone();
    })
    .await;
    t.signup("steps-teacher@example.com", "講師").await;
    let account = {
        let mut c = t.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse("steps-teacher@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
    };
    // LINE is for the ビジネス and スペシャル plans.
    tsunagu_store::accounts::set_plan(&mut t.app.store.conn().await.unwrap(), account, tsunagu_core::Plan::Business, 1)
        .await
        .unwrap();
    tsunagu::line::save_channel(&t.app, account, CHANNEL, SECRET, "Ubot").await.unwrap();
    // The channel's webhook points at the app, so the sandbox's follows and blocks reach it.
    let client = tsunagu_line::LineClient::new(tsunagu_line::LineConfig::new(&line_base));
    let ch = tsunagu_line::Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: Default::default() };
    client.set_webhook_endpoint(&ch, &format!("{}/line/webhook/{CHANNEL}", t.addr)).await.unwrap();
    (sb, t, account)
}

/// `days` after the Tokyo date of `now`, at 10:00 there.
fn tokyo_day_at_ten(now: i64, days: i64) -> i64 {
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    let date = jiff::Timestamp::from_millisecond(now).unwrap().to_zoned(tz.clone()).date();
    let day = date.checked_add(jiff::Span::new().days(days)).unwrap();
    day.at(10, 0, 0, 0).to_zoned(tz).unwrap().timestamp().as_millisecond()
}

/// A friend of the channel who started `course` at `start` (due then).
async fn student(t: &TestApp, sb: &LineSandbox, course: i64, start: i64, reply: bool) -> String {
    let user = sb.new_user_id();
    sb.add_user(SimUser { user_id: user.clone(), display_name: "受講生".into() });
    sb.set_friend(CHANNEL, &user);
    let mut c = t.app.store.conn().await.unwrap();
    let account: i64 = sqlx::query_scalar("SELECT account_id FROM courses WHERE id = $1")
        .bind(course)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    let student = courses::create_student(&mut c, tsunagu_core::AccountId(account), None, None, "", 1).await.unwrap();
    let sub = courses::subscribe(&mut c, course, student, 1).await.unwrap();
    let token = sb.reply_token_for(CHANNEL, &user);
    let reply = reply.then_some((token.as_str(), start + 50_000));
    assert!(courses::start(&mut c, sub, &user, start, Some(start), reply).await.unwrap());
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_reach_each_student_once_in_order_at_their_times() {
    let (sb, t, account) = setup().await;

    // Four steps, added out of order: two 購読開始直後 (通目 2 and 1), day 0 at 20:00, day 1
    // at 09:00.
    let start = next_three_pm_tokyo(t.app.now());
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "steps-course", "LINE講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let step = |body, timing, position| NewStep { kind: "text", body, media_id: None, timing, position, valid_from: 0 };
    courses::add_step(&mut c, course, &step("資料をお送りします", None, 2), 1).await.unwrap();
    courses::add_step(&mut c, course, &step("2日目の朝です", Some((1, 9 * 60)), 1), 1).await.unwrap();
    courses::add_step(&mut c, course, &step("ようこそ", None, 1), 1).await.unwrap();
    courses::add_step(&mut c, course, &step("今夜の課題です", Some((0, 20 * 60)), 1), 1).await.unwrap();
    drop(c);

    // 13 students become friends at 15:00; the first one's follow event left a reply token.
    let mut users = Vec::new();
    for i in 0..13 {
        users.push(student(&t, &sb, course, start, i == 0).await);
    }
    t.clock.advance(start - t.app.now());
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;

    let welcome = |via: &'static str| vec![("ようこそ".to_string(), via), ("資料をお送りします".to_string(), via)];
    assert_eq!(texts(&sb, &users[0]), welcome("reply"), "the reply token carries the first messages");
    for u in &users[1..] {
        assert_eq!(texts(&sb, u), welcome("multicast"), "the other twelve by one multicast");
    }
    assert_eq!(sb.usage(CHANNEL), 12, "quota: twelve recipients, the reply is free");

    // Nothing more before 20:00, however often the dispatcher runs.
    t.clock.advance(4 * H);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert_eq!(texts(&sb, &users[5]).len(), 2);

    // 20:00, then the next morning at 09:00 (the queued runs come due with the clock).
    t.clock.advance(H + 60_000);
    t.run_jobs().await;
    for u in &users {
        assert_eq!(texts(&sb, u).len(), 3, "the evening step");
        assert_eq!(texts(&sb, u)[2].0, "今夜の課題です");
    }
    t.clock.advance(13 * H);
    t.run_jobs().await;
    let mut last = texts(&sb, &users[7]);
    assert_eq!(last.len(), 4);
    assert_eq!(last.pop().unwrap(), ("2日目の朝です".to_string(), "multicast"));
    // Two days on: nothing is sent again.
    t.clock.advance(48 * H);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert!(users.iter().all(|u| texts(&sb, u).len() == 4));
    assert_eq!(sb.usage(CHANNEL), 12 + 13 + 13);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_are_retried_with_their_keys_and_arrive_once() {
    let (sb, t, account) = setup().await;
    let now = t.app.now();
    let mut c = t.app.store.conn().await.unwrap();
    let step = |body| NewStep { kind: "text", body, media_id: None, timing: None, position: 1, valid_from: 0 };
    // Two courses on the channel: 6 students (by push) and 30 (by multicast).
    let mut made = Vec::new();
    for (key, n) in [("few", 6), ("many", 30)] {
        let course = courses::create_course(&mut c, account, key, key, "Asia/Tokyo", 1).await.unwrap();
        courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
        courses::add_step(&mut c, course, &step("ようこそ"), 1).await.unwrap();
        made.push((course, n));
    }
    drop(c);
    let mut users = Vec::new();
    for (course, n) in made {
        for _ in 0..n {
            users.push(student(&t, &sb, course, now, false).await);
        }
    }
    // Half the message requests fail with a 500, half of those after LINE delivered.
    sb.set_faults(LineFaults { rate_500: 0.5, seed: 7, ..Default::default() });
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    for _ in 0..40 {
        t.run_jobs().await;
        if users.iter().all(|u| !sb.received_by(u).is_empty()) && t.jobs_of("courses.dispatch").await == 0 {
            break;
        }
        t.clock.advance(6_000);
    }
    let stats = sb.stats();
    assert!(stats.injected_500_after > 0 && stats.duplicates_409 > 0, "the case that matters happened: {stats:?}");
    for u in &users {
        assert_eq!(sb.received_by(u).len(), 1, "{u} got the step once");
    }
    let mut c = t.app.store.read().await.unwrap();
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM step_deliveries").fetch_all(&mut *c).await.unwrap();
    assert_eq!(outcomes.len(), 36);
    assert!(outcomes.iter().all(|o| o == "sent"), "{outcomes:?}");
    drop(c);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_left_pending_by_a_dead_process_is_sent_again_with_its_key_once() {
    let (sb, t, account) = setup().await;
    let now = t.app.now();
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "crash", "講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let step = courses::add_step(
        &mut c,
        course,
        &NewStep { kind: "text", body: "ようこそ", media_id: None, timing: None, position: 1, valid_from: 0 },
        1,
    )
    .await
    .unwrap();
    drop(c);
    let (pushed, stored) = (student(&t, &sb, course, now, false).await, student(&t, &sb, course, now, false).await);
    // What a dispatcher leaves when it dies: both requests stored with their keys and the steps
    // as sending; LINE had accepted the first (its answer was lost), not the second.
    let mut sends = Vec::new();
    for user in [&pushed, &stored] {
        let key = tsunagu_line::RetryKey::new(now);
        let mut c = t.app.store.conn().await.unwrap();
        let sub: i64 = sqlx::query_scalar("SELECT id FROM course_subscriptions WHERE line_user_id = $1")
            .bind(user.as_str())
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let body = serde_json::json!({"to": [user], "steps": [step], "subscriptions": [sub]}).to_string();
        let id =
            courses::insert_send(&mut c, CHANNEL, "push", Some(&key.key), &body, now + 120_000, now).await.unwrap();
        courses::record_handled(&mut c, sub, &[step], "sending", Some(id), now).await.unwrap();
        sqlx::query("UPDATE course_subscriptions SET next_at = NULL WHERE id = $1")
            .bind(sub)
            .execute(&mut *c)
            .await
            .unwrap();
        sends.push(key);
    }
    let client = tsunagu_line::LineClient::new(tsunagu_line::LineConfig::new(&t.app.config.line.api_base_url));
    let ch = tsunagu_line::Channel { id: CHANNEL.into(), secret: SECRET.into(), token_kind: Default::default() };
    let text = tsunagu_line::message::Message::text("ようこそ");
    client.push(&ch, &pushed, &[text], &sends[0]).await.unwrap();

    // Nothing is resent while the dead process's lease lasts; after it, each once.
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert!(sb.received_by(&stored).is_empty(), "the lease holds");
    t.clock.advance(121_000);
    t.run_jobs().await;
    assert_eq!(sb.received_by(&pushed).len(), 1, "LINE's 409: not sent twice");
    assert_eq!(sb.received_by(&stored).len(), 1, "not lost");
    assert_eq!(sb.stats().duplicates_409, 1);
    let mut c = t.app.store.read().await.unwrap();
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM step_deliveries").fetch_all(&mut *c).await.unwrap();
    assert_eq!(outcomes, vec!["sent", "sent"]);
    drop(c);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follow_starts_in_either_order_and_a_block_skips_what_fell_due() {
    let (sb, t, account) = setup().await;
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "follow", "講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    for (body, timing) in
        [("ようこそ", None), ("2日目", Some((1, 540))), ("3日目", Some((2, 540))), ("4日目", Some((3, 540)))]
    {
        let step = NewStep { kind: "text", body, media_id: None, timing, position: 1, valid_from: 0 };
        courses::add_step(&mut c, course, &step, 1).await.unwrap();
    }
    let mut subs = Vec::new();
    for _ in 0..2 {
        let s = courses::create_student(&mut c, account, None, None, "", 1).await.unwrap();
        subs.push(courses::subscribe(&mut c, course, s, 1).await.unwrap());
    }
    let (later, first) = (subs[0], subs[1]);
    drop(c);
    let got =
        |u: &str| sb.received_by(u).iter().map(|r| r.message["text"].as_str().unwrap().to_string()).collect::<Vec<_>>();

    // Logged in with LINE first, then the follow: the follow starts it.
    let a = sb.new_user_id();
    sb.add_user(SimUser { user_id: a.clone(), display_name: "受講生A".into() });
    let mut c = t.app.store.conn().await.unwrap();
    assert!(!courses::link_line_user(&mut c, later, &a, t.app.now()).await.unwrap(), "not a friend yet");
    drop(c);
    t.run_jobs().await;
    assert!(got(&a).is_empty());
    assert_eq!(sb.follow(CHANNEL, &a).await.unwrap(), 200);
    t.run_jobs().await;
    assert_eq!(got(&a), vec!["ようこそ"]);

    // The follow first, then LINE Login: the link starts it.
    let b = sb.new_user_id();
    sb.add_user(SimUser { user_id: b.clone(), display_name: "受講生B".into() });
    assert_eq!(sb.follow(CHANNEL, &b).await.unwrap(), 200);
    t.run_jobs().await;
    let mut c = t.app.store.conn().await.unwrap();
    assert!(courses::link_line_user(&mut c, first, &b, t.app.now()).await.unwrap(), "a friend already");
    drop(c);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert_eq!(got(&b), vec!["ようこそ"]);

    // A blocks; days 2 and 3 fall due meanwhile; A unblocks on day 3 at 10:00.
    assert_eq!(sb.block(CHANNEL, &a).await.unwrap(), 200);
    t.run_jobs().await;
    let now = t.app.now();
    t.clock.advance(tokyo_day_at_ten(now, 2) - now);
    t.run_jobs().await;
    assert_eq!(got(&b), vec!["ようこそ", "2日目", "3日目"], "B goes on");
    assert_eq!(got(&a), vec!["ようこそ"], "nothing while blocked");
    assert_eq!(sb.follow(CHANNEL, &a).await.unwrap(), 200);
    t.run_jobs().await;
    assert_eq!(got(&a), vec!["ようこそ"], "what fell due while blocked is not sent late");
    let mut c = t.app.store.read().await.unwrap();
    let skipped: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM step_deliveries WHERE subscription_id = $1 AND outcome = 'skipped'")
            .bind(later)
            .fetch_one(&mut *c)
            .await
            .unwrap();
    assert_eq!(skipped, 2, "and it is logged as skipped");
    drop(c);
    // The next step goes out at its time, once.
    t.clock.advance(24 * H);
    t.run_jobs().await;
    assert_eq!(got(&a), vec!["ようこそ", "4日目"]);
    assert_eq!(got(&b), vec!["ようこそ", "2日目", "3日目", "4日目"]);
    t.clock.advance(48 * H);
    t.run_jobs().await;
    assert_eq!(got(&a).len() + got(&b).len(), 6, "nothing twice");
}

/// LINE's monthly limit: the refused requests were not sent, so their steps wait; the channel
/// pauses, the instructor gets a mail and sees the pause on the console, and ［配信を再開する］
/// (after the plan at LINE was raised) delivers what waited, each message once. The job planned
/// for the next month finds nothing left to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_limit_pauses_the_channel_and_nothing_is_lost_or_doubled() {
    let (sb, t, account) = setup().await;
    sb.set_monthly_quota(CHANNEL, Some(3));
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "quota", "上限の講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    courses::update_course(&mut c, account, course, "上限の講座", "", "published", 1).await.unwrap();
    let step = NewStep { kind: "text", body: "ようこそ", media_id: None, timing: None, position: 1, valid_from: 0 };
    courses::add_step(&mut c, course, &step, 1).await.unwrap();
    drop(c);
    let now = t.app.now();
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(student(&t, &sb, course, now, false).await);
    }
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    let got = |u: &str| texts(&sb, u).len();
    assert_eq!(users.iter().map(|u| got(u)).sum::<usize>(), 3, "three within the limit");
    let (paused, mails): (i64, i64) = {
        let mut c = t.app.store.conn().await.unwrap();
        let p = sqlx::query_scalar("SELECT COUNT(*) FROM course_subscriptions WHERE state = 'paused'")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let m = sqlx::query_scalar(
            "SELECT COUNT(*) FROM mails WHERE subject LIKE '%送信上限%' AND to_address = 'steps-teacher@example.com'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        (p, m)
    };
    assert_eq!(paused, 5, "the channel's deliveries pause");
    assert_eq!(mails, 1, "the instructor is told once");
    // Running again sends nothing while paused.
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert_eq!(users.iter().map(|u| got(u)).sum::<usize>(), 3);
    // A student who blocks during the pause is not sent to when it ends.
    let blocker = users.iter().find(|u| got(u) == 0).unwrap().clone();
    assert_eq!(sb.block(CHANNEL, &blocker).await.unwrap(), 200);

    // The console says so, and resumes on request once LINE allows more.
    let teacher = t.client();
    teacher.login("steps-teacher@example.com", crate::helpers::PASSWORD).await;
    let page = teacher.get(&format!("/courses/{course}/line")).await.text;
    assert!(page.contains("送信数の上限に達したため、ステップ配信を一時停止しています"), "{page}");
    assert!(page.contains("上限") && page.contains("3 通"), "the month's figures: {page}");
    sb.set_monthly_quota(CHANNEL, Some(1000));
    let r = teacher.submit(&format!("/courses/{course}/line"), &format!("/courses/{course}/line/resume"), &[]).await;
    assert_eq!(r.status, 303);
    t.run_jobs().await;
    for u in users.iter().filter(|u| **u != blocker) {
        assert_eq!(got(u), 1, "each student gets the message once");
    }
    assert_eq!(got(&blocker), 0, "blocked during the pause: nothing sent");
    let state: String = sqlx::query_scalar("SELECT state FROM course_subscriptions WHERE line_user_id = $1")
        .bind(blocker.as_str())
        .fetch_one(&mut *t.app.store.conn().await.unwrap())
        .await
        .unwrap();
    assert_eq!(state, "blocked", "the block is kept through the resumption (nothing is pushed to them)");
    // The log shows the refused requests with their reason.
    let log = teacher.get(&format!("/courses/{course}/line/log")).await.text;
    assert!(log.contains("送信済み"), "{log}");
    // The planned resumption comes and changes nothing.
    let until = tsunagu::courses::quota::next_month_start(t.app.now());
    t.clock.advance(until - t.app.now() + 1);
    t.run_jobs().await;
    for u in users.iter().filter(|u| **u != blocker) {
        assert_eq!(got(u), 1);
    }
}

/// A LINE user who is a student of two courses on the same channel gets each course's steps
/// once, each recorded against its own subscription (the round keyed them by LINE user, so one
/// subscription's steps were recorded against the other and sent again at its next turn).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_of_two_courses_on_one_channel_gets_each_step_once() {
    let (sb, t, account) = setup().await;
    let mut c = t.app.store.conn().await.unwrap();
    let mut course_ids = Vec::new();
    for (key, text) in [("two-a", "講座Aへようこそ"), ("two-b", "講座Bへようこそ")] {
        let course = courses::create_course(&mut c, account, key, key, "Asia/Tokyo", 1).await.unwrap();
        courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
        let s = NewStep { kind: "text", body: text, media_id: None, timing: None, position: 1, valid_from: 0 };
        courses::add_step(&mut c, course, &s, 1).await.unwrap();
        let day1 = NewStep { body: "翌朝", timing: Some((1, 540)), ..s };
        courses::add_step(&mut c, course, &day1, 1).await.unwrap();
        course_ids.push(course);
    }
    drop(c);
    let now = t.app.now();
    let user = student(&t, &sb, course_ids[0], now, false).await;
    {
        let mut c = t.app.store.conn().await.unwrap();
        let student: i64 = sqlx::query_scalar("SELECT student_id FROM course_subscriptions WHERE line_user_id = $1")
            .bind(user.as_str())
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let sub = courses::subscribe(&mut c, course_ids[1], student, 1).await.unwrap();
        assert!(courses::start(&mut c, sub, &user, now, Some(now), None).await.unwrap());
    }
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    let mut got: Vec<String> = texts(&sb, &user).into_iter().map(|m| m.0).collect();
    got.sort();
    assert_eq!(got, vec!["講座Aへようこそ", "講座Bへようこそ"]);
    // Each subscription recorded its own course's step.
    let wrong: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM step_deliveries d JOIN course_subscriptions u ON u.id = d.subscription_id
         JOIN course_steps s ON s.id = d.step_id WHERE s.course_id <> u.course_id",
    )
    .fetch_one(&mut *t.app.store.conn().await.unwrap())
    .await
    .unwrap();
    assert_eq!(wrong, 0, "a step recorded against the other course's subscription");
    t.clock.advance(2 * 86_400_000);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    let mut got: Vec<String> = texts(&sb, &user).into_iter().map(|m| m.0).collect();
    got.sort();
    assert_eq!(got, vec!["翌朝", "翌朝", "講座Aへようこそ", "講座Bへようこそ"], "each step once");
}

/// A student's later step does not go out before an earlier one whose request is still being
/// retried (or was left by a process that died): the subscription waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_later_goes_before_a_request_still_being_retried() {
    let (sb, t, account) = setup().await;
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "order", "講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let first = NewStep { kind: "text", body: "1通目", media_id: None, timing: None, position: 1, valid_from: 0 };
    let first = courses::add_step(&mut c, course, &first, 1).await.unwrap();
    // Day 0 at 00:00: already past when the student starts, so due at once after the first.
    let second =
        NewStep { kind: "text", body: "2通目", media_id: None, timing: Some((0, 0)), position: 1, valid_from: 0 };
    courses::add_step(&mut c, course, &second, 1).await.unwrap();
    drop(c);
    let now = t.app.now();
    let user = student(&t, &sb, course, now, false).await;
    // The first step's request is stored and being retried (its lease runs another minute).
    let mut c = t.app.store.conn().await.unwrap();
    let sub: i64 = sqlx::query_scalar("SELECT id FROM course_subscriptions WHERE line_user_id = $1")
        .bind(user.as_str())
        .fetch_one(&mut *c)
        .await
        .unwrap();
    let key = tsunagu_line::RetryKey::new(now);
    let body = serde_json::json!({"to": [user], "steps": [first], "subscriptions": [sub]}).to_string();
    let id = courses::insert_send(&mut c, CHANNEL, "push", Some(&key.key), &body, now + 60_000, now).await.unwrap();
    courses::record_handled(&mut c, sub, &[first], "sending", Some(id), now).await.unwrap();
    drop(c);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert!(texts(&sb, &user).is_empty(), "the second step waits for the first: {:?}", texts(&sb, &user));
    t.clock.advance(61_000);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    t.clock.advance(6_000);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    let got: Vec<String> = texts(&sb, &user).into_iter().map(|m| m.0).collect();
    assert_eq!(got, vec!["1通目", "2通目"], "in order, once each");
}

/// When a student's first request does not go out at once (here a reply LINE refuses, sent
/// again by push), their next request in the same round waits behind it instead of arriving
/// first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_behind_one_sent_again_keeps_its_place() {
    let (sb, t, account) = setup().await;
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "behind", "講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let bodies: Vec<String> = (1..=7).map(|i| format!("{i}通目")).collect();
    for (i, body) in bodies.iter().enumerate() {
        let s = NewStep { kind: "text", body, media_id: None, timing: None, position: i as i64 + 1, valid_from: 0 };
        courses::add_step(&mut c, course, &s, 1).await.unwrap();
    }
    let user = sb.new_user_id();
    sb.add_user(SimUser { user_id: user.clone(), display_name: "受講生".into() });
    sb.set_friend(CHANNEL, &user);
    let now = t.app.now();
    let student = courses::create_student(&mut c, account, None, None, "", 1).await.unwrap();
    let sub = courses::subscribe(&mut c, course, student, 1).await.unwrap();
    // A reply token LINE does not know: the reply is refused, and its five steps go by push.
    assert!(
        courses::start(&mut c, sub, &user, now, Some(now), Some(("0".repeat(32).as_str(), now + 50_000)))
            .await
            .unwrap()
    );
    drop(c);
    for _ in 0..4 {
        tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
        t.run_jobs().await;
        t.clock.advance(6_000);
    }
    let got: Vec<String> = texts(&sb, &user).into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies, "in 通目 order, once each");
}

/// A test send that LINE refuses for the monthly limit says that it is not sent again (only
/// students' steps are, after the pause), and the channel pauses as for any refused request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_refused_for_the_monthly_limit_does_not_promise_a_redelivery() {
    let (sb, t, account) = setup().await;
    sb.set_monthly_quota(CHANNEL, Some(0));
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "quota-test", "講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let step = NewStep { kind: "text", body: "テスト", media_id: None, timing: None, position: 1, valid_from: 0 };
    let step = courses::add_step(&mut c, course, &step, 1).await.unwrap();
    let teacher_line = sb.new_user_id();
    sb.set_friend(CHANNEL, &teacher_line);
    let now = t.app.now();
    let body = serde_json::json!({"to": [teacher_line], "steps": [step], "subscriptions": []}).to_string();
    let key = tsunagu_line::RetryKey::new(now);
    let id = courses::insert_test_send(&mut c, course, CHANNEL, &key.key, &body, now).await.unwrap();
    drop(c);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert!(sb.received_by(&teacher_line).is_empty());
    let mut c = t.app.store.conn().await.unwrap();
    let (state, reason): (String, String) =
        sqlx::query_as("SELECT state, reason FROM line_sends WHERE id = $1").bind(id).fetch_one(&mut *c).await.unwrap();
    assert_eq!(state, "failed");
    assert!(reason.contains("テスト配信は自動では送り直しません") && !reason.contains("再開後"), "{reason}");
    let paused: Option<i64> = sqlx::query_scalar("SELECT quota_paused_until FROM line_channels WHERE channel_id = $1")
        .bind(CHANNEL)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert!(paused.is_some(), "the channel pauses: its quota is spent for everyone");
}

/// A step the instructor deleted after its request was stored (a dispatcher had planned it) is
/// not sent: the screen told them it would not be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_deleted_after_its_request_was_stored_is_not_sent() {
    let (sb, t, account) = setup().await;
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "deleted", "講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let s =
        NewStep {
            kind: "text", body: "消したメッセージ", media_id: None, timing: None, position: 1, valid_from: 0
        };
    let step = courses::add_step(&mut c, course, &s, 1).await.unwrap();
    drop(c);
    let now = t.app.now();
    let user = student(&t, &sb, course, now, false).await;
    let mut c = t.app.store.conn().await.unwrap();
    let sub: i64 = sqlx::query_scalar("SELECT id FROM course_subscriptions WHERE line_user_id = $1")
        .bind(user.as_str())
        .fetch_one(&mut *c)
        .await
        .unwrap();
    let key = tsunagu_line::RetryKey::new(now);
    let body = serde_json::json!({"to": [user], "steps": [step], "subscriptions": [sub]}).to_string();
    let id = courses::insert_send(&mut c, CHANNEL, "push", Some(&key.key), &body, now, now).await.unwrap();
    courses::record_handled(&mut c, sub, &[step], "sending", Some(id), now).await.unwrap();
    sqlx::query("UPDATE course_subscriptions SET next_at = NULL WHERE id = $1")
        .bind(sub)
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query("UPDATE course_steps SET deleted_at = $1 WHERE id = $2")
        .bind(now)
        .bind(step)
        .execute(&mut *c)
        .await
        .unwrap();
    drop(c);
    t.clock.advance(1_000);
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert!(sb.received_by(&user).is_empty(), "not sent");
    let reason: String = sqlx::query_scalar("SELECT reason FROM line_sends WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *t.app.store.conn().await.unwrap())
        .await
        .unwrap();
    assert!(reason.contains("削除"), "{reason}");
}

/// An account that moves down to a plan without LINE: its deliveries stop and the instructor
/// is told; back on ビジネス, they go on (what waited first), each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_without_line_stops_the_deliveries_until_it_has_line_again() {
    let (sb, t, account) = setup().await;
    let mut c = t.app.store.conn().await.unwrap();
    let course = courses::create_course(&mut c, account, "plan", "プランの講座", "Asia/Tokyo", 1).await.unwrap();
    courses::set_channel(&mut c, course, Some(CHANNEL), 1).await.unwrap();
    let step = NewStep { kind: "text", body: "ようこそ", media_id: None, timing: None, position: 1, valid_from: 0 };
    courses::add_step(&mut c, course, &step, 1).await.unwrap();
    tsunagu_store::accounts::set_plan(&mut c, account, tsunagu_core::Plan::Standard, 2).await.unwrap();
    drop(c);
    let user = student(&t, &sb, course, t.app.now(), false).await;
    tsunagu::courses::dispatch::queue(&t.app).await.unwrap();
    t.run_jobs().await;
    assert!(texts(&sb, &user).is_empty(), "nothing goes out on a plan without LINE");
    let mails: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mails WHERE subject LIKE '%ステップ配信をご利用いただけない%'")
            .fetch_one(&mut *t.app.store.conn().await.unwrap())
            .await
            .unwrap();
    assert_eq!(mails, 1, "the instructor is told");
    tsunagu_store::accounts::set_plan(&mut t.app.store.conn().await.unwrap(), account, tsunagu_core::Plan::Business, 3)
        .await
        .unwrap();
    t.clock.advance(H + 1);
    t.run_jobs().await;
    assert_eq!(texts(&sb, &user), vec![("ようこそ".to_string(), "push")]);
}
