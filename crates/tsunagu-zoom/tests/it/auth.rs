use std::sync::Arc;
use std::time::Duration;

use tsunagu_sandbox::zoom::{S2sApp, ZoomSandbox};
use tsunagu_zoom::auth::{S2sCredentials, TokenCache, http_client};
use tsunagu_zoom::error::ZoomError;
use tsunagu_zoom::scopes;

fn creds() -> S2sCredentials {
    S2sCredentials { account_id: "acc-1".into(), client_id: "cid-1".into(), client_secret: "secret-1".into() }
}

async fn sandbox(scopes: Vec<String>) -> (ZoomSandbox, String) {
    let sb = ZoomSandbox::new();
    sb.add_app(S2sApp {
        account_id: "acc-1".into(),
        client_id: "cid-1".into(),
        client_secret: "secret-1".into(),
        scopes,
    });
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    (sb, base)
}

fn all_scopes() -> Vec<String> {
    scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_token_request() {
    let (sb, base) = sandbox(all_scopes()).await;
    let cache = Arc::new(TokenCache::new(http_client(Duration::from_secs(10)), &base));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move { cache.token("organizer-1", &creds()).await.unwrap().value }));
    }
    let mut values = Vec::new();
    for t in tasks {
        values.push(t.await.unwrap());
    }
    assert!(values.iter().all(|v| v == &values[0]), "one token for all");
    assert_eq!(sb.token_requests(), 1, "fetched once");
    let t = cache.token("organizer-1", &creds()).await.unwrap();
    assert!(scopes::missing(&t.scope_string()).is_empty(), "scopes read from the answer");
    assert_eq!(sb.token_requests(), 1, "served from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_a_minute_before_expiry() {
    let (sb, base) = sandbox(all_scopes()).await;
    // A token that lives 61 s is already inside the renewal minute after one second.
    sb.set_token_ttl(Duration::from_secs(61));
    let cache = TokenCache::new(http_client(Duration::from_secs(10)), &base);
    let first = cache.token("o", &creds()).await.unwrap();
    assert_eq!(cache.token("o", &creds()).await.unwrap().value, first.value);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = cache.token("o", &creds()).await.unwrap();
    assert_ne!(second.value, first.value);
    assert_eq!(sb.token_requests(), 2);
    // After Zoom says the token is invalid (124), the caller drops it and a new one is minted.
    cache.invalidate("o", &second.value).await;
    assert_ne!(cache.token("o", &creds()).await.unwrap().value, second.value);
}

/// The organizer saves another Account ID or Client ID (or secret): the token cached for the
/// old credentials is not used again, even though it is still valid for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_credentials_take_effect_at_once() {
    let (sb, base) = sandbox(all_scopes()).await;
    sb.add_app(S2sApp {
        account_id: "acc-2".into(),
        client_id: "cid-2".into(),
        client_secret: "secret-2".into(),
        scopes: all_scopes(),
    });
    let cache = TokenCache::new(http_client(Duration::from_secs(10)), &base);
    let account_of = |t: &str| sb.token_scopes(t).expect("a live sandbox token").0;
    let first = cache.token("o", &creds()).await.unwrap();
    assert_eq!(account_of(&first.value), "acc-1");
    let other =
        S2sCredentials { account_id: "acc-2".into(), client_id: "cid-2".into(), client_secret: "secret-2".into() };
    let second = cache.token("o", &other).await.unwrap();
    assert_eq!(account_of(&second.value), "acc-2", "the new Zoom account's token");
    assert_eq!(cache.token("o", &other).await.unwrap().value, second.value, "then cached again");
    // A secret that no longer matches is tried against Zoom, not answered from the cache.
    let wrong_secret = S2sCredentials { client_secret: "revoked".into(), ..other.clone() };
    assert_eq!(cache.token("o", &wrong_secret).await.unwrap_err(), ZoomError::BadCredentials);
    assert_eq!(sb.token_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_missing_scopes_are_reported() {
    let granted: Vec<String> = all_scopes().into_iter().filter(|s| s != "meeting:write:meeting:admin").collect();
    let (sb, base) = sandbox(granted).await;
    let cache = TokenCache::new(http_client(Duration::from_secs(10)), &base);
    let wrong = S2sCredentials { client_secret: "nope".into(), ..creds() };
    assert_eq!(cache.token("o", &wrong).await.unwrap_err(), ZoomError::BadCredentials);
    let wrong_account = S2sCredentials { account_id: "acc-2".into(), ..creds() };
    assert!(cache.token("o", &wrong_account).await.is_err());
    let t = cache.token("o", &creds()).await.unwrap();
    let missing = scopes::missing(&t.scope_string());
    assert_eq!(missing.iter().map(|m| m.scope.name).collect::<Vec<_>>(), vec!["meeting:write:meeting:admin"]);
    // Scopes added later only reach tokens minted afterwards.
    sb.set_scopes("cid-1", all_scopes());
    assert_eq!(scopes::missing(&cache.token("o", &creds()).await.unwrap().scope_string()).len(), 1);
    let stale = cache.token("o", &creds()).await.unwrap();
    cache.invalidate("o", &stale.value).await;
    assert!(scopes::missing(&cache.token("o", &creds()).await.unwrap().scope_string()).is_empty());
    assert!(!format!("{wrong:?}").contains("nope"), "the secret is redacted");
}
