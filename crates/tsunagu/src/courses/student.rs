//! The student side on the public host (phone first): a course's page with ［受講を開始する］,
//! sign-up and log-in by email within the instructor's account (or by LINE Login on a
//! LINE-linked course), and, on a LINE-linked course, the manual's prompt to befriend the
//! instructor's official account followed by LINE Login with the add-friend screen. A student's
//! session is its own cookie and table: it never opens the console.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tsunagu_core::Email;
use tsunagu_store::courses::{self as store, Course};
use tsunagu_store::students::{self, Enrolment, Linked, Student};

use crate::accounts::{check_password, password};
use crate::app::{App, SharedApp};
use crate::crypto::{random_token, sha256_hex};
use crate::line::login::{self, Purpose};
use crate::web::chrome::Chrome;
use crate::web::context::{RequestContext, cookie, flash_redirect};
use crate::web::error::AppError;

const COOKIE_NAME: &str = "tsunagu_student";
const SESSION_DAYS: i64 = 30;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The published course behind a public key, or 404 (drafts are not shown).
async fn published(app: &App, key: &str) -> Result<Course, AppError> {
    let mut c = app.store.read().await?;
    store::course_by_key(&mut c, key).await?.filter(|c| c.state == "published").ok_or(AppError::NotFound)
}

/// The student of this browser, when logged in (to this course's account: a student of
/// another instructor is not this one's).
pub async fn current(app: &App, headers: &HeaderMap, course: &Course) -> Result<Option<Student>, AppError> {
    let Some(token) = cookie(headers, COOKIE_NAME) else { return Ok(None) };
    let mut c = app.store.read().await?;
    Ok(students::session_student(&mut c, &sha256_hex(token), app.now())
        .await?
        .filter(|s| s.account_id == Some(course.account_id)))
}

/// Start a session for the student; the cookie to set.
pub async fn start_session(app: &App, student: i64) -> Result<HeaderValue, AppError> {
    let token = random_token(24);
    let now = app.now();
    let mut c = app.store.conn().await?;
    students::create_session(&mut c, &sha256_hex(&token), student, now, now + SESSION_DAYS * DAY_MS).await?;
    let secure = if app.config.http.public_url.starts_with("https://") { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        SESSION_DAYS * DAY_MS / 1000
    ))
    .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))
}

fn with_cookie(mut resp: Response, cookie: HeaderValue) -> Response {
    resp.headers_mut().append(SET_COOKIE, cookie);
    resp
}

fn course_path(course: &Course) -> String {
    format!("/c/{}", course.public_key)
}

/// How the student's LINE stands, in their words.
fn line_state_for_student(e: &Enrolment) -> &'static str {
    match e.state.as_str() {
        "active" => "公式LINEと友だちです。講座のメッセージが LINE に届きます。",
        "blocked" => {
            "公式LINEをブロック中のため、メッセージは届きません。LINE でブロックを解除すると、次のメッセージから届きます。"
        }
        "paused" => "いまは講師の都合でメッセージの配信を止めています。再開されると、次のメッセージから届きます。",
        _ if e.line_user_id.is_some() => "公式LINEと友だちになると、講座のメッセージが届き始めます。",
        _ => "公式LINEとまだ連携していません。",
    }
}

#[derive(Template)]
#[template(path = "course_public.html")]
struct CoursePage {
    chrome: Chrome,
    key: String,
    title: String,
    description: String,
    lessons: Vec<PublicLesson>,
    line_linked: bool,
    student: Option<Student>,
    enrolled: bool,
    line_state: Option<&'static str>,
    /// Waiting to befriend: the prompt is offered again.
    needs_friend: bool,
}

/// A lesson as a student sees it: its video or audio, when it has one that is 完了.
struct PublicLesson {
    title: String,
    body: String,
    /// `video` or `audio`, and the file's address on this host.
    media: Option<(String, String)>,
}

