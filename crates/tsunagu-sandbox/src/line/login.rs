//! LINE Login v2.1: the consent screen a demo visitor clicks (log in as a simulated user, with
//! the add-friend option when `bot_prompt` is set), single-use codes valid ten minutes with
//! PKCE, HS256 ID tokens signed with the Login channel's secret, profile and friendship.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Friendship, LineSandbox};
use crate::zoom::page::{esc, wrap};

pub(crate) struct Code {
    login_channel: String,
    user_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    expires: Instant,
}

#[derive(Deserialize, Default)]
pub(crate) struct AuthorizeQuery {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    bot_prompt: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
}

pub(crate) async fn consent_page(State(sb): State<LineSandbox>, Query(q): Query<AuthorizeQuery>) -> Response {
    let g = sb.lock();
    let Some((oa, login)) = g.login_channel(&q.client_id) else {
        return (StatusCode::BAD_REQUEST, Html(wrap("LINE ログイン", "<p>不明な client_id です。</p>")))
            .into_response();
    };
    if q.response_type != "code"
        || !login.redirect_uris.contains(&q.redirect_uri)
        || q.state.is_empty()
        || !q.scope.contains("openid")
    {
        return (
            StatusCode::BAD_REQUEST,
            Html(wrap(
                "LINE ログイン",
                "<p>リクエストが正しくありません（response_type, redirect_uri, state, scope）。</p>",
            )),
        )
            .into_response();
    }
    let oa_name = g.channels.get(&oa).map(|c| c.spec.display_name.clone()).unwrap_or_default();
    let mut users = String::new();
    for (i, u) in g.users.iter().enumerate() {
        users.push_str(&format!(
            "<label><input type=\"radio\" name=\"user_id\" value=\"{}\"{}> {}</label><br>",
            esc(&u.user_id),
            if i == 0 { " checked" } else { "" },
            esc(&u.display_name)
        ));
    }
    let add_friend = if q.bot_prompt.is_empty() {
        String::new()
    } else {
        format!(
            "<p><label><input type=\"checkbox\" name=\"add_friend\" value=\"1\"> {} を友だち追加</label></p>",
            esc(&oa_name)
        )
    };
    let hidden: String = [
        ("client_id", &q.client_id),
        ("redirect_uri", &q.redirect_uri),
        ("state", &q.state),
        ("nonce", &q.nonce),
        ("bot_prompt", &q.bot_prompt),
        ("code_challenge", &q.code_challenge),
        ("code_challenge_method", &q.code_challenge_method),
    ]
    .iter()
    .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
    .collect();
    let body = format!(
        "<p>（サンドボックス）LINE にログインして、サービスに次の情報の利用を許可します: プロフィール情報、ID。</p>\
         <form method=\"post\" action=\"/oauth2/v2.1/authorize\">{hidden}\
         <fieldset><legend>ログインする LINE ユーザー</legend>{users}</fieldset>{add_friend}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">許可する</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">キャンセル</button></form>"
    );
    Html(wrap("LINE ログイン（サンドボックス）", &body)).into_response()
}

#[derive(Deserialize, Default)]
pub(crate) struct ConsentForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    bot_prompt: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    add_friend: String,
    #[serde(default)]
    decision: String,
}

