//! The Stripe client against the Stripe sandbox. Every request the client sends, every answer
//! and every webhook the sandbox sends is checked against the official schema.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use tsunagu_contract::Exchange;
use tsunagu_sandbox::stripe::{Faults, SandboxAccount, StripeSandbox};
use tsunagu_stripe::client::{Caller, CheckoutRequest, LineItem, Permission, RefundRequest};
use tsunagu_stripe::webhook;
use tsunagu_stripe::{ApiKey, ClientConfig, StripeClient, StripeError};

struct World {
    sb: StripeSandbox,
    base: String,
    client: StripeClient,
    caller: Caller,
    _task: tokio::task::JoinHandle<()>,
}

async fn world(konbini: bool) -> World {
    let sb = StripeSandbox::new();
    let secret = sb.add_account(SandboxAccount {
        id: "acct_1Tsunagu".into(),
        display_name: "つなぐセミナー".into(),
        email: "owner@example.com".into(),
        konbini,
    });
    let (base, task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    sb.set_base(&base);
    let mut cfg = ClientConfig::new(&base);
    cfg.backoff_base = Duration::from_millis(20);
    cfg.timeout = Duration::from_millis(800);
    cfg.max_attempts = 8;
    World {
        sb,
        base,
        client: StripeClient::new(cfg),
        caller: Caller { key: ApiKey::parse(&secret).unwrap(), owner: "org-1".into() },
        _task: task,
    }
}

fn order(reference: &str, amount: i64, methods: &[&str]) -> CheckoutRequest {
    CheckoutRequest {
        order_ref: reference.into(),
        metadata: vec![("event".into(), "42".into())],
        line_items: vec![LineItem { name: "一般チケット".into(), unit_amount: amount, quantity: 1 }],
        methods: methods.iter().map(|m| m.to_string()).collect(),
        konbini_expires_after_days: methods.contains(&"konbini").then_some(3),
        customer_email: Some("buyer@example.com".into()),
        success_url: "https://tsunagu.example/e/k/paid?session={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "https://tsunagu.example/e/k/apply".into(),
        expires_at: None,
    }
}

fn contract(sb: &StripeSandbox) -> usize {
    let ex = sb.exchanges();
    let n = tsunagu_contract::stripe::assert_all(ex.iter().map(|e| Exchange {
        method: &e.method,
        path: &e.path,
        status: e.status,
        request_body: &e.request_body,
        response_body: &e.response_body,
    }));
    for e in &ex {
        let version = e.headers.iter().find(|(k, _)| k == "stripe-version").map(|(_, v)| v.as_str());
        assert_eq!(version, Some(tsunagu_stripe::API_VERSION), "{} {} without the pinned version", e.method, e.path);
        if e.method == "POST" && !e.request_body.is_empty() {
            assert!(e.headers.iter().any(|(k, _)| k == "idempotency-key"), "{} {} without a key", e.method, e.path);
        }
    }
    n
}

/// A webhook receiver that checks each signature with our own verifier.
/// It reads the time from the sandbox, whose clock the tests move (as the app's clock is moved
/// with it in the app's tests).
#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    got: Arc<Mutex<Vec<(String, bool)>>>,
    sb: StripeSandbox,
}

