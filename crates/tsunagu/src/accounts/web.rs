//! Sign-up, log-in, log-out and password change.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tsunagu_core::{Email, Plan, Role};

use crate::accounts::{self, MIN_PASSWORD_CHARS, SignupInput, throttle};
use crate::app::SharedApp;
use crate::web::chrome::Chrome;
use crate::web::context::{RequestContext, flash_redirect};
use crate::web::error::AppError;
use crate::web::session::{self, Auth, with_cookie};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
    email: String,
    next: String,
    allow_signup: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    chrome: Chrome,
    error: Option<String>,
    name: String,
    email: String,
    min_password: usize,
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    chrome: Chrome,
    error: Option<String>,
    min_password: usize,
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Only plain local paths, so a crafted link cannot send someone elsewhere after log-in.
/// Browsers drop tabs and newlines inside URLs ("/\t/evil" becomes "//evil"), so only visible
/// ASCII is accepted.
pub fn safe_next(next: &str) -> &str {
    let plain = next.chars().all(|c| c.is_ascii_graphic());
    if plain && next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') { next } else { "/home" }
}

pub async fn root(ctx: RequestContext) -> Redirect {
    if ctx.session_hash.is_some() { Redirect::to("/home") } else { Redirect::to("/login") }
}

pub async fn login_form(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Query(q): Query<NextQuery>,
) -> Result<Html<String>, AppError> {
    let page = LoginPage {
        chrome: Chrome::public(&ctx, "ログイン"),
        error: None,
        email: String::new(),
        next: safe_next(&q.next).to_string(),
        allow_signup: app.config.accounts.allow_signup,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let next = safe_next(&form.next).to_string();
    let render = |status: StatusCode, msg: String| -> Result<Response, AppError> {
        let page = LoginPage {
            chrome: Chrome::public(&ctx, "ログイン"),
            error: Some(msg),
            email: form.email.clone(),
            next: next.clone(),
            allow_signup: app.config.accounts.allow_signup,
        };
        Ok((status, Html(page.render()?)).into_response())
    };
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return render(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let keys = [
        (throttle::email_key(email.as_str()), throttle::EMAIL_LIMITS),
        (throttle::ip_key(&ctx.client_ip), throttle::IP_LIMITS),
    ];
    let now = app.now();
    let gate = throttle::charge(&app.store, &keys, now).await?;
    if let Some(msg) = gate.message() {
        tracing::warn!(client_ip = %ctx.client_ip, "log-in refused by throttle");
        return render(StatusCode::TOO_MANY_REQUESTS, msg);
    }
    match accounts::verify_login(&app, &email, &form.password).await? {
        Some(account) => {
            throttle::refund(&app.store, &keys[0].0, &keys[1].0, throttle::IP_LIMITS, now).await?;
            if let Some(previous) = &ctx.session_hash {
                // Whatever session this browser had before is replaced, not kept alive.
                let _ = session::end(&app, previous).await;
            }
            let cookie = session::start(&app, &account).await?;
            tracing::info!(account_id = %account.id, "logged in");
            Ok(with_cookie(Redirect::to(&next).into_response(), cookie))
        }
        None => {
            tracing::info!(client_ip = %ctx.client_ip, "log-in failed");
            render(StatusCode::UNAUTHORIZED, "メールアドレスまたはパスワードが正しくありません。".into())
        }
    }
}

pub async fn logout(State(app): State<SharedApp>, ctx: RequestContext) -> Result<Response, AppError> {
    let resp = flash_redirect(&app, "/login", "info", "ログアウトしました。");
    match ctx.session_hash {
        Some(h) => Ok(with_cookie(resp, session::end(&app, &h).await?)),
        None => Ok(resp),
    }
}

pub async fn signup_form(State(app): State<SharedApp>, ctx: RequestContext) -> Result<Html<String>, AppError> {
    if !app.config.accounts.allow_signup {
        return Err(AppError::NotFound);
    }
    let page = SignupPage {
        chrome: Chrome::public(&ctx, "新規登録"),
        error: None,
        name: String::new(),
        email: String::new(),
        min_password: MIN_PASSWORD_CHARS,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn signup(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Form(form): Form<SignupForm>,
) -> Result<Response, AppError> {
    if !app.config.accounts.allow_signup {
        return Err(AppError::NotFound);
    }
    let input = SignupInput {
        email: &form.email,
        name: &form.name,
        password: &form.password,
        password_confirm: &form.password_confirm,
        plan: Plan::Free,
        role: Role::Member,
    };
    match accounts::sign_up(&app, &input).await {
        Ok(account) => {
            let cookie = session::start(&app, &account).await?;
            let resp = flash_redirect(&app, "/home", "success", "アカウントを作成しました。ようこそ Tsunagu へ。");
            Ok(with_cookie(resp, cookie))
        }
        Err(e) if e.is_user_error() => {
            let page = SignupPage {
                chrome: Chrome::public(&ctx, "新規登録"),
                error: Some(e.to_string()),
                name: form.name.clone(),
                email: form.email.clone(),
                min_password: MIN_PASSWORD_CHARS,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn password_form(auth: Auth) -> Result<Html<String>, AppError> {
    let page = PasswordPage {
        chrome: Chrome::console(&auth, "password", "パスワード変更"),
        error: None,
        min_password: MIN_PASSWORD_CHARS,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

pub async fn change_password(
    State(app): State<SharedApp>,
    auth: Auth,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    match accounts::change_password(
        &app,
        &auth.account,
        &auth.session_hash,
        &form.current,
        &form.new_password,
        &form.new_password_confirm,
    )
    .await
    {
        Ok(()) => Ok(flash_redirect(&app, "/account/password", "success", "パスワードを変更しました。")),
        Err(e) if e.is_user_error() => {
            let page = PasswordPage {
                chrome: Chrome::console(&auth, "password", "パスワード変更"),
                error: Some(e.to_string()),
                min_password: MIN_PASSWORD_CHARS,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_accepts_only_plain_local_paths() {
        assert_eq!(super::safe_next("/settings/basic"), "/settings/basic");
        assert_eq!(super::safe_next("/mails?x=1"), "/mails?x=1");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil",
            "https://evil.example",
            "",
            "home",
            "/ホーム",
        ] {
            assert_eq!(super::safe_next(bad), "/home", "{bad:?}");
        }
    }
}
