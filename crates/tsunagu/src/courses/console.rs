//! The instructor's course pages: the list (`/courses`), a course's page with its students and
//! their LINE state, its form (create, edit, publish) and delete. Another account's course
//! answers 404.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tsunagu_store::courses::{self as store, Course, CourseDeleted};

use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

pub(crate) const NAV: &str = "courses";
const TITLE_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 20_000;

/// A course's state as the instructor reads it.
pub fn state_ja(state: &str) -> &'static str {
    match state {
        "published" => "公開中",
        _ => "下書き",
    }
}

/// A subscription's LINE state as the course's student list shows it.
pub fn line_state_ja(state: &str, line_user: bool) -> &'static str {
    match state {
        "active" => "友だち",
        "blocked" => "ブロック中",
        "paused" => "友だち（配信停止中）",
        _ if line_user => "友だち追加待ち",
        _ => "未連携",
    }
}

struct Row {
    id: i64,
    title: String,
    state: &'static str,
    state_code: String,
    line: &'static str,
    steps: i64,
    students: i64,
}

#[derive(Template)]
#[template(path = "courses.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
}

/// コース: the account's courses.
pub async fn list(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    let mut c = app.store.read().await?;
    let rows = store::courses_of(&mut c, auth.account.id)
        .await?
        .into_iter()
        .map(|s| Row {
            id: s.course.id,
            state: state_ja(&s.course.state),
            line: match (&s.course.line_login_id, &s.course.line_channel_id) {
                (Some(_), Some(_)) => "LINE連携・ステップ配信",
                (Some(_), None) => "LINE連携",
                (None, Some(_)) => "ステップ配信（LINEログイン未設定）",
                (None, None) => "—",
            },
            state_code: s.course.state.clone(),
            steps: s.steps,
            students: s.students,
            title: s.course.title,
        })
        .collect();
    Ok(Html(ListPage { chrome: Chrome::console(&auth, NAV, "コース"), rows }.render()?))
}

/// What the course form holds, as typed.
#[derive(Default, serde::Deserialize)]
pub struct CourseForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    state: String,
}

impl CourseForm {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        let title = self.title.trim();
        if title.is_empty() {
            p.push(("title", "コース名を入力してください。".to_string()));
        } else if title.chars().count() > TITLE_MAX {
            p.push(("title", format!("コース名は {TITLE_MAX} 文字以内にしてください。")));
        }
        if self.description.chars().count() > DESCRIPTION_MAX {
            p.push(("description", "説明は 20,000 文字以内にしてください。".to_string()));
        }
        if !matches!(self.state.as_str(), "draft" | "published") {
            p.push(("state", "公開状態を選んでください。".to_string()));
        }
        p
    }
}

#[derive(Template)]
#[template(path = "course_form.html")]
struct FormPage {
    chrome: Chrome,
    heading: &'static str,
    action: String,
    back: String,
    form: CourseForm,
    problems: Vec<(&'static str, String)>,
}

impl FormPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.problems.iter().find(|p| p.0 == field).map(|p| p.1.as_str())
    }
}

fn refused(page: FormPage) -> Result<Response, AppError> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
}

pub async fn new_form(auth: Auth) -> Result<Html<String>, AppError> {
    let form = CourseForm { state: "draft".into(), ..Default::default() };
    let page = FormPage {
        chrome: Chrome::console(&auth, NAV, "新規コース作成"),
        heading: "新規コース作成",
        action: "/courses/new".into(),
        back: "/courses".into(),
        form,
        problems: Vec::new(),
    };
    Ok(Html(page.render()?))
}

pub async fn create(
    State(app): State<SharedApp>,
    auth: Auth,
    Form(form): Form<CourseForm>,
) -> Result<Response, AppError> {
    let problems = form.problems();
    if !problems.is_empty() {
        return refused(FormPage {
            chrome: Chrome::console(&auth, NAV, "新規コース作成"),
            heading: "新規コース作成",
            action: "/courses/new".into(),
            back: "/courses".into(),
            form,
            problems,
        });
    }
    let key = crate::crypto::random_token(16);
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let id =
        store::create_course(&mut tx, auth.account.id, &key, form.title.trim(), &auth.account.time_zone, now).await?;
    store::update_course(&mut tx, auth.account.id, id, form.title.trim(), &form.description, &form.state, now).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    tracing::info!(account_id = %auth.account.id, course_id = id, "course created");
    Ok(flash_redirect(&app, &format!("/courses/{id}"), "success", "コースを作成しました。"))
}