/// `GET /c/{key}`: the course's page.
pub async fn page(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Html<String>, AppError> {
    let course = published(&app, &key).await?;
    let student = current(&app, &headers, &course).await?;
    let (lessons, enrolment) = {
        let mut c = app.store.read().await?;
        let mut lessons = Vec::new();
        for l in store::lessons(&mut c, course.id).await? {
            let media = match l.media_id {
                Some(id) => tsunagu_store::media::get(&mut c, course.account_id, id)
                    .await?
                    .filter(|m| m.category != "image" && m.status == tsunagu_store::media::MediaStatus::Ready)
                    .map(|m| (m.category, format!("/media/{}", m.file_name))),
                None => None,
            };
            lessons.push(PublicLesson { title: l.title, body: l.body, media });
        }
        let e = match &student {
            Some(s) => students::enrolment(&mut c, course.id, s.id).await?,
            None => None,
        };
        (lessons, e)
    };
    let line_linked = course.line_login_id.is_some();
    let page = CoursePage {
        chrome: Chrome::public(&ctx, &course.title),
        key,
        description: course.description.clone(),
        lessons,
        line_linked,
        enrolled: enrolment.is_some(),
        line_state: enrolment.as_ref().filter(|_| line_linked).map(line_state_for_student),
        needs_friend: line_linked && enrolment.as_ref().is_some_and(|e| e.state == "waiting_friend"),
        student,
        title: course.title,
    };
    Ok(Html(page.render()?))
}

/// ［受講を開始する］: a logged-in student starts the course; on a LINE-linked course the
/// friend prompt follows. Others sign up first.
pub async fn start(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, AppError> {
    let course = published(&app, &key).await?;
    let Some(student) = current(&app, &headers, &course).await? else {
        return Ok(Redirect::to(&format!("/c/{key}/signup")).into_response());
    };
    let mut c = app.store.conn().await?;
    store::subscribe(&mut c, course.id, student.id, app.now()).await?;
    drop(c);
    tracing::info!(course_id = course.id, student_id = student.id, "course started");
    if course.line_login_id.is_some() {
        return Ok(Redirect::to(&format!("/c/{key}/line")).into_response());
    }
    Ok(flash_redirect(&app, &course_path(&course), "success", "受講を開始しました。"))
}

#[derive(Default, serde::Deserialize)]
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

#[derive(Template)]
#[template(path = "student_signup.html")]
struct SignupPage {
    chrome: Chrome,
    key: String,
    title: String,
    line_linked: bool,
    name: String,
    email: String,
    error: Option<String>,
}

pub async fn signup_form(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
) -> Result<Html<String>, AppError> {
    let course = published(&app, &key).await?;
    let page = SignupPage {
        chrome: Chrome::public(&ctx, "受講生登録"),
        key,
        line_linked: course.line_login_id.is_some(),
        title: course.title,
        name: String::new(),
        email: String::new(),
        error: None,
    };
    Ok(Html(page.render()?))
}

/// A new student of the course's account, logged in, and the course started.
pub async fn signup(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
    Form(form): Form<SignupForm>,
) -> Result<Response, AppError> {
    let course = published(&app, &key).await?;
    let refuse = |msg: String| -> Result<Response, AppError> {
        let page = SignupPage {
            chrome: Chrome::public(&ctx, "受講生登録"),
            key: key.clone(),
            line_linked: course.line_login_id.is_some(),
            title: course.title.clone(),
            name: form.name.clone(),
            email: form.email.clone(),
            error: Some(msg),
        };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
    };
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return refuse("お名前を 100 文字以内で入力してください。".into());
    }
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return refuse(e.to_string()),
    };
    if let Err(e) = check_password(&form.password, &form.password_confirm) {
        return refuse(e.to_string());
    }
    let hash = password::hash(form.password.clone()).await.map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let now = app.now();
    let mut c = app.store.conn().await?;
    let id = match store::create_student(&mut c, course.account_id, Some(email.as_str()), Some(&hash), name, now).await
    {
        Ok(id) => id,
        Err(tsunagu_store::StoreError::Conflict(_)) => {
            return refuse("このメールアドレスはすでに登録されています。「ログイン」からログインしてください。".into());
        }
        Err(e) => return Err(e.into()),
    };
    store::subscribe(&mut c, course.id, id, now).await?;
    drop(c);
    tracing::info!(course_id = course.id, student_id = id, "student signed up");
    let cookie = start_session(&app, id).await?;
    let next = if course.line_login_id.is_some() { format!("/c/{key}/line") } else { course_path(&course) };
    Ok(with_cookie(flash_redirect(&app, &next, "success", "登録して受講を開始しました。"), cookie))
}

