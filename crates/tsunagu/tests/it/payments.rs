//! 基本設定 > 決済（Stripe） and the Stripe webhook intake, against the Stripe sandbox: a key is
//! checked and refused with a message saying what to do, Tsunagu creates its webhook endpoint
//! and seals the key and the signing secret, events are stored once however often they come,
//! and nothing badly signed or of another organizer is stored.

use std::time::Duration;

use tsunagu_contract::Exchange;
use tsunagu_sandbox::stripe::{SandboxAccount, StripeSandbox};
use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_stripe::client::{Caller, CheckoutRequest, LineItem};
use tsunagu_stripe::{ApiKey, webhook};

use crate::helpers::{TestApp, eventually, free_port};

/// Every request Tsunagu sent to the Stripe sandbox, and every answer, follows the official schema.
fn contract(sb: &StripeSandbox) {
    let ex = sb.exchanges();
    tsunagu_contract::stripe::assert_all(ex.iter().map(|e| Exchange {
        method: &e.method,
        path: &e.path,
        status: e.status,
        request_body: &e.request_body,
        response_body: &e.response_body,
    }));
}

pub(crate) fn account(id: &str, konbini: bool) -> SandboxAccount {
    SandboxAccount {
        id: id.into(), display_name: "つなぐセミナー".into(), email: "owner@example.com".into(), konbini
    }
}

async fn app_with_stripe(stripe_base: &str) -> TestApp {
    app_with(stripe_base, None).await
}

async fn app_with(stripe_base: &str, zoom_base: Option<&str>) -> TestApp {
    let port = free_port();
    TestApp::spawn_with(|c| {
        if let Some(zoom) = zoom_base {
            c.zoom.api_base_url = format!("{zoom}/v2");
            c.zoom.oauth_base_url = zoom.to_string();
        }
        c.stripe.api_base_url = stripe_base.to_string();
        c.http.listen = format!("127.0.0.1:{port}");
        c.http.public_url = format!("http://127.0.0.1:{port}");
        c.http.manager_url = format!("http://127.0.0.1:{port}");
    })
    .await
}

async fn account_id(t: &TestApp, email: &str) -> tsunagu_core::AccountId {
    let mut c = t.app.store.read().await.unwrap();
    let e = tsunagu_core::Email::parse(email).unwrap();
    tsunagu_store::accounts::credentials_by_email(&mut c, &e).await.unwrap().unwrap().account.id
}

