//! Applying from the public page against the Zoom sandbox: a ¥0 application with two
//! companions registers each person once at Zoom and mails each their own join URL (and the
//! organizer a copy); a second send of the same form makes no second application; each refusal
//! says what to do and keeps what was typed; a bank transfer completes with ［入金を確認］; 50
//! people racing for the last 10 seats get exactly 10.

use std::collections::HashSet;

use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};

use crate::events::{create, event_form};
use crate::helpers::{Client, Db, TestApp, csrf};

const ACC: &str = "apply-acc";

fn sandbox() -> ZoomSandbox {
    let sb = ZoomSandbox::new();
    sb.add_app(S2sApp {
        account_id: ACC.into(),
        client_id: "apply-cid".into(),
        client_secret: "apply-secret".into(),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: ACC.into(),
        id: "apply-owner".into(),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    sb
}

async fn t_account(t: &TestApp, email: &str) -> tsunagu_core::AccountId {
    let mut c = t.app.store.read().await.unwrap();
    let e = tsunagu_core::Email::parse(email).unwrap();
    tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
}

/// The public key in the event page's public URL.
pub(crate) async fn public_key(c: &Client, id: i64) -> String {
    let page = c.get(&format!("/events/{id}")).await.text;
    let at = page.find("/e/").expect("a public URL") + 3;
    page[at..].split(['"', '<']).next().unwrap().to_string()
}

pub(crate) fn hidden(html: &str, name: &str) -> String {
    let key = format!(r#"name="{name}" value=""#);
    let at = html.find(&key).unwrap_or_else(|| panic!("{name} in the form")) + key.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// A filled form: the representative, then `companions` companions.
pub(crate) fn people_form(
    ticket: &str,
    submit_key: &str,
    rep_email: &str,
    companions: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut f = vec![
        ("submit_key".to_string(), submit_key.to_string()),
        ("ticket".into(), ticket.into()),
        ("companions".into(), companions.len().to_string()),
        ("name_kanji_0".into(), "山田 太郎".into()),
        ("name_kana_0".into(), "ヤマダ タロウ".into()),
        ("email_0".into(), rep_email.into()),
        ("phone_0".into(), "090-1234-5678".into()),
    ];
    for (i, (name, email)) in companions.iter().enumerate() {
        f.push((format!("name_kanji_{}", i + 1), name.to_string()));
        f.push((format!("email_{}", i + 1), email.to_string()));
    }
    f
}

pub(crate) async fn post(c: &Client, key: &str, form: &[(String, String)]) -> crate::helpers::Page {
    let page = c.get(&format!("/e/{key}/apply")).await.text;
    let mut fields: Vec<(&str, &str)> = vec![("csrf_token", "")];
    let token = csrf(&page);
    fields[0].1 = &token;
    fields.extend(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c.post_form(&format!("/e/{key}/apply"), &fields).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_apply_and_each_person_is_registered_and_mailed_once_sqlite() {
    participants_apply_and_each_person_is_registered_and_mailed_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_apply_and_each_person_is_registered_and_mailed_once_postgres() {
    participants_apply_and_each_person_is_registered_and_mailed_once(Db::Postgres).await;
}

async fn participants_apply_and_each_person_is_registered_and_mailed_once(db: Db) {
    let sb = sandbox();
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let api = format!("{base}/v2");
    let Some(t) = TestApp::spawn_on(db, |c| {
        c.zoom.api_base_url = api.clone();
        c.zoom.oauth_base_url = base.clone();
    })
    .await
    else {
        return;
    };
    let org = t.signup("apply-organizer@example.com", "主催 花子").await;
    org.connect_zoom(ACC, "apply-cid", "apply-secret").await;
    crate::events::fill_legal(&org).await;
    let id = create(&org, &event_form("Zoom 入門セミナー", "30", "3000")).await;
    let zoom_page = format!("/events/{id}/zoom");
    let r = org
        .submit(
            &zoom_page,
            &zoom_page,
            &[
                ("use", "on"),
                ("kind", "meeting"),
                ("start", "2027-01-20T19:00"),
                ("duration", "120"),
                ("m_registration", "on"),
                ("m_url_sender", "tsunagu"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    t.run_jobs().await;
    let meeting = sb.events()[0].id;
    let key = public_key(&org, id).await;

    // The participant, on the public page.
    let p = t.client();
    let public = p.get(&format!("/e/{key}")).await;
    assert!(public.text.contains("申し込む"));
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    for label in ["お名前(漢字)", "お名前(カナ)", "メールアドレス", "電話番号", "同伴者の人数", "同伴者2", "申し込む"]
    {
        assert!(form.contains(label), "{label}");
    }
    let submit_key = hidden(&form, "submit_key");
    let free = hidden(&form, "ticket");
    let filled = people_form(
        &free,
        &submit_key,
        "taro@example.com",
        &[("山田 花子", "hanako@example.com"), ("佐藤 次郎", "jiro@example.com")],
    );
    let r = post(&p, &key, &filled).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let mine = r.location.clone().unwrap();
    assert!(mine.starts_with("/a/"));
    // The same form again (a double click, a reload): the same application.
    let again = post(&p, &key, &filled).await;
    assert_eq!(again.location.as_deref(), Some(mine.as_str()), "one application per form");
    let page = p.get(&mine).await.text;
    assert!(page.contains("申込完了") && page.contains("山田 花子") && page.contains("佐藤 次郎"), "{page}");

    t.run_jobs().await;
    let registrants = sb.registrants(meeting);
    let emails: HashSet<_> = registrants.iter().map(|r| r.email.clone()).collect();
    assert_eq!(registrants.len(), 3, "{registrants:?}");
    assert_eq!(
        emails,
        HashSet::from(["taro@example.com".into(), "hanako@example.com".into(), "jiro@example.com".into()])
    );
    assert!(registrants.iter().all(|r| r.status == "approved"));
    for e in &emails {
        assert_eq!(sb.add_calls_for(e), 1, "{e} added once");
    }
    let mails = {
        let mut c = t.app.store.read().await.unwrap();
        let account = tsunagu_store::accounts::credentials_by_email(
            &mut c,
            &tsunagu_core::Email::parse("apply-organizer@example.com").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .account
        .id;
        tsunagu_store::mails::list_for_account(&mut c, account, 100).await.unwrap()
    };
    for r in &registrants {
        let own: Vec<_> = mails.iter().filter(|m| m.to_address == r.email).collect();
        assert_eq!(own.len(), 1, "{} mailed once", r.email);
        assert!(own[0].body_text.contains(&r.join_url), "{} gets their own join URL", r.email);
        assert_eq!(own[0].subject, "イベント参加URLのお知らせ");
        let copies = mails
            .iter()
            .filter(|m| m.to_address == "apply-organizer@example.com" && m.body_text.contains(&r.join_url))
            .count();
        assert_eq!(copies, 1, "the organizer's copy for {}", r.email);
    }
    let taro = mails.iter().find(|m| m.to_address == "taro@example.com").unwrap();
    assert!(
        taro.body_text.contains("・山田 花子 様") && taro.body_text.contains("・佐藤 次郎 様"),
        "{}",
        taro.body_text
    );
    // Nothing more happens when the jobs run again.
    t.run_jobs().await;
    assert_eq!(sb.registrants(meeting).len(), 3);
    let event_page = org.get(&format!("/events/{id}")).await.text;
    assert!(event_page.contains("登録済み") && event_page.contains("申込完了"), "{event_page}");
    let found = org.get(&format!("/events/{id}?q=hanako")).await.text;
    assert_eq!(found.matches(r#"data-label="お名前">山田 花子"#).count(), 1, "{found}");
    assert!(!found.contains("paid@example.com"));
    assert!(org.get(&format!("/events/{id}?q=nobody")).await.text.contains("一致する申込はありません"));
    // CSV for Excel: UTF-8 with a BOM, one line per person with their own join URL.
    let csv = org.get(&format!("/events/{id}/applications.csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(csv.text.starts_with('\u{feff}'), "a BOM first");
    let lines: Vec<&str> = csv.text.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 4, "a header and three people: {lines:?}");
    assert!(lines[0].contains("お名前(漢字)") && lines[1].contains("代表者") && lines[2].contains("同伴者1"));
    for r in &registrants {
        assert_eq!(lines.iter().filter(|l| l.contains(&r.join_url)).count(), 1);
    }
    let other_org = t.signup("apply-csv-other@example.com", "他人").await;
    assert_eq!(other_org.get(&format!("/events/{id}/applications.csv")).await.status, 404);

    // The organizer switches to a webinar: everyone is registered in it again and mailed the
    // new link.
    let switch = [
        ("use", "on"),
        ("kind", "webinar"),
        ("start", "2027-01-20T19:00"),
        ("duration", "120"),
        ("w_registration", "on"),
        ("w_url_sender", "tsunagu"),
        ("confirm_delete", "yes"),
    ];
    let r = org.submit(&zoom_page, &zoom_page, &switch).await;
    assert_eq!(r.status, 303, "{}", r.text);
    t.run_jobs().await;
    let events = sb.events();
    assert!(events.len() == 1 && events[0].webinar, "{events:?}");
    let meeting = events[0].id;
    let webinar_people = sb.registrants(meeting);
    assert_eq!(webinar_people.len(), 3);
    assert!(webinar_people.iter().all(|r| r.status == "approved"));
    {
        let mut c = t.app.store.read().await.unwrap();
        let mails =
            tsunagu_store::mails::list_for_account(&mut c, t_account(&t, "apply-organizer@example.com").await, 200)
                .await
                .unwrap();
        for r in &webinar_people {
            let n = mails.iter().filter(|m| m.to_address == r.email && m.body_text.contains(&r.join_url)).count();
            assert_eq!(n, 1, "{} gets the webinar's link", r.email);
        }
    }

    // Refusals, each with its message and what was typed kept; nothing stored.
    let refusals: Vec<(Vec<(String, String)>, &str)> = vec![
        (people_form(&free, &"k".repeat(20), "taro@example.com", &[]), "すでにこのイベントに申し込まれています"),
        (
            people_form(&free, &"l".repeat(20), "new@example.com", &[("同じ人", "NEW@example.com")]),
            "この申込の中で重複しています",
        ),
        (
            people_form(&free, &"m".repeat(20), "owner@example.com", &[]),
            "主催者のメールアドレスでは参加者として登録できません",
        ),
        (people_form(&free, &"n".repeat(20), "not-an-email", &[]), "形式が正しくありません"),
        (
            {
                let mut f = people_form(&free, &"o".repeat(20), "phone@example.com", &[]);
                f[6].1 = "12345".into();
                f
            },
            "電話番号「12345」の形式が正しくありません",
        ),
        (
            people_form(&free, &"p".repeat(20), "comp@example.com", &[("", "")]),
            "同伴者1のお名前(漢字)を入力してください",
        ),
    ];
    for (form, message) in refusals {
        let r = post(&p, &key, &form).await;
        assert_eq!(r.status, 422, "{message}");
        assert!(r.text.contains(message), "{message}: {}", r.text);
        assert!(r.text.contains("ヤマダ タロウ"), "what was typed is kept");
    }
    assert_eq!(sb.registrants(meeting).len(), 3);

    // A priced ticket: paid by bank transfer, completed by ［入金を確認］.
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    let priced = {
        let at = form.match_indices(r#"name="ticket" value=""#).nth(1).unwrap().0 + r#"name="ticket" value=""#.len();
        form[at..].split('"').next().unwrap().to_string()
    };
    let r = post(&p, &key, &people_form(&priced, &hidden(&form, "submit_key"), "paid@example.com", &[])).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let paid_page = r.location.unwrap();
    let waiting = p.get(&paid_page).await.text;
    assert!(waiting.contains("入金待ち") && waiting.contains("お支払いについて"), "{waiting}");
    t.run_jobs().await;
    {
        let mut c = t.app.store.read().await.unwrap();
        let account = t_account(&t, "apply-organizer@example.com").await;
        let mails = tsunagu_store::mails::list_for_account(&mut c, account, 200).await.unwrap();
        let received: Vec<_> = mails.iter().filter(|m| m.to_address == "paid@example.com").collect();
        assert_eq!(received.len(), 1, "the application-received mail only, before payment");
        assert_eq!(received[0].subject, "お申し込みを受け付けました");
        assert!(received[0].body_text.contains("3,000円"), "{}", received[0].body_text);
    }
    assert_eq!(sb.registrants(meeting).len(), 3, "not registered before payment");
    let event_page = org.get(&format!("/events/{id}")).await.text;
    let confirm = {
        let at = event_page.find("/confirm-payment").expect("［入金を確認］");
        let start = event_page[..at].rfind("action=\"").unwrap() + 8;
        event_page[start..at + "/confirm-payment".len()].to_string()
    };
    // Not another organizer's to confirm.
    let other = t.signup("apply-other@example.com", "別の主催者").await;
    let token = csrf(&other.get("/events").await.text);
    assert_eq!(other.post_form(&confirm, &[("csrf_token", &token)]).await.status, 404);
    let r = org.submit(&format!("/events/{id}"), &confirm, &[]).await;
    assert_eq!(r.status, 303);
    t.run_jobs().await;
    let done = p.get(&paid_page).await.text;
    assert!(done.contains("申込完了"));
    // Paid by a confirmed transfer: a refund is the organizer's decision, so no cancel button, and
    // a cancellation sent anyway is refused.
    assert!(
        done.contains("お支払い済みのため、このページからはキャンセルできません")
            && !done.contains("id=\"cancel-application\"")
    );
    let paid_access = paid_page.trim_start_matches("/a/").split('?').next().unwrap().to_string();
    let token = csrf(&p.get(&format!("/e/{key}/apply")).await.text);
    let r = p.post_form(&format!("/a/{paid_access}/cancel"), &[("csrf_token", &token)]).await;
    assert_eq!(r.status, 303);
    assert!(
        p.get(&paid_page)
            .await
            .text
            .contains("お支払い済みのお申し込みのキャンセルと返金は、主催者にお問い合わせください")
    );
    assert!(p.get(&paid_page).await.text.contains("申込完了"), "not cancelled");
    assert_eq!(sb.registrants(meeting).len(), 4);
    assert_eq!(sb.add_calls_for("paid@example.com"), 1);

    // Cancellation by the organizer: one companion, then by the participant: the rest. Each
    // person's registration is deleted at Zoom (so the email may apply again), the seats come
    // back, and each gets the cancellation mail.
    let seats = |page: &str| page.split("残席 ").nth(1).and_then(|s| s.split('）').next()).map(str::to_string);
    let before = seats(&org.get(&format!("/events/{id}")).await.text).unwrap();
    let event_page = org.get(&format!("/events/{id}")).await.text;
    let companion_cancel = event_page
        .match_indices("/cancel\"")
        .map(|(at, _)| {
            let start = event_page[..at].rfind("action=\"").unwrap() + 8;
            event_page[start..at + 7].to_string()
        })
        .find(|a| a.contains("/people/"))
        .expect("a companion's ［この方をキャンセル］");
    let r = org.submit(&format!("/events/{id}"), &companion_cancel, &[]).await;
    assert_eq!(r.status, 303);
    t.run_jobs().await;
    let left: HashSet<_> = sb.registrants(meeting).into_iter().map(|r| r.email).collect();
    assert_eq!(left.len(), 3, "one registrant deleted: {left:?}");
    assert!(!left.contains("hanako@example.com"), "{left:?}");
    let after = seats(&org.get(&format!("/events/{id}")).await.text).unwrap();
    assert_eq!(after.parse::<i64>().unwrap(), before.parse::<i64>().unwrap() + 1, "the seat returned");
    let r = p.submit(&mine, &format!("{mine}/cancel"), &[]).await;
    assert_eq!(r.status, 303);
    assert!(p.get(&mine).await.text.contains("キャンセル"));
    t.run_jobs().await;
    let left: HashSet<_> = sb.registrants(meeting).into_iter().map(|r| r.email).collect();
    assert_eq!(left, HashSet::from(["paid@example.com".to_string()]));
    let mails = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::mails::list_for_account(&mut c, t_account(&t, "apply-organizer@example.com").await, 200)
            .await
            .unwrap()
    };
    for who in ["taro@example.com", "hanako@example.com", "jiro@example.com"] {
        let n = mails.iter().filter(|m| m.to_address == who && m.subject == "キャンセルのお知らせ").count();
        assert_eq!(n, 1, "{who} gets one cancellation mail");
    }
    // The email may apply again now.
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    let r = post(&p, &key, &people_form(&free, &hidden(&form, "submit_key"), "taro@example.com", &[])).await;
    assert_eq!(r.status, 303, "{}", r.text);
    t.run_jobs().await;
    assert!(sb.registrants(meeting).iter().any(|r| r.email == "taro@example.com" && r.status == "approved"));

    // The event moves a day later: Zoom moves with it, and everyone registered gets the
    // 日時変更のお知らせ with their own, unchanged link; the cancelled do not.
    let mut moved = event_form("Zoom 入門セミナー", "30", "3000");
    moved[2] = ("starts_at", "2027-01-21T19:00");
    moved[3] = ("ends_at", "2027-01-21T21:00");
    let ids = crate::events_zoom::ticket_ids(&org, id).await;
    moved[9] = ("ticket_id_0", &ids[0]);
    moved[13] = ("ticket_id_1", &ids[1]);
    let r = org.submit(&format!("/events/{id}/edit"), &format!("/events/{id}/edit"), &moved).await;
    assert_eq!(r.status, 303, "{}", r.text);
    t.run_jobs().await;
    assert_eq!(sb.events()[0].start_time, "2027-01-21T10:00:00Z");
    let mails = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::mails::list_for_account(&mut c, t_account(&t, "apply-organizer@example.com").await, 200)
            .await
            .unwrap()
    };
    let moved_mails: Vec<_> = mails.iter().filter(|m| m.subject == "日時変更のお知らせ").collect();
    let to: HashSet<_> = moved_mails.iter().map(|m| m.to_address.as_str()).collect();
    assert_eq!(to, HashSet::from(["taro@example.com", "paid@example.com"]), "only the registered are told");
    for r in sb.registrants(meeting) {
        let m = moved_mails.iter().find(|m| m.to_address == r.email).unwrap();
        assert!(m.body_text.contains(&r.join_url) && m.body_text.contains("2027年01月21日"), "{}", m.body_text);
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_people_racing_for_ten_seats_get_exactly_ten() {
    let t = TestApp::spawn().await;
    let org = t.signup("race-organizer@example.com", "主催").await;
    let id = create(&org, &event_form("人気セミナー", "10", "0")).await;
    let key = public_key(&org, id).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, key) = (t.client(), key.clone());
        tasks.push(tokio::spawn(async move {
            let form = c.get(&format!("/e/{key}/apply")).await.text;
            let f =
                people_form(&hidden(&form, "ticket"), &hidden(&form, "submit_key"), &format!("p{i}@example.com"), &[]);
            post(&c, &key, &f).await.status
        }));
    }
    let mut made = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            303 => made += 1,
            422 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((made, refused), (10, 40));
    let page = org.get("/events").await.text;
    assert!(page.contains("人気セミナー"));
    let mut c = t.app.store.read().await.unwrap();
    let e = tsunagu_store::events::get_for_job(&mut c, id).await.unwrap().unwrap();
    assert_eq!(e.seats_taken, 10);
}

/// 自動配信メール: the list with ［編集］, an editor that refuses a broken template with the line
/// and the reason, previews and test-sends with sample values, and saves (編集完了); the join
/// mail then uses the saved subject and body, and ［配信しない］ stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizers_edit_the_automatic_mails() {
    let t = TestApp::spawn().await;
    let org = t.signup("templates@example.com", "主催").await;
    let list = org.get("/mail-templates").await.text;
    for name in [
        "(代表者)ZOOMイベント参加URLのお知らせ",
        "(同伴者専用)ZOOMイベント参加URLのお知らせ",
        "申込受付のお知らせ",
        "キャンセルのお知らせ",
        "日時変更のお知らせ",
        "編集",
    ] {
        assert!(list.contains(name), "{name}");
    }
    let edit = "/mail-templates/join_representative";
    let page = org.get(edit).await.text;
    for label in [
        "配信ステータス",
        "管理者向けメール",
        "件名",
        "本文",
        "差し込み項目",
        "{{ join_url }}",
        "保存する",
        "プレビュー",
        "テスト送信",
    ] {
        assert!(page.contains(label), "{label}");
    }
    assert!(page.contains(r#"value="イベント参加URLのお知らせ""#), "the default subject");
    // A broken template: the line and the reason; what was typed is kept.
    let broken = "{{ name }} 様\n\n参加URL: {{ join_url }\n";
    let r = org
        .submit(
            edit,
            edit,
            &[("status", "on"), ("admin_copy", "off"), ("subject", "参加URL"), ("body", broken), ("action", "save")],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("本文の 3 行目"), "{}", r.text);
    assert!(r.text.contains("参加URL: {{ join_url }"), "kept");
    let unknown = "{{ nmae }} 様";
    let r = org.submit(edit, edit, &[("subject", "x"), ("body", unknown), ("action", "save")]).await;
    assert!(r.status == 422 && r.text.contains("使えない差し込み項目"), "{}", r.text);
    // Preview and test send use the sample values.
    let body = "{{ name }} 様\n{{ event_title }} の参加URL: {{ join_url }}\n";
    let form = [("status", "on"), ("admin_copy", "off"), ("subject", "【{{ event_title }}】参加URL"), ("body", body)];
    let mut preview = form.to_vec();
    preview.push(("action", "preview"));
    let r = org.submit(edit, edit, &preview).await;
    assert!(r.text.contains("【Zoom 入門セミナー】参加URL") && r.text.contains("山田 太郎 様"), "{}", r.text);
    let mut test = form.to_vec();
    test.push(("action", "test"));
    assert!(org.submit(edit, edit, &test).await.text.contains("テスト送信しました"));
    let mut save = form.to_vec();
    save.push(("action", "save"));
    let r = org.submit(edit, edit, &save).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/mail-templates")));
    assert!(org.get("/mail-templates").await.text.contains("編集完了"));
    assert!(org.get("/mail-templates").await.text.contains("編集済み"));
    // ［既定の文面に戻す］ and back: the default again, then the edit saved once more.
    let r = org.submit(edit, edit, &[("action", "reset")]).await;
    assert_eq!(r.status, 303);
    let page = org.get(edit).await.text;
    assert!(page.contains("既定の文面に戻しました") && page.contains(r#"value="イベント参加URLのお知らせ""#));
    assert!(!org.get("/mail-templates").await.text.contains("編集済み"));
    assert_eq!(org.submit(edit, edit, &save).await.status, 303);
    // The companions' mail is not sent at all.
    let companion = "/mail-templates/join_companion";
    let page = org.get(companion).await.text;
    let body_start = page.find("<textarea name=\"body\"").unwrap();
    let default_body = page[body_start..].split('>').nth(1).unwrap().split("</textarea").next().unwrap();
    let default_body = default_body
        .replace("&#x7b;", "{")
        .replace("&#x7d;", "}")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let r = org
        .submit(
            companion,
            companion,
            &[
                ("status", "off"),
                ("admin_copy", "off"),
                ("subject", "イベント参加URLのお知らせ"),
                ("body", &default_body),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);

    // An application to an event without Zoom: the representative's mail is the saved one; the
    // companion gets none; no copy to the organizer.
    let id = create(&org, &event_form("テンプレート確認会", "10", "0")).await;
    let key = public_key(&org, id).await;
    let p = t.client();
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    let f = people_form(
        &hidden(&form, "ticket"),
        &hidden(&form, "submit_key"),
        "rep@example.com",
        &[("同伴 者", "comp@example.com")],
    );
    assert_eq!(post(&p, &key, &f).await.status, 303);
    t.run_jobs().await;
    let mails = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::mails::list_for_account(&mut c, t_account(&t, "templates@example.com").await, 100).await.unwrap()
    };
    let rep: Vec<_> = mails.iter().filter(|m| m.to_address == "rep@example.com").collect();
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0].subject, "【テンプレート確認会】参加URL");
    assert!(rep[0].body_text.starts_with("山田 太郎 様\nテンプレート確認会 の参加URL: "), "{}", rep[0].body_text);
    assert!(!mails.iter().any(|m| m.to_address == "comp@example.com"), "配信しない");
    let copies = mails.iter().filter(|m| m.subject.starts_with("【控え】")).count();
    assert_eq!(copies, 0, "管理者向けメール: 配信しない");
    assert_eq!(mails.iter().filter(|m| m.subject.starts_with("【テスト送信】")).count(), 1);
    let page = org.get(&format!("/events/{id}")).await.text;
    assert!(!page.contains("登録待ち"), "no Zoom: no registration state shown");
    t.assert_no_jobs_left().await;
}

/// 同伴者入力設定: each field 任意入力 / 必須入力 / not asked; the form asks what was chosen and
/// refuses what is missing. With 参加者登録利用 on, name and email stay required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_fields_follow_the_settings() {
    let t = TestApp::spawn().await;
    let org = t.signup("companions@example.com", "主催").await;
    let id = create(&org, &event_form("同伴者設定の確認", "10", "0")).await;
    let settings = format!("/events/{id}/companions");
    let page = org.get(&settings).await.text;
    for label in [
        "同伴者入力設定",
        "お名前(漢字)",
        "お名前(カナ)",
        "メールアドレス",
        "電話番号",
        "会社名",
        "任意入力",
        "必須入力",
        "zoom設定",
    ] {
        assert!(page.contains(label), "{label}");
    }
    let r = org
        .submit(
            &settings,
            &settings,
            &[("name_kana", "off"), ("email", "off"), ("phone", "optional"), ("company", "required")],
        )
        .await;
    assert_eq!(r.status, 303);
    let key = public_key(&org, id).await;
    let p = t.client();
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    assert!(
        form.contains("name=\"company_1\"")
            && !form.contains("name=\"email_1\"")
            && !form.contains("name=\"name_kana_1\"")
    );
    let mut f =
        people_form(&hidden(&form, "ticket"), &hidden(&form, "submit_key"), "rep2@example.com", &[("同伴 太郎", "")]);
    let r = post(&p, &key, &f).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("同伴者1の会社名を入力してください"), "{}", r.text);
    f.push(("company_1".into(), "つなぐ株式会社".into()));
    assert_eq!(post(&p, &key, &f).await.status, 303);
    assert!(org.get(&format!("/events/{id}")).await.text.contains("同伴 太郎"));

    // With Zoom's registration on, name and email cannot be changed from 必須入力.
    let mut c = t.app.store.conn().await.unwrap();
    let account = t_account(&t, "companions@example.com").await;
    let options = serde_json::to_string(&tsunagu::events::zoom::Options::default()).unwrap();
    let choice = tsunagu_store::events::ZoomChoice {
        enabled: true,
        kind: "meeting",
        starts_at: 0,
        duration_minutes: 60,
        options: &options,
    };
    tsunagu_store::events::save_zoom_settings(&mut c, account, id, &choice, 1).await.unwrap();
    drop(c);
    let page = org.get(&settings).await.text;
    assert!(page.contains("［お名前(漢字)］と［メールアドレス］は［必須入力］から変更できません"));
    assert_eq!(page.matches(" disabled").count(), 5, "name: 2 choices, email: 3 choices, all disabled");
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    assert!(form.contains("name=\"email_1\""), "email asked again while registration is on");
}

/// An email that has spent Zoom's 3 adds of the day waits for the reset (00:00 UTC) without
/// spending its job's attempts, the event page says why, and it is registered and mailed once
/// the day turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_allowance_waits_for_zooms_reset() {
    let sb = sandbox();
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let t = TestApp::spawn_with_zoom(&base).await;
    let org = t.signup("daily@example.com", "主催").await;
    org.connect_zoom(ACC, "apply-cid", "apply-secret").await;
    let id = create(&org, &event_form("上限の確認", "10", "0")).await;
    let zoom_page = format!("/events/{id}/zoom");
    let settings = [
        ("use", "on"),
        ("kind", "meeting"),
        ("start", "2027-01-20T19:00"),
        ("duration", "60"),
        ("m_registration", "on"),
    ];
    assert_eq!(org.submit(&zoom_page, &zoom_page, &settings).await.status, 303);
    t.run_jobs().await;
    // The email's 3 adds of today are spent (e.g. on other events).
    let account = t_account(&t, "daily@example.com").await;
    {
        let mut c = t.app.store.conn().await.unwrap();
        let day = t.app.now().div_euclid(86_400_000);
        for _ in 0..3 {
            let key = format!("zoom:{}:add:busy@example.com", account.0);
            tsunagu_store::rate::charge_daily(&mut c, &key, day, 3).await.unwrap();
        }
    }
    let key = public_key(&org, id).await;
    let p = t.client();
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    let f = people_form(&hidden(&form, "ticket"), &hidden(&form, "submit_key"), "busy@example.com", &[]);
    assert_eq!(post(&p, &key, &f).await.status, 303);
    for _ in 0..3 {
        t.run_jobs().await;
    }
    let meeting = sb.events()[0].id;
    assert!(sb.registrants(meeting).is_empty(), "not sent to Zoom: the allowance is spent");
    assert_eq!(sb.add_calls_for("busy@example.com"), 0);
    let jobs = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::jobs::list_by_state(&mut c, "queued", 50).await.unwrap()
    };
    let job = jobs.iter().find(|j| j.kind == "events.register").expect("the job waits");
    let midnight = (t.app.now().div_euclid(86_400_000) + 1) * 86_400_000;
    assert_eq!(job.attempts, 0, "waiting spends no attempt");
    assert!(job.run_at >= midnight && job.run_at <= midnight + 120_000, "waits for 00:00 UTC: {}", job.run_at);
    let page = org.get(&format!("/events/{id}")).await.text;
    assert!(page.contains("同じメールアドレスの Zoom 登録は1日3回までです"), "the page says why");
    // The day turns.
    t.clock.advance(midnight + 61_000 - t.app.now());
    sb.reset_daily();
    t.run_jobs().await;
    t.run_jobs().await;
    assert_eq!(sb.registrants(meeting).len(), 1);
    let mails = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::mails::list_for_account(&mut c, account, 50).await.unwrap()
    };
    assert_eq!(mails.iter().filter(|m| m.to_address == "busy@example.com").count(), 1);
    assert!(org.get(&format!("/events/{id}")).await.text.contains("登録済み"));
}

/// Seats and the application period: too many people for the seats left, and an event that
/// stopped taking applications, are refused with what to do and what was typed kept; a form
/// without its CSRF token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_and_the_period_refuse_with_the_input_kept() {
    let t = TestApp::spawn().await;
    let org = t.signup("seats@example.com", "主催").await;
    let id = create(&org, &event_form("2席だけの会", "2", "0")).await;
    let key = public_key(&org, id).await;
    let p = t.client();
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    let first = people_form(&hidden(&form, "ticket"), &hidden(&form, "submit_key"), "one@example.com", &[]);
    assert_eq!(post(&p, &key, &first).await.status, 303);
    let form = p.get(&format!("/e/{key}/apply")).await.text;
    let two = people_form(
        &hidden(&form, "ticket"),
        &hidden(&form, "submit_key"),
        "two@example.com",
        &[("同伴 者", "three@example.com")],
    );
    let r = post(&p, &key, &two).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("残りの席は 1 席です。同伴者の人数を減らして"), "{}", r.text);
    assert!(r.text.contains("two@example.com") && r.text.contains("three@example.com"), "kept");
    // Without the form's CSRF token: refused.
    let fields: Vec<(&str, &str)> = two.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(p.post_form(&format!("/e/{key}/apply"), &fields).await.status, 403);
    // The organizer closes applications (受付終了): the form says so and keeps the input.
    let mut closed = event_form("2席だけの会", "2", "0");
    closed[8] = ("state", "closed");
    let ids = crate::events_zoom::ticket_ids(&org, id).await;
    closed[9] = ("ticket_id_0", &ids[0]);
    closed[13] = ("ticket_id_1", &ids[1]);
    assert_eq!(org.submit(&format!("/events/{id}/edit"), &format!("/events/{id}/edit"), &closed).await.status, 303);
    let r = post(&p, &key, &two).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("申込受付は終了しました") && r.text.contains("two@example.com"), "{}", r.text);
}

/// Who sends what: with ［Zoomから送信］ Zoom mails the join URL and Tsunagu only tells the
/// representative the application is received; with 参加者登録利用 off nobody is registered and
/// everyone gets the meeting's shared URL from Tsunagu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_sends_or_everyone_gets_the_shared_url() {
    let sb = sandbox();
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let t = TestApp::spawn_with_zoom(&base).await;
    let org = t.signup("senders@example.com", "主催").await;
    org.connect_zoom(ACC, "apply-cid", "apply-secret").await;
    let mut ids = Vec::new();
    for (title, settings) in [
        ("Zoom から送る会", vec![("m_registration", "on"), ("m_url_sender", "zoom")]),
        ("共通URLの会", vec![("m_registration", "off")]),
    ] {
        let id = create(&org, &event_form(title, "10", "0")).await;
        let page = format!("/events/{id}/zoom");
        let mut form = vec![("use", "on"), ("kind", "meeting"), ("start", "2027-01-20T19:00"), ("duration", "60")];
        form.extend(settings);
        assert_eq!(org.submit(&page, &page, &form).await.status, 303);
        ids.push(id);
    }
    t.run_jobs().await;
    let p = t.client();
    for (n, id) in ids.iter().enumerate() {
        let key = public_key(&org, *id).await;
        let form = p.get(&format!("/e/{key}/apply")).await.text;
        let f = people_form(
            &hidden(&form, "ticket"),
            &hidden(&form, "submit_key"),
            &format!("rep{n}@example.com"),
            &[("同伴 者", &format!("comp{n}@example.com"))],
        );
        assert_eq!(post(&p, &key, &f).await.status, 303);
    }
    t.run_jobs().await;
    t.run_jobs().await;
    let account = t_account(&t, "senders@example.com").await;
    let mails = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::mails::list_for_account(&mut c, account, 100).await.unwrap()
    };
    let events = sb.events();
    let zoom_sends = events.iter().find(|e| e.topic == "Zoom から送る会").unwrap();
    let shared = events.iter().find(|e| e.topic == "共通URLの会").unwrap();
    // Zoom sends: both registered (Zoom's confirmation mail on), the representative told the
    // application is received, the companion not mailed by Tsunagu.
    assert_eq!(zoom_sends.settings["registrants_confirmation_email"].as_bool(), Some(true));
    assert_eq!(sb.registrants(zoom_sends.id).len(), 2);
    let rep: Vec<_> = mails.iter().filter(|m| m.to_address == "rep0@example.com").collect();
    assert_eq!(rep.len(), 1);
    assert!(rep[0].body_text.contains("参加URLは Zoom からメールでお送りします"), "{}", rep[0].body_text);
    assert!(!mails.iter().any(|m| m.to_address == "comp0@example.com"));
    // No registration: nobody registered; both mailed the shared URL, not called personal.
    assert!(sb.registrants(shared.id).is_empty());
    let shared_url = {
        let page = org.get(&format!("/events/{}", ids[1])).await.text;
        let at =
            page.find("参加URL</dt><dd class=\"breakable\">").unwrap() + "参加URL</dt><dd class=\"breakable\">".len();
        page[at..].split('<').next().unwrap().replace("&amp;", "&")
    };
    for who in ["rep1@example.com", "comp1@example.com"] {
        let m: Vec<_> = mails.iter().filter(|m| m.to_address == who).collect();
        assert_eq!(m.len(), 1, "{who}");
        assert!(m[0].body_text.contains(&shared_url) && !m[0].body_text.contains("様専用"), "{}", m[0].body_text);
    }
    t.assert_no_jobs_left().await;
}

/// The host's 100 creates and updates a day are spent: the Zoom job waits for 00:00 UTC without
/// spending attempts, and ［Zoom設定］ says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_host_allowance_waits_and_says_why() {
    let sb = sandbox();
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let t = TestApp::spawn_with_zoom(&base).await;
    let org = t.signup("host-limit@example.com", "主催").await;
    org.connect_zoom(ACC, "apply-cid", "apply-secret").await;
    let account = t_account(&t, "host-limit@example.com").await;
    {
        let mut c = t.app.store.conn().await.unwrap();
        let day = t.app.now().div_euclid(86_400_000);
        for _ in 0..100 {
            tsunagu_store::rate::charge_daily(&mut c, &format!("zoom:{}:host:me", account.0), day, 100).await.unwrap();
        }
    }
    let id = create(&org, &event_form("上限の日", "10", "0")).await;
    let page = format!("/events/{id}/zoom");
    let form = [
        ("use", "on"),
        ("kind", "meeting"),
        ("start", "2027-01-20T19:00"),
        ("duration", "60"),
        ("m_registration", "on"),
    ];
    assert_eq!(org.submit(&page, &page, &form).await.status, 303);
    t.run_jobs().await;
    assert!(sb.events().is_empty(), "nothing sent: the allowance is spent");
    let text = org.get(&page).await.text;
    assert!(text.contains("作成中") && text.contains("1日あたりの利用上限"), "{text}");
    let job = {
        let mut c = t.app.store.read().await.unwrap();
        tsunagu_store::jobs::list_by_state(&mut c, "queued", 50)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.kind == "events.zoom")
    }
    .expect("the job waits");
    assert_eq!(job.attempts, 0);
    t.clock.advance((t.app.now().div_euclid(86_400_000) + 1) * 86_400_000 + 61_000 - t.app.now());
    t.run_jobs().await;
    assert_eq!(sb.events().len(), 1);
    assert!(org.get(&page).await.text.contains("作成済み"));
}
