use std::process::Command;

use crate::helpers::{TempDir, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let t = TestApp::spawn().await;
    let c = t.client();
    let h = c.get("/healthz").await;
    assert_eq!((h.status, h.text.as_str()), (200, "ok"));
    let r = c.get("/readyz").await;
    assert_eq!((r.status, r.text.as_str()), (200, "ready"));
    assert!(r.headers.get("x-request-id").is_some());
    c.get("/login").await;
    c.get("/no/such/page").await;
    let m = c.get("/metrics").await.text;
    assert!(m.contains("tsunagu_http_requests_total{method=\"GET\",route=\"/login\",status=\"200\"} 1"), "{m}");
    assert!(m.contains("status=\"404\""), "{m}");
    assert!(m.contains("tsunagu_http_request_duration_seconds_bucket{route=\"/login\",le=\"+Inf\"} 1"), "{m}");
    assert!(m.contains("tsunagu_jobs{state=\"queued\"} 0"), "{m}");
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_pages_carry_the_operation_id_of_the_log_line() {
    let t = TestApp::spawn().await;
    let r = t.client().get("/does-not-exist").await;
    assert_eq!(r.status, 404);
    let op = r.headers.get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert!(r.text.contains(&format!("<code>{op}</code>")), "{}", r.text);
    assert!(r.text.contains("ページが見つかりません"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_is_gone() {
    let t = TestApp::spawn().await;
    t.app.store.close().await;
    assert_eq!(t.client().get("/readyz").await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_place_is_reachable_and_honest() {
    let t = TestApp::spawn().await;
    let c = t.signup("nav@example.com", "ナビ").await;
    for &(path, heading) in crate::helpers::CONSOLE_PLACES.iter().filter(|(p, _)| !p.starts_with("/admin")) {
        let p = c.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(p.text.contains(&format!("<h1>{heading}</h1>")), "{path}: {}", p.text);
        // Addresses shown as text (the webhook URL to paste into Zoom) are fine; assets are not.
        for external in ["src=\"http", "<link rel=\"stylesheet\" href=\"http", "url(http"] {
            assert!(!p.text.contains(external), "{path}: no external assets ({external})");
        }
    }
    assert!(c.get("/mail-templates").await.text.contains("(代表者)ZOOMイベント参加URLのお知らせ"));
    assert!(c.get("/events").await.text.contains("新規イベント作成"));
    // The LINE pages say which plans include them (フリー here).
    let line = c.get("/settings/line").await.text;
    assert!(line.contains("ビジネスプランとスペシャルプラン"), "{line}");
    t.make_admin("nav@example.com").await;
    let admin_nav = c.get("/home").await.text;
    assert!(admin_nav.contains("/admin/accounts") && admin_nav.contains("/admin/jobs"));
    // Plan change by the administrator lifts the LINE notice.
    let me = c.get("/admin/accounts").await;
    assert!(me.text.contains("nav@example.com"));
    let r = c.submit("/admin/accounts", "/admin/accounts/1/plan", &[("plan", "business")]).await;
    assert_eq!(r.status, 303);
    assert!(!c.get("/settings/line").await.text.contains("ビジネスプランとスペシャルプラン"));
    let css = c.get("/assets/style.css").await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
    t.assert_no_jobs_left().await;
}

fn tsunagu(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagu"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn cli_config_example_migrate_accounts_plans_and_key_rotation() {
    let out = tsunagu(&["config", "example"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[database]") && text.contains("api_base_url = \"https://api.zoom.us/v2\""));

    let bad = tsunagu(&["migrate"], &[("TSUNAGU_DATABASE__URLL", "x".into())]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TSUNAGU_DATABASE__URLL"));

    let dir = TempDir::new("tsunagu-cli");
    let env = vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", format!("sqlite://{}/t.db", dir.path().display())),
    ];
    let m = tsunagu(&["migrate"], &env);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let created = tsunagu(
        &[
            "admin",
            "create-account",
            "--email",
            "root@example.com",
            "--name",
            "管理者",
            "--plan",
            "スペシャル",
            "--admin",
        ],
        &env,
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8(created.stdout).unwrap();
    assert!(stdout.contains("plan=special role=admin") && stdout.contains("password: "), "{stdout}");
    let set = tsunagu(&["admin", "set-plan", "--email", "root@example.com", "--plan", "standard"], &env);
    assert!(set.status.success());
    assert!(String::from_utf8(set.stdout).unwrap().contains("スタンダード"));
    let unknown = tsunagu(&["admin", "set-plan", "--email", "root@example.com", "--plan", "gold"], &env);
    assert!(!unknown.status.success());

    // Seal a secret under the first key, rotate, and read it back under the new one.
    let key_path = dir.path().join("master.key");
    let before = tsunagu::crypto::Keyring::load_file(&key_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let (acc, _) = rt.block_on(async {
        let store = tsunagu_store::Store::open(&url, &Default::default()).await.unwrap();
        let mut c = store.conn().await.unwrap();
        let acc = tsunagu_store::accounts::list_all(&mut c).await.unwrap()[0].id;
        let aad = tsunagu::crypto::secret_aad(acc, "zoom.client_secret");
        let (kid, sealed) = before.seal("rotate-me", &aad);
        tsunagu_store::secrets::put(&mut c, acc, "zoom.client_secret", &kid, &sealed, 1).await.unwrap();
        (acc, store)
    });
    let rotated = tsunagu(&["admin", "rotate-key"], &env);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(String::from_utf8(rotated.stdout).unwrap().contains("re-encrypted 1 secret"));
    let transitional = tsunagu::crypto::Keyring::load_file(&key_path).unwrap();
    assert_ne!(transitional.current().id(), before.current().id());
    assert_eq!(transitional.keys().len(), 2, "the old key stays until --prune");
    let pruned = tsunagu(&["admin", "rotate-key", "--prune"], &env);
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));
    let after = tsunagu::crypto::Keyring::load_file(&key_path).unwrap();
    assert_eq!(after.current().id(), transitional.current().id());
    assert_eq!(after.keys().len(), 1, "the old key is gone from the file");
    rt.block_on(async {
        let store = tsunagu_store::Store::open(&url, &Default::default()).await.unwrap();
        let mut c = store.conn().await.unwrap();
        let s = tsunagu_store::secrets::get(&mut c, acc, "zoom.client_secret").await.unwrap().unwrap();
        assert_eq!(s.key_id, after.current().id());
        let aad = tsunagu::crypto::secret_aad(acc, "zoom.client_secret");
        assert_eq!(after.open(&s.key_id, &s.sealed, &aad).unwrap(), "rotate-me");
        assert!(before.open(&s.key_id, &s.sealed, &aad).is_err(), "the old key no longer opens it");
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn demo_refuses_a_database_with_real_accounts() {
    let dir = TempDir::new("tsunagu-demo-guard");
    let env = vec![
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", format!("sqlite://{}/tsunagu.db", dir.path().display())),
    ];
    let created = tsunagu(&["admin", "create-account", "--email", "real@example.com", "--name", "本番"], &env);
    assert!(created.status.success());
    let data_dir = dir.path().display().to_string();
    let port = crate::helpers::free_port().to_string();
    let demo = tsunagu(&["demo", "--data-dir", &data_dir, "--listen", &format!("127.0.0.1:{port}")], &[]);
    assert!(!demo.status.success());
    assert!(
        String::from_utf8_lossy(&demo.stderr).contains("デモ以外のアカウント"),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let pg = tsunagu(&["demo"], &[("TSUNAGU_DATABASE__URL", "postgres://x@127.0.0.1:1/x".into())]);
    assert!(!pg.status.success());
    assert!(String::from_utf8_lossy(&pg.stderr).contains("SQLite"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let t = TestApp::spawn_with(|c| c.http.metrics_token = tsunagu::config::Secret::new("m-token-123")).await;
    assert_eq!(t.client().get("/metrics").await.status, 401);
    let http = crate::helpers::http().build().unwrap();
    let wrong = http.get(format!("{}/metrics", t.addr)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http.get(format!("{}/metrics", t.addr)).bearer_auth("m-token-123").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("tsunagu_jobs"));
}

/// The demo keeps its own data across restarts, including accounts signed up during the demo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_restarts_on_its_own_data() {
    let dir = TempDir::new("tsunagu-demo-restart");
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    for round in 0..2 {
        let port = crate::helpers::free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = dir.path().join(format!("demo{round}.log"));
        let mut p =
            crate::helpers::Process::start(&["demo", "--data-dir", &data_s, "--listen", &listen], &[], port, log).await;
        let c = crate::helpers::Client::new(&p.base);
        assert_eq!(c.login("demo@example.com", "tsunagu-demo").await.status, 303, "the printed demo login works");
        // The built-in Zoom sandbox runs, and the demo organizer is connected to it.
        crate::helpers::eventually(10, "the demo's start-up lines", || {
            let done = p.log_text().contains("Ctrl+C");
            async move { done }
        })
        .await;
        let log = p.log_text();
        let zoom = log
            .lines()
            .find_map(|l| l.split("サンドボックス ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the demo prints the Zoom sandbox's address:\n{log}"))
            .trim_end_matches('/')
            .to_string();
        let sandbox_page = crate::helpers::http().build().unwrap().get(format!("{zoom}/")).send().await.unwrap();
        assert!(sandbox_page.text().await.unwrap().contains("Zoom サンドボックス"));
        let settings = c.get("/settings/basic").await.text;
        assert!(settings.contains("現在の連携: Server-to-Server OAuth") && settings.contains("demo-zoom-account"));
        // The sample event fills 申込状況サマリー, and its meeting with its registered people
        // is in the sandbox (made anew on each start: the sandbox keeps nothing).
        let summary = c.get("/events").await.text;
        assert!(summary.contains("Zoom 入門セミナー（サンプル）"), "{summary}");
        let sandbox_has = |emails: Vec<String>| {
            let zoom = zoom.clone();
            async move {
                let page = crate::helpers::http().build().unwrap().get(format!("{zoom}/")).send().await.unwrap();
                let text = page.text().await.unwrap();
                emails.iter().all(|e| text.contains(e.as_str()))
            }
        };
        crate::helpers::eventually(30, "the sample's people registered in the sandbox", || {
            sandbox_has(vec!["taro@example.com".into(), "hanako@example.com".into()])
        })
        .await;
        // A participant applies on the public page and shows up in the sandbox.
        let event_id = summary
            .split("href=\"/events/")
            .filter_map(|s| s.split('"').next())
            .find(|id| id.parse::<i64>().is_ok())
            .expect("a link to the sample event")
            .to_string();
        let page = c.get(&format!("/events/{event_id}")).await.text;
        let at = page.find("/e/").unwrap() + 3;
        let key = page[at..].split(['"', '<']).next().unwrap().to_string();
        let visitor = crate::helpers::Client::new(&p.base);
        let form = visitor.get(&format!("/e/{key}/apply")).await.text;
        let field = |name: &str| {
            let k = format!(r#"name="{name}" value=""#);
            let at = form.find(&k).unwrap() + k.len();
            form[at..].split('"').next().unwrap().to_string()
        };
        let email = format!("visitor{round}@example.com");
        let (submit_key, ticket, token) = (field("submit_key"), field("ticket"), crate::helpers::csrf(&form));
        let r = visitor
            .post_form(
                &format!("/e/{key}/apply"),
                &[
                    ("csrf_token", &token),
                    ("submit_key", &submit_key),
                    ("ticket", &ticket),
                    ("companions", "0"),
                    ("name_kanji_0", "来場 者"),
                    ("name_kana_0", "ライジョウ シャ"),
                    ("email_0", &email),
                    ("phone_0", "03-1234-5678"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.text);
        crate::helpers::eventually(30, "the visitor registered in the sandbox", || sandbox_has(vec![email.clone()]))
            .await;
        // The priced ticket goes to the built-in Stripe sandbox's checkout page (the demo
        // organizer is connected, and their 特定商取引法に基づく表記 is filled with sample values).
        assert!(form.contains("カード・コンビニ"), "the sample takes card and konbini: {form}");
        let priced = form.split(r#"name="ticket" value=""#).nth(2).unwrap().split('"').next().unwrap().to_string();
        let form = visitor.get(&format!("/e/{key}/apply")).await.text;
        let submit_key = form.split(r#"name="submit_key" value=""#).nth(1).unwrap().split('"').next().unwrap();
        let payer = format!("payer{round}@example.com");
        let r = visitor
            .post_form(
                &format!("/e/{key}/apply"),
                &[
                    ("csrf_token", &crate::helpers::csrf(&form)),
                    ("submit_key", submit_key),
                    ("ticket", &priced),
                    ("companions", "0"),
                    ("name_kanji_0", "支払 者"),
                    ("name_kana_0", "シハライ シャ"),
                    ("email_0", &payer),
                    ("phone_0", "03-1234-5678"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.text);
        let to = r.location.unwrap_or_default();
        assert!(to.contains("/c/pay/cs_test_"), "to the Stripe sandbox's checkout: {to}");
        assert!(c.get("/settings/legal").await.text.contains("デモ主催者（サンプル）"));
        let db = format!("sqlite://{}/tsunagu.db", data.display());
        let env = vec![
            ("TSUNAGU_DATA__DIR", data_s.clone()),
            ("TSUNAGU_DATABASE__URL", db),
            ("TSUNAGU_ZOOM__API_BASE_URL", format!("{zoom}/v2")),
            ("TSUNAGU_ZOOM__OAUTH_BASE_URL", zoom.clone()),
        ];
        let check = tokio::task::spawn_blocking(move || {
            tsunagu(&["zoom", "check", "--account", "demo@example.com", "--host", "zoom-owner@example.com"], &env)
        })
        .await
        .unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
        // The built-in LINE sandbox runs, the demo instructor's channel is connected and its
        // webhook points at the demo: `line check` passes, and a student who adds the account
        // on the sandbox's page becomes a friend in the demo's database.
        let line = log
            .lines()
            .find(|l| l.trim_start().starts_with("LINE:"))
            .and_then(|l| l.split("サンドボックス ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the demo prints the LINE sandbox's address:\n{log}"))
            .trim_end_matches('/')
            .to_string();
        let env = vec![
            ("TSUNAGU_DATA__DIR", data_s.clone()),
            ("TSUNAGU_DATABASE__URL", format!("sqlite://{}/tsunagu.db", data.display())),
            ("TSUNAGU_LINE__API_BASE_URL", line.clone()),
            ("TSUNAGU_HTTP__PUBLIC_URL", p.base.clone()),
        ];
        let check =
            tokio::task::spawn_blocking(move || tsunagu(&["line", "check", "--account", "demo@example.com"], &env))
                .await
                .unwrap();
        let out = String::from_utf8_lossy(&check.stdout).to_string();
        assert!(check.status.success(), "{out}{}", String::from_utf8_lossy(&check.stderr));
        let student = "U0000000000000000000000000000d001";
        let http = crate::helpers::http().build().unwrap();
        let page = http.get(format!("{line}/")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("山田 花子"), "the sandbox lists the demo's students:\n{page}");
        http.post(format!("{line}/users/{student}/follow?channel=2000000001")).send().await.unwrap();
        let page = http.get(format!("{line}/")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("山田 花子 さんの「友だち追加」を Webhook で送りました（応答 HTTP 200）"), "{page}");
        let db = format!("sqlite://{}/tsunagu.db", data.display());
        crate::helpers::eventually(10, "the follow reaches the demo's friend list", || {
            let db = db.clone();
            async move {
                let store = tsunagu_store::Store::open(&db, &Default::default()).await.unwrap();
                let mut c = store.conn().await.unwrap();
                let friends = tsunagu_store::line::friends(&mut c, "2000000001").await.unwrap();
                friends
                    .iter()
                    .any(|f| f.user_id == student && matches!(f.status, tsunagu_store::line::FriendStatus::Following))
            }
        })
        .await;
        if round == 0 {
            let visitor = crate::helpers::Client::new(&p.base);
            let page = visitor.get("/signup").await;
            let token = crate::helpers::csrf(&page.text);
            let r = visitor
                .post_form(
                    "/signup",
                    &[
                        ("csrf_token", token.as_str()),
                        ("name", "来訪者"),
                        ("email", "visitor@example.com"),
                        ("password", crate::helpers::PASSWORD),
                        ("password_confirm", crate::helpers::PASSWORD),
                    ],
                )
                .await;
            assert_eq!(r.status, 303);
        } else {
            assert_eq!(
                c.login("visitor@example.com", crate::helpers::PASSWORD).await.status,
                303,
                "kept across restarts"
            );
        }
        p.signal("INT");
        assert!(p.wait().await.success(), "Ctrl+C stops the demo cleanly");
    }
}