async fn stored(t: &TestApp, account: tsunagu_core::AccountId) -> Vec<(String, String)> {
    let mut c = t.app.store.read().await.unwrap();
    tsunagu_store::stripe::events(&mut c, account).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizer_connects_stripe_and_its_events_are_stored_once() {
    let sb = StripeSandbox::new();
    let key = sb.add_account(account("acct_1Org", true));
    let other_key = sb.add_account(account("acct_1Other", false));
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    sb.set_base(&base);
    let t = app_with_stripe(&base).await;
    let c = t.signup("pay@example.com", "主催").await;
    let me = account_id(&t, "pay@example.com").await;

    let page = c.get("/settings/payments").await;
    assert!(page.text.contains("<h1>決済（Stripe）</h1>") && page.text.contains("未接続"), "{}", page.text);

    // Bad keys: each refused with what to do, nothing stored.
    let r = c.submit("/settings/payments", "/settings/payments", &[("secret_key", "pk_test_abcdefghijklmnop")]).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("公開可能キー"), "{}", r.text);
    let r = c.submit("/settings/payments", "/settings/payments", &[("secret_key", "sk_test_wrongwrongwrong")]).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("Stripeがこのキーを受け付けませんでした"), "{}", r.text);
    let rk = sb.add_restricted_key("acct_1Org", &["rak_checkout_session_write", "rak_charge_read", "rak_event_read"]);
    let r = c.submit("/settings/payments", "/settings/payments", &[("secret_key", &rk)]).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("Refunds（返金）: 書き込み") && r.text.contains("PaymentIntents: 読み取り"), "{}", r.text);
    assert!(!r.text.contains(&rk), "a key is never rendered back");
    assert!(sb.endpoints().is_empty(), "nothing was created for a refused key");

    // The secret key: checked, the endpoint created, the key and the signing secret sealed.
    let r = c.submit("/settings/payments", "/settings/payments", &[("secret_key", &key)]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = c.get("/settings/payments").await.text;
    let url = format!("{}/stripe/webhook/{}", t.app.config.http.public_url, me.0);
    assert!(page.contains("テストモード") && page.contains(&url) && page.contains("カード・コンビニ"), "{page}");
    assert!(!page.contains(&key));
    let endpoints = sb.endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!((endpoints[0].1.as_str(), endpoints[0].2.len()), (url.as_str(), 6));
    {
        let mut conn = t.app.store.read().await.unwrap();
        let sealed = tsunagu_store::secrets::get(&mut conn, me, "stripe.secret_key").await.unwrap().unwrap();
        assert!(!sealed.sealed.contains(&key[8..]), "sealed, not stored in plain text");
    }
    // Saving again replaces the endpoint rather than adding one.
    assert_eq!(c.submit("/settings/payments", "/settings/payments", &[("secret_key", &key)]).await.status, 303);
    assert_eq!(sb.endpoints().len(), 1);
    let report = tsunagu::payments::check::run(&t.app, me).await.unwrap();
    assert!(report.ok(), "{}", report.render());

    // A payment: its checkout.session.completed arrives signed and is stored.
    let caller = Caller { key: ApiKey::parse(&key).unwrap(), owner: me.0.to_string() };
    let order = CheckoutRequest {
        order_ref: "o-1".into(),
        metadata: vec![],
        line_items: vec![LineItem { name: "一般".into(), unit_amount: 3000, quantity: 1 }],
        methods: vec!["card".into()],
        konbini_expires_after_days: None,
        customer_email: None,
        success_url: format!("{url}/ok"),
        cancel_url: format!("{url}/no"),
        expires_at: None,
    };
    let s = t.app.stripe.create_checkout_session(&caller, &order, "o-1").await.unwrap();
    sb.pay_card(&s.id).unwrap();
    eventually(10, "the event stored", || async { stored(&t, me).await.len() == 1 }).await;
    let (event_id, kind) = stored(&t, me).await.remove(0);
    assert_eq!(kind, "checkout.session.completed");

    // The same event three times at once: stored once, each answered 200.
    let raw = crate::helpers::http().build().unwrap();
    let (body, header) = sb.signed_event(&event_id, &url).unwrap();
    let mut sends = Vec::new();
    for _ in 0..3 {
        let (raw, url, body, header) = (raw.clone(), url.clone(), body.clone(), header.clone());
        sends.push(tokio::spawn(async move {
            raw.post(url).header("stripe-signature", header).body(body).send().await.unwrap().status().as_u16()
        }));
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(stored(&t, me).await.len(), 1);

    // Refused and not stored: no signature, a stale one, a body re-serialized after signing,
    // another organizer's secret.
    let post = |header: Option<String>, body: String| {
        let (raw, url) = (raw.clone(), url.clone());
        async move {
            let mut req = raw.post(url).body(body);
            if let Some(h) = header {
                req = req.header("stripe-signature", h);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let secret = {
        let mut conn = t.app.store.read().await.unwrap();
        let s = tsunagu_store::secrets::get(&mut conn, me, "stripe.webhook_secret").await.unwrap().unwrap();
        t.app.keys.open(&s.key_id, &s.sealed, &tsunagu::crypto::secret_aad(me, "stripe.webhook_secret")).unwrap()
    };
    let forged = body.replace(&event_id, "evt_forged0000000000000000");
    let now = t.app.now() / 1000;
    let sign = |secret: &str, t: i64, b: &str| format!("t={t},v1={}", webhook::v1(secret, t, b.as_bytes()));
    assert_eq!(post(None, forged.clone()).await, 400);
    assert_eq!(post(Some(sign(&secret, now - 301, &forged)), forged.clone()).await, 400);
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&forged).unwrap()).unwrap();
    assert_eq!(post(Some(sign(&secret, now, &forged)), pretty).await, 400);
    let other = Caller { key: ApiKey::parse(&other_key).unwrap(), owner: "other".into() };
    let other_ep = t.app.stripe.create_webhook_endpoint(&other, "https://other.example/hook", "x").await.unwrap();
    assert_eq!(post(Some(sign(&other_ep.secret.unwrap(), now, &forged)), forged.clone()).await, 400);
    // Well signed but of a type Tsunagu does not subscribe to: acknowledged, not stored.
    let unknown = forged.replace("checkout.session.completed", "customer.created");
    assert_eq!(post(Some(sign(&secret, now, &unknown)), unknown).await, 200);
    // Well signed and new: stored (the control for the refusals above).
    assert_eq!(post(Some(sign(&secret, now, &forged)), forged).await, 200);
    let kinds: Vec<String> = stored(&t, me).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(kinds, [event_id.clone(), "evt_forged0000000000000000".to_string()]);

    // The endpoint deleted in Stripe's dashboard: `stripe check` says so.
    let eps = t.app.stripe.webhook_endpoints(&caller).await.unwrap();
    t.app.stripe.delete_webhook_endpoint(&caller, &eps[0].id).await.unwrap();
    let report = tsunagu::payments::check::run(&t.app, me).await.unwrap();
    assert!(!report.ok() && report.render().contains("Webhook が Stripe にありません"), "{}", report.render());

    // Every request Tsunagu sent and every answer follows the official schema.
    tokio::time::sleep(Duration::from_millis(50)).await;
    contract(&sb);
    for d in sb.deliveries() {
        let errs = tsunagu_contract::stripe::event_errors(&d.body);
        assert!(errs.is_empty(), "{errs:?}");
    }
}

/// A participant's way through Stripe Checkout, as a browser takes it: the application form,
/// Stripe's hosted page, and back. Returns the sandbox page's redirect (the success URL).
async fn pay_on_stripe(checkout_url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let raw = crate::helpers::http().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    raw.post(checkout_url).form(form).send().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

pub(crate) fn legal_form(invoice: &str) -> Vec<(&str, &str)> {
    vec![
        ("seller", "株式会社つなぐ"),
        ("manager", "山田 太郎"),
        ("address", "東京都千代田区丸の内1-1-1"),
        ("phone", "03-1234-5678"),
        ("email", "info@example.com"),
        ("price", "各イベントのページに記載（税込）"),
        ("payment", "クレジットカード、コンビニ払い"),
        ("timing", "お申し込み時"),
        ("delivery", "開催日時に Zoom で"),
        ("cancellation", "前日まで全額返金"),
        ("invoice_number", invoice),
    ]
}

/// The organizer's Zoom account: a Server-to-Server app with every scope, a licensed owner.
pub(crate) fn zoom_sandbox(acc: &str, cid: &str) -> ZoomSandbox {
    let sb = ZoomSandbox::new();
    sb.add_app(S2sApp {
        account_id: acc.into(),
        client_id: cid.into(),
        client_secret: format!("{cid}-secret"),
        scopes: tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect(),
    });
    sb.add_user(SandboxUser {
        account_id: acc.into(),
        id: format!("{acc}-owner"),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: false,
    });
    sb
}

/// ［Zoom設定］: a meeting with 参加者登録利用, so that each person Tsunagu registers gets their own URL.
pub(crate) const MEETING_FORM: &[(&str, &str)] = &[
    ("use", "on"),
    ("kind", "meeting"),
    ("start", "2027-01-20T19:00"),
    ("duration", "120"),
    ("m_registration", "on"),
    ("m_url_sender", "tsunagu"),
];

pub(crate) struct Shop {
    pub sb: StripeSandbox,
    pub zoom: ZoomSandbox,
    pub meeting: i64,
    pub t: TestApp,
    pub organizer: crate::helpers::Client,
    pub me: tsunagu_core::AccountId,
    pub key: String,
    pub ticket: String,
    pub event: i64,
}

pub(crate) async fn shop() -> Shop {
    let sb = StripeSandbox::new();
    let secret = sb.add_account(account("acct_1Shop", true));
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    std::mem::forget(_task);
    sb.set_base(&base);
    let zoom = zoom_sandbox("shop-zoom-acc", "shop-cid");
    let (zoom_base, _task) = tsunagu_sandbox::serve(zoom.router()).await.unwrap();
    std::mem::forget(_task);
    let t = app_with(&base, Some(&zoom_base)).await;
    let organizer = t.signup("shop@example.com", "主催").await;
    let me = account_id(&t, "shop@example.com").await;
    organizer.connect_zoom("shop-zoom-acc", "shop-cid", "shop-cid-secret").await;
    assert_eq!(
        organizer.submit("/settings/payments", "/settings/payments", &[("secret_key", &secret)]).await.status,
        303
    );
    let mut form = crate::events::event_form("有料セミナー", "30", "3000");
    form.extend([
        ("payment_methods_shown", "1"),
        ("payment_methods", "card"),
        ("payment_methods", "konbini"),
        ("konbini_days", "3"),
    ]);
    // Not published before the 特定商取引法に基づく表記 is filled in (a draft may be saved).
    let r = organizer.submit("/events/new", "/events/new", &form).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("特定商取引法に基づく表記"), "{}", r.text);
    let r = organizer.submit("/settings/legal", "/settings/legal", &legal_form("T123")).await;
    assert_eq!(r.status, 422, "a malformed invoice number is refused");
    assert!(r.text.contains("13 桁"), "{}", r.text);
    assert!(r.text.contains("株式会社つなぐ"), "what was typed is kept");
    let r = organizer.submit("/settings/legal", "/settings/legal", &legal_form("T1234567890123")).await;
    assert_eq!(r.status, 303);
    let id = crate::events::create(&organizer, &form).await;
    let zoom_page = format!("/events/{id}/zoom");
    assert_eq!(organizer.submit(&zoom_page, &zoom_page, MEETING_FORM).await.status, 303);
    eventually(20, "the meeting is created", || async {
        t.run_jobs().await;
        !zoom.events().is_empty()
    })
    .await;
    let meeting = zoom.events()[0].id;
    let key = crate::events_apply::public_key(&organizer, id).await;
    let public = t.client().get(&format!("/e/{key}")).await.text;
    assert!(public.contains(&format!("/e/{key}/legal")), "{public}");
    assert!(public.contains("有料チケットのお支払い方法: カード・コンビニ"), "{public}");
    let legal = t.client().get(&format!("/e/{key}/legal")).await.text;
    assert!(
        legal.contains("運営統括責任者") && legal.contains("山田 太郎") && legal.contains("キャンセル・返金について")
    );
    // While the event sells, the notice cannot be emptied, and its email must be one.
    let mut emptied = legal_form("T1234567890123");
    emptied[0] = ("seller", "");
    let r = organizer.submit("/settings/legal", "/settings/legal", &emptied).await;
    assert_eq!(r.status, 422);
    assert!(
        r.text.contains("有料チケットのあるイベントを公開しているため")
            && r.text.contains("空欄の項目（販売事業者名）"),
        "{}",
        r.text
    );
    let mut bad_email = legal_form("T1234567890123");
    bad_email[4] = ("email", "not-an-email");
    let r = organizer.submit("/settings/legal", "/settings/legal", &bad_email).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("メールアドレスの形式が正しくありません") && r.text.contains("not-an-email"), "{}", r.text);
    assert_eq!(t.client().get(&format!("/e/{key}/legal")).await.status, 200, "the notice still shows");
    let page = t.client().get(&format!("/e/{key}/apply")).await.text;
    let tickets: Vec<String> =
        page.split(r#"name="ticket" value=""#).skip(1).map(|s| s.split('"').next().unwrap().to_string()).collect();
    assert!(page.contains("カード・コンビニ"), "the form says how priced tickets are paid");
    Shop { sb, zoom, meeting, t, organizer, me, key, ticket: tickets[1].clone(), event: id }
}

impl Shop {
    /// Apply for the priced ticket; returns Stripe's checkout URL the form sends the person to.
    async fn apply(&self, email: &str, companions: &[(&str, &str)]) -> String {
        let p = self.t.client();
        let form = p.get(&format!("/e/{}/apply", self.key)).await.text;
        let submit = crate::events_apply::hidden(&form, "submit_key");
        let fields = crate::events_apply::people_form(&self.ticket, &submit, email, companions);
        let r = crate::events_apply::post(&p, &self.key, &fields).await;
        assert_eq!(r.status, 303, "{}", r.text);
        let to = r.location.unwrap();
        assert!(to.contains("/c/pay/cs_test_"), "straight to Stripe's page: {to}");
        to
    }

    /// How many times this email is registered for the event's meeting at Zoom.
    pub(crate) fn registered(&self, email: &str) -> usize {
        self.zoom.registrants(self.meeting).iter().filter(|r| r.email == email && r.status == "approved").count()
    }

    pub(crate) async fn mails_to(&self, email: &str) -> Vec<String> {
        let mut c = self.t.app.store.read().await.unwrap();
        let all = tsunagu_store::mails::list_for_account(&mut c, self.me, 500).await.unwrap();
        all.into_iter().filter(|m| m.to_address == email).map(|m| m.subject).collect()
    }

    async fn status_of(&self, access_path: &str) -> String {
        let page = self.t.client().get(access_path).await.text;
        let at = page.find("id=\"application-status\">").unwrap() + "id=\"application-status\">".len();
        page[at..].split('<').next().unwrap().to_string()
    }
}

/// NOTES §5.1, §5.4, §5.7: a card payment completes the application once, whether the person
/// comes back before the webhook or the webhook comes first, and a declined card can try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_payments_complete_once_whichever_arrives_first() {
    let s = shop().await;
    // A: back from Stripe before the webhook (held back).
    let url = s.apply("a@example.com", &[("同伴 一郎", "a1@example.com"), ("同伴 二郎", "a2@example.com")]).await;
    s.sb.hold_webhooks();
    let declined =
        pay_on_stripe(&url, &[("method", "card"), ("card", "4000 0000 0000 0002"), ("email", "a@example.com")]).await;
    assert_eq!(declined.status().as_u16(), 200);
    assert!(declined.text().await.unwrap().contains("カードが拒否されました"), "a declined card can try again");
    let paid =
        pay_on_stripe(&url, &[("method", "card"), ("card", "4242 4242 4242 4242"), ("email", "a@example.com")]).await;
    assert_eq!(paid.status().as_u16(), 303);
    let back = location(&paid);
    let path = back.split_once("127.0.0.1").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let r = s.t.client().get(&path).await;
    assert_eq!(r.status, 303);
    let mine = r.location.unwrap();
    assert!(mine.ends_with("?confirming=1"), "{mine}");
    assert_eq!(s.status_of(&mine).await, "申込完了", "decided on the return: Stripe already knew");
    // 領収書: addressed as the buyer asks, tax shown as included, the organizer's number.
    let access = mine.trim_start_matches("/a/").split('?').next().unwrap().to_string();
    let page = s.t.client().get(&mine).await.text;
    assert!(page.contains(&format!("/a/{access}/receipt")), "{page}");
    let receipt = s.t.client().get(&format!("/a/{access}/receipt?atena=株式会社テスト")).await.text;
    for want in [
        "領収書",
        "株式会社テスト",
        "¥9,000-",
        "内消費税等 10% ¥818",
        "有料セミナー",
        "T1234567890123",
        "東京都千代田区丸の内1-1-1",
    ] {
        assert!(receipt.contains(want), "{want}: {receipt}");
    }
    s.sb.release_webhooks();
    eventually(10, "the webhook stored", || async { !stored(&s.t, s.me).await.is_empty() }).await;
    s.t.run_jobs().await;
    s.t.run_jobs().await;
    for who in ["a@example.com", "a1@example.com", "a2@example.com"] {
        assert_eq!(s.mails_to(who).await.len(), 1, "{who}: one mail");
        assert_eq!(s.registered(who), 1, "{who}: registered at Zoom once");
    }

    // B: the webhook first, then the return.
    let url = s.apply("b@example.com", &[]).await;
    let paid =
        pay_on_stripe(&url, &[("method", "card"), ("card", "4242424242424242"), ("email", "b@example.com")]).await;
    let back = location(&paid);
    eventually(10, "B's webhook stored", || async { stored(&s.t, s.me).await.len() == 2 }).await;
    s.t.run_jobs().await;
    s.t.run_jobs().await;
    let path = back.split_once("127.0.0.1").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let mine = s.t.client().get(&path).await.location.unwrap();
    assert_eq!(s.status_of(&mine).await, "申込完了");
    // The same webhook three times more, at once: still one completion and one mail.
    let (event_id, _) = stored(&s.t, s.me).await.pop().unwrap();
    let url = format!("{}/stripe/webhook/{}", s.t.app.config.http.public_url, s.me.0);
    let (body, header) = s.sb.signed_event(&event_id, &url).unwrap();
    let raw = crate::helpers::http().build().unwrap();
    let mut sends = Vec::new();
    for _ in 0..3 {
        let (raw, url, body, header) = (raw.clone(), url.clone(), body.clone(), header.clone());
        sends.push(tokio::spawn(async move {
            raw.post(url).header("stripe-signature", header).body(body).send().await.unwrap().status().as_u16()
        }));
    }
    for h in sends {
        assert_eq!(h.await.unwrap(), 200);
    }
    s.t.run_jobs().await;
    assert_eq!(s.mails_to("b@example.com").await.len(), 1);
    assert_eq!(s.registered("b@example.com"), 1);
    s.t.assert_no_jobs_left().await;
    contract(&s.sb);
    let _ = &s.organizer;
}

/// Konbini: the voucher holds the seat and the page shows how to pay; paid at the store two days
/// later completes the application; a voucher left to lapse releases the seat and mails the person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn konbini_vouchers_hold_the_seat_until_paid_or_lapsed() {
    let s = shop().await;
    let url = s.apply("k@example.com", &[("同伴 花子", "k1@example.com")]).await;
    let took = pay_on_stripe(&url, &[("method", "konbini"), ("email", "k@example.com")]).await;
    assert_eq!(took.status().as_u16(), 303);
    let back = location(&took);
    let path = back.split_once("127.0.0.1").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let mine = s.t.client().get(&path).await.location.unwrap();
    let page = s.t.client().get(&mine).await.text;
    assert!(
        page.contains("コンビニでのお支払いをお待ちしています") && page.contains("id=\"konbini-deadline\""),
        "{page}"
    );
    assert!(page.contains("23:59"), "the deadline is the end of a day in Japan: {page}");
    assert_eq!(s.status_of(&mine).await, "入金待ち");
    s.t.run_jobs().await;
    let mail = {
        let mut c = s.t.app.store.read().await.unwrap();
        let all = tsunagu_store::mails::list_for_account(&mut c, s.me, 50).await.unwrap();
        all.into_iter().find(|m| m.to_address == "k@example.com").expect("a mail with how to pay")
    };
    assert!(
        mail.body_text.contains("お支払い期限")
            && mail.body_text.contains("23:59")
            && mail.body_text.contains("/v/pi_"),
        "{}",
        mail.body_text
    );
    let pi = s.sb.payments().into_iter().find(|p| p.method.as_deref() == Some("konbini")).unwrap().payment_intent;
    // Before it is paid, a companion alone cannot be cancelled: the voucher's amount is fixed.
    let k = s.last_application().await;
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    let k1 = s.companion_of(k).await;
    let path = format!("/events/{}/applications/{k}/people/{k1}/cancel", s.event);
    assert!(!page.contains(&format!("action=\"{path}\"")), "no ［この方をキャンセル］ before the payment");
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[]).await.status, 303);
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("お支払い前のお申し込みでは、同伴者だけをキャンセルできません"), "{page}");
    assert_eq!(s.app_status(k).await, "awaiting_payment");
    // Two days later, paid at the store.
    s.sb.advance(Duration::from_secs(2 * 86_400));
    s.t.clock.advance(2 * 86_400_000);
    eventually(10, "the voucher's event handled", || async {
        s.t.run_jobs().await;
        stored(&s.t, s.me).await.len() == 1
    })
    .await;
    assert!(s.sb.paid_at_store(&pi));
    eventually(10, "paid at the store", || async {
        s.t.run_jobs().await;
        s.status_of(&mine).await == "申込完了"
    })
    .await;
    s.t.run_jobs().await;
    assert_eq!(s.mails_to("k@example.com").await.len(), 2, "how to pay, then the join mail");
    assert_eq!(s.mails_to("k1@example.com").await.len(), 1);
    assert_eq!((s.registered("k@example.com"), s.registered("k1@example.com")), (1, 1), "both registered at Zoom once");

    // Another voucher left to lapse: the seat returns and the person is told.
    let seats = |page: &str| page.split("残席 ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
    let before = seats(&s.t.client().get(&format!("/e/{}/apply", s.key)).await.text);
    let url = s.apply("x@example.com", &[]).await;
    let took = pay_on_stripe(&url, &[("method", "konbini"), ("email", "x@example.com")]).await;
    let back = location(&took);
    let path = back.split_once("127.0.0.1").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let mine = s.t.client().get(&path).await.location.unwrap();
    let held = seats(&s.t.client().get(&format!("/e/{}/apply", s.key)).await.text);
    assert_ne!(before, held, "the voucher holds a seat");
    let pi = s.sb.payments().into_iter().rfind(|p| p.status == "requires_action").unwrap().payment_intent;
    // The mail with how to pay goes out first (a voucher that lapses before it is sent gets none).
    eventually(10, "the mail with how to pay", || async {
        s.t.run_jobs().await;
        s.mails_to("x@example.com").await.len() == 1
    })
    .await;
    assert!(s.sb.let_voucher_expire(&pi));
    eventually(10, "the lapse handled", || async {
        s.t.run_jobs().await;
        s.status_of(&mine).await == "キャンセル"
    })
    .await;
    s.t.run_jobs().await;
    let page = s.t.client().get(&mine).await.text;
    assert!(page.contains("お支払いの期限を過ぎたため"), "{page}");
    assert_eq!(seats(&s.t.client().get(&format!("/e/{}/apply", s.key)).await.text), before, "the seat returned");
    eventually(10, "told of the cancellation", || async {
        s.t.run_jobs().await;
        s.mails_to("x@example.com").await.len() >= 2
    })
    .await;
    s.settle().await;
    assert_eq!(s.mails_to("x@example.com").await.len(), 2, "how to pay, then told once of the cancellation");
    assert_eq!(s.registered("x@example.com"), 0, "a lapsed voucher is never registered at Zoom");
    let mail = s.bodies_to("x@example.com").await.pop().unwrap();
    assert!(
        mail.contains("までにお支払いを確認できなかったため") && !mail.contains("参加URLは使えなくなりました"),
        "the lapse is the reason, and no URL was ever sent: {mail}"
    );

    // A voucher paid at the store after the person cancelled: no seat, and all of it goes back.
    let url = s.apply("late@example.com", &[]).await;
    let took = pay_on_stripe(&url, &[("method", "konbini"), ("email", "late@example.com")]).await;
    let back = location(&took);
    let path = back.split_once("127.0.0.1").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let mine = s.t.client().get(&path).await.location.unwrap();
    let mine = mine.split('?').next().unwrap().to_string();
    let late = s.last_application().await;
    s.settle().await;
    let p = s.t.client();
    assert_eq!(p.submit(&mine, &format!("{mine}/cancel"), &[]).await.status, 303);
    assert_eq!(s.app_status(late).await, "cancelled");
    let text = p.get(&mine).await.text;
    assert!(text.contains("コンビニでのお支払いはしないでください"), "the open voucher is not to be paid: {text}");
    s.settle().await;
    let mail = s.bodies_to("late@example.com").await.pop().unwrap();
    assert!(mail.contains("コンビニでのお支払いはしないでください"), "{mail}");
    let pi = s.sb.payments().into_iter().rfind(|p| p.status == "requires_action").unwrap().payment_intent;
    assert!(s.sb.paid_at_store(&pi), "Stripe still takes the voucher");
    eventually(10, "the late payment refunded", || async {
        s.t.run_jobs().await;
        s.sb.refunds().iter().any(|r| r.payment_intent == pi)
    })
    .await;
    s.settle().await;
    let refunds: Vec<_> = s.sb.refunds().into_iter().filter(|r| r.payment_intent == pi).collect();
    assert_eq!(refunds.len(), 1, "refunded once");
    assert_eq!(refunds[0].amount, 3000, "in full");
    assert_eq!(s.app_status(late).await, "cancelled", "the cancellation stands");
    assert_eq!(s.registered("late@example.com"), 0);
    let subjects = s.mails_to("late@example.com").await;
    assert_eq!(subjects.len(), 3, "how to pay, the cancellation, then the refund; no join URL: {subjects:?}");
    let mail = s.bodies_to("late@example.com").await.pop().unwrap();
    assert!(
        mail.contains("お申し込みのキャンセル後に、お支払い（3,000円）を確認しました")
            && mail.contains("口座情報をご入力ください"),
        "{mail}"
    );
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("返金手続き中（購入者の口座情報の入力待ち）: 3,000円"), "{page}");
    s.t.assert_no_jobs_left().await;
    contract(&s.sb);
}

