//! Platform administration: plans of accounts, and jobs that failed for good.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{Html, Response};
use serde::Deserialize;
use tsunagu_core::{AccountId, Plan};
use tsunagu_store::accounts::{self, Account};
use tsunagu_store::jobs;

use super::chrome::Chrome;
use super::context::flash_redirect;
use super::error::AppError;
use super::session::AdminAuth;
use crate::app::SharedApp;
use crate::clock::format_local;

#[derive(Template)]
#[template(path = "admin_accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    rows: Vec<Account>,
    plans: &'static [Plan],
}

pub async fn accounts_list(State(app): State<SharedApp>, AdminAuth(auth): AdminAuth) -> Result<Html<String>, AppError> {
    let mut c = app.store.read().await?;
    let rows = accounts::list_all(&mut c).await?;
    let page = AccountsPage {
        chrome: Chrome::console(&auth, "admin-accounts", "アカウントとプラン"),
        rows,
        plans: &Plan::ALL,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    plan: String,
}

pub async fn set_plan(
    State(app): State<SharedApp>,
    AdminAuth(auth): AdminAuth,
    Path(id): Path<String>,
    Form(form): Form<PlanForm>,
) -> Result<Response, AppError> {
    let id = AccountId(id.parse().map_err(|_| AppError::NotFound)?);
    let plan = Plan::parse(&form.plan).ok_or_else(|| AppError::BadRequest("プランを選択してください。".into()))?;
    if !crate::accounts::set_plan(&app, id, plan).await? {
        return Err(AppError::NotFound);
    }
    let email = {
        let mut c = app.store.conn().await?;
        accounts::get(&mut c, id).await?.map(|a| a.email).unwrap_or_default()
    };
    tracing::info!(admin = %auth.account.id, account_id = %id, plan = plan.code(), "plan changed");
    Ok(flash_redirect(
        &app,
        "/admin/accounts",
        "success",
        &format!("{email} のプランを{}に変更しました。", plan.label()),
    ))
}

struct JobRowView {
    id: i64,
    kind: String,
    attempts: i64,
    updated: String,
    error: String,
}

#[derive(Template)]
#[template(path = "admin_jobs.html")]
struct JobsPage {
    chrome: Chrome,
    rows: Vec<JobRowView>,
    queued: i64,
    running: i64,
    failed: i64,
}

pub async fn failed_jobs(State(app): State<SharedApp>, AdminAuth(auth): AdminAuth) -> Result<Html<String>, AppError> {
    let mut c = app.store.read().await?;
    let tz = auth.account.time_zone.clone();
    let rows = jobs::list_by_state(&mut c, "failed", 200)
        .await?
        .into_iter()
        .map(|j| JobRowView {
            id: j.id,
            kind: j.kind,
            attempts: j.attempts,
            updated: format_local(j.updated_at, &tz),
            error: j.last_error.unwrap_or_default(),
        })
        .collect();
    let counts = jobs::counts(&mut c).await?;
    let n = |s: &str| counts.iter().find(|(k, _)| k == s).map(|(_, v)| *v).unwrap_or(0);
    let page = JobsPage {
        chrome: Chrome::console(&auth, "admin-jobs", "失敗したジョブ"),
        rows,
        queued: n("queued"),
        running: n("running"),
        failed: n("failed"),
    };
    Ok(Html(page.render()?))
}

pub async fn retry_job(
    State(app): State<SharedApp>,
    AdminAuth(auth): AdminAuth,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let mut c = app.store.conn().await?;
    if !jobs::retry_failed(&mut c, id, app.now()).await? {
        return Ok(flash_redirect(&app, "/admin/jobs", "info", "このジョブはすでに再実行されたか、存在しません。"));
    }
    crate::jobs::wake(&app);
    tracing::info!(admin = %auth.account.id, job_id = id, "failed job queued again");
    Ok(flash_redirect(&app, "/admin/jobs", "success", &format!("ジョブ {id} を再実行します。")))
}
