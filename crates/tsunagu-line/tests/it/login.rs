//! LINE Login against the sandbox: the consent screen with the add-friend option, the code
//! exchange with PKCE, the ID token, profile and friendship, and the follow webhook that adding
//! the friend triggers.

use tsunagu_line::login::{self, BotPrompt, Callback, LoginChannel};
use tsunagu_sandbox::line::SimUser;

use crate::support::*;

fn login_channel() -> LoginChannel {
    LoginChannel { id: LOGIN.into(), secret: LOGIN_SECRET.into(), redirect_uri: REDIRECT.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_logs_in_adds_the_friend_and_is_identified() {
    let l = Line::start(None, |_| {}).await;
    let student = l.sb.new_user_id();
    l.sb.add_user(SimUser { user_id: student.clone(), display_name: "受講生".into() });
    let (state, nonce, verifier) = (login::random_state(), login::random_state(), login::pkce_verifier());
    let url = login::authorize_url(&l.base, &login_channel(), &state, &nonce, &verifier, Some(BotPrompt::Aggressive));
    let http = l.client.http().clone();
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("友だち追加") && page.contains("許可する"), "{page}");

    // The student ticks the add-friend box and allows.
    let query = url.split_once('?').unwrap().1;
    let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let mut form: Vec<(String, String)> = q.into_iter().filter(|(k, _)| k != "response_type" && k != "scope").collect();
    form.push(("user_id".into(), student.clone()));
    form.push(("add_friend".into(), "1".into()));
    form.push(("decision".into(), "allow".into()));
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect.post(format!("{}/oauth2/v2.1/authorize", l.base)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let cb = Callback::parse(location.split_once('?').unwrap().1).unwrap();
    let Callback::Code { code, state: back, friendship_status_changed } = cb else { panic!("{location}") };
    assert_eq!(back, state);
    assert_eq!(friendship_status_changed, Some(true));

    // A wrong verifier is refused, and the code is then spent.
    assert!(
        login::exchange_code(&http, &l.base, &login_channel(), &code, "wrong-verifier-wrong-verifier-wrong-verifier")
            .await
            .is_err()
    );
    let (state2, nonce2, verifier2) = (login::random_state(), login::random_state(), login::pkce_verifier());
    let url2 = login::authorize_url(&l.base, &login_channel(), &state2, &nonce2, &verifier2, Some(BotPrompt::Normal));
    let q: Vec<(String, String)> = serde_urlencoded::from_str(url2.split_once('?').unwrap().1).unwrap();
    let mut form: Vec<(String, String)> = q.into_iter().filter(|(k, _)| k != "response_type" && k != "scope").collect();
    form.push(("user_id".into(), student.clone()));
    form.push(("decision".into(), "allow".into()));
    let resp = no_redirect.post(format!("{}/oauth2/v2.1/authorize", l.base)).form(&form).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let Callback::Code { code, friendship_status_changed, .. } =
        Callback::parse(location.split_once('?').unwrap().1).unwrap()
    else {
        panic!()
    };
    assert_eq!(friendship_status_changed, None, "already a friend: the option is not shown");
    let tokens = login::exchange_code(&http, &l.base, &login_channel(), &code, &verifier2).await.unwrap();
    let claims = login::verify_id_token(
        tokens.id_token.as_deref().unwrap(),
        &login_channel(),
        &nonce2,
        jiff::Timestamp::now().as_second(),
    )
    .unwrap();
    assert_eq!(claims.sub, student, "the user id in the official account's provider");
    assert_eq!(login::profile(&http, &l.base, &tokens.access_token).await.unwrap().display_name, "受講生");
    assert!(login::friendship(&http, &l.base, &tokens.access_token).await.unwrap());
    assert!(login::exchange_code(&http, &l.base, &login_channel(), &code, &verifier2).await.is_err(), "single use");

    // Cancelling comes back as ACCESS_DENIED.
    let q: Vec<(String, String)> = serde_urlencoded::from_str(url2.split_once('?').unwrap().1).unwrap();
    let mut form: Vec<(String, String)> = q.into_iter().filter(|(k, _)| k != "response_type" && k != "scope").collect();
    form.push(("user_id".into(), student.clone()));
    form.push(("decision".into(), "deny".into()));
    let resp = no_redirect.post(format!("{}/oauth2/v2.1/authorize", l.base)).form(&form).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(Callback::parse(location.split_once('?').unwrap().1).unwrap().cancelled());
}