/// NOTES §5.7: a webhook that never arrives. The reconciliation sweep finds the event in
/// Stripe's list and the order is fulfilled once, like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webhook_is_found_by_reconciliation() {
    let s = shop().await;
    let url = s.apply("lost@example.com", &[]).await;
    s.sb.hold_webhooks();
    let paid =
        pay_on_stripe(&url, &[("method", "card"), ("card", "4242424242424242"), ("email", "lost@example.com")]).await;
    assert_eq!(paid.status().as_u16(), 303, "paid, and the tab closed before coming back");
    assert_eq!(s.sb.drop_held_webhooks(), 1, "the webhook is lost");
    assert!(stored(&s.t, s.me).await.is_empty());
    assert_eq!(tsunagu::payments::reconcile::account(&s.t.app, s.me).await.unwrap(), 1);
    assert_eq!(tsunagu::payments::reconcile::account(&s.t.app, s.me).await.unwrap(), 0, "found once");
    s.t.run_jobs().await;
    s.t.run_jobs().await;
    assert_eq!(s.mails_to("lost@example.com").await.len(), 1);
    assert_eq!(s.registered("lost@example.com"), 1);
    let mine = {
        let mut c = s.t.app.store.read().await.unwrap();
        let a: String = sqlx::query_scalar("SELECT status FROM applications ORDER BY id DESC LIMIT 1")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        a
    };
    assert_eq!(mine, "completed");
    s.t.assert_no_jobs_left().await;
}

