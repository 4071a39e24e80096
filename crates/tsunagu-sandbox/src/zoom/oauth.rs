//! `/oauth/token` and `/oauth/authorize` (NOTES §1.1–1.3): Server-to-Server tokens for
//! `account_credentials`; for OAuth apps a consent page, single-use codes valid ten minutes,
//! and refresh tokens that rotate (a used refresh token is dead). Errors in Zoom's OAuth shape
//! `{"reason", "error"}`.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::{Exchange, Inner, Issued, ZoomSandbox};

pub(crate) struct Code {
    client_id: String,
    user_id: String,
    account_id: String,
    redirect_uri: String,
    expires: Instant,
}

pub(crate) struct RefreshGrant {
    client_id: String,
    user_id: String,
    account_id: String,
}

const CODE_TTL: Duration = Duration::from_secs(600);

#[derive(Deserialize, Default)]
pub(crate) struct TokenParams {
    grant_type: Option<String>,
    account_id: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
}

fn oauth_error(status: StatusCode, reason: &str, error: &str) -> (StatusCode, serde_json::Value) {
    (status, json!({"reason": reason, "error": error}))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn mint(
    g: &mut Inner,
    account_id: &str,
    user_id: Option<String>,
    scopes: &[String],
    refresh: Option<(&str, &str)>,
) -> serde_json::Value {
    let access_token = format!("sbx-at-{}", g.token(40));
    let ttl = g.ttl.unwrap_or(Duration::from_secs(3600));
    g.tokens.insert(
        access_token.clone(),
        Issued {
            account_id: account_id.to_string(),
            user_id: user_id.clone(),
            scopes: scopes.to_vec(),
            expires: Instant::now() + ttl,
        },
    );
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
        "scope": scopes.join(" "),
        "api_url": "https://api.zoom.us"
    });
    if let (Some((client_id, _)), Some(user_id)) = (refresh, user_id) {
        let refresh_token = format!("sbx-rt-{}", g.token(48));
        g.refresh.insert(
            refresh_token.clone(),
            RefreshGrant { client_id: client_id.to_string(), user_id, account_id: account_id.to_string() },
        );
        answer["refresh_token"] = json!(refresh_token);
    }
    answer
}

pub(crate) fn issue_code(g: &mut Inner, client_id: &str, email: &str) -> Option<String> {
    let app = g.oauth_apps.iter().find(|a| a.client_id == client_id)?.clone();
    let user = g.users.iter().find(|u| u.email.eq_ignore_ascii_case(email))?.clone();
    let code = g.token(32);
    g.codes.insert(
        code.clone(),
        Code {
            client_id: app.client_id,
            user_id: user.id,
            account_id: user.account_id,
            redirect_uri: app.redirect_uri,
            expires: Instant::now() + CODE_TTL,
        },
    );
    Some(code)
}

fn grant(g: &mut Inner, query: TokenParams, headers: &HeaderMap, body: &str) -> (StatusCode, serde_json::Value) {
    // Zoom documents the parameters in the query; its SDK sends them as a form body.
    let form: TokenParams = serde_urlencoded::from_str(body).unwrap_or_default();
    let pick = |a: Option<String>, b: Option<String>| a.or(b).unwrap_or_default();
    let grant_type = pick(query.grant_type, form.grant_type);
    g.token_requests += 1;
    let Some((client_id, secret)) = basic_credentials(headers) else {
        return oauth_error(StatusCode::BAD_REQUEST, "Invalid client_id or client_secret", "invalid_client");
    };
    match grant_type.as_str() {
        "account_credentials" => {
            let Some(app) = g.apps.iter().find(|a| a.client_id == client_id && a.client_secret == secret).cloned()
            else {
                return oauth_error(StatusCode::BAD_REQUEST, "Invalid client_id or client_secret", "invalid_client");
            };
            if pick(query.account_id, form.account_id) != app.account_id {
                return oauth_error(StatusCode::BAD_REQUEST, "Invalid account_id", "invalid_request");
            }
            (StatusCode::OK, mint(g, &app.account_id, None, &app.scopes, None))
        }
        "authorization_code" | "refresh_token" => {
            let Some(app) =
                g.oauth_apps.iter().find(|a| a.client_id == client_id && a.client_secret == secret).cloned()
            else {
                // An S2S app's credentials with this grant: Zoom's 4705 case.
                return oauth_error(StatusCode::BAD_REQUEST, "Invalid client_id or client_secret", "invalid_client");
            };
            let (user_id, account_id) = if grant_type == "authorization_code" {
                let code = pick(query.code, form.code);
                let Some(c) = g.codes.remove(&code) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "Invalid authorization code", "invalid_grant");
                };
                if c.client_id != app.client_id || c.expires < Instant::now() {
                    return oauth_error(StatusCode::BAD_REQUEST, "Invalid authorization code", "invalid_grant");
                }
                if pick(query.redirect_uri, form.redirect_uri) != c.redirect_uri {
                    return oauth_error(StatusCode::BAD_REQUEST, "Redirect URI mismatch.", "invalid_request");
                }
                (c.user_id, c.account_id)
            } else {
                let rt = pick(query.refresh_token, form.refresh_token);
                // Rotation: the refresh token is spent whatever happens next.
                let Some(r) = g.refresh.remove(&rt) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "Invalid Token!", "invalid_request");
                };
                if r.client_id != app.client_id {
                    return oauth_error(StatusCode::BAD_REQUEST, "Invalid Token!", "invalid_request");
                }
                (r.user_id, r.account_id)
            };
            let answer = mint(g, &account_id, Some(user_id), &app.scopes, Some((&app.client_id, &secret)));
            (StatusCode::OK, answer)
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "Unsupported grant type", "unsupported_grant_type"),
    }
}

