//! Zoom tokens across instances that share one database (SQLite file or PostgreSQL): credentials
//! saved through one instance are used by another at its next call, and two instances that find
//! the same expired OAuth pair renew it once, one after the other.

use tsunagu::config::Secret;
use tsunagu::crypto::MasterKey;
use tsunagu_core::{AccountId, Email};
use tsunagu_sandbox::zoom::{OAuthApp, S2sApp, SandboxUser, ZoomSandbox};
use tsunagu_zoom::oauth::{self, OAuthTokens};
use tsunagu_zoom::{Auth, ZoomError};

use crate::helpers::{Client, Db, TempDir, TestApp, database_url, test_config};

const ORGANIZER: &str = "organizer@example.com";

fn all_scopes() -> Vec<String> {
    tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect()
}

fn owner(account_id: &str, email: &str) -> SandboxUser {
    SandboxUser {
        account_id: account_id.into(),
        id: format!("{account_id}-owner"),
        email: email.into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    }
}

/// Two app instances on one fresh database and one master key, talking to the sandbox at
/// `base`; `None` when PostgreSQL is not available locally.
async fn two_instances(db: Db, base: &str, oauth: bool) -> Option<(TestApp, TestApp)> {
    let dir = TempDir::new("tsunagu-zoom-tokens");
    let url = database_url(db, dir.path()).await?;
    let mut config = test_config(dir.path(), &url);
    config.secrets.master_key = Secret::new(MasterKey::generate().to_base64());
    config.zoom.api_base_url = format!("{base}/v2");
    config.zoom.oauth_base_url = base.to_string();
    if oauth {
        config.zoom.oauth_client_id = "tsunagu-oauth".into();
        config.zoom.oauth_client_secret = Secret::new("tsunagu-oauth-secret");
    }
    let first = TestApp::start(config.clone(), dir).await;
    let second = TestApp::start(config, TempDir::new("tsunagu-zoom-tokens-2")).await;
    Some((first, second))
}

async fn account_id(t: &TestApp) -> AccountId {
    let mut c = t.app.store.conn().await.unwrap();
    let email = Email::parse(ORGANIZER).unwrap();
    tsunagu_store::accounts::credentials_by_email(&mut c, &email).await.unwrap().unwrap().account.id
}

/// 基本設定 saved in the console with sandbox app `n`'s credentials.
async fn save_s2s(browser: &Client, n: &str) {
    let (account, client, secret) = (format!("zoom-acc-{n}"), format!("cid-{n}"), format!("secret-{n}"));
    let form =
        [("auth_method", "s2s"), ("zoom_account_id", &*account), ("client_id", &*client), ("client_secret", &*secret)];
    assert_eq!(browser.submit("/settings/basic", "/settings/basic", &form).await.status, 303);
}

