//! OAuth-app connections: code exchange, refresh-token rotation with the new pair stored
//! before use, single-use codes, and the organizer told to reconnect when tokens are dead; a
//! token Zoom refused is renewed for real, a rotated pair the store refuses is never lost, and
//! instances sharing a store renew one after the other.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tsunagu_sandbox::zoom::OAuthApp as SandboxOAuthApp;
use tsunagu_zoom::limits::ZoomPlan;
use tsunagu_zoom::oauth::{self, OAuthApp, OAuthTokens};
use tsunagu_zoom::{Auth, Organizer, ZoomClient, ZoomError, scopes};

use crate::support::*;

const REDIRECT: &str = "http://127.0.0.1:9/zoom/oauth/callback";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_then_rotating_refresh_tokens() {
    let z = Zoom::start().await;
    z.sb.add_oauth_app(SandboxOAuthApp {
        client_id: "oauth-cid".into(),
        client_secret: "oauth-secret".into(),
        redirect_uri: REDIRECT.into(),
        scopes: all_scopes(),
    });
    let app =
        OAuthApp { client_id: "oauth-cid".into(), client_secret: "oauth-secret".into(), redirect_uri: REDIRECT.into() };

    // The consent page the organizer's browser is sent to exists and names the app's choice.
    let url = oauth::authorize_url(&z.base, &app, "state-123");
    let page = z.client.http().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("許可"));

    let code = z.sb.authorize_code("oauth-cid", OWNER);
    let first = oauth::exchange_code(z.client.http(), &z.base, &app, &code).await.unwrap();
    assert!(scopes::missing(&first.scopes.join(" ")).is_empty(), "scopes read from the answer");
    assert_eq!(
        oauth::exchange_code(z.client.http(), &z.base, &app, &code).await,
        Err(ZoomError::ReconnectNeeded),
        "a code is single-use"
    );

    // The stored pair has expired: the client refreshes, stores the new pair, then calls.
    let store = MemoryStore::default();
    let client = ZoomClient::new(z.client.config().clone()).with_token_store(Arc::new(store.clone()));
    let stale = OAuthTokens { expires_at_ms: 0, ..first.clone() };
    store.put("oauth-organizer", stale.clone()).await;
    let org = Organizer {
        key: "oauth-organizer".into(),
        auth: Auth::OAuth { app: app.clone(), tokens: stale },
        plan: ZoomPlan::Pro,
    };
    let me = client.get_user(&org, "me").await.unwrap();
    assert_eq!(me.email, OWNER);
    let saved = store.get("oauth-organizer").await.unwrap();
    assert_ne!(saved.refresh_token, first.refresh_token, "rotation");
    assert!(saved.fresh(jiff::Timestamp::now().as_millisecond()));
    // Later calls use the cached fresh token.
    let requests = z.sb.token_requests();
    client.get_user(&org, "me").await.unwrap();
    assert_eq!(z.sb.token_requests(), requests);
    assert_eq!(store.get("oauth-organizer").await.unwrap(), saved);

    // The old refresh token died with the rotation: whoever still holds it must reconnect.
    assert_eq!(
        oauth::refresh(z.client.http(), &z.base, &app, &first.refresh_token).await,
        Err(ZoomError::ReconnectNeeded)
    );
    // The new one works (and rotates again).
    let next = oauth::refresh(z.client.http(), &z.base, &app, &saved.refresh_token).await.unwrap();
    assert_ne!(next.refresh_token, saved.refresh_token);
    z.assert_contract();
}

fn oauth_app() -> OAuthApp {
    OAuthApp { client_id: "oauth-cid".into(), client_secret: "oauth-secret".into(), redirect_uri: REDIRECT.into() }
}

/// A sandbox with Tsunagu's OAuth app, and a pair the organizer's authorization produced.
async fn connected() -> (Zoom, OAuthTokens) {
    let z = Zoom::start().await;
    z.sb.add_oauth_app(SandboxOAuthApp {
        client_id: "oauth-cid".into(),
        client_secret: "oauth-secret".into(),
        redirect_uri: REDIRECT.into(),
        scopes: all_scopes(),
    });
    let code = z.sb.authorize_code("oauth-cid", OWNER);
    let tokens = oauth::exchange_code(z.client.http(), &z.base, &oauth_app(), &code).await.unwrap();
    (z, tokens)
}

fn organizer(tokens: &OAuthTokens) -> Organizer {
    Organizer {
        key: "oauth-organizer".into(),
        auth: Auth::OAuth { app: oauth_app(), tokens: tokens.clone() },
        plan: ZoomPlan::Pro,
    }
}

