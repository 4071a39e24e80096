//! The organizer's event pages: 申込状況サマリー, create, edit, copy and delete, with every
//! refusal saying what to do and keeping what was typed, and nothing of another account's.

use crate::helpers::{Client, TestApp};

pub fn event_form<'a>(title: &'a str, capacity: &'a str, price: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("title", title),
        ("description", "Zoom で開催します。\n資料: https://example.com/slides"),
        ("starts_at", "2027-01-20T19:00"),
        ("ends_at", "2027-01-20T21:00"),
        ("capacity", capacity),
        ("companions_max", "2"),
        ("apply_from", ""),
        ("apply_until", ""),
        ("state", "published"),
        ("ticket_id_0", ""),
        ("ticket_name_0", "一般"),
        ("ticket_price_0", "0"),
        ("ticket_limit_0", ""),
        ("ticket_id_1", ""),
        ("ticket_name_1", "懇親会つき"),
        ("ticket_price_1", price),
        ("ticket_limit_1", "１０"),
    ]
}

/// 特定商取引法に基づく表記, which an event with priced tickets needs before it is published.
pub async fn fill_legal(c: &Client) {
    let r = c.submit("/settings/legal", "/settings/legal", &crate::payments::legal_form("")).await;
    assert_eq!(r.status, 303, "{}", r.text);
}

