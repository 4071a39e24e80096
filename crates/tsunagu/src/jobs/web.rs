//! 失敗したジョブ: jobs that failed for good, for administrators, with ［再実行する］.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use tsunagu_store::jobs;

use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::AdminAuth;

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

pub fn routes() -> axum::Router<SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new().route("/admin/jobs", get(failed_jobs)).route("/admin/jobs/{id}/retry", post(retry_job))
}