#[derive(Default, serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Template)]
#[template(path = "student_login.html")]
struct LoginPage {
    chrome: Chrome,
    key: String,
    title: String,
    line_linked: bool,
    email: String,
    error: Option<String>,
}

pub async fn login_form(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
) -> Result<Html<String>, AppError> {
    let course = published(&app, &key).await?;
    let page = LoginPage {
        chrome: Chrome::public(&ctx, "受講生ログイン"),
        key,
        line_linked: course.line_login_id.is_some(),
        title: course.title,
        email: String::new(),
        error: None,
    };
    Ok(Html(page.render()?))
}

pub async fn login_submit(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let course = published(&app, &key).await?;
    let refuse = |status: StatusCode, msg: String| -> Result<Response, AppError> {
        let page = LoginPage {
            chrome: Chrome::public(&ctx, "受講生ログイン"),
            key: key.clone(),
            line_linked: course.line_login_id.is_some(),
            title: course.title.clone(),
            email: form.email.clone(),
            error: Some(msg),
        };
        Ok((status, Html(page.render()?)).into_response())
    };
    let Ok(email) = Email::parse(&form.email) else {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "メールアドレスを確認してください。".into());
    };
    use crate::accounts::throttle;
    let keys = [
        (throttle::email_key(&format!("student:{}:{}", course.account_id.0, email.as_str())), throttle::EMAIL_LIMITS),
        (throttle::ip_key(&ctx.client_ip), throttle::IP_LIMITS),
    ];
    let now = app.now();
    let gate = throttle::charge(&app.store, &keys, now).await?;
    if let Some(msg) = gate.message() {
        return refuse(StatusCode::TOO_MANY_REQUESTS, msg);
    }
    let found = {
        let mut c = app.store.read().await?;
        students::by_email(&mut c, course.account_id, email.as_str()).await?
    };
    let ok = match &found {
        Some((_, Some(hash))) => password::verify(form.password.clone(), hash.clone()).await.unwrap_or(false),
        _ => {
            let _ = password::verify_dummy(form.password.clone()).await;
            false
        }
    };
    let Some((student, _)) = found.filter(|_| ok) else {
        return refuse(StatusCode::UNAUTHORIZED, "メールアドレスまたはパスワードが正しくありません。".into());
    };
    throttle::refund(&app.store, &keys[0].0, &keys[1].0, throttle::IP_LIMITS, now).await?;
    let cookie = start_session(&app, student.id).await?;
    Ok(with_cookie(Redirect::to(&course_path(&course)).into_response(), cookie))
}