pub(crate) async fn consent_submit(State(sb): State<LineSandbox>, body: String) -> Response {
    let f: ConsentForm = serde_urlencoded::from_str(&body).unwrap_or_default();
    let state = serde_urlencoded::to_string([("state", f.state.as_str())]).unwrap_or_default();
    let (redirect, follow_oa) = {
        let mut g = sb.lock();
        let Some((oa, login)) = g.login_channel(&f.client_id) else {
            return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
        };
        if !login.redirect_uris.contains(&f.redirect_uri) || g.user(&f.user_id).is_none() && f.decision == "allow" {
            return (StatusCode::BAD_REQUEST, "bad request").into_response();
        }
        let sep = if f.redirect_uri.contains('?') { '&' } else { '?' };
        if f.decision != "allow" {
            let to = format!(
                "{}{sep}error=ACCESS_DENIED&error_description=The+resource+owner+denied+the+request.&{state}",
                f.redirect_uri
            );
            return Redirect::to(&to).into_response();
        }
        let code = g.token(20);
        g.login_codes.insert(
            code.clone(),
            Code {
                login_channel: f.client_id.clone(),
                user_id: f.user_id.clone(),
                redirect_uri: f.redirect_uri.clone(),
                nonce: Some(f.nonce.clone()).filter(|n| !n.is_empty()),
                challenge: Some(f.code_challenge.clone()).filter(|c| !c.is_empty()),
                expires: Instant::now() + Duration::from_secs(600),
            },
        );
        // The add-friend option is shown only with bot_prompt and when not already a friend.
        let status = g.channels.get(&oa).and_then(|c| c.friends.get(&f.user_id)).copied();
        let shown = !f.bot_prompt.is_empty() && status != Some(Friendship::Friend);
        let added = shown && f.add_friend == "1";
        let mut to = format!("{}{sep}code={code}&{state}", f.redirect_uri);
        if shown {
            to.push_str(&format!("&friendship_status_changed={added}"));
        }
        (to, added.then_some(oa))
    };
    // Adding the friend sends the official account a follow webhook, as LINE does.
    if let Some(oa) = follow_oa {
        let _ = sb.follow(&oa, &f.user_id).await;
    }
    Redirect::to(&redirect).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

pub(crate) async fn token(State(sb): State<LineSandbox>, body: String) -> Response {
    let f: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut g = sb.lock();
    let Some((_, login)) = g.login_channel(&get("client_id")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "invalid client_id");
    };
    if login.channel_secret != get("client_secret") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "invalid client_secret");
    }
    if get("grant_type") != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "unsupported grant_type");
    }
    // Single use, even when what follows fails.
    let Some(code) = g.login_codes.remove(&get("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid authorization code");
    };
    if code.login_channel != login.channel_id || code.expires < Instant::now() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid authorization code");
    }
    if code.redirect_uri != get("redirect_uri") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri does not match");
    }
    if let Some(challenge) = &code.challenge {
        let verifier = get("code_verifier");
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier does not match");
        }
    }
    let name = g.user(&code.user_id).map(|u| u.display_name.clone()).unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    let mut claims = json!({
        "iss": "https://access.line.me", "sub": code.user_id, "aud": login.channel_id,
        "exp": now + 3600, "iat": now, "amr": ["pwd"], "name": name
    });
    if let Some(n) = &code.nonce {
        claims["nonce"] = json!(n);
    }
    let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(login.channel_secret.as_bytes()).expect("any key length");
    mac.update(format!("{h}.{p}").as_bytes());
    let id_token = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    let access = g.token(40);
    let refresh = g.token(30);
    g.login_tokens.insert(access.clone(), (login.channel_id.clone(), code.user_id.clone()));
    axum::Json(json!({
        "access_token": access, "expires_in": 2_592_000, "id_token": id_token,
        "refresh_token": refresh, "scope": "openid profile", "token_type": "Bearer"
    }))
    .into_response()
}

fn user_of(sb: &LineSandbox, headers: &HeaderMap) -> Option<(String, String)> {
    let t = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    sb.lock().login_tokens.get(t).cloned()
}

pub(crate) async fn profile(State(sb): State<LineSandbox>, headers: HeaderMap) -> Response {
    let Some((_, user)) = user_of(&sb, &headers) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "invalid access token");
    };
    let name = sb.lock().user(&user).map(|u| u.display_name.clone()).unwrap_or_default();
    axum::Json(json!({"userId": user, "displayName": name})).into_response()
}

pub(crate) async fn friendship(State(sb): State<LineSandbox>, headers: HeaderMap) -> Response {
    let Some((login, user)) = user_of(&sb, &headers) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "invalid access token");
    };
    let g = sb.lock();
    let friend =
        g.login_channel(&login).and_then(|(oa, _)| g.channels.get(&oa).and_then(|c| c.friends.get(&user)).copied())
            == Some(Friendship::Friend);
    axum::Json(json!({"friendFlag": friend})).into_response()
}
