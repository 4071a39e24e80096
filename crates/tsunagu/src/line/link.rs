//! 設定 > 公式LINE連携 (manual part 4): the instructor's LINE Login channels, each with the
//! courses it links (「新規公式 LINE 登録」 → courses, チャネル ID, チャネルシークレット →
//! 「公式LINEを登録」), with the callback URLs to paste into LINE Developers. Secrets are sealed;
//! LINE offers no way to check a Login channel's secret without a person logging in, so a
//! wrong one is explained when the first login comes back.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tsunagu_core::{AccountId, Feature};
use tsunagu_store::line as store;

use crate::app::{App, SharedApp};
use crate::crypto::secret_aad;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::Auth;

const NAV: &str = "line";
const PAGE: &str = "/settings/line";
/// Sealed purpose of a LINE Login channel secret.
pub const LOGIN_SECRET: &str = "line.login_secret";

fn purpose(channel_id: &str) -> String {
    format!("{LOGIN_SECRET}:{channel_id}")
}

/// The two callback URLs LINE Developers must list for the Login channel.
pub fn callback_urls(config: &crate::config::Config) -> Vec<String> {
    let public = format!("{}/line/callback", config.http.public_url.trim_end_matches('/'));
    let manager = format!("{}/line/callback", config.http.manager_url.trim_end_matches('/'));
    if public == manager { vec![public] } else { vec![public, manager] }
}

/// A Login channel's secret, opened (for the callback's code exchange).
pub async fn login_secret(app: &App, account: AccountId, channel_id: &str) -> anyhow::Result<Option<String>> {
    app.open_secret(account, &purpose(channel_id)).await
}

struct CourseChoice {
    id: i64,
    title: String,
    checked: bool,
    /// Linked through another Login channel now.
    elsewhere: bool,
}

#[derive(Template)]
#[template(path = "line_links.html")]
struct ListPage {
    chrome: Chrome,
    plan_message: Option<&'static str>,
    links: Vec<store::LoginChannel>,
    callbacks: Vec<String>,
}

/// 公式LINE連携: the registered links.
pub async fn list(State(app): State<SharedApp>, auth: Auth) -> Result<Html<String>, AppError> {
    let links = {
        let mut c = app.store.read().await?;
        store::login_channels(&mut c, auth.account.id).await?
    };
    let page = ListPage {
        chrome: Chrome::console(&auth, NAV, "公式LINE連携"),
        plan_message: (!auth.account.plan.allows(Feature::LineLink)).then(|| Feature::LineLink.upgrade_message()),
        links,
        callbacks: callback_urls(&app.config),
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "line_link_form.html")]
struct FormPage {
    chrome: Chrome,
    heading: &'static str,
    action: String,
    channel_id: String,
    editing: bool,
    courses: Vec<CourseChoice>,
    callbacks: Vec<String>,
    problems: Vec<String>,
}

async fn form_page(
    app: &SharedApp,
    auth: &Auth,
    editing: Option<i64>,
    channel_id: String,
    checked: &[i64],
    problems: Vec<String>,
) -> Result<FormPage, AppError> {
    let courses = {
        let mut c = app.store.read().await?;
        tsunagu_store::courses::courses_of(&mut c, auth.account.id).await?
    };
    let heading = if editing.is_some() { "公式LINE連携の編集" } else { "新規公式 LINE 登録" };
    Ok(FormPage {
        chrome: Chrome::console(auth, NAV, heading),
        heading,
        action: match editing {
            Some(id) => format!("/settings/line/{id}"),
            None => "/settings/line/new".into(),
        },
        channel_id,
        editing: editing.is_some(),
        courses: courses
            .into_iter()
            .map(|s| CourseChoice {
                id: s.course.id,
                checked: checked.contains(&s.course.id),
                elsewhere: s.course.line_login_id.is_some() && s.course.line_login_id != editing,
                title: s.course.title,
            })
            .collect(),
        callbacks: callback_urls(&app.config),
        problems,
    })
}

fn plan_gate(app: &SharedApp, auth: &Auth) -> Option<Response> {
    (!auth.account.plan.allows(Feature::LineLink))
        .then(|| flash_redirect(app, PAGE, "error", Feature::LineLink.upgrade_message()))
}

/// 「新規公式 LINE 登録」.
pub async fn new_form(State(app): State<SharedApp>, auth: Auth) -> Result<Response, AppError> {
    if let Some(r) = plan_gate(&app, &auth) {
        return Ok(r);
    }
    Ok(Html(form_page(&app, &auth, None, String::new(), &[], Vec::new()).await?.render()?).into_response())
}

