//! Students on the public host against the LINE sandbox: sign-up and ［受講を開始する］, the
//! friend prompt, LINE Login with the add-friend screen (state, nonce, PKCE), both arrival
//! orders of the friendship (add-friend screen first, or a follow before the login), a
//! declined prompt that starts later with the follow, the steps arriving at their times, and
//! the refusals: a foreign state, a changed nonce, a bad code, a student at the console.

use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox, LoginChannelSpec, SimUser};
use tsunagu_store::courses::{self, NewStep};

use crate::helpers::{Client, Db, TestApp};

const CHANNEL: &str = "2000000099";
const SECRET: &str = "9e0c0fdd1d2a3b4c5d6e7f8091a2b3c4";
const LOGIN: &str = "1600000099";
const LOGIN_SECRET: &str = "b1b2c3d4e5f60718293a4b5c6d7e8f90";

struct World {
    sb: LineSandbox,
    t: TestApp,
    key: String,
    line_base: String,
}

async fn world(db: Db) -> Option<World> {
    let sb = LineSandbox::new();
    let (line_base, task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    std::mem::forget(task);
    let port = crate::helpers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let t = TestApp::spawn_on(db, |c| {
        c.http.listen = format!("127.0.0.1:{port}");
        c.http.public_url = base.clone();
        c.http.manager_url = base.clone();
        c.line.api_base_url = line_base.clone();
        c.line.access_base_url = line_base.clone();
    })
    .await?;
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "f".repeat(32)),
        basic_id: "@students".into(),
        display_name: "受講生の講座".into(),
        monthly_quota: None,
        login: Some(LoginChannelSpec {
            channel_id: LOGIN.into(),
            channel_secret: LOGIN_SECRET.into(),
            redirect_uris: vec![format!("{base}/line/callback")],
        }),
    });
    let teacher = t.signup("students-teacher@example.com", "講師").await;
    {
        let mut c = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("students-teacher@example.com").unwrap();
        let id = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::accounts::set_plan(&mut c, id, tsunagu_core::Plan::Business, 1).await.unwrap();
    }
    let r = teacher
        .submit("/courses/new", "/courses/new", &[("title", "LINE 講座"), ("description", ""), ("state", "published")])
        .await;
    let id: i64 = r.location.unwrap().trim_start_matches("/courses/").parse().unwrap();
    let course = id.to_string();
    let r = teacher
        .submit(
            "/settings/line/new",
            "/settings/line/new",
            &[("course", course.as_str()), ("channel_id", LOGIN), ("channel_secret", LOGIN_SECRET)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let lp = format!("/courses/{id}/line");
    let r = teacher.submit(&lp, &lp, &[("channel_id", CHANNEL), ("channel_secret", SECRET)]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    {
        let mut c = t.app.store.conn().await.unwrap();
        for (body, timing, position) in [("ようこそ", None, 1), ("はじめに", None, 2), ("1日目の朝", Some((1, 540)), 1)]
        {
            let s = NewStep { kind: "text", body, media_id: None, timing, position, valid_from: 0 };
            courses::add_step(&mut c, id, &s, 1).await.unwrap();
        }
    }
    let key = {
        let mut c = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("students-teacher@example.com").unwrap();
        let acc = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id;
        courses::course(&mut c, acc, id).await.unwrap().unwrap().public_key
    };
    Some(World { sb, t, key, line_base })
}

impl World {
    fn user(&self, name: &str) -> String {
        let u = self.sb.new_user_id();
        self.sb.add_user(SimUser { user_id: u.clone(), display_name: name.into() });
        u
    }

    fn texts(&self, user: &str) -> Vec<String> {
        self.sb.received_by(user).iter().map(|r| r.message["text"].as_str().unwrap_or("").to_string()).collect()
    }

    /// 「LINEで友だち追加する」 → the sandbox's consent as `user` (adding the friend or not) →
    /// back at the callback: the callback's answer.
    async fn line_login(&self, browser: &Client, user: &str, add_friend: bool) -> crate::helpers::Page {
        let go = browser.get(&format!("/c/{}/line/login", self.key)).await;
        assert_eq!(go.status, 303, "{}", go.text);
        let authorize = go.location.unwrap();
        for p in ["bot_prompt=aggressive", "code_challenge_method=S256", "nonce=", "state="] {
            assert!(authorize.contains(p), "{p} in {authorize}");
        }
        let back = consent(&self.line_base, authorize.split_once('?').unwrap().1, user, add_friend).await;
        browser.get(back.trim_start_matches(&self.base())).await
    }

    fn base(&self) -> String {
        self.t.app.config.http.public_url.clone()
    }
}

async fn consent(line_base: &str, query: &str, user: &str, add_friend: bool) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{line_base}/oauth2/v2.1/authorize?{query}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let mut form: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    form.retain(|f| {
        ["client_id", "redirect_uri", "state", "nonce", "bot_prompt", "code_challenge", "code_challenge_method"]
            .contains(&f.0.as_str())
    });
    form.push(("user_id".into(), user.into()));
    form.push(("decision".into(), "allow".into()));
    if add_friend {
        form.push(("add_friend".into(), "1".into()));
    }
    let r = http.post(format!("{line_base}/oauth2/v2.1/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["location"].to_str().unwrap().to_string()
}

async fn sign_up(w: &World, name: &str, email: &str) -> Client {
    let browser = w.t.client();
    let page = browser.get(&format!("/c/{}", w.key)).await;
    assert!(page.text.contains("受講を開始する"), "{}", page.text);
    let r = browser.submit(&format!("/c/{}", w.key), &format!("/c/{}/start", w.key), &[]).await;
    assert_eq!(r.location.as_deref(), Some(format!("/c/{}/signup", w.key).as_str()), "sign up first");
    let signup = format!("/c/{}/signup", w.key);
    let r = browser
        .submit(
            &signup,
            &signup,
            &[("name", name), ("email", email), ("password", "password-123"), ("password_confirm", "password-123")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.location.as_deref(), Some(format!("/c/{}/line", w.key).as_str()), "the friend prompt follows");
    let prompt = browser.get(&format!("/c/{}/line", w.key)).await.text;
    assert!(prompt.contains("公式LINEと友だちになってください") && prompt.contains("受講生の講座"), "{prompt}");
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_start_a_line_course_in_either_order_sqlite() {
    students_start_a_line_course_in_either_order(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_start_a_line_course_in_either_order_postgres() {
    students_start_a_line_course_in_either_order(Db::Postgres).await;
}

async fn students_start_a_line_course_in_either_order(db: Db) {
    let Some(w) = world(db).await else { return };

    // 1. The add-friend screen during the login.
    let hanako = w.user("山田 花子");
    let browser = sign_up(&w, "山田 花子", "hanako@example.com").await;
    let r = w.line_login(&browser, &hanako, true).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = browser.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("公式LINEと友だちになりました") && page.contains("受講中"), "{page}");
    w.t.run_jobs().await;
    assert_eq!(w.texts(&hanako), vec!["ようこそ", "はじめに"], "the 購読開始直後 messages, in 通目 order");
    let via = |u: &str| w.sb.received_by(u).iter().map(|r| r.via).collect::<Vec<_>>();
    assert_eq!(via(&hanako), vec!["reply", "reply"], "the add-friend screen's follow carried them for free");
    // A lesson's video plays on the course page for a student of the course, and only for one.
    {
        let mut c = w.t.app.store.conn().await.unwrap();
        let (course, account): (i64, i64) = sqlx::query_as("SELECT id, account_id FROM courses WHERE public_key = $1")
            .bind(&w.key)
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let m = tsunagu_store::media::NewMedia {
            original_name: "第1回.mp4",
            category: "video",
            upload_path: "uploads/v",
            file_name: "lesson-video-0123456789abcdef.mp4",
            preview_name: "lesson-video-0123456789abcdef.jpg",
            size: 10,
        };
        let video = tsunagu_store::media::insert(&mut c, tsunagu_core::AccountId(account), &m, 1).await.unwrap();
        sqlx::query("UPDATE media_files SET status = 'ready' WHERE id = $1")
            .bind(video)
            .execute(&mut *c)
            .await
            .unwrap();
        courses::add_lesson(&mut c, course, "第1回 動画", "", Some(video), 1).await.unwrap();
    }
    let page = browser.get(&format!("/c/{}", w.key)).await.text;
    assert!(page.contains("<video") && page.contains("/media/lesson-video-0123456789abcdef.mp4"), "{page}");
    let outsider = w.t.client().get(&format!("/c/{}", w.key)).await.text;
    assert!(outsider.contains("第1回 動画") && !outsider.contains("<video"), "{outsider}");

    // 2. A follow first (added from LINE itself), then the login.
    let taro = w.user("佐藤 太郎");
    assert_eq!(w.sb.follow(CHANNEL, &taro).await.unwrap(), 200);
    w.t.run_jobs().await;
    // A minute later: the follow's reply token has lapsed.
    w.t.clock.advance(61_000);
    let browser2 = sign_up(&w, "佐藤 太郎", "taro@example.com").await;
    let r = w.line_login(&browser2, &taro, false).await;
    assert_eq!(r.status, 303);
    let page = browser2.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("受講中") && page.contains("メッセージが LINE に届きます"), "{page}");
    w.t.run_jobs().await;
    assert_eq!(w.texts(&taro), vec!["ようこそ", "はじめに"]);
    assert_eq!(via(&taro), vec!["push", "push"], "no reply token is tried once it lapsed");

    // 3. The prompt declined: told what it means; the follow later starts it.
    let ichiro = w.user("鈴木 一郎");
    let browser3 = sign_up(&w, "鈴木 一郎", "ichiro@example.com").await;
    let r = w.line_login(&browser3, &ichiro, false).await;
    assert_eq!(r.location.as_deref(), Some(format!("/c/{}/line?declined=1", w.key).as_str()));
    let page = browser3.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("友だちになっていないため") && page.contains("LINEで友だち追加する"), "{page}");
    w.t.run_jobs().await;
    assert!(w.texts(&ichiro).is_empty());
    assert_eq!(w.sb.follow(CHANNEL, &ichiro).await.unwrap(), 200);
    w.t.run_jobs().await;
    assert_eq!(w.texts(&ichiro), vec!["ようこそ", "はじめに"], "the follow started it");
    assert_eq!(via(&ichiro), vec!["reply", "reply"], "by the follow's reply token");

    // Day 1 at 09:00 in Tokyo: the 時刻指定 message, once each.
    let now = w.t.app.now();
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    let today = jiff::Timestamp::from_millisecond(now).unwrap().to_zoned(tz.clone()).date();
    let nine = today.tomorrow().unwrap().at(9, 0, 1, 0).to_zoned(tz).unwrap().timestamp().as_millisecond();
    w.t.clock.advance(nine - now);
    w.t.run_jobs().await;
    w.t.run_jobs().await;
    for u in [&hanako, &taro, &ichiro] {
        assert_eq!(w.texts(u), vec!["ようこそ", "はじめに", "1日目の朝"]);
    }

    // A student's session never opens the console.
    let r = browser.get("/courses").await;
    assert_eq!(r.status, 303);
    assert!(r.location.unwrap().starts_with("/login"));
    // One LINE user is one student per channel: another student cannot take hanako's LINE.
    let browser4 = sign_up(&w, "別人", "other@example.com").await;
    let r = w.line_login(&browser4, &hanako, false).await;
    assert_eq!(r.status, 303);
    let page = browser4.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("別の受講生アカウントと連携しています"), "{page}");
    // LINE Login alone signs hanako in again (no password asked).
    let fresh = w.t.client();
    let r = w.line_login(&fresh, &hanako, false).await;
    assert_eq!(r.status, 303);
    let page = fresh.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("山田 花子 さんとしてログイン中") && page.contains("受講中"), "{page}");
    assert_eq!(w.texts(&hanako).len(), 3, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_login_callback_that_does_not_check_out_changes_nothing() {
    let Some(w) = world(Db::Sqlite).await else { return };
    let user = w.user("受講生");
    let browser = sign_up(&w, "受講生", "callback@example.com").await;

    // A state this browser never started.
    let r = browser.get("/line/callback?code=abc&state=forged").await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("有効期限が切れたか"), "{}", r.text);

    // A code that LINE does not take (expired or tampered): told to start again.
    let go = browser.get(&format!("/c/{}/line/login", w.key)).await;
    let q = go.location.unwrap().split_once('?').unwrap().1.to_string();
    let back = consent(&w.line_base, &q, &user, true).await;
    let tampered = back.replace("code=", "code=x").trim_start_matches(&w.base()).to_string();
    let r = browser.get(&tampered).await;
    assert_eq!(r.status, 303);
    let page = browser.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("有効期限が切れたか"), "{page}");

    // A nonce that does not match the ID token's: refused.
    let go = browser.get(&format!("/c/{}/line/login", w.key)).await;
    let q = go.location.unwrap().split_once('?').unwrap().1.to_string();
    {
        let mut c = w.t.app.store.conn().await.unwrap();
        sqlx::query("UPDATE line_login_attempts SET nonce = 'not-the-nonce'").execute(&mut *c).await.unwrap();
    }
    let back = consent(&w.line_base, &q, &user, true).await;
    let r = browser.get(back.trim_start_matches(&w.base())).await;
    assert_eq!(r.status, 303);
    let page = browser.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("ログイン情報を確認できませんでした"), "{page}");
    {
        let mut c = w.t.app.store.conn().await.unwrap();
        let linked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM student_line_links").fetch_one(&mut *c).await.unwrap();
        assert_eq!(linked, 0, "nothing was linked");
    }

    // A cancelled login says so.
    let go = browser.get(&format!("/c/{}/line/login", w.key)).await;
    let q = go.location.unwrap().split_once('?').unwrap().1.to_string();
    let state: Vec<(String, String)> = serde_urlencoded::from_str(&q).unwrap();
    let state = state.iter().find(|p| p.0 == "state").unwrap().1.clone();
    let r = browser.get(&format!("/line/callback?error=ACCESS_DENIED&error_description=x&state={state}")).await;
    assert_eq!(r.status, 303);
    let page = browser.get(r.location.as_deref().unwrap()).await.text;
    assert!(page.contains("LINE ログインがキャンセルされました"), "{page}");

    // The same email is another student with another instructor; twice here is refused.
    let signup = format!("/c/{}/signup", w.key);
    let again = w.t.client();
    let r = again
        .submit(
            &signup,
            &signup,
            &[
                ("name", "二重"),
                ("email", "callback@example.com"),
                ("password", "password-123"),
                ("password_confirm", "password-123"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("すでに登録されています") && r.text.contains("二重"), "{}", r.text);
}
