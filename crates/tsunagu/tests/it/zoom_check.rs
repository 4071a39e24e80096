//! `tsunagu zoom check` against the Zoom sandbox: credentials stored through 基本設定 or given
//! as flags; scopes removed in the sandbox are reported with where to add them; exit status 0
//! only when everything the manual needs is there.

use std::process::Command;

use tsunagu_sandbox::zoom::{S2sApp, SandboxUser, ZoomSandbox};

use crate::helpers::TestApp;

const ACCOUNT: &str = "zoom-acc-1";
const SECRET: &str = "zoom-secret-check-1";

fn all_scopes() -> Vec<String> {
    tsunagu_zoom::scopes::REQUIRED.iter().map(|s| s.name.to_string()).collect()
}

async fn check(args: &[&str], env: Vec<(&'static str, String)>) -> (bool, String) {
    let mut all = vec!["zoom", "check"];
    all.extend_from_slice(args);
    let args: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagu"));
        cmd.args(&args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_check_reports_token_scopes_host_and_exit_status() {
    let sb = ZoomSandbox::new();
    sb.add_app(S2sApp {
        account_id: ACCOUNT.into(),
        client_id: "check-cid".into(),
        client_secret: SECRET.into(),
        scopes: all_scopes(),
    });
    sb.add_user(SandboxUser {
        account_id: ACCOUNT.into(),
        id: "owner-id".into(),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();

    // The organizer saves 基本設定 in the console; the check then reads it from the database.
    let api = format!("{base}/v2");
    let t = TestApp::spawn_with(|c| {
        c.zoom.api_base_url = api.clone();
        c.zoom.oauth_base_url = base.clone();
    })
    .await;
    let c = t.signup("organizer@example.com", "主催者").await;
    let r = c
        .submit(
            "/settings/basic",
            "/settings/basic",
            &[
                ("auth_method", "s2s"),
                ("zoom_account_id", ACCOUNT),
                ("client_id", "check-cid"),
                ("client_secret", SECRET),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    // Saving runs the live check: the page says what is missing and where to add it.
    assert_eq!(r.location.as_deref(), Some("/settings/basic?check=1"));
    let page = c.get("/settings/basic?check=1").await.text;
    assert!(page.contains("Zoom に接続できました") && page.contains("owner@example.com"), "{page}");
    for label in
        ["Zoom API認証方式", "Server-to-Server OAuth", "zoom (Account Id)", "zoom (Client Id)", "zoom(Client Secret)"]
    {
        assert!(page.contains(label), "the manual's label {label}");
    }
    sb.set_scopes(
        "check-cid",
        all_scopes()
            .into_iter()
            .filter(|s| s != "meeting:write:meeting:admin" && s != "meeting:delete:registrant:admin")
            .collect(),
    );
    // The check asks for a new token: the change shows at once, though tokens are cached.
    let page = c.get("/settings/basic?check=1").await.text;
    assert!(page.contains("マニュアルの 11 項目のうち") && page.contains("meeting:write:meeting:admin"), "{page}");
    assert!(page.contains("キャンセル時の Zoom 登録の取り消し") && page.contains("meeting:delete:registrant:admin"));
    assert!(!page.contains("Zoom に接続できました"));
    sb.set_scopes("check-cid", all_scopes());
    assert!(c.get("/settings/basic?check=1").await.text.contains("Zoom に接続できました"), "fixed in the Marketplace");
    let dir = t.stop().await;
    let env = vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", format!("sqlite://{}/tsunagu.db", dir.path().display())),
        ("TSUNAGU_ZOOM__API_BASE_URL", api.clone()),
        ("TSUNAGU_ZOOM__OAUTH_BASE_URL", base.clone()),
    ];

    let (ok, out) = check(&["--account", "organizer@example.com", "--host", "owner@example.com"], env.clone()).await;
    assert!(ok, "{out}");
    assert!(out.contains("アクセストークン: 取得できました"), "{out}");
    assert!(out.contains("不足しているスコープ: なし"), "{out}");
    assert!(out.contains("ホストユーザー: owner@example.com"), "{out}");
    assert!(out.contains("Light 30/秒"), "Pro figures by default: {out}");
    assert!(out.contains("結果: OK"), "{out}");
    assert!(!out.contains(SECRET), "the secret is never printed");

    // Two scopes removed in the Marketplace: named, with where to add them; exit status 1.
    let removed = ["meeting:read:list_registrants:admin", "webinar:write:registrant:admin"];
    sb.set_scopes("check-cid", all_scopes().into_iter().filter(|s| !removed.contains(&s.as_str())).collect());
    let mut flag_env = env.clone();
    flag_env.push(("ZOOM_CLIENT_SECRET", SECRET.into()));
    let (ok, out) = check(
        &[
            "--zoom-account-id",
            ACCOUNT,
            "--client-id",
            "check-cid",
            "--host",
            "owner@example.com",
            "--plan",
            "business",
        ],
        flag_env.clone(),
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("不足しているスコープ (2)"), "{out}");
    for s in removed {
        assert!(out.lines().any(|l| l.contains(s) && l.contains("Zoom Marketplace")), "{s} missing from:\n{out}");
    }
    assert!(out.contains("Light 80/秒"), "{out}");
    assert!(out.contains("結果: NG"), "{out}");

    // Wrong secret: the exact failure.
    let mut wrong = env.clone();
    wrong.push(("ZOOM_CLIENT_SECRET", "not-the-secret".into()));
    let (ok, out) = check(&["--zoom-account-id", ACCOUNT, "--client-id", "check-cid"], wrong).await;
    assert!(!ok);
    assert!(out.contains("取得できません [zoom.bad_credentials]"), "{out}");

    // An unknown host user.
    sb.set_scopes("check-cid", all_scopes());
    let (ok, out) =
        check(&["--zoom-account-id", ACCOUNT, "--client-id", "check-cid", "--host", "ghost@example.com"], flag_env)
            .await;
    assert!(!ok);
    assert!(out.contains("[zoom.user_not_found]"), "{out}");
}

/// The organizer connects by logging in to Zoom (Tsunagu's OAuth app): the state is checked,
/// the tokens are sealed, and a refresh stores the rotated pair before it is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizer_connects_through_the_oauth_app() {
    use tsunagu_sandbox::zoom::OAuthApp;
    let sb = ZoomSandbox::new();
    sb.add_user(SandboxUser {
        account_id: ACCOUNT.into(),
        id: "owner-id".into(),
        email: "owner@example.com".into(),
        first_name: "Owner".into(),
        last_name: "Zoom".into(),
        licensed: true,
        webinar_license: true,
    });
    let redirect = "http://127.0.0.1:8080/zoom/oauth/callback";
    sb.add_oauth_app(OAuthApp {
        client_id: "tsunagu-oauth".into(),
        client_secret: "tsunagu-oauth-secret".into(),
        redirect_uri: redirect.into(),
        scopes: all_scopes(),
    });
    let (base, _task) = tsunagu_sandbox::serve(sb.router()).await.unwrap();
    let api = format!("{base}/v2");
    let t = TestApp::spawn_with(|c| {
        c.zoom.api_base_url = api.clone();
        c.zoom.oauth_base_url = base.clone();
        c.zoom.oauth_client_id = "tsunagu-oauth".into();
        c.zoom.oauth_client_secret = tsunagu::config::Secret::new("tsunagu-oauth-secret");
    })
    .await;
    let c = t.signup("organizer@example.com", "主催者").await;
    let page = c.get("/settings/basic").await.text;
    assert!(page.contains("Zoom にログインして連携する") && page.contains("現在の連携: 未設定"));

    let r = c.submit("/settings/basic", "/settings/zoom/connect", &[]).await;
    assert_eq!(r.status, 303);
    let to = r.location.unwrap();
    assert!(to.starts_with(&format!("{base}/oauth/authorize?")), "{to}");
    let query: Vec<(String, String)> = serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
    let state = query.iter().find(|(k, _)| k == "state").unwrap().1.clone();
    assert!(query.contains(&("redirect_uri".into(), redirect.into())));
    // Zoom's consent page.
    let consent = crate::helpers::http().build().unwrap().get(&to).send().await.unwrap();
    assert_eq!(consent.status(), 200);

    // Back from Zoom with a forged state, or refused by the organizer: nothing is stored.
    let code = sb.authorize_code("tsunagu-oauth", "owner@example.com");
    let forged = c.get(&format!("/zoom/oauth/callback?code={code}&state=forged")).await;
    assert_eq!(forged.status, 303);
    assert!(c.get("/settings/basic").await.text.contains("連携の確認に失敗しました"));
    let r = c.submit("/settings/basic", "/settings/zoom/connect", &[]).await;
    let state = {
        let to = r.location.unwrap();
        let q: Vec<(String, String)> = serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
        assert_ne!(q.iter().find(|(k, _)| k == "state").unwrap().1, state, "a new state per attempt");
        q.into_iter().find(|(k, _)| k == "state").unwrap().1
    };
    let denied = c.get(&format!("/zoom/oauth/callback?error=access_denied&state={state}")).await;
    assert_eq!(denied.status, 303);
    assert!(c.get("/settings/basic").await.text.contains("許可されませんでした"));

    // The real round trip.
    let r = c.submit("/settings/basic", "/settings/zoom/connect", &[]).await;
    let to = r.location.unwrap();
    let q: Vec<(String, String)> = serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
    let state = q.into_iter().find(|(k, _)| k == "state").unwrap().1;
    let code = sb.authorize_code("tsunagu-oauth", "owner@example.com");
    let back = c.get(&format!("/zoom/oauth/callback?code={code}&state={state}")).await;
    assert_eq!(back.location.as_deref(), Some("/settings/basic"));
    let page = c.get("/settings/basic").await.text;
    assert!(page.contains("Zoom と連携しました") && page.contains("ログインして連携済み"), "{page}");
    assert!(page.contains(ACCOUNT), "the connected Zoom account is shown");

    // Stored sealed; an expired pair is refreshed and the rotated pair stored before use.
    let account = {
        let mut conn = t.app.store.read().await.unwrap();
        let email = tsunagu_core::Email::parse("organizer@example.com").unwrap();
        tsunagu_store::accounts::credentials_by_email(&mut conn, &email).await.unwrap().unwrap().account.id
    };
    let org = tsunagu::zoom::organizer(&t.app, account).await.unwrap().unwrap();
    let tsunagu_zoom::Auth::OAuth { tokens, .. } = &org.auth else { panic!("connected through OAuth") };
    let first = tokens.clone();
    let stale = tsunagu_zoom::oauth::OAuthTokens { expires_at_ms: 0, ..first.clone() };
    tsunagu::zoom::save_oauth_connection(&t.app, account, ACCOUNT, &stale).await.unwrap();
    let org = tsunagu::zoom::organizer(&t.app, account).await.unwrap().unwrap();
    assert_eq!(t.app.zoom.get_user(&org, "me").await.unwrap().email, "owner@example.com");
    let stored = tsunagu::zoom::organizer(&t.app, account).await.unwrap().unwrap();
    let tsunagu_zoom::Auth::OAuth { tokens: now, .. } = stored.auth else { panic!() };
    assert_ne!(now.refresh_token, first.refresh_token, "the rotated refresh token was stored");
    assert!(now.expires_at_ms > 0);
    {
        let mut conn = t.app.store.read().await.unwrap();
        let sealed = tsunagu_store::secrets::get(&mut conn, account, "zoom.oauth_tokens").await.unwrap().unwrap();
        assert!(!sealed.sealed.contains(&now.refresh_token), "sealed, not plain");
    }
    t.stop().await;
}