pub async fn create(c: &Client, form: &[(&str, &str)]) -> i64 {
    let r = c.submit("/events/new", "/events/new", form).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let to = r.location.unwrap();
    to.trim_start_matches("/events/").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizer_creates_edits_copies_and_deletes_events() {
    let t = TestApp::spawn().await;
    let c = t.signup("organizer@example.com", "主催 花子").await;
    let empty = c.get("/events").await;
    assert!(empty.text.contains("まだイベントはありません") && empty.text.contains("新規イベント作成"));

    // Refused: each problem named, what was typed kept.
    let mut bad = event_form("", "0", "三千円");
    bad.retain(|(k, _)| *k != "ends_at");
    bad.push(("ends_at", "2027-01-20T18:00"));
    let r = c.submit("/events/new", "/events/new", &bad).await;
    assert_eq!(r.status, 422);
    for msg in [
        "イベント名を入力してください。",
        "終了日時は開催日時より後にしてください。",
        "定員は 1〜100,000 の数字で入力してください。",
        "チケット 2 の料金は 0 円以上の数字で入力してください",
    ] {
        assert!(r.text.contains(msg), "{msg}: {}", r.text);
    }
    assert!(r.text.contains("value=\"三千円\"") && r.text.contains("value=\"2027-01-20T18:00\""), "typed values kept");
    assert!(r.text.contains("資料: https://example.com/slides</textarea>"));
    assert!(c.get("/events").await.text.contains("まだイベントはありません"), "nothing stored");

    // A priced event is published only with the 特定商取引法に基づく表記 filled in.
    let r = c.submit("/events/new", "/events/new", &event_form("新春 Zoom セミナー", "３０", "3,000円")).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("有料チケットのあるイベントを公開するには"), "{}", r.text);
    assert!(c.get("/events").await.text.contains("まだイベントはありません"), "nothing stored");
    fill_legal(&c).await;

    // Created, with full-width digits and commas read as people mean them.
    let id = create(&c, &event_form("新春 Zoom セミナー", "３０", "3,000円")).await;
    let page = c.get(&format!("/events/{id}")).await;
    assert_eq!(page.status, 200);
    for text in
        ["新春 Zoom セミナー", "2027年01月20日 19:00", "30 人", "懇親会つき", "3,000円", "10 人まで", "無料", "公開"]
    {
        assert!(page.text.contains(text), "{text}: {}", page.text);
    }
    assert!(page.text.contains("Zoom で開催します。<br>"), "line breaks kept");
    assert!(page.text.contains("<a href=\"https://example.com/slides\""), "addresses linked");
    // Its public page, for anyone with the address.
    let at = page.text.find("/e/").expect("the public address is shown");
    let key: String =
        page.text[at + 3..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    let anyone = Client::new(&t.addr);
    let public = anyone.get(&format!("/e/{key}")).await;
    assert_eq!(public.status, 200);
    for text in [
        "新春 Zoom セミナー",
        "2027年01月20日 19:00",
        "30 席",
        "3,000円",
        "残り 10 枚",
        "<a href=\"https://example.com/slides\"",
    ] {
        assert!(public.text.contains(text), "{text}: {}", public.text);
    }
    assert!(!public.text.contains("申込受付は終了"), "open for applications");
    assert_eq!(anyone.get("/e/no-such-key").await.status, 404);
    let summary = c.get("/events").await.text;
    assert!(
        summary.contains(&format!("<a href=\"/events/{id}\">新春 Zoom セミナー</a>")) && summary.contains("30 / 30")
    );

    // Edited: the stored values come back in the form, changes are saved.
    let form = c.get(&format!("/events/{id}/edit")).await.text;
    assert!(form.contains("value=\"2027-01-20T19:00\"") && form.contains("value=\"3000\""), "{form}");
    let ticket_ids: Vec<String> = form
        .match_indices("name=\"ticket_id_")
        .filter_map(|(at, _)| {
            let v = &form[at..];
            let v = &v[v.find("value=\"")? + 7..];
            Some(v[..v.find('"')?].to_string())
        })
        .take(2)
        .collect();
    let mut edit = event_form("新春 Zoom セミナー（第2回）", "40", "2500");
    for (k, v) in edit.iter_mut() {
        match *k {
            "ticket_id_0" => *v = &ticket_ids[0],
            "ticket_id_1" => *v = &ticket_ids[1],
            _ => {}
        }
    }
    let r = c.submit(&format!("/events/{id}/edit"), &format!("/events/{id}/edit"), &edit).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = c.get(&format!("/events/{id}")).await.text;
    assert!(page.contains("（第2回）") && page.contains("2,500円") && page.contains("40 人"));
    assert_eq!(page.matches("<td>懇親会つき</td>").count(), 1, "the ticket edited, not added again");

    // Copied as a draft; deleted.
    let r = c.submit(&format!("/events/{id}"), &format!("/events/{id}/copy"), &[]).await;
    assert_eq!(r.status, 303);
    let copy_edit = r.location.unwrap();
    assert!(c.get(&copy_edit).await.text.contains("新春 Zoom セミナー（第2回）（コピー）"));
    let copy_id: i64 = copy_edit.trim_start_matches("/events/").trim_end_matches("/edit").parse().unwrap();
    assert!(c.get("/events").await.text.contains("下書き"));
    let draft = c.get(&format!("/events/{copy_id}")).await.text;
    assert!(draft.contains("下書きのため公開されていません"));
    assert_eq!(anyone.get(&format!("/e/{key}")).await.status, 200, "the original stays public");
    let r = c.submit(&format!("/events/{copy_id}"), &format!("/events/{copy_id}/delete"), &[]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/events")));
    assert_eq!(c.get(&format!("/events/{copy_id}")).await.status, 404);

    // Closed: the public page says so.
    let mut closed = edit.clone();
    for (k, v) in closed.iter_mut() {
        if *k == "state" {
            *v = "closed";
        }
    }
    let r = c.submit(&format!("/events/{id}/edit"), &format!("/events/{id}/edit"), &closed).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(anyone.get(&format!("/e/{key}")).await.text.contains("このイベントの申込受付は終了しました。"));

    // Another account sees and changes nothing of it.
    let other = t.signup("other@example.com", "別の 主催者").await;
    assert!(!other.get("/events").await.text.contains("新春"));
    for path in [format!("/events/{id}"), format!("/events/{id}/edit")] {
        assert_eq!(other.get(&path).await.status, 404, "{path}");
    }
    for action in [format!("/events/{id}/edit"), format!("/events/{id}/copy"), format!("/events/{id}/delete")] {
        let r = other.submit("/events", &action, &edit).await;
        assert_eq!(r.status, 404, "{action}");
    }
    assert_eq!(c.get(&format!("/events/{id}")).await.status, 200, "still there");
    // Every POST needs the form's CSRF token.
    let r = c.post_form("/events/new", &event_form("CSRF なし", "10", "0")).await;
    assert_eq!(r.status, 403);
    assert!(!c.get("/events").await.text.contains("CSRF なし"));
    t.assert_no_jobs_left().await;
}
