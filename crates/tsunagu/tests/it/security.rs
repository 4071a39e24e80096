use std::time::Duration;

use crate::helpers::{PASSWORD, Process, TempDir, TestApp, csrf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_data_answers_404() {
    let t = TestApp::spawn().await;
    let alice = t.signup("alice@example.com", "アリス").await;
    let bob = t.signup("bob@example.com", "ボブ").await;
    t.run_jobs().await;
    let mut c = t.app.store.read().await.unwrap();
    let all = tsunagu_store::mails::list_all(&mut c, 10).await.unwrap();
    let alice_mail = all.iter().find(|m| m.to_address == "alice@example.com").unwrap().id;
    let bob_mail = all.iter().find(|m| m.to_address == "bob@example.com").unwrap().id;

    assert_eq!(alice.get(&format!("/mails/{alice_mail}")).await.status, 200);
    let r = bob.get(&format!("/mails/{alice_mail}")).await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("ページが見つかりません") && r.text.contains("操作ID"));
    assert!(!r.text.contains("alice@example.com"));
    assert_eq!(bob.get(&format!("/mails/{bob_mail}")).await.status, 200);
    assert_eq!(bob.get("/mails/not-a-number").await.status, 404);
    assert!(!bob.get("/mails").await.text.contains("alice@example.com"), "lists are scoped too");

    // Administrator pages are not for members.
    assert_eq!(bob.get("/admin/accounts").await.status, 403);
    let token = csrf(&bob.get("/home").await.text);
    let r = bob.post_form("/admin/accounts/1/plan", &[("csrf_token", &token), ("plan", "special")]).await;
    assert_eq!(r.status, 403);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_a_valid_csrf_token_are_refused() {
    let t = TestApp::spawn().await;
    let c = t.signup("csrf@example.com", "シーサーフ").await;
    let form =
        [("current", PASSWORD), ("new_password", "changed-password-1"), ("new_password_confirm", "changed-password-1")];
    // Missing token.
    let r = c.post_form("/account/password", &form).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("ページを再読み込み"), "{}", r.text);
    // Wrong token.
    let mut bad = vec![("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")];
    bad.extend_from_slice(&form);
    assert_eq!(c.post_form("/account/password", &bad).await.status, 403);
    // Another browser's valid token (a login-page token of an anonymous visitor).
    let stranger = t.client();
    let foreign = csrf(&stranger.get("/login").await.text);
    let mut other = vec![("csrf_token", foreign.as_str())];
    other.extend_from_slice(&form);
    assert_eq!(c.post_form("/account/password", &other).await.status, 403);
    // Nothing changed: the old password still works.
    assert_eq!(t.client().login("csrf@example.com", PASSWORD).await.status, 303);
    // Log-in without the page's cookie and token is refused too.
    let fresh = t.client();
    let r = fresh.post_form("/login", &[("email", "csrf@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 403);
    // The header form works for scripts that hold the token.
    let token = csrf(&c.get("/home").await.text);
    let http = crate::helpers::http().build().unwrap();
    let r = http.post(format!("{}/logout", t.addr)).header("x-csrf-token", token).send().await.unwrap();
    assert_eq!(r.status(), 403, "the token alone is useless without the session cookie");
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_are_slowed_then_refused() {
    let t = TestApp::spawn().await;
    t.signup("target@example.com", "標的").await;
    let c = t.client();
    for _ in 0..3 {
        assert_eq!(c.login("target@example.com", "wrong-password").await.status, 401);
    }
    // Slowed: even the right password must wait.
    let r = c.login("target@example.com", PASSWORD).await;
    assert_eq!(r.status, 429);
    assert!(r.text.contains("秒後にもう一度お試しください"), "{}", r.text);
    t.clock.advance(1_100);
    assert_eq!(c.login("target@example.com", "wrong-password").await.status, 401);
    // Keep failing, waiting out each delay, until the account is refused outright.
    for _ in 0..6 {
        t.clock.advance(61_000);
        assert_eq!(c.login("target@example.com", "wrong-password").await.status, 401);
    }
    t.clock.advance(61_000);
    let r = c.login("target@example.com", PASSWORD).await;
    assert_eq!(r.status, 429);
    assert!(r.text.contains("分後にもう一度お試しください"), "{}", r.text);
    // Another address from the same IP is not locked yet (per-email), and after 15 minutes
    // the right password works again.
    t.clock.advance(15 * 60 * 1000 + 1);
    assert_eq!(c.login("target@example.com", PASSWORD).await.status, 303);
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_from_one_ip_are_throttled_per_ip() {
    let t = TestApp::spawn().await;
    let c = t.client();
    for i in 0..10 {
        assert_eq!(c.login(&format!("nobody{i}@example.com"), "whatever-password").await.status, 401);
    }
    let r = c.login("nobody99@example.com", "whatever-password").await;
    assert_eq!(r.status, 429, "the IP is slowed although each email failed once");
    // People behind the same router who know their password are not kept waiting: once the
    // wait is over, a correct log-in lifts the address's block for the next person too.
    t.signup("office1@example.com", "事務所1").await;
    t.signup("office2@example.com", "事務所2").await;
    t.clock.advance(5_000);
    assert_eq!(t.client().login("office1@example.com", crate::helpers::PASSWORD).await.status, 303);
    assert_eq!(t.client().login("office2@example.com", crate::helpers::PASSWORD).await.status, 303);
    // A further failure from the address is slowed again at once.
    assert_eq!(c.login("nobody100@example.com", "whatever-password").await.status, 401);
    assert_eq!(c.login("nobody101@example.com", "whatever-password").await.status, 429);
    t.assert_no_jobs_left().await;
}

/// A secret typed into 基本設定 is never in a page, a log line or the database file in plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_entered_in_a_form_never_appears_in_plain_text() {
    let dir = TempDir::new("tsunagu-secret");
    let db = dir.path().join("tsunagu.db");
    let env = [
        ("TSUNAGU_DATA__DIR", dir.path().display().to_string()),
        ("TSUNAGU_DATABASE__URL", format!("sqlite://{}", db.display())),
        ("TSUNAGU_LOG__LEVEL", "trace".to_string()),
        ("TSUNAGU_LOG__FORMAT", "json".to_string()),
    ];
    let mut p = Process::serve(&env, dir.path().join("serve.log")).await;
    let c = crate::helpers::Client::new(&p.base);
    let token = csrf(&c.get("/signup").await.text);
    let r = c
        .post_form(
            "/signup",
            &[
                ("csrf_token", &token),
                ("name", "秘密"),
                ("email", "secret@example.com"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let secret = "zS3cr3t-Zoom-Client-Secret-9f8e7d6c";
    let r = c
        .submit(
            "/settings/basic",
            "/settings/basic",
            &[
                ("auth_method", "s2s"),
                ("zoom_account_id", "acc-123"),
                ("client_id", "cid-456"),
                ("client_secret", secret),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = c.get("/settings/basic").await.text;
    assert!(page.contains("保存しました") && page.contains("設定済み") && page.contains("acc-123"));
    assert!(!page.contains(secret), "secret rendered back");
    // A failed save keeps the other fields and still never echoes the secret.
    let r = c
        .submit(
            "/settings/basic",
            "/settings/basic",
            &[("auth_method", "s2s"), ("zoom_account_id", ""), ("client_id", "cid-456"), ("client_secret", secret)],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("［zoom (Account Id)］を入力してください") && !r.text.contains(secret));

    // An error page's operation id is the one in the log line.
    let missing = c.get("/no-such-page").await;
    let op_id = missing.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(missing.text.contains(&op_id));
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("TERM");
    assert!(p.wait().await.success());
    let log = p.log_text();
    assert!(log.contains("zoom credentials saved"), "the save was logged:\n{log}");
    let refusal = log.lines().find(|l| l.contains("request refused") && l.contains(&op_id));
    assert!(refusal.is_some_and(|l| l.contains("\"status\":404")), "op id {op_id} not in the log:\n{log}");
    assert!(!log.contains(secret), "secret in the log");
    assert!(!log.contains(PASSWORD), "password in the log");
    let mut files = Vec::new();
    let mut dirs = vec![dir.path().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(secret), "secret in plain text in {}", path.display());
        assert!(!hay.contains(PASSWORD), "password in plain text in {}", path.display());
    }
    // And it is there, sealed, and opens with the master key.
    let store = tsunagu_store::Store::open(&format!("sqlite://{}", db.display()), &Default::default()).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let acc = tsunagu_store::accounts::list_all(&mut conn).await.unwrap()[0].id;
    let sealed = tsunagu_store::secrets::get(&mut conn, acc, "zoom.client_secret").await.unwrap().unwrap();
    let ring = tsunagu::crypto::Keyring::load_file(&dir.path().join("master.key")).unwrap();
    let aad = tsunagu::crypto::secret_aad(acc, "zoom.client_secret");
    assert_eq!(ring.open(&sealed.key_id, &sealed.sealed, &aad).unwrap(), secret);
}

/// Parallel guesses are counted before the password is checked: they cannot slip past the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_outrun_the_throttle() {
    let t = TestApp::spawn().await;
    t.signup("parallel@example.com", "並列").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let c = t.client();
        tasks.push(tokio::spawn(async move { c.login("parallel@example.com", "wrong-password").await.status }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((checked, refused), (3, 9), "{statuses:?}");
    t.assert_no_jobs_left().await;
}
