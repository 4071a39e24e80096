//! The Zoom manual (000) walked in a real browser, finding each element by the manual's own
//! label: 基本設定 (事前準備 ⑮–⑱), the meeting ①–⑮, 同伴者設定 ①–③, the webinar ①–⑰ and
//! 自動配信メールの編集 ①–⑧. Then a participant on a 390 px wide screen applies with two
//! companions. At the end the Zoom sandbox holds the meeting and the webinar with the chosen
//! settings and one registrant per person, and a real SMTP server (aiosmtpd) holds each
//! person's mail with their own join URL and the organizer's copies. Screenshots are saved in
//! `target/screenshots/`.

use std::collections::HashSet;

use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};

use crate::events::{create, event_form};
use crate::helpers::{PASSWORD, TempDir, TestApp, eventually};
use crate::mail_smtp::Sink;
use crate::webdriver::Browser;

const EMAIL: &str = "manual-organizer@example.com";
const ACC: &str = "manual-zoom-account";
const CID: &str = "manual-client-id";
const SECRET: &str = "manual-client-secret";
const NO_HORIZONTAL_OVERFLOW: &str = "return document.documentElement.scrollWidth <= window.innerWidth + 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zoom_manual_in_a_real_browser() {
    let out = TempDir::new("tsunagu-manual-smtp");
    let Some(sink) = Sink::start(out.path(), None).await else { return };
    let sb = ZoomSandbox::new();
    sb.add_app(S2sApp {
        account_id: ACC.into(),
        client_id: CID.into(),
        client_secret: SECRET.into(),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: ACC.into(),
        id: "manual-owner".into(),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let (api, smtp) = (format!("{base}/v2"), format!("smtp://127.0.0.1:{}", sink.port));
    let t = TestApp::spawn_with(|c| {
        c.zoom.api_base_url = api.clone();
        c.zoom.oauth_base_url = base.clone();
        c.mail.smtp_url = tsunagu::config::Secret::new(smtp);
    })
    .await;
    let org = t.signup(EMAIL, "主催 花子").await;
    crate::events::fill_legal(&org).await;
    let meeting_event = create(&org, &event_form("新春 Zoom セミナー", "30", "3000")).await;
    let webinar_event = create(&org, &event_form("春のウェビナー", "100", "0")).await;
    let Some(b) = Browser::start(1280, 900).await else { return };
    b.goto(&format!("{}/login", t.addr)).await;
    b.wait_for("#login-submit", 10).await;
    b.type_into("input[name=email]", EMAIL).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_for_path("/home", 10).await;

    // 事前準備 ⑮–⑱: 基本設定.
    b.click_text_in("aside.side", "基本設定").await;
    b.wait_for_text("h1", "基本設定", 10).await;
    b.choose("Zoom API認証方式", "Server-to-Server OAuth").await;
    b.fill("zoom (Account Id)", ACC).await;
    b.fill("zoom (Client Id)", CID).await;
    b.fill("zoom(Client Secret)", SECRET).await;
    b.click_text("保存する").await;
    b.wait_for_text("#zoom-check", "Zoom に接続できました", 15).await;
    shot(&b, "manual-desktop-basic-settings").await;

    // The meeting, ①–⑮.
    b.click_text_in("aside.side", "申込状況サマリー").await; // ①
    b.wait_for_text("h1", "申込状況サマリー", 10).await;
    b.click_text("新春 Zoom セミナー").await; // ②
    b.wait_for_text("h1", "新春 Zoom セミナー", 10).await;
    b.click_text("Zoom設定").await; // ③
    b.wait_for_text("h1", "Zoom設定", 10).await;
    b.choose("Zoom", "利用する").await; // ④
    b.choose("種類", "ミーティング").await; // ⑤
    b.fill("開催日時", "2027-01-20T19:00").await; // ⑥
    b.fill("所要時間", "120").await; // ⑦
    b.choose("待機室利用", "on").await; // ⑧
    b.choose("ホストの前の参加", "on").await; // ⑨ (on with a waiting room: explained before saving)
    assert!(b.is_displayed("[data-note=wr-jbh]").await, "the combination Zoom changes is explained before saving");
    b.choose("ホストの前の参加", "off").await;
    b.choose("参加者登録利用", "on").await; // ⑩
    b.choose("Zoom情報通知設定", "Tsunaguから送信").await; // ⑪
    b.choose("参加者ビデオ", "on").await; // ⑫
    b.choose("参加者マイク", "off").await; // ⑬
    shot(&b, "manual-desktop-zoom-meeting-form").await;
    b.click_text("保存する").await; // ⑭
    b.wait_for_text(".flash", "Zoom設定を保存しました", 10).await; // ⑮
    t.run_jobs().await;
    b.goto(&b.current_url().await).await;
    b.wait_for_text("#zoom-state", "作成済み", 10).await;
    shot(&b, "manual-desktop-zoom-meeting-created").await;
    // ［ホストとして開始］ on the event's page leads to Zoom's start URL (the page's policy must
    // let the browser leave for Zoom). It opens a new tab; here it is followed in this one.
    let zoom_page = b.current_url().await;
    b.goto(zoom_page.trim_end_matches("/zoom")).await;
    b.execute("document.querySelector('a[href$=\"/zoom/start\"]').target = '_self'", vec![]).await;
    b.click_text("ホストとして開始").await;
    let mut url = String::new();
    for _ in 0..100 {
        url = b.current_url().await;
        if url.contains("/s/") && url.contains("zak=") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The sandbox's start URLs are Zoom's (https://zoom.us/s/…), which this machine cannot reach:
    // the address is what shows the browser left for Zoom.
    assert!(url.contains("/s/") && url.contains("zak=") && !url.contains("/events/"), "Zoom's start URL opens: {url}");
    b.goto(&zoom_page).await;
    b.wait_for_text("h1", "Zoom設定", 10).await;

    // 同伴者設定 ①–③ (from ［Zoom設定］).
    b.click_text("同伴者入力設定").await; // ①
    b.wait_for_text("h1", "同伴者入力設定", 10).await;
    b.choose("お名前(カナ)", "必須入力").await; // ②
    b.choose("電話番号", "任意入力").await;
    b.choose("会社名", "任意入力").await;
    shot(&b, "manual-desktop-companions").await;
    b.click_text("保存する").await;
    b.wait_for_text(".flash", "同伴者入力設定を保存しました", 10).await;
    b.click_text("zoom設定").await; // ③
    b.wait_for_text("h1", "Zoom設定", 10).await;

    // The webinar, ①–⑰.
    b.click_text_in("aside.side", "申込状況サマリー").await; // ①
    b.wait_for_text("h1", "申込状況サマリー", 10).await;
    b.click_text("春のウェビナー").await; // ②
    b.wait_for_text("h1", "春のウェビナー", 10).await;
    b.click_text("Zoom設定").await; // ③
    b.wait_for_text("h1", "Zoom設定", 10).await;
    b.choose("Zoom", "利用する").await; // ④
    b.choose("種類", "ウェビナー").await; // ⑤
    b.fill("開催日時", "2027-02-10T14:00").await; // ⑥
    b.fill("所要時間", "90").await; // ⑦
    b.choose("参加者登録利用", "on").await; // ⑧
    b.choose("Zoom情報通知設定", "Tsunaguから送信").await; // ⑨
    b.choose("複数のデバイスからの参加許可", "on").await; // ⑩
    b.choose("パネリストビデオ", "on").await; // ⑪
    b.choose("質疑応答", "on").await; // ⑫
    b.choose("オンデマンド", "off").await; // ⑬
    b.choose("実践セッション", "on").await; // ⑭
    b.choose("録画", "クラウド").await; // ⑮
    shot(&b, "manual-desktop-zoom-webinar-form").await;
    b.click_text("保存する").await; // ⑯
    b.wait_for_text(".flash", "Zoom設定を保存しました", 10).await; // ⑰
    t.run_jobs().await;
    b.goto(&b.current_url().await).await;
    b.wait_for_text("#zoom-state", "作成済み", 10).await;

    // 自動配信メールの編集 ①–⑧, for both join mails.
    for (name, subject) in [
        ("(同伴者専用)ZOOMイベント参加URLのお知らせ", "【{{ event_title }}】同伴者の方の参加URL"),
        ("(代表者)ZOOMイベント参加URLのお知らせ", "【{{ event_title }}】参加URLのお知らせ"),
    ] {
        b.click_text_in("aside.side", "自動配信メール").await; // ①
        b.wait_for_text("h1", "自動配信メール", 10).await;
        b.click_text(&format!("{name}を編集")).await; // ②
        b.wait_for_text("h1", name, 10).await;
        b.choose("配信ステータス", "配信する").await; // ③
        b.choose("管理者向けメール", "配信する").await; // ④
        b.fill("件名", subject).await; // ⑤
        b.execute(
            "const t = document.querySelector('textarea[name=body]'); t.value = t.value + '\\nご不明な点はこのメールにご返信ください。\\n';",
            vec![],
        )
        .await; // ⑥
        b.click_text("プレビュー").await;
        b.wait_for_text("#preview", "ご不明な点はこのメールにご返信ください。", 10).await;
        b.execute("document.getElementById('preview').scrollIntoView()", vec![]).await;
        shot(&b, "manual-desktop-mail-template-preview").await;
        b.click_text("保存する").await; // ⑦
        b.wait_for_text(".flash", "編集完了", 10).await; // ⑧
    }
    shot(&b, "manual-desktop-mail-templates").await;
    let public_path = {
        b.goto(&format!("{}/events/{meeting_event}", t.addr)).await;
        let p = b.execute("return document.querySelector('.facts a[href*=\"/e/\"]').pathname", vec![]).await;
        p.as_str().unwrap().to_string()
    };
    drop(b);

    // A participant on a phone applies with two companions.
    let Some(p) = Browser::start(390, 844).await else { return };
    p.goto(&format!("{}{public_path}", t.addr)).await;
    p.wait_for("main h1", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the public page fits a phone");
    shot(&p, "manual-phone-public-event").await;
    p.click_text("申し込む").await;
    p.wait_for("#apply-submit", 10).await;
    p.type_into("input[name=name_kanji_0]", "山田 太郎").await;
    p.type_into("input[name=name_kana_0]", "ヤマダ タロウ").await;
    p.type_into("input[name=email_0]", "taro@example.com").await;
    p.type_into("input[name=phone_0]", "090-1234-5678").await;
    p.fill("同伴者の人数", "2").await;
    assert!(p.is_displayed("input[name=name_kanji_2]").await && !p.is_displayed("input[name=name_kanji_3]").await);
    for (i, (name, kana, email)) in [
        (1, ("山田 花子", "ヤマダ ハナコ", "hanako@example.com")),
        (2, ("佐藤 次郎", "サトウ ジロウ", "jiro@example.com")),
    ] {
        p.type_into(&format!("input[name=name_kanji_{i}]"), name).await;
        p.type_into(&format!("input[name=name_kana_{i}]"), kana).await;
        p.type_into(&format!("input[name=email_{i}]"), email).await;
    }
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the form fits a phone");
    shot(&p, "manual-phone-apply-form").await;
    p.click("#apply-submit").await;
    p.wait_for_text("#application-status", "申込完了", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the completion fits a phone");
    shot(&p, "manual-phone-application-done").await;
    drop(p);

    // Registered once each, mailed once each over SMTP with their own link, and the organizer's
    // copies.
    t.run_jobs().await;
    let events = sb.events();
    let meeting = events.iter().find(|e| !e.webinar).expect("the meeting");
    let webinar = events.iter().find(|e| e.webinar).expect("the webinar");
    assert_eq!(events.len(), 2);
    let s = &meeting.settings;
    assert_eq!(
        (
            meeting.start_time.as_str(),
            meeting.duration,
            meeting.approval_type,
            s["waiting_room"].as_bool(),
            s["join_before_host"].as_bool(),
            s["participant_video"].as_bool(),
            s["mute_upon_entry"].as_bool()
        ),
        ("2027-01-20T10:00:00Z", 120, 1, Some(true), Some(false), Some(true), Some(true))
    );
    let w = &webinar.settings;
    assert_eq!(
        (
            webinar.start_time.as_str(),
            webinar.duration,
            w["allow_multiple_devices"].as_bool(),
            w["panelists_video"].as_bool(),
            w["question_and_answer"]["enable"].as_bool(),
            w["on_demand"].as_bool(),
            w["practice_session"].as_bool(),
            w["auto_recording"].as_str()
        ),
        ("2027-02-10T05:00:00Z", 90, Some(true), Some(true), Some(true), Some(false), Some(true), Some("cloud"))
    );
    let registrants = sb.registrants(meeting.id);
    let emails: HashSet<_> = registrants.iter().map(|r| r.email.as_str()).collect();
    assert_eq!(emails, HashSet::from(["taro@example.com", "hanako@example.com", "jiro@example.com"]));
    assert_eq!(registrants.len(), 3, "one registrant per person");
    eventually(30, "every mail over SMTP", || {
        let n = sink.received().len();
        async move { n >= 6 }
    })
    .await;
    let received = sink.received();
    for r in &registrants {
        let own: Vec<_> = received.iter().filter(|m| m["to"].as_str() == Some(r.email.as_str())).collect();
        assert_eq!(own.len(), 1, "{} mailed once", r.email);
        assert!(own[0]["body"].as_str().unwrap().contains(&r.join_url), "{}'s own join URL", r.email);
        assert!(own[0]["subject"].as_str().unwrap().starts_with("【新春 Zoom セミナー】"), "the edited subject");
        assert!(
            own[0]["body"].as_str().unwrap().contains("ご不明な点はこのメールにご返信ください。"),
            "the edited body"
        );
        let copies = received
            .iter()
            .filter(|m| m["to"].as_str() == Some(EMAIL) && m["body"].as_str().unwrap_or("").contains(&r.join_url))
            .count();
        assert_eq!(copies, 1, "the organizer's copy for {}", r.email);
    }
    assert!(sb.registrants(webinar.id).is_empty());
    let _ = webinar_event;
    t.assert_no_jobs_left().await;
    let log = sb.exchanges();
    tsunagu_contract::zoom::assert_all(log.iter().map(|e| tsunagu_contract::Exchange {
        method: &e.method,
        path: &e.path,
        status: e.status,
        request_body: &e.request_body,
        response_body: &e.response_body,
    }));
}

async fn shot(b: &Browser, name: &str) {
    eprintln!("screenshot: {}", b.screenshot(name).await.display());
}
