//! 送信済みメール: the mails Tsunagu sent for the account, page by page, and each in full.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Html;
use tsunagu_store::mails;

use crate::app::SharedApp;
use crate::clock::format_local;
use crate::web::chrome::Chrome;
use crate::web::error::AppError;
use crate::web::session::Auth;

struct MailRow {
    id: i64,
    created: String,
    to: String,
    subject: String,
    status: &'static str,
    status_code: String,
}

pub fn mail_status_label(status: &str) -> &'static str {
    match status {
        "queued" => "送信待ち",
        "sent" => "送信済み",
        "stored" => "保存のみ（送信設定なし）",
        "failed" => "送信失敗",
        _ => "不明",
    }
}

#[derive(Template)]
#[template(path = "mails.html")]
struct MailsPage {
    chrome: Chrome,
    rows: Vec<MailRow>,
    transport: &'static str,
    retention_days: u32,
    /// Keys for the 「前へ」 (newer) and 「次へ」 (older) links, when there is such a page.
    newer: Option<String>,
    older: Option<String>,
}

/// Mails per page of 送信済みメール.
pub const MAILS_PAGE: i64 = 50;

/// `?older=KEY` or `?newer=KEY`: the page after or before the mail with that key.
#[derive(serde::Deserialize, Default)]
pub struct MailsQuery {
    older: Option<String>,
    newer: Option<String>,
}

/// A page key in a link: `{created_at}.{id}` of the mail at the page's edge.
fn mail_key(k: mails::MailKey) -> String {
    format!("{}.{}", k.created_at, k.id)
}

fn parse_mail_key(s: &str) -> Option<mails::MailKey> {
    let (created_at, id) = s.split_once('.')?;
    Some(mails::MailKey { created_at: created_at.parse().ok()?, id: id.parse().ok()? })
}

pub async fn mails_list(
    State(app): State<SharedApp>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> Result<Html<String>, AppError> {
    // A query or key that does not parse (an edited link) shows the newest page.
    let q: MailsQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let at = match (q.older.as_deref().and_then(parse_mail_key), q.newer.as_deref().and_then(parse_mail_key)) {
        (Some(k), _) => mails::PageAt::OlderThan(k),
        (None, Some(k)) => mails::PageAt::NewerThan(k),
        (None, None) => mails::PageAt::Newest,
    };
    let mut c = app.store.read().await?;
    let tz = auth.account.time_zone.clone();
    let page = mails::page_for_account(&mut c, auth.account.id, at, MAILS_PAGE).await?;
    let newer = page.mails.first().filter(|_| page.has_newer).map(|m| mail_key(mails::MailKey::of(m)));
    let older = page.mails.last().filter(|_| page.has_older).map(|m| mail_key(mails::MailKey::of(m)));
    let rows = page
        .mails
        .into_iter()
        .map(|m| MailRow {
            id: m.id,
            created: format_local(m.created_at, &tz),
            to: m.to_address,
            subject: m.subject,
            status: mail_status_label(&m.status),
            status_code: m.status,
        })
        .collect();
    let page = MailsPage {
        chrome: Chrome::console(&auth, "mails", "送信済みメール"),
        rows,
        transport: app.mailer.describe(),
        retention_days: app.config.retention.mails_days,
        newer,
        older,
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "mail_detail.html")]
struct MailDetailPage {
    chrome: Chrome,
    subject: String,
    to: String,
    created: String,
    sent_label: &'static str,
    sent: String,
    status: &'static str,
    message_id: String,
    last_error: Option<String>,
    body: String,
}

pub async fn mail_detail(
    State(app): State<SharedApp>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Html<String>, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let mut c = app.store.read().await?;
    let m = mails::get_for_account(&mut c, auth.account.id, id).await?.ok_or(AppError::NotFound)?;
    let tz = &auth.account.time_zone;
    let page = MailDetailPage {
        chrome: Chrome::console(&auth, "mails", "送信済みメール"),
        subject: m.subject,
        to: m.to_address,
        created: format_local(m.created_at, tz),
        sent_label: if m.status == "stored" { "保存日時" } else { "送信日時" },
        sent: m.sent_at.map(|t| format_local(t, tz)).unwrap_or_else(|| "-".into()),
        status: mail_status_label(&m.status),
        message_id: m.message_id,
        last_error: m.last_error,
        body: m.body_text,
    };
    Ok(Html(page.render()?))
}

pub fn routes() -> axum::Router<SharedApp> {
    use axum::routing::get;
    axum::Router::new().route("/mails", get(mails_list)).route("/mails/{id}", get(mail_detail))
}