impl Shop {
    /// Apply and pay by card, coming back to the page; returns the application's id.
    async fn paid_by_card(&self, email: &str, companions: &[(&str, &str)]) -> i64 {
        let url = self.apply(email, companions).await;
        let paid = pay_on_stripe(&url, &[("method", "card"), ("card", "4242424242424242"), ("email", email)]).await;
        let back = location(&paid);
        let path = back.split_once("127.0.0.1").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
        let mine = self.t.client().get(&path).await.location.unwrap();
        assert_eq!(self.status_of(&mine).await, "申込完了");
        self.last_application().await
    }

    /// The first companion of an application.
    async fn companion_of(&self, application: i64) -> i64 {
        let mut c = self.t.app.store.read().await.unwrap();
        sqlx::query_scalar("SELECT id FROM attendees WHERE application_id = $1 AND position = 1")
            .bind(application)
            .fetch_one(&mut *c)
            .await
            .unwrap()
    }

    /// The application's own page (`/a/{access}`).
    async fn page_of(&self, application: i64) -> String {
        let access: String = {
            let mut c = self.t.app.store.read().await.unwrap();
            sqlx::query_scalar("SELECT access_key FROM applications WHERE id = $1")
                .bind(application)
                .fetch_one(&mut *c)
                .await
                .unwrap()
        };
        format!("/a/{access}")
    }

