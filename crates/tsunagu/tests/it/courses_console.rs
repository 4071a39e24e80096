//! The course console by its manual's labels, over HTTP against the LINE sandbox: a course and
//! its lessons, 「LINEステップ配信設定」 (a wrong secret, Webhook off, a channel another account
//! holds), 「+メッセージ追加」 with its checks, the preview, an edit of a running sequence for new
//! students only, a delete refused while sending, 公式LINE連携, and テスト配信 through the
//! sandbox's LINE Login: the test account receives the messages and the student does not.

use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox, LoginChannelSpec, SimUser};
use tsunagu_store::courses;

use crate::helpers::{Client, Db, TestApp, csrf};

const CHANNEL: &str = "2000000088";
const SECRET: &str = "5ee0c0fdd1d2a3b4c5d6e7f8091a2b3c";
const LOGIN: &str = "1600000088";
const LOGIN_SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

async fn business(t: &TestApp, email: &str) {
    let mut c = t.app.store.conn().await.unwrap();
    let e = tsunagu_core::Email::parse(email).unwrap();
    let id = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id;
    tsunagu_store::accounts::set_plan(&mut c, id, tsunagu_core::Plan::Business, 1).await.unwrap();
}

/// Create a course through the form; its id.
async fn create_course(c: &Client, title: &str) -> i64 {
    let r = c
        .submit(
            "/courses/new",
            "/courses/new",
            &[("title", title), ("description", "説明です"), ("state", "published")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    r.location.unwrap().trim_start_matches("/courses/").parse().unwrap()
}

fn message<'a>(
    kind: &'a str,
    body: &'a str,
    timing: &'a str,
    day: &'a str,
    time: &'a str,
    pos: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("kind", kind),
        ("body", body),
        ("timing", timing),
        ("day", day),
        ("time", time),
        ("position", pos),
        ("media_id", ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_console_by_the_manual_sqlite() {
    the_course_console_by_the_manual(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_console_by_the_manual_postgres() {
    the_course_console_by_the_manual(Db::Postgres).await;
}

async fn the_course_console_by_the_manual(db: Db) {
    let sb = LineSandbox::new();
    let (line_base, task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    std::mem::forget(task);
    // The app listens where its configured URLs say, so LINE's webhook test reaches it.
    let port = crate::helpers::free_port();
    let Some(t) = TestApp::spawn_on(db, |c| {
        c.http.listen = format!("127.0.0.1:{port}");
        c.http.public_url = format!("http://127.0.0.1:{port}");
        c.http.manager_url = format!("http://127.0.0.1:{port}");
        c.line.api_base_url = line_base.clone();
        c.line.access_base_url = line_base.clone();
    })
    .await
    else {
        return;
    };
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "e".repeat(32)),
        basic_id: "@console".into(),
        display_name: "コンソール講座".into(),
        monthly_quota: None,
        login: Some(LoginChannelSpec {
            channel_id: LOGIN.into(),
            channel_secret: LOGIN_SECRET.into(),
            redirect_uris: vec![format!("{}/line/callback", manager(&t))],
        }),
    });
    let teacher = t.signup("console-teacher@example.com", "講師 一郎").await;

    // A plan without LINE sees what the feature does and how to change plan.
    let page = teacher.get("/settings/line").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("ビジネス"), "{}", page.text);
    let r = teacher.get("/settings/line/new").await;
    assert_eq!(r.status, 303, "no form on this plan");
    business(&t, "console-teacher@example.com").await;

    // コース: a title is required; what was typed stays.
    let r = teacher
        .submit("/courses/new", "/courses/new", &[("title", " "), ("description", "残る説明"), ("state", "draft")])
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("コース名を入力してください。") && r.text.contains("残る説明"), "{}", r.text);
    let id = create_course(&teacher, "LINE で学ぶ講座").await;
    let list = teacher.get("/courses").await;
    assert!(list.text.contains("LINE で学ぶ講座") && list.text.contains("公開中"), "{}", list.text);
    let r = teacher
        .submit(
            &format!("/courses/{id}"),
            &format!("/courses/{id}/lessons"),
            &[("title", "第1回 はじめに"), ("body", "ようこそ")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(teacher.get(&format!("/courses/{id}")).await.text.contains("第1回 はじめに"));

    // 設定 > 公式LINE連携 > 「新規公式 LINE 登録」: the callback URLs, courses, the channel.
    let form = teacher.get("/settings/line/new").await;
    assert!(form.text.contains(&format!("{}/line/callback", manager(&t))), "callback URL shown");
    assert!(form.text.contains("公式LINEを登録"));
    let course_field = id.to_string();
    let r = teacher
        .submit("/settings/line/new", "/settings/line/new", &[("channel_id", LOGIN), ("channel_secret", LOGIN_SECRET)])
        .await;
    assert_eq!(r.status, 422, "a course must be chosen");
    assert!(r.text.contains("LINE連携するコースを選んでください。"));
    let r = teacher
        .submit(
            "/settings/line/new",
            "/settings/line/new",
            &[("course", course_field.as_str()), ("channel_id", LOGIN), ("channel_secret", LOGIN_SECRET)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let links = teacher.get("/settings/line").await;
    assert!(links.text.contains(LOGIN) && links.text.contains("LINE で学ぶ講座"), "{}", links.text);
    assert!(!links.text.contains(LOGIN_SECRET), "the secret is never shown");

    // 「LINEステップ配信設定」: a wrong secret saves nothing.
    let line_page = format!("/courses/{id}/line");
    let r = teacher.submit(&line_page, &line_page, &[("channel_id", CHANNEL), ("channel_secret", "0000")]).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("チャネルIDまたはチャネルシークレットが正しくありません"), "{}", r.text);
    assert!(sb.webhook_endpoint(CHANNEL).is_none(), "nothing registered at LINE");
    // Webhook off: saved, and the instructor is told what to switch on.
    sb.set_webhook_active(CHANNEL, false);
    let r = teacher.submit(&line_page, &line_page, &[("channel_id", CHANNEL), ("channel_secret", SECRET)]).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Webhook の利用」をオン"), "{}", r.text);
    assert_eq!(sb.webhook_endpoint(CHANNEL).as_deref(), Some(format!("{}/line/webhook/{CHANNEL}", t.addr).as_str()));
    sb.set_webhook_active(CHANNEL, true);
    let r = teacher.submit(&line_page, &line_page, &[("channel_id", CHANNEL), ("channel_secret", SECRET)]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = teacher.get(&line_page).await;
    assert!(page.text.contains("コンソール講座") && page.text.contains("@console"), "the bot is shown: {}", page.text);
    assert!(!page.text.contains(SECRET));
    // The same channel from another account is refused, and stays the first account's.
    let other = t.signup("console-other@example.com", "別の講師").await;
    business(&t, "console-other@example.com").await;
    let other_course = create_course(&other, "別の講座").await;
    let op = format!("/courses/{other_course}/line");
    let r = other.submit(&op, &op, &[("channel_id", CHANNEL), ("channel_secret", SECRET)]).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("すでに別のアカウントで使われています"), "{}", r.text);
    assert_eq!(sb.webhook_endpoint(CHANNEL).as_deref(), Some(format!("{}/line/webhook/{CHANNEL}", t.addr).as_str()));

    // 「+メッセージ追加」: LINE's text limit, counted in UTF-16 (an emoji is two).
    let new_msg = format!("/courses/{id}/line/messages/new");
    let long = "😀".repeat(2501);
    let r = teacher.submit(&new_msg, &new_msg, &message("text", &long, "immediate", "", "", "1")).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("5,000 文字以内") && r.text.contains("5002"), "{}", r.text);
    assert!(r.text.contains(&long), "what was typed stays");
    // A media file still 処理中 cannot be chosen yet.
    let account = {
        let mut c = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse("console-teacher@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
    };
    let media = {
        let mut c = t.app.store.conn().await.unwrap();
        let m = tsunagu_store::media::NewMedia {
            original_name: "welcome.png",
            category: "image",
            upload_path: "uploads/x",
            file_name: "x.jpg",
            preview_name: "x-preview.jpg",
            size: 10,
        };
        tsunagu_store::media::insert(&mut c, account, &m, 1).await.unwrap()
    };
    let media_field = media.to_string();
    let mut form = message("image", "", "immediate", "", "", "2");
    form.retain(|f| f.0 != "media_id");
    form.push(("media_id", &media_field));
    let r = teacher.submit(&new_msg, &new_msg, &form).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("「welcome.png」はまだ処理中です"), "{}", r.text);
    // Once ready it can be chosen, and then the media library keeps it.
    {
        let mut c = t.app.store.conn().await.unwrap();
        sqlx::query("UPDATE media_files SET status = 'ready' WHERE id = $1")
            .bind(media)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    let r = teacher.submit(&new_msg, &new_msg, &form).await;
    assert_eq!(r.status, 303, "{}", r.text);
    // A lesson takes a video or an audio file that is 完了, not a picture or one still 処理中;
    // a student of the course sees its player.
    let audio = {
        let mut c = t.app.store.conn().await.unwrap();
        let m = tsunagu_store::media::NewMedia {
            original_name: "第1回の解説.m4a",
            category: "audio",
            upload_path: "uploads/y",
            file_name: "lesson-audio-0123456789abcdef.m4a",
            preview_name: "",
            size: 10,
        };
        tsunagu_store::media::insert(&mut c, account, &m, 1).await.unwrap()
    };
    let course_path = format!("/courses/{id}");
    let lessons_path = format!("/courses/{id}/lessons");
    for (chosen, refusal) in [
        (media.to_string(), "レッスンに付けられるのは動画か音声です"),
        (audio.to_string(), "「第1回の解説.m4a」はまだ使えません（処理中）"),
        ("999999".to_string(), "選んだ動画・音声が見つかりません"),
    ] {
        let r = teacher
            .submit(&course_path, &lessons_path, &[("title", "音声つき"), ("body", ""), ("media_id", &chosen)])
            .await;
        assert_eq!(r.status, 303);
        let page = teacher.get(&course_path).await.text;
        assert!(page.contains(refusal), "{refusal}: {page}");
    }
    {
        let mut c = t.app.store.conn().await.unwrap();
        sqlx::query("UPDATE media_files SET status = 'ready' WHERE id = $1")
            .bind(audio)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    let audio_field = audio.to_string();
    let r = teacher
        .submit(&course_path, &lessons_path, &[("title", "第2回 音声で復習"), ("body", ""), ("media_id", &audio_field)])
        .await;
    assert_eq!(r.status, 303);
    let page = teacher.get(&course_path).await.text;
    assert!(page.contains("レッスンを追加しました"), "{page}");
    assert!(page.contains(&format!("<option value=\"{audio}\" selected>音声: 第1回の解説.m4a</option>")), "{page}");
    let r = teacher.submit("/courses/media", &format!("/courses/media/{media}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    let library = teacher.get("/courses/media").await.text;
    assert!(library.contains("使われているため削除できません") && library.contains("welcome.png"), "{library}");
    let image_step = {
        let mut c = t.app.store.conn().await.unwrap();
        courses::current_steps(&mut c, id).await.unwrap().iter().find(|s| s.kind == "image").unwrap().id
    };
    let r = teacher.submit(&line_page, &format!("/courses/{id}/line/messages/{image_step}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    let r = teacher.submit("/courses/media", &format!("/courses/media/{media}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    let library = teacher.get("/courses/media").await.text;
    assert!(library.contains("「welcome.png」を削除しました"), "free once its message is deleted: {library}");
    // Three messages, added out of order; listed in delivery order.
    for (body, timing, day, time, pos) in [
        ("2日目の朝です", "at", "1", "09:00", "1"),
        ("ようこそ！", "immediate", "", "", "1"),
        ("続きです", "immediate", "", "", "2"),
    ] {
        let r = teacher.submit(&new_msg, &new_msg, &message("text", body, timing, day, time, pos)).await;
        assert_eq!(r.status, 303, "{}", r.text);
    }
    let page = teacher.get(&line_page).await.text;
    let at = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s} in {page}"));
    assert!(at("ようこそ！") < at("続きです") && at("続きです") < at("2日目の朝です"), "delivery order");
    assert!(page.contains("1日後 09:00") && page.contains("購読開始直後"));
    let preview = teacher.get(&format!("/courses/{id}/line/preview")).await.text;
    assert!(preview.contains("ようこそ！") && preview.contains("09:00"), "{preview}");

    // A student already in the sequence: an edit says so, and can leave them as they are.
    let steps = {
        let mut c = t.app.store.conn().await.unwrap();
        courses::current_steps(&mut c, id).await.unwrap()
    };
    let morning = steps.iter().find(|s| s.body == "2日目の朝です").unwrap().id;
    let student_user = sb.new_user_id();
    sb.add_user(SimUser { user_id: student_user.clone(), display_name: "受講生 花子".into() });
    sb.set_friend(CHANNEL, &student_user);
    {
        let mut c = t.app.store.conn().await.unwrap();
        let student =
            courses::create_student(&mut c, account, Some("hanako@example.com"), None, "受講生 花子", 1).await.unwrap();
        let sub = courses::subscribe(&mut c, id, student, 1).await.unwrap();
        courses::start(&mut c, sub, &student_user, t.app.now(), Some(t.app.now()), None).await.unwrap();
    }
    let edit = format!("/courses/{id}/line/messages/{morning}/edit");
    let page = teacher.get(&edit).await;
    assert!(page.text.contains("受講生 <strong>1 人</strong>に影響します"), "{}", page.text);
    let mut form = message("text", "2日目の朝です（改訂版）", "at", "1", "09:00", "1");
    let r = teacher.submit(&edit, &edit, &form).await;
    assert_eq!(r.status, 422, "who it applies to must be chosen");
    assert!(r.text.contains("反映するかどうかを選んでください"));
    form.push(("applies", "new"));
    let r = teacher.submit(&edit, &edit, &form).await;
    assert_eq!(r.status, 303, "{}", r.text);
    {
        let mut c = t.app.store.conn().await.unwrap();
        let all = courses::steps(&mut c, id).await.unwrap();
        let old = all.iter().find(|s| s.id == morning).unwrap();
        assert!(old.valid_until.is_some() && old.body == "2日目の朝です", "the student in the sequence keeps it");
        assert!(all.iter().any(|s| s.body == "2日目の朝です（改訂版）" && s.valid_until.is_none()));
    }
    // The student appears with their LINE state.
    let course_page = teacher.get(&format!("/courses/{id}")).await.text;
    assert!(course_page.contains("受講生 花子") && course_page.contains("友だち"), "{course_page}");

    // A message queued for sending cannot be deleted, and the screen says why.
    let welcome = steps.iter().find(|s| s.body == "ようこそ！").unwrap().id;
    t.run_jobs().await;
    let delivered = sb.received_by(&student_user);
    assert_eq!(delivered.len(), 2, "the two 購読開始直後 messages: {delivered:?}");
    {
        let mut c = t.app.store.conn().await.unwrap();
        sqlx::query("UPDATE step_deliveries SET outcome = 'sending' WHERE step_id = $1")
            .bind(welcome)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    let r = teacher.submit(&line_page, &format!("/courses/{id}/line/messages/{welcome}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    let page = teacher.get(&line_page).await.text;
    assert!(page.contains("送信中のため削除できません") && page.contains("ようこそ！"), "{page}");
    {
        let mut c = t.app.store.conn().await.unwrap();
        sqlx::query("UPDATE step_deliveries SET outcome = 'sent' WHERE step_id = $1")
            .bind(welcome)
            .execute(&mut *c)
            .await
            .unwrap();
    }

    // テスト配信先登録: LINE Login on the course's Login channel, back on the manager host.
    let reg = format!("/courses/{id}/line/test-recipients");
    let page = teacher.get(&reg).await;
    assert!(page.text.contains("LINE ログインページへ移動"), "{}", page.text);
    let tester = sb.new_user_id();
    sb.add_user(SimUser { user_id: tester.clone(), display_name: "講師のLINE".into() });
    let go = teacher.get(&format!("{reg}/login")).await;
    assert_eq!(go.status, 303);
    let authorize = go.location.unwrap();
    assert!(authorize.starts_with(&line_base) && authorize.contains(&format!("client_id={LOGIN}")));
    assert!(authorize.contains("bot_prompt=aggressive") && authorize.contains("code_challenge_method=S256"));
    // A callback with a state this browser did not start is refused, and changes nothing.
    let stranger = t.client();
    let q = authorize.split_once('?').unwrap().1;
    let state: String = url_param(q, "state");
    let r = stranger.get(&format!("/line/callback?code=x&state={state}")).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("有効期限が切れたか"), "{}", r.text);
    // Nor did it use the login up: the instructor's browser completes it.
    let q = authorize.split_once('?').unwrap().1.to_string();
    let back = consent(&line_base, &q, &tester).await;
    assert!(back.starts_with(&format!("{}/line/callback", manager(&t))), "{back}");
    let back = back.trim_start_matches(&manager(&t)).to_string();
    let r = teacher.get(&back).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = teacher.get(r.location.as_deref().unwrap()).await;
    assert!(page.text.contains("正常に連携されました") && page.text.contains("講師のLINE"), "{}", page.text);
    // The same callback again (a reload) is refused: the state is single-use.
    let r = teacher.get(&back).await;
    assert_eq!(r.status, 400);

    // テスト配信先選択 → 「送信」: every message, to the test account only.
    let before_student = sb.received_by(&student_user).len();
    let send_page = format!("/courses/{id}/line/test");
    let page = teacher.get(&send_page).await.text;
    let rid = page.split("name=\"recipient\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = teacher.submit(&send_page, &send_page, &[("recipient", rid.as_str()), ("message", "all")]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    t.run_jobs().await;
    let got: Vec<String> =
        sb.received_by(&tester).iter().map(|r| r.message["text"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(got, vec!["ようこそ！", "続きです", "2日目の朝です（改訂版）"], "in delivery order");
    assert!(sb.received_by(&tester).iter().all(|r| r.via == "push"));
    assert_eq!(sb.received_by(&student_user).len(), before_student, "the student received no test send");
    let page = teacher.get(&send_page).await.text;
    assert!(page.contains("テスト") && page.contains("送信済み") && page.contains("講師のLINE"), "{page}");
    {
        let mut c = t.app.store.conn().await.unwrap();
        let handled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM step_deliveries").fetch_one(&mut *c).await.unwrap();
        assert_eq!(handled, 2, "the test send touched no sequence");
    }

    // Another account's course, message, link and media file answer 404; a POST without CSRF
    // is refused.
    let media_status = format!("/courses/media/{audio}/status");
    let mine = teacher.get(&media_status).await;
    assert_eq!(mine.status, 200);
    assert!(mine.text.contains("\"status\":\"ready\""), "{}", mine.text);
    for path in [
        format!("/courses/{id}"),
        line_page.clone(),
        edit.clone(),
        reg.clone(),
        "/settings/line/1".to_string(),
        media_status.clone(),
    ] {
        assert_eq!(other.get(&path).await.status, 404, "{path}");
    }
    let r = other.submit("/courses", &format!("/courses/{id}/delete"), &[]).await;
    assert_eq!(r.status, 404);
    let r = teacher.post_form(&format!("/courses/{id}/delete"), &[]).await;
    assert_eq!(r.status, 403);
    // A course with students is not deleted.
    let r = teacher.submit(&format!("/courses/{id}"), &format!("/courses/{id}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    assert!(teacher.get("/courses").await.text.contains("LINE で学ぶ講座"));
    let _ = csrf;
}

/// The console's configured address (what LINE is told to send browsers back to).
fn manager(t: &TestApp) -> String {
    t.app.config.http.manager_url.trim_end_matches('/').to_string()
}

fn url_param(query: &str, name: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    pairs.into_iter().find(|p| p.0 == name).map(|p| p.1).unwrap_or_default()
}

/// The sandbox's LINE Login consent, allowed as `user`: where LINE sends the browser back.
async fn consent(line_base: &str, query: &str, user: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{line_base}/oauth2/v2.1/authorize?{query}")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the consent page opens");
    let mut form: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    form.retain(|f| {
        ["client_id", "redirect_uri", "state", "nonce", "bot_prompt", "code_challenge", "code_challenge_method"]
            .contains(&f.0.as_str())
    });
    form.push(("user_id".into(), user.into()));
    // The add-friend screen (bot_prompt): a test account must be a friend to receive messages.
    form.push(("add_friend".into(), "1".into()));
    form.push(("decision".into(), "allow".into()));
    let r = http.post(format!("{line_base}/oauth2/v2.1/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    r.headers()["location"].to_str().unwrap().to_string()
}
