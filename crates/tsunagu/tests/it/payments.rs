//! 基本設定 > 決済（Stripe） and the Stripe webhook intake, against the Stripe sandbox: a key is
//! checked and refused with a message saying what to do, Tsunagu creates its webhook endpoint
//! and seals the key and the signing secret, events are stored once however often they come,
//! and nothing badly signed or of another organizer is stored.

use std::time::Duration;

use tsunagu_contract::Exchange;
use tsunagu_sandbox::stripe::{SandboxAccount, StripeSandbox};
use tsunagu_stripe::client::{Caller, CheckoutRequest, LineItem};
use tsunagu_stripe::{ApiKey, webhook};

use crate::helpers::{TestApp, eventually, free_port};

fn account(id: &str, konbini: bool) -> SandboxAccount {
    SandboxAccount {
        id: id.into(), display_name: "つなぐセミナー".into(), email: "owner@example.com".into(), konbini
    }
}

async fn app_with_stripe(stripe_base: &str) -> TestApp {
    let port = free_port();
    TestApp::spawn_with(|c| {
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
    let ex = sb.exchanges();
    tsunagu_contract::stripe::assert_all(ex.iter().map(|e| Exchange {
        method: &e.method,
        path: &e.path,
        status: e.status,
        request_body: &e.request_body,
        response_body: &e.response_body,
    }));
    for d in sb.deliveries() {
        let errs = tsunagu_contract::stripe::event_errors(&d.body);
        assert!(errs.is_empty(), "{errs:?}");
    }
}
