//! LINE Login on a course's Login channel (公式LINE連携), for an instructor registering a
//! テスト配信先 (callback on the manager host) and, later, for students (public host). Each login
//! carries a single-use `state`, a `nonce` checked in the ID token, and a PKCE verifier sealed
//! at rest; it is bound to the browser that started it by a cookie, and expires in 10 minutes.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use tsunagu_core::AccountId;
use tsunagu_line::LineError;
use tsunagu_line::login::{self as line_login, BotPrompt, Callback, LoginChannel};
use tsunagu_store::line as store;

use crate::app::{App, SharedApp};
use crate::crypto::{random_token, sha256_hex};
use crate::web::context::flash_redirect;
use crate::web::error::AppError;

/// How long a login may take, from leaving for LINE to coming back.
pub const ATTEMPT_MS: i64 = 10 * 60_000;
const COOKIE_NAME: &str = "tsunagu_line_login";
const AAD: &str = "line.login_verifier";

/// Why a login cannot start or did not complete, in Japanese, for the page it returns to.
pub const NOT_LINKED: &str = "このコースは公式LINEと連携していません。設定 > 公式LINE連携で、このコースを LINE ログインチャネルと連携してください。";
pub const EXPIRED: &str = "LINE ログインの有効期限が切れたか、別のブラウザで開かれました。もう一度「LINE ログインページへ移動」からやり直してください。";
const CANCELLED_TEST: &str = "LINE ログインがキャンセルされたため、テスト配信先は登録されていません。";
const CANCELLED_STUDENT: &str = "LINE ログインがキャンセルされました。講座のメッセージを LINE で受け取るには、もう一度「LINEで友だち追加する」を押してください。";
const WRONG_SECRET: &str = "LINE ログインチャネルのチャネルシークレットが正しくない可能性があります。設定 > 公式LINE連携で、チャネル IDとチャネルシークレットを確認して登録し直してください。";
const UNVERIFIED: &str = "LINE から受け取ったログイン情報を確認できませんでした。もう一度「LINE ログインページへ移動」からやり直してください。";
const UNREACHABLE: &str =
    "LINE に接続できませんでした。時間をおいて、もう一度「LINE ログインページへ移動」からやり直してください。";

/// What a login is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An instructor registers a LINE account as テスト配信先 of the course's channel.
    Test,
    /// A student starts a LINE-linked course (or logs in with LINE).
    Student,
}

impl Purpose {
    fn code(self) -> &'static str {
        match self {
            Purpose::Test => "test",
            Purpose::Student => "student",
        }
    }
}

/// Start a login: the address of LINE's page and the cookie binding it to this browser; `Err`
/// with a Japanese reason when the course has no LINE Login channel.
pub async fn begin(
    app: &App,
    purpose: Purpose,
    account: AccountId,
    course_id: i64,
    base_url: &str,
    bot_prompt: Option<BotPrompt>,
) -> Result<Result<(String, axum::http::HeaderValue), &'static str>, AppError> {
    begin_for(app, purpose, account, course_id, None, base_url, bot_prompt).await
}

/// [`begin`] on behalf of a logged-in student (`None`: a student who signs in with LINE).
pub async fn begin_for(
    app: &App,
    purpose: Purpose,
    account: AccountId,
    course_id: i64,
    student_id: Option<i64>,
    base_url: &str,
    bot_prompt: Option<BotPrompt>,
) -> Result<Result<(String, axum::http::HeaderValue), &'static str>, AppError> {
    let mut c = app.store.conn().await?;
    let Some((login_id, _)) = store::course_login(&mut c, course_id).await? else {
        return Ok(Err(NOT_LINKED));
    };
    let state = line_login::random_state();
    let nonce = line_login::random_state();
    let verifier = line_login::pkce_verifier();
    let browser = random_token(24);
    let redirect_uri = format!("{}/line/callback", base_url.trim_end_matches('/'));
    let (key_id, sealed) = app.keys.seal(&verifier, &format!("{AAD};state={state}"));
    let now = app.now();
    store::put_login_attempt(
        &mut c,
        &store::LoginAttempt {
            state: state.clone(),
            purpose: purpose.code().into(),
            account_id: account,
            course_id,
            student_id,
            browser_hash: sha256_hex(&browser),
            nonce: nonce.clone(),
            key_id,
            sealed_verifier: sealed,
            redirect_uri: redirect_uri.clone(),
            expires_at: now + ATTEMPT_MS,
        },
        now,
    )
    .await?;
    let ch = LoginChannel { id: login_id, secret: String::new(), redirect_uri };
    let url = line_login::authorize_url(&app.config.line.access_base_url, &ch, &state, &nonce, &verifier, bot_prompt);
    Ok(Ok((url, browser_cookie_header(base_url, &browser))))
}

/// The cookie naming this browser's login, sent back only to the callback.
fn browser_cookie_header(base_url: &str, value: &str) -> axum::http::HeaderValue {
    let secure = if base_url.starts_with("https://") { "; Secure" } else { "" };
    axum::http::HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/line/callback; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        ATTEMPT_MS / 1000
    ))
    .expect("cookie values are URL-safe")
}

fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE_NAME).then(|| v.to_string())
    })
}

/// A login that completed: who logged in on LINE.
pub struct LineUser {
    pub user_id: String,
    pub name: String,
    /// LINE's friendship API: a friend of the Login channel's linked official account now.
    pub friend: bool,
}