pub(crate) async fn token(
    State(sb): State<ZoomSandbox>,
    Query(query): Query<TokenParams>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let latency = sb.lock().token_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut g = sb.lock();
    let (status, answer) = grant(&mut g, query, &headers, &body);
    let text = answer.to_string();
    g.record(Exchange {
        method: "POST".into(),
        path: "/oauth/token".into(),
        query: uri.query().unwrap_or("").to_string(),
        status: status.as_u16(),
        request_body: String::new(),
        response_body: text.clone(),
        response_headers: vec![("content-type".into(), "application/json".into())],
    });
    (status, [("content-type", "application/json")], text).into_response()
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
}

/// The consent screen: pick the sandbox user who logs in, then 許可する.
pub(crate) async fn consent_page(State(sb): State<ZoomSandbox>, Query(q): Query<AuthorizeQuery>) -> Response {
    let g = sb.lock();
    let Some(app) = g.oauth_apps.iter().find(|a| a.client_id == q.client_id) else {
        return (StatusCode::BAD_REQUEST, Html(super::page::wrap("エラー", "<p>不明な client_id です。</p>")))
            .into_response();
    };
    if q.response_type != "code" || q.redirect_uri != app.redirect_uri {
        return (
            StatusCode::BAD_REQUEST,
            Html(super::page::wrap("エラー", "<p>redirect_uri または response_type が正しくありません。</p>")),
        )
            .into_response();
    }
    let esc = super::page::esc;
    let mut users = String::new();
    for (i, u) in g.users.iter().enumerate() {
        users.push_str(&format!(
            "<label><input type=\"radio\" name=\"email\" value=\"{}\"{}> {} {}（{}）</label><br>",
            esc(&u.email),
            if i == 0 { " checked" } else { "" },
            esc(&u.last_name),
            esc(&u.first_name),
            esc(&u.email)
        ));
    }
    let body = format!(
        "<p>アプリ <strong>{}</strong> が、あなたの Zoom アカウントへのアクセスを求めています。</p>\
         <p>要求しているスコープ: {}</p>\
         <form method=\"post\" action=\"/oauth/authorize\">\
         <input type=\"hidden\" name=\"client_id\" value=\"{}\">\
         <input type=\"hidden\" name=\"redirect_uri\" value=\"{}\">\
         <input type=\"hidden\" name=\"state\" value=\"{}\">\
         <fieldset><legend>ログインするユーザー</legend>{users}</fieldset>\
         <button type=\"submit\" name=\"decision\" value=\"allow\">許可する</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">拒否する</button></form>",
        esc(&app.client_id),
        esc(&app.scopes.join(" ")),
        esc(&q.client_id),
        esc(&q.redirect_uri),
        esc(&q.state)
    );
    Html(super::page::wrap("Zoom（サンドボックス）: アプリの承認", &body)).into_response()
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
    email: String,
    #[serde(default)]
    decision: String,
}

pub(crate) async fn consent_submit(State(sb): State<ZoomSandbox>, body: String) -> Response {
    let f: ConsentForm = serde_urlencoded::from_str(&body).unwrap_or_default();
    let mut g = sb.lock();
    let Some(app) = g.oauth_apps.iter().find(|a| a.client_id == f.client_id).cloned() else {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    };
    if app.redirect_uri != f.redirect_uri {
        return (StatusCode::BAD_REQUEST, "redirect_uri mismatch").into_response();
    }
    let sep = if app.redirect_uri.contains('?') { '&' } else { '?' };
    let state = serde_urlencoded::to_string([("state", f.state.as_str())]).unwrap_or_default();
    if f.decision != "allow" {
        return Redirect::to(&format!("{}{sep}error=access_denied&{state}", app.redirect_uri)).into_response();
    }
    let Some(code) = issue_code(&mut g, &app.client_id, &f.email) else {
        return (StatusCode::BAD_REQUEST, "unknown user").into_response();
    };
    Redirect::to(&format!("{}{sep}code={code}&{state}", app.redirect_uri)).into_response()
}