async fn receiver(sb: &StripeSandbox) -> (Receiver, String) {
    let r = Receiver { secret: Arc::default(), got: Arc::default(), sb: sb.clone() };
    let r2 = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = r2.clone();
            async move {
                let secret = r.secret.lock().unwrap().clone();
                let sig = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
                let now = r.sb.now();
                let ok = webhook::verify(sig, &body, &[&secret], now).is_ok();
                r.got.lock().unwrap().push((String::from_utf8_lossy(&body).into_owned(), ok));
                if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST }
            }
        }),
    );
    let (base, _task) = tsunagu_sandbox::serve(app).await.unwrap();
    (r, format!("{base}/hook"))
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn card_checkout_webhooks_events_and_refunds_follow_the_schema() {
    let w = world(true).await;
    let (rx, url) = receiver(&w.sb).await;
    // Set up as the settings screen does: the key is checked, the endpoint created with the
    // pinned version and the events of NOTES §3, its secret shown once.
    let check = w.client.check_key(&w.caller).await.unwrap();
    assert!(check.missing.is_empty());
    let account = check.account.unwrap();
    assert!(account.can_take("card") && account.can_take("konbini"));
    let ep = w.client.create_webhook_endpoint(&w.caller, &url, "we-org-1").await.unwrap();
    let secret = ep.secret.clone().expect("the secret comes with the creation");
    assert!(secret.starts_with("whsec_"));
    assert_eq!(ep.api_version.as_deref(), Some("2020-08-27"));
    assert_eq!(ep.enabled_events.len(), 6);
    *rx.secret.lock().unwrap() = secret;
    let listed = w.client.webhook_endpoints(&w.caller).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].secret, None, "a listed endpoint has no secret");

    let s =
        w.client.create_checkout_session(&w.caller, &order("o-1", 3000, &["card", "konbini"]), "cs-o-1").await.unwrap();
    assert_eq!((s.payment_status.as_str(), s.status.as_deref()), ("unpaid", Some("open")));
    assert_eq!(s.amount_total, Some(3000), "¥3,000 is 3000: JPY has no minor unit");
    let url_to_pay = s.url.clone().unwrap();
    assert!(url_to_pay.starts_with(&w.base));
    w.sb.pay_card(&s.id).unwrap();
    let paid = w.client.checkout_session(&w.caller, &s.id).await.unwrap();
    assert_eq!(paid.payment_status, "paid");
    let pi = w.client.payment_intent(&w.caller, paid.payment_intent.as_deref().unwrap()).await.unwrap();
    assert_eq!(pi.status, "succeeded");
    assert_eq!(pi.metadata.get("tsunagu_order").map(String::as_str), Some("o-1"), "the order rides on the payment too");
    wait_for("checkout.session.completed", || rx.got.lock().unwrap().len() == 1).await;

    // A partial refund (a cancellation fee kept), then the rest.
    let r1 = RefundRequest {
        payment_intent: pi.id.clone(),
        amount: Some(2000),
        reason: Some("requested_by_customer".into()),
        metadata: vec![("tsunagu_order".into(), "o-1".into())],
    };
    let refund = w.client.create_refund(&w.caller, &r1, "re-o-1-1").await.unwrap();
    assert_eq!((refund.amount, refund.status.as_deref()), (2000, Some("succeeded")));
    let too_much = RefundRequest { amount: Some(1001), ..r1.clone() };
    let err = w.client.create_refund(&w.caller, &too_much, "re-o-1-2").await.unwrap_err();
    assert!(matches!(err, StripeError::Invalid { .. }), "{err:?}");
    let rest = RefundRequest { amount: None, ..r1.clone() };
    assert_eq!(w.client.create_refund(&w.caller, &rest, "re-o-1-3").await.unwrap().amount, 1000);
    assert_eq!(w.client.refund(&w.caller, &refund.id).await.unwrap().id, refund.id);
    wait_for("two charge.refunded", || rx.got.lock().unwrap().len() == 3).await;

    let events = w.client.events(&w.caller, 0, None).await.unwrap();
    let kinds: Vec<&str> = events.data.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["charge.refunded", "charge.refunded", "checkout.session.completed"], "newest first");
    let got = rx.got.lock().unwrap().clone();
    assert!(got.iter().all(|(_, ok)| *ok), "every delivery verifies");
    for (body, _) in &got {
        let errs = tsunagu_contract::stripe::event_errors(body);
        assert!(errs.is_empty(), "{errs:?}\n{body}");
    }
    let n = contract(&w.sb);
    assert!(n >= 10, "{n}");
}

