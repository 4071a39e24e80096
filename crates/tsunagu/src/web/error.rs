//! Errors at the web boundary. Every error page shows the operation id that is also in the
//! log line, so an organizer can quote it and an operator can find the cause.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::accounts::AccountError;

tokio::task_local! {
    /// The current request's operation id, set by the context middleware.
    pub static OP_ID: String;
}

pub fn current_op_id() -> String {
    OP_ID.try_with(|id| id.clone()).unwrap_or_else(|_| "-".into())
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("csrf token missing or invalid")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("too many requests: {0}")]
    TooMany(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<tsunagu_store::StoreError> for AppError {
    fn from(e: tsunagu_store::StoreError) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        if e.is_user_error() { AppError::BadRequest(e.to_string()) } else { AppError::Internal(e.into()) }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    op_id: &'a str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let op_id = current_op_id();
        let (status, title, message): (StatusCode, &str, String) = match &self {
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                "ページが見つかりません",
                "お探しのページは見つかりませんでした。URLをご確認ください。".into(),
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                "権限がありません",
                "この操作を行う権限がありません。管理者にお問い合わせください。".into(),
            ),
            AppError::Csrf => (
                StatusCode::FORBIDDEN,
                "もう一度お試しください",
                "フォームの有効期限が切れたか、不正な送信の可能性があるため処理を中止しました。ページを再読み込みしてから、もう一度送信してください。".into(),
            ),
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "入力内容をご確認ください", m.clone()),
            AppError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "しばらくお待ちください", m.clone()),
            AppError::Internal(e) => {
                tracing::error!(op_id = %op_id, error = ?e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "エラーが発生しました",
                    "申し訳ありません。処理中にエラーが発生しました。操作が完了したかどうかは、画面を開き直してご確認ください。時間をおいて再度お試しいただき、解決しない場合は下の操作IDを添えて管理者にお問い合わせください。".into(),
                )
            }
        };
        if !matches!(self, AppError::Internal(_)) {
            tracing::info!(op_id = %op_id, status = status.as_u16(), error = %self, "request refused");
        }
        let page = ErrorPage { title, message: &message, op_id: &op_id };
        let body = page.render().unwrap_or_else(|_| format!("{title}\n{message}\n操作ID: {op_id}"));
        (status, Html(body)).into_response()
    }
}
