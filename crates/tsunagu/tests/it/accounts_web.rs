use tsunagu_store::mails;

use crate::helpers::{PASSWORD, TestApp, csrf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_login_logout_and_welcome_mail() {
    let t = TestApp::spawn().await;
    let c = t.signup("Hanako@Example.com", "山田 花子").await;
    let home = c.get("/home").await;
    assert_eq!(home.status, 200);
    // The cookie's lifetime slides with the session's.
    let refreshed = home.headers.get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("tsunagu_session=") && v.contains("Max-Age=1209600") && v.contains("HttpOnly")
    });
    assert!(refreshed, "{:?}", home.headers);
    assert!(home.text.contains("山田 花子") && home.text.contains("フリー"), "{}", home.text);
    assert!(home.text.contains("アカウントを作成しました"), "flash shown once");
    assert!(!c.get("/home").await.text.contains("アカウントを作成しました"), "flash cleared");

    // The welcome mail is queued with the account, delivered once by the job.
    assert_eq!(t.run_jobs().await, 1);
    let list = c.get("/mails").await.text;
    assert!(list.contains("【Tsunagu】アカウントを作成しました") && list.contains("hanako@example.com"), "{list}");

    let r = c.submit("/home", "/logout", &[]).await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/login")));
    let r = c.get("/home").await;
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/login?next=%2Fhome")));

    let bad = c.login("hanako@example.com", "wrong-password!").await;
    assert_eq!(bad.status, 401);
    assert!(bad.text.contains("メールアドレスまたはパスワードが正しくありません"));
    assert!(bad.text.contains("value=\"hanako@example.com\""), "typed email kept");
    let ok = c.login("HANAKO@example.com", PASSWORD).await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/home")));
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_mistakes_are_explained_in_japanese_and_keep_input() {
    let t = TestApp::spawn().await;
    let c = t.client();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("name", "太郎"), ("email", "not-an-email"), ("password", PASSWORD), ("password_confirm", PASSWORD)],
            "メールアドレスの形式",
        ),
        (
            &[("name", ""), ("email", "t@example.com"), ("password", PASSWORD), ("password_confirm", PASSWORD)],
            "お名前を入力",
        ),
        (
            &[("name", "太郎"), ("email", "t@example.com"), ("password", "short"), ("password_confirm", "short")],
            "10文字以上",
        ),
        (
            &[
                ("name", "太郎"),
                ("email", "t@example.com"),
                ("password", PASSWORD),
                ("password_confirm", "different-one"),
            ],
            "一致しません",
        ),
    ];
    for (form, expected) in cases {
        let r = c.submit("/signup", "/signup", form).await;
        assert_eq!(r.status, 422);
        assert!(r.text.contains(expected), "expected {expected} in {}", r.text);
    }
    let r = c
        .submit(
            "/signup",
            "/signup",
            &[("name", "太郎"), ("email", "bad"), ("password", PASSWORD), ("password_confirm", PASSWORD)],
        )
        .await;
    assert!(r.text.contains("value=\"太郎\"") && r.text.contains("value=\"bad\""), "input kept");
    t.signup("taken@example.com", "先客").await;
    let r = c
        .submit(
            "/signup",
            "/signup",
            &[
                ("name", "後から"),
                ("email", "TAKEN@example.com"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("すでに登録されています"));
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_other_sessions_and_mails_once() {
    let t = TestApp::spawn().await;
    let a = t.signup("kenji@example.com", "健二").await;
    let other_device = t.client();
    assert_eq!(other_device.login("kenji@example.com", PASSWORD).await.status, 303);

    let wrong = a
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", "nope-nope-nope"),
                ("new_password", "new-password-123"),
                ("new_password_confirm", "new-password-123"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.text.contains("現在のパスワードが正しくありません"));

    let same = a
        .submit(
            "/account/password",
            "/account/password",
            &[("current", PASSWORD), ("new_password", PASSWORD), ("new_password_confirm", PASSWORD)],
        )
        .await;
    assert_eq!(same.status, 422);
    assert!(same.text.contains("現在のパスワードと同じです"));
    let ok = a
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", PASSWORD),
                ("new_password", "new-password-123"),
                ("new_password_confirm", "new-password-123"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(a.get("/home").await.status, 200, "this session stays");
    assert_eq!(other_device.get("/home").await.status, 303, "other sessions ended");
    assert_eq!(t.client().login("kenji@example.com", PASSWORD).await.status, 401);
    assert_eq!(t.client().login("kenji@example.com", "new-password-123").await.status, 303);

    t.run_jobs().await;
    let mut c = t.app.store.read().await.unwrap();
    let all = mails::list_all(&mut c, 10).await.unwrap();
    let changed: Vec<_> = all.iter().filter(|m| m.subject.contains("パスワードが変更されました")).collect();
    assert_eq!(changed.len(), 1, "one mail for one change");
    assert_eq!(changed[0].status, "stored");
    t.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_work_on_another_instance() {
    let t = TestApp::spawn().await;
    let c = t.signup("restart@example.com", "再起動").await;
    t.run_jobs().await;
    let config = t.app.config.clone();
    let dir = t.stop().await;
    // A new process on the same database and master key file.
    let t2 = TestApp::start(config.clone(), dir).await;
    assert_eq!(
        crate::helpers::Client::new(&t2.addr).get("/home").await.status,
        303,
        "a fresh browser is not logged in"
    );
    let same_browser = c.carry_to(&t2.addr);
    let home = same_browser.get("/home").await;
    assert_eq!(home.status, 200, "the session survived the restart");
    assert!(home.text.contains("再起動"));
    // And a second instance on the same database accepts it at the same time.
    let mut config3 = config;
    config3.http.listen = "127.0.0.1:0".into();
    let t3 = TestApp::start(config3, crate::helpers::TempDir::new("unused")).await;
    assert_eq!(c.carry_to(&t3.addr).get("/home").await.status, 200);
    t2.assert_no_jobs_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_page_keeps_next_but_only_local_paths() {
    let t = TestApp::spawn().await;
    t.signup("next@example.com", "次").await;
    let c = t.client();
    let page = c.get("/login?next=//evil.example/x").await;
    assert!(page.text.contains("name=\"next\" value=\"/home\""), "{}", page.text);
    let token = csrf(&page.text);
    let r = c
        .post_form(
            "/login",
            &[
                ("csrf_token", &token),
                ("email", "next@example.com"),
                ("password", PASSWORD),
                ("next", "/settings/basic"),
            ],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/settings/basic"));
    t.assert_no_jobs_left().await;
}
