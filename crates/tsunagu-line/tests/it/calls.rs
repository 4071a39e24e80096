//! Every call and error path of the Messaging API client against the sandbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tsunagu_line::client::{RetryKey, TokenKind};
use tsunagu_line::message::Message;
use tsunagu_line::{Channel, LineError};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_shared_renewed_and_refused_for_bad_secrets() {
    let l = Line::start(None, |_| {}).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, ch) = (l.client.clone(), l.ch.clone());
        tasks.push(tokio::spawn(async move { client.token(&ch).await.unwrap() }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    assert_eq!(l.sb.token_requests(), 1, "one token request for 50 tasks");
    let info = l.client.verify_token(&tokens[0]).await.unwrap();
    assert_eq!(info.client_id, CHANNEL);
    assert!(info.expires_in > 800, "stateless: 15 minutes");

    // Revoked on LINE's side: the 401 renews the token once and the call goes through.
    l.sb.revoke_tokens();
    l.client.bot_info(&l.ch).await.unwrap();
    assert_eq!(l.sb.token_requests(), 2);

    let wrong = Channel { secret: "nope".into(), ..channel() };
    let other = tsunagu_line::LineClient::new(l.client.config().clone());
    assert_eq!(other.bot_info(&wrong).await.unwrap_err(), LineError::BadChannelCredentials);

    // Short-lived v2 tokens (30 days) work the same way.
    let sl = Channel { token_kind: TokenKind::ShortLived, ..channel() };
    let t = other.token(&sl).await.unwrap();
    assert!(other.verify_token(&t).await.unwrap().expires_in > 2_500_000);
    l.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_friends_once_and_nobody_else() {
    let l = Line::start(Some(10), |_| {}).await;
    let friend = l.friend("友だち");
    let stranger = l.stranger("知らない人");
    let key = RetryKey::new(l.client.now_ms());
    let sent = l.client.push(&l.ch, &friend, &[Message::text("第1回のご案内")], &key).await.unwrap();
    assert_eq!(sent.message_ids.len(), 1);
    assert!(!sent.duplicate);
    assert_eq!(l.texts_of(&friend), vec!["第1回のご案内"]);

    // The same key again (a retry after a lost answer): LINE says 409, nothing is sent twice.
    let again = l.client.push(&l.ch, &friend, &[Message::text("第1回のご案内")], &key).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_ids, sent.message_ids, "push 409 carries the original sentMessages");
    assert_eq!(l.texts_of(&friend).len(), 1);

    // Not a friend, or blocked: 200 and nothing delivered, nothing counted.
    let s = l.client.push(&l.ch, &stranger, &[Message::text("x")], &RetryKey::new(l.client.now_ms())).await.unwrap();
    assert!(!s.duplicate);
    assert!(l.sb.received_by(&stranger).is_empty());
    l.sb.block(CHANNEL, &friend).await.ok();
    l.client.push(&l.ch, &friend, &[Message::text("ブロック後")], &RetryKey::new(l.client.now_ms())).await.unwrap();
    assert_eq!(l.texts_of(&friend).len(), 1);
    assert_eq!(l.sb.usage(CHANNEL), 1, "counted per recipient who received");

    // A retry key past its 24 hours is not used again (it could send twice).
    l.now.fetch_add(24 * 3_600_000, Ordering::SeqCst);
    assert_eq!(
        l.client.push(&l.ch, &friend, &[Message::text("古い")], &key).await.unwrap_err(),
        LineError::RetryKeyExpired
    );

    // A user id from another provider (not LINE's format here): 400 with LINE's words.
    let err = l.client.push(&l.ch, "Ubad", &[Message::text("x")], &RetryKey::new(l.client.now_ms())).await.unwrap_err();
    assert!(matches!(err, LineError::BadRequest { .. }), "{err:?}");

    // Invalid messages never leave: checked before sending.
    let before = l.sb.stats().requests;
    let err = l.client.push(&l.ch, &friend, &[Message::text("")], &RetryKey::new(l.client.now_ms())).await.unwrap_err();
    assert_eq!(err.code(), "line.message.text_empty");
    assert_eq!(l.sb.stats().requests, before);
    l.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_reply_quota_and_the_monthly_limit() {
    let l = Line::start(Some(6), |_| {}).await;
    let users: Vec<String> = (0..5).map(|i| l.friend(&format!("生徒{i}"))).collect();
    let key = RetryKey::new(l.client.now_ms());
    let msgs = [Message::text("一斉配信"), Message::text("2通目")];
    let sent = l.client.multicast(&l.ch, &users, &msgs, &key).await.unwrap();
    assert!(sent.message_ids.is_empty(), "multicast answers {{}}");
    for u in &users {
        assert_eq!(l.texts_of(u), vec!["一斉配信", "2通目"]);
    }
    assert_eq!(l.sb.usage(CHANNEL), 5, "5 recipients, whatever the number of bubbles");
    assert!(l.client.multicast(&l.ch, &users, &msgs, &key).await.unwrap().duplicate);
    let too_many: Vec<String> = (0..501).map(|_| users[0].clone()).collect();
    assert!(l.client.multicast(&l.ch, &too_many, &msgs, &RetryKey::new(l.client.now_ms())).await.is_err());

    // Reply: free, single-use.
    let token = l.sb.reply_token_for(CHANNEL, &users[0]);
    l.client.reply(&l.ch, &token, &[Message::text("ようこそ")]).await.unwrap();
    assert_eq!(l.sb.usage(CHANNEL), 5, "replies are free");
    let err = l.client.reply(&l.ch, &token, &[Message::text("もう一度")]).await.unwrap_err();
    assert!(matches!(err, LineError::BadRequest { .. }), "a reply token is single-use: {err:?}");

    assert_eq!(l.client.quota(&l.ch).await.unwrap().value, Some(6));
    assert_eq!(l.client.consumption(&l.ch).await.unwrap(), 5);
    // One more recipient fits, two do not: the monthly limit, not a rate limit.
    l.client.push(&l.ch, &users[1], &[Message::text("6通目")], &RetryKey::new(l.client.now_ms())).await.unwrap();
    let err = l.client.multicast(&l.ch, &users[..2], &msgs, &RetryKey::new(l.client.now_ms())).await.unwrap_err();
    assert_eq!(err, LineError::MonthlyLimit);
    assert!(!err.retryable());

    // An API the account is not entitled to: 403, reported once, not retried.
    l.sb.forbid(CHANNEL, "multicast");
    let before = l.sb.exchanges().len();
    let err = l.client.multicast(&l.ch, &users[..1], &msgs, &RetryKey::new(l.client.now_ms())).await.unwrap_err();
    assert!(matches!(err, LineError::Forbidden { .. }), "{err:?}");
    assert_eq!(err.code(), "line.forbidden");
    assert!(!err.retryable() && err.message_ja().contains("許可されていません"), "{err}");
    assert_eq!(l.sb.exchanges().len(), before + 1, "one request, no retry");
    l.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_info_profiles_and_the_webhook_endpoint() {
    let l = Line::start(None, |_| {}).await;
    let info = l.client.bot_info(&l.ch).await.unwrap();
    assert_eq!(info.basic_id, "@tsunagu");
    let friend = l.friend("プロフィール");
    assert_eq!(l.client.profile(&l.ch, &friend).await.unwrap().display_name, "プロフィール");
    let stranger = l.stranger("未登録");
    assert!(matches!(l.client.profile(&l.ch, &stranger).await, Err(LineError::NotFound { .. })));

    assert!(matches!(l.client.webhook_endpoint(&l.ch).await, Err(LineError::NotFound { .. })));
    // A receiver that checks the signature like the app does.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<bool>::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/line/webhook/{id}",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let s2 = s2.clone();
            async move {
                let sig = headers.get("x-line-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                let ok = tsunagu_line::signature::verify(SECRET, body.as_bytes(), sig);
                s2.lock().unwrap().push(ok);
                if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::UNAUTHORIZED }
            }
        }),
    );
    let (receiver, _t) = tsunagu_sandbox::serve(app).await.unwrap();
    let endpoint = format!("{receiver}/line/webhook/{CHANNEL}");
    l.client.set_webhook_endpoint(&l.ch, &endpoint).await.unwrap();
    let got = l.client.webhook_endpoint(&l.ch).await.unwrap();
    assert_eq!(got.endpoint, endpoint);
    assert!(got.active);
    let test = l.client.test_webhook_endpoint(&l.ch, None).await.unwrap();
    assert!(test.success, "{test:?}");
    assert_eq!(test.status_code, 200);
    assert_eq!(seen.lock().unwrap().as_slice(), &[true]);
    let broken = l.client.test_webhook_endpoint(&l.ch, Some(&format!("{receiver}/nowhere"))).await.unwrap();
    assert!(!broken.success && broken.reason == "ERROR_STATUS_CODE");
    assert!(matches!(l.client.set_webhook_endpoint(&l.ch, "ftp://x").await, Err(LineError::BadRequest { .. })));
    l.assert_contract();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out() {
    // The client believes in LINE's 2,000/s while the sandbox allows 20/s: the 429s are
    // waited out and retried with the same key; everyone gets the message once.
    let l = Line::start(None, |_| {}).await;
    l.sb.set_limit("push", 20);
    let users: Vec<String> = (0..60).map(|i| l.friend(&format!("u{i}"))).collect();
    let mut tasks = Vec::new();
    for u in users.clone() {
        let (client, ch) = (l.client.clone(), l.ch.clone());
        tasks.push(tokio::spawn(async move {
            client.push(&ch, &u, &[Message::text("混雑")], &RetryKey::new(client.now_ms())).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(l.sb.stats().rate_429 > 0);
    for u in &users {
        assert_eq!(l.texts_of(u), vec!["混雑"]);
    }
    l.assert_contract();
}