pub async fn logout(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, AppError> {
    if let Some(token) = cookie(&headers, COOKIE_NAME) {
        let mut c = app.store.conn().await?;
        students::end_session(&mut c, &sha256_hex(token)).await?;
    }
    let resp = flash_redirect(&app, &format!("/c/{key}"), "info", "ログアウトしました。");
    Ok(with_cookie(resp, HeaderValue::from_static("tsunagu_student=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")))
}

#[derive(Template)]
#[template(path = "course_line_prompt.html")]
struct PromptPage {
    chrome: Chrome,
    key: String,
    title: String,
    bot_name: String,
    /// Came back without becoming a friend.
    declined: bool,
}

/// The manual's prompt to befriend the instructor's official account.
pub async fn prompt(
    State(app): State<SharedApp>,
    ctx: RequestContext,
    Path(key): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, AppError> {
    let course = published(&app, &key).await?;
    if course.line_login_id.is_none() {
        return Ok(Redirect::to(&course_path(&course)).into_response());
    }
    let bot_name = match &course.line_channel_id {
        Some(ch) => {
            let mut c = app.store.read().await?;
            tsunagu_store::line::bot_profile(&mut c, course.account_id, ch).await?.map(|b| b.name).unwrap_or_default()
        }
        None => String::new(),
    };
    let page = PromptPage {
        chrome: Chrome::public(&ctx, "公式LINEと友だちになってください"),
        key,
        title: course.title,
        bot_name,
        declined: q.contains_key("declined"),
    };
    Ok(Html(page.render()?).into_response())
}

/// 「LINEで友だち追加する」 (also LINE Login for a student without an account): LINE Login with
/// the add-friend screen, back on the public host.
pub async fn line_login(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, AppError> {
    let course = published(&app, &key).await?;
    let student = current(&app, &headers, &course).await?;
    let prompt = Some(tsunagu_line::login::BotPrompt::Aggressive);
    let begun = login::begin_for(
        &app,
        Purpose::Student,
        course.account_id,
        course.id,
        student.map(|s| s.id),
        &app.config.http.public_url,
        prompt,
    )
    .await?;
    match begun {
        Err(why) => Ok(flash_redirect(&app, &course_path(&course), "error", why)),
        Ok((url, cookie)) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(LOCATION, url.parse().map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?);
            resp.headers_mut().append(SET_COOKIE, cookie);
            Ok(resp)
        }
    }
}

/// What LINE Login brought back for a student: link the LINE user, start the session and the
/// subscription, and learn whether they are a friend now. Returns where to send the browser.
pub async fn line_linked(
    app: &SharedApp,
    attempt: &tsunagu_store::line::LoginAttempt,
    user: &login::LineUser,
    friendship_changed: Option<bool>,
) -> Result<Response, AppError> {
    let course = {
        let mut c = app.store.read().await?;
        store::course(&mut c, attempt.account_id, attempt.course_id).await?.ok_or(AppError::NotFound)?
    };
    let key = course.public_key.clone();
    let Some((login_channel, channel)) = ({
        let mut c = app.store.read().await?;
        tsunagu_store::line::course_login(&mut c, course.id).await?
    }) else {
        return Ok(flash_redirect(app, &course_path(&course), "error", login::NOT_LINKED));
    };
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let student = match attempt.student_id {
        Some(id) => id,
        None => match students::by_line_user(&mut tx, course.account_id, &login_channel, &user.user_id).await? {
            Some(s) => s.id,
            None => store::create_student(&mut tx, course.account_id, None, None, &user.name, now).await?,
        },
    };
    match students::link_line(&mut tx, student, &login_channel, &user.user_id, now).await? {
        Linked::Yes => {}
        Linked::OtherStudent => {
            drop(tx);
            return Ok(flash_redirect(
                app,
                &course_path(&course),
                "error",
                "この LINE アカウントは、別の受講生アカウントと連携しています。その受講生アカウントでログインするか、別の LINE アカウントでお試しください。",
            ));
        }
        Linked::OtherLineUser => {
            drop(tx);
            return Ok(flash_redirect(
                app,
                &course_path(&course),
                "error",
                "この受講生アカウントは、別の LINE アカウントと連携しています。連携済みの LINE アカウントでログインしてください。",
            ));
        }
    }
    let sub = store::subscribe(&mut tx, course.id, student, now).await?;
    // Friends now? The add-friend screen said so, or LINE's friendship API does. Recorded as
    // the oldest possible fact: any follow or unfollow webhook of this user overrides it.
    if let (true, Some(channel)) = (user.friend || friendship_changed == Some(true), &channel) {
        tsunagu_store::line::set_friend(
            &mut tx,
            channel,
            &user.user_id,
            tsunagu_store::line::FriendStatus::Following,
            0,
            now,
        )
        .await?;
    }
    let started = store::link_line_user(&mut tx, sub, &user.user_id, now).await?;
    if started {
        crate::courses::dispatch::queue_in(&mut tx, app).await?;
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    if started {
        crate::jobs::wake(app);
    }
    tracing::info!(course_id = course.id, student_id = student, started, "student linked LINE");
    let cookie = start_session(app, student).await?;
    let enrolled_state = {
        let mut c = app.store.read().await?;
        students::enrolment(&mut c, course.id, student).await?.map(|e| e.state)
    };
    let resp = match enrolled_state.as_deref() {
        Some("active") => flash_redirect(
            app,
            &course_path(&course),
            "success",
            "公式LINEと友だちになりました。講座のメッセージが LINE に届きます。",
        ),
        _ if friendship_changed == Some(true) => flash_redirect(
            app,
            &course_path(&course),
            "success",
            "LINE と連携しました。まもなく講座のメッセージが LINE に届きます。",
        ),
        _ => Redirect::to(&format!("/c/{key}/line?declined=1")).into_response(),
    };
    Ok(with_cookie(resp, cookie))
}
