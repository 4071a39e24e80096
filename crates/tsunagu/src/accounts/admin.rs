//! Platform administration of accounts: アカウントとプラン (plans).

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{Html, Response};
use serde::Deserialize;
use tsunagu_core::{AccountId, Plan};
use tsunagu_store::accounts::{self, Account};

use crate::app::SharedApp;
use crate::web::chrome::Chrome;
use crate::web::context::flash_redirect;
use crate::web::error::AppError;
use crate::web::session::AdminAuth;

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

pub fn routes() -> axum::Router<SharedApp> {
    use axum::routing::{get, post};
    axum::Router::new().route("/admin/accounts", get(accounts_list)).route("/admin/accounts/{id}/plan", post(set_plan))
}