    /// The bodies of the mails sent to `email`, oldest first.
    async fn bodies_to(&self, email: &str) -> Vec<String> {
        let mut c = self.t.app.store.read().await.unwrap();
        let all = tsunagu_store::mails::list_for_account(&mut c, self.me, 500).await.unwrap();
        let mut mine: Vec<_> = all.into_iter().filter(|m| m.to_address == email).collect();
        mine.sort_by_key(|m| m.id);
        mine.into_iter().map(|m| m.body_text).collect()
    }

    pub(crate) async fn last_application(&self) -> i64 {
        let mut c = self.t.app.store.read().await.unwrap();
        sqlx::query_scalar("SELECT MAX(id) FROM applications").fetch_one(&mut *c).await.unwrap()
    }

    async fn pi_of(&self, application: i64) -> String {
        let mut c = self.t.app.store.read().await.unwrap();
        tsunagu_store::stripe::order(&mut c, application).await.unwrap().unwrap().payment_intent.unwrap()
    }

    pub(crate) async fn app_status(&self, application: i64) -> String {
        let mut c = self.t.app.store.read().await.unwrap();
        sqlx::query_scalar("SELECT status FROM applications WHERE id = $1")
            .bind(application)
            .fetch_one(&mut *c)
            .await
            .unwrap()
    }