#[tokio::test]
async fn konbini_vouchers_are_paid_or_lapse_and_their_refunds_wait_for_bank_details() {
    let w = world(true).await;
    let (rx, url) = receiver(&w.sb).await;
    let ep = w.client.create_webhook_endpoint(&w.caller, &url, "we").await.unwrap();
    *rx.secret.lock().unwrap() = ep.secret.unwrap();
    let a = w.client.create_checkout_session(&w.caller, &order("o-a", 3000, &["konbini"]), "a").await.unwrap();
    let pi = w.sb.take_voucher(&a.id, "a@example.com").unwrap();
    let s = w.client.checkout_session(&w.caller, &a.id).await.unwrap();
    assert_eq!(
        (s.status.as_deref(), s.payment_status.as_str()),
        (Some("complete"), "unpaid"),
        "a voucher is not a payment"
    );
    let intent = w.client.payment_intent(&w.caller, &pi).await.unwrap();
    assert_eq!(intent.status, "requires_action");
    let details = intent.next_action.unwrap().konbini_display_details.unwrap();
    assert!(details.hosted_voucher_url.unwrap().starts_with(&w.base));
    let deadline = details.expires_at;
    // Each webhook is let in before the clock moves: a signature is checked against the time.
    let delivered = |n: usize| {
        let got = rx.got.clone();
        async move { wait_for("webhooks", || got.lock().unwrap().len() == n).await }
    };
    delivered(1).await;
    // 23:59:59 JST: one second before a JST midnight.
    assert_eq!((deadline + 1 + 9 * 3600) % 86_400, 0, "{deadline}");
    w.sb.advance(Duration::from_secs(2 * 86_400));
    assert!(w.sb.paid_at_store(&pi));
    delivered(2).await;
    assert_eq!(w.client.checkout_session(&w.caller, &a.id).await.unwrap().payment_status, "paid");

    let b = w.client.create_checkout_session(&w.caller, &order("o-b", 3000, &["konbini"]), "b").await.unwrap();
    let pi_b = w.sb.take_voucher(&b.id, "b@example.com").unwrap();
    delivered(3).await;
    w.sb.advance(Duration::from_secs(4 * 86_400));
    assert!(!w.sb.paid_at_store(&pi_b), "a lapsed voucher cannot be paid");
    assert_eq!(w.client.payment_intent(&w.caller, &pi_b).await.unwrap().status, "canceled");

    delivered(4).await;
    let c = w.client.create_checkout_session(&w.caller, &order("o-c", 3000, &["card"]), "c").await.unwrap();
    w.sb.advance(Duration::from_secs(25 * 3600));
    assert_eq!(w.client.checkout_session(&w.caller, &c.id).await.unwrap().status.as_deref(), Some("expired"));

    let r = RefundRequest { payment_intent: pi.clone(), amount: None, reason: None, metadata: vec![] };
    let refund = w.client.create_refund(&w.caller, &r, "re-a").await.unwrap();
    assert_eq!(refund.status.as_deref(), Some("requires_action"), "konbini refunds wait for the buyer's bank details");
    assert!(w.sb.complete_refund(&refund.id));
    assert_eq!(w.client.refund(&w.caller, &refund.id).await.unwrap().status.as_deref(), Some("succeeded"));

    let want = [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "charge.refund.updated",
        "charge.refund.updated",
        "charge.refunded",
    ];
    let kinds: Vec<String> = w.sb.events_of("acct_1Tsunagu").into_iter().map(|(_, k)| k).collect();
    assert_eq!(kinds, want);
    wait_for("every webhook", || rx.got.lock().unwrap().len() == want.len()).await;
    for (body, ok) in rx.got.lock().unwrap().iter() {
        assert!(*ok);
        let errs = tsunagu_contract::stripe::event_errors(body);
        assert!(errs.is_empty(), "{errs:?}\n{body}");
    }
    contract(&w.sb);
}

#[tokio::test]
async fn idempotency_keys_replay_or_refuse_and_faults_never_make_two_sessions() {
    let w = world(false).await;
    let first = w.client.create_checkout_session(&w.caller, &order("o-1", 3000, &["card"]), "k-1").await.unwrap();
    let again = w.client.create_checkout_session(&w.caller, &order("o-1", 3000, &["card"]), "k-1").await.unwrap();
    assert_eq!(first.id, again.id, "the same key and parameters: the first answer again");
    let err = w.client.create_checkout_session(&w.caller, &order("o-1", 4000, &["card"]), "k-1").await.unwrap_err();
    assert!(matches!(err, StripeError::Idempotency { .. }), "{err:?}");
    assert!(w.sb.stats().idempotent_replays >= 1);

    // Konbini is not active on this account, and the minimums hold.
    let err = w.client.create_checkout_session(&w.caller, &order("o-2", 3000, &["konbini"]), "k-2").await.unwrap_err();
    assert!(matches!(&err, StripeError::Invalid { param: Some(p), .. } if p == "payment_method_types"), "{err:?}");
    let err = w.client.create_checkout_session(&w.caller, &order("o-3", 49, &["card"]), "k-3").await.unwrap_err();
    assert!(matches!(&err, StripeError::Invalid { code: Some(c), .. } if c == "amount_too_small"), "{err:?}");

    // 429s, 500s before the work and answers lost after it: every call still makes one session.
    w.sb.set_faults(Faults {
        rate_429: 0.2,
        rate_500: 0.2,
        rate_timeout: 0.15,
        timeout_hold: Duration::from_millis(1500),
        seed: 7,
        ..Faults::default()
    });
    for i in 0..20 {
        w.client
            .create_checkout_session(&w.caller, &order(&format!("f-{i}"), 3000, &["card"]), &format!("f-{i}"))
            .await
            .unwrap();
    }
    let stats = w.sb.stats();
    assert!(stats.injected_429 + stats.injected_500 + stats.injected_timeouts >= 5, "{stats:?}");
    let made: Vec<_> =
        w.sb.sessions().into_iter().filter(|(_, r)| r.as_deref().is_some_and(|r| r.starts_with("f-"))).collect();
    assert_eq!(made.len(), 20, "one session per order, whatever was retried");
    w.sb.set_faults(Faults::default());
    contract(&w.sb);
}