pub async fn edit_form(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let link = {
        let mut c = app.store.read().await?;
        store::login_channel(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?
    };
    if let Some(r) = plan_gate(&app, &auth) {
        return Ok(r);
    }
    let checked: Vec<i64> = link.courses.iter().map(|c| c.0).collect();
    Ok(Html(form_page(&app, &auth, Some(id), link.channel_id, &checked, Vec::new()).await?.render()?).into_response())
}

/// The form's fields: `course` repeats, one per ticked course.
fn read(fields: &[(String, String)]) -> (String, String, Vec<i64>) {
    let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| f.1.trim().to_string()).unwrap_or_default();
    let courses = fields.iter().filter(|f| f.0 == "course").filter_map(|f| f.1.parse().ok()).collect();
    (get("channel_id"), get("channel_secret"), courses)
}

/// 「公式LINEを登録」 (new, or an edit of `id`).
async fn save(
    app: SharedApp,
    auth: Auth,
    id: Option<i64>,
    fields: Vec<(String, String)>,
) -> Result<Response, AppError> {
    if let Some(r) = plan_gate(&app, &auth) {
        return Ok(r);
    }
    let (channel_id, secret, courses) = read(&fields);
    let mut problems = Vec::new();
    if channel_id.is_empty() || !channel_id.bytes().all(|b| b.is_ascii_digit()) || channel_id.len() > 20 {
        problems.push("チャネル IDは、LINE Developers の LINE ログインチャネルの［チャネル基本設定］に表示される数字を入力してください。".to_string());
    }
    // Editing keeps the stored secret when the field is left empty.
    if secret.is_empty() && id.is_none() {
        problems.push("チャネルシークレットを入力してください。LINE ログインチャネルの［チャネル基本設定］に表示される英数字です。".to_string());
    }
    if !secret.is_empty() && (secret.len() > 100 || !secret.bytes().all(|b| b.is_ascii_alphanumeric())) {
        problems.push(
            "チャネルシークレットは英数字です。コピーしたときに余分な文字が入っていないか確認してください。"
                .to_string(),
        );
    }
    if courses.is_empty() {
        problems.push("LINE連携するコースを選んでください。".to_string());
    }
    if !problems.is_empty() {
        let page = form_page(&app, &auth, id, channel_id, &courses, problems).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    }
    let now = app.now();
    let old = match id {
        Some(id) => {
            let mut c = app.store.read().await?;
            Some(store::login_channel(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?)
        }
        None => None,
    };
    let mut tx = app.store.begin().await?;
    let Some(saved) = store::put_login_channel(&mut tx, auth.account.id, id, &channel_id, &courses, now).await? else {
        drop(tx);
        let page = form_page(
            &app,
            &auth,
            id,
            channel_id,
            &courses,
            vec!["このチャネル IDはすでに登録されています。登録済みの公式LINE連携を編集するか、チャネル IDに誤りがないか確認してください。".into()],
        )
        .await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    };
    if let Some(old) = &old
        && old.channel_id != channel_id
    {
        // The secret moves with the channel id (or is replaced just below).
        let old_secret = login_secret(&app, auth.account.id, &old.channel_id).await?;
        tsunagu_store::secrets::delete(&mut tx, auth.account.id, &purpose(&old.channel_id)).await?;
        if secret.is_empty()
            && let Some(s) = old_secret
        {
            let (key_id, sealed) = app.keys.seal(&s, &secret_aad(auth.account.id, &purpose(&channel_id)));
            tsunagu_store::secrets::put(&mut tx, auth.account.id, &purpose(&channel_id), &key_id, &sealed, now).await?;
        }
    }
    if !secret.is_empty() {
        let (key_id, sealed) = app.keys.seal(&secret, &secret_aad(auth.account.id, &purpose(&channel_id)));
        tsunagu_store::secrets::put(&mut tx, auth.account.id, &purpose(&channel_id), &key_id, &sealed, now).await?;
    }
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    tracing::info!(account_id = %auth.account.id, login_id = saved, channel_id = %channel_id, "LINE login channel saved");
    Ok(flash_redirect(
        &app,
        PAGE,
        "success",
        "公式LINEを登録しました。選んだコースの受講開始時に、公式LINEの友だち追加をご案内します。",
    ))
}

pub async fn create(
    State(app): State<SharedApp>,
    auth: Auth,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    save(app, auth, None, fields).await
}

pub async fn update(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    save(app, auth, Some(id), fields).await
}

pub async fn delete(State(app): State<SharedApp>, auth: Auth, Path(id): Path<i64>) -> Result<Response, AppError> {
    let mut tx = app.store.begin().await?;
    let Some(channel_id) = store::delete_login_channel(&mut tx, auth.account.id, id).await? else {
        return Err(AppError::NotFound);
    };
    tsunagu_store::secrets::delete(&mut tx, auth.account.id, &purpose(&channel_id)).await?;
    tx.commit().await.map_err(tsunagu_store::StoreError::from)?;
    tracing::info!(account_id = %auth.account.id, login_id = id, "LINE login channel deleted");
    Ok(flash_redirect(
        &app,
        PAGE,
        "success",
        "公式LINE連携を削除しました。コースの受講開始時に友だち追加のご案内は表示されなくなります。",
    ))
}