/// Zoom refuses a token that has not expired yet (124, e.g. the app was reactivated): the
/// client renews it with the refresh token instead of handing out the stored copy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_renewed_for_real() {
    let (z, tokens) = connected().await;
    let store = MemoryStore::default();
    store.put("oauth-organizer", tokens.clone()).await;
    let client = ZoomClient::new(z.client.config().clone()).with_token_store(Arc::new(store.clone()));
    let org = organizer(&tokens);
    client.get_user(&org, "me").await.unwrap();
    let requests = z.sb.token_requests();

    z.sb.revoke_tokens();
    assert_eq!(client.get_user(&org, "me").await.unwrap().email, OWNER);
    assert_eq!(z.sb.token_requests(), requests + 1, "renewed once");
    let renewed = store.get("oauth-organizer").await.unwrap();
    assert_ne!(renewed.access_token, tokens.access_token);
    assert_ne!(renewed.refresh_token, tokens.refresh_token, "the rotated pair was stored");
    // The organizer as read before the renewal still names the refused token: not used again.
    client.get_user(&org, "me").await.unwrap();
    assert_eq!(z.sb.token_requests(), requests + 1);

    // Without a store (a one-off check) the same holds.
    let bare = ZoomClient::new(z.client.config().clone());
    let org = organizer(&renewed);
    bare.get_user(&org, "me").await.unwrap();
    z.sb.revoke_tokens();
    assert_eq!(bare.get_user(&org, "me").await.unwrap().email, OWNER);
    assert_eq!(z.sb.token_requests(), requests + 2);
}

/// The store fails while a rotated pair is being saved. Zoom has already spent the old refresh
/// token, so the new pair is kept: the call goes on with it, and it is stored as soon as the
/// store works again. Nothing is renewed twice and the organizer never has to reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_pair_the_store_refuses_is_kept_and_stored_later() {
    let (z, tokens) = connected().await;
    let stale = OAuthTokens { expires_at_ms: 0, ..tokens.clone() };
    let store = MemoryStore::default();
    store.put("oauth-organizer", stale.clone()).await;
    let client = ZoomClient::new(z.client.config().clone()).with_token_store(Arc::new(store.clone()));
    let org = organizer(&stale);

    store.failing_saves.store(100, Ordering::SeqCst);
    let requests = z.sb.token_requests();
    assert_eq!(client.get_user(&org, "me").await.unwrap().email, OWNER);
    assert_eq!(z.sb.token_requests(), requests + 1);
    assert_eq!(store.get("oauth-organizer").await.unwrap(), stale, "the store took nothing");
    // Still failing: the kept pair serves the call (its refresh token is the only live one).
    assert_eq!(client.get_user(&org, "me").await.unwrap().email, OWNER);
    assert_eq!(z.sb.token_requests(), requests + 1, "no second renewal");

    // The store works again: the next call stores the kept pair first.
    store.failing_saves.store(0, Ordering::SeqCst);
    client.get_user(&org, "me").await.unwrap();
    let stored = store.get("oauth-organizer").await.unwrap();
    assert_ne!(stored.refresh_token, stale.refresh_token);
    assert!(stored.fresh(jiff::Timestamp::now().as_millisecond()));
    assert_eq!(z.sb.token_requests(), requests + 1);
    // What was stored is the live pair: it renews at Zoom.
    oauth::refresh(z.client.http(), &z.base, &oauth_app(), &stored.refresh_token).await.unwrap();
}

/// A save that fails once is retried at once: the pair is stored before the call returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_is_retried() {
    let (z, tokens) = connected().await;
    let stale = OAuthTokens { expires_at_ms: 0, ..tokens.clone() };
    let store = MemoryStore::default();
    store.put("oauth-organizer", stale.clone()).await;
    let client = ZoomClient::new(z.client.config().clone()).with_token_store(Arc::new(store.clone()));
    store.failing_saves.store(1, Ordering::SeqCst);
    client.get_user(&organizer(&stale), "me").await.unwrap();
    let stored = store.get("oauth-organizer").await.unwrap();
    assert_ne!(stored.refresh_token, stale.refresh_token);
    oauth::refresh(z.client.http(), &z.base, &oauth_app(), &stored.refresh_token).await.unwrap();
}

/// Two instances (two clients on one store) read the same expired pair and call at once: one
/// renews, the other waits for the store's lock, finds the renewed pair and uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_store_renew_one_at_a_time() {
    let (z, tokens) = connected().await;
    let stale = OAuthTokens { expires_at_ms: 0, ..tokens.clone() };
    let store = MemoryStore::default();
    store.put("oauth-organizer", stale.clone()).await;
    let a = ZoomClient::new(z.client.config().clone()).with_token_store(Arc::new(store.clone()));
    let b = ZoomClient::new(z.client.config().clone()).with_token_store(Arc::new(store.clone()));
    let org = organizer(&stale);
    let requests = z.sb.token_requests();
    let (ta, tb) = tokio::join!(a.token(&org), b.token(&org));
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_eq!(ta.0, tb.0, "both use the one renewed token");
    assert_eq!(z.sb.token_requests(), requests + 1, "renewed once");
    assert_eq!(store.get("oauth-organizer").await.unwrap().access_token, ta.0);
    a.get_user(&org, "me").await.unwrap();
    b.get_user(&org, "me").await.unwrap();
}