#[tokio::test]
async fn keys_are_checked_and_restricted_keys_say_what_they_lack() {
    let w = world(true).await;
    let rk =
        w.sb.add_restricted_key("acct_1Tsunagu", &["rak_checkout_session_write", "rak_charge_read", "rak_event_read"]);
    let c = Caller { key: ApiKey::parse(&rk).unwrap(), owner: "org-1".into() };
    let check = w.client.check_key(&c).await.unwrap();
    assert_eq!(check.account, None, "this key may not read the account");
    assert_eq!(
        check.missing,
        [Permission::RefundsWrite, Permission::WebhookEndpointsWrite, Permission::PaymentIntentsRead]
    );
    let full = w.sb.add_restricted_key(
        "acct_1Tsunagu",
        &[
            "rak_checkout_session_write",
            "rak_refund_write",
            "rak_webhook_write",
            "rak_payment_intent_read",
            "rak_charge_read",
            "rak_event_read",
        ],
    );
    let c = Caller { key: ApiKey::parse(&full).unwrap(), owner: "org-1".into() };
    assert!(w.client.check_key(&c).await.unwrap().missing.is_empty());
    assert_eq!(w.sb.sessions().len(), 0, "the probes changed nothing");

    w.sb.revoke_key(w.caller.key.expose());
    let err = w.client.check_key(&w.caller).await.unwrap_err();
    assert!(matches!(err, StripeError::BadKey { .. }), "{err:?}");
    assert!(err.message_ja().contains("APIキー"));
    contract(&w.sb);
}

#[tokio::test]
async fn the_test_mode_limit_is_kept_by_the_client() {
    let w = world(false).await;
    let client = Arc::new(w.client);
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (client, caller) = (client.clone(), w.caller.clone());
        tasks.push(tokio::spawn(async move { client.account(&caller).await.map(|_| ()) }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = w.sb.stats();
    assert_eq!(stats.rate_429, 0, "{stats:?}");
    assert!(stats.max_in_any_second["acct_1Tsunagu"] <= 25, "{stats:?}");
}

/// The sandbox follows the schema where our client is stricter than it: a session without
/// `payment_method_types` (optional in 2020-08-27) offers cards.
#[tokio::test]
async fn a_session_without_payment_method_types_offers_cards() {
    let w = world(false).await;
    let body = "mode=payment&success_url=https%3A%2F%2Fx.example%2Fok&cancel_url=https%3A%2F%2Fx.example%2Fno\
        &line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=jpy&line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=3000\
        &line_items%5B0%5D%5Bprice_data%5D%5Bproduct_data%5D%5Bname%5D=a&line_items%5B0%5D%5Bquantity%5D=1";
    let resp = tsunagu_stripe::client::http_client(Duration::from_secs(5))
        .post(format!("{}/v1/checkout/sessions", w.base))
        .bearer_auth(w.caller.key.expose())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["payment_method_types"], serde_json::json!(["card"]));
    let ex = w.sb.exchanges();
    tsunagu_contract::stripe::assert_all(ex.iter().map(|e| Exchange {
        method: &e.method,
        path: &e.path,
        status: e.status,
        request_body: &e.request_body,
        response_body: &e.response_body,
    }));
}