/// `GET /line/callback`: LINE sends the browser back here after its login page.
pub async fn callback(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let query = query.unwrap_or_default();
    let parsed = Callback::parse(&query).map_err(|_| AppError::BadRequest(EXPIRED.into()))?;
    let state = match &parsed {
        Callback::Code { state, .. } => Some(state.clone()),
        Callback::Error { state, .. } => state.clone(),
    };
    let Some(state) = state else { return Err(AppError::BadRequest(EXPIRED.into())) };
    // Only the browser that started the login can take it: a callback from anywhere else
    // neither completes it nor uses it up.
    let Some(browser) = browser_cookie(&headers) else {
        tracing::info!("LINE login callback without this browser's login cookie");
        return Err(AppError::BadRequest(EXPIRED.into()));
    };
    let attempt = {
        let mut c = app.store.conn().await?;
        store::take_login_attempt(&mut c, &state, &sha256_hex(&browser)).await?
    };
    let now = app.now();
    let Some(attempt) = attempt.filter(|a| a.expires_at > now) else {
        tracing::info!("LINE login callback with an unknown, expired or foreign state");
        return Err(AppError::BadRequest(EXPIRED.into()));
    };
    let friendship_changed = match &parsed {
        Callback::Code { friendship_status_changed, .. } => *friendship_status_changed,
        Callback::Error { .. } => None,
    };
    let back = match attempt.purpose.as_str() {
        "test" => format!("/courses/{}/line/test-recipients", attempt.course_id),
        "student" => {
            let mut c = app.store.read().await?;
            match tsunagu_store::courses::course(&mut c, attempt.account_id, attempt.course_id).await? {
                Some(course) => format!("/c/{}/line", course.public_key),
                None => return Err(AppError::NotFound),
            }
        }
        _ => return Err(AppError::BadRequest(EXPIRED.into())),
    };
    let user = match complete(&app, &attempt, parsed).await? {
        Ok(u) => u,
        Err(why) => return Ok(flash_redirect(&app, &back, "error", why)),
    };
    match attempt.purpose.as_str() {
        "test" => {
            let channel = {
                let mut c = app.store.read().await?;
                tsunagu_store::courses::course(&mut c, attempt.account_id, attempt.course_id)
                    .await?
                    .and_then(|c| c.line_channel_id)
            };
            let Some(channel) = channel else {
                return Ok(flash_redirect(
                    &app,
                    &back,
                    "error",
                    "先に「LINEステップ配信設定」で Messaging API チャネルを設定してください。",
                ));
            };
            let mut c = app.store.conn().await?;
            store::put_test_recipient(&mut c, attempt.account_id, &channel, &user.user_id, &user.name, now).await?;
            tracing::info!(account_id = %attempt.account_id, course_id = attempt.course_id, "LINE test recipient registered");
            Ok(flash_redirect(&app, &back, "success", "正常に連携されました"))
        }
        "student" => crate::courses::student::line_linked(&app, &attempt, &user, friendship_changed).await,
        _ => Ok(Redirect::to("/").into_response()),
    }
}

/// Exchange the code and verify the ID token; `Err` with a Japanese reason when the login did
/// not complete.
async fn complete(
    app: &App,
    attempt: &store::LoginAttempt,
    parsed: Callback,
) -> Result<Result<LineUser, &'static str>, AppError> {
    let code = match parsed {
        Callback::Code { code, .. } => code,
        Callback::Error { error, .. } => {
            tracing::info!(error = %error, "LINE login did not complete");
            let cancelled = if attempt.purpose == "test" { CANCELLED_TEST } else { CANCELLED_STUDENT };
            return Ok(Err(if error.eq_ignore_ascii_case("ACCESS_DENIED") { cancelled } else { UNVERIFIED }));
        }
    };
    let (login_id, secret) = {
        let mut c = app.store.read().await?;
        let Some((login_id, _)) = store::course_login(&mut c, attempt.course_id).await? else {
            return Ok(Err(NOT_LINKED));
        };
        drop(c);
        match super::link::login_secret(app, attempt.account_id, &login_id).await? {
            Some(s) => (login_id, s),
            None => return Ok(Err(NOT_LINKED)),
        }
    };
    let verifier = app
        .keys
        .open(&attempt.key_id, &attempt.sealed_verifier, &format!("{AAD};state={}", attempt.state))
        .map_err(|e| AppError::Internal(e.into()))?;
    let ch = LoginChannel { id: login_id, secret, redirect_uri: attempt.redirect_uri.clone() };
    let tokens =
        match line_login::exchange_code(app.line.http(), &app.config.line.api_base_url, &ch, &code, &verifier).await {
            Ok(t) => t,
            Err(LineError::BadChannelCredentials) => return Ok(Err(WRONG_SECRET)),
            Err(LineError::BadRequest { .. }) => return Ok(Err(EXPIRED)),
            Err(e) => {
                tracing::warn!(error = %e, "LINE login code exchange failed");
                return Ok(Err(UNREACHABLE));
            }
        };
    let Some(id_token) = tokens.id_token else { return Ok(Err(UNVERIFIED)) };
    // The token's expiry is on LINE's clock, the real one: the app's clock may be moved (tests,
    // the demo), and a token LINE issued a second ago is not expired for that.
    let real_now_s = jiff::Timestamp::now().as_second();
    match line_login::verify_id_token(&id_token, &ch, &attempt.nonce, real_now_s) {
        Ok(claims) => {
            // Whether they are a friend now (a failure here is not fatal: the follow webhook,
            // when it comes, starts what waits for it).
            let friend = match line_login::friendship(
                app.line.http(),
                &app.config.line.api_base_url,
                &tokens.access_token,
            )
            .await
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "LINE friendship status not read");
                    false
                }
            };
            Ok(Ok(LineUser { user_id: claims.sub, name: claims.name.unwrap_or_default(), friend }))
        }
        Err(e) => {
            tracing::warn!(error = ?e, "LINE login ID token refused");
            Ok(Err(UNVERIFIED))
        }
    }
}
