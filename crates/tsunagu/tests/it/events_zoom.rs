//! ［Zoom設定］ against the Zoom sandbox: a save creates the meeting with the chosen settings,
//! an edit of the event's date moves it, switching to a webinar replaces it, ［利用しない］ asks
//! first and then deletes it; failures are told in Japanese on the page. Every request sent to
//! Zoom is checked against the official schema.

use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};

use crate::events::{create, event_form};
use crate::helpers::{Client, TestApp};

const ACC: &str = "zoom-events-acc";
const NO_WEBINAR_ACC: &str = "zoom-basic-acc";

fn sandbox() -> ZoomSandbox {
    let sb = ZoomSandbox::new();
    let scopes: Vec<String> = tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect();
    for (acc, cid, owner, webinar) in
        [(ACC, "events-cid", "owner@example.com", true), (NO_WEBINAR_ACC, "basic-cid", "basic@example.com", false)]
    {
        sb.add_app(S2sApp {
            account_id: acc.into(),
            client_id: cid.into(),
            client_secret: format!("{cid}-secret"),
            scopes: scopes.clone(),
        });
        sb.add_user(SandboxUser {
            account_id: acc.into(),
            id: format!("{acc}-owner"),
            email: owner.into(),
            first_name: "Owner".into(),
            last_name: "Zoom".into(),
            licensed: true,
            webinar_license: webinar,
        });
    }
    sb
}

async fn connect(c: &Client, acc: &str, cid: &str) {
    c.connect_zoom(acc, cid, &format!("{cid}-secret")).await;
}

fn meeting_form<'a>() -> Vec<(&'a str, &'a str)> {
    vec![
        ("use", "on"),
        ("kind", "meeting"),
        ("start", "2027-01-20T19:00"),
        ("duration", "120"),
        ("waiting_room", "on"),
        ("join_before_host", "on"),
        ("m_registration", "on"),
        ("m_url_sender", "tsunagu"),
        ("participant_video", "on"),
        ("participant_mic", "off"),
    ]
}