/// One of the account's courses, or 404.
pub async fn owned(app: &SharedApp, auth: &Auth, id: i64) -> Result<Course, AppError> {
    let mut c = app.store.read().await?;
    store::course(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)
}

pub async fn edit_form(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
) -> Result<Html<String>, AppError> {
    let course = owned(&app, &auth, id).await?;
    let page = FormPage {
        chrome: Chrome::console(&auth, NAV, "コースの編集"),
        heading: "コースの編集",
        action: format!("/courses/{id}/edit"),
        back: format!("/courses/{id}"),
        form: CourseForm { title: course.title, description: course.description, state: course.state },
        problems: Vec::new(),
    };
    Ok(Html(page.render()?))
}

pub async fn update(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<CourseForm>,
) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    let problems = form.problems();
    if !problems.is_empty() {
        return refused(FormPage {
            chrome: Chrome::console(&auth, NAV, "コースの編集"),
            heading: "コースの編集",
            action: format!("/courses/{id}/edit"),
            back: format!("/courses/{id}"),
            form,
            problems,
        });
    }
    let mut c = app.store.conn().await?;
    if !store::update_course(&mut c, auth.account.id, id, form.title.trim(), &form.description, &form.state, app.now())
        .await?
    {
        return Err(AppError::NotFound);
    }
    tracing::info!(account_id = %auth.account.id, course_id = id, "course updated");
    Ok(flash_redirect(&app, &format!("/courses/{id}"), "success", "コースを保存しました。"))
}

pub async fn delete(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let mut c = app.store.conn().await?;
    match store::delete_course(&mut c, auth.account.id, id).await? {
        CourseDeleted::Yes => {
            tracing::info!(account_id = %auth.account.id, course_id = id, "course deleted");
            Ok(flash_redirect(&app, "/courses", "success", "コースを削除しました。"))
        }
        CourseDeleted::NotFound => Err(AppError::NotFound),
        CourseDeleted::HasStudents(n) => Ok(flash_redirect(
            &app,
            &format!("/courses/{id}"),
            "error",
            &format!(
                "受講を開始した受講生が {n} 人いるため、削除できません。新しい受講を止める場合は、公開状態を「下書き」にしてください。"
            ),
        )),
    }
}

struct StudentLine {
    subscription: i64,
    name: String,
    email: String,
    applied: String,
    started: String,
    line: &'static str,
    line_code: String,
    next: String,
}

#[derive(Template)]
#[template(path = "course.html")]
struct CoursePage {
    chrome: Chrome,
    id: i64,
    title: String,
    state: &'static str,
    state_code: String,
    description: String,
    public_url: Option<String>,
    line_linked: bool,
    line_channel: Option<String>,
    lessons: Vec<store::Lesson>,
    /// The video and audio files a lesson can show (完了 only).
    lesson_media: Vec<LessonMedia>,
    students: Vec<StudentLine>,
}

/// A choice of ［動画・音声］ for a lesson.
struct LessonMedia {
    id: i64,
    label: String,
}

/// The course page's public address.
pub fn public_url(config: &crate::config::Config, course: &Course) -> String {
    format!("{}/c/{}", config.http.public_url.trim_end_matches('/'), course.public_key)
}