async fn credentials_saved_on_one_instance_are_used_by_another(db: Db) {
    let sb = ZoomSandbox::new();
    for (account, n) in [("zoom-acc-a", "a"), ("zoom-acc-b", "b")] {
        sb.add_app(S2sApp {
            account_id: account.into(),
            client_id: format!("cid-{n}"),
            client_secret: format!("secret-{n}"),
            scopes: all_scopes(),
        });
        sb.add_user(owner(account, &format!("owner-{n}@example.com")));
    }
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let Some((one, two)) = two_instances(db, &base, false).await else { return };
    let browser = one.signup(ORGANIZER, "主催者").await;
    let account = account_id(&one).await;

    save_s2s(&browser, "a").await;
    // The second instance works for Zoom account A, and caches its token.
    let org = tsunagu::zoom::organizer(&two.app, account).await.unwrap().unwrap();
    assert_eq!(two.app.zoom.get_user(&org, "owner-a@example.com").await.unwrap().account_id, "zoom-acc-a");

    // The organizer switches to Zoom account B through the first instance: the second one's
    // next unit of work (which reads the organizer again) talks to B, not to A for an hour.
    save_s2s(&browser, "b").await;
    let org = tsunagu::zoom::organizer(&two.app, account).await.unwrap().unwrap();
    assert_eq!(two.app.zoom.get_user(&org, "owner-b@example.com").await.unwrap().account_id, "zoom-acc-b");
    assert_eq!(
        two.app.zoom.get_user(&org, "owner-a@example.com").await.unwrap_err(),
        ZoomError::UserNotFound,
        "account A's users are not visible any more"
    );
    drop(two);
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_saved_on_one_instance_are_used_by_another_sqlite() {
    credentials_saved_on_one_instance_are_used_by_another(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_saved_on_one_instance_are_used_by_another_postgres() {
    credentials_saved_on_one_instance_are_used_by_another(Db::Postgres).await;
}

fn stored_tokens(org: &tsunagu_zoom::Organizer) -> OAuthTokens {
    let Auth::OAuth { tokens, .. } = &org.auth else { panic!("connected through the OAuth app") };
    tokens.clone()
}

async fn instances_renew_an_oauth_pair_one_at_a_time(db: Db) {
    let sb = ZoomSandbox::new();
    sb.add_user(owner("zoom-acc-a", "owner-a@example.com"));
    sb.add_oauth_app(OAuthApp {
        client_id: "tsunagu-oauth".into(),
        client_secret: "tsunagu-oauth-secret".into(),
        redirect_uri: "http://127.0.0.1:8080/zoom/oauth/callback".into(),
        scopes: all_scopes(),
    });
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let Some((one, two)) = two_instances(db, &base, true).await else { return };
    one.signup(ORGANIZER, "主催者").await;
    let account = account_id(&one).await;
    // Connected an hour ago: the stored pair has expired.
    let app = tsunagu::zoom::oauth_app(&one.app.config).unwrap();
    let code = sb.authorize_code("tsunagu-oauth", "owner-a@example.com");
    let first = oauth::exchange_code(one.app.zoom.http(), &base, &app, &code).await.unwrap();
    let stale = OAuthTokens { expires_at_ms: 0, ..first.clone() };
    tsunagu::zoom::save_oauth_connection(&one.app, account, "zoom-acc-a", &stale).await.unwrap();

    // Both instances read the expired pair, then need a token at the same moment. Zoom takes a
    // moment to answer, so the second asks while the first one's renewal is under way.
    sb.set_token_latency(std::time::Duration::from_millis(300));
    let org_one = tsunagu::zoom::organizer(&one.app, account).await.unwrap().unwrap();
    let org_two = tsunagu::zoom::organizer(&two.app, account).await.unwrap().unwrap();
    assert_eq!(stored_tokens(&org_two), stale);
    let requests = sb.token_requests();
    let (a, b) = tokio::join!(one.app.zoom.token(&org_one), two.app.zoom.token(&org_two));
    let (a, b) = (a.expect("first instance"), b.expect("second instance"));
    assert_eq!(a.0, b.0, "both use the one renewed token");
    assert_eq!(sb.token_requests(), requests + 1, "renewed once");
    let stored = stored_tokens(&tsunagu::zoom::organizer(&one.app, account).await.unwrap().unwrap());
    assert_eq!(stored.access_token, a.0, "the renewed pair is stored");
    assert_ne!(stored.refresh_token, first.refresh_token);
    for (t, org) in [(&one, &org_one), (&two, &org_two)] {
        assert_eq!(t.app.zoom.get_user(org, "me").await.unwrap().email, "owner-a@example.com");
    }
    assert_eq!(sb.token_requests(), requests + 1);
    drop(two);
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_renew_an_oauth_pair_one_at_a_time_sqlite() {
    instances_renew_an_oauth_pair_one_at_a_time(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_renew_an_oauth_pair_one_at_a_time_postgres() {
    instances_renew_an_oauth_pair_one_at_a_time(Db::Postgres).await;
}
