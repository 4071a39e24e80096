//! OAuth-app connections: code exchange, refresh-token rotation with the new pair stored
//! before use, single-use codes, and the organizer told to reconnect when tokens are dead.

use std::sync::{Arc, Mutex};

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
    let stored: Arc<Mutex<Vec<(String, OAuthTokens)>>> = Arc::default();
    let sink = stored.clone();
    let client = ZoomClient::new(z.client.config().clone()).with_persist(Arc::new(move |key, tokens| {
        let sink = sink.clone();
        Box::pin(async move {
            sink.lock().unwrap().push((key, tokens));
            Ok(())
        })
    }));
    let stale = OAuthTokens { expires_at_ms: 0, ..first.clone() };
    let org = Organizer {
        key: "oauth-organizer".into(),
        auth: Auth::OAuth { app: app.clone(), tokens: stale },
        plan: ZoomPlan::Pro,
    };
    let me = client.get_user(&org, "me").await.unwrap();
    assert_eq!(me.email, OWNER);
    let saved = stored.lock().unwrap().clone();
    assert_eq!(saved.len(), 1, "the rotated pair was stored once");
    assert_eq!(saved[0].0, "oauth-organizer");
    assert_ne!(saved[0].1.refresh_token, first.refresh_token, "rotation");
    // Later calls use the cached fresh token.
    client.get_user(&org, "me").await.unwrap();
    assert_eq!(stored.lock().unwrap().len(), 1);

    // The old refresh token died with the rotation: whoever still holds it must reconnect.
    assert_eq!(
        oauth::refresh(z.client.http(), &z.base, &app, &first.refresh_token).await,
        Err(ZoomError::ReconnectNeeded)
    );
    // The new one works (and rotates again).
    let next = oauth::refresh(z.client.http(), &z.base, &app, &saved[0].1.refresh_token).await.unwrap();
    assert_ne!(next.refresh_token, saved[0].1.refresh_token);

    // A persist hook that fails stops the call: tokens that cannot be stored are not used.
    let failing = ZoomClient::new(z.client.config().clone())
        .with_persist(Arc::new(|_, _| Box::pin(async { Err("database down".to_string()) })));
    let org2 = Organizer {
        key: "oauth-organizer-2".into(),
        auth: Auth::OAuth { app, tokens: OAuthTokens { expires_at_ms: 0, ..next } },
        plan: ZoomPlan::Pro,
    };
    let err = failing.get_user(&org2, "me").await.unwrap_err();
    assert!(err.to_string().contains("could not store"), "{err}");
    z.assert_contract();
}