pub async fn show(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Html<String>, AppError> {
    let (course, lessons, students, media) = {
        let mut c = app.store.read().await?;
        let course = store::course(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?;
        let lessons = store::lessons(&mut c, id).await?;
        let students = store::students_of(&mut c, id).await?;
        let media = tsunagu_store::media::list(&mut c, auth.account.id).await?;
        (course, lessons, students, media)
    };
    let lesson_media = media
        .iter()
        .filter(|m| m.category != "image" && m.status == tsunagu_store::media::MediaStatus::Ready)
        .map(|m| LessonMedia {
            id: m.id,
            label: format!("{}: {}", if m.category == "video" { "動画" } else { "音声" }, m.original_name),
        })
        .collect();
    let tz = &course.time_zone;
    let students = students
        .into_iter()
        .map(|s| StudentLine {
            subscription: s.subscription_id,
            name: if s.display_name.is_empty() { "（名前未設定）".into() } else { s.display_name.clone() },
            email: s.email.clone().unwrap_or_default(),
            applied: format_local(s.applied_at, tz),
            started: s.started_at.map(|t| format_local(t, tz)).unwrap_or_else(|| "—".into()),
            line: line_state_ja(&s.state, s.line_user_id.is_some()),
            line_code: s.state.clone(),
            next: match (s.state.as_str(), s.next_at) {
                ("active", Some(t)) => format_local(t, tz),
                ("active", None) => "すべて配信済み".into(),
                _ => "—".into(),
            },
        })
        .collect();
    let page = CoursePage {
        chrome: Chrome::console(&auth, NAV, &course.title),
        id,
        public_url: (course.state == "published").then(|| public_url(&app.config, &course)),
        state: state_ja(&course.state),
        state_code: course.state.clone(),
        description: course.description.clone(),
        line_linked: course.line_login_id.is_some(),
        line_channel: course.line_channel_id.clone(),
        lessons,
        lesson_media,
        students,
        title: course.title,
    };
    Ok(Html(page.render()?))
}

/// A lesson as typed.
#[derive(serde::Deserialize)]
pub struct LessonForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    /// ［動画・音声］: empty for none.
    #[serde(default)]
    media_id: String,
}

impl LessonForm {
    /// The chosen video or audio file: the account's, and 完了.
    async fn media(&self, app: &SharedApp, auth: &Auth) -> Result<Result<Option<i64>, String>, AppError> {
        let raw = self.media_id.trim();
        if raw.is_empty() {
            return Ok(Ok(None));
        }
        let Ok(id) = raw.parse::<i64>() else {
            return Ok(Err(
                "選んだ動画・音声が見つかりません。もう一度選んでください。入力した本文は保存されていません。".into(),
            ));
        };
        let mut c = app.store.read().await?;
        let found = tsunagu_store::media::get(&mut c, auth.account.id, id).await?;
        Ok(match found {
            None => Err("選んだ動画・音声が見つかりません。もう一度選んでください。入力した本文は保存されていません。".into()),
            Some(m) if m.category == "image" => Err(
                "レッスンに付けられるのは動画か音声です。画像はステップ配信のメッセージで送れます。入力した本文は保存されていません。"
                    .into(),
            ),
            Some(m) if m.status != tsunagu_store::media::MediaStatus::Ready => Err(format!(
                "「{}」はまだ使えません（{}）。ステップ配信のメディアで状態が「完了」になってから選んでください。入力した本文は保存されていません。",
                m.original_name,
                m.status.label_ja()
            )),
            Some(m) => Ok(Some(m.id)),
        })
    }

    fn problem(&self) -> Option<&'static str> {
        let title = self.title.trim();
        if title.is_empty() {
            Some("レッスンのタイトルを入力してください。入力した本文は保存されていません。")
        } else if title.chars().count() > TITLE_MAX {
            Some("レッスンのタイトルは 200 文字以内にしてください。入力した本文は保存されていません。")
        } else if self.body.chars().count() > DESCRIPTION_MAX {
            Some("レッスンの本文は 20,000 文字以内にしてください。入力した本文は保存されていません。")
        } else {
            None
        }
    }
}

pub async fn add_lesson(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<LessonForm>,
) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    let to = format!("/courses/{id}");
    if let Some(m) = form.problem() {
        return Ok(flash_redirect(&app, &to, "error", m));
    }
    let media = match form.media(&app, &auth).await? {
        Ok(media) => media,
        Err(m) => return Ok(flash_redirect(&app, &to, "error", &m)),
    };
    let mut c = app.store.conn().await?;
    store::add_lesson(&mut c, id, form.title.trim(), &form.body, media, app.now()).await?;
    Ok(flash_redirect(&app, &to, "success", "レッスンを追加しました。"))
}

pub async fn update_lesson(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, lesson)): Path<(i64, i64)>,
    Form(form): Form<LessonForm>,
) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    let to = format!("/courses/{id}");
    if let Some(m) = form.problem() {
        return Ok(flash_redirect(&app, &to, "error", m));
    }
    let media = match form.media(&app, &auth).await? {
        Ok(media) => media,
        Err(m) => return Ok(flash_redirect(&app, &to, "error", &m)),
    };
    let mut c = app.store.conn().await?;
    if !store::update_lesson(&mut c, id, lesson, form.title.trim(), &form.body, media, app.now()).await? {
        return Err(AppError::NotFound);
    }
    Ok(flash_redirect(&app, &to, "success", "レッスンを保存しました。"))
}

pub async fn delete_lesson(
    State(app): State<SharedApp>,
    auth: Auth,
    Path((id, lesson)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    owned(&app, &auth, id).await?;
    let mut c = app.store.conn().await?;
    if !store::delete_lesson(&mut c, id, lesson).await? {
        return Err(AppError::NotFound);
    }
    Ok(flash_redirect(&app, &format!("/courses/{id}"), "success", "レッスンを削除しました。"))
}