    async fn settle(&self) {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            self.t.run_jobs().await;
        }
    }
}

/// Refunds: the organizer cancels one companion keeping a キャンセル料, and the rest is refunded at
/// Stripe once; a refund in full made in Stripe's dashboard cancels the application and mails each
/// person once; a partial one there cancels nothing; a konbini refund waits for the buyer's bank
/// details, and the event page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_from_the_console_and_from_stripes_dashboard() {
    let s = shop().await;
    let a = s.paid_by_card("ra@example.com", &[("同伴 一郎", "ra1@example.com")]).await;
    s.settle().await;
    let companion = s.companion_of(a).await;
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(
        page.contains("お支払い: カード") && page.contains("決済完了") && page.contains("キャンセル料（円）"),
        "{page}"
    );
    // Paid: the participant's page offers no cancel button, and says whom to ask.
    let mine = s.page_of(a).await;
    let text = s.t.client().get(&mine).await.text;
    assert!(
        text.contains("お支払い済みのため、このページからはキャンセルできません")
            && text.contains("info@example.com")
            && !text.contains("id=\"cancel-application\""),
        "{text}"
    );
    // A キャンセル料 left blank is refused, never read as 0.
    let path = format!("/events/{}/applications/{a}/people/{companion}/cancel", s.event);
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "")]).await.status, 303);
    assert!(s.organizer.get(&format!("/events/{}", s.event)).await.text.contains("キャンセル料を入力してください"));
    assert_eq!(s.app_status(a).await, "completed");
    let path = format!("/events/{}/applications/{a}/people/{companion}/cancel", s.event);
    let too_much = s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "3001")]).await;
    assert_eq!(too_much.status, 303);
    assert_eq!(s.app_status(a).await, "completed", "a キャンセル料 above the price cancels nothing");
    let r = s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "５００")]).await;
    assert_eq!(r.status, 303);
    s.settle().await;
    let refunds = s.sb.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].amount, refunds[0].status.as_str()), (2500, "succeeded"), "3,000 less the 500 fee");
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("返金済み: 2,500円（キャンセル料 500円）"), "{page}");
    assert_eq!(s.mails_to("ra1@example.com").await.len(), 2, "the join mail, then one cancellation mail");
    let told = s.bodies_to("ra@example.com").await;
    assert!(
        told.iter()
            .any(|m| m.contains("同伴者の 同伴 一郎 様のキャンセルにより、2,500円 を返金します（キャンセル料 500円）")),
        "the one who paid is told of the companion's refund: {told:?}"
    );
    let mut subjects = s.mails_to("ra@example.com").await;
    subjects.sort();
    assert_eq!(subjects, ["イベント参加URLのお知らせ", "返金のお知らせ"]);
    assert_eq!((s.registered("ra@example.com"), s.registered("ra1@example.com")), (1, 0), "the companion left Zoom");
    // The receipt: what was kept for the seat is a キャンセル料, outside consumption tax.
    let receipt = s.t.client().get(&format!("{mine}/receipt")).await.text;
    for want in [
        "¥3,500-",
        "内消費税等 10% ¥272",
        "うちキャンセル料 ¥500（上記の消費税等の計算に含めていません）",
        "参加費（懇親会つき・1名分）およびキャンセル料として",
    ] {
        assert!(receipt.contains(want), "{want}: {receipt}");
    }
    assert_eq!(s.app_status(a).await, "completed", "the representative still comes");
    // Then the whole application, with no キャンセル料: the 500 kept for the companion stays kept,
    // so 3,000 of the 6,000 paid goes back now, not 3,500.
    let path = format!("/events/{}/applications/{a}/cancel", s.event);
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "3001")]).await.status, 303);
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("キャンセル料は 0〜3,000 円の数字で入力してください"), "{page}");
    assert_eq!(s.app_status(a).await, "completed");
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "0")]).await.status, 303);
    s.settle().await;
    let pi = s.pi_of(a).await;
    let mut amounts: Vec<i64> = s.sb.refunds().iter().filter(|r| r.payment_intent == pi).map(|r| r.amount).collect();
    amounts.sort();
    assert_eq!(amounts, [2500, 3000], "the companion's キャンセル料 is not refunded later");
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("返金済み: 3,000円") && page.contains("返金済み: 2,500円（キャンセル料 500円）"), "{page}");
    // A form sent again for the cancelled application refunds nothing more.
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "0")]).await.status, 303);
    s.settle().await;
    assert_eq!(s.sb.refunds().iter().filter(|r| r.payment_intent == pi).count(), 2);
    let text = s.t.client().get(&mine).await.text;
    assert!(text.contains("お支払いいただいた 6,000円 のうち 5,500円 を返金します（キャンセル料 500円）"), "{text}");
    let mail = s.bodies_to("ra@example.com").await.pop().unwrap();
    assert!(
        mail.contains("■ お支払いについて") && mail.contains("5,500円 を返金します") && mail.contains("カードに返金"),
        "{mail}"
    );

    // Refunded in full in Stripe's dashboard: the application is cancelled, everyone told once.
    let b = s.paid_by_card("rb@example.com", &[("同伴 二郎", "rb1@example.com")]).await;
    s.settle().await;
    s.sb.refund_in_dashboard(&s.pi_of(b).await, None).unwrap();
    eventually(10, "the dashboard refund handled", || async {
        s.t.run_jobs().await;
        s.app_status(b).await == "cancelled"
    })
    .await;
    s.settle().await;
    for who in ["rb@example.com", "rb1@example.com"] {
        let subjects = s.mails_to(who).await;
        assert_eq!(subjects.len(), 2, "{who}: the join mail and one cancellation mail: {subjects:?}");
        assert_eq!(s.registered(who), 0, "{who}: removed from Zoom");
    }
    let mail = s.bodies_to("rb@example.com").await.pop().unwrap();
    assert!(mail.contains("お支払いいただいた全額（6,000円）を返金します"), "{mail}");
    let companion_mail = s.bodies_to("rb1@example.com").await.pop().unwrap();
    assert!(!companion_mail.contains("返金"), "the money is told to whoever paid: {companion_mail}");
    let receipt = s.t.client().get(&format!("{}/receipt", s.page_of(b).await)).await.text;
    assert!(receipt.contains("全額を返金（または返金の手続き中）のため、領収書はありません"), "{receipt}");
    // A キャンセル料 of the whole price, twice: nothing goes to Stripe, and both are kept.
    let f = s.paid_by_card("rf@example.com", &[("同伴 四郎", "rf1@example.com")]).await;
    s.settle().await;
    let companion = s.companion_of(f).await;
    let path = format!("/events/{}/applications/{f}/people/{companion}/cancel", s.event);
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "3000")]).await.status, 303);
    let path = format!("/events/{}/applications/{f}/cancel", s.event);
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "3,000円")]).await.status, 303);
    s.settle().await;
    assert_eq!(s.app_status(f).await, "cancelled");
    let fpi = s.pi_of(f).await;
    assert!(s.sb.refunds().iter().all(|r| r.payment_intent != fpi), "nothing refunded");
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert_eq!(page.matches("返金なし（キャンセル料 3,000円）").count(), 2, "{page}");
    let mail = s.bodies_to("rf@example.com").await.pop().unwrap();
    assert!(mail.contains("お支払いいただいた 6,000円 はキャンセル料に充てるため、返金はありません"), "{mail}");

    // Partly refunded there: recorded, nothing cancelled.
    let c = s.paid_by_card("rc@example.com", &[]).await;
    s.settle().await;
    s.sb.refund_in_dashboard(&s.pi_of(c).await, Some(1000)).unwrap();
    s.settle().await;
    assert_eq!(s.app_status(c).await, "completed");
    assert_eq!(s.registered("rc@example.com"), 1, "a partial refund keeps the seat at Zoom");
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("返金済み: 1,000円"), "{page}");

    // Konbini: the refund waits for the buyer's bank details.
    let url = s.apply("rk@example.com", &[]).await;
    let took = pay_on_stripe(&url, &[("method", "konbini"), ("email", "rk@example.com")]).await;
    assert_eq!(took.status().as_u16(), 303);
    s.settle().await;
    let k = s.last_application().await;
    let pi = s.sb.payments().into_iter().find(|p| p.status == "requires_action").unwrap().payment_intent;
    assert!(s.sb.paid_at_store(&pi));
    eventually(10, "paid at the store", || async {
        s.t.run_jobs().await;
        s.app_status(k).await == "completed"
    })
    .await;
    let path = format!("/events/{}/applications/{k}/cancel", s.event);
    assert_eq!(s.organizer.submit(&format!("/events/{}", s.event), &path, &[("fee", "0")]).await.status, 303);
    s.settle().await;
    let page = s.organizer.get(&format!("/events/{}", s.event)).await.text;
    assert!(page.contains("返金手続き中（購入者の口座情報の入力待ち）: 3,000円"), "{page}");
    assert_eq!(s.registered("rk@example.com"), 0, "cancelled: removed from Zoom while the refund waits");
    let re = s.sb.refunds().into_iter().find(|r| r.status == "requires_action").unwrap().id;
    assert!(s.sb.complete_refund(&re));
    eventually(10, "the konbini refund settled", || async {
        s.t.run_jobs().await;
        s.organizer.get(&format!("/events/{}", s.event)).await.text.contains("返金済み: 3,000円")
    })
    .await;
    assert_eq!(s.sb.refunds().len(), 5, "each refund made once");
    s.settle().await;
    s.t.assert_no_jobs_left().await;
    contract(&s.sb);
}