/// The ticket ids the edit form carries, in order.
pub async fn ticket_ids(c: &Client, id: i64) -> Vec<String> {
    let form = c.get(&format!("/events/{id}/edit")).await.text;
    (0..2)
        .map(|i| {
            let key = format!(r#"name="ticket_id_{i}" value=""#);
            let at = form.find(&key).expect("a ticket row") + key.len();
            form[at..].split('"').next().unwrap().to_string()
        })
        .collect()
}

async fn save(c: &Client, id: i64, form: &[(&str, &str)]) -> crate::helpers::Page {
    let page = format!("/events/{id}/zoom");
    c.submit(&page, &page, form).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_settings_create_move_replace_and_delete_the_meeting() {
    let sb = sandbox();
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let t = TestApp::spawn_with_zoom(&base).await;
    let c = t.signup("zoom-organizer@example.com", "主催 花子").await;
    connect(&c, ACC, "events-cid").await;
    crate::events::fill_legal(&c).await;
    let id = create(&c, &event_form("Zoom 入門セミナー", "30", "3000")).await;

    // The screen with the manual's labels, 開催日時 and 所要時間 taken from the event.
    let blank = c.get(&format!("/events/{id}/zoom")).await;
    assert_eq!(blank.status, 200);
    for label in [
        "利用する",
        "利用しない",
        "ミーティング",
        "ウェビナー",
        "開催日時",
        "所要時間",
        "待機室利用",
        "ホストの前の参加",
        "参加者登録利用",
        "Zoom情報通知設定",
        "Tsunaguから送信",
        "Zoomから送信",
        "参加者ビデオ",
        "参加者マイク",
        "複数のデバイスからの参加許可",
        "パネリストビデオ",
        "質疑応答",
        "オンデマンド",
        "実践セッション",
        "録画しない",
        "ローカル",
        "クラウド",
        "保存する",
    ] {
        assert!(blank.text.contains(label), "{label} is on the screen");
    }
    assert!(blank.text.contains(r#"value="2027-01-20T19:00""#) && blank.text.contains(r#"value="120""#));
    assert!(
        blank.text.contains("待機室を利用する場合、Zoom ではホストの前の参加ができません"),
        "explained before saving"
    );

    // Bad input is refused with what to do, keeping what was typed.
    let mut bad = meeting_form();
    bad[3] = ("duration", "0");
    let r = save(&c, id, &bad).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("所要時間は1分から1440分"), "{}", r.text);
    assert!(r.text.contains(r#"value="2027-01-20T19:00""#), "kept");
    assert!(sb.events().is_empty());

    // ［保存する］: stored, the job queued; the page says 作成中 until the job has run.
    let r = save(&c, id, &meeting_form()).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let after = c.get(&format!("/events/{id}/zoom")).await;
    assert!(after.text.contains("ホストの前の参加はオフにして保存しました"), "the combination Zoom changes is told");
    assert!(after.text.contains("作成中"));
    t.run_jobs().await;
    let events = sb.events();
    assert_eq!(events.len(), 1);
    let m = &events[0];
    assert!(!m.webinar);
    assert_eq!(
        (m.topic.as_str(), m.start_time.as_str(), m.duration),
        ("Zoom 入門セミナー", "2027-01-20T10:00:00Z", 120)
    );
    assert_eq!(m.approval_type, 1, "registration on: strangers wait for the host's approval");
    let s = &m.settings;
    assert_eq!(
        (s["waiting_room"].as_bool(), s["join_before_host"].as_bool(), s["participant_video"].as_bool()),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!(
        (s["mute_upon_entry"].as_bool(), s["registrants_confirmation_email"].as_bool()),
        (Some(true), Some(false))
    );
    let page = c.get(&format!("/events/{id}")).await;
    assert!(page.text.contains("作成済み"), "{}", page.text);
    let grouped = tsunagu::events::zoom::format_zoom_id(m.id);
    assert!(page.text.contains(&grouped), "the meeting ID is shown");
    assert!(page.text.contains("ホストとして開始"));

    // ［ホストとして開始］ goes to a start URL fetched at the click.
    let r = c.get(&format!("/events/{id}/zoom/start")).await;
    assert_eq!(r.status, 303);
    assert!(r.location.as_deref().is_some_and(|l| l.contains(&format!("/s/{}", m.id))), "{:?}", r.location);

    // Moving the event an hour later moves the meeting, which is updated, not created again.
    let mut moved = event_form("Zoom 入門セミナー", "30", "3000");
    moved[2] = ("starts_at", "2027-01-20T20:00");
    moved[3] = ("ends_at", "2027-01-20T22:00");
    let ids = ticket_ids(&c, id).await;
    moved[9] = ("ticket_id_0", &ids[0]);
    moved[13] = ("ticket_id_1", &ids[1]);
    let r = c.submit(&format!("/events/{id}/edit"), &format!("/events/{id}/edit"), &moved).await;
    assert_eq!(r.status, 303, "{}", r.text);
    t.run_jobs().await;
    let events = sb.events();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].id, events[0].start_time.as_str()), (m.id, "2027-01-20T11:00:00Z"));

    // A webinar instead: the meeting is deleted and a webinar created with its options.
    let webinar_form = [
        ("use", "on"),
        ("kind", "webinar"),
        ("start", "2027-01-20T20:00"),
        ("duration", "90"),
        ("w_registration", "on"),
        ("w_url_sender", "zoom"),
        ("multiple_devices", "on"),
        ("panelist_video", "off"),
        ("q_and_a", "on"),
        ("on_demand", "off"),
        ("practice_session", "on"),
        ("recording", "cloud"),
    ];
    // Asked first: the meeting will be deleted.
    let r = save(&c, id, &webinar_form).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("種類を変えると、Zoom のミーティングを削除してウェビナーを作成します"), "{}", r.text);
    let mut confirmed = webinar_form.to_vec();
    confirmed.push(("confirm_delete", "yes"));
    let r = save(&c, id, &confirmed).await;
    assert_eq!(r.status, 303, "{}", r.text);
    t.run_jobs().await;
    let events = sb.events();
    assert_eq!(events.len(), 1, "the meeting is gone: {events:?}");
    let w = &events[0];
    assert!(w.webinar && w.id != m.id);
    let s = &w.settings;
    assert_eq!(w.approval_type, 1);
    assert_eq!(
        (
            s["allow_multiple_devices"].as_bool(),
            s["panelists_video"].as_bool(),
            s["practice_session"].as_bool(),
            s["auto_recording"].as_str(),
            s["question_and_answer"]["enable"].as_bool(),
            s["registrants_confirmation_email"].as_bool(),
        ),
        (Some(true), Some(false), Some(true), Some("cloud"), Some(true), Some(true))
    );
    assert!(c.get(&format!("/events/{id}")).await.text.contains("ウェビナー"));

    // ［利用しない］ asks first, saying what happens; confirmed, the webinar is deleted.
    let r = save(&c, id, &[("use", "off"), ("kind", "webinar")]).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("Zoom のウェビナーを削除します") && r.text.contains("削除して保存する"), "{}", r.text);
    t.run_jobs().await;
    assert_eq!(sb.events().len(), 1, "nothing deleted before confirming");
    let r = save(&c, id, &[("use", "off"), ("kind", "webinar"), ("confirm_delete", "yes")]).await;
    assert_eq!(r.status, 303);
    t.run_jobs().await;
    assert!(sb.events().is_empty());
    assert!(c.get(&format!("/events/{id}")).await.text.contains("利用しない"));

    // Another organizer: no Zoom connection yet, then one without a webinar licence. Neither
    // sees the first organizer's settings.
    let other = t.signup("zoom-other@example.com", "別の主催者").await;
    assert_eq!(other.get(&format!("/events/{id}/zoom")).await.status, 404);
    let csrf = crate::helpers::csrf(&other.get("/events").await.text);
    let r = other.post_form(&format!("/events/{id}/zoom"), &[("csrf_token", &csrf), ("use", "on")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(other.get(&format!("/events/{id}/zoom/start")).await.status, 404);
    let theirs = create(&other, &event_form("ウェビナー講座", "100", "0")).await;
    let webinar = [
        ("use", "on"),
        ("kind", "webinar"),
        ("start", "2027-02-01T10:00"),
        ("duration", "60"),
        ("w_registration", "on"),
    ];
    assert_eq!(save(&other, theirs, &webinar).await.status, 303);
    t.run_jobs().await;
    let text = other.get(&format!("/events/{theirs}/zoom")).await.text;
    assert!(text.contains("失敗") && text.contains("基本設定"), "{text}");
    connect(&other, NO_WEBINAR_ACC, "basic-cid").await;
    assert_eq!(save(&other, theirs, &webinar).await.status, 303);
    t.run_jobs().await;
    let text = other.get(&format!("/events/{theirs}/zoom")).await.text;
    assert!(text.contains("失敗") && text.contains("ウェビナーのライセンスがありません"), "{text}");
    assert!(sb.events().is_empty());
    t.assert_no_jobs_left().await;

    let log = sb.exchanges();
    assert!(log.iter().any(|e| e.method == "PATCH"), "updates were sent");
    tsunagu_contract::zoom::assert_all(log.iter().map(|e| tsunagu_contract::Exchange {
        method: &e.method,
        path: &e.path,
        status: e.status,
        request_body: &e.request_body,
        response_body: &e.response_body,
    }));
}

/// Zoom → Tsunagu: the organizer's event subscription passes Zoom's URL validation; a meeting
/// rescheduled or deleted in Zoom's own screens shows on the event page and mails the
/// organizer once; an unsigned or wrongly signed delivery is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_in_zoom_reach_the_event_page() {
    let sb = sandbox();
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let t = TestApp::spawn_with_zoom(&base).await;
    let c = t.signup("hooks@example.com", "主催").await;
    connect(&c, ACC, "events-cid").await;
    let r = c
        .submit(
            "/settings/basic",
            "/settings/basic",
            &[
                ("auth_method", "s2s"),
                ("zoom_account_id", ACC),
                ("client_id", "events-cid"),
                ("webhook_secret", "zoom-secret-token"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let page = c.get("/settings/basic").await.text;
    let at = page.find("id=\"zoom-webhook-url\">").unwrap() + "id=\"zoom-webhook-url\">".len();
    let shown = page[at..].split('<').next().unwrap().to_string();
    let path = shown.split("/zoom/webhook/").nth(1).map(|k| format!("/zoom/webhook/{k}")).expect("the webhook URL");
    assert!(!page.contains("zoom-secret-token"), "the token is never shown");
    sb.set_webhook(ACC, &format!("{}{path}", t.addr), "zoom-secret-token");
    assert!(sb.validate_webhook(ACC).await, "Zoom's URL validation passes");

    let id = create(&c, &event_form("Zoom で変わる会", "30", "0")).await;
    assert_eq!(save(&c, id, &meeting_form()).await.status, 303);
    t.run_jobs().await;
    let meeting = sb.events()[0].id;
    assert_eq!(sb.reschedule_in_zoom(meeting, "2027-01-20T12:00:00Z").await, Some(200));
    let page = c.get(&format!("/events/{id}")).await.text;
    assert!(page.contains("開催日時が 2027年01月20日 21:00 に変更されました"), "{page}");
    assert_eq!(sb.delete_in_zoom(meeting).await, Some(200));
    let page = c.get(&format!("/events/{id}")).await.text;
    assert!(page.contains("削除されました") && page.contains("失敗"), "{page}");
    let mails = {
        let mut conn = t.app.store.read().await.unwrap();
        let e = tsunagu_core::Email::parse("hooks@example.com").unwrap();
        let account = tsunagu_store::accounts::credentials_by_email(&mut conn, &e).await.unwrap().unwrap().account.id;
        tsunagu_store::mails::list_for_account(&mut conn, account, 50).await.unwrap()
    };
    let zoom_mails: Vec<_> = mails.iter().filter(|m| m.subject.starts_with("Zoom でミーティングが")).collect();
    assert_eq!(
        zoom_mails.len(),
        2,
        "one mail per change: {:?}",
        zoom_mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    // Saving again makes a new meeting.
    assert_eq!(save(&c, id, &meeting_form()).await.status, 303);
    t.run_jobs().await;
    assert_eq!(sb.events().len(), 1);
    assert!(c.get(&format!("/events/{id}")).await.text.contains("作成済み"));

    // Someone else's signature, or none: refused.
    sb.set_webhook(ACC, &format!("{}{path}", t.addr), "not-the-token");
    assert!(!sb.validate_webhook(ACC).await);
    assert_eq!(sb.delete_in_zoom(sb.events()[0].id).await, Some(401));
    let raw = crate::helpers::http().build().unwrap();
    let r = raw.post(format!("{}{path}", t.addr)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = raw.post(format!("{}/zoom/webhook/999999", t.addr)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 404);
    t.assert_no_jobs_left().await;
}
