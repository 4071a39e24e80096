//! Real-browser test: headless Chromium through the forms and the navigation, at desktop and
//! phone sizes, with screenshots in `target/screenshots/` for a human to look at.
//! One test walks everything because each browser costs seconds to start.

use crate::helpers::{PASSWORD, TestApp};
use crate::webdriver::Browser;

const EMAIL: &str = "misaki@example.com";
const NAME: &str = "佐藤 美咲";
const NO_HORIZONTAL_OVERFLOW: &str = "return document.documentElement.scrollWidth <= window.innerWidth + 1";

async fn log_in(b: &Browser, addr: &str) {
    b.goto(&format!("{addr}/login")).await;
    b.wait_for("#login-submit", 10).await;
    b.type_into("input[name=email]", EMAIL).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_for_path("/home", 10).await;
    b.wait_for_text("h1", "ホーム", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_on_desktop_and_phone() {
    let t = TestApp::spawn().await;
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    assert_eq!(
        b.execute("return [innerWidth, innerHeight]", vec![]).await,
        serde_json::json!([1280, 900]),
        "desktop viewport"
    );

    // Sign up through the real form, in Japanese.
    b.goto(&format!("{}/signup", t.addr)).await;
    b.wait_for("#signup-submit", 10).await;
    assert_eq!(b.text("#signup-submit").await, "登録する");
    b.type_into("input[name=name]", NAME).await;
    b.type_into("input[name=email]", EMAIL).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.type_into("input[name=password_confirm]", PASSWORD).await;
    b.screenshot("browser-desktop-signup").await;
    b.click("#signup-submit").await;
    b.wait_for_path("/home", 10).await;
    let flash = b.wait_for_text(".flash", "アカウントを作成しました。", 10).await;
    assert!(flash.starts_with("アカウントを作成しました。"), "{flash}");
    assert!(b.text("main").await.contains(NAME), "the typed Japanese name arrives intact");
    b.screenshot("browser-desktop-home-after-signup").await;
    {
        // The 特定商取引法に基づく表記 that the priced event below needs (its page is walked elsewhere).
        let mut c = t.app.store.conn().await.unwrap();
        let me = tsunagu_store::accounts::credentials_by_email(&mut c, &tsunagu_core::Email::parse(EMAIL).unwrap())
            .await
            .unwrap()
            .unwrap()
            .account
            .id;
        let fields = serde_json::json!({"seller": "株式会社つなぐ", "manager": "山田 太郎", "address": "東京都千代田区丸の内1-1-1",
            "phone": "03-1234-5678", "email": "info@example.com", "price": "各イベントのページに記載", "payment": "銀行振込",
            "timing": "お申し込みから7日以内", "delivery": "開催日時に Zoom で", "cancellation": "前日まで全額返金"});
        tsunagu_store::stripe::put_legal_notice(&mut c, me, &fields.to_string(), "", 0).await.unwrap();
    }
    // Desktop: the sidebar shows, the phone menu does not.
    assert!(b.is_displayed("aside.side").await, "sidebar visible at 1280 px");
    assert!(!b.is_displayed("details.menu summary").await, "phone menu hidden at 1280 px");
    t.make_admin(EMAIL).await;

    // Log out with the sidebar button, then back in through the form.
    b.click("aside.side form.logout button.link").await;
    b.wait_for_path("/login", 10).await;
    b.wait_for("#login-submit", 10).await;
    assert_eq!(b.text("#login-submit").await, "ログイン");
    b.goto(&format!("{}/home", t.addr)).await;
    b.wait_for_path("/login?next=%2Fhome", 10).await;
    log_in(&b, &t.addr).await;

    // The sidebar lists exactly the places (admin ones included); click through each.
    let mut hrefs = Vec::new();
    for e in b.find_all("aside.side nav li a").await {
        hrefs.push(b.attribute(&e, "href").await.unwrap_or_default());
    }
    let expected: Vec<_> = crate::helpers::CONSOLE_PLACES.iter().map(|(h, _)| h.to_string()).collect();
    assert_eq!(hrefs, expected, "sidebar links");
    for (href, heading) in crate::helpers::CONSOLE_PLACES {
        b.click(&format!("aside.side a[href=\"{href}\"]")).await;
        b.wait_for_path(href, 10).await;
        assert_eq!(b.wait_for_text("h1", heading, 10).await, *heading, "{href}");
        let current = b.find("aside.side a.current").await;
        assert_eq!(b.attribute(&current, "href").await.as_deref(), Some(*href), "current place marked");
        assert_eq!(b.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "{href}: no horizontal overflow on desktop");
        let name = format!("browser-desktop-{}", href.trim_start_matches('/').replace('/', "-"));
        eprintln!("screenshot: {}", b.screenshot(&name).await.display());
    }
    // A step-message file uploaded through the page: the script sends it as the request body.
    {
        let mut conn = t.app.store.conn().await.unwrap();
        let e = tsunagu_core::Email::parse(EMAIL).unwrap();
        let id = tsunagu_store::accounts::credentials_by_email(&mut conn, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::accounts::set_plan(&mut conn, id, tsunagu_core::Plan::Business, 1).await.unwrap();
    }
    let files = tsunagu_store::testing::TempDir::new("tsunagu-browser-media");
    let wav = crate::media::make(files.path(), "第1回の音声.wav", "-f lavfi -i sine=frequency=440 -t 2");
    b.goto(&format!("{}/courses/media", t.addr)).await;
    b.wait_for("#media-upload-submit", 10).await;
    b.send_keys("#media-file", &wav.display().to_string()).await;
    b.click("#media-upload-submit").await;
    b.wait_for_text("#media-upload-status", "「第1回の音声.wav」を受け付けました", 20).await;
    let sent = b.execute("return document.getElementById('media-upload-progress').value", vec![]).await;
    let size = std::fs::metadata(&wav).unwrap().len();
    assert_eq!(sent.as_f64(), Some(size as f64), "the progress bar followed the upload to its end");
    // The list shows it 処理中 without a reload, and turns 完了 by itself once converted.
    b.wait_for_text("#media-list", "処理中", 10).await;
    t.run_jobs().await;
    b.wait_for_text("#media-list", "完了", 20).await;
    b.wait_for_text("#media-list-status", "「第1回の音声.wav」の変換が完了しました。", 10).await;
    assert!(b.text("#media-list").await.contains("WAV 形式は LINE で送れないため、M4A 形式で送ります。"));
    b.execute("document.getElementById('media-list').scrollIntoView()", vec![]).await;
    eprintln!("screenshot: {}", b.screenshot("browser-desktop-media-uploaded").await.display());
    // ［削除］ asks first: cancelled, the file stays; confirmed, it is gone and the page says so.
    b.click(".media-delete button").await;
    assert!(b.answer_dialog(false, 10).await.contains("「第1回の音声.wav」を削除しますか？"));
    assert!(b.text("#media-list").await.contains("第1回の音声.wav"), "cancelled: still listed");
    b.click(".media-delete button").await;
    b.answer_dialog(true, 10).await;
    b.wait_for_text(".flash", "「第1回の音声.wav」を削除しました。", 10).await;
    assert!(b.text("#media-list").await.contains("まだファイルはありません。"));
    // An event through its form, as an organizer makes one (manual 000 starts from 申込状況サマリー).
    b.goto(&format!("{}/events", t.addr)).await;
    b.wait_for_text("h1", "申込状況サマリー", 10).await;
    b.click("a.button[href=\"/events/new\"]").await;
    b.wait_for_path("/events/new", 10).await;
    b.type_into("input[name=title]", "新春 Zoom セミナー").await;
    b.type_into("textarea[name=description]", "Zoom で開催します。\n資料: https://example.com/slides").await;
    b.type_into("input[name=capacity]", "３０").await;
    // datetime-local inputs take their value as the browser's own pickers would set it.
    b.execute(
        "document.querySelector('[name=starts_at]').value = '2027-01-20T19:00';
         document.querySelector('[name=ends_at]').value = '2027-01-20T21:00';",
        vec![],
    )
    .await;
    b.type_into("input[name=ticket_name_1]", "懇親会つき").await;
    b.type_into("input[name=ticket_price_1]", "3,000").await;
    b.click("input[name=state][value=published]").await;
    eprintln!("screenshot: {}", b.screenshot("browser-desktop-event-form").await.display());
    b.click("#event-save").await;
    b.wait_for_text(".flash", "イベントを作成しました。", 10).await;
    assert_eq!(b.text("h1").await, "新春 Zoom セミナー");
    assert!(b.text("main").await.contains("3,000円"));
    eprintln!("screenshot: {}", b.screenshot("browser-desktop-event").await.display());
    // (The link carries the configured public URL; the test server listens elsewhere.)
    let public_path = b.execute("return document.querySelector('.facts a[href*=\"/e/\"]').pathname", vec![]).await;
    let public_path = public_path.as_str().expect("a published event shows its public address").to_string();
    // ［削除する］ asks first: cancelled, the event stays; a copy is then deleted.
    let event_path = b.execute("return location.pathname", vec![]).await.as_str().unwrap().to_string();
    b.click(".event-delete button").await;
    b.answer_dialog(false, 10).await;
    b.goto(&format!("{}{event_path}", t.addr)).await;
    assert_eq!(b.wait_for_text("h1", "新春 Zoom セミナー", 10).await, "新春 Zoom セミナー", "cancelled: kept");
    b.click("form[action$=\"/copy\"] button").await;
    b.wait_for_text(".flash", "イベントをコピーしました。", 10).await;
    let copy = b.execute("return location.pathname.replace('/edit', '')", vec![]).await.as_str().unwrap().to_string();
    b.goto(&format!("{}{copy}", t.addr)).await;
    b.wait_for(".event-delete button", 10).await;
    b.click(".event-delete button").await;
    b.answer_dialog(true, 10).await;
    b.wait_for_text(".flash", "イベントを削除しました。", 10).await;
    b.goto(&format!("{}/events", t.addr)).await;
    b.wait_for_text("main", "新春 Zoom セミナー", 10).await;
    assert!(!b.text("main").await.contains("（コピー）"), "the copy is gone");
    eprintln!("screenshot: {}", b.screenshot("browser-desktop-events").await.display());
    drop(b);

    // Phone: no sidebar; the メニュー summary opens the same navigation.
    let Some(p) = Browser::start(390, 844).await else {
        return;
    };
    p.goto(&format!("{}/login", t.addr)).await;
    p.wait_for("#login-submit", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "login page fits a phone");
    log_in(&p, &t.addr).await;
    assert_eq!(
        p.execute("return [innerWidth, innerHeight]", vec![]).await,
        serde_json::json!([390, 844]),
        "phone viewport"
    );
    assert!(!p.is_displayed("aside.side").await, "no sidebar on a phone");
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "home fits a phone");
    eprintln!("screenshot: {}", p.screenshot("browser-phone-home").await.display());
    assert!(!p.is_displayed("details.menu nav a[href=\"/settings/basic\"]").await, "menu starts closed");
    assert_eq!(p.text("details.menu summary").await, "メニュー");
    p.click("details.menu summary").await;
    p.wait_for("details.menu nav a[href=\"/settings/basic\"]", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the open menu fits a phone");
    eprintln!("screenshot: {}", p.screenshot("browser-phone-menu").await.display());
    p.click("details.menu nav a[href=\"/settings/basic\"]").await;
    p.wait_for_path("/settings/basic", 10).await;
    assert_eq!(p.wait_for_text("h1", "基本設定", 10).await, "基本設定");
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "basic settings fit a phone");
    eprintln!("screenshot: {}", p.screenshot("browser-phone-basic").await.display());
    // The media list on a phone: each file a card, its link reachable without scrolling sideways.
    let me = {
        let mut conn = t.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse(EMAIL).unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut conn, &e).await.unwrap().unwrap().account.id
    };
    let file = tokio::fs::File::open(&wav).await.unwrap();
    tsunagu::media::library::accept(&t.app, me, "第2回の音声（長い名前のファイルでも読めるように）.wav", file)
        .await
        .unwrap();
    t.run_jobs().await;
    p.goto(&format!("{}/courses/media", t.addr)).await;
    p.wait_for_text("#media-list", "完了", 10).await;
    assert!(p.is_displayed("#media-list td[data-label=\"確認・削除\"] a").await, "開く is shown on a phone");
    assert!(!p.is_displayed("#media-list thead").await, "no header row: each cell says what it is");
    assert_eq!(
        p.execute(
            "var a = document.querySelector('#media-list td a').getBoundingClientRect(); return a.right <= innerWidth",
            vec![]
        )
        .await,
        true,
        "開く lies inside the screen, not off to the right"
    );
    p.execute("document.getElementById('media-list').scrollIntoView()", vec![]).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the media page fits a phone");
    eprintln!("screenshot: {}", p.screenshot("browser-phone-media").await.display());
    // Opened on its own (as LINE's in-app browser or an instructor checking it would), the
    // converted sound plays in the browser's player under the media CSP.
    // (The link carries the configured public URL; the test server listens elsewhere.)
    let path = p.execute("return new URL(document.querySelector('#media-list td a').href).pathname", vec![]).await;
    p.goto(&format!("{}{}", t.addr, path.as_str().unwrap())).await;
    let mut ready = serde_json::Value::Null;
    for _ in 0..50 {
        ready = p
            .execute(
                "var v = document.querySelector('video, audio'); return v ? [v.readyState, v.duration] : null",
                vec![],
            )
            .await;
        if ready[0].as_i64().is_some_and(|r| r >= 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready[0].as_i64().is_some_and(|r| r >= 1), "the player loads the file: {ready}");
    assert!(ready[1].as_f64().is_some_and(|d| (1.5..2.5).contains(&d)), "its length: {ready}");
    // The event pages on a phone: the summary's rows are cards, the form fits the screen.
    for (path, shot) in [
        ("/events", "browser-phone-events"),
        ("/events/new", "browser-phone-event-form"),
        (public_path.as_str(), "browser-phone-public-event"),
    ] {
        p.goto(&format!("{}{path}", t.addr)).await;
        p.wait_for("main h1", 10).await;
        assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "{path} fits a phone");
        eprintln!("screenshot: {}", p.screenshot(shot).await.display());
    }
    drop(p);

    t.assert_no_jobs_left().await;
}
