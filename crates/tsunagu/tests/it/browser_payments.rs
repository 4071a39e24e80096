//! Payments in a real browser (Chromium) on a 390 px wide phone, against the Stripe sandbox's
//! hosted pages: a participant with two companions pays by card after a declined card; a second
//! takes a konbini voucher, sees the instructions, and pays at the store two days later; a third
//! lets the voucher lapse and the seat returns. Screenshots are saved for a person to look at.

use std::time::Duration;

use crate::payments::shop;
use crate::webdriver::Browser;

const NO_HORIZONTAL_OVERFLOW: &str = "return document.documentElement.scrollWidth <= window.innerWidth + 1";

async fn shot(b: &Browser, name: &str) {
    eprintln!("screenshot: {}", b.screenshot(name).await.display());
}

async fn fill_applicant(p: &Browser, ticket: &str, name: &str, kana: &str, email: &str) {
    p.wait_for("#apply-submit", 10).await;
    p.click(&format!("input[name=ticket][value=\"{ticket}\"]")).await;
    p.type_into("input[name=name_kanji_0]", name).await;
    p.type_into("input[name=name_kana_0]", kana).await;
    p.type_into("input[name=email_0]", email).await;
    p.type_into("input[name=phone_0]", "090-1234-5678").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_pay_by_card_and_konbini_on_a_phone() {
    let s = shop().await;
    let Some(p) = Browser::start(390, 844).await else { return };
    let apply = format!("{}/e/{}/apply", s.t.addr, s.key);

    // Card, with two companions; the first card is declined and they try again.
    p.goto(&apply).await;
    fill_applicant(&p, &s.ticket, "山田 太郎", "ヤマダ タロウ", "taro@example.com").await;
    p.fill("同伴者の人数", "2").await;
    for (i, (name, kana, email)) in [
        (1, ("山田 花子", "ヤマダ ハナコ", "hanako@example.com")),
        (2, ("佐藤 次郎", "サトウ ジロウ", "jiro@example.com")),
    ] {
        p.type_into(&format!("input[name=name_kanji_{i}]"), name).await;
        p.type_into(&format!("input[name=name_kana_{i}]"), kana).await;
        p.type_into(&format!("input[name=email_{i}]"), email).await;
    }
    assert!(p.text("#payment-choice").await.contains("カード・コンビニ"));
    shot(&p, "payments-phone-apply-form").await;
    p.click("#apply-submit").await;
    p.wait_for("#pay-card", 10).await;
    assert!(p.text("#amount").await.contains("¥9,000"), "three people at ¥3,000");
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "Stripe's page fits a phone");
    shot(&p, "payments-phone-stripe-checkout").await;
    p.type_into("#card", "4000 0000 0000 0002").await;
    p.click("#pay-card").await;
    p.wait_for_text("[role=alert]", "カードが拒否されました", 10).await;
    shot(&p, "payments-phone-card-declined").await;
    p.type_into("#card", "4242 4242 4242 4242").await;
    p.click("#pay-card").await;
    p.wait_for_text("#application-status", "申込完了", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the completion fits a phone");
    shot(&p, "payments-phone-card-done").await;
    // Paid: no cancel button; whom to ask instead.
    assert!(p.text("#paid-cancel").await.contains("主催者にお問い合わせください"));
    p.execute("document.getElementById('paid-cancel').scrollIntoView()", vec![]).await;
    shot(&p, "payments-phone-paid-cancel").await;
    p.click("#receipt-link").await;
    p.wait_for_text("#receipt-amount", "¥9,000-", 10).await;
    p.type_into("input[name=atena]", "山田 太郎").await;
    p.click_text("宛名を入れて表示").await;
    p.wait_for_text("#atena", "山田 太郎", 10).await;
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the receipt fits a phone");
    shot(&p, "payments-phone-receipt").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.t.run_jobs().await;
    }
    for who in ["taro@example.com", "hanako@example.com", "jiro@example.com"] {
        assert_eq!(s.mails_to(who).await.len(), 1, "{who}: mailed once");
        assert_eq!(s.registered(who), 1, "{who}: registered at Zoom once");
    }

    // Konbini: the instructions, then paid at the store two days later.
    p.goto(&apply).await;
    fill_applicant(&p, &s.ticket, "鈴木 一郎", "スズキ イチロウ", "ichiro@example.com").await;
    p.click("#apply-submit").await;
    p.wait_for("#pay-konbini", 10).await;
    p.click("#pay-konbini").await;
    p.wait_for("#konbini-instructions", 10).await;
    let deadline = p.text("#konbini-deadline").await;
    assert!(deadline.ends_with("23:59"), "{deadline}");
    assert_eq!(p.execute(NO_HORIZONTAL_OVERFLOW, vec![]).await, true, "the instructions fit a phone");
    shot(&p, "payments-phone-konbini-instructions").await;
    let konbini = s.last_application().await;
    s.sb.advance(Duration::from_secs(2 * 86_400));
    s.t.clock.advance(2 * 86_400_000);
    let pi = s.sb.payments().into_iter().find(|x| x.status == "requires_action").unwrap().payment_intent;
    // The voucher page as the buyer opens it, and "paid at the store".
    p.click("#voucher-link").await;
    let handles = p.window_handles().await;
    assert!(!handles.is_empty());
    assert!(s.sb.paid_at_store(&pi));
    crate::helpers::eventually(15, "paid at the store", || async {
        s.t.run_jobs().await;
        s.app_status(konbini).await == "completed"
    })
    .await;
    crate::helpers::eventually(15, "registered at Zoom", || async {
        s.t.run_jobs().await;
        s.registered("ichiro@example.com") == 1
    })
    .await;

    // A voucher left to lapse: the seat returns and they are told.
    let p = {
        drop(p);
        Browser::start(390, 844).await.expect("the browser started before")
    };
    p.goto(&apply).await;
    fill_applicant(&p, &s.ticket, "高橋 三郎", "タカハシ サブロウ", "saburo@example.com").await;
    p.click("#apply-submit").await;
    p.wait_for("#pay-konbini", 10).await;
    p.click("#pay-konbini").await;
    p.wait_for("#konbini-instructions", 10).await;
    let lapsed = s.last_application().await;
    let pi = s.sb.payments().into_iter().find(|x| x.status == "requires_action").unwrap().payment_intent;
    // The mail with how to pay goes out first (a voucher that lapses before it is sent gets none).
    crate::helpers::eventually(10, "the mail with how to pay", || async {
        s.t.run_jobs().await;
        s.mails_to("saburo@example.com").await.len() == 1
    })
    .await;
    assert!(s.sb.let_voucher_expire(&pi));
    crate::helpers::eventually(15, "the lapse handled", || async {
        s.t.run_jobs().await;
        s.app_status(lapsed).await == "cancelled"
    })
    .await;
    let url = p.current_url().await;
    p.goto(&url).await;
    p.wait_for_text("#payment-state", "お支払いの期限を過ぎたため", 10).await;
    shot(&p, "payments-phone-konbini-lapsed").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.t.run_jobs().await;
    }
    assert_eq!(s.mails_to("saburo@example.com").await.len(), 2, "how to pay, then told once of the cancellation");
    assert_eq!(s.registered("saburo@example.com"), 0);
}
