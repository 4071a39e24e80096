//! The LINE manual (004) walked in a real browser by its own labels: part 4 (設定 → 公式LINE連携
//! → 「新規公式 LINE 登録」), part 5 (「LINEステップ配信設定」, 「変更する」, 「+メッセージ追加」 with
//! the kinds, timings and 通目), and both テスト配信 procedures (「テスト配信先登録」 → 「LINE
//! ログインページへ移動」 → 「正常に連携されました」; 「テスト配信先選択」 → 「送信」). Then a student on a
//! 390 px wide screen starts the course, passes the sandbox's LINE Login with the add-friend
//! screen, and becomes a friend; the clock moves through two days; the sandbox's chat view
//! shows exactly the configured messages in 通目 order at their simulated times. The test
//! account got the test sends and the student did not. Every request to LINE and every webhook
//! the sandbox sent validate against LINE's official OpenAPI documents. Screenshots are saved
//! in `target/screenshots/`.

use serde_json::Value;
use tsunagu_sandbox::line::{LineChannelSpec, LineSandbox, LoginChannelSpec, SimUser};

use crate::helpers::{PASSWORD, TestApp};
use crate::webdriver::Browser;

const EMAIL: &str = "line-manual@example.com";
const CHANNEL: &str = "2000000123";
const SECRET: &str = "7ac0c0fdd1d2a3b4c5d6e7f8091a2b3c";
const LOGIN: &str = "1600000123";
const LOGIN_SECRET: &str = "c1b2c3d4e5f60718293a4b5c6d7e8f90";
const OA: &str = "つなぐ講座";
const COURSE: &str = "LINE で学ぶ写真講座";
const NO_HORIZONTAL_OVERFLOW: &str = "return document.documentElement.scrollWidth <= window.innerWidth + 1";
const H: i64 = 3_600_000;
/// A 48 px square in LINE's green, as the bot's picture.
const BOT_PICTURE: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAADAAAAAwCAIAAADYYG7QAAAAOklEQVR42u3OMQ0AAAgDsF04RDO2cEE4mlRAU9OvREhISEhISEhISEhISEhISEhISEhISEhISEjozgIjYzKXVTWisgAAAABJRU5ErkJggg==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_manual_in_a_real_browser() {
    let sb = LineSandbox::new();
    let (line_base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let port = crate::helpers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let t = TestApp::spawn_with(|c| {
        c.http.listen = format!("127.0.0.1:{port}");
        c.http.public_url = base.clone();
        c.http.manager_url = base.clone();
        c.line.api_base_url = line_base.clone();
        c.line.access_base_url = line_base.clone();
        c.media.allow_http = true;
    })
    .await;
    sb.add_channel(LineChannelSpec {
        channel_id: CHANNEL.into(),
        channel_secret: SECRET.into(),
        bot_user_id: format!("U{}", "a".repeat(32)),
        basic_id: "@tsunagu-photo".into(),
        display_name: OA.into(),
        monthly_quota: Some(1000),
        login: Some(LoginChannelSpec {
            channel_id: LOGIN.into(),
            channel_secret: LOGIN_SECRET.into(),
            redirect_uris: vec![format!("{base}/line/callback")],
        }),
    });
    let teacher_line = sb.new_user_id();
    sb.add_user(SimUser { user_id: teacher_line.clone(), display_name: "講師のLINE".into() });
    let student_line = sb.new_user_id();
    sb.add_user(SimUser { user_id: student_line.clone(), display_name: "受講生 花子".into() });
    sb.set_recording(true);

    let console = t.signup(EMAIL, "講師 一郎").await;
    {
        let mut c = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse(EMAIL).unwrap();
        let id = tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::accounts::set_plan(&mut c, id, tsunagu_core::Plan::Business, 1).await.unwrap();
    }
    let r = console
        .submit(
            "/courses/new",
            "/courses/new",
            &[("title", COURSE), ("description", "毎日の写真の撮り方"), ("state", "published")],
        )
        .await;
    assert_eq!(r.status, 303);
    // A photo on the instructor's computer, uploaded in place from the message form below.
    let photos = tsunagu_store::testing::TempDir::new("tsunagu-line-photo");
    let photo = crate::media::make(photos.path(), "作例.jpg", "-f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1");

    let Some(b) = Browser::start(1280, 900).await else { return };
    b.goto(&format!("{base}/login")).await;
    b.wait_for("#login-submit", 10).await;
    b.type_into("input[name=email]", EMAIL).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_for_path("/home", 10).await;

    // Part 4: 設定 > 公式LINE連携 > 「新規公式 LINE 登録」.
    b.click_text_in("aside.side", "設定 > 公式LINE連携").await; // 4.1
    b.wait_for_text("h1", "公式LINE連携", 10).await;
    b.click_text("新規公式 LINE 登録").await; // 4.2
    b.wait_for_text("h1", "新規公式 LINE 登録", 10).await;
    assert!(b.page_source().await.contains(&format!("{base}/line/callback")), "the callback URL to paste");
    b.choose("LINE連携するコース", COURSE).await; // 4.3
    b.fill("チャネル ID", LOGIN).await; // 4.4–4.5
    b.fill("チャネルシークレット", LOGIN_SECRET).await;
    shot(&b, "line-manual-desktop-part4-form").await;
    b.click_text("公式LINEを登録").await;
    b.wait_for_text(".flash", "公式LINEを登録しました", 10).await;
    shot(&b, "line-manual-desktop-part4-list").await;

    // Part 5: 「LINEステップ配信設定」 → the Messaging API channel → 「変更する」.
    b.click_text_in("aside.side", "コース").await;
    b.wait_for_text("h1", "コース", 10).await;
    b.click_text(COURSE).await;
    b.wait_for_text("h1", COURSE, 10).await;
    b.click_text("LINEステップ配信設定").await; // 5.1
    b.wait_for_text("h1", "LINEステップ配信設定", 10).await;
    // The bot has a profile picture (LINE answers its URL in the bot's info).
    sb.set_bot_picture(CHANNEL, BOT_PICTURE);
    b.fill("チャネル ID", CHANNEL).await; // 5.2–5.3
    b.fill("チャネルシークレット", SECRET).await;
    b.click_text("変更する").await;
    b.wait_for_text(".flash", "を設定しました", 15).await;
    let shown =
        b.execute("const i = document.querySelector('img.bot-picture'); return i && i.naturalWidth", vec![]).await;
    assert_eq!(shown, serde_json::json!(48), "the bot's picture is shown beside its name");
    assert_eq!(sb.webhook_endpoint(CHANNEL).as_deref(), Some(format!("{base}/line/webhook/{CHANNEL}").as_str()));

    // 5.4–5.5: 「+メッセージ追加」 four times: 購読開始直後 text and picture, then 時刻指定.
    let messages: [(&str, &str, &str, &str, &str, &str); 4] = [
        ("テキスト", "購読開始直後", "", "", "1", "ご登録ありがとうございます。写真講座を始めましょう。"),
        ("画像", "購読開始直後", "", "", "2", ""),
        ("テキスト", "時刻指定", "1", "09:00", "1", "おはようございます。今日は光の話です。"),
        ("テキスト", "時刻指定", "2", "20:00", "1", "2日目の課題: 夕景を撮ってみましょう。"),
    ];
    for (i, (kind, timing, day, time, position, body)) in messages.iter().enumerate() {
        b.click_text("+メッセージ追加").await;
        b.wait_for_text("h1", "メッセージ追加", 10).await;
        b.choose("配信メッセージの種類", kind).await;
        if *kind == "画像" {
            // Uploaded in place, with its progress; it joins ファイル as 処理中, the conversion
            // job runs, and the form says when it can be saved.
            b.send_keys("#message-media-file", photo.to_str().unwrap()).await;
            b.click_text("アップロード").await;
            b.wait_for_text("#message-media-status", "を受け付けました", 30).await;
            t.run_jobs().await;
            b.wait_for_text("#message-media-status", "変換が完了しました", 30).await;
            let chosen = b
                .execute("return document.getElementById('message-media').selectedOptions[0].textContent", vec![])
                .await;
            assert_eq!(chosen, serde_json::json!("画像: 作例.jpg（完了）"), "the upload is chosen");
            let sent = b.execute("return document.getElementById('message-media-progress').value", vec![]).await;
            let size = std::fs::metadata(&photo).unwrap().len();
            assert_eq!(sent.as_f64(), Some(size as f64), "the progress bar followed the upload to its end");
            shot(&b, "line-manual-desktop-message-upload").await;
        }
        b.choose("配信タイミング", timing).await;
        if *timing == "時刻指定" {
            b.fill("何日後", day).await;
            b.fill("配信時刻", time).await;
        }
        b.fill("通目", position).await;
        if !body.is_empty() {
            b.fill("本文", body).await;
        }
        if i == 2 {
            shot(&b, "line-manual-desktop-message-form").await;
        }
        b.click_text("保存する").await;
        b.wait_for_text(".flash", "メッセージを追加しました", 10).await;
    }
    shot(&b, "line-manual-desktop-messages").await;
    b.click_text("プレビュー").await;
    b.wait_for_text("h1", "配信プレビュー", 10).await;
    shot(&b, "line-manual-desktop-preview").await;
    b.click_text("LINEステップ配信設定").await;
    b.wait_for_text("h1", "LINEステップ配信設定", 10).await;

    // テスト配信先の登録 1–5.
    b.click_text("テスト配信先登録").await; // 2
    b.wait_for_text("h1", "テスト配信先登録", 10).await;
    b.click_text("LINE ログインページへ移動").await; // 3
    b.wait_for_text("legend", "ログインする LINE ユーザー", 10).await;
    b.choose("ログインする LINE ユーザー", "講師のLINE").await; // 4
    b.click_text(&format!("{OA} を友だち追加")).await;
    shot(&b, "line-manual-desktop-sandbox-login").await;
    b.click_text("許可する").await;
    b.wait_for_text(".flash", "正常に連携されました", 10).await; // 5
    shot(&b, "line-manual-desktop-test-registered").await;

    // テスト配信の実行 1–4.
    b.click_text("LINEステップ配信設定").await; // 1
    b.wait_for_text("h1", "LINEステップ配信設定", 10).await;
    b.click_text("テスト配信先選択").await; // 2
    b.wait_for_text("h1", "テスト配信先選択", 10).await;
    b.choose("テスト配信先", "講師のLINE").await; // 3
    b.click_text("送信").await; // 4
    b.wait_for_text(".flash", "テスト配信を送信しました", 10).await;
    t.run_jobs().await;
    b.goto(&b.current_url().await).await;
    b.wait_for_text("table", "送信済み", 10).await;
    shot(&b, "line-manual-desktop-test-sent").await;
    let course_url = {
        b.click_text_in("aside.side", "コース").await;
        b.click_text(COURSE).await;
        b.wait_for_text("h1", COURSE, 10).await;
        let v = b.execute("return document.querySelector('.facts a[href*=\"/c/\"]').href", vec![]).await;
        v.as_str().unwrap().to_string()
    };
    drop(b);

    // The student, on a phone.
    let Some(p) = Browser::start(390, 844).await else { return };
    p.goto(&course_url).await;
    p.wait_for_text("h1", COURSE, 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, Value::Bool(true), "the course page fits a phone");
    shot(&p, "line-manual-phone-course").await;
    p.click_text("受講を開始する").await;
    p.wait_for_text("h1", "受講生登録", 10).await;
    p.fill("お名前", "受講生 花子").await;
    p.fill("メールアドレス", "hanako@example.com").await;
    p.fill("パスワード（8文字以上）", "hanako-password").await;
    p.fill("パスワード（確認）", "hanako-password").await;
    shot(&p, "line-manual-phone-signup").await;
    p.click_text("登録して受講を開始する").await;
    p.wait_for_text("h1", "公式LINEと友だちになってください", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, Value::Bool(true), "the prompt fits a phone");
    shot(&p, "line-manual-phone-friend-prompt").await;
    p.click_text("LINEで友だち追加する").await;
    p.wait_for_text("legend", "ログインする LINE ユーザー", 10).await;
    p.choose("ログインする LINE ユーザー", "受講生 花子").await;
    p.click_text(&format!("{OA} を友だち追加")).await;
    shot(&p, "line-manual-phone-sandbox-add-friend").await;
    p.click_text("許可する").await;
    p.wait_for_text(".flash", "公式LINEと友だちになりました", 10).await;
    shot(&p, "line-manual-phone-course-started").await;

    // Two simulated days: the app's clock and the sandbox's move together.
    let advance = |ms: i64| {
        t.clock.advance(ms);
        sb.advance_clock(ms);
    };
    t.run_jobs().await;
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    let start = t.app.now();
    let day = |n: i64, h: i8, m: i8| {
        let d = jiff::Timestamp::from_millisecond(start).unwrap().to_zoned(tz.clone()).date();
        let d = d.checked_add(jiff::Span::new().days(n)).unwrap();
        d.at(h, m, 0, 0).to_zoned(tz.clone()).unwrap().timestamp().as_millisecond()
    };
    for at in [day(1, 9, 0) + 1_000, day(2, 20, 0) + 1_000] {
        advance(at - t.app.now());
        t.run_jobs().await;
    }
    advance(H);
    t.run_jobs().await;
    let got = sb.received_by(&student_line);
    let kinds: Vec<String> = got
        .iter()
        .map(|r| match r.message["type"].as_str() {
            Some("text") => r.message["text"].as_str().unwrap().to_string(),
            other => format!("[{}]", other.unwrap_or("")),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "ご登録ありがとうございます。写真講座を始めましょう。".to_string(),
            "[image]".into(),
            "おはようございます。今日は光の話です。".into(),
            "2日目の課題: 夕景を撮ってみましょう。".into(),
        ],
        "exactly the configured messages, in 通目 order"
    );
    let at = |i: usize| got[i].at_ms;
    assert!(at(0) < day(0, 23, 59) && at(1) == at(0), "購読開始直後 together, on day 0");
    assert!((day(1, 9, 0)..day(1, 9, 1)).contains(&at(2)), "day 1 at 09:00 Tokyo");
    assert!((day(2, 20, 0)..day(2, 20, 1)).contains(&at(3)), "day 2 at 20:00 Tokyo");
    assert_eq!(sb.received_by(&teacher_line).len(), 4, "the test account got the test send");
    assert!(got.iter().all(|r| r.at_ms >= start - H), "the student got no test send");
    let p2 = Browser::start(390, 844).await.unwrap();
    p2.goto(&format!("{line_base}/chat/{student_line}")).await;
    p2.wait_for_text("body", "夕景", 10).await;
    shot(&p2, "line-manual-phone-sandbox-chat").await;
    let chat = p2.text("body").await;
    for (needle, when) in [("光の話", day(1, 9, 0)), ("夕景", day(2, 20, 0))] {
        let shown = jiff::Timestamp::from_millisecond(when)
            .unwrap()
            .to_zoned(tz.clone())
            .strftime("%-m月%-d日 %H:%M")
            .to_string();
        assert!(chat.contains(&shown), "{needle} shown at {shown}: {chat}");
    }
    drop(p2);
    drop(p);

    // Contract: every request to LINE and every webhook the sandbox sent.
    crate::line_contract::assert_line_exchanges(&sb);
}

async fn shot(b: &Browser, name: &str) {
    eprintln!("screenshot: {}", b.screenshot(name).await.display());
}
